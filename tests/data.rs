//! Dataset reading and the paper's sample rule.

use std::path::{Path, PathBuf};

use patchrec::data::{samples, Dataset, SampleOptions, Split};

mod common;

fn write(dir: &Path, items: &str, seqs: &str) {
    std::fs::write(dir.join("items.tsv"), items).unwrap();
    std::fs::write(dir.join("sequences.jsonl"), seqs).unwrap();
    std::fs::write(
        dir.join("prompt.txt"),
        "You recommend.\nA user has watched [HISTORY_SEQUENCE]. Next?\n",
    )
    .unwrap();
}

const ITEMS: &str = "0\tA\n1\tB\n2\tC\n3\tD\n4\tE\n5\tF\n6\tG\n";

#[test]
fn samples_follow_the_paper_rule_on_a_synthetic_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let seqs = [
        // 7 items: train targets 3..=4 (max(3, 0)), valid 5, test 6.
        r#"{"user":0,"items":[0,1,2,3,4,5,6],"train":[0,4],"valid":[5,5],"test":[6,6]}"#,
        // Only 3 items: no samples at all.
        r#"{"user":1,"items":[0,1,2],"train":[0,2],"valid":null,"test":null}"#,
        // 5 items, train [1, 4] -> targets 3, 4.
        r#"{"user":2,"items":[6,5,4,3,2],"train":[1,4],"valid":null,"test":null}"#,
    ]
    .join("\n");
    write(dir.path(), ITEMS, &seqs);
    let data = Dataset::open(dir.path()).unwrap();
    let opts = SampleOptions::default();
    let train = samples(&data, Split::Train, &opts);
    assert_eq!(train.len(), 4);
    assert_eq!(train[0].history, vec![0, 1, 2]);
    assert_eq!(train[0].target, 3);
    assert_eq!(train[3].history, vec![6, 5, 4, 3]);
    assert_eq!(train[3].target, 2);
    assert_eq!(samples(&data, Split::Valid, &opts).len(), 1);
    let test = samples(&data, Split::Test, &opts);
    assert_eq!(test[0].history, vec![0, 1, 2, 3, 4, 5]);
    // K truncates to the latest K items before the target.
    let k2 = opts.with_max_history(2);
    assert_eq!(samples(&data, Split::Test, &k2)[0].history, vec![4, 5]);
    // Subsampling is seeded and keeps order.
    let sub = opts.with_max_samples(Some(2));
    let a = samples(&data, Split::Train, &sub);
    assert_eq!(a, samples(&data, Split::Train, &sub));
    assert_eq!(a.len(), 2);
}

#[test]
fn bad_data_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let ok = r#"{"user":0,"items":[0,1,2,3],"train":[0,3],"valid":null,"test":null}"#;
    for (items, seqs, needle) in [
        ("0\tA\n1\n", ok, "items.tsv: line 2"),
        (
            "0\tA\n1\t \n",
            ok,
            "line 2: item 1: title \"\" has no visible characters",
        ),
        ("0\tA\n1\t\u{200B}\n", ok, "line 2: item 1: title"),
        (
            ITEMS,
            &format!("{ok}\n{{\"user\":1,\"items\":[9]}}") as &str,
            "line 2: unknown item id 9",
        ),
        (ITEMS, "{\"user\":1,", "sequences.jsonl: line 1: malformed"),
        (
            ITEMS,
            r#"{"user":0,"items":[0,1],"train":[0,5],"valid":null,"test":null}"#,
            "outside",
        ),
    ] {
        write(dir.path(), items, seqs);
        let e = Dataset::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains(needle), "{e:?} should contain {needle:?}");
    }
}

/// A benchmark dataset: under `PATCHREC_DATA` when set, else `../shared/data`.
fn shared(name: &str) -> Option<PathBuf> {
    let root = std::env::var_os("PATCHREC_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let data = common::external_fixture(
        root.join(name).join("sequences.jsonl"),
        "the benchmark datasets live in ../shared/data (or set PATCHREC_DATA)",
    )?;
    data.parent().map(PathBuf::from)
}

#[test]
fn ml_100k_sample_counts_match_the_data_readme() {
    let Some(dir) = shared("ml-100k") else { return };
    let data = Dataset::open(&dir).unwrap();
    assert_eq!(data.items.len(), 1682);
    assert_eq!(data.users.len(), 682);
    let o = SampleOptions::default();
    assert_eq!(samples(&data, Split::Train, &o).len(), 47_749);
    assert_eq!(samples(&data, Split::Valid, &o).len(), 1_005);
    assert_eq!(samples(&data, Split::Test, &o).len(), 1_024);
}

#[test]
fn ml_1m_valid_and_test_counts_match_the_data_readme() {
    let Some(dir) = shared("ml-1m") else { return };
    let data = Dataset::open(&dir).unwrap();
    assert_eq!(data.items.len(), 3883);
    assert_eq!(data.users.len(), 6038);
    let o = SampleOptions::default();
    assert_eq!(samples(&data, Split::Valid, &o).len(), 11_492);
    assert_eq!(samples(&data, Split::Test, &o).len(), 11_494);
}
