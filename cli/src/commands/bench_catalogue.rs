//! `patchrec bench-catalogue`: Registration time, memory per item and query time for
//! catalogues grown with synthetic titles to each size

use crate::args::at_least_one;
use crate::load::model_options;
use crate::output::emit;
use patchrec::catalog::tsv::read_items_tsv;
use patchrec::Layout;
use patchrec::Model;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// `items.tsv` of the base titles (the users' histories come from them)
    #[arg(long)]
    pub items: PathBuf,
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000", value_parser = at_least_one)]
    pub sizes: Vec<usize>,
    #[arg(long, default_value = "pft-s:5")]
    pub layout: String,
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    pub history: usize,
    #[arg(long, default_value_t = 3, value_parser = at_least_one)]
    pub users: usize,
    #[arg(long, default_value_t = 20, value_parser = at_least_one)]
    pub k: usize,
    /// Time exact ranking up to this catalogue size
    #[arg(long, default_value_t = 10_000)]
    pub exact_max: usize,
    /// Items per registration call
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one)]
    pub batch: usize,
    /// How the catalogues keep their item patches: on-demand (the library's default),
    /// f32 or f16
    #[arg(long, default_value = "on-demand")]
    pub patches: String,
    /// Write the report as JSON here
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    let model = Arc::new(Model::load(&args.checkpoint, &model_options(None, &None)?)?);
    let opts = crate::bench::CatalogueBenchOptions {
        sizes: args.sizes,
        layout: Layout::parse(&args.layout)?,
        history: args.history,
        users: args.users,
        k: args.k,
        exact_max: args.exact_max,
        batch: args.batch,
        patches: args.patches.parse()?,
        seed: 42,
    };
    let report = crate::bench::run_catalogue_bench(&model, &read_items_tsv(&args.items)?, &opts)?;
    emit(&report.markdown(), &report, args.out.as_deref())?;
    Ok(())
}
