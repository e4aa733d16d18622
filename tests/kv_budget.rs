//! The catalogue's budget for users' prompt KV: answers are the same with and without
//! eviction, the bytes held never exceed the budget, and hits, misses and evictions are
//! counted.

mod common;

use patchrec::history::{Layout, LayoutConfig};
use patchrec::{
    recommend_cached, Catalog, Interaction, PromptCache, QueryOptions, QueryResult, UserHistory,
};

const USERS: usize = 4;
const ROUNDS: usize = 3;

/// Each round, every user appends an item and asks twice (the second time from its cache
/// unless evicted meanwhile); the answers in order, and the largest bytes held seen.
fn serve(cat: &Catalog, items: &[(u64, String)], opts: &QueryOptions) -> (Vec<QueryResult>, usize) {
    let mut users: Vec<(UserHistory, PromptCache)> = (0..USERS)
        .map(|u| {
            let mut user = UserHistory::new();
            let history: Vec<Interaction> = (0..5 + u)
                .map(|i| Interaction {
                    item_id: items[(u * 5 + i * 3) % items.len()].0,
                    timestamp: None,
                })
                .collect();
            cat.append(&mut user, &history).unwrap();
            (user, PromptCache::new())
        })
        .collect();
    let (mut answers, mut most_held) = (Vec::new(), 0);
    for round in 0..ROUNDS {
        for (u, (user, cache)) in users.iter_mut().enumerate() {
            let next = Interaction {
                item_id: items[(round * 7 + u * 11) % items.len()].0,
                timestamp: None,
            };
            cat.append(user, &[next]).unwrap();
            for _ in 0..2 {
                answers.push(recommend_cached(cat, user, cache, opts).unwrap());
                if let Some(stats) = cat.kv_stats() {
                    assert!(stats.bytes_held <= stats.capacity, "{stats:?}");
                    most_held = most_held.max(stats.bytes_held);
                }
            }
        }
    }
    (answers, most_held)
}

#[test]
fn answers_are_the_same_with_and_without_eviction() {
    let items = common::titles(30);
    let model = common::tiny_model(30);
    let cat = common::catalog(&model, &items);
    let opts = QueryOptions::default()
        .with_k(8)
        .with_layout(LayoutConfig::new(Layout::StreamS { l: 3 }, 100));
    assert!(cat.kv_stats().is_none(), "no budget unless set");
    let (free, _) = serve(&cat, &items, &opts);

    // A budget that holds about one and a half users' KV.
    let mut probe = PromptCache::new();
    let mut user = UserHistory::new();
    cat.append(
        &mut user,
        &(0..9)
            .map(|i| Interaction {
                item_id: items[i].0,
                timestamp: None,
            })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    recommend_cached(&cat, &user, &mut probe, &opts).unwrap();
    let budget = probe.memory_bytes() * 3 / 2;
    drop(probe);
    cat.set_kv_budget(Some(budget));
    let (bounded, most_held) = serve(&cat, &items, &opts);

    assert_eq!(free.len(), bounded.len());
    for (i, (a, b)) in free.iter().zip(&bounded).enumerate() {
        let ids = |r: &QueryResult| r.items.iter().map(|x| x.item_id).collect::<Vec<_>>();
        assert_eq!(ids(a), ids(b), "answer {i}");
        for (x, y) in a.items.iter().zip(&b.items) {
            assert!(
                (x.score - y.score).abs() < 1e-4,
                "answer {i}: {x:?} vs {y:?}"
            );
        }
    }
    let stats = cat.kv_stats().unwrap();
    assert!(most_held > 0 && most_held <= budget);
    // Every first query of a round found its KV evicted by the other users' (four users
    // round-robin through room for one); every second query found it.
    assert_eq!(stats.misses, (USERS * ROUNDS) as u64, "{stats:?}");
    assert_eq!(stats.hits, (USERS * ROUNDS) as u64, "{stats:?}");
    assert!(stats.evictions >= (USERS * ROUNDS - 1) as u64, "{stats:?}");
    // The users' caches were dropped: nothing is charged any more.
    assert_eq!((stats.bytes_held, stats.users_held), (0, 0), "{stats:?}");

    // Lowering the budget evicts at once.
    let mut cache = PromptCache::new();
    recommend_cached(&cat, &user, &mut cache, &opts).unwrap();
    assert!(cat.kv_stats().unwrap().bytes_held > 0);
    cat.set_kv_budget(Some(0));
    assert_eq!(cat.kv_stats().unwrap().bytes_held, 0);
    assert_eq!(cache.memory_bytes(), 0, "evicted");
    recommend_cached(&cat, &user, &mut cache, &opts).unwrap();
    assert_eq!(
        cache.memory_bytes(),
        0,
        "a KV larger than the budget is not kept"
    );
    cat.set_kv_budget(None);
    assert!(cat.kv_stats().is_none());
}
