//! The decode kernel (`src/model/skinny/`) against candle's matmul, side by side, on
//! SmolLM2-135M's weight shapes at the row counts decoding and short prefills produce:
//! GFLOP/s of each and their ratio. The kernel's row limits (`Isa::always_rows`,
//! `Isa::max_rows`) are read off this table. Then the same products over 30 layers of
//! distinct weights (streamed from memory, as a decode step reads them, where the table
//! above finds small weights hot in cache), and the step that follows the output head: its
//! logits to per-row log-probabilities, candle against `decode::logprobs`.
//!
//!   cargo bench --bench skinny            # threads: RAYON_NUM_THREADS, default all cores
//!   cargo bench --bench skinny -- panels  # only the tables whose title holds "panels"
//!
//! Under `cargo test --all-targets` (no `--bench` argument) it times one shape only, so
//! the test run checks that it works without spending minutes on the sweep.

use candle_core::Device;
use patchrec::model::skinny::BlockFormat;
use patchrec_cli::bench::matmul::{
    decode_block_gflops, decode_matmul_gflops, decode_panel_gflops, decode_stack_blocks_ms,
    decode_stack_ms, decode_stack_panels_ms, head_log_probs_ms, log_softmax_ms,
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
    // A word that picks the tables to run (by their titles); all without one.
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let wanted = |title: &str| only.as_deref().is_none_or(|w| title.contains(w));
    let threads = rayon::current_num_threads();
    let roof = roofline::measure();
    println!(
        "machine limits, {threads} threads: read {:.1} GB/s; f32 FMA {}; int8 VNNI {}\n",
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
    // The head is 113 MB of f32: fewer repeats keep the sweep short.
    let repeats = |n: usize| if n > 10_000 { 3 } else { 5 };
    let layers = if full { 30 } else { 2 };
    let stack_rows: &[usize] = if full { &[1, 8, 20, 32] } else { &[20] };

    let title = format!("decode kernel vs candle matmul, GFLOP/s (best of 5), {threads} threads");
    if wanted(&title) {
        println!("{title}");
        println!("| product | [in -> out] | rows | candle | kernel | kernel / candle |");
        println!("|---|---|---|---|---|---|");
        for &(name, k, n) in shapes {
            for &rows in rows {
                let (candle, kernel) = decode_matmul_gflops(rows, k, n, repeats(n), &device)?;
                match kernel {
                    Some(ours) => println!(
                        "| {name} | {k} -> {n} | {rows} | {candle:.1} | {ours:.1} | {:.2}x |",
                        ours / candle
                    ),
                    None => println!("| {name} | {k} -> {n} | {rows} | {candle:.1} | - | - |"),
                }
            }
        }
    }
    // The same products as a decode step meets them: 30 layers' weights, read from memory.
    let title =
        format!("{layers} layers of projections, each its own weights, ms per pass (best of 5)");
    if wanted(&title) {
        println!("\n{title}");
        println!(
            "| rows | weights | candle | kernel | kernel GB/s | kernel GFLOP/s | candle / kernel |"
        );
        println!("|---|---|---|---|---|---|---|");
        for &rows in stack_rows {
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
    }
    // f32 weights as stored against the same weights in panels, and bf16 panels.
    let title = "f32 weights in rows vs in panels, and bf16 panels, GFLOP/s (best of 5)";
    if wanted(title) {
        println!("\n{title}");
        println!(
            "| product | [in -> out] | rows | rows (f32) | panels (f32) | panels (bf16) | f32 panels / rows | bf16 / f32 panels |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for &(name, k, n) in shapes {
            for &rows in rows {
                let r = decode_panel_gflops(rows, k, n, repeats(n), &device)?;
                println!(
                    "| {name} | {k} -> {n} | {rows} | {} | {} | {} | {} | {} |",
                    cell(r.rows),
                    cell(r.f32),
                    cell(r.bf16),
                    ratio(r.f32, r.rows),
                    ratio(r.bf16, r.f32)
                );
            }
        }
    }
    let title = format!(
        "{layers} layers of projections in rows and in panels, ms per pass (best of 5); limit: \
         the larger of bytes over the read bandwidth and multiply-adds over the f32 FMA rate \
         (bf16: twice it)"
    );
    if wanted(&title) {
        println!("\n{title}");
        println!(
            "| rows | rows (f32) | panels (f32) | f32 limit | panels / limit | panels (bf16) | bf16 limit | bf16 / limit | rows / f32 panels | f32 / bf16 panels |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        let fma = roof.fma_gflops.unwrap_or(f64::NAN);
        for &r in stack_rows {
            let (t, bytes, macs) = decode_stack_panels_ms(r, layers, 5, &device)?;
            let f32_limit = roof.limit_ms(bytes, macs, fma);
            let bf16_limit = roof.limit_ms(bytes / 2, macs, 2.0 * fma);
            println!(
                "| {r} | {} | {} | {f32_limit:.2} | {} | {} | {bf16_limit:.2} | {} | {} | {} |",
                cell(t.rows),
                cell(t.f32),
                ratio(t.f32, Some(f32_limit)),
                cell(t.bf16),
                ratio(t.bf16, Some(bf16_limit)),
                ratio(t.rows, t.f32),
                ratio(t.f32, t.bf16)
            );
        }
    }
    // Q8_0 and Q4_0: the row layout's f32 multiply-adds against the interleaved layout's
    // int8 ones.
    for format in [BlockFormat::Q8_0, BlockFormat::Q4_0] {
        let name = format!("{format:?}");
        let title = format!(
            "{name} weights, GFLOP/s (best of 5): row layout (f32 FMAs) vs interleaved (int8 VNNI)"
        );
        if wanted(&title) {
            println!("\n{title}");
            println!("| product | [in -> out] | rows | row layout | int8 | int8 / row layout |");
            println!("|---|---|---|---|---|---|");
            for &(product, k, n) in shapes {
                for &rows in rows {
                    let (panel, int8) =
                        decode_block_gflops(format, rows, k, n, repeats(n), &device)?;
                    let int8_cells = match int8 {
                        Some(int8) => format!("{int8:.1} | {:.2}x", int8 / panel),
                        None => "- | -".into(),
                    };
                    println!("| {product} | {k} -> {n} | {rows} | {panel:.1} | {int8_cells} |");
                }
            }
        }
        let title = format!(
            "{layers} layers of projections in {name}, ms per pass (best of 5); limit: the \
             larger of bytes read over the read bandwidth and multiply-adds over the rate of \
             the instructions used"
        );
        if wanted(&title) {
            println!("\n{title}");
            println!(
                "| rows | row layout | its limit | int8 | its limit | int8 / limit | row layout / int8 |"
            );
            println!("|---|---|---|---|---|---|---|");
            for &r in if full {
                &[1, 8, 20, 32, 64, 128][..]
            } else {
                &[20][..]
            } {
                let t = decode_stack_blocks_ms(format, r, layers, 5, &device)?;
                let fma = roof.fma_gflops.unwrap_or(f64::NAN);
                let panel_limit = roof.limit_ms(t.rows_bytes, t.macs, fma);
                let int8_cells = match (t.int8_ms, roof.vnni_gops) {
                    (Some(ms), Some(vnni)) => {
                        let limit = roof.limit_ms(t.int8_bytes, t.macs, vnni);
                        format!(
                            "{ms:.2} | {limit:.2} | {:.2}x | {:.2}x",
                            ms / limit,
                            t.rows_ms / ms
                        )
                    }
                    _ => "- | - | - | -".into(),
                };
                println!(
                    "| {r} | {:.2} | {panel_limit:.2} | {int8_cells} |",
                    t.rows_ms
                );
            }
        }
    }
    // What follows the head at each step: its logits to log-probabilities on the host.
    let title = "log-softmax of a step's logits to host rows, ms (best of 5)";
    if wanted(title) {
        let vocab = SHAPES.last().expect("the head").2;
        println!("\n{title}");
        println!("| rows | vocab | candle | ours | candle / ours |");
        println!("|---|---|---|---|---|");
        for &rows in if full { &[1, 20, 80][..] } else { &[20][..] } {
            let (candle, ours) = log_softmax_ms(rows, vocab, 5, &device)?;
            println!(
                "| {rows} | {vocab} | {candle:.2} | {ours:.2} | {:.2}x |",
                candle / ours
            );
        }
    }
    // Attention: a row at a time (one query head at a time, or a KV head's together), or
    // the rows that share keys as the lanes of a vector.
    let title = "attention per layer: a row at a time (one query head, a KV head's together) \
                 vs rows as lanes, us (best of 5)";
    if wanted(title) {
        use patchrec::model::AttentionPath as Path;
        println!("\n{title}");
        println!(
            "| pass | rows | prompt | tree nodes | one head | together | lanes | together / lanes |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        let passes: &[(&str, usize, usize, usize)] = if full {
            &[
                ("decode", 20, 127, 6),
                ("decode", 32, 127, 6),
                ("decode", 20, 482, 6),
                ("decode", 160, 124, 6),
                ("prefill", 104, 23, 0),
                ("prefill", 459, 23, 0),
            ]
        } else {
            &[("decode", 20, 127, 6)]
        };
        for &(pass, rows, prefix, nodes) in passes {
            let us = |path| patchrec::model::attention_bench_us(rows, prefix, nodes, path, 5);
            let (one, together, lanes) =
                (us(Path::OneHead)?, us(Path::Grouped)?, us(Path::Blocked)?);
            println!(
                "| {pass} | {rows} | {prefix} | {nodes} | {one:.0} | {together:.0} | {lanes:.0} | \
                 {:.2}x |",
                together / lanes
            );
        }
    }
    // The head and that step together: logits written out and reduced, or fused.
    let title =
        "output head to a step's log-probabilities, logits written out vs fused, ms (best of 5)";
    if wanted(title) {
        let (_, k, vocab) = *SHAPES.last().expect("the head");
        println!("\n{title}");
        println!("| weights | rows | written out | fused | written / fused |");
        println!("|---|---|---|---|---|");
        let formats = [None, Some(BlockFormat::Q8_0), Some(BlockFormat::Q4_0)];
        let formats = if full { &formats[..] } else { &formats[..2] };
        for &format in formats {
            if format.is_some() && !patchrec::model::skinny::int8_kernel() {
                continue;
            }
            let name = format.map_or("f32".into(), |f| format!("{f:?}"));
            for &rows in if full {
                &[20, 32, 80, 160, 320][..]
            } else {
                &[20][..]
            } {
                let (written, fused) = head_log_probs_ms(rows, k, vocab, format, 5, &device)?;
                println!(
                    "| {name} | {rows} | {written:.2} | {} | {} |",
                    fused.map_or("-".into(), |f| format!("{f:.2}")),
                    ratio(Some(written), fused)
                );
            }
        }
    }
    Ok(())
}

/// A rate or a time with one decimal, or "-" where it was not measured.
fn cell(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.1}"))
}

/// `a / b` as "1.23x", or "-" where either is missing.
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}
