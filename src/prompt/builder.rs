//! Turns the template and a laid-out history into the input embedding matrix.
//!
//! Text segments are token ids (title, then the item's delimiter) embedded through the
//! model's table; patches are rows of the catalogue's cached patch matrix, each followed
//! by its item's delimiter token. Nothing is re-tokenised here: titles were tokenised
//! once at registration, and the template's head and tail once at model load.

use candle_core::Tensor;

use crate::catalog::{session_patch, CatalogSnapshot};
use crate::error::Result;
use crate::history::{compression_ratio, segments, Layout, SegmentKind};
use crate::model::Model;

pub struct Prompt {
    /// `[1, len, hidden]`
    pub embeds: Tensor,
    /// Positions in the prompt (tokens and patches).
    pub len: usize,
    /// History items it shows.
    pub history_items: usize,
    /// The paper's compression ratio of the history part.
    pub compression_ratio: f64,
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

    let mut pieces: Vec<Tensor> = Vec::new();
    let mut run: Vec<u32> = model.head_ids().to_vec();
    let flush = |run: &mut Vec<u32>, pieces: &mut Vec<Tensor>| -> Result<()> {
        if !run.is_empty() {
            pieces.push(llama.embed_ids(run)?);
            run.clear();
        }
        Ok(())
    };
    let segs = segments(layout, n);
    for seg in &segs {
        let last = seg.items.end - 1;
        match seg.kind {
            SegmentKind::Text => {
                run.extend_from_slice(&catalog.item(indices[last]).tokens);
            }
            SegmentKind::Item => {
                flush(&mut run, &mut pieces)?;
                pieces.push(catalog.patches().narrow(0, indices[last] as usize, 1)?);
            }
            SegmentKind::Session => {
                flush(&mut run, &mut pieces)?;
                let rows = Tensor::new(&indices[seg.items.clone()], model.device())?;
                pieces.push(session_patch(&catalog.patches().index_select(&rows, 0)?)?);
            }
        }
        run.push(delimiter(last));
    }
    if n == 0 {
        run.push(sp.end_seq);
    }
    run.extend_from_slice(model.tail_ids());
    flush(&mut run, &mut pieces)?;
    let embeds = Tensor::cat(&pieces, 0)?;
    let len = embeds.dim(0)?;
    let cr = compression_ratio(&segs, |i| catalog.item(indices[i]).tokens.len());
    Ok(Prompt {
        embeds: embeds.unsqueeze(0)?,
        len,
        history_items: n,
        compression_ratio: cr,
    })
}
