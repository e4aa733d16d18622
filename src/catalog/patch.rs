//! Item and session patches (paper §3.2): an item patch is the mean of the input
//! embeddings of its title's tokens; a session patch is the mean of its item patches.

use candle_core::{Tensor, D};

use crate::error::Result;
use crate::model::Llama;

/// Item patches for many titles at once: `[titles.len(), hidden]`.
///
/// One gather of every title token and one pass over the rows, instead of a pair of
/// tensor ops per title: registering a 10k-item catalogue stays a single batched step.
pub fn item_patches(llama: &Llama, titles: &[&[u32]]) -> Result<Tensor> {
    let d = llama.hidden_size();
    let all: Vec<u32> = titles.iter().flat_map(|t| t.iter().copied()).collect();
    if titles.is_empty() {
        return Ok(Tensor::zeros(
            (0, d),
            candle_core::DType::F32,
            llama.device(),
        )?);
    }
    let rows = llama.embed_ids(&all)?; // [sum of lengths, d]
    let mut out = Vec::with_capacity(titles.len());
    let mut at = 0;
    for t in titles {
        out.push(rows.narrow(0, at, t.len())?.mean_keepdim(0)?);
        at += t.len();
    }
    Ok(Tensor::cat(&out, 0)?)
}

/// The session patch of the given item patch rows `[n, hidden]` -> `[1, hidden]`.
pub fn session_patch(item_patches: &Tensor) -> Result<Tensor> {
    Ok(item_patches.mean_keepdim(D::Minus2)?)
}
