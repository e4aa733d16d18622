//! Per-query filters: with an allow-list the answer equals that of a catalogue holding only
//! the allowed items; a denied item never appears, and the answer equals that of a
//! catalogue without it; the catalogue is never rebuilt.

mod common;

use patchrec::history::{Layout, LayoutConfig};
use patchrec::{recommend, QueryOptions, QueryResult};

fn assert_same(a: &QueryResult, b: &QueryResult, what: &str) {
    let ids = |r: &QueryResult| r.items.iter().map(|i| i.item_id).collect::<Vec<_>>();
    assert_eq!(ids(a), ids(b), "{what}");
    for (x, y) in a.items.iter().zip(&b.items) {
        assert!((x.score - y.score).abs() < 1e-4, "{what}: {x:?} vs {y:?}");
    }
}

fn options(layout: Layout, exact: bool) -> QueryOptions {
    QueryOptions::default()
        .with_k(6)
        .with_beam_width(6)
        .with_exact(exact)
        .with_layout(LayoutConfig::new(layout, 100))
}

#[test]
fn an_allow_list_answers_as_a_catalogue_of_the_allowed_items() {
    let items = common::titles(40);
    let model = common::tiny_model(40);
    let cat = common::catalog(&model, &items);
    let allowed: Vec<(u64, String)> = items.iter().step_by(3).cloned().collect();
    let only = common::catalog(&model, &allowed);
    let history = [allowed[1].0, allowed[4].0, allowed[2].0, allowed[7].0];
    let allow: Vec<u64> = allowed.iter().map(|(id, _)| *id).chain([999_999]).collect();
    for layout in [
        Layout::Vanilla,
        Layout::PftI { m: 2 },
        Layout::PftS { l: 2 },
    ] {
        for exact in [false, true] {
            let filtered = recommend(
                &cat,
                &common::user_with(&cat, &history),
                &options(layout, exact).with_allow(Some(allow.clone())),
            )
            .unwrap();
            let reference = recommend(
                &only,
                &common::user_with(&only, &history),
                &options(layout, exact),
            )
            .unwrap();
            assert_eq!(filtered.items.len(), 6);
            assert_same(&filtered, &reference, &format!("{layout}, exact {exact}"));
        }
    }
}

#[test]
fn a_denied_item_never_appears() {
    let items = common::titles(30);
    let model = common::tiny_model(30);
    let cat = common::catalog(&model, &items);
    let user = common::user_with(&cat, &[items[3].0, items[8].0]);
    let everything = QueryOptions::default().with_k(30).with_exact(true);
    let all = recommend(&cat, &user, &everything).unwrap();
    // Deny the best five: the rest move up, in the same order with the same scores.
    let deny: Vec<u64> = all.items[..5]
        .iter()
        .map(|r| r.item_id)
        .chain([424_242])
        .collect();
    let denied = recommend(&cat, &user, &everything.clone().with_deny(deny.clone())).unwrap();
    assert_eq!(denied.items.len(), 25);
    for (a, b) in denied.items.iter().zip(&all.items[5..]) {
        assert_eq!(a.item_id, b.item_id);
        assert!((a.score - b.score).abs() < 1e-4);
    }
    // Beam search too: a denied item never appears among the top k.
    let top = recommend(
        &cat,
        &user,
        &QueryOptions::default().with_k(5).with_deny(deny.clone()),
    )
    .unwrap();
    assert!(top.items.iter().all(|r| !deny.contains(&r.item_id)));
    assert_eq!(top.items.len(), 5);

    // Allowed and denied: denial wins. An empty allow-list allows nothing.
    let both = recommend(
        &cat,
        &user,
        &everything
            .clone()
            .with_allow(Some(vec![items[0].0, items[1].0, items[2].0]))
            .with_deny(vec![items[1].0]),
    )
    .unwrap();
    let mut ids: Vec<u64> = both.items.iter().map(|r| r.item_id).collect();
    ids.sort();
    assert_eq!(ids, vec![items[0].0, items[2].0]);
    let none = recommend(&cat, &user, &everything.with_allow(Some(vec![]))).unwrap();
    assert!(none.items.is_empty());
}
