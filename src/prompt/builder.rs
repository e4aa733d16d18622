//! Turns the template and a laid-out history into the input embedding matrix.
//!
//! Text segments are token ids (title, then the item's delimiter) embedded through the
//! model's table; patches are rows of the catalogue's cached patch matrix, each followed
//! by its item's delimiter token. Nothing is re-tokenised here: titles were tokenised
//! once at registration, and the template's head and tail once at model load.

use candle_core::Tensor;

use crate::catalog::{item_patches, session_patch, CatalogSnapshot};
use crate::error::Result;
use crate::history::{compression_ratio, segments, Layout, Segment, SegmentKind};
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

/// Builds the prompt for `history` (item ids, oldest first, already truncated to K).
pub fn build_prompt(
    model: &Model,
    catalog: &CatalogSnapshot,
    history: &[u64],
    layout: Layout,
) -> Result<Prompt> {
    layout.validate()?;
    let indices: Vec<u32> = history
        .iter()
        .map(|&id| catalog.index_of(id))
        .collect::<Result<_>>()?;
    let segs = segments(layout, indices.len());
    let embeds = prompt_embeddings(model, catalog, &indices, &segs, PatchSource::Cached)?;
    let len = embeds.dim(0)?;
    let cr = compression_ratio(&segs, |i| catalog.item(indices[i]).tokens.len());
    Ok(Prompt {
        embeds: embeds.unsqueeze(0)?,
        len,
        shared_head: model.head_ids().len(),
        history_items: indices.len(),
        compression_ratio: cr,
    })
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
    let n = indices.len();
    let sp = model.special();
    let delimiter = |pos: usize| {
        if pos + 1 == n {
            sp.end_seq
        } else {
            sp.item_sep
        }
    };
    let llama = model.llama();
    let patch_rows = |items: &[u32]| -> Result<Tensor> {
        match patches {
            PatchSource::Cached => {
                let rows = Tensor::new(items, model.device())?;
                Ok(catalog.patches().index_select(&rows, 0)?)
            }
            PatchSource::Live => {
                let titles: Vec<&[u32]> = items
                    .iter()
                    .map(|&i| catalog.item(i).tokens.as_slice())
                    .collect();
                item_patches(llama, &titles)
            }
        }
    };

    let mut pieces: Vec<Tensor> = Vec::new();
    let mut run: Vec<u32> = model.head_ids().to_vec();
    let flush = |run: &mut Vec<u32>, pieces: &mut Vec<Tensor>| -> Result<()> {
        if !run.is_empty() {
            pieces.push(llama.embed_ids(run)?);
            run.clear();
        }
        Ok(())
    };
    for seg in segs {
        let last = seg.items.end - 1;
        match seg.kind {
            SegmentKind::Text => {
                run.extend_from_slice(&catalog.item(indices[last]).tokens);
            }
            SegmentKind::Item => {
                flush(&mut run, &mut pieces)?;
                pieces.push(patch_rows(&indices[last..=last])?);
            }
            SegmentKind::Session => {
                flush(&mut run, &mut pieces)?;
                pieces.push(session_patch(&patch_rows(&indices[seg.items.clone()])?)?);
            }
        }
        run.push(delimiter(last));
    }
    if n == 0 {
        run.push(sp.end_seq);
    }
    run.extend_from_slice(model.tail_ids());
    flush(&mut run, &mut pieces)?;
    Ok(Tensor::cat(&pieces, 0)?)
}
