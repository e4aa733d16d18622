//! Training examples and the loss of a micro-batch.
//!
//! An example is a laid-out history and a target item. Its input is the prompt (patches
//! recomputed from the current embedding table) followed by the answer's tokens (title
//! then answer-end); the loss is cross-entropy on the answer tokens only, and the output
//! head runs only at those positions. Sequences are right-padded: with causal attention
//! padding after a sequence never influences its own positions, so no padding mask is
//! needed.

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};

use super::config::StageKind;
use crate::catalog::CatalogSnapshot;
use crate::error::Result;
use crate::history::{per_item, segments, Layout, Segment, SegmentKind};
use crate::model::Model;
use crate::prompt::{embed_keys, prompt_keys, PatchSource, PositionKey};

#[derive(Debug, Clone)]
pub struct Example {
    /// History as catalogue indices, oldest first.
    pub history: Vec<u32>,
    pub segments: Vec<Segment>,
    pub target: u32,
}

/// The examples one sample contributes to a batch. PPT gives two, the compressed copy
/// then the text copy (the reference's order); each history item of the compressed copy
/// is an item patch with probability `p`, drawn from `rng_seed`.
pub fn examples_for(
    kind: StageKind,
    layout: Layout,
    history: Vec<u32>,
    target: u32,
    p: f64,
    rng_seed: u64,
) -> Vec<Example> {
    match kind {
        StageKind::Ppt => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(rng_seed);
            let kinds: Vec<SegmentKind> = history
                .iter()
                .map(|_| {
                    if rng.random::<f64>() < p {
                        SegmentKind::Item
                    } else {
                        SegmentKind::Text
                    }
                })
                .collect();
            let text = segments(Layout::Vanilla, history.len());
            vec![
                Example {
                    segments: per_item(&kinds),
                    history: history.clone(),
                    target,
                },
                Example {
                    segments: text,
                    history,
                    target,
                },
            ]
        }
        _ => vec![Example {
            segments: segments(layout, history.len()),
            history,
            target,
        }],
    }
}

/// The answer's token ids: title then answer-end.
pub fn answer_ids(model: &Model, catalog: &CatalogSnapshot, target: u32) -> Vec<u32> {
    let mut ids = catalog.item(target).tokens.clone();
    ids.push(model.special().answer_end);
    ids
}

pub struct BatchLoss {
    /// Sum of the answer tokens' negative log-likelihoods (a scalar tensor).
    pub nll_sum: Tensor,
    pub answer_tokens: usize,
    /// Input positions processed (prompt and answer), for throughput.
    pub positions: usize,
}

/// Forward pass over a micro-batch, returning the summed answer-token NLL.
pub fn batch_loss(
    model: &Model,
    catalog: &CatalogSnapshot,
    batch: &[Example],
) -> Result<BatchLoss> {
    let llama = model.llama();
    let d = llama.hidden_size();
    let mut targets: Vec<u32> = Vec::new();
    let mut spans = Vec::with_capacity(batch.len()); // (prompt len, answer len)
    // Every example's prompt and fed answer tokens, embedded through one lookup (where the
    // table trains, each lookup's backward pass is a table-sized gradient).
    let mut keys = Vec::new();
    for ex in batch {
        let prompt = prompt_keys(model, catalog, &ex.history, &ex.segments);
        let answer = answer_ids(model, catalog, ex.target);
        spans.push((prompt.len(), answer.len()));
        keys.extend(prompt);
        keys.extend(answer[..answer.len() - 1].iter().map(|&t| PositionKey::Token(t)));
        targets.extend_from_slice(&answer);
    }
    let all = embed_keys(model, catalog, &keys, PatchSource::Live)?;
    let mut inputs = Vec::with_capacity(batch.len());
    let mut at = 0;
    for &(p, a) in &spans {
        inputs.push(all.narrow(0, at, p + a - 1)?);
        at += p + a - 1;
    }
    let t_max = inputs
        .iter()
        .map(|x| x.dim(0))
        .collect::<candle_core::Result<Vec<_>>>()?;
    let t_max = t_max.into_iter().max().unwrap_or(0);
    let padded = inputs
        .iter()
        .map(|x| {
            let t = x.dim(0)?;
            if t == t_max {
                Ok(x.clone())
            } else {
                Tensor::cat(
                    &[x, &Tensor::zeros((t_max - t, d), DType::F32, x.device())?],
                    0,
                )
            }
        })
        .collect::<candle_core::Result<Vec<_>>>()?;
    let x = Tensor::stack(&padded, 0)?;
    let mut cache = llama.new_cache();
    let hidden = llama.forward(&x, None, &mut cache)?;
    // Rows predicting the answer: positions prompt_len - 1 .. prompt_len - 1 + answer_len.
    let mut rows: Vec<u32> = Vec::with_capacity(targets.len());
    for (b, &(p, a)) in spans.iter().enumerate() {
        rows.extend((0..a).map(|j| (b * t_max + p - 1 + j) as u32));
    }
    let flat = hidden.reshape((batch.len() * t_max, d))?;
    let picked = flat.index_select(&Tensor::new(rows.as_slice(), x.device())?, 0)?;
    let nll_sum = llama.target_nll_sum(&picked, &targets)?;
    Ok(BatchLoss {
        nll_sum,
        answer_tokens: targets.len(),
        positions: spans.iter().map(|&(p, a)| p + a - 1).sum(),
    })
}
