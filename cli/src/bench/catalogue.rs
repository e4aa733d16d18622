//! The catalogue-size benchmark (`patchrec bench-catalogue`): catalogues grown with
//! synthetic titles to each size; for each, the registration time, the resident bytes per
//! item, the title tree's nodes, and a query's p50 by beam search and by exact ranking
//! (the latter up to a size limit), for the same users.

use std::time::Instant;

use rand::SeedableRng;
use serde::Serialize;

use super::memory::resident_bytes;
use super::rank::synthetic_catalogue;
use super::serving::Percentiles;
use super::users::random_user;
use patchrec::catalog::{Catalog, PatchStorage};
use patchrec::error::{Error, Result};
use patchrec::history::{Layout, LayoutConfig, UserHistory};
use patchrec::model::Model;
use patchrec::query::{recommend, QueryOptions};

#[derive(Debug, Clone)]
pub struct CatalogueBenchOptions {
    pub sizes: Vec<usize>,
    pub layout: Layout,
    pub history: usize,
    pub users: usize,
    pub k: usize,
    /// Exact ranking is timed only up to this catalogue size.
    pub exact_max: usize,
    /// Items registered per `add_batch` call.
    pub batch: usize,
    /// How the catalogues keep their patches.
    pub patches: PatchStorage,
    pub seed: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CatalogueBenchRow {
    pub items: usize,
    pub register_seconds: f64,
    pub resident_bytes_per_item: f64,
    pub trie_nodes: usize,
    /// The title tree's nodes and lists (`TitleTrie::bytes`), per item.
    pub trie_bytes_per_item: f64,
    pub beam: Percentiles,
    pub exact: Option<Percentiles>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CatalogueBenchReport {
    pub patches: String,
    pub layout: String,
    pub history: usize,
    pub users: usize,
    pub k: usize,
    pub threads: usize,
    pub rows: Vec<CatalogueBenchRow>,
}

pub fn run_catalogue_bench(
    model: &std::sync::Arc<Model>,
    base: &[(u64, String)],
    opts: &CatalogueBenchOptions,
) -> Result<CatalogueBenchReport> {
    if base.is_empty() || opts.users == 0 || opts.batch == 0 {
        return Err(Error::invalid(
            "bench-catalogue needs base titles, users and a batch size of at least 1",
        ));
    }
    let query = QueryOptions::default()
        .with_k(opts.k)
        .with_layout(LayoutConfig::new(opts.layout, opts.history));
    if let Some(&small) = opts.sizes.iter().find(|&&n| n < base.len()) {
        return Err(Error::invalid(format!(
            "bench-catalogue: size {small} is below the {} base titles it grows from",
            base.len()
        )));
    }
    let mut rows = Vec::new();
    for &size in &opts.sizes {
        let entries = synthetic_catalogue(base, size, opts.seed);
        let catalog = Catalog::new(model.clone())?;
        catalog.set_patch_storage(opts.patches)?;
        let before = resident_bytes().unwrap_or(0);
        let started = Instant::now();
        for chunk in entries.chunks(opts.batch) {
            catalog.add_batch(chunk)?;
        }
        let register_seconds = started.elapsed().as_secs_f64();
        let grown = resident_bytes().unwrap_or(0).saturating_sub(before);
        // The users' histories come from the base titles, the same at every size.
        let mut rng = rand::rngs::StdRng::seed_from_u64(opts.seed);
        let base_ids: Vec<u64> = base.iter().map(|(id, _)| *id).collect();
        let users: Vec<UserHistory> = (0..opts.users)
            .map(|_| random_user(&catalog, &base_ids, opts.history, &mut rng))
            .collect::<Result<_>>()?;
        let time = |opts: &QueryOptions| -> Result<Percentiles> {
            let mut t = Vec::with_capacity(users.len());
            for user in &users {
                let started = Instant::now();
                recommend(&catalog, user, opts)?;
                t.push(started.elapsed().as_secs_f64());
            }
            Ok(Percentiles::of(&mut t))
        };
        let beam = time(&query)?;
        let exact = if size <= opts.exact_max {
            Some(time(&query.clone().with_exact(true))?)
        } else {
            None
        };
        rows.push(CatalogueBenchRow {
            items: size,
            register_seconds,
            resident_bytes_per_item: grown as f64 / size as f64,
            trie_nodes: catalog.snapshot().trie().num_nodes(),
            trie_bytes_per_item: catalog.snapshot().trie().bytes() as f64 / size as f64,
            beam,
            exact,
        });
        drop(catalog);
    }
    Ok(CatalogueBenchReport {
        patches: opts.patches.to_string(),
        layout: opts.layout.to_string(),
        history: opts.history,
        users: opts.users,
        k: opts.k,
        threads: rayon::current_num_threads(),
        rows,
    })
}

impl CatalogueBenchReport {
    pub fn markdown(&self) -> String {
        let mut s = format!(
            "Catalogues of synthetic titles (patches: {}), {} users of {} history items ({}), top-{}, {} threads.\n\n\
             | items | register | resident per item | title-tree nodes | title tree per item | beam p50 | beam / smallest | exact p50 |\n\
             |---|---|---|---|---|---|---|---|\n",
            self.patches, self.users, self.history, self.layout, self.k, self.threads
        );
        let first = self.rows.first().map_or(f64::NAN, |r| r.beam.p50_ms);
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {:.1} s | {:.0} B | {} | {:.0} B | {:.1} ms | {:.2}x | {} |\n",
                r.items,
                r.register_seconds,
                r.resident_bytes_per_item,
                r.trie_nodes,
                r.trie_bytes_per_item,
                r.beam.p50_ms,
                r.beam.p50_ms / first,
                r.exact
                    .map_or("-".to_string(), |e| format!("{:.1} ms", e.p50_ms)),
            ));
        }
        s
    }
}
