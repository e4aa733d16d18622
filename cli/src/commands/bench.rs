//! `patchrec bench`: Time queries per layout and history length on a checkpoint (serving
//! benchmark).

use crate::args::at_least_one;
use crate::load::model_options;
use crate::output::emit;
use patchrec::catalog::tsv::read_items_tsv;
use patchrec::Catalog;
use patchrec::Layout;
use patchrec::Model;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// `items.tsv` of the catalogue to register
    #[arg(long)]
    pub items: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "vanilla,pft-i:5,pft-s:5")]
    pub layouts: Vec<String>,
    #[arg(long, value_delimiter = ',', default_value = "20,100,500,1000", value_parser = at_least_one)]
    pub lengths: Vec<usize>,
    /// Queries per layout and length, each with a different random history
    #[arg(long, default_value_t = 20, value_parser = at_least_one)]
    pub users: usize,
    #[arg(long, default_value_t = 20, value_parser = at_least_one)]
    pub k: usize,
    #[arg(long, default_value_t = 20, value_parser = at_least_one)]
    pub beam_width: usize,
    /// Threads querying at once, each with its own users
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub callers: usize,
    /// Rank the whole catalogue exactly instead of by beam search
    #[arg(long)]
    pub exact: bool,
    /// Serve from quantized weights: q8_0, q4_0 or bf16
    #[arg(long)]
    pub quantize: Option<String>,
    /// The device the model runs on: cpu or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Decode through the batching worker, so concurrent callers share forward passes
    #[arg(long)]
    pub batched: bool,
    /// Session gap in seconds for the stream-s layouts; the synthetic users come in
    /// visits of 1-10 items a minute apart, a day between visits
    #[arg(long)]
    pub session_gap: Option<u64>,
    /// Rows a forward pass is filled up to with forced title tokens fed ahead; 0 runs
    /// every beam step in its own pass (single queries only: the batching worker uses
    /// the default)
    #[arg(long, default_value_t = patchrec::decode::DEFAULT_LOOKAHEAD)]
    pub lookahead: usize,
    /// Keep the beams that can no longer reach the top k (they are dropped by default;
    /// the results are the same), to compare the rows they cost (single queries only)
    #[arg(long)]
    pub keep_beams: bool,
    /// Attention on the CPU: `fused` (one pass per row over the keys in place, the
    /// default) or `candle` (composed from candle's ops), to compare the two
    #[arg(long, default_value = "fused")]
    pub attention: String,
    /// f32 projections on the CPU: `panels` (the kernel's panel layout, the default
    /// where the CPU runs it) or `rows` (the weights as stored), to compare the two
    #[arg(long, default_value = "panels")]
    pub weights: String,
    /// Write the report as JSON here
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    let fused = match args.attention.as_str() {
        "fused" => true,
        "candle" => false,
        other => {
            return Err(patchrec::Error::invalid(format!(
                "--attention {other:?}: expected fused or candle"
            )))
        }
    };
    if args.batched && args.lookahead != patchrec::decode::DEFAULT_LOOKAHEAD {
        return Err(patchrec::Error::invalid(format!(
            "--lookahead applies to single queries; the batching worker fills passes up to {} rows",
            patchrec::decode::DEFAULT_LOOKAHEAD
        )));
    }
    let rss = || crate::bench::resident_bytes().unwrap_or(0);
    let before = rss();
    let panels = match args.weights.as_str() {
        "panels" => None,
        "rows" => Some(false),
        other => {
            return Err(patchrec::Error::invalid(format!(
                "--weights {other:?}: expected panels or rows"
            )))
        }
    };
    let mut model = Model::load(
        &args.checkpoint,
        &model_options(Some(args.device.clone()), &args.quantize)?.with_panels(panels),
    )?;
    model.llama_mut().set_fused_attention(fused);
    let loaded = rss();
    let catalog = Arc::new(Catalog::new(Arc::new(model))?);
    let entries = read_items_tsv(&args.items)?;
    catalog.add_batch(&entries)?;
    let memory = crate::bench::MemoryReport {
        model_bytes: loaded.saturating_sub(before),
        catalogue_bytes: rss().saturating_sub(loaded),
        catalogue_items: entries.len(),
    };
    let opts = crate::bench::BenchOptions {
        layouts: args
            .layouts
            .iter()
            .map(|l| Layout::parse(l))
            .collect::<patchrec::Result<_>>()?,
        history_lengths: args.lengths,
        users: args.users,
        k: args.k,
        beam_width: args.beam_width,
        seed: 42,
        callers: args.callers,
        exact: args.exact,
        batched: args.batched,
        session_gap: args.session_gap,
        lookahead: args.lookahead,
        prune: !args.keep_beams,
    };
    let mut report = crate::bench::run_serving_bench(&catalog, &opts)?;
    report.memory = Some(memory);
    emit(&report.markdown(), &report, args.out.as_deref())?;
    Ok(())
}
