//! A GGUF file converted to a model (`patchrec::gguf::convert`): candle's header reader,
//! then our metadata -> `LlamaConfig`, tensor reading and un-permuting, and the rebuilt
//! tokenizer. The bytes are written to a file because `convert` reads a path (under
//! /dev/shm, so it stays in memory).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

/// This process's scratch folder: `$PATCHREC_FUZZ_DIR` (scripts/fuzz.sh makes one and
/// removes it), else one under /dev/shm.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("PATCHREC_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/dev/shm"));
        let dir = base.join(format!("gguf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let path = scratch().join("model.gguf");
    std::fs::write(&path, data).expect("write the input");
    let _ = patchrec::gguf::convert(&path);
});
