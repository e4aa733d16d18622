//! Per-user prompt KV reuse: a cached query ranks exactly as a fresh one, and the reuse
//! is real (stream-aligned PFT-S prefills only the appended item and the prompt's end).

mod common;

use patchrec::history::{Layout, LayoutConfig};
use patchrec::{recommend, recommend_cached, Interaction, PromptCache, QueryOptions, UserHistory};

fn options(layout: Layout, max_items: usize) -> QueryOptions {
    QueryOptions::default()
        .with_k(8)
        .with_beam_width(8)
        .with_layout(LayoutConfig::new(layout, max_items))
        .with_exclude_history(false)
        .with_exact(false)
}

fn append(cat: &patchrec::Catalog, user: &mut UserHistory, id: u64) {
    append_at(cat, user, id, None);
}

fn append_at(cat: &patchrec::Catalog, user: &mut UserHistory, id: u64, timestamp: Option<i64>) {
    let i = Interaction {
        item_id: id,
        timestamp,
    };
    cat.append(user, &[i]).unwrap();
}

/// Same items in the same order and scores within 1e-4.
fn assert_same(fresh: &patchrec::QueryResult, cached: &patchrec::QueryResult, what: &str) {
    let ids = |r: &patchrec::QueryResult| r.items.iter().map(|i| i.item_id).collect::<Vec<_>>();
    assert_eq!(ids(fresh), ids(cached), "{what}: rankings differ");
    for (a, b) in fresh.items.iter().zip(&cached.items) {
        assert!((a.score - b.score).abs() < 1e-4, "{what}: {a:?} vs {b:?}");
    }
    assert_eq!(fresh.prompt_len, cached.prompt_len, "{what}");
}

#[test]
fn cached_queries_rank_exactly_as_fresh_ones_while_the_history_grows() {
    let items = common::titles(30);
    let model = common::tiny_model(30);
    let cat = common::catalog(&model, &items);
    for layout in [
        Layout::Vanilla,
        Layout::PftI { m: 3 },
        Layout::PftS { l: 3 },
        Layout::StreamS { l: 3 },
    ] {
        // K = 12 < 26 appends, so the window also moves.
        let opts = options(layout, 12);
        let mut user = UserHistory::new();
        let mut cache = PromptCache::new();
        for step in 0..26 {
            append(&cat, &mut user, items[(step * 7) % 30].0);
            let fresh = recommend(&cat, &user, &opts).unwrap();
            let cached = recommend_cached(&cat, &user, &mut cache, &opts).unwrap();
            assert_same(
                &fresh,
                &cached,
                &format!("{layout} after {} items", step + 1),
            );
            assert_eq!(cache.len(), fresh.prompt_len);
            assert!(cache.memory_bytes() > 0);
        }
    }
}

#[test]
fn stream_aligned_appends_prefill_only_the_new_item_and_the_end() {
    let items = common::titles(30);
    let model = common::tiny_model(30);
    let cat = common::catalog(&model, &items);
    let snap = cat.snapshot();
    let title_len = |id: u64| snap.get(id).unwrap().tokens.len();
    let tail = model.tail_ids().len();
    let (l, k) = (4, 16);
    let opts = options(Layout::StreamS { l }, k);
    let mut user = UserHistory::new();
    let mut cache = PromptCache::new();
    let mut checked = 0;
    for step in 0..40 {
        let id = items[(step * 11) % 30].0;
        let before = user.len();
        append(&cat, &mut user, id);
        let cfg = LayoutConfig::new(Layout::StreamS { l }, k);
        let window_moved = cfg.window(&user.interactions()[..before]).start
            != cfg.window(user.interactions()).start;
        let group_closed = before.is_multiple_of(l);
        recommend_cached(&cat, &user, &mut cache, &opts).unwrap();
        let reuse = cache.last_reuse();
        assert_eq!(reuse.reused + reuse.computed, cache.len());
        if before > 0 && !window_moved && !group_closed {
            // `<|item_sep|>` replacing the old `<|end_seq|>`, the new title, its
            // `<|end_seq|>` and the template's tail.
            assert_eq!(
                reuse.computed,
                1 + title_len(id) + 1 + tail,
                "after {} items",
                user.len()
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} appends checked");
    // The same prompt again: nothing computed, and the answer is bit-identical.
    let first = recommend_cached(&cat, &user, &mut cache, &opts).unwrap();
    let again = recommend_cached(&cat, &user, &mut cache, &opts).unwrap();
    assert_eq!(cache.last_reuse().computed, 0);
    assert_eq!(first.items, again.items);
}

#[test]
fn time_gap_sessions_rank_as_fresh_queries_and_reuse_all_but_the_last_two_sessions() {
    let items = common::titles(30);
    let model = common::tiny_model(30);
    let cat = common::catalog(&model, &items);
    let snap = cat.snapshot();
    let title_len = |id: u64| snap.get(id).unwrap().tokens.len();
    let tail = model.tail_ids().len();
    let (l, k, gap) = (4, 14, 600);
    let cfg = LayoutConfig::new(Layout::StreamS { l }, k).with_session_gap(Some(gap));
    let opts = options(Layout::Vanilla, k).with_layout(cfg);
    let mut user = UserHistory::new();
    let mut cache = PromptCache::new();
    // Visits of 1 to 6 items a minute apart, an hour or more between visits.
    let (mut t, mut step, mut within, mut gaps) = (0i64, 0usize, 0, 0);
    for visit in 0..12 {
        t += 3600 * (1 + visit % 3);
        for j in 0..1 + (visit * 5) % 6 {
            t += 60;
            let id = items[(step * 7) % 30].0;
            step += 1;
            let before = user.len();
            let stream_before = user.interactions().to_vec();
            append_at(&cat, &mut user, id, Some(t));
            let sessions = |s: &[Interaction]| patchrec::history::session_starts(s, l, Some(gap));
            let (old, new) = (sessions(&stream_before), sessions(user.interactions()));
            let fresh = recommend(&cat, &user, &opts).unwrap();
            let cached = recommend_cached(&cat, &user, &mut cache, &opts).unwrap();
            assert_same(&fresh, &cached, &format!("after {} items", user.len()));
            let reuse = cache.last_reuse();
            let window_moved =
                cfg.window(&stream_before).start != cfg.window(user.interactions()).start;
            if before == 0 || window_moved {
                continue;
            }
            // The first item of a visit always opens a session; a later one only when
            // the open session is full.
            let full = old.last().is_some_and(|&s| before - s == l);
            assert_eq!(new.len() > old.len(), j == 0 || full, "item {}", user.len());
            if new.len() == old.len() {
                // The open session grew: only the new title and the end are computed.
                assert_eq!(
                    reuse.computed,
                    1 + title_len(id) + 1 + tail,
                    "item {}",
                    user.len()
                );
                within += 1;
            } else {
                // A session closed: the session before it folds into one session patch
                // and the closed one into item patches (two positions each, with their
                // delimiters); everything older is kept, however long the history.
                assert!(
                    reuse.computed <= 2 + 2 * l + title_len(id) + 1 + tail,
                    "item {}: computed {}",
                    user.len(),
                    reuse.computed
                );
                gaps += usize::from(j == 0);
            }
        }
    }
    assert!(
        within >= 10 && gaps >= 5,
        "checked {within} in-session and {gaps} gap appends"
    );
    // The gap changes the prompt (here its length ties by chance: 3 sessions and 3 item
    // patches against 2 and 4), so the scores differ from counted sessions'.
    let counted = recommend(&cat, &user, &options(Layout::StreamS { l }, k)).unwrap();
    let gapped = recommend(&cat, &user, &opts).unwrap();
    assert_ne!(counted.items, gapped.items);
}

#[test]
fn tail_aligned_sessions_regroup_and_reuse_little() {
    let items = common::titles(30);
    let model = common::tiny_model(30);
    let cat = common::catalog(&model, &items);
    let opts = options(Layout::PftS { l: 3 }, 100);
    let mut user = UserHistory::new();
    let mut cache = PromptCache::new();
    for (id, _) in &items[..10] {
        append(&cat, &mut user, *id);
        recommend_cached(&cat, &user, &mut cache, &opts).unwrap();
    }
    // Ten items: the first as a session patch, items 1-3 as patches, text 4-6... the eleventh shifts every
    // group, so the cache keeps at most the head and the first (changed) session is redone.
    append(&cat, &mut user, items[10].0);
    recommend_cached(&cat, &user, &mut cache, &opts).unwrap();
    let head = model.head_ids().len();
    assert_eq!(cache.last_reuse().reused, head);
}

#[test]
fn a_cache_moved_to_another_catalogue_starts_over() {
    let items = common::titles(30);
    let model = common::tiny_model(30);
    let a = common::catalog(&model, &items);
    // Same model, the catalogue registered in another order: index i names another item.
    let mut reversed = items.clone();
    reversed.reverse();
    let b = common::catalog(&model, &reversed);
    let opts = options(Layout::PftI { m: 2 }, 20);
    let mut user = UserHistory::new();
    for (id, _) in &items[..8] {
        append(&a, &mut user, *id);
    }
    let mut cache = PromptCache::new();
    recommend_cached(&a, &user, &mut cache, &opts).unwrap();
    let cached = recommend_cached(&b, &user, &mut cache, &opts).unwrap();
    assert_eq!(cache.last_reuse().reused, model.head_ids().len());
    assert_same(
        &recommend(&b, &user, &opts).unwrap(),
        &cached,
        "catalogue b",
    );
}
