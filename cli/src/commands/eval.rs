//! `patchrec eval`: Score a checkpoint on a dataset split by the paper's protocol.

use crate::args::at_least_one;
use crate::load::model_options;
use crate::output::write_json;
use patchrec::Catalog;
use patchrec::Layout;
use patchrec::LayoutConfig;
use patchrec::Model;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    /// The checkpoint (omit with --popularity)
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Dataset folder in the shared format
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "valid")]
    pub split: String,
    /// vanilla, pft-i:M, pft-s:L, stream-s:L or budget:N
    #[arg(long, default_value = "vanilla")]
    pub layout: String,
    /// History truncation K
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    pub max_history: usize,
    #[arg(long, value_parser = at_least_one)]
    pub max_users: Option<usize>,
    #[arg(long, value_parser = at_least_one)]
    pub max_samples: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 20, value_parser = at_least_one)]
    pub beam_width: usize,
    /// Rank the whole catalogue exactly instead of by beam search
    #[arg(long)]
    pub exact: bool,
    /// Serve from quantized weights: q8_0, q4_0 or bf16
    #[arg(long)]
    pub quantize: Option<String>,
    /// The popularity baseline instead of a model
    #[arg(long)]
    pub popularity: bool,
    /// Write the report as JSON here; per-sample results go beside it (`<out>` with the
    /// extension `.samples.jsonl`: `report.json` -> `report.samples.jsonl`) and let an
    /// interrupted run resume
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Row name in the Markdown line
    #[arg(long)]
    pub name: Option<String>,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    let dataset = patchrec::data::Dataset::open(&args.data)?;
    let layout = Layout::parse(&args.layout)?;
    let opts = patchrec::EvalOptions::new(
        patchrec::Split::parse(&args.split)?,
        LayoutConfig::new(layout, args.max_history),
    )
    .with_samples(
        patchrec::data::SampleOptions::default()
            .with_max_history(args.max_history)
            .with_max_users(args.max_users)
            .with_max_samples(args.max_samples)
            .with_seed(args.seed),
    )
    .with_beam_width(args.beam_width)
    .with_exact(args.exact)
    .with_results(args.out.as_ref().map(|o| o.with_extension("samples.jsonl")));
    let report = if args.popularity {
        patchrec::eval::popularity(&dataset, &opts)
    } else {
        let checkpoint = args
            .checkpoint
            .ok_or_else(|| patchrec::Error::invalid("eval needs --checkpoint (or --popularity)"))?;
        let model = Arc::new(Model::load(
            &checkpoint,
            &model_options(None, &args.quantize)?,
        )?);
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
    write_json(&report, args.out.as_deref())?;
    let name = args.name.unwrap_or_else(|| report.layout.clone());
    println!("| model | HR@10 | HR@20 | NDCG@10 | NDCG@20 | CR |");
    println!("|---|---|---|---|---|---|");
    println!("{}", report.markdown_row(&name));
    println!(
        "{} samples, mean prompt {:.1} positions, {:.1} s",
        report.metrics.samples, report.mean_prompt_len, report.wall_seconds
    );
    Ok(())
}
