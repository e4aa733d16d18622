//! Shared fixtures: a synthetic catalogue and a tiny from-scratch model around it.
#![allow(dead_code)]

use std::sync::Arc;

use patchrec::init::{init_model, InitOptions};
use patchrec::text::{ChatFormat, PromptTemplate};
use patchrec::{Catalog, Model};

const ADJECTIVES: [&str; 8] = [
    "Red", "Silent", "Broken", "Golden", "Last", "Hidden", "Wild", "Lost",
];
const NOUNS: [&str; 6] = ["Garden", "River", "Empire", "Night", "Harbor", "Machine"];

/// `n` distinct synthetic titles such as "The Silent River (1987)".
pub fn titles(n: usize) -> Vec<(u64, String)> {
    (0..n)
        .map(|i| {
            let a = ADJECTIVES[i % ADJECTIVES.len()];
            let b = NOUNS[(i / ADJECTIVES.len()) % NOUNS.len()];
            let year = 1950 + (i * 7) % 70;
            (100 + i as u64, format!("The {a} {b} ({year})"))
        })
        .collect()
}

pub fn tiny_model_with(opts: &InitOptions, catalogue: &[(u64, String)]) -> Arc<Model> {
    let template = PromptTemplate::movielens(ChatFormat::ChatMl);
    let titles: Vec<&str> = catalogue.iter().map(|(_, t)| t.as_str()).collect();
    Arc::new(init_model(&titles, template, opts).expect("init tiny model"))
}

/// The tests' model sizes: 2 layers, 64 wide, a 1,024-token vocabulary.
pub fn tiny_options() -> InitOptions {
    InitOptions::default()
        .with_vocab_size(1024)
        .with_hidden_size(64)
        .with_num_layers(2)
}

/// A 2-layer, 64-wide model whose tokenizer was trained on `titles(n)`.
pub fn tiny_model(n: usize) -> Arc<Model> {
    tiny_model_with(&tiny_options(), &titles(n))
}

pub fn catalog(model: &Arc<Model>, items: &[(u64, String)]) -> Catalog {
    let c = Catalog::new(model.clone()).expect("catalog");
    c.add_batch(items).expect("register");
    c
}

/// A checkpoint's tensors, sorted by name.
pub fn weights(dir: &std::path::Path) -> Vec<(String, candle_core::Tensor)> {
    let mut t: Vec<_> =
        candle_core::safetensors::load(dir.join("model.safetensors"), &candle_core::Device::Cpu)
            .expect("a checkpoint's model.safetensors")
            .into_iter()
            .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Writes a dataset in the shared format over `titles(n_items)`: `users` users each
/// walking the catalogue one item at a time from a random start (no random jumps), so the
/// next item is always predictable; the last position is the test target, the one before
/// it the validation target.
pub fn write_dataset(dir: &std::path::Path, n_items: usize, users: usize, len: usize) {
    patchrec::data::synthetic::write_synthetic(dir, &titles(n_items), users, len, 0.0, 7)
        .expect("write synthetic dataset");
}

/// A fixture that lives outside the repository (benchmark data, a fetched model): `Some`
/// when `path` exists. Without it a test skips, saying so, except under `CI=true`, where a
/// missing fixture fails the test: CI installs its fixtures, so one that is missing means
/// a misconfigured run that must not pass empty.
pub fn external_fixture(path: std::path::PathBuf, how_to_get: &str) -> Option<std::path::PathBuf> {
    if path.exists() {
        return Some(path);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "{} not found under CI=true; {how_to_get}",
        path.display()
    );
    eprintln!("SKIPPED: {} not found; {how_to_get}", path.display());
    None
}

/// log P(title tokens, answer-end | prompt) by one teacher-forced full forward pass.
pub fn teacher_forced(
    model: &patchrec::Model,
    prompt: &candle_core::Tensor,
    answer: &[u32],
) -> f32 {
    let llama = model.llama();
    let ans = llama.embed_ids(answer).unwrap().unsqueeze(0).unwrap();
    let x = candle_core::Tensor::cat(&[prompt, &ans], 1).unwrap();
    let mut cache = llama.new_cache();
    let logits = llama
        .logits(&llama.forward(&x, None, &mut cache).unwrap())
        .unwrap();
    let lp = candle_nn::ops::log_softmax(&logits.squeeze(0).unwrap(), candle_core::D::Minus1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let p = prompt.dim(1).unwrap();
    answer
        .iter()
        .enumerate()
        .map(|(i, &tok)| lp[p - 1 + i][tok as usize])
        .sum()
}

/// A user whose history is `ids` (oldest first, times unknown).
pub fn user_with(cat: &Catalog, ids: &[u64]) -> patchrec::UserHistory {
    cat.history_of(ids).expect("history of catalogue items")
}
