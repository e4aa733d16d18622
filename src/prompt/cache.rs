//! A user's prompt KV cache, kept across queries: the next query prefills only the
//! positions after the longest prefix its prompt shares with the cached one.
//!
//! Correctness rests on [`PositionKey`](super::PositionKey): attention is causal and
//! positions absolute, so the KV of position `i` depends only on the keys of positions
//! `0..=i` (and the model). Equal keys up to `i` therefore mean an equal cache up to `i`;
//! nothing about layouts or appends has to be trusted. What the reuse buys depends on the
//! layout: appending to a vanilla or PFT-I history keeps everything before the previous
//! latest item (its delimiter changes to `<|item_sep|>`); stream-aligned PFT-S keeps
//! everything before the open group or, when a group closes, before the last two;
//! tail-aligned PFT-S regroups the whole history on every append and so reuses only the
//! head.
//!
//! Scores after a partial reuse agree with a fresh query's to float rounding (1e-4, tested),
//! not bit for bit: the positions are computed in different batches. The same prompt
//! asked again is answered from the cache and is bit-identical to the previous answer.

use std::sync::Arc;

use super::budget::{Held, KvBudget, Slot};
use super::builder::Prompt;
use super::prefill::{prefill, prefill_from, Prefilled};
use crate::catalog::Catalog;
use crate::error::Result;

/// How the last prefill went: positions taken from the cache and positions computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReuseStats {
    /// Positions taken from the cache.
    pub reused: usize,
    /// Positions computed by the prefill.
    pub computed: usize,
}

/// One user's cached prompt. Tied to one catalogue (and so one model): used with another,
/// it starts over. Holds `layers x 2 x kv_heads x head_dim x 4` bytes per position
/// ([`PromptCache::memory_bytes`]); under a catalogue's KV budget
/// ([`Catalog::set_kv_budget`]) those bytes are charged to the budget, which may evict
/// them between this user's queries. One query at a time.
#[derive(Default)]
pub struct PromptCache {
    catalog: Option<u64>,
    slot: Slot,
    /// The budget this cache's KV is charged to, and its entry there.
    budget: Option<Arc<KvBudget>>,
    tick: Option<u64>,
    last: ReuseStats,
}

impl PromptCache {
    /// An empty cache, tied to no catalogue yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops the cached state (its memory is freed).
    pub fn clear(&mut self) {
        self.release();
        *self.slot.lock() = None;
        self.catalog = None;
        self.last = ReuseStats::default();
    }

    /// Positions cached (0 after an eviction).
    pub fn len(&self) -> usize {
        self.slot.lock().as_ref().map_or(0, |h| h.keys.len())
    }

    /// Whether no position is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held by the cached keys and values.
    pub fn memory_bytes(&self) -> usize {
        self.slot.lock().as_ref().map_or(0, |h| h.kv.memory_bytes())
    }

    /// How the last prefill through this cache went: positions reused and computed.
    pub fn last_reuse(&self) -> ReuseStats {
        self.last
    }

    /// Takes this cache's entry out of its budget's accounting.
    fn release(&mut self) {
        if let Some(budget) = self.budget.take() {
            budget.forget(&mut self.tick);
        }
        self.tick = None;
    }

    /// Prefills `prompt` (built from `catalog`'s current snapshot) and keeps its KV for
    /// the next call.
    #[doc(hidden)] // Takes an internal `Prompt`: for the benchmarks.
    pub fn prefill(&mut self, catalog: &Catalog, prompt: &Prompt) -> Result<Prefilled> {
        let model = catalog.model();
        // Catalogue indices in the keys mean something only within one catalogue; an
        // index is never reassigned there (a retitled item takes a new one), so the keys
        // stay valid across updates.
        let owner = catalog.id();
        if self.catalog != Some(owner) {
            self.clear();
            self.catalog = Some(owner);
        }
        let budget = catalog.kv_budget();
        if !same_budget(&self.budget, &budget) {
            self.release();
            self.budget = budget;
        }
        // Taken out for the query; a budget cannot evict it meanwhile.
        let held = self.slot.lock().take();
        if let Some(b) = &self.budget {
            b.count(held.is_some());
        }
        let held = match held {
            Some(h) if h.keys == prompt.keys => {
                self.last = ReuseStats {
                    reused: prompt.len,
                    computed: 0,
                };
                let prefilled = Prefilled {
                    cache: h.kv.clone(),
                    logp: h.logp.clone(),
                };
                self.store(h); // the same state, as the most recent use
                return Ok(prefilled);
            }
            other => other,
        };
        let shared = held.as_ref().map_or(0, |h| {
            h.keys
                .iter()
                .zip(&prompt.keys)
                .take_while(|(a, b)| a == b)
                .count()
                // The last position is recomputed: its hidden state gives the logits.
                .min(prompt.len.saturating_sub(1))
        });
        let (prefilled, start) = match held {
            // Below the shared head the model's own head cache is as good and free.
            Some(h) if shared > prompt.shared_head => {
                let mut kv = h.kv;
                kv.truncate(shared)?;
                (prefill_from(model, prompt, kv)?, shared)
            }
            _ => {
                let head = if prompt.shared_head < prompt.len {
                    prompt.shared_head
                } else {
                    0
                };
                (prefill(model, prompt)?, head)
            }
        };
        self.last = ReuseStats {
            reused: start,
            computed: prompt.len - start,
        };
        self.store(Held {
            keys: prompt.keys.clone(),
            kv: prefilled.cache.clone(),
            logp: prefilled.logp.clone(),
        });
        Ok(prefilled)
    }

    /// Keeps a prompt's state for the next query, charged to the budget if there is one.
    fn store(&mut self, held: Held) {
        match &self.budget {
            Some(budget) => budget.store(&self.slot, &mut self.tick, held),
            None => *self.slot.lock() = Some(held),
        }
    }
}

impl Drop for PromptCache {
    fn drop(&mut self) {
        self.release();
    }
}

fn same_budget(a: &Option<Arc<KvBudget>>, b: &Option<Arc<KvBudget>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}
