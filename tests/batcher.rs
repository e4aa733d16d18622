//! The batching worker: queries decoded together rank exactly as when each runs alone
//! (1e-4), whether they come as one submission or from concurrent callers, and one
//! submission really shares its steps.

mod common;

use std::sync::Arc;

use patchrec::history::{Layout, LayoutConfig};
use patchrec::serve::{Batcher, BatcherConfig};
use patchrec::{recommend, Interaction, PromptCache, QueryOptions, QueryResult, UserHistory};

fn assert_same(alone: &QueryResult, batched: &QueryResult, what: &str) {
    let ids = |r: &QueryResult| r.items.iter().map(|i| i.item_id).collect::<Vec<_>>();
    assert_eq!(ids(alone), ids(batched), "{what}");
    for (a, b) in alone.items.iter().zip(&batched.items) {
        assert!((a.score - b.score).abs() < 1e-4, "{what}: {a:?} vs {b:?}");
    }
}

#[test]
fn batched_queries_rank_as_single_ones() {
    let items = common::titles(40);
    let model = common::tiny_model(40);
    let cat = Arc::new(common::catalog(&model, &items));
    let batcher = Batcher::new(cat.clone(), BatcherConfig::default()).unwrap();
    let layouts = [
        Layout::Vanilla,
        Layout::PftI { m: 3 },
        Layout::PftS { l: 2 },
        Layout::StreamS { l: 3 },
    ];
    let queries: Vec<(UserHistory, QueryOptions)> = (0..8)
        .map(|u| {
            let mut user = UserHistory::new();
            let history: Vec<Interaction> = (0..4 + 3 * u)
                .map(|i| Interaction {
                    item_id: items[(u * 7 + i * 3) % 40].0,
                    timestamp: None,
                })
                .collect();
            cat.append(&mut user, &history).unwrap();
            let opts = QueryOptions::default()
                .with_k(6)
                .with_beam_width(4 + u)
                .with_layout(LayoutConfig::new(layouts[u % 4], 100))
                .with_exclude_history(u % 3 == 0)
                .with_exact(u == 5);
            (user, opts)
        })
        .collect();
    let alone: Vec<QueryResult> = queries
        .iter()
        .map(|(u, o)| recommend(&cat, u, o).unwrap())
        .collect();
    // One submission: all eight share the first step, whatever the timing.
    let together = batcher.recommend_many(&queries.iter().map(|(u, o)| (u, o)).collect::<Vec<_>>());
    for (i, (a, b)) in alone.iter().zip(together).enumerate() {
        assert_same(a, &b.unwrap(), &format!("query {i}, submitted together"));
    }
    let stats = batcher.stats();
    assert_eq!(stats.widest_batch, queries.len(), "{stats:?}");
    assert!(stats.query_steps > stats.steps, "{stats:?}");

    // Concurrent callers: batched or not, as they happen to meet, with the same answers.
    let concurrent: Vec<QueryResult> = std::thread::scope(|s| {
        let handles: Vec<_> = queries
            .iter()
            .map(|(u, o)| s.spawn(|| batcher.recommend(u, o).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, (a, b)) in alone.iter().zip(&concurrent).enumerate() {
        assert_same(a, b, &format!("query {i}, concurrent"));
    }

    // With a user's prompt cache, through the worker, after an append.
    let (user, opts) = &queries[3];
    let mut cache = PromptCache::new();
    batcher.recommend_cached(user, &mut cache, opts).unwrap();
    let mut grown = user.clone();
    cat.append(
        &mut grown,
        &[Interaction {
            item_id: items[1].0,
            timestamp: None,
        }],
    )
    .unwrap();
    let cached = batcher.recommend_cached(&grown, &mut cache, opts).unwrap();
    assert!(cache.last_reuse().reused > 0);
    assert_same(&recommend(&cat, &grown, opts).unwrap(), &cached, "cached");
}

#[test]
fn errors_come_back_and_the_worker_shuts_down() {
    let items = common::titles(10);
    let model = common::tiny_model(10);
    let cat = Arc::new(common::catalog(&model, &items));
    let batcher = Batcher::new(cat.clone(), BatcherConfig::default()).unwrap();
    let user = UserHistory::new();
    let bad = QueryOptions::default().with_k(0);
    assert!(batcher.recommend(&user, &bad).is_err());
    assert!(batcher.recommend(&user, &QueryOptions::default()).is_ok());
    // In one submission, the bad query fails alone.
    let good = QueryOptions::default();
    let answers = batcher.recommend_many(&[(&user, &good), (&user, &bad), (&user, &good)]);
    assert!(answers[0].is_ok() && answers[1].is_err() && answers[2].is_ok());
    assert!(batcher.recommend_many(&[]).is_empty());
    assert!(Batcher::new(cat, BatcherConfig::default().with_max_batch(0)).is_err());
    drop(batcher); // joins the idle worker
}

#[test]
fn a_recommender_answers_alike_with_batching_on_and_off() {
    let items = common::titles(30);
    let model = common::tiny_model(30);
    let cat = Arc::new(common::catalog(&model, &items));
    let service = patchrec::Recommender::new(cat.clone());
    let user = cat
        .history_of(&items.iter().take(9).map(|(id, _)| *id).collect::<Vec<_>>())
        .unwrap();
    let opts = QueryOptions::default().with_k(5);
    let alone = recommend(&cat, &user, &opts).unwrap();
    assert!(service.batcher().is_none());
    assert_same(&alone, &service.recommend(&user, &opts).unwrap(), "off");

    service
        .set_batching(Some(BatcherConfig::default().with_max_batch(4)))
        .unwrap();
    let batcher = service.batcher().expect("batching is on");
    let mut cache = PromptCache::new();
    let on = service.recommend_cached(&user, &mut cache, &opts).unwrap();
    assert_same(&alone, &on, "on");
    assert!(
        batcher.stats().steps > 0,
        "the query went through the worker"
    );

    // A bad configuration fails and leaves the worker in force.
    let bad = BatcherConfig::default().with_max_wait(std::time::Duration::from_secs(5));
    let err = service.set_batching(Some(bad)).unwrap_err();
    assert!(err.to_string().contains("max_wait"), "{err}");
    assert!(Arc::ptr_eq(&service.batcher().unwrap(), &batcher));

    service.set_batching(None).unwrap();
    assert!(service.batcher().is_none());
    assert_same(
        &alone,
        &service.recommend(&user, &opts).unwrap(),
        "off again",
    );
}
