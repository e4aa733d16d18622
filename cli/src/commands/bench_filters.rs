//! `patchrec bench-filters`: A query's time with allow- and deny-lists covering fractions
//! of the catalogue

use crate::args::at_least_one;
use crate::load::serving_catalogue;
use crate::output::emit;
use patchrec::Layout;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub items: PathBuf,
    #[arg(long, default_value = "pft-s:5")]
    pub layout: String,
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    pub history: usize,
    #[arg(long, default_value_t = 3, value_parser = at_least_one)]
    pub users: usize,
    #[arg(long, default_value_t = 20, value_parser = at_least_one)]
    pub k: usize,
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.5,0.99")]
    pub fractions: Vec<f64>,
    /// Write the report as JSON here
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    let catalog = serving_catalogue(&args.checkpoint, &args.items)?;
    let opts = crate::bench::FiltersBenchOptions {
        layout: Layout::parse(&args.layout)?,
        history: args.history,
        users: args.users,
        k: args.k,
        fractions: args.fractions,
        seed: 42,
    };
    let report = crate::bench::run_filters_bench(&catalog, &opts)?;
    emit(&report.markdown(), &report, args.out.as_deref())?;
    Ok(())
}
