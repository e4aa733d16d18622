//! Catalogue updates: a catalogue with items removed or retitled answers exactly as one
//! built from scratch with the remaining items and the new titles; histories holding a
//! removed item still work; snapshots taken before an update keep what they held; a
//! user's cached prompt never serves a stale title.

mod common;

use patchrec::history::{Layout, LayoutConfig};
use patchrec::{
    rank, recommend, recommend_cached, Error, Interaction, PromptCache, QueryOptions, QueryResult,
    RankOptions, UserHistory,
};

fn at(item_id: u64) -> Interaction {
    Interaction {
        item_id,
        timestamp: None,
    }
}

/// Every live item, exactly ranked.
fn everything(layout: Layout) -> QueryOptions {
    QueryOptions::default()
        .with_k(1000)
        .with_exact(true)
        .with_layout(LayoutConfig::new(layout, 100))
}

fn assert_same(a: &QueryResult, b: &QueryResult, what: &str) {
    let ids = |r: &QueryResult| r.items.iter().map(|i| i.item_id).collect::<Vec<_>>();
    assert_eq!(ids(a), ids(b), "{what}");
    for (x, y) in a.items.iter().zip(&b.items) {
        assert!((x.score - y.score).abs() < 1e-4, "{what}: {x:?} vs {y:?}");
    }
    assert_eq!(a.prompt_len, b.prompt_len, "{what}");
}

#[test]
fn removed_and_retitled_items_answer_as_a_catalogue_built_without_them() {
    let items = common::titles(30);
    let model = common::tiny_model(30);
    let cat = common::catalog(&model, &items);
    let removed: Vec<u64> = [2, 5, 11, 17, 23].iter().map(|&i| items[i].0).collect();
    let retitled = [
        (items[8].0, "The Quiet Harbor (2001)"),
        (items[14].0, "Red River (1948)"),
    ];
    cat.remove_batch(&removed).unwrap();
    cat.set_titles(&retitled).unwrap();
    assert_eq!(cat.len(), 25);

    // The same catalogue built from scratch: the remaining items, then the retitled ones
    // (a retitled item takes a new place at the end, which orders ties).
    let rebuilt_items: Vec<(u64, String)> = items
        .iter()
        .filter(|(id, _)| !removed.contains(id) && !retitled.iter().any(|(r, _)| r == id))
        .cloned()
        .chain(retitled.iter().map(|(id, t)| (*id, t.to_string())))
        .collect();
    let rebuilt = common::catalog(&model, &rebuilt_items);

    // The history holds a retitled item, shown with its new title in both.
    let history = [items[1].0, items[8].0, items[20].0, items[4].0];
    for layout in [
        Layout::Vanilla,
        Layout::PftI { m: 2 },
        Layout::PftS { l: 2 },
    ] {
        let updated = recommend(
            &cat,
            &common::user_with(&cat, &history),
            &everything(layout),
        )
        .unwrap();
        let fresh = recommend(
            &rebuilt,
            &common::user_with(&rebuilt, &history),
            &everything(layout),
        )
        .unwrap();
        assert_eq!(updated.items.len(), 25);
        assert_same(&updated, &fresh, &format!("{layout}"));
        assert!(updated.items.iter().all(|r| !removed.contains(&r.item_id)));
    }
    let snap = cat.snapshot();
    assert_eq!(
        snap.get(items[8].0).unwrap().title,
        "The Quiet Harbor (2001)"
    );
}

#[test]
fn a_history_holding_a_removed_item_still_works() {
    let items = common::titles(20);
    let model = common::tiny_model(20);
    let cat = common::catalog(&model, &items);
    let gone = items[3].0;
    let user = common::user_with(&cat, &[items[1].0, gone, items[7].0]);
    let before = cat.snapshot();
    cat.remove(gone).unwrap();

    // Queries still render it (with its last title) and never answer it.
    let answer = recommend(&cat, &user, &everything(Layout::PftI { m: 1 })).unwrap();
    assert_eq!(answer.items.len(), 19);
    assert!(answer.items.iter().all(|r| r.item_id != gone));
    // It cannot enter a history again, nor be scored, until registered again.
    let mut other = UserHistory::new();
    assert!(
        matches!(cat.append(&mut other, &[at(gone)]), Err(Error::UnknownItem(id)) if id == gone)
    );
    assert!(matches!(
        rank(&cat, &user, &[gone], &RankOptions::default()),
        Err(Error::UnknownItem(id)) if id == gone
    ));
    // A snapshot taken before the removal (a query in flight) still holds it.
    assert!(before.live_index_of(gone).is_ok());
    assert_eq!(before.len(), 20);
    // Removing an unknown or removed id changes nothing.
    assert!(
        matches!(cat.remove_batch(&[items[4].0, gone]), Err(Error::UnknownItem(id)) if id == gone)
    );
    assert_eq!(cat.len(), 19, "all or nothing");
    // Registered again, it is recommended again.
    cat.add(gone, &items[3].1).unwrap();
    let again = recommend(&cat, &user, &everything(Layout::PftI { m: 1 })).unwrap();
    assert!(again.items.iter().any(|r| r.item_id == gone));
}

#[test]
fn a_cached_prompt_never_serves_a_stale_title() {
    let items = common::titles(20);
    let model = common::tiny_model(20);
    let cat = common::catalog(&model, &items);
    let user = common::user_with(&cat, &[items[2].0, items[9].0, items[5].0]);
    let opts = everything(Layout::Vanilla);
    let mut cache = PromptCache::new();
    recommend_cached(&cat, &user, &mut cache, &opts).unwrap();
    cat.set_title(items[9].0, "The Lost Machine (1999)")
        .unwrap();
    let cached = recommend_cached(&cat, &user, &mut cache, &opts).unwrap();
    assert_same(
        &cached,
        &recommend(&cat, &user, &opts).unwrap(),
        "after a retitle",
    );
}

#[test]
fn bad_updates_are_refused_and_change_nothing() {
    let items = common::titles(10);
    let model = common::tiny_model(10);
    let cat = common::catalog(&model, &items);
    assert!(matches!(
        cat.set_title(999, "Anything"),
        Err(Error::UnknownItem(999))
    ));
    let e = cat
        .set_titles(&[(items[0].0, "Fine (2000)"), (items[1].0, "  ")])
        .unwrap_err();
    assert!(e.to_string().contains(&items[1].0.to_string()), "{e}");
    assert_eq!(
        cat.snapshot().get(items[0].0).unwrap().title,
        items[0].1,
        "all or nothing"
    );
    assert!(cat
        .set_titles(&[(items[0].0, "One"), (items[0].0, "Two")])
        .is_err());
    assert_eq!(cat.len(), 10);
}
