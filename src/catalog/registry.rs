//! A catalogue of items for one model. Titles are tokenised and their item patches
//! computed once, at registration.
//!
//! Concurrency: readers take the current [`CatalogSnapshot`] (an `Arc`) and keep it for
//! the whole query; a registration builds a new snapshot beside the old one and swaps it
//! in, so queries running meanwhile see a consistent catalogue and never block on it.
//!
//! Policies: an id registered twice is an error (`DuplicateItem`) and changes nothing;
//! different ids may share a title (they share one path in the prefix tree and are
//! returned together, with the same score); a title is checked by [`check_title`]. Items
//! can be removed and retitled ([`Catalog::remove_batch`], [`Catalog::set_titles`]); an
//! update costs O(its titles + log n), and queries running meanwhile keep their snapshot.

use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::patch::item_patches;
use super::snapshot::{CatalogItem, CatalogSnapshot, PatchStorage, StoredPatch};
use crate::error::{Error, Result};
use crate::history::{Interaction, UserHistory};
use crate::model::Model;
use crate::prompt::{KvBudget, KvStats};

/// The longest title accepted, in bytes: checked before tokenising, so a caller's 1 MB
/// string is refused at once.
pub const MAX_TITLE_BYTES: usize = 4096;

/// The most tokens a title may have: a title is written into prompts (as history text and
/// as the answer), so it must leave room in the model's context for the rest of the
/// prompt. A sixteenth of the context, at most 512.
pub fn max_title_tokens(model: &Model) -> usize {
    (model.llama().config().max_position_embeddings / 16).clamp(8, 512)
}

/// The title to store for item `id`: trimmed, at most [`MAX_TITLE_BYTES`], with no
/// control characters (they would break the prompt's lines and the TSV format) and with
/// at least one visible character (a title of only zero-width or format characters
/// tokenises to nothing a reader could recognise).
pub fn check_title(id: u64, title: &str) -> Result<&str> {
    let title = title.trim();
    if title.len() > MAX_TITLE_BYTES {
        return Err(Error::invalid(format!(
            "item {id}: title of {} bytes; a title may have at most {MAX_TITLE_BYTES}",
            title.len()
        )));
    }
    if let Some(c) = title.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(format!(
            "item {id}: title {:?} contains the control character U+{:04X}",
            preview(title),
            c as u32
        )));
    }
    if !title.chars().any(is_visible) {
        return Err(Error::invalid(format!(
            "item {id}: title {:?} has no visible characters",
            preview(title)
        )));
    }
    Ok(title)
}

/// Not whitespace, and not one of Unicode's invisible format characters (zero-width
/// spaces and joiners, direction marks and isolates, the soft hyphen, the BOM).
fn is_visible(c: char) -> bool {
    !c.is_whitespace()
        && !matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
            | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}'
            | '\u{E0000}'..='\u{E0FFF}')
}

/// The start of a title for an error message (a refused title may be a megabyte long).
fn preview(title: &str) -> String {
    match title.char_indices().nth(60) {
        Some((end, _)) => format!("{}...", &title[..end]),
        None => title.to_string(),
    }
}

/// A model's catalogue: each registered item's title and tokens (and item patch, as its
/// [`PatchStorage`] keeps them), and the prefix tree of titles that recommendations are
/// constrained to. Internally synchronised: share it between threads. An update swaps in
/// a new [`CatalogSnapshot`], so queries running meanwhile keep the one they started with
/// and never block on it.
pub struct Catalog {
    /// Unique per catalogue in this process, so per-user caches holding catalogue
    /// indices can tell catalogues apart.
    id: u64,
    model: Arc<Model>,
    current: RwLock<Arc<CatalogSnapshot>>,
    /// Serialises updates so none is lost between reading and swapping.
    writer: Mutex<()>,
    /// The budget its users' prompt caches share, if one is set.
    kv_budget: RwLock<Option<Arc<KvBudget>>>,
}

impl Catalog {
    /// An empty catalogue for `model`.
    pub fn new(model: Arc<Model>) -> Result<Self> {
        let empty = CatalogSnapshot::empty(model.llama().hidden_size(), model.device().clone());
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Catalog {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            model,
            current: RwLock::new(Arc::new(empty)),
            writer: Mutex::new(()),
            kv_budget: RwLock::new(None),
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The model this catalogue's titles were tokenised and embedded with; its queries run it.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The catalogue as it is now; later updates do not change it.
    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        self.current.read().clone()
    }

    /// Items that can be recommended.
    pub fn len(&self) -> usize {
        self.current.read().len()
    }

    /// Whether no item can be recommended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bounds the bytes of prompt KV that the [`crate::PromptCache`]s used with this
    /// catalogue hold together, evicting the least recently used users' KV beyond it;
    /// `None` lifts the bound. An evicted user keeps its history; its next query prefills
    /// its whole prompt, with the same answer. Lowering the bound evicts at once.
    pub fn set_kv_budget(&self, bytes: Option<usize>) {
        let mut slot = self.kv_budget.write();
        match (bytes, slot.as_ref()) {
            (None, _) => *slot = None,
            (Some(b), Some(budget)) => budget.set_capacity(b),
            (Some(b), None) => *slot = Some(Arc::new(KvBudget::new(b))),
        }
    }

    /// The KV budget's bytes held, hits, misses and evictions; `None` without a budget.
    pub fn kv_stats(&self) -> Option<KvStats> {
        self.kv_budget.read().as_ref().map(|b| b.stats())
    }

    pub(crate) fn kv_budget(&self) -> Option<Arc<KvBudget>> {
        self.kv_budget.read().clone()
    }

    /// Registers one item: [`Catalog::add_batch`] of one.
    pub fn add(&self, id: u64, title: &str) -> Result<()> {
        self.add_batch(&[(id, title)])
    }

    /// Registers items all or nothing: on any error the catalogue is unchanged. An id that
    /// is registered is `DuplicateItem`; a removed id may be registered again. Costs
    /// O(the titles' tokens + log n) per item, not O(catalogue).
    pub fn add_batch<T: AsRef<str>>(&self, items: &[(u64, T)]) -> Result<()> {
        self.update(|old, next| {
            let mut seen = std::collections::HashSet::new();
            for (id, _) in items {
                if old.live_index_of(*id).is_ok() || !seen.insert(*id) {
                    return Err(Error::DuplicateItem(*id));
                }
            }
            for item in self.prepare(items, next.patch_storage)? {
                insert(next, item, self.model.special().answer_end);
            }
            Ok(())
        })
    }

    /// Removes items all or nothing (`UnknownItem` for an id that is not registered, and
    /// the catalogue unchanged). A removed item is never recommended, scored or newly
    /// appended to a history; a history that already holds it still renders it, with its
    /// last title. Queries already running keep the catalogue they started with.
    pub fn remove_batch(&self, ids: &[u64]) -> Result<()> {
        self.update(|_, next| {
            let answer_end = self.model.special().answer_end;
            for &id in ids {
                let index = next.live_index_of(id)?; // also refuses an id given twice
                retire(next, index, answer_end);
            }
            Ok(())
        })
    }

    /// Removes one item: [`Catalog::remove_batch`] of one.
    pub fn remove(&self, id: u64) -> Result<()> {
        self.remove_batch(&[id])
    }

    /// Changes the titles of registered items, all or nothing (`UnknownItem` for an id
    /// that is not registered; a title is checked as at registration). From then on the
    /// item is recommended, scored and shown in histories with its new title. Queries
    /// already running keep the catalogue they started with.
    pub fn set_titles<T: AsRef<str>>(&self, items: &[(u64, T)]) -> Result<()> {
        self.update(|old, next| {
            let mut seen = std::collections::HashSet::new();
            for (id, _) in items {
                old.live_index_of(*id)?;
                if !seen.insert(*id) {
                    return Err(Error::invalid(format!(
                        "item {id}: retitled twice in one batch"
                    )));
                }
            }
            let answer_end = self.model.special().answer_end;
            for item in self.prepare(items, next.patch_storage)? {
                // A new index, so that nothing cached under the old one (a user's prompt
                // KV) is taken for the new title.
                let old_index = next.live_index_of(item.id)?;
                retire(next, old_index, answer_end);
                insert(next, item, answer_end);
            }
            Ok(())
        })
    }

    /// Retitles one item: [`Catalog::set_titles`] of one.
    pub fn set_title(&self, id: u64, title: &str) -> Result<()> {
        self.set_titles(&[(id, title)])
    }

    /// Applies `change` to a copy of the current snapshot (cheap: the tables are
    /// persistent) and swaps it in; on error nothing changes.
    fn update(
        &self,
        change: impl FnOnce(&CatalogSnapshot, &mut CatalogSnapshot) -> Result<()>,
    ) -> Result<()> {
        let _writing = self.writer.lock();
        let old = self.snapshot();
        let mut next = (*old).clone();
        change(&old, &mut next)?;
        *self.current.write() = Arc::new(next);
        Ok(())
    }

    /// Keeps the items' patches as `storage` from now on: the patches of the items
    /// registered so far are computed again (or dropped) once, and queries already
    /// running keep the catalogue they started with. Answers are unchanged between `F32`
    /// and `OnDemand`; `F16` rounds the patches.
    pub fn set_patch_storage(&self, storage: PatchStorage) -> Result<()> {
        self.update(|old, next| {
            if old.patch_storage == storage {
                return Ok(());
            }
            next.patch_storage = storage;
            // In batches, so the embedding rows gathered at once stay bounded.
            for start in (0..old.items.len()).step_by(4096) {
                let end = (start + 4096).min(old.items.len());
                let batch: Vec<&Arc<CatalogItem>> = old.items.iter().skip(start).take(end - start).collect();
                let patches = match storage {
                    PatchStorage::OnDemand => vec![None; batch.len()],
                    _ => {
                        let titles: Vec<&[u32]> = batch.iter().map(|i| i.tokens.as_slice()).collect();
                        item_patches(self.model.llama(), &titles)?
                            .to_vec2::<f32>()?
                            .into_iter()
                            .map(Some)
                            .collect()
                    }
                };
                for (offset, (item, patch)) in batch.into_iter().zip(patches).enumerate() {
                    next.items.set(
                        start + offset,
                        Arc::new(CatalogItem {
                            id: item.id,
                            title: item.title.clone(),
                            tokens: item.tokens.clone(),
                            patch: StoredPatch::new(patch, storage),
                        }),
                    );
                }
            }
            Ok(())
        })
    }

    /// Checks and tokenises titles and computes their item patches in one batch, unless
    /// `storage` computes them on demand.
    fn prepare<T: AsRef<str>>(
        &self,
        items: &[(u64, T)],
        storage: PatchStorage,
    ) -> Result<Vec<CatalogItem>> {
        let mut prepared = Vec::with_capacity(items.len());
        for (id, title) in items {
            let (id, title) = (*id, title.as_ref());
            let title = check_title(id, title)?;
            let tokens = self.model.tokenizer().encode(title)?;
            let max_tokens = max_title_tokens(&self.model);
            if tokens.is_empty() || tokens.len() > max_tokens {
                return Err(Error::invalid(format!(
                    "item {id}: title {:?} is {} tokens; a title must be 1 to {max_tokens} tokens \
                     to fit the model's context",
                    preview(title),
                    tokens.len()
                )));
            }
            let sp = self.model.special();
            if tokens.iter().any(|&t| {
                t == sp.start_seq || t == sp.end_seq || t == sp.item_sep || t == sp.answer_end
            }) {
                return Err(Error::invalid(format!(
                    "item {id}: title {:?} contains one of the prompt's special tokens",
                    preview(title)
                )));
            }
            prepared.push(CatalogItem {
                id,
                title: title.to_string(),
                tokens,
                patch: StoredPatch::OnDemand,
            });
        }
        if prepared.is_empty() || storage == PatchStorage::OnDemand {
            return Ok(prepared);
        }
        let token_lists: Vec<&[u32]> = prepared.iter().map(|i| i.tokens.as_slice()).collect();
        let patches = item_patches(self.model.llama(), &token_lists)?.to_vec2::<f32>()?;
        for (item, patch) in prepared.iter_mut().zip(patches) {
            item.patch = StoredPatch::new(Some(patch), storage);
        }
        Ok(prepared)
    }

    /// A new history of `ids` (oldest first, times unknown), all checked against this
    /// catalogue (`UnknownItem` otherwise).
    pub fn history_of(&self, ids: &[u64]) -> Result<UserHistory> {
        let interactions: Vec<Interaction> = ids
            .iter()
            .map(|&item_id| Interaction {
                item_id,
                timestamp: None,
            })
            .collect();
        let mut user = UserHistory::new();
        self.append(&mut user, &interactions)?;
        Ok(user)
    }

    /// Appends interactions to a user's history, all or nothing: every id must be in
    /// this catalogue, else `UnknownItem` and the history is unchanged.
    pub fn append(&self, user: &mut UserHistory, interactions: &[Interaction]) -> Result<()> {
        let snap = self.snapshot();
        for i in interactions {
            snap.live_index_of(i.item_id)?;
        }
        for &i in interactions {
            user.push_unchecked(i);
        }
        Ok(())
    }
}

/// Adds `item` at the next index: the item table, the id's index and the title tree.
fn insert(snap: &mut CatalogSnapshot, item: CatalogItem, answer_end: u32) {
    let index = snap.items.len() as u32;
    let mut path = item.tokens.clone();
    path.push(answer_end);
    snap.trie.insert(&path, index);
    snap.index.insert(item.id, index);
    snap.items.push_back(Arc::new(item));
}

/// Takes the item at `index` out of the title tree; it stays readable at its index.
fn retire(snap: &mut CatalogSnapshot, index: u32, answer_end: u32) {
    let mut path = snap.item(index).tokens.clone();
    path.push(answer_end);
    snap.trie.remove(&path, index);
    snap.retired.insert(index);
}
