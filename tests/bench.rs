//! The serving benchmark runs end to end and reports consistent shapes (no timing is
//! asserted: speed is measured by `patchrec bench`, not by tests).

mod common;

use patchrec::bench::{run_serving_bench, BenchOptions};
use patchrec::history::Layout;

#[test]
fn the_serving_benchmark_reports_every_layout_and_length() {
    let items = common::titles(20);
    let model = common::tiny_model(20);
    let cat = common::catalog(&model, &items);
    let opts = BenchOptions {
        layouts: vec![Layout::Vanilla, Layout::PftI { m: 2 }],
        history_lengths: vec![3, 8],
        users: 3,
        k: 5,
        beam_width: 5,
        seed: 1,
    };
    let report = run_serving_bench(&cat, &opts).unwrap();
    assert_eq!(report.rows.len(), 4);
    assert!(report.matmul_gflops > 0.0);
    for r in &report.rows {
        assert!(
            r.total.p50_ms > 0.0 && r.total.p95_ms >= r.total.p50_ms,
            "{r:?}"
        );
        assert!(r.prefill.p50_ms > 0.0 && r.decode_steps >= 1.0, "{r:?}");
        assert!(r.compression_ratio >= 1.0);
    }
    let (vanilla8, pfti8) = (&report.rows[2], &report.rows[3]);
    assert_eq!((vanilla8.history, pfti8.history), (8, 8));
    assert!(pfti8.prompt_positions < vanilla8.prompt_positions);
    assert!(pfti8.compression_ratio > 1.5);
    assert!(report.markdown().contains("| pft-i:2 | 8 |"));
}
