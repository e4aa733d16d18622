//! The serving benchmark: for histories of several lengths and each layout, the time of
//! one query (prompt building, prefill, beam decoding) over many synthetic users, its
//! percentiles, the prompt's size, and prefill's rate against the measured matmul rate.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::matmul::matmul_gflops;
use crate::catalog::Catalog;
use crate::decode::{beam_search_timed, SearchOptions};
use crate::error::{Error, Result};
use crate::history::Layout;
use crate::model::Model;
use crate::prompt::build_prompt;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub layouts: Vec<Layout>,
    /// History lengths to measure (all shown: K = the length).
    pub history_lengths: Vec<usize>,
    /// Queries per (layout, length), each a different random history.
    pub users: usize,
    pub k: usize,
    pub beam_width: usize,
    pub seed: u64,
}

/// Median and 95th percentile, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p95_ms: f64,
}

impl Percentiles {
    fn of(seconds: &mut [f64]) -> Self {
        seconds.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((seconds.len() - 1) as f64 * q).round() as usize;
            seconds[i] * 1e3
        };
        Percentiles {
            p50_ms: at(0.5),
            p95_ms: at(0.95),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub layout: String,
    pub history: usize,
    pub prompt_positions: f64,
    pub compression_ratio: f64,
    pub total: Percentiles,
    pub prefill: Percentiles,
    pub decode: Percentiles,
    pub decode_steps: f64,
    /// Prefill FLOPs per second (matmuls and attention, the cached head excluded).
    pub prefill_gflops: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub threads: usize,
    /// Measured rate of an `[512, hidden] x [hidden, intermediate]` matmul.
    pub matmul_gflops: f64,
    pub rows: Vec<BenchRow>,
}

/// FLOPs of prefilling `new` positions after `past` ones: 2 per weight per position in
/// the decoder layers, plus attention's two products.
fn prefill_flops(model: &Model, new: usize, past: usize) -> f64 {
    let c = model.llama().config();
    let (d, hd, h, kv, ff) = (
        c.hidden_size,
        c.head_dim(),
        c.num_attention_heads,
        c.num_kv_heads(),
        c.intermediate_size,
    );
    let weights = d * h * hd * 2 + 2 * d * kv * hd + 3 * d * ff;
    // Scores and weighted values are computed for every (query, key) pair, masked or not.
    let per_layer =
        2.0 * (new * weights) as f64 + 4.0 * (new as f64) * ((past + new) as f64) * (h * hd) as f64;
    per_layer * c.num_hidden_layers as f64
}

pub fn run_serving_bench(catalog: &Catalog, opts: &BenchOptions) -> Result<BenchReport> {
    let model = catalog.model();
    let snap = catalog.snapshot();
    if snap.is_empty() {
        return Err(Error::invalid("the benchmark needs a non-empty catalogue"));
    }
    let cfg = model.llama().config();
    let matmul = matmul_gflops(
        512,
        cfg.hidden_size,
        cfg.intermediate_size,
        5,
        model.device(),
    )?;
    let search = SearchOptions {
        k: opts.k,
        beam_width: opts.beam_width,
        exclude: vec![],
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let ids: Vec<u64> = snap.items().map(|i| i.id).collect();
    let mut rows = Vec::new();
    for &len in &opts.history_lengths {
        // The same users for every layout, so the layouts compare on equal histories.
        let users: Vec<Vec<u64>> = (0..opts.users.max(1))
            .map(|_| {
                (0..len)
                    .map(|_| ids[rng.random_range(0..ids.len())])
                    .collect()
            })
            .collect();
        for &layout in &opts.layouts {
            // Warm-up: the head cache and allocator pools.
            let warm = build_prompt(model, &snap, &users[0], layout)?;
            beam_search_timed(model, &snap, &warm, &search)?;
            let (mut total, mut prefill, mut decode) = (vec![], vec![], vec![]);
            let (mut positions, mut steps, mut cr, mut flops) = (0.0, 0.0, 0.0, 0.0);
            for history in &users {
                let started = Instant::now();
                let prompt = build_prompt(model, &snap, history, layout)?;
                let (_, timing) = beam_search_timed(model, &snap, &prompt, &search)?;
                total.push(started.elapsed().as_secs_f64());
                prefill.push(timing.prefill_seconds);
                decode.push(timing.decode_seconds);
                positions += prompt.len as f64;
                steps += timing.decode_steps as f64;
                cr += prompt.compression_ratio;
                flops += prefill_flops(model, prompt.len - prompt.shared_head, prompt.shared_head);
            }
            let n = users.len() as f64;
            let prefill_sum: f64 = prefill.iter().sum();
            rows.push(BenchRow {
                layout: layout.to_string(),
                history: len,
                prompt_positions: positions / n,
                compression_ratio: cr / n,
                total: Percentiles::of(&mut total),
                prefill: Percentiles::of(&mut prefill),
                decode: Percentiles::of(&mut decode),
                decode_steps: steps / n,
                prefill_gflops: flops / prefill_sum / 1e9,
            });
        }
    }
    Ok(BenchReport {
        threads: rayon::current_num_threads(),
        matmul_gflops: matmul,
        rows,
    })
}

impl BenchReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "matmul rate: {:.1} GFLOP/s ({} threads)\n\n\
             | layout | history | prompt | CR | total p50 | total p95 | prefill p50 | decode p50 | steps | prefill GFLOP/s | of matmul |\n\
             |---|---|---|---|---|---|---|---|---|---|---|\n",
            self.matmul_gflops, self.threads
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {:.0} | {:.2} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} | {:.1} | {:.0} % |\n",
                r.layout,
                r.history,
                r.prompt_positions,
                r.compression_ratio,
                r.total.p50_ms,
                r.total.p95_ms,
                r.prefill.p50_ms,
                r.decode.p50_ms,
                r.decode_steps,
                r.prefill_gflops,
                100.0 * r.prefill_gflops / self.matmul_gflops
            ));
        }
        s
    }
}
