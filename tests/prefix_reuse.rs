//! Per-user prompt KV reuse: a cached query ranks exactly as a fresh one, and the reuse
//! is real (stream-aligned PFT-S prefills only the appended item and the prompt's end).

mod common;

use patchrec::history::{Layout, LayoutConfig};
use patchrec::{recommend, recommend_cached, Interaction, PromptCache, QueryOptions, UserHistory};

fn options(layout: Layout, max_items: usize) -> QueryOptions {
    QueryOptions {
        k: 8,
        beam_width: 8,
        layout: Some(LayoutConfig { layout, max_items }),
        exclude_history: false,
        exact: false,
    }
}

fn append(cat: &patchrec::Catalog, user: &mut UserHistory, id: u64) {
    let i = Interaction {
        item_id: id,
        timestamp: None,
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
        let cfg = LayoutConfig {
            layout: Layout::StreamS { l },
            max_items: k,
        };
        let window_moved = cfg.window_start(before) != cfg.window_start(user.len());
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
    // Ten items: session 0, items 1-3 as patches, text 4-6... the eleventh shifts every
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
