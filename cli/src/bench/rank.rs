//! The candidate-scoring benchmark (`patchrec bench-rank`): for each candidate count, the
//! time of one [`rank_cached`] call against a top-k [`recommend_cached`] for the same user
//! and against scoring each candidate alone (one `rank` call per candidate), every call
//! after the user's prompt KV is cached, as a ranking service holds it.

use std::collections::HashSet;
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::serving::Percentiles;
use super::users::random_user;
use patchrec::catalog::Catalog;
use patchrec::error::{Error, Result};
use patchrec::history::{Layout, LayoutConfig};
use patchrec::prompt::PromptCache;
use patchrec::query::{recommend_cached, QueryOptions};
use patchrec::rank::{rank_cached, RankOptions};

#[derive(Debug, Clone)]
pub struct RankBenchOptions {
    pub layout: Layout,
    /// History items per user (all shown).
    pub history: usize,
    /// Candidate counts to measure.
    pub candidates: Vec<usize>,
    /// Users per count, each with its own random history and candidates.
    pub users: usize,
    /// `recommend`'s k.
    pub k: usize,
    /// Candidates scored alone per user (their time per candidate is measured on at most
    /// this many and scaled to the count).
    pub alone: usize,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RankBenchRow {
    pub candidates: usize,
    pub rank: Percentiles,
    /// Token-tree nodes computed and forward passes, mean per call.
    pub nodes: f64,
    pub passes: f64,
    pub recommend: Percentiles,
    /// Median time to score one candidate alone, and that times the count.
    pub alone_per_candidate_ms: f64,
    pub alone_estimate_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RankBenchReport {
    pub layout: String,
    pub history: usize,
    pub catalogue: usize,
    pub k: usize,
    pub users: usize,
    pub threads: usize,
    pub rows: Vec<RankBenchRow>,
}

pub fn run_rank_bench(catalog: &Catalog, opts: &RankBenchOptions) -> Result<RankBenchReport> {
    let snap = catalog.snapshot();
    let ids: Vec<u64> = snap.items().map(|i| i.id).collect();
    if let Some(&n) = opts.candidates.iter().find(|&&n| n == 0 || n > ids.len()) {
        return Err(Error::invalid(format!(
            "bench-rank: {n} candidates from a catalogue of {}",
            ids.len()
        )));
    }
    let layout = LayoutConfig::new(opts.layout, opts.history);
    let query = QueryOptions::default().with_k(opts.k).with_layout(layout);
    let rank_opts = RankOptions::default().with_layout(layout);
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let mut rows = Vec::new();
    for &n in &opts.candidates {
        let (mut ranked, mut recommended, mut alone) = (Vec::new(), Vec::new(), Vec::new());
        let (mut nodes, mut passes) = (0usize, 0usize);
        for _ in 0..opts.users {
            let user = random_user(catalog, &ids, opts.history, &mut rng)?;
            let mut candidates = ids.clone();
            candidates.shuffle(&mut rng);
            candidates.truncate(n);
            let mut cache = PromptCache::new();
            // Fills the user's prompt KV; every timed call below reuses it.
            recommend_cached(catalog, &user, &mut cache, &query)?;

            let t = Instant::now();
            let r = rank_cached(catalog, &user, &mut cache, &candidates, &rank_opts)?;
            ranked.push(t.elapsed().as_secs_f64());
            nodes += r.nodes;
            passes += r.passes;

            let t = Instant::now();
            recommend_cached(catalog, &user, &mut cache, &query)?;
            recommended.push(t.elapsed().as_secs_f64());

            for &id in candidates.iter().take(opts.alone) {
                let t = Instant::now();
                rank_cached(catalog, &user, &mut cache, &[id], &rank_opts)?;
                alone.push(t.elapsed().as_secs_f64());
            }
        }
        let alone_ms = Percentiles::of(&mut alone).p50_ms;
        rows.push(RankBenchRow {
            candidates: n,
            rank: Percentiles::of(&mut ranked),
            nodes: nodes as f64 / opts.users as f64,
            passes: passes as f64 / opts.users as f64,
            recommend: Percentiles::of(&mut recommended),
            alone_per_candidate_ms: alone_ms,
            alone_estimate_ms: alone_ms * n as f64,
        });
    }
    Ok(RankBenchReport {
        layout: opts.layout.to_string(),
        history: opts.history,
        catalogue: ids.len(),
        k: opts.k,
        users: opts.users,
        threads: rayon::current_num_threads(),
        rows,
    })
}

impl RankBenchReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "{} candidates scored for users of {} history items ({}), from a catalogue of {}, \
             {} users per row, {} threads; every call after the user's prompt KV is cached.\n\n\
             | candidates | rank p50 | rank p95 | tree nodes | passes | recommend top-{} p50 | rank / recommend | one alone | all alone (est.) | alone / rank |\n\
             |---|---|---|---|---|---|---|---|---|---|\n",
            self.rows.iter().map(|r| r.candidates.to_string()).collect::<Vec<_>>().join(", "),
            self.history,
            self.layout,
            self.catalogue,
            self.users,
            self.threads,
            self.k,
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {:.1} ms | {:.1} ms | {:.0} | {:.1} | {:.1} ms | {:.2}x | {:.1} ms | {:.0} ms | {:.1}x |\n",
                r.candidates,
                r.rank.p50_ms,
                r.rank.p95_ms,
                r.nodes,
                r.passes,
                r.recommend.p50_ms,
                r.rank.p50_ms / r.recommend.p50_ms,
                r.alone_per_candidate_ms,
                r.alone_estimate_ms,
                r.alone_estimate_ms / r.rank.p50_ms,
            ));
        }
        s
    }
}

/// `base` extended with synthetic titles up to `size` items: each joins the text of two
/// base titles with a year, as sequels and crossovers read, so titles share prefixes as a
/// real catalogue's do. Ids continue after the largest base id.
pub fn synthetic_catalogue(base: &[(u64, String)], size: usize, seed: u64) -> Vec<(u64, String)> {
    let mut out = base.to_vec();
    if base.is_empty() {
        return out;
    }
    let stem = |t: &str| -> String {
        match t.rfind(" (") {
            Some(i) if t.ends_with(')') => t[..i].to_string(),
            _ => t.to_string(),
        }
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut next = base.iter().map(|(id, _)| *id).max().unwrap_or(0) + 1;
    let mut titles: HashSet<String> = base.iter().map(|(_, t)| t.clone()).collect();
    while out.len() < size {
        let a = &base[rng.random_range(0..base.len())].1;
        let b = &base[rng.random_range(0..base.len())].1;
        let title = format!(
            "{} and {} ({})",
            stem(a),
            stem(b),
            rng.random_range(1930..2030)
        );
        if titles.insert(title.clone()) {
            out.push((next, title));
            next += 1;
        }
    }
    out
}
