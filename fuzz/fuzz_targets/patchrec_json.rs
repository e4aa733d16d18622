//! A checkpoint's `patchrec.json`: `PatchrecMeta`'s serde, version check, and the prompt
//! template's and layout's validation.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use patchrec::model::PatchrecMeta;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(meta) = PatchrecMeta::from_json(text, Path::new("patchrec.json")) {
        let _ = meta.template.split(&meta.special_tokens);
        let _ = serde_json::to_string(&meta);
    }
});
