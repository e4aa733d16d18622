//! Candidate scoring: every score equals the teacher-forced log-probability of that title
//! alone (1e-4) and `recommend`'s score of the same item; however the token tree is cut
//! into passes and chunks, the scores are the same; duplicates, unknown ids and the two
//! orders behave as documented.

mod common;

use patchrec::history::{Layout, LayoutConfig};
use patchrec::prompt::build_prompt;
use patchrec::{
    rank, rank_cached, recommend, Error, Interaction, PromptCache, QueryOptions, RankOptions,
    RankOrder, UnknownCandidates,
};

const LAYOUTS: [Layout; 4] = [
    Layout::Vanilla,
    Layout::PftI { m: 2 },
    Layout::PftS { l: 2 },
    Layout::StreamS { l: 3 },
];

fn options(layout: Layout) -> RankOptions {
    RankOptions::default().with_layout(LayoutConfig::new(layout, 100))
}

#[test]
fn scores_equal_teacher_forced_log_probabilities() {
    let items = common::titles(30);
    let model = common::tiny_model(30);
    let cat = common::catalog(&model, &items);
    let snap = cat.snapshot();
    let history: Vec<u64> = items[2..9].iter().map(|(id, _)| *id).collect();
    let user = common::user_with(&cat, &history);
    // Titles that share prefixes ("The Red ...") and ones that do not, in no order.
    let candidates: Vec<u64> = [17, 0, 8, 16, 24, 1, 9, 29, 3]
        .iter()
        .map(|&i| items[i].0)
        .collect();
    for layout in LAYOUTS {
        let ranked = rank(&cat, &user, &candidates, &options(layout)).unwrap();
        assert_eq!(ranked.items.len(), candidates.len(), "{layout}");
        let prompt = build_prompt(&model, &snap, &history, layout).unwrap();
        assert_eq!(ranked.prompt_len, prompt.len, "{layout}");
        for c in &ranked.items {
            let mut answer = snap.get(c.item_id).unwrap().tokens.clone();
            answer.push(model.special().answer_end);
            let want = common::teacher_forced(&model, &prompt.embeds, &answer);
            assert!(
                (c.score - want).abs() < 1e-4,
                "{layout} item {}: ranked {} vs teacher-forced {want}",
                c.item_id,
                c.score
            );
        }
        // Best first, and every node of the shared tree computed once.
        assert!(ranked.items.windows(2).all(|w| w[0].score >= w[1].score));
        assert!(ranked.passes >= 1 && ranked.nodes > 0);
    }
}

#[test]
fn scores_equal_recommends_scores_of_the_same_items() {
    let items = common::titles(30);
    let model = common::tiny_model(30);
    let cat = common::catalog(&model, &items);
    let user = common::user_with(&cat, &[items[4].0, items[11].0, items[5].0]);
    let query = QueryOptions::default()
        .with_k(8)
        .with_exact(true)
        .with_layout(LayoutConfig::new(Layout::PftI { m: 2 }, 100));
    let top = recommend(&cat, &user, &query).unwrap();
    let ids: Vec<u64> = top.items.iter().map(|r| r.item_id).collect();
    let ranked = rank(&cat, &user, &ids, &options(Layout::PftI { m: 2 })).unwrap();
    for (r, c) in top.items.iter().zip(&ranked.items) {
        assert_eq!(r.item_id, c.item_id);
        assert!((r.score - c.score).abs() < 1e-4, "{r:?} vs {c:?}");
    }
}

#[test]
fn passes_and_chunks_do_not_change_the_scores() {
    let items = common::titles(40);
    let model = common::tiny_model(40);
    let cat = common::catalog(&model, &items);
    let user = common::user_with(&cat, &[items[1].0, items[7].0, items[30].0, items[12].0]);
    let all: Vec<u64> = items.iter().map(|(id, _)| *id).collect();
    let whole = rank(&cat, &user, &all, &options(Layout::PftS { l: 2 })).unwrap();
    // One chunk: the tree's nodes in passes of PASS_ROWS.
    assert_eq!(
        whole.passes,
        whole.nodes.div_ceil(patchrec::rank::PASS_ROWS)
    );
    for (pass_rows, chunk_rows) in [(1, 1), (3, 5), (7, 64), (256, 16)] {
        let cut = rank(
            &cat,
            &user,
            &all,
            &options(Layout::PftS { l: 2 })
                .with_pass_rows(pass_rows)
                .with_chunk_rows(chunk_rows),
        )
        .unwrap();
        assert!(
            cut.passes > 1,
            "{pass_rows}/{chunk_rows}: {} passes",
            cut.passes
        );
        for (a, b) in whole.items.iter().zip(&cut.items) {
            assert_eq!(a.item_id, b.item_id, "{pass_rows}/{chunk_rows}");
            assert!((a.score - b.score).abs() < 1e-4, "{pass_rows}/{chunk_rows}");
        }
    }
    // Chunks recompute the prefixes they share, never fewer nodes than one tree.
    let chunked = rank(
        &cat,
        &user,
        &all,
        &options(Layout::PftS { l: 2 }).with_chunk_rows(5),
    )
    .unwrap();
    assert!(chunked.nodes >= whole.nodes);
}

#[test]
fn duplicates_unknown_ids_and_orders_are_as_documented() {
    let items = common::titles(20);
    let model = common::tiny_model(20);
    let cat = common::catalog(&model, &items);
    let user = common::user_with(&cat, &[items[3].0, items[6].0]);
    let (a, b, c) = (items[5].0, items[9].0, items[14].0);
    let input = RankOptions::default().with_order(RankOrder::Input);
    // A duplicate is scored once and kept at its first occurrence.
    let ranked = rank(&cat, &user, &[b, a, b, c, a], &input).unwrap();
    let ids: Vec<u64> = ranked.items.iter().map(|c| c.item_id).collect();
    assert_eq!(ids, vec![b, a, c]);
    let by_score = rank(&cat, &user, &[b, a, c], &RankOptions::default()).unwrap();
    let mut sorted = ranked.items.clone();
    sorted.sort_by(|x, y| y.score.total_cmp(&x.score));
    assert_eq!(by_score.items, sorted);

    // Unknown ids fail the call by default, naming the id; skipped, they are listed.
    match rank(&cat, &user, &[a, 999_999, b], &RankOptions::default()) {
        Err(Error::UnknownItem(999_999)) => {}
        other => panic!("expected UnknownItem(999999), got {other:?}"),
    }
    let skipped = rank(
        &cat,
        &user,
        &[a, 999_999, b, 999_999],
        &RankOptions::default()
            .with_unknown(UnknownCandidates::Skip)
            .with_order(RankOrder::Input),
    )
    .unwrap();
    assert_eq!(skipped.unknown, vec![999_999]);
    for (got, want) in skipped
        .items
        .iter()
        .zip(by_score_of(&by_score.items, &[a, b]))
    {
        assert_eq!(got.item_id, want.item_id);
        assert!((got.score - want.score).abs() < 1e-4, "{got:?} vs {want:?}");
    }
    assert_eq!(skipped.items.len(), 2);

    // No candidates: an empty answer without running the model.
    let empty = rank(&cat, &user, &[], &RankOptions::default()).unwrap();
    assert!(empty.items.is_empty() && empty.passes == 0);
    // Bounds of zero are refused, naming the option.
    let err = rank(&cat, &user, &[a], &RankOptions::default().with_pass_rows(0)).unwrap_err();
    assert!(err.to_string().contains("pass_rows"), "{err}");
}

/// The entries of `scored` for `ids`, in `ids`' order.
fn by_score_of(scored: &[patchrec::Candidate], ids: &[u64]) -> Vec<patchrec::Candidate> {
    ids.iter()
        .map(|id| *scored.iter().find(|c| c.item_id == *id).unwrap())
        .collect()
}

#[test]
fn the_users_prompt_cache_gives_the_same_scores() {
    let items = common::titles(20);
    let model = common::tiny_model(20);
    let cat = common::catalog(&model, &items);
    let mut user = common::user_with(&cat, &[items[3].0, items[6].0, items[2].0]);
    let candidates: Vec<u64> = items[8..16].iter().map(|(id, _)| *id).collect();
    let opts = options(Layout::StreamS { l: 2 });
    let mut cache = PromptCache::new();
    rank_cached(&cat, &user, &mut cache, &candidates, &opts).unwrap();
    cat.append(
        &mut user,
        &[Interaction {
            item_id: items[11].0,
            timestamp: None,
        }],
    )
    .unwrap();
    let cached = rank_cached(&cat, &user, &mut cache, &candidates, &opts).unwrap();
    assert!(cache.last_reuse().reused > 0, "the prompt's KV was reused");
    let fresh = rank(&cat, &user, &candidates, &opts).unwrap();
    for (a, b) in fresh.items.iter().zip(&cached.items) {
        assert_eq!(a.item_id, b.item_id);
        assert!((a.score - b.score).abs() < 1e-4);
    }
}
