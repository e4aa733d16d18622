//! Catalogue registration policies, history appends, and consistent snapshots under
//! concurrent registration.

mod common;

use std::sync::Arc;

use patchrec::{Error, Interaction, QueryOptions, UserHistory};

fn at(item_id: u64) -> Interaction {
    Interaction {
        item_id,
        timestamp: None,
    }
}

#[test]
fn duplicate_ids_are_rejected_and_change_nothing() {
    let items = common::titles(10);
    let model = common::tiny_model(10);
    let cat = common::catalog(&model, &items[..5]);
    let e = cat
        .add_batch(&[(items[5].0, "A New Title"), (items[0].0, "Again")])
        .unwrap_err();
    assert!(
        matches!(e, Error::DuplicateItem(id) if id == items[0].0),
        "{e:?}"
    );
    assert_eq!(cat.len(), 5, "all or nothing");
    let e = cat.add_batch(&[(7, "One"), (7, "Two")]).unwrap_err();
    assert!(matches!(e, Error::DuplicateItem(7)));
    assert_eq!(cat.len(), 5);
}

#[test]
fn bad_titles_are_rejected_with_the_item_named() {
    let model = common::tiny_model(10);
    let cat = common::catalog(&model, &[]);
    for title in ["", "   ", "Before<|item_sep|>After", "x<|im_end|>"] {
        let e = cat.add(42, title).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{title:?}: {e:?}");
        assert!(e.to_string().contains("42"), "{e}");
    }
    assert!(cat.is_empty());
    // Surrounding whitespace is trimmed, as the reference implementation does.
    cat.add(1, "  The Lost River (1999) ").unwrap();
    assert_eq!(
        cat.snapshot().get(1).unwrap().title,
        "The Lost River (1999)"
    );
}

#[test]
fn unknown_items_never_enter_a_history() {
    let items = common::titles(10);
    let model = common::tiny_model(10);
    let cat = common::catalog(&model, &items);
    let mut user = UserHistory::new();
    cat.append(&mut user, &[at(items[0].0)]).unwrap();
    let e = cat.append(&mut user, &[at(items[1].0), at(5)]).unwrap_err();
    assert!(matches!(e, Error::UnknownItem(5)), "{e:?}");
    assert_eq!(user.len(), 1, "all or nothing");
}

#[test]
fn k_zero_and_empty_catalogue_are_errors() {
    let items = common::titles(10);
    let model = common::tiny_model(10);
    let user = UserHistory::new();
    let empty = common::catalog(&model, &[]);
    assert!(matches!(
        patchrec::recommend(&empty, &user, &QueryOptions::default()),
        Err(Error::InvalidArgument(_))
    ));
    let cat = common::catalog(&model, &items);
    let opts = QueryOptions::default().with_k(0);
    assert!(matches!(
        patchrec::recommend(&cat, &user, &opts),
        Err(Error::InvalidArgument(_))
    ));
    // An empty history is a valid (cold-start) query.
    assert_eq!(
        patchrec::recommend(&cat, &user, &QueryOptions::default())
            .unwrap()
            .items
            .len(),
        10
    );
}

#[test]
fn queries_see_a_consistent_catalogue_while_items_are_added() {
    let items = common::titles(48);
    let model = common::tiny_model(48);
    let cat = Arc::new(common::catalog(&model, &items[..8]));
    let mut user = UserHistory::new();
    cat.append(&mut user, &[at(items[0].0), at(items[1].0)])
        .unwrap();
    let user = Arc::new(user);
    std::thread::scope(|s| {
        let writer = {
            let cat = cat.clone();
            let items = &items;
            s.spawn(move || {
                for chunk in items[8..].chunks(4) {
                    cat.add_batch(chunk).unwrap();
                }
            })
        };
        for _ in 0..6 {
            let snap = cat.snapshot();
            // Each snapshot is internally consistent: every item indexed with its patch,
            // sizes only in whole registration batches.
            for item in snap.items() {
                let index = snap.live_index_of(item.id).unwrap();
                assert_eq!(
                    snap.patches_of(cat.model().llama(), &[index])
                        .unwrap()
                        .dims(),
                    &[1, 64][..]
                );
            }
            assert_eq!((snap.len() - 8) % 4, 0);
            let res = patchrec::recommend(&cat, &user, &QueryOptions::default().with_k(5)).unwrap();
            assert_eq!(res.items.len(), 5);
        }
        writer.join().unwrap();
    });
    assert_eq!(cat.len(), 48);
}
