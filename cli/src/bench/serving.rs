//! The serving benchmark: for histories of several lengths and each layout, the time of
//! one query (prompt building, prefill, beam decoding) over many synthetic users, its
//! percentiles, the prompt's size, prefill's rate against the measured matmul rate, and
//! the query's multiply-adds (prefill and the decode rows) at that rate: how far the query
//! is from what the machine's f32 matmuls would take for the same arithmetic;
//! the time of append + query for a user whose prompt KV is cached (the serving pattern);
//! optionally with several callers at once.

use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::matmul::{decode_matmul_gflops, matmul_gflops};
use patchrec::catalog::Catalog;
use patchrec::decode::{beam_search_timed, search_prefilled, SearchOptions};
use patchrec::error::{Error, Result};
use patchrec::history::{Interaction, Layout, LayoutConfig, UserHistory};
use patchrec::model::Model;
use patchrec::prompt::{build_prompt_shown, PromptCache};
use patchrec::query::QueryOptions;
use patchrec::serve::{Batcher, BatcherConfig};

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
    /// Threads querying at once (each with its own users); 1 measures single queries.
    pub callers: usize,
    /// Exact catalogue ranking instead of beam search.
    pub exact: bool,
    /// Decode through the batching worker (`serve::Batcher`), so concurrent callers share
    /// forward passes.
    pub batched: bool,
    /// Session gap in seconds for the stream-aligned layouts
    /// ([`LayoutConfig::session_gap`]). The synthetic users come in visits of 1 to
    /// [`VISIT_MAX`] items a minute apart, a day between visits.
    pub session_gap: Option<u64>,
    /// Rows a pass is filled up to with forced title tokens ([`SearchOptions::lookahead`]);
    /// single queries only, the batching worker uses the default.
    pub lookahead: usize,
    /// Drop the beams that can no longer reach the top k ([`SearchOptions::prune`]);
    /// single queries only, the batching worker always does.
    pub prune: bool,
}

/// The largest synthetic visit, in items.
pub const VISIT_MAX: usize = 10;

/// A synthetic user's stream of `len` random items from `ids`, in visits
/// ([`BenchOptions::session_gap`]). The visits are drawn from their own generator, so the
/// items are those of a bench without timestamps.
fn synthetic_stream(
    rng: &mut impl Rng,
    visits: &mut impl Rng,
    ids: &[u64],
    len: usize,
) -> Vec<Interaction> {
    let (mut t, mut left_in_visit) = (0i64, 0usize);
    (0..len)
        .map(|_| {
            if left_in_visit == 0 {
                left_in_visit = visits.random_range(1..=VISIT_MAX);
                t += 86_400;
            }
            left_in_visit -= 1;
            t += 60;
            Interaction {
                item_id: ids[rng.random_range(0..ids.len())],
                timestamp: Some(t),
            }
        })
        .collect()
}

/// The layout a row measures: K = the whole history, the gap for stream-aligned layouts.
fn row_config(layout: Layout, len: usize, session_gap: Option<u64>) -> LayoutConfig {
    LayoutConfig::new(layout, len)
        .with_session_gap(session_gap.filter(|_| matches!(layout, Layout::StreamS { .. })))
}

/// A row's layout as the table names it.
fn row_label(cfg: &LayoutConfig) -> String {
    match cfg.session_gap {
        Some(gap) => format!("{} gap {gap} s", cfg.layout),
        None => cfg.layout.to_string(),
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// A table cell in milliseconds; `-` where not measured (batched decoding).
fn ms(v: f64) -> String {
    or_dash(v, 1, " ms")
}

/// `v` with `decimals` decimals and `unit`, or "-" where it was not measured (NaN).
fn or_dash(v: f64, decimals: usize, unit: &str) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{v:.decimals$}{unit}")
    }
}

/// Median and 95th percentile, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p95_ms: f64,
}

impl Percentiles {
    pub(crate) fn of(seconds: &mut [f64]) -> Self {
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
    /// Forward passes those steps ran (fewer with lookahead).
    pub decode_passes: f64,
    /// Rows those passes computed (token-tree nodes).
    pub decode_rows: f64,
    /// A query's multiply-adds (prefill and decode, the head included) over the measured
    /// f32 matmul rate: the time a query takes at that rate, in ms. `NaN` where the
    /// decode rows are not counted (through the batching worker).
    pub compute_ms: f64,
    /// Prefill FLOPs per second (matmuls and attention, the cached head excluded).
    pub prefill_gflops: f64,
    /// Appending one item to a user whose prompt KV is cached, then querying.
    pub append_query: Percentiles,
    /// Positions that query prefilled (the rest came from the user's cache).
    pub append_prefilled: f64,
    /// Queries finished per second over all callers: every query that ran, the priming
    /// one included ([`QUERIES_PER_USER`] per user).
    pub queries_per_second: f64,
    /// Bytes of one user's cached prompt KV.
    pub cache_bytes: f64,
}

/// A decode step's matmul shape through candle's matmul and through the in-place kernel
/// the model uses for few rows (`None` where the CPU lacks AVX-512).
#[derive(Debug, Clone, Serialize)]
pub struct DecodeMatmul {
    pub rows: usize,
    pub candle_gflops: f64,
    pub kernel_gflops: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub threads: usize,
    /// Threads querying concurrently.
    pub callers: usize,
    /// Filled in by the caller that loaded the model and catalogue.
    pub memory: Option<super::MemoryReport>,
    /// Measured rate of an `[512, hidden] x [hidden, intermediate]` matmul.
    pub matmul_gflops: f64,
    /// Measured rates of a decode step's `[beams, hidden] x [intermediate, hidden]ᵀ`.
    pub decode_matmul: DecodeMatmul,
    pub rows: Vec<BenchRow>,
}

/// FLOPs of `rows` positions through the decoder layers, each attending to `keys`
/// positions on average: 2 per weight per position, plus attention's two products.
fn layer_flops(model: &Model, rows: usize, keys: f64) -> f64 {
    let c = model.llama().config();
    let (d, hd, h, kv, ff) = (
        c.hidden_size,
        c.head_dim(),
        c.num_attention_heads,
        c.num_kv_heads(),
        c.intermediate_size,
    );
    let weights = d * h * hd * 2 + 2 * d * kv * hd + 3 * d * ff;
    let per_layer = 2.0 * (rows * weights) as f64 + 4.0 * rows as f64 * keys * (h * hd) as f64;
    per_layer * c.num_hidden_layers as f64
}

/// FLOPs of prefilling `new` positions after `past` ones. Scores and weighted values are
/// computed for every (query, key) pair, masked or not.
fn prefill_flops(model: &Model, new: usize, past: usize) -> f64 {
    layer_flops(model, new, (past + new) as f64)
}

/// FLOPs of decoding `rows` token-tree rows after a prompt of `past` positions: the
/// decoder layers (attending to the prompt; the tree's own few nodes left out) and the
/// output head.
fn decode_flops(model: &Model, rows: usize, past: usize) -> f64 {
    let c = model.llama().config();
    layer_flops(model, rows, past as f64) + 2.0 * (rows * c.hidden_size * c.vocab_size) as f64
}

/// Queries one user's measurement runs: a fresh query, the query that primes its cache
/// on all but the last item, and the append + query after it.
pub const QUERIES_PER_USER: f64 = 3.0;

/// One user's measurements.
struct Sample {
    total: f64,
    prefill: f64,
    decode: f64,
    steps: usize,
    passes: usize,
    /// Decode rows computed (`None` through the batching worker, which does not count
    /// them per query).
    rows: Option<usize>,
    positions: usize,
    cr: f64,
    flops: f64,
    append_query: f64,
    append_computed: usize,
    cache_bytes: usize,
}

/// A fresh query on `stream`, then the serving pattern: the same user's cache primed on
/// all but the last item, and the query after appending it timed.
fn measure_user(
    catalog: &Catalog,
    stream: &[Interaction],
    cfg: LayoutConfig,
    search: &SearchOptions,
) -> Result<Sample> {
    let model = catalog.model();
    let snap = catalog.snapshot();
    let (before, full) = users_before_and_after(catalog, stream)?;
    let started = Instant::now();
    let prompt = build_prompt_shown(model, &snap, &full.shown(&cfg), cfg.layout)?;
    let (_, timing) = beam_search_timed(model, &snap, &prompt, search)?;
    let total = started.elapsed().as_secs_f64();

    let mut cache = PromptCache::new();
    let primed = build_prompt_shown(model, &snap, &before.shown(&cfg), cfg.layout)?;
    let primed = cache.prefill(catalog, &primed)?;
    search_prefilled(model, &snap, &primed, search)?;
    let started = Instant::now();
    let after = build_prompt_shown(model, &snap, &full.shown(&cfg), cfg.layout)?;
    let prefilled = cache.prefill(catalog, &after)?;
    search_prefilled(model, &snap, &prefilled, search)?;
    let append_query = started.elapsed().as_secs_f64();

    Ok(Sample {
        total,
        prefill: timing.prefill_seconds,
        decode: timing.decode_seconds,
        steps: timing.decode_steps,
        passes: timing.forward_passes,
        rows: Some(timing.decode_rows),
        positions: prompt.len,
        cr: prompt.compression_ratio,
        flops: prefill_flops(model, prompt.len - prompt.shared_head, prompt.shared_head),
        append_query,
        append_computed: cache.last_reuse().computed,
        cache_bytes: cache.memory_bytes(),
    })
}

/// The user before its last interaction, and after.
fn users_before_and_after(
    catalog: &Catalog,
    stream: &[Interaction],
) -> Result<(UserHistory, UserHistory)> {
    let (mut before, mut full) = (UserHistory::new(), UserHistory::new());
    catalog.append(&mut before, &stream[..stream.len() - 1])?;
    catalog.append(&mut full, stream)?;
    Ok((before, full))
}

/// [`measure_user`] through the batching worker: whole-query times only (prefill and
/// decode overlap other callers' work there).
fn measure_user_batched(
    catalog: &Catalog,
    batcher: &Batcher,
    stream: &[Interaction],
    cfg: LayoutConfig,
    search: &SearchOptions,
) -> Result<Sample> {
    let opts = QueryOptions::default()
        .with_k(search.k)
        .with_beam_width(search.beam_width)
        .with_layout(cfg)
        .with_exclude_history(false)
        .with_exact(search.exact);
    let (before, full) = users_before_and_after(catalog, stream)?;
    let started = Instant::now();
    let fresh = batcher.recommend(&full, &opts)?;
    let total = started.elapsed().as_secs_f64();
    let mut cache = PromptCache::new();
    batcher.recommend_cached(&before, &mut cache, &opts)?;
    let started = Instant::now();
    batcher.recommend_cached(&full, &mut cache, &opts)?;
    let append_query = started.elapsed().as_secs_f64();
    let model = catalog.model();
    let head = model.head_ids().len();
    Ok(Sample {
        total,
        prefill: f64::NAN,
        decode: f64::NAN,
        steps: 0,
        passes: 0,
        rows: None,
        positions: fresh.prompt_len,
        cr: fresh.compression_ratio,
        flops: prefill_flops(model, fresh.prompt_len - head, head),
        append_query,
        append_computed: cache.last_reuse().computed,
        cache_bytes: cache.memory_bytes(),
    })
}

pub fn run_serving_bench(catalog: &Arc<Catalog>, opts: &BenchOptions) -> Result<BenchReport> {
    let model = catalog.model();
    let snap = catalog.snapshot();
    if snap.is_empty() {
        return Err(Error::invalid("the benchmark needs a non-empty catalogue"));
    }
    if opts.history_lengths.contains(&0) {
        return Err(Error::invalid("history lengths must be at least 1"));
    }
    let cfg = model.llama().config();
    let matmul = matmul_gflops(
        512,
        cfg.hidden_size,
        cfg.intermediate_size,
        5,
        model.device(),
    )?;
    let decode_rows = opts.beam_width.max(1);
    let (candle_gflops, kernel_gflops) = decode_matmul_gflops(
        decode_rows,
        cfg.hidden_size,
        cfg.intermediate_size,
        20,
        model.device(),
    )?;
    let decode_matmul = DecodeMatmul {
        rows: decode_rows,
        candle_gflops,
        kernel_gflops,
    };
    let search = SearchOptions {
        k: opts.k,
        beam_width: opts.beam_width,
        exclude: vec![],
        allow: None,
        exact: opts.exact,
        lookahead: opts.lookahead,
        prune: opts.prune,
    };
    let callers = opts.callers.max(1);
    let batcher = if opts.batched {
        Some(Batcher::new(catalog.clone(), BatcherConfig::default())?)
    } else {
        None
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let mut visits = rand::rngs::StdRng::seed_from_u64(opts.seed ^ 0x5e55_1015);
    let ids: Vec<u64> = snap.items().map(|i| i.id).collect();
    let mut rows = Vec::new();
    for &len in &opts.history_lengths {
        // The same users for every layout, so the layouts compare on equal histories.
        let users: Vec<Vec<Interaction>> = (0..opts.users.max(1))
            .map(|_| synthetic_stream(&mut rng, &mut visits, &ids, len))
            .collect();
        for &layout in &opts.layouts {
            let cfg = row_config(layout, len, opts.session_gap);
            cfg.validate()?;
            // Warm-up: the head cache and allocator pools.
            let measure = |h: &[Interaction]| match &batcher {
                Some(b) => measure_user_batched(catalog, b, h, cfg, &search),
                None => measure_user(catalog, h, cfg, &search),
            };
            measure(&users[0])?;
            // `callers` threads share the model and catalogue, each measuring its share
            // of the users, as concurrent requests to one service would.
            let started = Instant::now();
            let samples: Vec<Sample> = std::thread::scope(|scope| {
                let workers: Vec<_> = (0..callers)
                    .map(|c| {
                        let (users, measure) = (&users, &measure);
                        scope.spawn(move || {
                            users
                                .iter()
                                .skip(c)
                                .step_by(callers)
                                .map(|h| measure(h))
                                .collect::<Result<Vec<_>>>()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .map(|w| w.join().expect("benchmark thread panicked"))
                    .collect::<Result<Vec<Vec<_>>>>()
            })?
            .into_iter()
            .flatten()
            .collect();
            let wall = started.elapsed().as_secs_f64();
            let n = samples.len() as f64;
            let mean = |f: &dyn Fn(&Sample) -> f64| samples.iter().map(f).sum::<f64>() / n;
            let pick = |f: &dyn Fn(&Sample) -> f64| {
                let mut v: Vec<f64> = samples.iter().map(f).collect();
                Percentiles::of(&mut v)
            };
            let prefill_sum: f64 = samples.iter().map(|s| s.prefill).sum();
            rows.push(BenchRow {
                layout: row_label(&cfg),
                history: len,
                prompt_positions: mean(&|s| s.positions as f64),
                compression_ratio: mean(&|s| s.cr),
                total: pick(&|s| s.total),
                prefill: pick(&|s| s.prefill),
                decode: pick(&|s| s.decode),
                decode_steps: mean(&|s| s.steps as f64),
                decode_passes: mean(&|s| s.passes as f64),
                decode_rows: mean(&|s| s.rows.map_or(f64::NAN, |r| r as f64)),
                compute_ms: mean(&|s| {
                    let decode = s
                        .rows
                        .map_or(f64::NAN, |r| decode_flops(model, r, s.positions));
                    (s.flops + decode) / matmul * 1e-6
                }),
                prefill_gflops: samples.iter().map(|s| s.flops).sum::<f64>() / prefill_sum / 1e9,
                append_query: pick(&|s| s.append_query),
                append_prefilled: mean(&|s| s.append_computed as f64),
                // Each user runs three queries: a fresh one, one that primes its cache
                // (before the last item) and the append + query; all three count.
                queries_per_second: QUERIES_PER_USER * n / wall,
                cache_bytes: mean(&|s| s.cache_bytes as f64),
            });
        }
    }
    Ok(BenchReport {
        threads: rayon::current_num_threads(),
        callers,
        memory: None,
        matmul_gflops: matmul,
        decode_matmul,
        rows,
    })
}

impl DecodeMatmul {
    fn line(&self) -> String {
        let (rows, candle) = (self.rows, self.candle_gflops);
        match self.kernel_gflops {
            Some(k) => format!(
                "decode matmul ({rows} rows): {k:.1} GFLOP/s in-place kernel vs {candle:.1} candle ({:.2}x)\n",
                k / candle
            ),
            None => format!(
                "decode matmul ({rows} rows): {candle:.1} GFLOP/s candle (no AVX-512: in-place kernel off)\n"
            ),
        }
    }
}

impl BenchReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "matmul rate: {:.1} GFLOP/s ({} threads, {} callers)\n{}\n\
             | layout | history | prompt | CR | total p50 | total p95 | prefill p50 | decode p50 | steps | passes | rows | at matmul rate | p50 / that | prefill GFLOP/s | of matmul | append+query p50 | prefilled | queries/s | user cache |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
            self.matmul_gflops,
            self.threads,
            self.callers,
            self.decode_matmul.line(),
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {:.0} | {:.2} | {:.1} ms | {:.1} ms | {} | {} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {:.1} ms | {:.0} | {:.2} | {:.2} MiB |\n",
                r.layout,
                r.history,
                r.prompt_positions,
                r.compression_ratio,
                r.total.p50_ms,
                r.total.p95_ms,
                ms(r.prefill.p50_ms),
                ms(r.decode.p50_ms),
                r.decode_steps,
                r.decode_passes,
                or_dash(r.decode_rows, 0, ""),
                ms(r.compute_ms),
                or_dash(r.total.p50_ms / r.compute_ms, 2, "x"),
                or_dash(r.prefill_gflops, 1, ""),
                or_dash(100.0 * r.prefill_gflops / self.matmul_gflops, 0, " %"),
                r.append_query.p50_ms,
                r.append_prefilled,
                r.queries_per_second,
                r.cache_bytes / MIB,
            ));
        }
        if let Some(m) = &self.memory {
            s.push_str(&format!(
                "\nresident memory: model {:.1} MiB; catalogue of {} items {:.1} MiB \
                 (10,000 items: {:.1} MiB)\n",
                m.model_bytes as f64 / MIB,
                m.catalogue_items,
                m.catalogue_bytes as f64 / MIB,
                m.catalogue_bytes_for(10_000) / MIB
            ));
        }
        s
    }
}
