//! `patchrec bench-train`: Time training steps on sequences of a fixed length (full
//! fine-tuning or LoRA), in positions per second; `bench/train-speed.sh` runs PyTorch on
//! the same shapes.

use crate::args::at_least_one;
use crate::output::write_json;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    /// The checkpoint to train from (random sequences of --seq-len)
    #[arg(long, required_unless_present = "config")]
    pub checkpoint: Option<PathBuf>,
    /// Instead: the first steps of this training configuration's first stage, on its
    /// own batches, unpacked then packed (--seq-len, --micro-batch, --answer and
    /// --lora-rank come from the configuration)
    #[arg(long, conflicts_with = "checkpoint")]
    pub config: Option<PathBuf>,
    /// Positions per sequence
    #[arg(long, default_value_t = 128, value_parser = at_least_one)]
    pub seq_len: usize,
    /// Sequences per step
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    pub micro_batch: usize,
    /// Positions per sequence the loss is taken at
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    pub answer: usize,
    /// Timed steps (after one untimed step)
    #[arg(long, default_value_t = 3, value_parser = at_least_one)]
    pub steps: usize,
    /// Train LoRA adapters of this rank (alpha = 2 x rank, every projection) instead of
    /// every weight
    #[arg(long)]
    pub lora_rank: Option<usize>,
    /// The device to train on, with --checkpoint: cpu or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Write the report as JSON here
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> patchrec::Result<()> {
    match (&args.config, &args.checkpoint) {
        (Some(config), _) => stage(config, &args),
        (None, Some(checkpoint)) => sequences(checkpoint, &args),
        (None, None) => Err(patchrec::Error::invalid(
            "bench-train needs --checkpoint or --config",
        )),
    }
}

/// The first steps of a configuration's first stage, unpacked then packed.
fn stage(config: &std::path::Path, args: &Args) -> patchrec::Result<()> {
    let cfg = patchrec::train::TrainConfig::from_file(config)?;
    let mut reports = Vec::new();
    for packed in [false, true] {
        let r = crate::bench::run_stage_bench(&cfg, args.steps, packed)?;
        println!(
            "{} {} {} threads {} batch {}: {:.2} samples/s, {:.1} positions/s (steps {:?} s)",
            r.stage,
            r.mode,
            r.passes,
            r.threads,
            r.batch_size,
            r.samples_per_second,
            r.positions_per_second,
            r.step_seconds
        );
        reports.push(r);
    }
    write_json(&reports, args.out.as_deref())
}

/// Steps on random sequences of a fixed length, full fine-tuning or LoRA.
fn sequences(checkpoint: &std::path::Path, args: &Args) -> patchrec::Result<()> {
    let opts = crate::bench::TrainBenchOptions {
        seq_len: args.seq_len,
        micro_batch: args.micro_batch,
        answer: args.answer,
        steps: args.steps,
        lora: args.lora_rank.map(|rank| {
            patchrec::model::LoraConfig::default()
                .with_rank(rank)
                .with_alpha(2.0 * rank as f64)
        }),
        seed: 42,
        device: args.device.clone(),
    };
    let report = crate::bench::run_train_bench(checkpoint, &opts)?;
    println!(
        "{} threads {} seq_len {} micro_batch {}: {:.1} positions/s ({} trained parameters; steps {:?} s)",
        report.mode,
        report.threads,
        report.seq_len,
        report.micro_batch,
        report.positions_per_second,
        report.trained_parameters,
        report.step_seconds
    );
    write_json(&report, args.out.as_deref())
}
