//! `patchrec`: the command line over the library's Rust API. One file per subcommand in
//! `commands/`; the benchmark harness (`bench/`), the SVG plot and the training progress
//! bar live here, so the C library links none of them.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod commands;
mod load;
mod output;
mod progress;

use patchrec_cli::{bench, plot};

/// mimalloc: training allocates and frees tensors of many MB per step, which glibc maps
/// and unmaps (a page fault and a zeroed page for every 4 KiB each time).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Lets mimalloc keep the memory a process frees instead of returning it to the system
/// 10 ms later (its default `purge_delay`), for the training commands: a training step
/// frees and allocates the same tensors of many MB again and again, and each return made
/// the next allocation fault in zeroed pages again. `perf` put 19 % of a packed LoRA step
/// on 2 threads in the kernel's page clearing; keeping the memory made SmolLM2's
/// stream-s:5 stage 1.07-1.30x faster in paired runs (docs/PERFORMANCE.md, "Training
/// throughput"). The cost is that the process keeps its peak footprint.
/// `PATCHREC_KEEP_FREED=0` leaves mimalloc's default, to compare the two.
fn keep_freed_memory() {
    if std::env::var("PATCHREC_KEEP_FREED").is_ok_and(|v| v == "0") {
        return;
    }
    // `mi_option_set` and `mi_option_purge_delay` (15 in the `mi_option_t` enum of the
    // mimalloc v2 and v3 headers that libmimalloc-sys 0.1.49 builds), declared here since
    // libmimalloc-sys exports neither without its `extended` feature.
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;
    unsafe extern "C" {
        fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
    }
    // SAFETY: the linked mimalloc defines this function; setting an option is thread-safe
    // and affects only when freed memory is returned.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// Stops candle's element-wise worker pool from spinning after each operation, for the
/// training commands. Between element-wise operations the pool's workers spin (25,000
/// pauses by default) before they sleep, while the matrix products run on rayon's
/// threads: on 2 cores the spinning worker takes a core from them. Paired runs of
/// `RAYON_NUM_THREADS=2 patchrec bench-train --config bench/smollm2-stream-s5.toml`
/// measured 1.49 -> 1.82 samples/s unpacked and 3.55 -> 3.75 packed with no spinning
/// (docs/PERFORMANCE.md, "Training throughput"). A value already set is kept, so
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT=25000` compares the two.
fn no_pool_spinning() {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        // Set before the pool starts (on the first large element-wise operation) and
        // while `main` is the only thread.
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "0");
    }
}

#[derive(Parser)]
#[command(
    name = "patchrec",
    version,
    about = "PatchRec LLM sequential recommendation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a from-scratch checkpoint: a BPE tokenizer trained on the catalogue's
    /// titles and the prompt text, and a randomly initialised Llama.
    Init(commands::init::Args),
    /// Convert a Llama-architecture GGUF file into a checkpoint directory.
    Convert(commands::convert::Args),
    /// Train: the stages of a TOML configuration (see docs/TRAINING.md).
    Train(commands::train::Args),
    /// Merge LoRA adapters (a stage's `NN-<stage>.adapters/`, or its resume state) into
    /// their base checkpoint, writing a checkpoint that serves like any other.
    ApplyAdapters(commands::apply_adapters::Args),
    /// Score a checkpoint on a dataset split by the paper's protocol.
    Eval(commands::eval::Args),
    /// Draw HR@20 against compression ratio for evaluation reports (`eval --out`) as SVG.
    Plot(commands::plot::Args),
    /// Time queries per layout and history length on a checkpoint (serving benchmark).
    Bench(commands::bench::Args),
    /// Time candidate scoring (`rank`) against `recommend` and against scoring each
    /// candidate alone, for several candidate counts
    BenchRank(commands::bench_rank::Args),
    /// A query's time with allow- and deny-lists covering fractions of the catalogue
    BenchFilters(commands::bench_filters::Args),
    /// Registration time, memory per item and query time for catalogues grown with
    /// synthetic titles to each size
    BenchCatalogue(commands::bench_catalogue::Args),
    /// Time appends+queries of many users in random order under a catalogue KV budget
    /// holding a fraction of their KV, beside the same traffic without a budget
    BenchUsers(commands::bench_users::Args),
    /// Time training steps on sequences of a fixed length (full fine-tuning or LoRA), in
    /// positions per second; `bench/train-speed.sh` runs PyTorch on the same shapes.
    BenchTrain(commands::bench_train::Args),
    /// Export prompts (input embeddings), titles and our answers and timings for the peer
    /// benchmarks in bench/ (`prompts.safetensors`, `prompts.json`).
    ExportPrompts(commands::export_prompts::Args),
    /// Write a synthetic dataset in the shared format over a catalogue (demos, tests).
    Synth(commands::synth::Args),
    /// Recommend the next items for one history.
    Recommend(commands::recommend::Args),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> patchrec::Result<()> {
    match cli.command {
        Command::Init(args) => commands::init::run(args),
        Command::Convert(args) => commands::convert::run(args),
        Command::Train(args) => {
            keep_freed_memory();
            no_pool_spinning();
            commands::train::run(args)
        }
        Command::ApplyAdapters(args) => commands::apply_adapters::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Plot(args) => commands::plot::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::BenchRank(args) => commands::bench_rank::run(args),
        Command::BenchFilters(args) => commands::bench_filters::run(args),
        Command::BenchCatalogue(args) => commands::bench_catalogue::run(args),
        Command::BenchUsers(args) => commands::bench_users::run(args),
        Command::BenchTrain(args) => {
            keep_freed_memory();
            no_pool_spinning();
            commands::bench_train::run(args)
        }
        Command::ExportPrompts(args) => commands::export_prompts::run(args),
        Command::Synth(args) => commands::synth::run(args),
        Command::Recommend(args) => commands::recommend::run(args),
    }
}
