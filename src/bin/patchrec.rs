//! `patchrec`: the command line over the library's Rust API.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use patchrec::catalog::tsv::read_items_tsv;
use patchrec::init::{init_model, InitOptions};
use patchrec::text::{ChatFormat, PromptTemplate};
use patchrec::{Catalog, Layout, LayoutConfig, Model, ModelOptions, QueryOptions};

/// mimalloc: training allocates and frees tensors of many MB per step, which glibc maps
/// and unmaps (a page fault and a zeroed page for every 4 KiB each time).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "patchrec",
    version,
    about = "PatchRec LLM sequential recommendation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a from-scratch checkpoint: a BPE tokenizer trained on the catalogue's
    /// titles and the prompt text, and a randomly initialised Llama.
    Init {
        /// `items.tsv` (item_id<TAB>title)
        #[arg(long)]
        items: PathBuf,
        /// `prompt.txt` (system message, instruction with [HISTORY_SEQUENCE]); default:
        /// the paper's MovieLens prompt
        #[arg(long)]
        prompt: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        // The defaults are `InitOptions::default()`, as in a training configuration.
        #[arg(long, default_value_t = InitOptions::default().vocab_size)]
        vocab_size: usize,
        #[arg(long, default_value_t = InitOptions::default().hidden_size)]
        hidden: usize,
        #[arg(long, default_value_t = InitOptions::default().num_layers)]
        layers: usize,
        #[arg(long, default_value_t = InitOptions::default().num_heads)]
        heads: usize,
        #[arg(long, default_value_t = InitOptions::default().num_kv_heads)]
        kv_heads: usize,
        #[arg(long, default_value_t = InitOptions::default().seed)]
        seed: u64,
    },
    /// Convert a Llama-architecture GGUF file into a checkpoint directory.
    Convert {
        #[arg(long = "from-gguf")]
        from_gguf: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Train: the stages of a TOML configuration (see docs/TRAINING.md).
    Train {
        config: PathBuf,
        /// Continue an interrupted run from its output folder.
        #[arg(long)]
        resume: bool,
        /// Train nothing: print each stage's samples, steps and forward-pass positions,
        /// packed and unpacked.
        #[arg(long, conflicts_with = "resume")]
        plan: bool,
    },
    /// Merge LoRA adapters (a stage's `NN-<stage>.adapters/`, or its resume state) into
    /// their base checkpoint, writing a checkpoint that serves like any other.
    ApplyAdapters {
        #[arg(long)]
        base: PathBuf,
        #[arg(long)]
        adapters: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The checkpoint's default layout (vanilla, pft-i:M, pft-s:L, stream-s:L,
        /// budget:N); default: the base's
        #[arg(long)]
        layout: Option<String>,
        /// History truncation K for --layout
        #[arg(long, default_value_t = 100, value_parser = at_least_one)]
        max_history: usize,
    },
    /// Score a checkpoint on a dataset split by the paper's protocol.
    Eval {
        /// The checkpoint (omit with --popularity)
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Dataset folder in the shared format
        #[arg(long)]
        data: PathBuf,
        #[arg(long, default_value = "valid")]
        split: String,
        /// vanilla, pft-i:M, pft-s:L, stream-s:L or budget:N
        #[arg(long, default_value = "vanilla")]
        layout: String,
        /// History truncation K
        #[arg(long, default_value_t = 100, value_parser = at_least_one)]
        max_history: usize,
        #[arg(long, value_parser = at_least_one)]
        max_users: Option<usize>,
        #[arg(long, value_parser = at_least_one)]
        max_samples: Option<usize>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        beam_width: usize,
        /// Rank the whole catalogue exactly instead of by beam search
        #[arg(long)]
        exact: bool,
        /// Serve from quantized weights: q8_0 or q4_0
        #[arg(long)]
        quantize: Option<String>,
        /// The popularity baseline instead of a model
        #[arg(long)]
        popularity: bool,
        /// Write the report as JSON here; per-sample results go beside it
        /// (`<out>.samples.jsonl`) and let an interrupted run resume
        #[arg(long)]
        out: Option<PathBuf>,
        /// Row name in the Markdown line
        #[arg(long)]
        name: Option<String>,
    },
    /// Draw HR@20 against compression ratio for evaluation reports (`eval --out`) as SVG.
    Plot {
        /// Report files, each optionally `path=label` (default label: the file name)
        #[arg(required = true)]
        reports: Vec<String>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Time queries per layout and history length on a checkpoint (serving benchmark).
    Bench {
        #[arg(long)]
        checkpoint: PathBuf,
        /// `items.tsv` of the catalogue to register
        #[arg(long)]
        items: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "vanilla,pft-i:5,pft-s:5")]
        layouts: Vec<String>,
        #[arg(long, value_delimiter = ',', default_value = "20,100,500,1000", value_parser = at_least_one)]
        lengths: Vec<usize>,
        /// Queries per layout and length, each with a different random history
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        users: usize,
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        k: usize,
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        beam_width: usize,
        /// Threads querying at once, each with its own users
        #[arg(long, default_value_t = 1, value_parser = at_least_one)]
        callers: usize,
        /// Rank the whole catalogue exactly instead of by beam search
        #[arg(long)]
        exact: bool,
        /// Serve from quantized weights: q8_0 or q4_0
        #[arg(long)]
        quantize: Option<String>,
        /// Decode through the batching worker, so concurrent callers share forward passes
        #[arg(long)]
        batched: bool,
        /// Session gap in seconds for the stream-s layouts; the synthetic users come in
        /// visits of 1-10 items a minute apart, a day between visits
        #[arg(long)]
        session_gap: Option<u64>,
        /// Rows a forward pass is filled up to with forced title tokens fed ahead; 0 runs
        /// every beam step in its own pass (single queries only: the batching worker uses
        /// the default)
        #[arg(long, default_value_t = patchrec::decode::DEFAULT_LOOKAHEAD)]
        lookahead: usize,
        /// Attention on the CPU: `fused` (one pass per row over the keys in place, the
        /// default) or `candle` (composed from candle's ops), to compare the two
        #[arg(long, default_value = "fused")]
        attention: String,
        /// Write the report as JSON here
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Time candidate scoring (`rank`) against `recommend` and against scoring each
    /// candidate alone, for several candidate counts
    BenchRank {
        #[arg(long)]
        checkpoint: PathBuf,
        /// `items.tsv` of the catalogue to register
        #[arg(long)]
        items: PathBuf,
        /// Extend the catalogue with synthetic titles to this many items
        #[arg(long)]
        catalogue_size: Option<usize>,
        #[arg(long, default_value = "pft-s:5")]
        layout: String,
        /// History items per user
        #[arg(long, default_value_t = 100, value_parser = at_least_one)]
        history: usize,
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000", value_parser = at_least_one)]
        candidates: Vec<usize>,
        /// Users per candidate count
        #[arg(long, default_value_t = 3, value_parser = at_least_one)]
        users: usize,
        /// `recommend`'s k
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        k: usize,
        /// Candidates per user scored alone (the time per candidate, scaled to the count)
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        alone: usize,
        /// Write the report as JSON here
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A query's time with allow- and deny-lists covering fractions of the catalogue
    BenchFilters {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        items: PathBuf,
        #[arg(long, default_value = "pft-s:5")]
        layout: String,
        #[arg(long, default_value_t = 100, value_parser = at_least_one)]
        history: usize,
        #[arg(long, default_value_t = 3, value_parser = at_least_one)]
        users: usize,
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        k: usize,
        #[arg(long, value_delimiter = ',', default_value = "0.01,0.5,0.99")]
        fractions: Vec<f64>,
        /// Write the report as JSON here
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Registration time, memory per item and query time for catalogues grown with
    /// synthetic titles to each size
    BenchCatalogue {
        #[arg(long)]
        checkpoint: PathBuf,
        /// `items.tsv` of the base titles (the users' histories come from them)
        #[arg(long)]
        items: PathBuf,
        #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000", value_parser = at_least_one)]
        sizes: Vec<usize>,
        #[arg(long, default_value = "pft-s:5")]
        layout: String,
        #[arg(long, default_value_t = 100, value_parser = at_least_one)]
        history: usize,
        #[arg(long, default_value_t = 3, value_parser = at_least_one)]
        users: usize,
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        k: usize,
        /// Time exact ranking up to this catalogue size
        #[arg(long, default_value_t = 10_000)]
        exact_max: usize,
        /// Items per registration call
        #[arg(long, default_value_t = 10_000, value_parser = at_least_one)]
        batch: usize,
        /// Write the report as JSON here
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Time appends+queries of many users in random order under a catalogue KV budget
    /// holding a fraction of their KV, beside the same traffic without a budget
    BenchUsers {
        #[arg(long)]
        checkpoint: PathBuf,
        /// `items.tsv` of the catalogue to register
        #[arg(long)]
        items: PathBuf,
        #[arg(long, default_value = "stream-s:5")]
        layout: String,
        #[arg(long, default_value_t = 10_000, value_parser = at_least_one)]
        users: usize,
        /// History items each user starts with
        #[arg(long, default_value_t = 50, value_parser = at_least_one)]
        history: usize,
        /// Appends+queries timed, each by a user drawn at random
        #[arg(long, default_value_t = 20_000, value_parser = at_least_one)]
        queries: usize,
        /// The budget as a fraction of all users' KV
        #[arg(long, default_value_t = 0.1)]
        budget_fraction: f64,
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        k: usize,
        /// Write the report as JSON here
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Time training steps on sequences of a fixed length (full fine-tuning or LoRA), in
    /// positions per second; `bench/train-speed.sh` runs PyTorch on the same shapes.
    BenchTrain {
        #[arg(long)]
        /// The checkpoint to train from (random sequences of --seq-len)
        #[arg(long, required_unless_present = "config")]
        checkpoint: Option<PathBuf>,
        /// Instead: the first steps of this training configuration's first stage, on its
        /// own batches, unpacked then packed (--seq-len, --micro-batch, --answer and
        /// --lora-rank come from the configuration)
        #[arg(long, conflicts_with = "checkpoint")]
        config: Option<PathBuf>,
        /// Positions per sequence
        #[arg(long, default_value_t = 128, value_parser = at_least_one)]
        seq_len: usize,
        /// Sequences per step
        #[arg(long, default_value_t = 1, value_parser = at_least_one)]
        micro_batch: usize,
        /// Positions per sequence the loss is taken at
        #[arg(long, default_value_t = 16, value_parser = at_least_one)]
        answer: usize,
        /// Timed steps (after one untimed step)
        #[arg(long, default_value_t = 3, value_parser = at_least_one)]
        steps: usize,
        /// Train LoRA adapters of this rank (alpha = 2 x rank, every projection) instead of
        /// every weight
        #[arg(long)]
        lora_rank: Option<usize>,
        /// Write the report as JSON here
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Export prompts (input embeddings), titles and our answers and timings for the peer
    /// benchmarks in bench/ (`prompts.safetensors`, `prompts.json`).
    ExportPrompts {
        #[arg(long)]
        checkpoint: PathBuf,
        /// `items.tsv` of the catalogue to register
        #[arg(long)]
        items: PathBuf,
        #[arg(long, default_value = "pft-s:5")]
        layout: String,
        #[arg(long, default_value_t = 100, value_parser = at_least_one)]
        length: usize,
        #[arg(long, default_value_t = 5, value_parser = at_least_one)]
        users: usize,
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        k: usize,
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        beam_width: usize,
        #[arg(long)]
        out: PathBuf,
    },
    /// Write a synthetic dataset in the shared format over a catalogue (demos, tests).
    Synth {
        /// `items.tsv` (item_id<TAB>title)
        #[arg(long)]
        items: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 300, value_parser = at_least_one)]
        users: usize,
        /// Interactions per user
        #[arg(long, default_value_t = 30, value_parser = at_least_one)]
        len: usize,
        /// Probability that the next item is random rather than the catalogue's next
        #[arg(long, default_value_t = 0.2, value_parser = probability)]
        jump: f64,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Recommend the next items for one history.
    Recommend {
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        items: PathBuf,
        /// Item ids, oldest first, comma-separated
        #[arg(long, value_delimiter = ',')]
        history: Vec<u64>,
        /// When each history item happened, seconds since the epoch, comma-separated (one
        /// per item; used by --session-gap)
        #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
        timestamps: Vec<i64>,
        /// vanilla, pft-i:M, pft-s:L, stream-s:L or budget:N (default: the checkpoint's)
        #[arg(long)]
        layout: Option<String>,
        /// History truncation K
        #[arg(long, default_value_t = 100, value_parser = at_least_one)]
        max_items: usize,
        /// stream-s:L only: a session also closes after a pause of more than this many
        /// seconds between two interactions
        #[arg(long)]
        session_gap: Option<u64>,
        #[arg(long, default_value_t = 10, value_parser = at_least_one)]
        k: usize,
        #[arg(long, default_value_t = 20, value_parser = at_least_one)]
        beam_width: usize,
        #[arg(long)]
        exclude_history: bool,
        /// Rank the whole catalogue exactly instead of by beam search
        #[arg(long)]
        exact: bool,
        /// Serve from quantized weights: q8_0 or q4_0
        #[arg(long)]
        quantize: Option<String>,
        /// cpu or cuda:N
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> patchrec::Result<()> {
    match cli.command {
        Command::Init {
            items,
            prompt,
            out,
            vocab_size,
            hidden,
            layers,
            heads,
            kv_heads,
            seed,
        } => {
            let catalog = read_items_tsv(&items)?;
            let template = match prompt {
                Some(p) => {
                    let text = patchrec::files::read_text(&p, patchrec::files::MAX_JSON_BYTES)?;
                    PromptTemplate::from_prompt_text(&text, ChatFormat::ChatMl)?
                }
                None => PromptTemplate::movielens(ChatFormat::ChatMl),
            };
            let titles: Vec<String> = catalog.into_iter().map(|(_, t)| t).collect();
            let opts = InitOptions {
                vocab_size,
                hidden_size: hidden,
                num_layers: layers,
                num_heads: heads,
                num_kv_heads: kv_heads,
                intermediate_size: None,
                seed,
            };
            let model = init_model(&titles, template, &opts)?;
            model.save(&out)?;
            println!(
                "wrote {} (vocabulary {}, hidden {hidden}, {layers} layers)",
                out.display(),
                model.tokenizer().vocab_size()
            );
        }
        Command::Convert { from_gguf, out } => {
            let model = patchrec::gguf::convert(&from_gguf)?;
            model.save(&out)?;
            let cfg = model.llama().config();
            println!(
                "wrote {} ({} layers, hidden {}, vocabulary {})",
                out.display(),
                cfg.num_hidden_layers,
                cfg.hidden_size,
                cfg.vocab_size
            );
        }
        Command::ApplyAdapters {
            base,
            adapters,
            out,
            layout,
            max_history,
        } => {
            let layout = layout
                .map(|l| {
                    patchrec::history::Layout::parse(&l)
                        .map(|l| patchrec::history::LayoutConfig::new(l, max_history))
                })
                .transpose()?;
            patchrec::model::adapters::apply(&base, &adapters, layout, &out)?;
            println!("{}", out.display());
        }
        Command::Train {
            config, plan: true, ..
        } => {
            let cfg = patchrec::train::TrainConfig::from_file(&config)?;
            for p in patchrec::train::plan::plan(&cfg)? {
                println!(
                    "{}: {} samples, {} steps visiting {}; positions unpacked {} ({:.0} per sample), packed {} in {} passes ({:.0} per sample, {:.2}x fewer){}",
                    p.stage,
                    p.samples,
                    p.steps,
                    p.samples_visited,
                    p.unpacked_positions,
                    p.unpacked_positions as f64 / p.samples_visited.max(1) as f64,
                    p.packed_positions,
                    p.packed_passes,
                    p.packed_positions as f64 / p.samples_visited.max(1) as f64,
                    p.unpacked_positions as f64 / p.packed_positions.max(1) as f64,
                    if p.pack { "; trains packed" } else { "; trains unpacked" }
                );
            }
        }
        Command::Train { config, resume, .. } => {
            let cfg = patchrec::train::TrainConfig::from_file(&config)?;
            let outcome = patchrec::train::train(
                &cfg,
                &patchrec::train::TrainOptions {
                    resume,
                    quiet: false,
                },
                &mut |_| patchrec::train::Control::Continue,
            )?;
            if let Some(ckpt) = outcome.checkpoint {
                println!("final checkpoint: {}", ckpt.display());
            }
        }
        Command::Eval {
            checkpoint,
            data,
            split,
            layout,
            max_history,
            max_users,
            max_samples,
            seed,
            beam_width,
            exact,
            quantize,
            popularity,
            out,
            name,
        } => {
            let dataset = patchrec::data::Dataset::open(&data)?;
            let layout = Layout::parse(&layout)?;
            let opts = patchrec::eval::EvalOptions {
                split: patchrec::data::Split::parse(&split)?,
                layout: LayoutConfig::new(layout, max_history),
                samples: patchrec::data::SampleOptions {
                    max_history,
                    max_users,
                    max_samples,
                    seed,
                },
                beam_width,
                exact,
                results: out.as_ref().map(|o| o.with_extension("samples.jsonl")),
            };
            let report = if popularity {
                patchrec::eval::popularity(&dataset, &opts)
            } else {
                let checkpoint = checkpoint.ok_or_else(|| {
                    patchrec::Error::invalid("eval needs --checkpoint (or --popularity)")
                })?;
                let model = Arc::new(Model::load(&checkpoint, &model_options(None, &quantize)?)?);
                let catalog = Catalog::new(model)?;
                catalog.add_batch(&dataset.items)?;
                let mut last = std::time::Instant::now();
                patchrec::eval::evaluate(&catalog, &dataset, &opts, &mut |done, total| {
                    if last.elapsed().as_secs() >= 10 || done == total {
                        eprintln!("scored {done}/{total}");
                        last = std::time::Instant::now();
                    }
                })?
            };
            write_json(&report, out.as_deref())?;
            let name = name.unwrap_or_else(|| report.layout.clone());
            println!("| model | HR@10 | HR@20 | NDCG@10 | NDCG@20 | CR |");
            println!("|---|---|---|---|---|---|");
            println!("{}", report.markdown_row(&name));
            println!(
                "{} samples, mean prompt {:.1} positions, {:.1} s",
                report.metrics.samples, report.mean_prompt_len, report.wall_seconds
            );
        }
        Command::Plot { reports, out } => {
            let mut points = Vec::new();
            for spec in &reports {
                let (path, label) = match spec.split_once('=') {
                    Some((p, l)) => (PathBuf::from(p), l.to_string()),
                    None => {
                        let p = PathBuf::from(spec);
                        let label = p
                            .file_stem()
                            .map_or(spec.clone(), |s| s.to_string_lossy().into());
                        (p, label)
                    }
                };
                let text = patchrec::files::read_text(&path, patchrec::files::MAX_DATA_BYTES)?;
                let report: patchrec::eval::EvalReport =
                    serde_json::from_str(&text).map_err(|e| {
                        patchrec::Error::format(&path, format!("not an eval report: {e}"))
                    })?;
                points.push((label, report));
            }
            patchrec::eval::plot::plot_hr_vs_cr(&points, &out)?;
            println!("wrote {}", out.display());
        }
        Command::Bench {
            checkpoint,
            items,
            layouts,
            lengths,
            users,
            k,
            beam_width,
            callers,
            exact,
            quantize,
            batched,
            session_gap,
            lookahead,
            attention,
            out,
        } => {
            let fused = match attention.as_str() {
                "fused" => true,
                "candle" => false,
                other => {
                    return Err(patchrec::Error::invalid(format!(
                        "--attention {other:?}: expected fused or candle"
                    )))
                }
            };
            if batched && lookahead != patchrec::decode::DEFAULT_LOOKAHEAD {
                return Err(patchrec::Error::invalid(format!(
                    "--lookahead applies to single queries; the batching worker fills passes up to {} rows",
                    patchrec::decode::DEFAULT_LOOKAHEAD
                )));
            }
            let rss = || patchrec::bench::resident_bytes().unwrap_or(0);
            let before = rss();
            let mut model = Model::load(&checkpoint, &model_options(None, &quantize)?)?;
            model.llama_mut().set_fused_attention(fused);
            let loaded = rss();
            let catalog = Arc::new(Catalog::new(Arc::new(model))?);
            let entries = read_items_tsv(&items)?;
            catalog.add_batch(&entries)?;
            let memory = patchrec::bench::MemoryReport {
                model_bytes: loaded.saturating_sub(before),
                catalogue_bytes: rss().saturating_sub(loaded),
                catalogue_items: entries.len(),
            };
            let opts = patchrec::bench::BenchOptions {
                layouts: layouts
                    .iter()
                    .map(|l| Layout::parse(l))
                    .collect::<patchrec::Result<_>>()?,
                history_lengths: lengths,
                users,
                k,
                beam_width,
                seed: 42,
                callers,
                exact,
                batched,
                session_gap,
                lookahead,
            };
            let mut report = patchrec::bench::run_serving_bench(&catalog, &opts)?;
            report.memory = Some(memory);
            emit(&report.markdown(), &report, out.as_deref())?;
        }
        Command::BenchFilters {
            checkpoint,
            items,
            layout,
            history,
            users,
            k,
            fractions,
            out,
        } => {
            let catalog = serving_catalogue(&checkpoint, &items)?;
            let opts = patchrec::bench::FiltersBenchOptions {
                layout: Layout::parse(&layout)?,
                history,
                users,
                k,
                fractions,
                seed: 42,
            };
            let report = patchrec::bench::run_filters_bench(&catalog, &opts)?;
            emit(&report.markdown(), &report, out.as_deref())?;
        }
        Command::BenchCatalogue {
            checkpoint,
            items,
            sizes,
            layout,
            history,
            users,
            k,
            exact_max,
            batch,
            out,
        } => {
            let model = Arc::new(Model::load(&checkpoint, &model_options(None, &None)?)?);
            let opts = patchrec::bench::CatalogueBenchOptions {
                sizes,
                layout: Layout::parse(&layout)?,
                history,
                users,
                k,
                exact_max,
                batch,
                seed: 42,
            };
            let report =
                patchrec::bench::run_catalogue_bench(&model, &read_items_tsv(&items)?, &opts)?;
            emit(&report.markdown(), &report, out.as_deref())?;
        }
        Command::BenchUsers {
            checkpoint,
            items,
            layout,
            users,
            history,
            queries,
            budget_fraction,
            k,
            out,
        } => {
            let catalog = serving_catalogue(&checkpoint, &items)?;
            let opts = patchrec::bench::UsersBenchOptions {
                layout: Layout::parse(&layout)?,
                users,
                history,
                queries,
                budget_fraction,
                k,
                seed: 42,
            };
            let report = patchrec::bench::run_users_bench(&catalog, &opts)?;
            emit(&report.markdown(), &report, out.as_deref())?;
        }
        Command::BenchRank {
            checkpoint,
            items,
            catalogue_size,
            layout,
            history,
            candidates,
            users,
            k,
            alone,
            out,
        } => {
            let model = Model::load(&checkpoint, &model_options(None, &None)?)?;
            let catalog = Catalog::new(Arc::new(model))?;
            let mut entries = read_items_tsv(&items)?;
            if let Some(size) = catalogue_size {
                entries = patchrec::bench::synthetic_catalogue(&entries, size, 42);
            }
            catalog.add_batch(&entries)?;
            let opts = patchrec::bench::RankBenchOptions {
                layout: Layout::parse(&layout)?,
                history,
                candidates,
                users,
                k,
                alone,
                seed: 42,
            };
            let report = patchrec::bench::run_rank_bench(&catalog, &opts)?;
            emit(&report.markdown(), &report, out.as_deref())?;
        }
        Command::BenchTrain {
            config: Some(config),
            steps,
            out,
            ..
        } => {
            let cfg = patchrec::train::TrainConfig::from_file(&config)?;
            let mut reports = Vec::new();
            for packed in [false, true] {
                let r = patchrec::bench::run_stage_bench(&cfg, steps, packed)?;
                println!(
                    "{} {} {} threads {} batch {}: {:.2} samples/s, {:.1} positions/s (steps {:?} s)",
                    r.stage,
                    r.mode,
                    r.passes,
                    r.threads,
                    r.batch_size,
                    r.samples_per_second,
                    r.positions_per_second,
                    r.step_seconds
                );
                reports.push(r);
            }
            write_json(&reports, out.as_deref())?;
        }
        Command::BenchTrain {
            checkpoint: Some(checkpoint),
            seq_len,
            micro_batch,
            answer,
            steps,
            lora_rank,
            out,
            ..
        } => {
            let opts = patchrec::bench::TrainBenchOptions {
                seq_len,
                micro_batch,
                answer,
                steps,
                lora: lora_rank.map(|rank| patchrec::model::LoraConfig {
                    rank,
                    alpha: 2.0 * rank as f64,
                    ..Default::default()
                }),
                seed: 42,
            };
            let report = patchrec::bench::run_train_bench(&checkpoint, &opts)?;
            println!(
                "{} threads {} seq_len {} micro_batch {}: {:.1} positions/s ({} trained parameters; steps {:?} s)",
                report.mode,
                report.threads,
                report.seq_len,
                report.micro_batch,
                report.positions_per_second,
                report.trained_parameters,
                report.step_seconds
            );
            write_json(&report, out.as_deref())?;
        }
        Command::BenchTrain { .. } => {
            unreachable!("clap requires --checkpoint unless --config is given")
        }
        Command::ExportPrompts {
            checkpoint,
            items,
            layout,
            length,
            users,
            k,
            beam_width,
            out,
        } => {
            let model = Arc::new(Model::load(&checkpoint, &ModelOptions::default())?);
            let catalog = Catalog::new(model)?;
            catalog.add_batch(&read_items_tsv(&items)?)?;
            let opts = patchrec::bench::ExportOptions {
                layout: Layout::parse(&layout)?,
                history_length: length,
                users,
                k,
                beam_width,
                seed: 42,
            };
            let m = patchrec::bench::export_prompts(&catalog, &opts, &out)?;
            let mean = |f: fn(&patchrec::bench::export::ExportedPrompt) -> f64| {
                m.prompts.iter().map(f).sum::<f64>() / m.prompts.len() as f64
            };
            println!(
                "wrote {} prompts to {}: mean {:.0} positions, ours {:.1} ms per query \
                 (prefill {:.1} ms, decode {:.1} ms)",
                m.prompts.len(),
                out.display(),
                mean(|p| p.len as f64),
                mean(|p| p.total_ms),
                mean(|p| p.prefill_ms),
                mean(|p| p.decode_ms)
            );
        }
        Command::Synth {
            items,
            out,
            users,
            len,
            jump,
            seed,
        } => {
            let catalog = read_items_tsv(&items)?;
            patchrec::data::synthetic::write_synthetic(&out, &catalog, users, len, jump, seed)?;
            println!(
                "wrote {} ({users} users x {len} interactions)",
                out.display()
            );
        }
        Command::Recommend {
            checkpoint,
            items,
            history,
            timestamps,
            layout,
            max_items,
            session_gap,
            k,
            beam_width,
            exclude_history,
            exact,
            quantize,
            device,
        } => {
            let model = Arc::new(Model::load(
                &checkpoint,
                &model_options(Some(device), &quantize)?,
            )?);
            let catalog = Catalog::new(model.clone())?;
            let entries = read_items_tsv(&items)?;
            catalog.add_batch(&entries)?;
            let user = if timestamps.is_empty() {
                catalog.history_of(&history)?
            } else if timestamps.len() != history.len() {
                return Err(patchrec::Error::invalid(format!(
                    "--timestamps has {} values for {} history items",
                    timestamps.len(),
                    history.len()
                )));
            } else {
                let mut user = patchrec::UserHistory::new();
                let stream: Vec<patchrec::Interaction> = history
                    .iter()
                    .zip(&timestamps)
                    .map(|(&item_id, &t)| patchrec::Interaction {
                        item_id,
                        timestamp: Some(t),
                    })
                    .collect();
                catalog.append(&mut user, &stream)?;
                user
            };
            let layout = match layout {
                Some(s) => Layout::parse(&s)?,
                None => model.meta().layout.layout,
            };
            let opts = QueryOptions {
                k,
                beam_width,
                layout: Some(LayoutConfig {
                    session_gap,
                    ..LayoutConfig::new(layout, max_items)
                }),
                exclude_history,
                exact,
                ..Default::default()
            };
            let started = std::time::Instant::now();
            let result = patchrec::recommend(&catalog, &user, &opts)?;
            let snap = catalog.snapshot();
            println!(
                "layout {layout}: {} history items, prompt {} positions, compression ratio {:.2}, {:.0} ms",
                result.history_items,
                result.prompt_len,
                result.compression_ratio,
                started.elapsed().as_secs_f64() * 1e3
            );
            for (rank, r) in result.items.iter().enumerate() {
                let title = snap.get(r.item_id).map_or("?", |i| i.title.as_str());
                println!("{:>3}. {:>8.3}  [{}] {title}", rank + 1, r.score, r.item_id);
            }
        }
    }
    Ok(())
}

/// A count that must be at least 1 (`--users 0` would measure nothing and print zeros).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// A probability: a finite number within 0..=1.
fn probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        Ok(p) => Err(format!("{p} is not a probability within 0..=1")),
        Err(e) => Err(e.to_string()),
    }
}

/// Model options from the CLI's `--device` and `--quantize`.
fn model_options(
    device: Option<String>,
    quantize: &Option<String>,
) -> patchrec::Result<ModelOptions> {
    Ok(ModelOptions {
        device,
        quantization: quantize.as_deref().map(str::parse).transpose()?,
    })
}

/// Prints a report's table and writes the report as JSON to `out`, when one is given.
fn emit<T: serde::Serialize>(
    markdown: &str,
    report: &T,
    out: Option<&std::path::Path>,
) -> patchrec::Result<()> {
    print!("{markdown}");
    write_json(report, out)
}

/// Writes a report as JSON to `out`, when one is given.
fn write_json<T: serde::Serialize>(
    report: &T,
    out: Option<&std::path::Path>,
) -> patchrec::Result<()> {
    if let Some(out) = out {
        let json = serde_json::to_string_pretty(report).expect("report serialises");
        std::fs::write(out, json).map_err(|e| patchrec::Error::io(out, e))?;
    }
    Ok(())
}

/// The checkpoint (f32, on the CPU) with the catalogue of `items` registered.
fn serving_catalogue(
    checkpoint: &std::path::Path,
    items: &std::path::Path,
) -> patchrec::Result<Catalog> {
    let model = Model::load(checkpoint, &model_options(None, &None)?)?;
    let catalog = Catalog::new(Arc::new(model))?;
    catalog.add_batch(&read_items_tsv(items)?)?;
    Ok(catalog)
}
