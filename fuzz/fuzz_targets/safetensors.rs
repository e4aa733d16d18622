//! A checkpoint's `model.safetensors` through `TensorStore`: `open` memory-maps it and
//! reads the header (candle and the safetensors crate), then `get` asks for every tensor
//! the header lists, with its own shape (copied out, converted to f32, checked for
//! non-finite values) and with a wrong one. The bytes are written to a file because the
//! store maps a checkpoint folder (under /dev/shm, so it stays in memory).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use patchrec::model::weights::TensorStore;

/// This process's checkpoint folder: under `$PATCHREC_FUZZ_DIR` (scripts/fuzz.sh makes
/// one and removes it), else under /dev/shm.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = std::env::var_os("PATCHREC_FUZZ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/dev/shm"));
        let dir = base.join(format!("safetensors-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    std::fs::write(dir.join("model.safetensors"), data).expect("write the input");
    let Ok(store) = TensorStore::open(dir, &candle_core::Device::Cpu) else {
        return;
    };
    // The names and shapes the header declares (the store opened it, so it parses).
    let Ok((_, meta)) = safetensors::SafeTensors::read_metadata(data) else {
        return;
    };
    let mut tensors: Vec<(String, Vec<usize>)> = meta
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, info.shape.clone()))
        .collect();
    tensors.sort();
    for (name, shape) in tensors.iter().take(64) {
        assert!(store.contains(name));
        let _ = store.get(name, shape);
        let mut wrong = shape.clone();
        wrong.push(1);
        let _ = store.get(name, &wrong);
    }
    let _ = store.get("model.embed_tokens.weight", &[4, 8]);
});
