//! The decode kernel (`src/model/skinny/`) against candle's matmul, side by side, on
//! SmolLM2-135M's weight shapes at the row counts decoding and short prefills produce:
//! GFLOP/s of each and their ratio. The kernel's row limits (`Isa::always_rows`,
//! `Isa::max_rows`) are read off this table. Then the same products over 30 layers of
//! distinct weights (streamed from memory, as a decode step reads them, where the table
//! above finds small weights hot in cache), and the step that follows the output head: its
//! logits to per-row log-probabilities, candle against `decode::logprobs`.
//!
//!   cargo bench --bench skinny            # threads: RAYON_NUM_THREADS, default all cores
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it times one shape only, so
//! the test run checks that it works without spending minutes on the sweep.

use candle_core::Device;
use patchrec_cli::bench::matmul::{decode_matmul_gflops, decode_stack_ms, log_softmax_ms};

/// (name, input width, output width) of SmolLM2-135M's products.
const SHAPES: &[(&str, usize, usize)] = &[
    ("q, o", 576, 576),
    ("k, v", 576, 192),
    ("gate, up", 576, 1536),
    ("down", 1536, 576),
    ("output head", 576, 49_152),
];
const ROWS: &[usize] = &[1, 8, 20, 32, 48, 64, 80, 128];

fn main() -> patchrec::Result<()> {
    let device = Device::Cpu;
    let full = std::env::args().any(|a| a == "--bench");
    // Under `cargo test`: q/o at the beam-search shape of 20 rows only.
    let (shapes, rows): (&[_], &[usize]) = if full {
        (SHAPES, ROWS)
    } else {
        (&SHAPES[..1], &[20])
    };
    println!(
        "decode kernel vs candle matmul, GFLOP/s (best of 5), {} threads",
        rayon::current_num_threads()
    );
    println!("| product | [in -> out] | rows | candle | kernel | kernel / candle |");
    println!("|---|---|---|---|---|---|");
    for &(name, k, n) in shapes {
        for &rows in rows {
            // The head is 113 MB of f32: fewer repeats keep the sweep short.
            let repeats = if n > 10_000 { 3 } else { 5 };
            let (candle, kernel) = decode_matmul_gflops(rows, k, n, repeats, &device)?;
            match kernel {
                Some(ours) => println!(
                    "| {name} | {k} -> {n} | {rows} | {candle:.1} | {ours:.1} | {:.2}x |",
                    ours / candle
                ),
                None => println!("| {name} | {k} -> {n} | {rows} | {candle:.1} | - | - |"),
            }
        }
    }
    // The same products as a decode step meets them: 30 layers' weights, read from memory.
    let layers = if full { 30 } else { 2 };
    println!("\n{layers} layers of projections, each its own weights, ms per pass (best of 5)");
    println!(
        "| rows | weights | candle | kernel | kernel GB/s | kernel GFLOP/s | candle / kernel |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &rows in if full { &[1, 8, 20, 32][..] } else { &[20][..] } {
        let (candle, kernel, bytes) = decode_stack_ms(rows, layers, 5, &device)?;
        let mib = bytes as f64 / (1 << 20) as f64;
        match kernel {
            Some(ms) => println!(
                "| {rows} | {mib:.0} MiB | {candle:.1} | {ms:.1} | {:.1} | {:.1} | {:.2}x |",
                bytes as f64 / ms / 1e6,
                2.0 * (bytes / 4 * rows) as f64 / ms / 1e6,
                candle / ms
            ),
            None => println!("| {rows} | {mib:.0} MiB | {candle:.1} | - | - | - | - |"),
        }
    }
    // What follows the head at each step: its logits to log-probabilities on the host.
    let vocab = SHAPES.last().expect("the head").2;
    println!("\nlog-softmax of a step's logits to host rows, ms (best of 5)");
    println!("| rows | vocab | candle | ours | candle / ours |");
    println!("|---|---|---|---|---|");
    for &rows in if full { &[1, 20, 80][..] } else { &[20][..] } {
        let (candle, ours) = log_softmax_ms(rows, vocab, 5, &device)?;
        println!(
            "| {rows} | {vocab} | {candle:.2} | {ours:.2} | {:.2}x |",
            candle / ours
        );
    }
    Ok(())
}
