//! A checkpoint's `config.json`: `LlamaConfig`'s serde and `validate`, then what a valid
//! configuration alone decides: its parameter count (checked against memory before a
//! model is built) and the RoPE tables every loaded model allocates.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use patchrec::model::rope::Rope;
use patchrec::model::LlamaConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = LlamaConfig::from_json(text, Path::new("config.json")) {
        let _ = cfg.parameter_count();
        let _ = serde_json::to_string(&cfg);
        let _ = Rope::new(&cfg, &candle_core::Device::Cpu);
    }
});
