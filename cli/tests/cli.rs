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
