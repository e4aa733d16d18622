//! A catalogue's `items.tsv`: the line reader and the catalogue's title rules.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use patchrec::catalog::tsv::parse_items_tsv;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_items_tsv(text, Path::new("items.tsv"));
});
