//! The serving benchmark runs end to end and reports consistent shapes (no timing is
//! asserted: speed is measured by `patchrec bench`, not by tests).

// The library's test helpers (a tiny model, a catalogue of numbered titles).
#[path = "../../tests/common/mod.rs"]
mod common;

use patchrec::history::Layout;
use patchrec_cli::bench::{run_serving_bench, BenchOptions};

#[test]
fn the_serving_benchmark_reports_every_layout_and_length() {
    let items = common::titles(20);
    let model = common::tiny_model(20);
    let cat = common::catalog(&model, &items);
    let opts = BenchOptions {
        layouts: vec![
            Layout::Vanilla,
            Layout::PftI { m: 2 },
            Layout::StreamS { l: 2 },
        ],
        history_lengths: vec![3, 8],
        users: 3,
        k: 5,
        beam_width: 5,
        seed: 1,
        callers: 2,
        exact: false,
        batched: false,
        session_gap: None,
        lookahead: patchrec::decode::DEFAULT_LOOKAHEAD,
        prune: true,
    };
    let cat = std::sync::Arc::new(cat);
    let report = run_serving_bench(&cat, &opts).unwrap();
    assert_eq!(report.rows.len(), 6);
    assert!(report.matmul_gflops > 0.0);
    for r in &report.rows {
        assert!(
            r.total.p50_ms > 0.0 && r.total.p95_ms >= r.total.p50_ms,
            "{r:?}"
        );
        assert!(r.prefill.p50_ms > 0.0 && r.decode_steps >= 1.0, "{r:?}");
        assert!(r.compression_ratio >= 1.0);
        assert!(r.append_query.p50_ms > 0.0 && r.queries_per_second > 0.0);
        // After an append the cache keeps at least the template's head.
        assert!(r.append_prefilled < r.prompt_positions, "{r:?}");
    }
    assert_eq!(report.callers, 2);
    let (vanilla8, pfti8, stream8) = (&report.rows[3], &report.rows[4], &report.rows[5]);
    assert_eq!((vanilla8.history, pfti8.history), (8, 8));
    assert!(pfti8.prompt_positions < vanilla8.prompt_positions);
    assert!(pfti8.compression_ratio > 1.5);
    assert!(report.markdown().contains("| pft-i:2 | 8 |"));
    // Stream-aligned sessions: the append re-prefills far less than the whole prompt.
    assert!(
        stream8.append_prefilled + 4.0 < stream8.prompt_positions,
        "{stream8:?}"
    );
}

#[test]
fn the_batched_benchmark_runs_concurrent_callers_through_the_worker() {
    let items = common::titles(20);
    let model = common::tiny_model(20);
    let cat = std::sync::Arc::new(common::catalog(&model, &items));
    let opts = BenchOptions {
        layouts: vec![Layout::StreamS { l: 2 }],
        history_lengths: vec![6],
        users: 4,
        k: 5,
        beam_width: 5,
        seed: 1,
        callers: 2,
        exact: false,
        batched: true,
        session_gap: None,
        lookahead: patchrec::decode::DEFAULT_LOOKAHEAD,
        prune: true,
    };
    let report = run_serving_bench(&cat, &opts).unwrap();
    let r = &report.rows[0];
    assert!(r.total.p50_ms > 0.0 && r.queries_per_second > 0.0, "{r:?}");
    assert!(r.append_prefilled < r.prompt_positions, "{r:?}");
    assert!(report.markdown().contains("| stream-s:2 | 6 |"));
}

#[test]
fn a_session_gap_applies_to_the_stream_aligned_rows_only() {
    let items = common::titles(20);
    let model = common::tiny_model(20);
    let cat = std::sync::Arc::new(common::catalog(&model, &items));
    let run = |session_gap| {
        let opts = BenchOptions {
            layouts: vec![Layout::StreamS { l: 4 }, Layout::PftS { l: 4 }],
            history_lengths: vec![24],
            users: 2,
            k: 3,
            beam_width: 3,
            seed: 7,
            callers: 1,
            exact: false,
            batched: false,
            session_gap,
            lookahead: patchrec::decode::DEFAULT_LOOKAHEAD,
            prune: true,
        };
        run_serving_bench(&cat, &opts).unwrap()
    };
    let (counted, visits) = (run(None), run(Some(3600)));
    assert_eq!(visits.rows[0].layout, "stream-s:4 gap 3600 s");
    assert_eq!(visits.rows[1].layout, "pft-s:4");
    // The synthetic visits (1 to 10 items, a day apart) close sessions early: other
    // prompts for the same users, the tail-aligned layout unchanged.
    assert_ne!(
        visits.rows[0].prompt_positions,
        counted.rows[0].prompt_positions
    );
    assert_eq!(
        visits.rows[1].prompt_positions,
        counted.rows[1].prompt_positions
    );
    assert!(visits.rows[0].append_prefilled < visits.rows[0].prompt_positions);
    assert!(visits.markdown().contains("| stream-s:4 gap 3600 s | 24 |"));
}

#[test]
fn the_rank_benchmark_reports_every_candidate_count() {
    let items = common::titles(30);
    let model = common::tiny_model(30);
    let cat = common::catalog(&model, &items);
    let opts = patchrec_cli::bench::RankBenchOptions {
        layout: Layout::PftS { l: 2 },
        history: 6,
        candidates: vec![1, 12, 30],
        users: 2,
        k: 5,
        alone: 3,
        seed: 1,
    };
    let report = patchrec_cli::bench::run_rank_bench(&cat, &opts).unwrap();
    let counts: Vec<usize> = report.rows.iter().map(|r| r.candidates).collect();
    assert_eq!(counts, vec![1, 12, 30]);
    // More candidates, a bigger tree.
    assert!(report.rows[0].nodes < report.rows[2].nodes, "{report:?}");
    assert!(report.markdown().lines().count() >= 5);
    // More candidates than the catalogue holds is an error naming the count.
    let err = patchrec_cli::bench::run_rank_bench(
        &cat,
        &patchrec_cli::bench::RankBenchOptions {
            candidates: vec![31],
            ..opts
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("31 candidates"), "{err}");
}

#[test]
fn a_synthetic_catalogue_keeps_the_base_and_adds_distinct_titles() {
    let base = common::titles(20);
    let grown = patchrec_cli::bench::synthetic_catalogue(&base, 500, 7);
    assert_eq!(grown.len(), 500);
    assert_eq!(&grown[..20], &base[..]);
    let ids: std::collections::HashSet<u64> = grown.iter().map(|(id, _)| *id).collect();
    let titles: std::collections::HashSet<&str> = grown.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!((ids.len(), titles.len()), (500, 500));
    assert_eq!(
        patchrec_cli::bench::synthetic_catalogue(&base, 500, 7),
        grown
    );
}

#[test]
fn the_users_benchmark_keeps_the_budget_and_counts_evictions() {
    let items = common::titles(20);
    let model = common::tiny_model(20);
    let cat = common::catalog(&model, &items);
    let opts = patchrec_cli::bench::UsersBenchOptions {
        layout: Layout::StreamS { l: 3 },
        users: 10,
        history: 6,
        queries: 30,
        budget_fraction: 0.2,
        k: 5,
        seed: 3,
    };
    let report = patchrec_cli::bench::run_users_bench(&cat, &opts).unwrap();
    let modes: Vec<&str> = report.rows.iter().map(|r| r.mode.as_str()).collect();
    assert_eq!(modes, vec!["budget", "unbounded"]);
    let bounded = report.rows[0].stats.unwrap();
    assert!(
        report.rows[0].most_bytes_held <= bounded.capacity,
        "{report:?}"
    );
    assert!(bounded.evictions > 0 && bounded.misses > 0, "{bounded:?}");
    assert_eq!(
        bounded.hits + bounded.misses,
        10 + 30,
        "warm-up and timed queries"
    );
    assert!(report.rows[1].stats.is_none());
    assert!(report.rows[1].most_bytes_held > report.rows[0].most_bytes_held);
    assert!(cat.kv_stats().is_none(), "the bench lifts its budget");
    let err = patchrec_cli::bench::run_users_bench(
        &cat,
        &patchrec_cli::bench::UsersBenchOptions {
            budget_fraction: 0.0,
            ..opts
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("budget fraction 0"), "{err}");
}

#[test]
fn the_catalogue_benchmark_grows_the_catalogue_to_each_size() {
    let items = common::titles(20);
    let model = common::tiny_model(20);
    let opts = patchrec_cli::bench::CatalogueBenchOptions {
        sizes: vec![20, 60, 200],
        layout: Layout::PftI { m: 2 },
        history: 5,
        users: 2,
        k: 5,
        exact_max: 60,
        batch: 25,
        patches: patchrec::PatchStorage::OnDemand,
        seed: 5,
    };
    let report = patchrec_cli::bench::run_catalogue_bench(&model, &items, &opts).unwrap();
    let sizes: Vec<usize> = report.rows.iter().map(|r| r.items).collect();
    assert_eq!(sizes, vec![20, 60, 200]);
    assert_eq!(report.patches, "on-demand");
    assert!(report.rows[0].trie_nodes < report.rows[2].trie_nodes);
    assert!(report.rows.iter().all(|r| r.trie_bytes_per_item > 0.0));
    let exact: Vec<bool> = report.rows.iter().map(|r| r.exact.is_some()).collect();
    assert_eq!(exact, vec![true, true, false]);
    let err = patchrec_cli::bench::run_catalogue_bench(
        &model,
        &items,
        &patchrec_cli::bench::CatalogueBenchOptions {
            sizes: vec![10],
            ..opts
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("size 10"), "{err}");
}

#[test]
fn the_filters_benchmark_answers_within_each_list() {
    let items = common::titles(40);
    let model = common::tiny_model(40);
    let cat = common::catalog(&model, &items);
    let opts = patchrec_cli::bench::FiltersBenchOptions {
        layout: Layout::PftI { m: 2 },
        history: 5,
        users: 2,
        k: 5,
        fractions: vec![0.05, 0.5, 0.95],
        seed: 9,
    };
    let report = patchrec_cli::bench::run_filters_bench(&cat, &opts).unwrap();
    let rows: Vec<(&str, f64)> = report
        .rows
        .iter()
        .map(|r| (r.filter.as_str(), r.answered))
        .collect();
    // 5 % of 40 allows 2 items; 95 % denied leaves 2.
    assert_eq!(rows[0], ("none", 5.0));
    assert_eq!(rows[1], ("allow", 2.0));
    assert_eq!(rows[6], ("deny", 2.0));
    let err = patchrec_cli::bench::run_filters_bench(
        &cat,
        &patchrec_cli::bench::FiltersBenchOptions {
            fractions: vec![1.5],
            ..opts
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("1.5"), "{err}");
}
