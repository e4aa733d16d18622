//! A memory budget for the prompt KV that user caches hold, shared by every user of a
//! catalogue, with least-recently-used eviction across users.
//!
//! Each [`super::PromptCache`] keeps its state in a [`Slot`]; with a budget, the budget
//! lists the slots that hold KV, oldest use first. Storing a user's new KV charges its
//! bytes and evicts the least recently used other users' KV until the total fits. An
//! evicted user keeps its history; its next query finds nothing cached and prefills its
//! whole prompt (a miss), with the same answer.
//!
//! Locking: the budget's lock is taken before any slot's, and a slot's owner holds only
//! its own slot's lock (briefly, never while waiting for the budget), so no cycle exists.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::model::KvCache;

use super::builder::PositionKey;

/// What a user's cache holds between queries.
pub(crate) struct Held {
    pub keys: Vec<PositionKey>,
    pub kv: KvCache,
    /// The first answer token's log-probabilities after the cached prompt.
    pub logp: Vec<f32>,
}

impl Held {
    pub fn bytes(&self) -> usize {
        self.kv.memory_bytes() + self.logp.len() * 4
    }
}

/// One user's cached state; the budget may empty it between that user's queries.
pub(crate) type Slot = Arc<Mutex<Option<Held>>>;
/// How the budget refers to a slot: it never keeps a dropped cache's slot alive.
type WeakSlot = Weak<Mutex<Option<Held>>>;

/// The prompt KV a catalogue's users hold under its budget ([`crate::Catalog::kv_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct KvStats {
    /// The budget in bytes.
    pub capacity: usize,
    /// Bytes of KV held by user caches now.
    pub bytes_held: usize,
    /// User caches holding KV now.
    pub users_held: usize,
    /// Prefills that reused a user's cached positions.
    pub hits: u64,
    /// Prefills that found none (a new user, or one whose KV was evicted).
    pub misses: u64,
    /// User caches emptied to make room.
    pub evictions: u64,
}

struct Lru {
    capacity: usize,
    held: usize,
    tick: u64,
    /// By last use: the slot and the bytes charged for it.
    entries: BTreeMap<u64, (WeakSlot, usize)>,
}

pub struct KvBudget {
    lru: Mutex<Lru>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl KvBudget {
    pub fn new(capacity: usize) -> Self {
        KvBudget {
            lru: Mutex::new(Lru {
                capacity,
                held: 0,
                tick: 0,
                entries: BTreeMap::new(),
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// Changes the budget; lowering it evicts at once.
    pub fn set_capacity(&self, capacity: usize) {
        let mut lru = self.lru.lock();
        lru.capacity = capacity;
        self.evict(&mut lru, None);
    }

    pub fn stats(&self) -> KvStats {
        let lru = self.lru.lock();
        KvStats {
            capacity: lru.capacity,
            bytes_held: lru.held,
            users_held: lru.entries.len(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count(&self, hit: bool) {
        let counter = if hit { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Stores `held` in `slot` as its most recent use (`*tick` is the slot's previous
    /// entry, replaced) and evicts other users' KV until the total fits. A state larger
    /// than the whole budget is not kept.
    pub(crate) fn store(&self, slot: &Slot, tick: &mut Option<u64>, held: Held) {
        let mut lru = self.lru.lock();
        if let Some((_, bytes)) = tick.take().and_then(|t| lru.entries.remove(&t)) {
            lru.held -= bytes;
        }
        let bytes = held.bytes();
        if bytes > lru.capacity {
            *slot.lock() = None;
            self.evictions.fetch_add(1, Ordering::Relaxed);
            return;
        }
        *slot.lock() = Some(held);
        lru.tick += 1;
        let now = lru.tick;
        lru.entries.insert(now, (Arc::downgrade(slot), bytes));
        lru.held += bytes;
        *tick = Some(now);
        self.evict(&mut lru, Some(now));
    }

    /// Forgets a slot's entry (its cache was cleared or dropped).
    pub(crate) fn forget(&self, tick: &mut Option<u64>) {
        if let Some(t) = tick.take() {
            let mut lru = self.lru.lock();
            if let Some((_, bytes)) = lru.entries.remove(&t) {
                lru.held -= bytes;
            }
        }
    }

    /// Empties the least recently used slots, never `keep`, until the total fits.
    fn evict(&self, lru: &mut Lru, keep: Option<u64>) {
        while lru.held > lru.capacity {
            let Some(oldest) = lru.entries.keys().copied().find(|&t| Some(t) != keep) else {
                break;
            };
            let (slot, bytes) = lru.entries.remove(&oldest).expect("listed");
            lru.held -= bytes;
            if let Some(slot) = slot.upgrade() {
                *slot.lock() = None;
            }
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }
}
