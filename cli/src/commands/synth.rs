//! `patchrec synth`: Write a synthetic dataset in the shared format over a catalogue
//! (demos, tests).

use crate::args::at_least_one;
use crate::args::probability;
use patchrec::catalog::tsv::read_items_tsv;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    /// `items.tsv` (item_id<TAB>title)
    #[arg(long)]
    pub items: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 300, value_parser = at_least_one)]
    pub users: usize,
    /// Interactions per user
    #[arg(long, default_value_t = 30, value_parser = at_least_one)]
    pub len: usize,
    /// Probability that the next item is random rather than the catalogue's next
    #[arg(long, default_value_t = 0.2, value_parser = probability)]
    pub jump: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    let catalog = read_items_tsv(&args.items)?;
    patchrec::data::synthetic::write_synthetic(
        &args.out, &catalog, args.users, args.len, args.jump, args.seed,
    )?;
    println!(
        "wrote {} ({} users x {} interactions)",
        args.out.display(),
        args.users,
        args.len
    );
    Ok(())
}
