//! A catalogue with batching that can be switched on and off while queries run: what a
//! service holds, and what the C ABI's catalogue handle is.

use std::sync::Arc;

use parking_lot::RwLock;

use super::batcher::{Batcher, BatcherConfig};
use crate::catalog::Catalog;
use crate::error::Result;
use crate::history::UserHistory;
use crate::prompt::PromptCache;
use crate::query::{recommend, recommend_cached, QueryOptions, QueryResult};

/// Answers queries on one catalogue, each alone or, with batching on, decoded together
/// with concurrent ones by a [`Batcher`]. Internally synchronised: share it between
/// threads.
pub struct Recommender {
    catalog: Arc<Catalog>,
    batcher: RwLock<Option<Arc<Batcher>>>,
}

impl Recommender {
    /// Queries on `catalog`, each decoded alone until [`Recommender::set_batching`].
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Recommender {
            catalog,
            batcher: RwLock::new(None),
        }
    }

    /// The catalogue the queries run on; items are registered and removed through it.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// `Some(config)`: decode concurrent queries together from now on; `None`: each alone.
    /// Queries already running finish on the worker they started on (the old worker is
    /// joined when the last of them lets go of it). A bad `config` is an error naming the
    /// field, and the batching in force is unchanged.
    pub fn set_batching(&self, config: Option<BatcherConfig>) -> Result<()> {
        let batcher = match config {
            Some(config) => Some(Arc::new(Batcher::new(self.catalog.clone(), config)?)),
            None => None,
        };
        *self.batcher.write() = batcher;
        Ok(())
    }

    /// The batching worker in force, if any (for its statistics).
    pub fn batcher(&self) -> Option<Arc<Batcher>> {
        self.batcher.read().clone()
    }

    /// [`crate::recommend_cached`], through the batching worker when batching is on.
    pub fn recommend_cached(
        &self,
        user: &UserHistory,
        cache: &mut PromptCache,
        opts: &QueryOptions,
    ) -> Result<QueryResult> {
        // The worker is cloned out of the lock, so switching batching never waits for a
        // query, and a query keeps the worker it started on.
        match self.batcher() {
            Some(batcher) => batcher.recommend_cached(user, cache, opts),
            None => recommend_cached(&self.catalog, user, cache, opts),
        }
    }

    /// [`crate::recommend`], through the batching worker when batching is on.
    pub fn recommend(&self, user: &UserHistory, opts: &QueryOptions) -> Result<QueryResult> {
        match self.batcher() {
            Some(batcher) => batcher.recommend(user, opts),
            None => recommend(&self.catalog, user, opts),
        }
    }
}
