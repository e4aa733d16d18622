//! A catalogue of items for one model. Titles are tokenised and their item patches
//! computed once, at registration.
//!
//! Concurrency: readers take the current [`CatalogSnapshot`] (an `Arc`) and keep it for
//! the whole query; a registration builds a new snapshot beside the old one and swaps it
//! in, so queries running meanwhile see a consistent catalogue and never block on it.
//!
//! Policies: an id registered twice is an error (`DuplicateItem`) and changes nothing;
//! different ids may share a title (they share one path in the prefix tree and are
//! returned together, with the same score); a title is checked by [`check_title`].

use std::sync::Arc;

use candle_core::Tensor;
use parking_lot::{Mutex, RwLock};

use super::patch::item_patches;
use super::snapshot::{CatalogItem, CatalogSnapshot};
use super::trie::TitleTrie;
use crate::error::{Error, Result};
use crate::history::{Interaction, UserHistory};
use crate::model::Model;

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

pub struct Catalog {
    /// Unique per catalogue in this process, so per-user caches holding catalogue
    /// indices can tell catalogues apart.
    id: u64,
    model: Arc<Model>,
    current: RwLock<Arc<CatalogSnapshot>>,
    /// Serialises registrations so none is lost between reading and swapping.
    writer: Mutex<()>,
}

impl Catalog {
    pub fn new(model: Arc<Model>) -> Result<Self> {
        let d = model.llama().hidden_size();
        let empty = CatalogSnapshot {
            items: Vec::new(),
            index: Default::default(),
            patches: Tensor::zeros((0, d), candle_core::DType::F32, model.device())?,
            trie: TitleTrie::default(),
        };
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(Catalog {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            model,
            current: RwLock::new(Arc::new(empty)),
            writer: Mutex::new(()),
        })
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The catalogue as it is now; later registrations do not change it.
    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        self.current.read().clone()
    }

    pub fn len(&self) -> usize {
        self.current.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn add(&self, id: u64, title: &str) -> Result<()> {
        self.add_batch(&[(id, title)])
    }

    /// Registers items all or nothing: on any error the catalogue is unchanged.
    pub fn add_batch<T: AsRef<str>>(&self, items: &[(u64, T)]) -> Result<()> {
        let _writing = self.writer.lock();
        let old = self.snapshot();
        let mut new_items = Vec::with_capacity(items.len());
        let mut seen = std::collections::HashSet::new();
        for (id, title) in items {
            let (id, title) = (*id, title.as_ref());
            if old.index.contains_key(&id) || !seen.insert(id) {
                return Err(Error::DuplicateItem(id));
            }
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
            new_items.push(CatalogItem {
                id,
                title: title.to_string(),
                tokens,
            });
        }
        if new_items.is_empty() {
            return Ok(());
        }
        let token_lists: Vec<&[u32]> = new_items.iter().map(|i| i.tokens.as_slice()).collect();
        let patches = item_patches(self.model.llama(), &token_lists)?;
        let mut next = (*old).clone();
        next.patches = Tensor::cat(&[&old.patches, &patches], 0)?;
        let answer_end = self.model.special().answer_end;
        for item in new_items {
            let index = next.items.len() as u32;
            let mut path = item.tokens.clone();
            path.push(answer_end);
            next.trie.insert(&path, index);
            next.index.insert(item.id, index);
            next.items.push(Arc::new(item));
        }
        *self.current.write() = Arc::new(next);
        Ok(())
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
            snap.index_of(i.item_id)?;
        }
        for &i in interactions {
            user.push_unchecked(i);
        }
        Ok(())
    }
}
