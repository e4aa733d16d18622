//! The serving entry point: a user's history and a catalogue in, ranked items out.

use crate::catalog::Catalog;
use std::sync::Arc;

use crate::catalog::CatalogSnapshot;
use crate::decode::{search_prefilled, Scored, SearchOptions, DEFAULT_LOOKAHEAD};
use crate::error::{Error, Result};
use crate::history::{
    compression_ratio, history_positions, Layout, LayoutChoice, UserHistory,
};
use crate::prompt::{build_prompt_shown, fixed_positions, prefill, Prefilled, Prompt, PromptCache};

/// How to answer a query. `QueryOptions::default()` and the `with_*` setters build one.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QueryOptions {
    /// Items to return (default 10).
    pub k: usize,
    /// Beam width (default 20, the paper's; raised to `k` if smaller).
    pub beam_width: usize,
    /// Layout, truncation and session gap; what is unset is the checkpoint's
    /// (`patchrec.json`).
    pub layout: LayoutChoice,
    /// Never recommend an item already in the user's history (default false, as in the
    /// paper's protocol).
    pub exclude_history: bool,
    /// Rank the whole catalogue exactly rather than by beam search (default false): every
    /// title prefix that can still reach the top k is expanded, so no beam can miss the
    /// best item.
    pub exact: bool,
    /// When set, recommend only these items (ids the catalogue does not hold are ignored):
    /// the answer equals that of a catalogue holding only them, and the search never
    /// expands a branch of the title tree that leads to none of them.
    pub allow: Option<Vec<u64>>,
    /// Never recommend these items (ids the catalogue does not hold are ignored).
    pub deny: Vec<u64>,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            k: 10,
            beam_width: 20,
            layout: LayoutChoice::default(),
            exclude_history: false,
            exact: false,
            allow: None,
            deny: Vec::new(),
        }
    }
}

setters!(QueryOptions {
    with_k => k: usize,
    with_beam_width => beam_width: usize,
    with_exclude_history => exclude_history: bool,
    with_exact => exact: bool,
    with_allow => opt allow: Vec<u64>,
    with_deny => deny: Vec<u64>,
});

impl QueryOptions {
    /// Sets the layout: a [`Layout`] (the checkpoint's truncation and gap stay), a whole
    /// [`crate::LayoutConfig`], or a [`LayoutChoice`].
    #[must_use]
    pub fn with_layout(mut self, layout: impl Into<LayoutChoice>) -> Self {
        self.layout = layout.into();
        self
    }

    /// Sets the history truncation K.
    #[must_use]
    pub fn with_max_items(mut self, max_items: usize) -> Self {
        self.layout.max_items = Some(max_items);
        self
    }

    /// Sets the session gap of `stream-s:L` in seconds; `None`: sessions close only when
    /// full, whatever the checkpoint says.
    #[must_use]
    pub fn with_session_gap(mut self, gap: Option<u64>) -> Self {
        self.layout.session_gap = Some(gap);
        self
    }
}

/// One recommended item and its score.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Recommendation {
    /// The item's id.
    pub item_id: u64,
    /// Log-probability of the item's title (and the answer-end token) given the prompt.
    pub score: f32,
}

/// The answer to a query ([`recommend`]): the items, and how the prompt was laid out.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct QueryResult {
    /// Best first; at most `k`, fewer only when the catalogue (less exclusions) is smaller.
    pub items: Vec<Recommendation>,
    /// Positions in the prompt (tokens and patches).
    pub prompt_len: usize,
    /// History items shown (after truncation to K).
    pub history_items: usize,
    /// The paper's compression ratio of the history part of the prompt.
    pub compression_ratio: f64,
    /// The layout used (for `budget:N`, the one fitted to this history).
    pub layout: Layout,
}

/// How a user's history is laid out in a prompt ([`layout_stats`]).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct LayoutStats {
    /// Positions in the prompt (tokens and patches).
    pub prompt_len: usize,
    /// History items shown (after truncation to K).
    pub history_items: usize,
    /// The paper's compression ratio of the history; 1 for vanilla.
    pub compression_ratio: f64,
}

/// How the user's history would be laid out for `opts`, without running the model.
pub fn layout_stats(
    catalog: &Catalog,
    user: &UserHistory,
    opts: &QueryOptions,
) -> Result<LayoutStats> {
    let model = catalog.model();
    let layout = opts.layout.resolve(model.meta().layout);
    layout.validate()?;
    let snap = catalog.snapshot();
    let history = user.shown(&layout);
    let lengths: Vec<usize> = history
        .items
        .iter()
        .map(|&id| snap.index_of(id).map(|i| snap.item(i).tokens.len()))
        .collect::<Result<_>>()?;
    let fixed = fixed_positions(model, history.len());
    let segs = history.segments(layout.layout.resolve(&lengths, fixed));
    let len = fixed + history_positions(&segs, &lengths);
    let cr = compression_ratio(&segs, |i| lengths[i]);
    Ok(LayoutStats {
        prompt_len: len,
        history_items: history.len(),
        compression_ratio: cr,
    })
}

/// Recommends the next items for `user` from `catalog` (one consistent snapshot of it).
pub fn recommend(
    catalog: &Catalog,
    user: &UserHistory,
    opts: &QueryOptions,
) -> Result<QueryResult> {
    run_query(catalog, user, opts, None)
}

/// [`recommend`], reusing `cache`, the user's prompt KV from earlier queries: only the
/// positions after the prefix the new prompt shares with the cached one are prefilled
/// (see [`PromptCache`]). The ranking equals [`recommend`]'s. Keep one cache per user.
pub fn recommend_cached(
    catalog: &Catalog,
    user: &UserHistory,
    cache: &mut PromptCache,
    opts: &QueryOptions,
) -> Result<QueryResult> {
    run_query(catalog, user, opts, Some(cache))
}

/// A query made ready for decoding: its catalogue snapshot, prompt and search options.
pub(crate) struct PreparedQuery {
    pub snap: Arc<CatalogSnapshot>,
    pub prompt: Prompt,
    pub search: SearchOptions,
}

pub(crate) fn prepare(
    catalog: &Catalog,
    user: &UserHistory,
    opts: &QueryOptions,
) -> Result<PreparedQuery> {
    if opts.k == 0 {
        return Err(Error::invalid("k must be at least 1"));
    }
    let model = catalog.model();
    let layout = opts.layout.resolve(model.meta().layout);
    layout.validate()?;
    let snap = catalog.snapshot();
    if snap.is_empty() {
        return Err(Error::invalid("the catalogue is empty"));
    }
    let history = user.shown(&layout);
    let prompt = build_prompt_shown(model, &snap, &history, layout.layout)?;
    let live = |ids: &mut dyn Iterator<Item = u64>| -> Vec<u32> {
        ids.filter_map(|id| snap.live_index_of(id).ok()).collect()
    };
    let mut exclude = live(&mut opts.deny.iter().copied());
    if opts.exclude_history {
        exclude.extend(live(&mut user.item_ids()));
    }
    let search = SearchOptions {
        k: opts.k,
        beam_width: opts.beam_width,
        exclude,
        allow: opts
            .allow
            .as_ref()
            .map(|ids| live(&mut ids.iter().copied())),
        exact: opts.exact,
        lookahead: DEFAULT_LOOKAHEAD,
        prune: true,
    };
    Ok(PreparedQuery {
        snap,
        prompt,
        search,
    })
}

/// Prefills the prepared prompt, through the user's cache when there is one.
pub(crate) fn prefill_prepared(
    catalog: &Catalog,
    q: &PreparedQuery,
    cache: Option<&mut PromptCache>,
) -> Result<Prefilled> {
    match cache {
        Some(cache) => cache.prefill(catalog, &q.prompt),
        None => prefill(catalog.model(), &q.prompt),
    }
}

pub(crate) fn into_result(q: &PreparedQuery, ranked: Vec<Scored>) -> QueryResult {
    QueryResult {
        items: ranked
            .into_iter()
            .map(|s| Recommendation {
                item_id: q.snap.item(s.index).id,
                score: s.score,
            })
            .collect(),
        prompt_len: q.prompt.len,
        history_items: q.prompt.history_items,
        compression_ratio: q.prompt.compression_ratio,
        layout: q.prompt.layout,
    }
}

fn run_query(
    catalog: &Catalog,
    user: &UserHistory,
    opts: &QueryOptions,
    cache: Option<&mut PromptCache>,
) -> Result<QueryResult> {
    let q = prepare(catalog, user, opts)?;
    let prefilled = prefill_prepared(catalog, &q, cache)?;
    let (ranked, _counts) = search_prefilled(catalog.model(), &q.snap, &prefilled, &q.search)?;
    Ok(into_result(&q, ranked))
}
