//! Turns the template and a laid-out history into the input embedding matrix.
//!
//! Text segments are token ids (title, then the item's delimiter) embedded through the
//! model's table; patches are rows of the catalogue's cached patch matrix, each followed
//! by its item's delimiter token. Nothing is re-tokenised here: titles were tokenised
//! once at registration, and the template's head and tail once at model load.
//!
//! One walk over the segments ([`pieces`]) decides what each position holds; the
//! embeddings and the position keys a per-user cache compares ([`PositionKey`]) are both
//! read from it, so they cannot disagree.

use candle_core::Tensor;

use crate::catalog::patch::segment_means;
use crate::catalog::{item_patches, session_patch, CatalogSnapshot};
use crate::error::Result;
use crate::history::{compression_ratio, Layout, Segment, SegmentKind, Shown};
use crate::model::Model;

pub struct Prompt {
    /// `[1, len, hidden]`
    pub embeds: Tensor,
    /// Positions in the prompt (tokens and patches).
    pub len: usize,
    /// Leading positions that are the template's fixed head (the same for every query),
    /// whose KV cache the model computes once (`Model::head_cache`). 0 disables the reuse.
    pub shared_head: usize,
    /// History items it shows.
    pub history_items: usize,
    /// The paper's compression ratio of the history part.
    pub compression_ratio: f64,
    /// What each position holds, for reusing a cached prefix ([`crate::prompt::PromptCache`]).
    pub keys: Vec<PositionKey>,
    /// The layout used: the one asked for, or for `budget:N` the one fitted to this history.
    pub layout: Layout,
}

/// What one prompt position holds. Two prompts of the same model and catalogue whose keys
/// agree up to position `i` have the same hidden states (and KV) up to `i`: attention is
/// causal and positions are absolute.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PositionKey {
    Token(u32),
    /// The item patch of a catalogue index.
    Patch(u32),
    /// The session patch of these catalogue indices.
    Session(Vec<u32>),
}

/// A run of positions as the walk over the segments produces it.
enum Piece<'a> {
    Tokens(Vec<u32>),
    Patch(u32),
    Session(&'a [u32]),
}

/// Where item patches come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchSource {
    /// The catalogue's cached rows (serving).
    Cached,
    /// Recomputed from the model's current embedding table, so that training's
    /// gradients flow through the mean into the title tokens' embeddings (as in the
    /// reference implementation).
    Live,
}

/// Builds the prompt for `history` (item ids, oldest first, already truncated to K;
/// `stream-s:L` groups them by count).
pub fn build_prompt(
    model: &Model,
    catalog: &CatalogSnapshot,
    history: &[u64],
    layout: Layout,
) -> Result<Prompt> {
    build_prompt_shown(model, catalog, &Shown::items(history.to_vec()), layout)
}

/// Builds the prompt for what a query shows of a user's history
/// ([`crate::history::UserHistory::shown`]), with its stream-aligned sessions.
pub fn build_prompt_shown(
    model: &Model,
    catalog: &CatalogSnapshot,
    history: &Shown,
    layout: Layout,
) -> Result<Prompt> {
    layout.validate()?;
    let indices: Vec<u32> = history
        .items
        .iter()
        .map(|&id| catalog.index_of(id))
        .collect::<Result<_>>()?;
    let lens: Vec<usize> = indices
        .iter()
        .map(|&i| catalog.item(i).tokens.len())
        .collect();
    let layout = layout.resolve(&lens, fixed_positions(model, indices.len()));
    let segs = history.segments(layout);
    let keys = keys_of(&pieces(model, catalog, &indices, &segs));
    let embeds = embed_keys(model, catalog, &keys, PatchSource::Cached)?;
    let len = embeds.dim(0)?;
    debug_assert_eq!(keys.len(), len);
    let cr = compression_ratio(&segs, |i| catalog.item(indices[i]).tokens.len());
    Ok(Prompt {
        embeds: embeds.unsqueeze(0)?,
        len,
        shared_head: model.head_ids().len(),
        history_items: indices.len(),
        compression_ratio: cr,
        keys,
        layout,
    })
}

/// Prompt positions outside the history: the template's head and tail, and the closing
/// `<|end_seq|>` an empty history still gets.
pub fn fixed_positions(model: &Model, history_items: usize) -> usize {
    model.head_ids().len() + model.tail_ids().len() + usize::from(history_items == 0)
}

/// The prompt's embedding rows `[len, hidden]` for history items `indices` (catalogue
/// indices, oldest first) laid out as `segs`.
pub fn prompt_embeddings(
    model: &Model,
    catalog: &CatalogSnapshot,
    indices: &[u32],
    segs: &[Segment],
    patches: PatchSource,
) -> Result<Tensor> {
    let keys = keys_of(&pieces(model, catalog, indices, segs));
    embed_keys(model, catalog, &keys, patches)
}

/// What each position of the prompt for `indices` laid out as `segs` holds, in order.
pub fn prompt_keys(
    model: &Model,
    catalog: &CatalogSnapshot,
    indices: &[u32],
    segs: &[Segment],
) -> Vec<PositionKey> {
    keys_of(&pieces(model, catalog, indices, segs))
}

/// The embedding rows `[keys.len(), hidden]` of positions given by their keys (prompts
/// from [`prompt_keys`], answer tokens, or the nodes of a token tree): the tokens through
/// one lookup, the item patches through one mean over their titles, each session patch
/// over its items, then put in order.
pub fn embed_keys(
    model: &Model,
    catalog: &CatalogSnapshot,
    keys: &[PositionKey],
    patches: PatchSource,
) -> Result<Tensor> {
    let (mut tokens, mut items) = (Vec::new(), Vec::new());
    let mut sessions: Vec<&[u32]> = Vec::new();
    // Where each key's row lands in the concatenation [tokens; item patches; sessions].
    let mut at = Vec::with_capacity(keys.len());
    for key in keys {
        match key {
            PositionKey::Token(t) => {
                at.push((0, tokens.len()));
                tokens.push(*t);
            }
            PositionKey::Patch(i) => {
                at.push((1, items.len()));
                items.push(*i);
            }
            PositionKey::Session(s) => {
                at.push((2, sessions.len()));
                sessions.push(s);
            }
        }
    }
    let mut parts = Vec::new();
    match patches {
        PatchSource::Live => parts = live_rows(model, catalog, &tokens, &items, &sessions)?,
        PatchSource::Cached => {
            if !tokens.is_empty() {
                parts.push(model.llama().embed_ids(&tokens)?);
            }
            if !items.is_empty() {
                parts.push(patch_rows(model, catalog, &items, patches)?);
            }
            for s in &sessions {
                parts.push(session_patch(&patch_rows(model, catalog, s, patches)?)?);
            }
        }
    }
    let offset = [0, tokens.len(), tokens.len() + items.len()];
    let order: Vec<u32> = at
        .iter()
        .map(|&(part, i)| (offset[part] + i) as u32)
        .collect();
    let all = Tensor::cat(&parts, 0)?;
    Ok(all.index_select(&Tensor::new(order.as_slice(), model.device())?, 0)?)
}

/// The rows of `tokens`, the item patches of `items` and the session patches of
/// `sessions`, in that order, from one lookup of every token they use.
///
/// Why one lookup: where the embedding table trains (full fine-tuning), the backward pass
/// of each lookup is a table-sized gradient (49,152 x 576 for SmolLM2), written and summed
/// per lookup; a packed pass of stream-aligned sessions made one per session.
fn live_rows(
    model: &Model,
    catalog: &CatalogSnapshot,
    tokens: &[u32],
    items: &[u32],
    sessions: &[&[u32]],
) -> Result<Vec<Tensor>> {
    let session_items: Vec<u32> = sessions.iter().flat_map(|s| s.iter().copied()).collect();
    let mut ids = tokens.to_vec();
    let mut lens = Vec::with_capacity(items.len() + session_items.len());
    for &i in items.iter().chain(&session_items) {
        let title = &catalog.item(i).tokens;
        ids.extend_from_slice(title);
        lens.push(title.len());
    }
    let mut parts = Vec::new();
    if ids.is_empty() {
        return Ok(parts);
    }
    let rows = model.llama().embed_ids(&ids)?;
    if !tokens.is_empty() {
        parts.push(rows.narrow(0, 0, tokens.len())?);
    }
    if lens.is_empty() {
        return Ok(parts);
    }
    let titles = rows.narrow(0, tokens.len(), ids.len() - tokens.len())?;
    let patches = segment_means(&titles, &lens)?;
    if !items.is_empty() {
        parts.push(patches.narrow(0, 0, items.len())?);
    }
    if !sessions.is_empty() {
        let sizes: Vec<usize> = sessions.iter().map(|s| s.len()).collect();
        let members = patches.narrow(0, items.len(), session_items.len())?;
        parts.push(segment_means(&members, &sizes)?);
    }
    Ok(parts)
}

fn keys_of(pieces: &[Piece]) -> Vec<PositionKey> {
    pieces
        .iter()
        .flat_map(|p| match p {
            Piece::Tokens(ids) => ids.iter().map(|&t| PositionKey::Token(t)).collect(),
            Piece::Patch(i) => vec![PositionKey::Patch(*i)],
            Piece::Session(items) => vec![PositionKey::Session(items.to_vec())],
        })
        .collect()
}

/// The prompt as runs of tokens and single patches: the head, each segment followed by
/// its item's delimiter (`<|end_seq|>` after the latest item), the tail.
fn pieces<'a>(
    model: &Model,
    catalog: &CatalogSnapshot,
    indices: &'a [u32],
    segs: &[Segment],
) -> Vec<Piece<'a>> {
    let n = indices.len();
    let sp = model.special();
    let delimiter = |pos: usize| {
        if pos + 1 == n {
            sp.end_seq
        } else {
            sp.item_sep
        }
    };
    let mut pieces = Vec::new();
    let mut run: Vec<u32> = model.head_ids().to_vec();
    for seg in segs {
        let last = seg.items.end - 1;
        let patch = match seg.kind {
            SegmentKind::Text => {
                run.extend_from_slice(&catalog.item(indices[last]).tokens);
                None
            }
            SegmentKind::Item => Some(Piece::Patch(indices[last])),
            SegmentKind::Session => Some(Piece::Session(&indices[seg.items.clone()])),
        };
        if let Some(patch) = patch {
            if !run.is_empty() {
                pieces.push(Piece::Tokens(std::mem::take(&mut run)));
            }
            pieces.push(patch);
        }
        run.push(delimiter(last));
    }
    if n == 0 {
        run.push(sp.end_seq);
    }
    run.extend_from_slice(model.tail_ids());
    pieces.push(Piece::Tokens(run));
    pieces
}

/// The item patches of catalogue indices `items`, `[items.len(), hidden]`.
fn patch_rows(
    model: &Model,
    catalog: &CatalogSnapshot,
    items: &[u32],
    patches: PatchSource,
) -> Result<Tensor> {
    match patches {
        PatchSource::Cached => catalog.patches_of(model.llama(), items),
        PatchSource::Live => {
            let titles: Vec<&[u32]> = items
                .iter()
                .map(|&i| catalog.item(i).tokens.as_slice())
                .collect();
            item_patches(model.llama(), &titles)
        }
    }
}
