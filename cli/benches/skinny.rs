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
use patchrec_cli::bench::matmul::{
    decode_matmul_gflops, decode_q8_gflops, decode_stack_ms, decode_stack_q8_ms, log_softmax_ms,
};
use patchrec_cli::bench::roofline;

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
    let roof = roofline::measure();
    println!(
        "machine limits, {} threads: read {:.1} GB/s; f32 FMA {}; int8 VNNI {}\n",
        rayon::current_num_threads(),
        roof.read_gbps,
        roof.fma_gflops
            .map_or("-".into(), |r| format!("{r:.0} GFLOP/s")),
        roof.vnni_gops
            .map_or("-".into(), |r| format!("{r:.0} GOP/s")),
    );
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
    // Q8_0: the row layout's f32 multiply-adds against the interleaved layout's int8 ones.
    println!(
        "\nQ8_0 weights, GFLOP/s (best of 5): row layout (f32 FMAs) vs interleaved (int8 VNNI)"
    );
    println!("| product | [in -> out] | rows | row layout | int8 | int8 / row layout |");
    println!("|---|---|---|---|---|---|");
    for &(name, k, n) in shapes {
        for &rows in rows {
            let repeats = if n > 10_000 { 3 } else { 5 };
            let (panel, int8) = decode_q8_gflops(rows, k, n, repeats, &device)?;
            match int8 {
                Some(int8) => println!(
                    "| {name} | {k} -> {n} | {rows} | {panel:.1} | {int8:.1} | {:.2}x |",
                    int8 / panel
                ),
                None => println!("| {name} | {k} -> {n} | {rows} | {panel:.1} | - | - |"),
            }
        }
    }
    println!(
        "\n{layers} layers of projections in Q8_0, ms per pass (best of 5); limit: the larger of \
         bytes read over the read bandwidth and multiply-adds over the rate of the \
         instructions used"
    );
    println!(
        "| rows | row layout | its limit | int8 | its limit | int8 / limit | row layout / int8 |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &r in if full {
        &[1, 8, 20, 32, 64, 128][..]
    } else {
        &[20][..]
    } {
        let t = decode_stack_q8_ms(r, layers, 5, &device)?;
        let fma = roof.fma_gflops.unwrap_or(f64::NAN);
        let panel_limit = roof.limit_ms(t.rows_bytes, t.macs, fma);
        match (t.int8_ms, roof.vnni_gops) {
            (Some(ms), Some(vnni)) => {
                let limit = roof.limit_ms(t.int8_bytes, t.macs, vnni);
                println!(
                    "| {r} | {:.2} | {panel_limit:.2} | {ms:.2} | {limit:.2} | {:.2}x | {:.2}x |",
                    t.rows_ms,
                    ms / limit,
                    t.rows_ms / ms
                )
            }
            _ => println!(
                "| {r} | {:.2} | {panel_limit:.2} | - | - | - | - |",
                t.rows_ms
            ),
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
