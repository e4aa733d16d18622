//! Candidate scoring: a ranking service's call. Retrieval has found some items; this
//! scores each one's title given the user's prompt, on the scale of
//! [`crate::recommend`]'s scores (the log-probability of the title's tokens and the
//! answer-end token).
//!
//! The candidates' answers form one token tree (as the catalogue's title tree does), so a
//! prefix that several titles share is computed once, and the tree's nodes go through a
//! few batched forward passes after the user's prompt, each node attending to the prompt
//! and its own ancestors ([`Llama::forward_groups`]), as M-FALCON scores candidates. Memory
//! stays bounded: the tree is cut into chunks of at most [`CHUNK_ROWS`] nodes whose KV is
//! dropped after each chunk; a prefix shared across a cut is computed once per chunk.
//! [`RankOptions`] sets both bounds.

use std::collections::{HashMap, HashSet};

use crate::catalog::trie::ROOT;
use crate::catalog::{CatalogSnapshot, TitleTrie};
use crate::error::{Error, Result};
use crate::history::{LayoutChoice, UserHistory};
use crate::model::{DecodeGroup, Model};
use crate::prompt::Prefilled;
use crate::prompt::PromptCache;
use crate::query::{prefill_prepared, prepare, QueryOptions};
use crate::Catalog;

/// Token-tree nodes computed per forward pass. Larger passes read the weights fewer times;
/// past a few hundred rows a pass is compute-bound and gains nothing more.
pub const PASS_ROWS: usize = 256;
/// Token-tree nodes whose KV is held at once (SmolLM2: ~46 KiB per node, so ~190 MiB).
pub const CHUNK_ROWS: usize = 4096;

/// The order of [`RankResult::items`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RankOrder {
    /// Best first (ties keep the input's order).
    #[default]
    Score,
    /// The candidates' order as given.
    Input,
}

/// How [`rank`] treats candidate ids that the catalogue does not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownCandidates {
    /// The call fails with [`Error::UnknownItem`] naming the first unknown id.
    #[default]
    Fail,
    /// They are left out of the answer (listed in [`RankResult::unknown`]).
    Skip,
}

/// How to score candidates. `RankOptions::default()` and the `with_*` setters build one.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RankOptions {
    /// Layout, truncation and session gap; what is unset is the checkpoint's.
    pub layout: LayoutChoice,
    /// The order of the answer's items (default best first).
    pub order: RankOrder,
    /// What happens to candidate ids the catalogue does not hold (default: the call fails).
    pub unknown: UnknownCandidates,
    /// Token-tree nodes per forward pass (default 256).
    pub pass_rows: usize,
    /// Token-tree nodes whose KV is held at once (default 4,096); bounds memory.
    pub chunk_rows: usize,
}

impl Default for RankOptions {
    fn default() -> Self {
        RankOptions {
            layout: LayoutChoice::default(),
            order: RankOrder::Score,
            unknown: UnknownCandidates::Fail,
            pass_rows: PASS_ROWS,
            chunk_rows: CHUNK_ROWS,
        }
    }
}

setters!(RankOptions {
    with_order => order: RankOrder,
    with_unknown => unknown: UnknownCandidates,
    with_pass_rows => pass_rows: usize,
    with_chunk_rows => chunk_rows: usize,
});

impl RankOptions {
    /// Sets the layout: a [`crate::Layout`], a whole [`crate::LayoutConfig`], or a
    /// [`LayoutChoice`].
    #[must_use]
    pub fn with_layout(mut self, layout: impl Into<LayoutChoice>) -> Self {
        self.layout = layout.into();
        self
    }
}

/// One scored candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Candidate {
    /// The candidate's item id.
    pub item_id: u64,
    /// Log-probability of the item's title (and the answer-end token) given the prompt,
    /// as in [`crate::Recommendation::score`].
    pub score: f32,
}

/// The answer to [`rank`]: the candidates' scores, and what computing them took.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RankResult {
    /// One entry per distinct known candidate: a duplicated id is scored once and appears
    /// once, at its first occurrence when the order is the input's.
    pub items: Vec<Candidate>,
    /// Candidate ids the catalogue does not hold ([`UnknownCandidates::Skip`]), in input
    /// order, each once.
    pub unknown: Vec<u64>,
    /// Positions in the prompt (tokens and patches).
    pub prompt_len: usize,
    /// Token-tree nodes computed.
    pub nodes: usize,
    /// Forward passes that computed them.
    pub passes: usize,
}

/// Scores `candidates` for `user` (one consistent snapshot of `catalog`).
pub fn rank(
    catalog: &Catalog,
    user: &UserHistory,
    candidates: &[u64],
    opts: &RankOptions,
) -> Result<RankResult> {
    run_rank(catalog, user, candidates, opts, None)
}

/// [`rank`], reusing `cache`, the user's prompt KV from earlier queries (see
/// [`crate::recommend_cached`]); the scores equal [`rank`]'s to float rounding.
pub fn rank_cached(
    catalog: &Catalog,
    user: &UserHistory,
    cache: &mut PromptCache,
    candidates: &[u64],
    opts: &RankOptions,
) -> Result<RankResult> {
    run_rank(catalog, user, candidates, opts, Some(cache))
}

fn run_rank(
    catalog: &Catalog,
    user: &UserHistory,
    candidates: &[u64],
    opts: &RankOptions,
    cache: Option<&mut PromptCache>,
) -> Result<RankResult> {
    for (name, value) in [
        ("pass_rows", opts.pass_rows),
        ("chunk_rows", opts.chunk_rows),
    ] {
        if value == 0 || value > 1 << 20 {
            return Err(Error::invalid(format!(
                "rank: {name} must be within 1..={}, not {value}",
                1 << 20
            )));
        }
    }
    let query = QueryOptions {
        layout: opts.layout,
        ..Default::default()
    };
    let q = prepare(catalog, user, &query)?;
    // Distinct known candidates in input order, as catalogue indices.
    let mut wanted: Vec<u32> = Vec::new();
    let mut seen: HashSet<u64> = HashSet::with_capacity(candidates.len());
    let mut unknown = Vec::new();
    for &id in candidates {
        if !seen.insert(id) {
            continue;
        }
        match q.snap.live_index_of(id) {
            Ok(index) => wanted.push(index),
            Err(e) => match opts.unknown {
                UnknownCandidates::Fail => return Err(e),
                UnknownCandidates::Skip => unknown.push(id),
            },
        }
    }
    let mut result = RankResult {
        items: Vec::with_capacity(wanted.len()),
        unknown,
        prompt_len: q.prompt.len,
        nodes: 0,
        passes: 0,
    };
    if wanted.is_empty() {
        return Ok(result);
    }
    let prefilled = prefill_prepared(catalog, &q, cache)?;
    let model = catalog.model();
    let scores = score_candidates(model, &q.snap, &prefilled, &wanted, opts, &mut result)?;
    result.items = wanted
        .iter()
        .zip(scores)
        .map(|(&index, score)| Candidate {
            item_id: q.snap.item(index).id,
            score,
        })
        .collect();
    if opts.order == RankOrder::Score {
        // Stable: equal scores (titles the tree cannot tell apart) keep the input's order.
        result.items.sort_by(|a, b| b.score.total_cmp(&a.score));
    }
    Ok(result)
}

/// The score of each of `wanted` (catalogue indices), in that order.
fn score_candidates(
    model: &Model,
    snap: &CatalogSnapshot,
    prefilled: &Prefilled,
    wanted: &[u32],
    opts: &RankOptions,
    counts: &mut RankResult,
) -> Result<Vec<f32>> {
    let answer_end = model.special().answer_end;
    let path = |index: u32| -> Vec<u32> {
        let mut p = snap.item(index).tokens.clone();
        p.push(answer_end);
        p
    };
    // Titles in token order, so that the titles of a chunk share as much as they can.
    let mut order: Vec<(Vec<u32>, usize)> = wanted
        .iter()
        .enumerate()
        .map(|(slot, &index)| (path(index), slot))
        .collect();
    order.sort();
    let mut scores = vec![0.0f32; wanted.len()];
    let mut start = 0;
    while start < order.len() {
        // Grow the chunk while its tree's inner nodes fit in `chunk_rows` (at least one
        // title). In sorted order a path shares with the tree exactly its common prefix
        // with the path before it, and adds inner nodes for the rest but its last token
        // (answer-end, which ends every path and occurs nowhere else).
        let mut trie = TitleTrie::default();
        let mut inner = 0;
        let mut end = start;
        while end < order.len() {
            let path = &order[end].0;
            let shared = match end.checked_sub(1).filter(|&p| p >= start) {
                Some(p) => common_prefix(&order[p].0, path),
                None => 0,
            };
            let added = path.len().saturating_sub(shared + 1);
            if end > start && inner + added > opts.chunk_rows {
                break;
            }
            trie.insert(path, end as u32);
            inner += added;
            end += 1;
        }
        let chunk_scores = score_tree(model, prefilled, &trie, opts.pass_rows, counts)?;
        for (i, (_, slot)) in order[start..end].iter().enumerate() {
            scores[*slot] = chunk_scores[&((start + i) as u32)];
        }
        start = end;
    }
    if let Some(s) = scores.iter().find(|s| s.is_nan()) {
        return Err(Error::NonFinite(format!(
            "a candidate's score is {s} (the model's weights or the prompt's patches hold NaN)"
        )));
    }
    Ok(scores)
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Scores every path of `trie` (keyed by the entry stored at its end): the root's children
/// from the prompt's last position, every other edge from its parent node's row.
fn score_tree(
    model: &Model,
    prefilled: &Prefilled,
    trie: &TitleTrie,
    pass_rows: usize,
    counts: &mut RankResult,
) -> Result<HashMap<u32, f32>> {
    let llama = model.llama();
    // Inner nodes in breadth-first order (parents before children), with the token that
    // leads to each and its row's ancestors (itself last), each kept once.
    let (mut nodes, mut tokens, mut contexts): (Vec<u32>, Vec<u32>, Vec<Vec<u32>>) =
        Default::default();
    let mut row_of: HashMap<u32, u32> = HashMap::new();
    // (trie node, its row; None for the root)
    let mut frontier: Vec<(u32, Option<u32>)> = vec![(ROOT, None)];
    while !frontier.is_empty() {
        let mut next = Vec::new();
        for (node, parent) in frontier {
            for &(token, child) in trie.children(node) {
                if trie.children(child).is_empty() {
                    continue; // a title's end: nothing follows it
                }
                let row = nodes.len() as u32;
                let mut context = parent.map_or_else(Vec::new, |p| contexts[p as usize].clone());
                context.push(row);
                row_of.insert(child, row);
                nodes.push(child);
                tokens.push(token);
                contexts.push(context);
                next.push((child, Some(row)));
            }
        }
        frontier = next;
    }
    // Log-probabilities of each inner node's children, in `trie.children` order.
    let mut logp: Vec<Vec<f32>> = Vec::with_capacity(nodes.len());
    let mut tree = llama.new_tree();
    for start in (0..nodes.len()).step_by(pass_rows) {
        let pass = start..(start + pass_rows).min(nodes.len());
        let wanted: Vec<Vec<u32>> = nodes[pass.clone()]
            .iter()
            .map(|&n| trie.children(n).iter().map(|&(t, _)| t).collect())
            .collect();
        let embeds = llama.embed_ids(&tokens[pass.clone()])?.unsqueeze(1)?; // [rows, 1, hidden]
        let mut groups = [DecodeGroup {
            prefix: &prefilled.cache,
            tree: &mut tree,
            contexts: &contexts[pass],
        }];
        let hidden = llama.forward_groups(&embeds, &mut groups)?;
        logp.extend(llama.log_probs_of(&hidden, &wanted)?);
        counts.passes += 1;
    }
    counts.nodes += nodes.len();
    // Walk down from the root, summing edge log-probabilities.
    let mut scores = HashMap::new();
    let mut stack: Vec<(u32, f32)> = vec![(ROOT, 0.0)];
    while let Some((node, score)) = stack.pop() {
        for &item in trie.items(node) {
            scores.insert(item, score);
        }
        for (i, &(token, child)) in trie.children(node).iter().enumerate() {
            let edge = match row_of.get(&node) {
                Some(&row) => logp[row as usize][i],
                None => {
                    // The root: the prompt's last position scored every token.
                    prefilled.logp.get(token as usize).copied().ok_or_else(|| {
                        Error::invalid(format!("token {token} outside the vocabulary"))
                    })?
                }
            };
            stack.push((child, score + edge));
        }
    }
    Ok(scores)
}
