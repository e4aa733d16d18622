//! An immutable view of a catalogue: what one query reads from start to end.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::Tensor;

use super::trie::TitleTrie;
use crate::error::{Error, Result};

#[derive(Debug)]
pub struct CatalogItem {
    pub id: u64,
    pub title: String,
    /// The title's token ids, as they appear in the prompt and in the answer.
    pub tokens: Vec<u32>,
}

/// Items in registration order, with their cached item patches (row `i` of `patches`
/// belongs to item `i`) and the title prefix tree.
#[derive(Debug, Clone)]
pub struct CatalogSnapshot {
    pub(crate) items: Vec<Arc<CatalogItem>>,
    pub(crate) index: HashMap<u64, u32>,
    pub(crate) patches: Tensor,
    pub(crate) trie: TitleTrie,
}

impl CatalogSnapshot {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn item(&self, index: u32) -> &CatalogItem {
        &self.items[index as usize]
    }

    pub fn items(&self) -> impl Iterator<Item = &CatalogItem> {
        self.items.iter().map(|i| i.as_ref())
    }

    /// The catalogue index of `id`, or `UnknownItem`.
    pub fn index_of(&self, id: u64) -> Result<u32> {
        self.index.get(&id).copied().ok_or(Error::UnknownItem(id))
    }

    pub fn get(&self, id: u64) -> Option<&CatalogItem> {
        self.index.get(&id).map(|&i| self.item(i))
    }

    /// Cached item patches `[len, hidden]`.
    pub fn patches(&self) -> &Tensor {
        &self.patches
    }

    pub fn trie(&self) -> &TitleTrie {
        &self.trie
    }
}
