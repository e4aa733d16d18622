//! A training configuration (TOML): `TrainConfig::from_toml`, with its validation of the
//! model to initialise (sizes checked against memory) and of every stage.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use patchrec::train::TrainConfig;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = TrainConfig::from_toml(text, Path::new("/fuzz")) {
        for stage in &cfg.stages {
            let _ = stage.name();
            let _ = stage.layout();
        }
    }
});
