//! `patchrec bench-rank`: Time candidate scoring (`rank`) against `recommend` and against
//! scoring each candidate alone, for several candidate counts

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
    /// Extend the catalogue with synthetic titles to this many items
    #[arg(long)]
    pub catalogue_size: Option<usize>,
    #[arg(long, default_value = "pft-s:5")]
    pub layout: String,
    /// History items per user
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    pub history: usize,
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000,10000", value_parser = at_least_one)]
    pub candidates: Vec<usize>,
    /// Users per candidate count
    #[arg(long, default_value_t = 3, value_parser = at_least_one)]
    pub users: usize,
    /// `recommend`'s k
    #[arg(long, default_value_t = 20, value_parser = at_least_one)]
    pub k: usize,
    /// Candidates per user scored alone (the time per candidate, scaled to the count)
    #[arg(long, default_value_t = 20, value_parser = at_least_one)]
    pub alone: usize,
    /// Write the report as JSON here
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    let model = Model::load(&args.checkpoint, &model_options(None, &None)?)?;
    let catalog = Catalog::new(Arc::new(model))?;
    let mut entries = read_items_tsv(&args.items)?;
    if let Some(size) = args.catalogue_size {
        entries = crate::bench::synthetic_catalogue(&entries, size, 42);
    }
    catalog.add_batch(&entries)?;
    let opts = crate::bench::RankBenchOptions {
        layout: Layout::parse(&args.layout)?,
        history: args.history,
        candidates: args.candidates,
        users: args.users,
        k: args.k,
        alone: args.alone,
        seed: 42,
    };
    let report = crate::bench::run_rank_bench(&catalog, &opts)?;
    emit(&report.markdown(), &report, args.out.as_deref())?;
    Ok(())
}
