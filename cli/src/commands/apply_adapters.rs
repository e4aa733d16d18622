//! `patchrec apply-adapters`: Merge LoRA adapters (a stage's `NN-<stage>.adapters/`, or its
//! resume state) into their base checkpoint, writing a checkpoint that serves like any
//! other.

use crate::args::at_least_one;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub base: PathBuf,
    #[arg(long)]
    pub adapters: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// The checkpoint's default layout (vanilla, pft-i:M, pft-s:L, stream-s:L,
    /// budget:N); default: the base's
    #[arg(long)]
    pub layout: Option<String>,
    /// History truncation K for --layout
    #[arg(long, default_value_t = 100, value_parser = at_least_one)]
    pub max_history: usize,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    let layout = args
        .layout
        .map(|l| {
            patchrec::history::Layout::parse(&l)
                .map(|l| patchrec::history::LayoutConfig::new(l, args.max_history))
        })
        .transpose()?;
    patchrec::model::adapters::apply(&args.base, &args.adapters, layout, &args.out)?;
    println!("{}", args.out.display());
    Ok(())
}
