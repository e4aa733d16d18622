//! Beam search constrained to the catalogue's title prefix tree: every hypothesis is a
//! prefix of some title, so every result is a real item.
//!
//! The prompt is prefilled once; its KV cache is shared, read-only, by all beams, and the
//! beams' answer tokens form a token tree ([`TreeKv`]): each computed token is one node that
//! every beam through it shares, so no beam's cache is ever copied or reordered. All rows
//! a step needs go through one batched forward pass ([`Llama::forward_groups`]).
//!
//! Most of a title is forced: once a beam's prefix names one title (or one shared
//! continuation), its next tokens are known. With `lookahead`, a pass that a step needs is
//! filled with the live beams' forced tokens, and later steps read their log-probabilities
//! instead of running a pass: a step that needs no new row costs no forward pass at all.
//! The search itself (candidates, pruning, stopping) is unchanged; only when the rows are
//! computed differs.
//!
//! Scores are sums of log-probabilities over the full vocabulary (title tokens plus the
//! answer-end token): exactly the teacher-forced log-probability of the answer, so that
//! with a beam at least as wide as the catalogue the ranking is exact.

use std::collections::{HashMap, HashSet};

use crate::catalog::trie::ROOT;
use crate::catalog::CatalogSnapshot;
use crate::error::{Error, Result};
use crate::model::{DecodeGroup, KvCache, Model, TreeKv};
use crate::prompt::{prefill, Prefilled, Prompt};

/// Prefixes an exact search computes per step. Large passes read the weights fewer
/// times; on SmolLM2 with 5,000 titles, 256 rows per step answered in 7.3 s where 20
/// took 15.1 s and 64 took 7.9 s (docs/PERFORMANCE.md, "Catalogue size").
pub const EXACT_ROWS: usize = 256;

#[derive(Debug, Clone)]
pub struct SearchOptions {
    /// Items to return.
    pub k: usize,
    /// Live hypotheses kept per step (raised to `k` if smaller).
    pub beam_width: usize,
    /// Catalogue indices never to return.
    pub exclude: Vec<u32>,
    /// When set, the only catalogue indices that may be returned (less `exclude`). The
    /// search never expands a branch of the title tree that leads to none of them.
    pub allow: Option<Vec<u32>>,
    /// Rank the whole catalogue exactly instead of by beam search: every title prefix
    /// that can still reach the top `k` is expanded, so no beam can miss the best item.
    /// The prefixes are expanded best first, [`EXACT_ROWS`] of them per batched forward
    /// pass over the shared prompt KV: the first titles to finish are the likely ones,
    /// and their scores bound the rest (a title's log-probability only falls as it grows).
    /// `beam_width` is unused.
    pub exact: bool,
    /// Rows a forward pass is filled up to with forced tokens fed ahead: tokens that the
    /// live beams' title prefixes leave no choice about, computed now so that later steps
    /// need fewer passes, or none. A pass of few rows costs nearly what one of 20-30 costs
    /// (the weights are read once either way), so filling it is almost free; past this
    /// many, rows for beams that may still be dropped would cost compute. Changes no
    /// result; 0 turns it off. Default [`DEFAULT_LOOKAHEAD`].
    pub lookahead: usize,
    /// Drop the live beams that can no longer reach the top `k`: once `k` titles have
    /// finished, a beam scoring below the `k`-th only falls further (a title's
    /// log-probability only falls as it grows), and its candidates rank below every one
    /// that could still enter the top `k`, so they change no rank or finish that matters.
    /// Changes no result and saves the dropped beams' rows; `false` keeps them (to compare).
    pub prune: bool,
}

/// Rows a pass is filled up to by default ([`SearchOptions::lookahead`]).
pub const DEFAULT_LOOKAHEAD: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Catalogue index.
    pub index: u32,
    /// Log-probability of the title followed by the answer-end token.
    pub score: f32,
}

/// A live hypothesis: the trie node its tokens reach, their summed log-probability, and
/// the computed row whose output gives its next token (`None`: the prompt's last position).
struct Beam {
    node: u32,
    score: f32,
    row: Option<u32>,
}

/// One node of the search's token tree: the trie node its token leads to, the row it
/// continues (`None`: the prompt) and, once its pass has run, the log-probabilities of the
/// trie node's children (in `trie.children(node)` order).
struct Row {
    node: u32,
    token: u32,
    parent: Option<u32>,
    logp: Option<Vec<f32>>,
}

/// Where one search spent its time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SearchTiming {
    /// Prefilling the prompt (after the shared head) up to the first logits.
    pub prefill_seconds: f64,
    /// The beam steps after it.
    pub decode_seconds: f64,
    /// Beam-search steps: answer tokens decoded, one level of the title tree each.
    pub decode_steps: usize,
    /// Batched forward passes those steps ran (fewer than the steps with lookahead).
    pub forward_passes: usize,
    /// Rows those passes computed (one per token-tree node): what decoding multiplies
    /// through every weight.
    pub decode_rows: usize,
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
    let (ranked, counts) = search_prefilled(model, catalog, &prefilled, opts)?;
    timing.decode_steps = counts.steps;
    timing.forward_passes = counts.passes;
    timing.decode_rows = counts.rows;
    timing.decode_seconds = started.elapsed().as_secs_f64() - timing.prefill_seconds;
    Ok((ranked, timing))
}

/// Steps a search took and the forward passes they ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchCounts {
    /// Beam-search steps (answer tokens decoded).
    pub steps: usize,
    /// Batched forward passes.
    pub passes: usize,
    /// Rows the passes computed, one per token-tree node.
    pub rows: usize,
}

/// Top-`k` items after a prefilled prompt, best first, and what the search took.
pub fn search_prefilled(
    model: &Model,
    catalog: &CatalogSnapshot,
    prefilled: &Prefilled,
    opts: &SearchOptions,
) -> Result<(Vec<Scored>, SearchCounts)> {
    let llama = model.llama();
    let mut state = BeamState::new(model, catalog, opts)?;
    let mut tree = llama.new_tree();
    let mut next = state.start(catalog, &prefilled.logp)?;
    while let Some(step) = next {
        let logp = run_pass(model, &prefilled.cache, &mut tree, &step)?;
        next = state.advance(catalog, logp)?;
    }
    let counts = state.counts();
    Ok((state.into_results(), counts))
}

/// One forward pass over `step`'s rows after `prompt` and the search's `tree`: the
/// log-probabilities the step wants.
fn run_pass(
    model: &Model,
    prompt: &KvCache,
    tree: &mut TreeKv,
    step: &BeamStep,
) -> Result<Vec<Vec<f32>>> {
    let llama = model.llama();
    let embeds = llama.embed_ids(&step.tokens)?.unsqueeze(1)?; // [rows, 1, hidden]
    let mut groups = [DecodeGroup {
        prefix: prompt,
        tree,
        contexts: &step.contexts,
    }];
    let hidden = llama.forward_groups(&embeds, &mut groups)?;
    llama.log_probs_of(&hidden, &step.wanted)
}

/// The rows one forward pass must compute for a search, in the order
/// [`Llama::forward_groups`] takes them.
///
/// [`Llama::forward_groups`]: crate::model::Llama::forward_groups
#[derive(Debug, Clone, PartialEq)]
pub struct BeamStep {
    /// The token each row feeds.
    pub tokens: Vec<u32>,
    /// Per row, the token-tree nodes it attends to (ancestors, then its own node), as
    /// [`DecodeGroup::contexts`] takes them.
    pub contexts: Vec<Vec<u32>>,
    /// Per row, the tokens whose log-probabilities the search needs from its output;
    /// [`BeamState::advance`] takes them in this order.
    pub wanted: Vec<Vec<u32>>,
}

impl BeamStep {
    pub fn rows(&self) -> usize {
        self.tokens.len()
    }
}

/// One constrained search, advanced a step at a time by whoever runs the forward passes:
/// [`search_prefilled`] for one query, the batching worker for many at once.
pub struct BeamState {
    k: usize,
    width: usize,
    exact: bool,
    lookahead: usize,
    prune: bool,
    answer_end: u32,
    /// Excluded items removed from each node's subtree count, so no beam is spent on a
    /// branch that can only end in excluded items.
    removed: HashMap<u32, u32>,
    excluded: HashSet<u32>,
    /// With an allow-list: the allowed (and not excluded) items below each node, in place
    /// of the tree's counts, and the items themselves.
    allowed: Option<(HashMap<u32, u32>, HashSet<u32>)>,
    beams: Vec<Beam>,
    /// Exact search: prefixes above the bound that did not make this step's best `width`,
    /// as `(score, parent row, token, node)`; they compete again at the next step.
    deferred: Vec<(f32, Option<u32>, u32, u32)>,
    /// The log-probabilities of the root's children after the prompt.
    prompt_logp: Vec<f32>,
    /// The token tree: row `i` is node `i` of the [`TreeKv`] the passes fill.
    rows: Vec<Row>,
    /// Rows fed ahead, by (the row they continue, their token).
    ahead: HashMap<(u32, u32), u32>,
    /// Rows of the pass in flight: `rows[pending..]`.
    pending: usize,
    finished: Vec<Scored>,
    steps: usize,
    passes: usize,
    done: bool,
}

impl BeamState {
    pub fn new(model: &Model, catalog: &CatalogSnapshot, opts: &SearchOptions) -> Result<Self> {
        if opts.k == 0 {
            return Err(Error::invalid("k must be at least 1"));
        }
        let trie = catalog.trie();
        let answer_end = model.special().answer_end;
        // Adds 1 to `counts` at every node on `idx`'s path, the root included.
        let count_path = |counts: &mut HashMap<u32, u32>, idx: u32| {
            let mut path = catalog.item(idx).tokens.clone();
            path.push(answer_end);
            if let Some(nodes) = trie.walk(&path) {
                *counts.entry(ROOT).or_default() += 1;
                for n in nodes {
                    *counts.entry(n).or_default() += 1;
                }
            }
        };
        let mut removed: HashMap<u32, u32> = HashMap::new();
        let mut excluded = HashSet::new();
        for &idx in &opts.exclude {
            if !excluded.insert(idx) || !catalog.is_live(idx) {
                continue;
            }
            count_path(&mut removed, idx);
        }
        let allowed = opts.allow.as_ref().map(|allow| {
            let mut counts = HashMap::new();
            let mut items = HashSet::new();
            for &idx in allow {
                if catalog.is_live(idx) && !excluded.contains(&idx) && items.insert(idx) {
                    count_path(&mut counts, idx);
                }
            }
            (counts, items)
        });
        let mut state = BeamState {
            k: opts.k,
            width: 0,
            exact: opts.exact,
            lookahead: opts.lookahead,
            prune: opts.prune,
            answer_end,
            removed,
            excluded,
            allowed,
            beams: vec![Beam {
                node: ROOT,
                score: 0.0,
                row: None,
            }],
            deferred: Vec::new(),
            prompt_logp: Vec::new(),
            rows: Vec::new(),
            ahead: HashMap::new(),
            pending: 0,
            finished: Vec::new(),
            steps: 0,
            passes: 0,
            done: false,
        };
        let available = state.available(catalog, ROOT) as usize;
        state.done = available == 0;
        // Exact search keeps every prefix that can still reach the top k, but computes only
        // the best `EXACT_ROWS` of them per step (best first, the rest deferred): the first
        // titles to finish are then the likely ones, and the bound they set prunes early.
        state.width = if opts.exact {
            EXACT_ROWS.max(opts.k)
        } else {
            opts.beam_width.max(opts.k)
        };
        Ok(state)
    }

    /// Items below `node` that the search may return.
    fn available(&self, catalog: &CatalogSnapshot, node: u32) -> u32 {
        match &self.allowed {
            Some((counts, _)) => counts.get(&node).copied().unwrap_or(0),
            None => catalog.trie().count(node) - self.removed.get(&node).copied().unwrap_or(0),
        }
    }

    /// Whether item `idx` may be returned.
    fn permits(&self, idx: u32) -> bool {
        match &self.allowed {
            Some((_, items)) => items.contains(&idx),
            None => !self.excluded.contains(&idx),
        }
    }

    /// Takes the prompt's log-probabilities over the whole vocabulary (the prefill's) and
    /// returns the first forward pass to run, or `None` if the search needs none.
    pub fn start(&mut self, catalog: &CatalogSnapshot, logp: &[f32]) -> Result<Option<BeamStep>> {
        if !self.rows.is_empty() || !self.prompt_logp.is_empty() {
            return Err(Error::invalid("beam search: started twice"));
        }
        let children = catalog.trie().children(ROOT);
        if let Some(&(tok, _)) = children.iter().find(|c| c.0 as usize >= logp.len()) {
            return Err(Error::invalid(format!(
                "beam search: token {tok} is outside the {}-token log-probabilities",
                logp.len()
            )));
        }
        self.prompt_logp = children
            .iter()
            .map(|&(tok, _)| logp[tok as usize])
            .collect();
        Ok(self.next_pass(catalog))
    }

    /// Takes the log-probabilities the last step wanted (one vector per row, as
    /// [`BeamStep::wanted`] listed them) and returns the next forward pass to run, or
    /// `None` once the top k are final.
    pub fn advance(
        &mut self,
        catalog: &CatalogSnapshot,
        logp: Vec<Vec<f32>>,
    ) -> Result<Option<BeamStep>> {
        let pending = &mut self.rows[self.pending..];
        if logp.len() != pending.len() {
            return Err(Error::invalid(format!(
                "beam search: {} rows of log-probabilities for a pass of {}",
                logp.len(),
                pending.len()
            )));
        }
        let trie = catalog.trie();
        if let Some((row, lp)) = pending
            .iter()
            .zip(&logp)
            .find(|(row, lp)| lp.len() != trie.children(row.node).len())
        {
            return Err(Error::invalid(format!(
                "beam search: {} log-probabilities for a node of {} children",
                lp.len(),
                trie.children(row.node).len()
            )));
        }
        for (row, lp) in pending.iter_mut().zip(logp) {
            row.logp = Some(lp);
        }
        self.pending = self.rows.len();
        Ok(self.next_pass(catalog))
    }

    /// Beam-search steps until one needs rows that no pass has computed yet.
    fn next_pass(&mut self, catalog: &CatalogSnapshot) -> Option<BeamStep> {
        loop {
            let start = self.rows.len();
            if !self.expand(catalog) {
                return None;
            }
            if self.rows.len() > start {
                self.fill_ahead(catalog, start);
                self.pending = start;
                self.passes += 1;
                return Some(self.pass_from(catalog, start));
            }
        }
    }

    /// One beam-search step: every allowed extension of every live beam (whose rows are all
    /// computed) is a candidate, the best `width` live on, finished titles are recorded.
    /// Each new beam gets its row: one fed ahead, or a new one (with its forced tokens
    /// after it) for the next pass. `false` once the top k are final.
    fn expand(&mut self, catalog: &CatalogSnapshot) -> bool {
        if self.done {
            return false;
        }
        let trie = catalog.trie();
        let (k, width) = (self.k, self.width);
        // Exact search (and a pruned beam search) drops what cannot reach the top k: a
        // title's log-probability only falls as it grows, so a prefix already below the
        // k-th finished score stays below (ties are kept, as the order among equal scores
        // goes by index).
        let bound = if (self.exact || self.prune) && self.finished.len() >= k {
            self.finished[k - 1].score
        } else {
            f32::NEG_INFINITY
        };
        // (score, parent row, token, node): every extension of every live beam, and in
        // exact search the prefixes deferred from earlier steps.
        let mut cands: Vec<(f32, Option<u32>, u32, u32)> = std::mem::take(&mut self.deferred);
        cands.retain(|c| c.0 >= bound);
        for beam in &self.beams {
            let logp = self.logp_of(beam.row);
            for (&(tok, child), &lp) in trie.children(beam.node).iter().zip(logp) {
                let score = beam.score + lp;
                if self.available(catalog, child) > 0 && score >= bound {
                    cands.push((score, beam.row, tok, child));
                }
            }
        }
        cands.sort_by(|a, b| {
            b.0.total_cmp(&a.0)
                .then(a.2.cmp(&b.2))
                .then(a.1.cmp(&b.1))
                .then(a.3.cmp(&b.3))
        });
        let mut next: Vec<(u32, f32, Option<u32>, u32)> = Vec::new();
        for (rank, &(score, parent, tok, child)) in cands.iter().enumerate() {
            if tok == self.answer_end {
                // As in Hugging Face's beam search: a hypothesis finishes only if it
                // ranks among the top `width` candidates. Exact search keeps every one.
                if rank < width || self.exact {
                    for &idx in trie.items(child) {
                        if self.permits(idx) {
                            self.finished.push(Scored { index: idx, score });
                        }
                    }
                }
            } else if next.len() < width {
                next.push((child, score, parent, tok));
            } else if self.exact {
                self.deferred.push((score, parent, tok, child));
            }
            if !self.exact && next.len() >= width && rank + 1 >= width {
                break;
            }
        }
        self.finished
            .sort_by(|a, b| b.score.total_cmp(&a.score).then(a.index.cmp(&b.index)));
        // The beams that fell below the k-th finished title this step get no row.
        if self.prune && self.finished.len() >= k {
            let kth = self.finished[k - 1].score;
            next.retain(|n| n.1 >= kth);
        }
        // Log-probabilities only fall as a title grows: once k are finished and no live
        // beam beats the k-th, nothing can change the top k.
        // Deferred prefixes score below every new beam, so the best live one is a beam's.
        let best_live = next.iter().map(|n| n.1).fold(f32::NEG_INFINITY, f32::max);
        if next.is_empty() || (self.finished.len() >= k && best_live <= self.finished[k - 1].score)
        {
            self.done = true;
            return false;
        }
        self.steps += 1;
        self.beams = next
            .into_iter()
            .map(|(node, score, parent, tok)| {
                let known = parent.and_then(|p| self.ahead.get(&(p, tok)).copied());
                let row = known.unwrap_or_else(|| self.feed(node, tok, parent));
                Beam {
                    node,
                    score,
                    row: Some(row),
                }
            })
            .collect();
        true
    }

    /// The computed log-probabilities of `row`'s trie node's children.
    fn logp_of(&self, row: Option<u32>) -> &[f32] {
        match row {
            None => &self.prompt_logp,
            Some(r) => self.rows[r as usize]
                .logp
                .as_deref()
                .expect("beam search expands only computed rows"),
        }
    }

    /// Adds a row feeding `token` (reaching trie `node`) after `parent`; returns its id.
    fn feed(&mut self, node: u32, token: u32, parent: Option<u32>) -> u32 {
        self.rows.push(Row {
            node,
            token,
            parent,
            logp: None,
        });
        (self.rows.len() - 1) as u32
    }

    /// Fills the pass of `rows[start..]` up to `lookahead` rows with the live beams' forced
    /// tokens, one token per beam per round so that every beam's chain grows alike.
    fn fill_ahead(&mut self, catalog: &CatalogSnapshot, start: usize) {
        let room = |s: &Self| s.rows.len() - start < s.lookahead;
        // Each beam's chain so far: its row, then the rows already fed ahead after it.
        let mut tips: Vec<u32> = self
            .beams
            .iter()
            .filter_map(|b| b.row)
            .map(|row| self.chain_end(catalog, row))
            .collect();
        while room(self) && !tips.is_empty() {
            let mut grown = Vec::with_capacity(tips.len());
            for tip in tips {
                if !room(self) {
                    break;
                }
                if let Some((token, node)) = self.forced(catalog, self.rows[tip as usize].node) {
                    let id = self.feed(node, token, Some(tip));
                    self.ahead.insert((tip, token), id);
                    grown.push(id);
                }
            }
            tips = grown;
        }
    }

    /// The last row of `row`'s forced chain that is computed or queued.
    fn chain_end(&self, catalog: &CatalogSnapshot, mut row: u32) -> u32 {
        while let Some((token, _)) = self.forced(catalog, self.rows[row as usize].node) {
            match self.ahead.get(&(row, token)) {
                Some(&next) => row = next,
                None => break,
            }
        }
        row
    }

    /// The one token a beam at `node` can take next, when there is only one and it does
    /// not end the answer (the answer-end token's log-probability comes from `node`'s own
    /// row; nothing after it is needed).
    fn forced(&self, catalog: &CatalogSnapshot, node: u32) -> Option<(u32, u32)> {
        let mut open = catalog
            .trie()
            .children(node)
            .iter()
            .filter(|&&(_, child)| self.available(catalog, child) > 0);
        match (open.next(), open.next()) {
            (Some(&(tok, child)), None) if tok != self.answer_end => Some((tok, child)),
            _ => None,
        }
    }

    /// The pass computing `rows[start..]`.
    fn pass_from(&self, catalog: &CatalogSnapshot, start: usize) -> BeamStep {
        let trie = catalog.trie();
        let rows = &self.rows[start..];
        let contexts = (start..self.rows.len())
            .map(|id| {
                let mut ctx = vec![id as u32];
                let mut at = self.rows[id].parent;
                while let Some(p) = at {
                    ctx.push(p);
                    at = self.rows[p as usize].parent;
                }
                ctx.reverse();
                ctx
            })
            .collect();
        BeamStep {
            tokens: rows.iter().map(|r| r.token).collect(),
            contexts,
            wanted: rows
                .iter()
                .map(|r| trie.children(r.node).iter().map(|c| c.0).collect())
                .collect(),
        }
    }

    /// Beam-search steps, forward passes and their rows so far.
    pub fn counts(&self) -> SearchCounts {
        SearchCounts {
            steps: self.steps,
            passes: self.passes,
            rows: self.rows.len(),
        }
    }

    /// The top k, best first.
    pub fn into_results(mut self) -> Vec<Scored> {
        self.finished.truncate(self.k);
        self.finished
    }
}
