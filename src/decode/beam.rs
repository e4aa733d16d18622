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

use std::collections::{HashMap, HashSet};

use candle_core::Tensor;

use super::logprobs::log_softmax_rows;

use crate::catalog::trie::ROOT;
use crate::catalog::CatalogSnapshot;
use crate::error::{Error, Result};
use crate::model::{KvCache, Llama, Model};
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
    let llama = model.llama();
    let mut state = BeamState::new(model, catalog, opts)?;
    let mut beam_cache = llama.new_cache();
    let mut next = state.advance(catalog, std::slice::from_ref(&prefilled.logp));
    // Advance all live beams in one forward pass over the shared prompt cache.
    while let Some(step) = next {
        step.reorder(&mut beam_cache, llama)?;
        let embeds = llama.embed_ids(&step.tokens)?.unsqueeze(1)?; // [beams, 1, hidden]
        let hidden = llama.forward(&embeds, Some(&prefilled.cache), &mut beam_cache)?;
        let logp = log_softmax_rows(&llama.logits(&hidden)?)?;
        next = state.advance(catalog, &logp);
    }
    let steps = state.steps();
    Ok((state.into_results(), steps))
}

/// The next forward pass a search asks for: one row per live beam, the token it appends and
/// the row of the previous step it continues.
pub struct BeamStep {
    pub parents: Vec<u32>,
    pub tokens: Vec<u32>,
}

impl BeamStep {
    /// Reorders a beam cache from the previous step's rows to this step's parents.
    pub fn reorder(&self, cache: &mut KvCache, llama: &Llama) -> Result<()> {
        if !cache.is_empty() {
            cache.select_rows(&Tensor::new(self.parents.as_slice(), llama.device())?)?;
        }
        Ok(())
    }
}

/// One constrained search, advanced a step at a time by whoever runs the forward passes:
/// [`search_prefilled`] for one query, the batching worker for many at once.
pub struct BeamState {
    k: usize,
    width: usize,
    exact: bool,
    answer_end: u32,
    /// Excluded items removed from each node's subtree count, so no beam is spent on a
    /// branch that can only end in excluded items.
    removed: HashMap<u32, u32>,
    excluded: HashSet<u32>,
    beams: Vec<Beam>,
    finished: Vec<Scored>,
    steps: usize,
    done: bool,
}

impl BeamState {
    pub fn new(model: &Model, catalog: &CatalogSnapshot, opts: &SearchOptions) -> Result<Self> {
        if opts.k == 0 {
            return Err(Error::invalid("k must be at least 1"));
        }
        let trie = catalog.trie();
        let answer_end = model.special().answer_end;
        let mut removed: HashMap<u32, u32> = HashMap::new();
        let mut excluded = HashSet::new();
        for &idx in &opts.exclude {
            if !excluded.insert(idx) || idx as usize >= catalog.len() {
                continue;
            }
            let mut path = catalog.item(idx).tokens.clone();
            path.push(answer_end);
            if let Some(nodes) = trie.walk(&path) {
                *removed.entry(ROOT).or_default() += 1;
                for n in nodes {
                    *removed.entry(n).or_default() += 1;
                }
            }
        }
        let mut state = BeamState {
            k: opts.k,
            width: 0,
            exact: opts.exact,
            answer_end,
            removed,
            excluded,
            beams: vec![Beam {
                node: ROOT,
                score: 0.0,
            }],
            finished: Vec::new(),
            steps: 0,
            done: false,
        };
        let available = state.available(catalog, ROOT) as usize;
        state.done = available == 0;
        // Exact: as many hypotheses as there are items, so none is ever dropped for width.
        state.width = if opts.exact {
            available
        } else {
            opts.beam_width.max(opts.k)
        };
        Ok(state)
    }

    fn available(&self, catalog: &CatalogSnapshot, node: u32) -> u32 {
        catalog.trie().count(node) - self.removed.get(&node).copied().unwrap_or(0)
    }

    /// Takes the log-probabilities `logp` (one row per live beam, in the order of the
    /// last step's tokens; the prompt's single row first) and returns the next step, or
    /// `None` once the top k are final.
    pub fn advance(&mut self, catalog: &CatalogSnapshot, logp: &[Vec<f32>]) -> Option<BeamStep> {
        if self.done {
            return None;
        }
        let trie = catalog.trie();
        let (k, width) = (self.k, self.width);
        // Exact search drops what cannot reach the top k: a title's log-probability only
        // falls as it grows, so a prefix already below the k-th finished score stays below
        // (ties are kept, as the order among equal scores goes by index).
        let bound = if self.exact && self.finished.len() >= k {
            self.finished[k - 1].score
        } else {
            f32::NEG_INFINITY
        };
        // Every allowed extension of every live beam.
        let mut cands: Vec<(f32, usize, u32, u32)> = Vec::new();
        for (b, beam) in self.beams.iter().enumerate() {
            for &(tok, child) in trie.children(beam.node) {
                let score = beam.score + logp[b][tok as usize];
                if self.available(catalog, child) > 0 && score >= bound {
                    cands.push((score, b, tok, child));
                }
            }
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.2.cmp(&b.2)).then(a.1.cmp(&b.1)));
        let mut next: Vec<(Beam, usize, u32)> = Vec::new();
        for (rank, &(score, parent, tok, child)) in cands.iter().enumerate() {
            if tok == self.answer_end {
                // As in Hugging Face's beam search: a hypothesis finishes only if it
                // ranks among the top `width` candidates.
                if rank < width {
                    for &idx in trie.items(child) {
                        if !self.excluded.contains(&idx) {
                            self.finished.push(Scored { index: idx, score });
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
        self.finished
            .sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
        // Log-probabilities only fall as a title grows: once k are finished and no live
        // beam beats the k-th, nothing can change the top k.
        let best_live = next
            .iter()
            .map(|n| n.0.score)
            .fold(f32::NEG_INFINITY, f32::max);
        if next.is_empty() || (self.finished.len() >= k && best_live <= self.finished[k - 1].score)
        {
            self.done = true;
            return None;
        }
        self.steps += 1;
        let step = BeamStep {
            parents: next.iter().map(|n| n.1 as u32).collect(),
            tokens: next.iter().map(|n| n.2).collect(),
        };
        self.beams = next.into_iter().map(|n| n.0).collect();
        Some(step)
    }

    /// Decode steps asked for so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// The top k, best first.
    pub fn into_results(mut self) -> Vec<Scored> {
        self.finished.truncate(self.k);
        self.finished
    }
}
