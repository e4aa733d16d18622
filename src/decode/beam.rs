//! Beam search constrained to the catalogue's title prefix tree: every hypothesis is a
//! prefix of some title, so every result is a real item.
//!
//! The prompt is prefilled once; its KV cache is shared, read-only, by all beams (they
//! attend to it through `Llama::forward`'s `prefix`), and all live beams advance in one
//! batched forward pass per step. Only the beams' own answer tokens are cached per beam.
//!
//! Scores are sums of log-probabilities over the full vocabulary (title tokens plus the
//! answer-end token): exactly the teacher-forced log-probability of the answer, so that
//! with a beam at least as wide as the catalogue the ranking is exact.

use std::collections::HashMap;

use candle_core::{Tensor, D};

use crate::catalog::trie::ROOT;
use crate::catalog::CatalogSnapshot;
use crate::error::{Error, Result};
use crate::model::{KvCache, Model};
use crate::prompt::Prompt;

#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Items to return.
    pub k: usize,
    /// Live hypotheses kept per step (raised to `k` if smaller).
    pub beam_width: usize,
    /// Catalogue indices never to return.
    pub exclude: Vec<u32>,
    /// Rank the whole catalogue exactly instead of by beam search: every title prefix
    /// that can still reach the top `k` is expanded (level by level, each level one
    /// batched forward pass over the shared prompt KV), so no beam can miss the best item.
    /// `beam_width` is then unused.
    pub exact: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Catalogue index.
    pub index: u32,
    /// Log-probability of the title followed by the answer-end token.
    pub score: f32,
}

struct Beam {
    node: u32,
    score: f32,
}

/// Where one search spent its time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SearchTiming {
    /// Prefilling the prompt (after the shared head) up to the first logits.
    pub prefill_seconds: f64,
    /// The beam steps after it.
    pub decode_seconds: f64,
    /// Batched forward passes over the beams.
    pub decode_steps: usize,
}

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

/// Top-`k` items for a prompt, best first.
pub fn beam_search(
    model: &Model,
    catalog: &CatalogSnapshot,
    prompt: &Prompt,
    opts: &SearchOptions,
) -> Result<Vec<Scored>> {
    Ok(beam_search_timed(model, catalog, prompt, opts)?.0)
}

/// [`beam_search`], also reporting where the time went.
pub fn beam_search_timed(
    model: &Model,
    catalog: &CatalogSnapshot,
    prompt: &Prompt,
    opts: &SearchOptions,
) -> Result<(Vec<Scored>, SearchTiming)> {
    let started = std::time::Instant::now();
    let mut timing = SearchTiming::default();
    if opts.k == 0 {
        return Err(Error::invalid("k must be at least 1"));
    }
    let prefilled = prefill(model, prompt)?;
    timing.prefill_seconds = started.elapsed().as_secs_f64();
    let (ranked, steps) = search_prefilled(model, catalog, &prefilled, opts)?;
    timing.decode_steps = steps;
    timing.decode_seconds = started.elapsed().as_secs_f64() - timing.prefill_seconds;
    Ok((ranked, timing))
}

/// Top-`k` items after a prefilled prompt, best first, and the number of batched decode
/// steps it took.
pub fn search_prefilled(
    model: &Model,
    catalog: &CatalogSnapshot,
    prefilled: &Prefilled,
    opts: &SearchOptions,
) -> Result<(Vec<Scored>, usize)> {
    if opts.k == 0 {
        return Err(Error::invalid("k must be at least 1"));
    }
    let mut steps = 0;
    let trie = catalog.trie();
    let answer_end = model.special().answer_end;
    // Excluded items are removed from the subtree counts, so no beam is spent on a
    // branch that can only end in excluded items.
    let mut removed: HashMap<u32, u32> = HashMap::new();
    let mut excluded = std::collections::HashSet::new();
    for &idx in &opts.exclude {
        if !excluded.insert(idx) || idx as usize >= catalog.len() {
            continue;
        }
        let item = catalog.item(idx);
        let mut path = item.tokens.clone();
        path.push(answer_end);
        if let Some(nodes) = trie.walk(&path) {
            *removed.entry(ROOT).or_default() += 1;
            for n in nodes {
                *removed.entry(n).or_default() += 1;
            }
        }
    }
    let available = |node: u32| trie.count(node) - removed.get(&node).copied().unwrap_or(0);
    if available(ROOT) == 0 {
        return Ok((Vec::new(), 0));
    }
    // Exact: as many hypotheses as there are items, so none is ever dropped for width.
    let width = if opts.exact {
        available(ROOT) as usize
    } else {
        opts.beam_width.max(opts.k)
    };

    let llama = model.llama();
    let prompt_cache = &prefilled.cache;
    let mut logp = vec![prefilled.logp.clone()];

    let mut beams = vec![Beam {
        node: ROOT,
        score: 0.0,
    }];
    let mut beam_cache = llama.new_cache();
    let mut finished: Vec<Scored> = Vec::new();
    loop {
        // Exact search drops what cannot reach the top k: a title's log-probability only
        // falls as it grows, so a prefix already below the k-th finished score stays below
        // (ties are kept, as the order among equal scores goes by index).
        let bound = if opts.exact && finished.len() >= opts.k {
            finished[opts.k - 1].score
        } else {
            f32::NEG_INFINITY
        };
        // Every allowed extension of every live beam.
        let mut cands: Vec<(f32, usize, u32, u32)> = Vec::new();
        for (b, beam) in beams.iter().enumerate() {
            for &(tok, child) in trie.children(beam.node) {
                let score = beam.score + logp[b][tok as usize];
                if available(child) > 0 && score >= bound {
                    cands.push((score, b, tok, child));
                }
            }
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.2.cmp(&b.2)).then(a.1.cmp(&b.1)));
        let mut next: Vec<(Beam, usize, u32)> = Vec::new();
        for (rank, &(score, parent, tok, child)) in cands.iter().enumerate() {
            if tok == answer_end {
                // As in Hugging Face's beam search: a hypothesis finishes only if it
                // ranks among the top `width` candidates.
                if rank < width {
                    for &idx in trie.items(child) {
                        if !excluded.contains(&idx) {
                            finished.push(Scored { index: idx, score });
                        }
                    }
                }
            } else if next.len() < width {
                next.push((Beam { node: child, score }, parent, tok));
            }
            if next.len() >= width && rank + 1 >= width {
                break;
            }
        }
        finished.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
        // Log-probabilities only fall as a title grows: once k are finished and no live
        // beam beats the k-th, nothing can change the top k.
        let best_live = next
            .iter()
            .map(|n| n.0.score)
            .fold(f32::NEG_INFINITY, f32::max);
        if next.is_empty() || (finished.len() >= opts.k && best_live <= finished[opts.k - 1].score)
        {
            break;
        }
        // Advance all live beams in one forward pass over the shared prompt cache.
        let parents: Vec<u32> = next.iter().map(|n| n.1 as u32).collect();
        let tokens: Vec<u32> = next.iter().map(|n| n.2).collect();
        if !beam_cache.is_empty() {
            beam_cache.select_rows(&Tensor::new(parents.as_slice(), llama.device())?)?;
        }
        let embeds = llama.embed_ids(&tokens)?.unsqueeze(1)?; // [beams, 1, hidden]
        let hidden = llama.forward(&embeds, Some(prompt_cache), &mut beam_cache)?;
        logp = log_softmax_rows(&llama.logits(&hidden)?)?;
        steps += 1;
        beams = next.into_iter().map(|n| n.0).collect();
    }
    finished.truncate(opts.k);
    Ok((finished, steps))
}

/// `[rows, 1, vocab]` logits -> per-row log-probabilities on the host.
fn log_softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    let l = logits.squeeze(1)?;
    let lp = candle_nn::ops::log_softmax(&l, D::Minus1)?;
    Ok(lp.to_vec2::<f32>()?)
}
