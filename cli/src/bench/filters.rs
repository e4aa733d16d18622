//! The filters benchmark (`patchrec bench-filters`): a query's p50 with an allow-list or a
//! deny-list covering each given fraction of the catalogue, beside the same users'
//! unfiltered queries, every query after the user's prompt KV is cached (the filters act
//! in decoding, so the prompt's cost is left out).

use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Serialize;

use super::serving::Percentiles;
use super::users::random_user;
use patchrec::catalog::Catalog;
use patchrec::error::{Error, Result};
use patchrec::history::{Layout, LayoutConfig, UserHistory};
use patchrec::prompt::PromptCache;
use patchrec::query::{recommend_cached, QueryOptions};

#[derive(Debug, Clone)]
pub struct FiltersBenchOptions {
    pub layout: Layout,
    pub history: usize,
    pub users: usize,
    pub k: usize,
    /// Fractions of the catalogue the lists cover.
    pub fractions: Vec<f64>,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FiltersBenchRow {
    /// "none", "allow" or "deny".
    pub filter: String,
    pub fraction: f64,
    pub query: Percentiles,
    /// Items the answers held, mean per query.
    pub answered: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FiltersBenchReport {
    pub layout: String,
    pub catalogue: usize,
    pub users: usize,
    pub k: usize,
    pub threads: usize,
    pub rows: Vec<FiltersBenchRow>,
}

pub fn run_filters_bench(
    catalog: &Catalog,
    opts: &FiltersBenchOptions,
) -> Result<FiltersBenchReport> {
    let ids: Vec<u64> = catalog.snapshot().items().map(|i| i.id).collect();
    if ids.is_empty() || opts.users == 0 {
        return Err(Error::invalid(
            "bench-filters needs a non-empty catalogue and users",
        ));
    }
    if let Some(f) = opts.fractions.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
        return Err(Error::invalid(format!(
            "bench-filters: fraction {f} is outside (0, 1]"
        )));
    }
    let base = QueryOptions::default()
        .with_k(opts.k)
        .with_layout(LayoutConfig::new(opts.layout, opts.history));
    let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
    let mut users: Vec<(UserHistory, PromptCache)> = Vec::with_capacity(opts.users);
    for _ in 0..opts.users {
        let user = random_user(catalog, &ids, opts.history, &mut rng)?;
        let mut cache = PromptCache::new();
        recommend_cached(catalog, &user, &mut cache, &base)?; // caches the prompt's KV
        users.push((user, cache));
    }
    let mut settings: Vec<(String, f64, QueryOptions)> = vec![("none".into(), 0.0, base.clone())];
    for &f in &opts.fractions {
        let mut listed = ids.clone();
        listed.shuffle(&mut rng);
        listed.truncate(((ids.len() as f64 * f).round() as usize).max(1));
        settings.push((
            "allow".into(),
            f,
            base.clone().with_allow(Some(listed.clone())),
        ));
        settings.push(("deny".into(), f, base.clone().with_deny(listed)));
    }
    let mut rows = Vec::new();
    for (filter, fraction, query) in settings {
        let (mut times, mut answered) = (Vec::new(), 0usize);
        for (user, cache) in users.iter_mut() {
            let started = Instant::now();
            let r = recommend_cached(catalog, user, cache, &query)?;
            times.push(started.elapsed().as_secs_f64());
            answered += r.items.len();
        }
        rows.push(FiltersBenchRow {
            filter,
            fraction,
            query: Percentiles::of(&mut times),
            answered: answered as f64 / opts.users as f64,
        });
    }
    Ok(FiltersBenchReport {
        layout: opts.layout.to_string(),
        catalogue: ids.len(),
        users: opts.users,
        k: opts.k,
        threads: rayon::current_num_threads(),
        rows,
    })
}

impl FiltersBenchReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "Filters over a catalogue of {}, {} users ({}), top-{}, prompt KV cached, {} threads.\n\n\
             | filter | share of catalogue | query p50 | p95 | against none | items answered |\n\
             |---|---|---|---|---|---|\n",
            self.catalogue, self.users, self.layout, self.k, self.threads
        );
        let none = self.rows.first().map_or(f64::NAN, |r| r.query.p50_ms);
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {:.1} ms | {:.1} ms | {:.2}x | {:.1} |\n",
                r.filter,
                if r.filter == "none" {
                    "-".to_string()
                } else {
                    format!("{:.0} %", r.fraction * 100.0)
                },
                r.query.p50_ms,
                r.query.p95_ms,
                r.query.p50_ms / none,
                r.answered
            ));
        }
        s
    }
}
