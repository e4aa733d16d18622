//! An immutable view of a catalogue: what one query reads from start to end.
//!
//! Every item ever registered keeps its index (`u32`, assigned in registration order): a
//! removed item, or the old title of a retitled one, stays readable at its index so that
//! the histories that hold it still render, but it leaves the title tree and is never
//! recommended. The tables are persistent (`imbl`): an update makes a new snapshot that
//! shares all but O(log n) of the old one, which the queries still reading it keep.

use std::sync::Arc;

use candle_core::{Device, Tensor};

use super::trie::TitleTrie;
use crate::error::{Error, Result};

#[derive(Debug)]
pub struct CatalogItem {
    pub id: u64,
    pub title: String,
    /// The title's token ids, as they appear in the prompt and in the answer.
    pub tokens: Vec<u32>,
    /// The item patch: the mean of the title's token embeddings, `hidden` values.
    pub(crate) patch: Vec<f32>,
}

/// Items by index, the live index of each id, and the title prefix tree of live items.
#[derive(Debug, Clone)]
pub struct CatalogSnapshot {
    /// Every index ever assigned, live or not.
    pub(crate) items: imbl::Vector<Arc<CatalogItem>>,
    /// Each registered id's latest index; removed ids stay, so old histories render.
    pub(crate) index: imbl::HashMap<u64, u32>,
    /// Indices no longer recommended: removed items and replaced titles.
    pub(crate) retired: imbl::HashSet<u32>,
    pub(crate) trie: TitleTrie,
    pub(crate) hidden: usize,
    pub(crate) device: Device,
}

impl CatalogSnapshot {
    pub(crate) fn empty(hidden: usize, device: Device) -> Self {
        CatalogSnapshot {
            items: Default::default(),
            index: Default::default(),
            retired: Default::default(),
            trie: TitleTrie::default(),
            hidden,
            device,
        }
    }

    /// Items that can be recommended.
    pub fn len(&self) -> usize {
        self.items.len() - self.retired.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Indices assigned so far (live or not): every index is below this.
    pub fn slots(&self) -> usize {
        self.items.len()
    }

    /// The item at `index`, live or not.
    pub fn item(&self, index: u32) -> &CatalogItem {
        &self.items[index as usize]
    }

    /// Whether the item at `index` can be recommended.
    pub fn is_live(&self, index: u32) -> bool {
        (index as usize) < self.items.len() && !self.retired.contains(&index)
    }

    /// The items that can be recommended, in registration order.
    pub fn items(&self) -> impl Iterator<Item = &CatalogItem> {
        self.items
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.retired.contains(&(*i as u32)))
            .map(|(_, item)| item.as_ref())
    }

    /// The index of `id` for rendering a history: live, or removed (its last title), else
    /// `UnknownItem`.
    pub fn index_of(&self, id: u64) -> Result<u32> {
        self.index.get(&id).copied().ok_or(Error::UnknownItem(id))
    }

    /// The index of `id` if it can be recommended (and newly appended to a history), else
    /// `UnknownItem`.
    pub fn live_index_of(&self, id: u64) -> Result<u32> {
        self.index
            .get(&id)
            .copied()
            .filter(|&i| !self.retired.contains(&i))
            .ok_or(Error::UnknownItem(id))
    }

    /// The item `id` as a history shows it (live or removed).
    pub fn get(&self, id: u64) -> Option<&CatalogItem> {
        self.index.get(&id).map(|&i| self.item(i))
    }

    /// The item patches of `indices`, `[indices.len(), hidden]`, on the model's device.
    pub fn patches_of(&self, indices: &[u32]) -> Result<Tensor> {
        let mut rows = Vec::with_capacity(indices.len() * self.hidden);
        for &i in indices {
            rows.extend_from_slice(&self.item(i).patch);
        }
        Ok(Tensor::from_vec(
            rows,
            (indices.len(), self.hidden),
            &self.device,
        )?)
    }

    pub fn trie(&self) -> &TitleTrie {
        &self.trie
    }
}
