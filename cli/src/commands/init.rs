//! `patchrec init`: Create a from-scratch checkpoint: a BPE tokenizer trained on the
//! catalogue's titles and the prompt text, and a randomly initialised Llama. With
//! `--like`, random weights in another checkpoint's shapes, with its tokenizer and prompt
//! (a stand-in that costs what the real model costs, for benchmarks on machines that
//! cannot hold the real weights).

use std::path::{Path, PathBuf};

use patchrec::catalog::tsv::read_items_tsv;
use patchrec::init::init_model;
use patchrec::init::InitOptions;
use patchrec::model::{Llama, LlamaConfig, Model, PatchrecMeta};
use patchrec::text::{ChatFormat, PromptTemplate, TextTokenizer};

#[derive(clap::Args)]
pub struct Args {
    /// `items.tsv` (item_id<TAB>title)
    #[arg(long, required_unless_present = "like")]
    pub items: Option<PathBuf>,
    /// Instead of a tokenizer trained on --items: the shapes (config.json), tokenizer and
    /// prompt of this checkpoint, whose weights are not read; the shape options below
    /// override its shapes, and --vocab-size pads its vocabulary
    #[arg(long, conflicts_with_all = ["items", "prompt"])]
    pub like: Option<PathBuf>,
    /// `prompt.txt` (system message, instruction with [HISTORY_SEQUENCE]); default:
    /// the paper's MovieLens prompt
    #[arg(long)]
    pub prompt: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
    // The shape options default to `InitOptions::default()` (as in a training
    // configuration), or with --like to that checkpoint's shapes.
    /// Tokens in the vocabulary [default: 2048, or the --like checkpoint's]
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// Width [default: 128, or the --like checkpoint's]
    #[arg(long)]
    pub hidden: Option<usize>,
    /// [default: 4, or the --like checkpoint's]
    #[arg(long)]
    pub layers: Option<usize>,
    /// Attention heads [default: 4, or the --like checkpoint's]
    #[arg(long)]
    pub heads: Option<usize>,
    /// Key-value heads [default: 2, or the --like checkpoint's]
    #[arg(long)]
    pub kv_heads: Option<usize>,
    /// The MLP's width [default: a Llama's for the width, or the --like checkpoint's]
    #[arg(long)]
    pub intermediate: Option<usize>,
    #[arg(long, default_value_t = InitOptions::default().seed)]
    pub seed: u64,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    let model = match (&args.like, &args.items) {
        (Some(like), _) => random_like(like, &args)?,
        (None, Some(items)) => from_titles(items, &args)?,
        (None, None) => return Err(patchrec::Error::invalid("init needs --items or --like")),
    };
    model.save(&args.out)?;
    let cfg = model.llama().config();
    println!(
        "wrote {} (vocabulary {}, hidden {}, {} layers)",
        args.out.display(),
        cfg.vocab_size,
        cfg.hidden_size,
        cfg.num_hidden_layers
    );
    Ok(())
}

fn from_titles(items: &Path, args: &Args) -> patchrec::Result<Model> {
    let catalog = read_items_tsv(items)?;
    let template = match &args.prompt {
        Some(p) => {
            let text = patchrec::files::read_text(p, patchrec::files::MAX_JSON_BYTES)?;
            PromptTemplate::from_prompt_text(&text, ChatFormat::ChatMl)?
        }
        None => PromptTemplate::movielens(ChatFormat::ChatMl),
    };
    let titles: Vec<String> = catalog.into_iter().map(|(_, t)| t).collect();
    let d = InitOptions::default();
    let opts = InitOptions::default()
        .with_vocab_size(args.vocab_size.unwrap_or(d.vocab_size))
        .with_hidden_size(args.hidden.unwrap_or(d.hidden_size))
        .with_num_layers(args.layers.unwrap_or(d.num_layers))
        .with_num_heads(args.heads.unwrap_or(d.num_heads))
        .with_num_kv_heads(args.kv_heads.unwrap_or(d.num_kv_heads))
        .with_intermediate_size(args.intermediate)
        .with_seed(args.seed);
    init_model(&titles, template, &opts)
}

fn random_like(dir: &Path, args: &Args) -> patchrec::Result<Model> {
    let mut cfg = LlamaConfig::from_file(&dir.join("config.json"))?;
    let tokenizer = TextTokenizer::from_file(&dir.join("tokenizer.json"))?;
    let meta = PatchrecMeta::from_file(&dir.join("patchrec.json"))?;
    if args.hidden.is_some() || args.heads.is_some() {
        cfg.head_dim = None;
    }
    let set = |field: &mut usize, value: Option<usize>| {
        if let Some(v) = value {
            *field = v;
        }
    };
    set(&mut cfg.hidden_size, args.hidden);
    set(&mut cfg.num_hidden_layers, args.layers);
    set(&mut cfg.num_attention_heads, args.heads);
    set(&mut cfg.intermediate_size, args.intermediate);
    if let Some(kv) = args.kv_heads {
        cfg.num_key_value_heads = Some(kv);
    }
    if let Some(v) = args.vocab_size {
        if v < tokenizer.vocab_size() {
            return Err(patchrec::Error::invalid(format!(
                "--vocab-size {v}: the tokenizer of {} has {} tokens",
                dir.display(),
                tokenizer.vocab_size()
            )));
        }
        cfg.vocab_size = v;
    }
    let llama = Llama::random(cfg, args.seed, &candle_core::Device::Cpu)?;
    Model::from_parts(llama, tokenizer, meta)
}
