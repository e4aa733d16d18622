//! An immutable view of a catalogue: what one query reads from start to end.
//!
//! Every item ever registered keeps its index (`u32`, assigned in registration order): a
//! removed item, or the old title of a retitled one, stays readable at its index so that
//! the histories that hold it still render, but it leaves the title tree and is never
//! recommended. The tables are persistent (`imbl`): an update makes a new snapshot that
//! shares all but O(log n) of the old one, which the queries still reading it keep.

use std::sync::Arc;

use candle_core::{Device, Tensor};
use half::f16;

use super::patch::item_patches;
use super::trie::TitleTrie;
use crate::error::{Error, Result};
use crate::model::Llama;

/// How a catalogue keeps its items' patches ([`crate::Catalog::set_patch_storage`]).
/// docs/PERFORMANCE.md ("Catalogue size") measures each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum PatchStorage {
    /// Computed at registration and kept in f32: `hidden` x 4 bytes per item.
    F32,
    /// Computed at registration and kept in f16: half the bytes; each patch is its f32
    /// value rounded to f16, so scores move slightly.
    F16,
    /// Not kept: computed from the title's token embeddings when a prompt needs it, with
    /// the values `F32` keeps (the same computation), so answers are identical. The
    /// default: keeping patches costs SmolLM2 ~2.3 KB per item and triples registration
    /// time, while computing a query's costs it little (1M items: 1,699 ms p50 against
    /// 1,651 ms with `F32`; docs/PERFORMANCE.md, "Catalogue size").
    #[default]
    OnDemand,
}

impl std::str::FromStr for PatchStorage {
    type Err = Error;

    /// `f32`, `f16` or `on-demand`.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(PatchStorage::F32),
            "f16" => Ok(PatchStorage::F16),
            "on-demand" => Ok(PatchStorage::OnDemand),
            other => Err(Error::invalid(format!(
                "patch storage {other:?}: expected f32, f16 or on-demand"
            ))),
        }
    }
}

impl std::fmt::Display for PatchStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PatchStorage::F32 => "f32",
            PatchStorage::F16 => "f16",
            PatchStorage::OnDemand => "on-demand",
        })
    }
}

/// One item's patch in the catalogue's [`PatchStorage`].
#[derive(Debug)]
pub(crate) enum StoredPatch {
    F32(Box<[f32]>),
    F16(Box<[f16]>),
    OnDemand,
}

impl StoredPatch {
    /// `patch` (its f32 value, when computed) kept as `storage` asks.
    pub(crate) fn new(patch: Option<Vec<f32>>, storage: PatchStorage) -> Self {
        match (patch, storage) {
            (Some(p), PatchStorage::F32) => StoredPatch::F32(p.into_boxed_slice()),
            (Some(p), PatchStorage::F16) => {
                StoredPatch::F16(p.iter().map(|&v| f16::from_f32(v)).collect())
            }
            _ => StoredPatch::OnDemand,
        }
    }
}

/// One registered item as a catalogue holds it ([`CatalogSnapshot::item`],
/// [`CatalogSnapshot::get`]).
#[derive(Debug)]
#[non_exhaustive]
pub struct CatalogItem {
    /// The caller's item id.
    pub id: u64,
    /// The title as stored: trimmed, and checked at registration.
    pub title: String,
    /// The title's token ids, as they appear in the prompt and in the answer.
    pub tokens: Vec<u32>,
    /// The item patch: the mean of the title's token embeddings, `hidden` values.
    pub(crate) patch: StoredPatch,
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
    pub(crate) patch_storage: PatchStorage,
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
            patch_storage: PatchStorage::default(),
        }
    }

    /// Items that can be recommended.
    pub fn len(&self) -> usize {
        self.items.len() - self.retired.len()
    }

    /// Whether no item can be recommended.
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

    /// How this catalogue keeps its patches.
    pub fn patch_storage(&self) -> PatchStorage {
        self.patch_storage
    }

    /// The item patches of `indices`, `[indices.len(), hidden]`, on the model's device.
    /// Patches the catalogue does not keep are computed from `llama`'s embeddings (the
    /// catalogue's model), all in one batch.
    pub fn patches_of(&self, llama: &Llama, indices: &[u32]) -> Result<Tensor> {
        let d = self.hidden;
        let mut rows = vec![0f32; indices.len() * d];
        let mut missing: Vec<(usize, &[u32])> = Vec::new();
        for (row, (&i, out)) in indices.iter().zip(rows.chunks_exact_mut(d)).enumerate() {
            let item = self.item(i);
            match &item.patch {
                StoredPatch::F32(p) => out.copy_from_slice(p),
                StoredPatch::F16(p) => {
                    for (o, v) in out.iter_mut().zip(p.iter()) {
                        *o = v.to_f32();
                    }
                }
                StoredPatch::OnDemand => missing.push((row, &item.tokens)),
            }
        }
        if !missing.is_empty() {
            let titles: Vec<&[u32]> = missing.iter().map(|&(_, t)| t).collect();
            let computed = item_patches(llama, &titles)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            for (&(row, _), patch) in missing.iter().zip(computed.chunks_exact(d)) {
                rows[row * d..(row + 1) * d].copy_from_slice(patch);
            }
        }
        Ok(Tensor::from_vec(rows, (indices.len(), d), &self.device)?)
    }

    /// The prefix tree of the live items' title tokens, which constrains decoding.
    pub fn trie(&self) -> &TitleTrie {
        &self.trie
    }
}
