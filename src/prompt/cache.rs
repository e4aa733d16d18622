//! A user's prompt KV cache, kept across queries: the next query prefills only the
//! positions after the longest prefix its prompt shares with the cached one.
//!
//! Correctness rests on [`PositionKey`]: attention is causal and positions absolute, so
//! the KV of position `i` depends only on the keys of positions `0..=i` (and the
//! model). Equal keys up to `i` therefore mean an equal cache up to `i`; nothing about
//! layouts or appends has to be trusted. What the reuse buys depends on the layout:
//! appending to a vanilla or PFT-I history keeps everything before the previous latest
//! item (its delimiter changes to `<|item_sep|>`); stream-aligned PFT-S keeps everything
//! before the open group or, when a group closes, before the last two; tail-aligned
//! PFT-S regroups the whole history on every append and so reuses only the head.
//!
//! Scores after a partial reuse agree with a fresh query's to float rounding (1e-4, tested),
//! not bit for bit: the positions are computed in different batches. The same prompt
//! asked again is answered from the cache and is bit-identical to the previous answer.

use super::builder::{PositionKey, Prompt};
use crate::catalog::Catalog;
use crate::decode::{prefill, prefill_from, Prefilled};
use crate::error::Result;
use crate::model::KvCache;

/// How the last prefill went: positions taken from the cache and positions computed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReuseStats {
    pub reused: usize,
    pub computed: usize,
}

/// One user's cached prompt. Tied to one catalogue (and so one model): used with another,
/// it starts over. Holds `layers x 2 x kv_heads x head_dim x 4` bytes per position
/// ([`PromptCache::memory_bytes`]). Not synchronised; one query at a time.
#[derive(Default)]
pub struct PromptCache {
    catalog: Option<u64>,
    keys: Vec<PositionKey>,
    kv: Option<KvCache>,
    /// The first answer token's log-probabilities after the cached prompt, so the same
    /// prompt again is answered without a forward pass and bit for bit as before.
    logp: Vec<f32>,
    last: ReuseStats,
}

impl PromptCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops the cached state (its memory is freed).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Positions cached.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Bytes held by the cached keys and values.
    pub fn memory_bytes(&self) -> usize {
        self.kv.as_ref().map_or(0, KvCache::memory_bytes)
    }

    pub fn last_reuse(&self) -> ReuseStats {
        self.last
    }

    /// Prefills `prompt` (built from `catalog`'s current snapshot) and keeps its KV for
    /// the next call.
    pub(crate) fn prefill(&mut self, catalog: &Catalog, prompt: &Prompt) -> Result<Prefilled> {
        let model = catalog.model();
        // Catalogue indices in the keys mean something only within one catalogue; its
        // snapshots only ever append, so indices stay valid across registrations.
        let owner = catalog.id();
        if self.catalog != Some(owner) {
            self.clear();
            self.catalog = Some(owner);
        }
        if let Some(kv) = self.kv.as_ref().filter(|_| self.keys == prompt.keys) {
            self.last = ReuseStats {
                reused: prompt.len,
                computed: 0,
            };
            return Ok(Prefilled {
                cache: kv.clone(),
                logp: self.logp.clone(),
            });
        }
        let shared = self
            .keys
            .iter()
            .zip(&prompt.keys)
            .take_while(|(a, b)| a == b)
            .count()
            // The last position is recomputed: its hidden state gives the logits.
            .min(prompt.len.saturating_sub(1));
        let (prefilled, start) = match self.kv.take() {
            // Below the shared head the model's own head cache is as good and free.
            Some(mut kv) if shared > prompt.shared_head => {
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
        self.keys = prompt.keys.clone();
        self.kv = Some(prefilled.cache.clone());
        self.logp = prefilled.logp.clone();
        Ok(prefilled)
    }
}
