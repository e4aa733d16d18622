//! Prefilling a prompt: the KV cache of all its positions and the log-probabilities of
//! the first answer token, which decoding and candidate scoring start from.

use super::builder::Prompt;
use crate::error::{Error, Result};
use crate::model::logprobs::log_softmax_rows;
use crate::model::{KvCache, Model};

/// A prompt after its prefill: the KV cache of all its positions and the
/// log-probabilities of the first answer token.
pub struct Prefilled {
    pub cache: KvCache,
    pub logp: Vec<f32>,
}

/// Prefills `prompt`, continuing from the model's cached head when the prompt starts with it.
pub fn prefill(model: &Model, prompt: &Prompt) -> Result<Prefilled> {
    if prompt.shared_head > 0 && prompt.shared_head < prompt.len {
        prefill_from(model, prompt, model.head_cache()?.clone())
    } else {
        prefill_from(model, prompt, model.llama().new_cache())
    }
}

/// Prefills `prompt` after its first `cache.len()` positions, whose KV `cache` already
/// holds (at least one position must be left to compute, for the logits).
pub fn prefill_from(model: &Model, prompt: &Prompt, mut cache: KvCache) -> Result<Prefilled> {
    let done = cache.len();
    if done >= prompt.len {
        return Err(Error::invalid(format!(
            "prefill: the cache holds {done} positions of a {}-position prompt",
            prompt.len
        )));
    }
    let llama = model.llama();
    let rest = prompt.embeds.narrow(1, done, prompt.len - done)?;
    let hidden = llama.forward(&rest, None, &mut cache)?;
    let last = hidden.narrow(1, hidden.dim(1)? - 1, 1)?;
    let mut logp = log_softmax_rows(&llama.logits(&last)?)?;
    Ok(Prefilled {
        cache,
        logp: logp.pop().expect("one row"),
    })
}
