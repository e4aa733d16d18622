//! The command line refuses bad values in one line each: a clear message naming what was
//! wrong, no backtrace.

use std::process::Command;

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_patchrec"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_command_line_refuses_nonsense_values_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let items = tmp.path().join("items.tsv");
    std::fs::write(&items, "1\tHeat (1995)\n2\tFargo (1996)\n").unwrap();
    let items = items.to_str().unwrap();
    let out = tmp.path().join("x");
    let out = out.to_str().unwrap();
    let bad_gguf = tmp.path().join("bad.gguf");
    std::fs::write(&bad_gguf, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    for (args, needle) in [
        (
            vec!["init", "--items", items, "--out", out, "--vocab-size", "0"],
            "vocab_size",
        ),
        (
            vec!["init", "--items", items, "--out", out, "--hidden", "0"],
            "positive",
        ),
        (
            vec!["eval", "--popularity", "--data", out, "--max-samples", "0"],
            "at least 1",
        ),
        (
            vec![
                "bench",
                "--checkpoint",
                out,
                "--items",
                items,
                "--users",
                "0",
            ],
            "at least 1",
        ),
        (
            vec![
                "bench",
                "--checkpoint",
                out,
                "--items",
                items,
                "--lengths",
                "10,0",
            ],
            "at least 1",
        ),
        (
            vec!["synth", "--items", items, "--out", out, "--jump", "nan"],
            "probability",
        ),
        (
            vec!["synth", "--items", items, "--out", out, "--jump", "1.5"],
            "probability",
        ),
        (
            vec![
                "recommend",
                "--checkpoint",
                out,
                "--items",
                items,
                "--k",
                "0",
            ],
            "at least 1",
        ),
        (
            vec![
                "convert",
                "--from-gguf",
                bad_gguf.to_str().unwrap(),
                "--out",
                out,
            ],
            "bad.gguf",
        ),
    ] {
        let (ok, stderr) = cli(&args);
        assert!(!ok, "{args:?} exited 0");
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} not in {stderr}"
        );
        assert!(
            !stderr.contains("backtrace") && !stderr.contains("stack backtrace"),
            "{args:?} printed a backtrace:\n{stderr}"
        );
        let lines = stderr.trim().lines().count();
        assert!(lines <= 4, "{args:?}: {lines} lines:\n{stderr}");
    }
}

/// `init --like`: random weights in another checkpoint's shapes, with its tokenizer and
/// prompt, the shapes overridden and the vocabulary padded where asked.
#[test]
fn init_like_takes_a_checkpoints_tokenizer_and_overrides_its_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let items = tmp.path().join("items.tsv");
    std::fs::write(&items, "1\tHeat (1995)\n2\tFargo (1996)\n3\tAlien (1979)\n").unwrap();
    let dir = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let (base, like) = (dir("base"), dir("like"));
    let items = items.to_str().unwrap();
    let args = [
        "init", "--items", items, "--out", &base, "--hidden", "32", "--layers", "1",
    ];
    assert!(cli(&args).0);
    let args = [
        "init",
        "--like",
        &base,
        "--out",
        &like,
        "--hidden",
        "48",
        "--heads",
        "6",
        "--kv-heads",
        "2",
        "--layers",
        "3",
        "--vocab-size",
        "4000",
    ];
    let (ok, err) = cli(&args);
    assert!(ok, "{err}");
    let config = |d: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(format!("{d}/config.json")).unwrap()).unwrap()
    };
    let c = config(&like);
    assert_eq!(
        (
            &c["hidden_size"],
            &c["num_attention_heads"],
            &c["num_key_value_heads"]
        ),
        (&48.into(), &6.into(), &2.into())
    );
    assert_eq!(
        (&c["num_hidden_layers"], &c["vocab_size"]),
        (&3.into(), &4000.into())
    );
    assert_eq!(c["intermediate_size"], config(&base)["intermediate_size"]);
    let read = |d: &str, f: &str| std::fs::read_to_string(format!("{d}/{f}")).unwrap();
    assert_eq!(read(&like, "tokenizer.json"), read(&base, "tokenizer.json"));
    // The loaded model answers through the command line.
    let (ok, err) = cli(&[
        "recommend",
        "--checkpoint",
        &like,
        "--items",
        items,
        "--history",
        "1,2",
    ]);
    assert!(ok, "{err}");
    // A vocabulary smaller than the tokenizer's is refused by name.
    let args = [
        "init",
        "--like",
        &base,
        "--out",
        &dir("small"),
        "--vocab-size",
        "10",
    ];
    let (ok, err) = cli(&args);
    assert!(!ok && err.contains("--vocab-size 10"), "{err}");
}
