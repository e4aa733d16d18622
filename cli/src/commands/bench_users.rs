//! `patchrec bench-users`: Time appends+queries of many users in random order under a
//! catalogue KV budget holding a fraction of their KV, beside the same traffic without a
//! budget

use crate::args::at_least_one;
use crate::load::serving_catalogue;
use crate::output::emit;
use patchrec::Layout;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// `items.tsv` of the catalogue to register
    #[arg(long)]
    pub items: PathBuf,
    #[arg(long, default_value = "stream-s:5")]
    pub layout: String,
    #[arg(long, default_value_t = 10_000, value_parser = at_least_one)]
    pub users: usize,
    /// History items each user starts with
    #[arg(long, default_value_t = 50, value_parser = at_least_one)]
    pub history: usize,
    /// Appends+queries timed, each by a user drawn at random
    #[arg(long, default_value_t = 20_000, value_parser = at_least_one)]
    pub queries: usize,
    /// The budget as a fraction of all users' KV
    #[arg(long, default_value_t = 0.1)]
    pub budget_fraction: f64,
    #[arg(long, default_value_t = 20, value_parser = at_least_one)]
    pub k: usize,
    /// Write the report as JSON here
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    let catalog = serving_catalogue(&args.checkpoint, &args.items)?;
    let opts = crate::bench::UsersBenchOptions {
        layout: Layout::parse(&args.layout)?,
        users: args.users,
        history: args.history,
        queries: args.queries,
        budget_fraction: args.budget_fraction,
        k: args.k,
        seed: 42,
    };
    let report = crate::bench::run_users_bench(&catalog, &opts)?;
    emit(&report.markdown(), &report, args.out.as_deref())?;
    Ok(())
}
