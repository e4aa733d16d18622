//! The many-users benchmark (`patchrec bench-users`): many simulated users, each asking
//! once to warm the caches, then appending and asking in random order, each keeping its
//! prompt cache, under a catalogue KV budget that holds a fraction of them, beside the
//! same traffic without a budget. Reports the timed appends+queries' percentiles, hits,
//! misses, evictions and the bytes held (hits and misses count the warm-up too).

use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::serving::Percentiles;
use patchrec::catalog::Catalog;
use patchrec::error::{Error, Result};
use patchrec::history::{Interaction, Layout, LayoutConfig, UserHistory};
use patchrec::prompt::{KvStats, PromptCache};
use patchrec::query::{recommend_cached, QueryOptions};

#[derive(Debug, Clone)]
pub struct UsersBenchOptions {
    pub layout: Layout,
    pub users: usize,
    /// History items each user starts with.
    pub history: usize,
    /// Appends+queries timed, each by a user drawn uniformly at random.
    pub queries: usize,
    /// The budget as a fraction of what all users' KV would take.
    pub budget_fraction: f64,
    pub k: usize,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UsersBenchRow {
    /// "budget" or "unbounded".
    pub mode: String,
    pub append_query: Percentiles,
    pub stats: Option<KvStats>,
    /// Largest bytes of KV the users held together at any query.
    pub most_bytes_held: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct UsersBenchReport {
    pub layout: String,
    pub users: usize,
    pub history: usize,
    pub queries: usize,
    pub budget_fraction: f64,
    /// Mean bytes of one user's cached KV, measured before the timed queries.
    pub bytes_per_user: f64,
    pub threads: usize,
    pub rows: Vec<UsersBenchRow>,
}

pub fn run_users_bench(catalog: &Catalog, opts: &UsersBenchOptions) -> Result<UsersBenchReport> {
    let snap = catalog.snapshot();
    let ids: Vec<u64> = snap.items().map(|i| i.id).collect();
    if ids.is_empty() || opts.users == 0 || opts.queries == 0 {
        return Err(Error::invalid(
            "bench-users needs a non-empty catalogue, users and queries",
        ));
    }
    if !(opts.budget_fraction > 0.0 && opts.budget_fraction <= 1.0) {
        return Err(Error::invalid(format!(
            "bench-users: budget fraction {} is outside (0, 1]",
            opts.budget_fraction
        )));
    }
    let query = QueryOptions::default()
        .with_k(opts.k)
        .with_layout(LayoutConfig::new(opts.layout, opts.history + opts.queries));
    // One user's KV, averaged over a few, sizes the budget.
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let probes = opts.users.min(8);
    let mut probe_bytes = 0;
    for _ in 0..probes {
        let user = random_user(catalog, &ids, opts.history, &mut rng)?;
        let mut cache = PromptCache::new();
        recommend_cached(catalog, &user, &mut cache, &query)?;
        probe_bytes += cache.memory_bytes();
    }
    let bytes_per_user = probe_bytes as f64 / probes as f64;
    let budget = (bytes_per_user * opts.users as f64 * opts.budget_fraction) as usize;

    let mut rows = Vec::new();
    for bounded in [true, false] {
        catalog.set_kv_budget(bounded.then_some(budget));
        // The same users and traffic in both modes.
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed ^ 0x05e7_5a11);
        let mut users: Vec<(UserHistory, PromptCache)> = (0..opts.users)
            .map(|_| {
                Ok((
                    random_user(catalog, &ids, opts.history, &mut rng)?,
                    PromptCache::new(),
                ))
            })
            .collect::<Result<_>>()?;
        // Every user asks once before the timed traffic, so the caches start as a
        // service's would: full without a budget, its most recent users' within one.
        for (user, cache) in users.iter_mut() {
            recommend_cached(catalog, user, cache, &query)?;
        }
        let (mut times, mut most) = (Vec::with_capacity(opts.queries), 0usize);
        for _ in 0..opts.queries {
            let (user, cache) = &mut users[rng.random_range(0..opts.users)];
            let next = Interaction {
                item_id: ids[rng.random_range(0..ids.len())],
                timestamp: None,
            };
            let started = Instant::now();
            catalog.append(user, &[next])?;
            recommend_cached(catalog, user, cache, &query)?;
            times.push(started.elapsed().as_secs_f64());
            if let Some(s) = catalog.kv_stats() {
                most = most.max(s.bytes_held);
            }
        }
        if !bounded {
            // Without a budget every cache keeps its KV and prompts only grow: the most
            // held is what they hold at the end.
            most = users.iter().map(|(_, c)| c.memory_bytes()).sum();
        }
        rows.push(UsersBenchRow {
            mode: if bounded { "budget" } else { "unbounded" }.into(),
            append_query: Percentiles::of(&mut times),
            stats: catalog.kv_stats(),
            most_bytes_held: most,
        });
    }
    catalog.set_kv_budget(None);
    Ok(UsersBenchReport {
        layout: opts.layout.to_string(),
        users: opts.users,
        history: opts.history,
        queries: opts.queries,
        budget_fraction: opts.budget_fraction,
        bytes_per_user,
        threads: rayon::current_num_threads(),
        rows,
    })
}

/// A user of `len` interactions with items drawn uniformly from `ids`, times unknown.
pub(crate) fn random_user(
    catalog: &Catalog,
    ids: &[u64],
    len: usize,
    rng: &mut impl Rng,
) -> Result<UserHistory> {
    let mut user = UserHistory::new();
    let history: Vec<Interaction> = (0..len)
        .map(|_| Interaction {
            item_id: ids[rng.random_range(0..ids.len())],
            timestamp: None,
        })
        .collect();
    catalog.append(&mut user, &history)?;
    Ok(user)
}

impl UsersBenchReport {
    pub fn markdown(&self) -> String {
        const MIB: f64 = 1024.0 * 1024.0;
        let mut s = format!(
            "{} users of {} history items ({}), {} appends+queries by users drawn at random, \
             {} threads; one user's KV {:.1} KiB; budget {:.0} % of all users' KV.\n\n\
             | mode | append+query p50 | p95 | hits | misses | evictions | KV held (most) |\n\
             |---|---|---|---|---|---|---|\n",
            self.users,
            self.history,
            self.layout,
            self.queries,
            self.threads,
            self.bytes_per_user / 1024.0,
            self.budget_fraction * 100.0,
        );
        for r in &self.rows {
            let (hits, misses, evictions) =
                r.stats.map_or(("-".into(), "-".into(), "-".into()), |s| {
                    (
                        s.hits.to_string(),
                        s.misses.to_string(),
                        s.evictions.to_string(),
                    )
                });
            s.push_str(&format!(
                "| {} | {:.2} ms | {:.2} ms | {} | {} | {} | {:.1} MiB |\n",
                r.mode,
                r.append_query.p50_ms,
                r.append_query.p95_ms,
                hits,
                misses,
                evictions,
                r.most_bytes_held as f64 / MIB,
            ));
        }
        s
    }
}
