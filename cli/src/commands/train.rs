//! `patchrec train`: Train: the stages of a TOML configuration (see docs/TRAINING.md).

use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    pub config: PathBuf,
    /// Continue an interrupted run from its output folder.
    #[arg(long)]
    pub resume: bool,
    /// Train nothing: print each stage's samples, steps and forward-pass positions,
    /// packed and unpacked.
    #[arg(long, conflicts_with = "resume")]
    pub plan: bool,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    let cfg = patchrec::train::TrainConfig::from_file(&args.config)?;
    if args.plan {
        return print_plan(&cfg);
    }
    // On a terminal, a progress bar drawn from the library's callback; otherwise the
    // library's own line every few seconds (logs stay readable).
    let mut bar = std::io::stderr()
        .is_terminal()
        .then(crate::progress::StageBar::default);
    let outcome = patchrec::train::train(
        &cfg,
        &patchrec::train::TrainOptions::default()
            .with_resume(args.resume)
            .with_quiet(bar.is_some()),
        &mut |p| {
            if let Some(bar) = &mut bar {
                bar.show(p);
            }
            patchrec::train::Control::Continue
        },
    )?;
    if let Some(ckpt) = outcome.checkpoint {
        println!("final checkpoint: {}", ckpt.display());
    }
    Ok(())
}

/// Each stage's samples, steps and forward-pass positions, packed and unpacked.
fn print_plan(cfg: &patchrec::train::TrainConfig) -> patchrec::Result<()> {
    for p in patchrec::train::plan::plan(cfg)? {
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
    Ok(())
}
