//! Cached (incremental, shared-prefix, batched) forward passes give the logits of one
//! full forward pass.

mod common;

use candle_core::{Device, Tensor};
use patchrec::init::InitOptions;

fn random_embeds(len: usize, d: usize, seed: u64) -> Tensor {
    // A deterministic pseudo-random sequence, scaled like real embeddings.
    let data: Vec<f32> = (0..len * d)
        .map(|i| {
            let x = ((i as u64 + 1) * 2654435761 + seed * 97) % 10007;
            (x as f32 / 10007.0 - 0.5) * 0.1
        })
        .collect();
    Tensor::from_vec(data, (1, len, d), &Device::Cpu).unwrap()
}

fn model() -> std::sync::Arc<patchrec::Model> {
    // GQA with 2 query heads per KV head, so the head-grouping path is exercised.
    let opts = InitOptions {
        hidden_size: 64,
        num_layers: 3,
        num_heads: 4,
        num_kv_heads: 2,
        ..Default::default()
    };
    common::tiny_model_with(&opts, &common::titles(10))
}

#[test]
fn incremental_decoding_matches_full_forward() {
    let model = model();
    let llama = model.llama();
    let x = random_embeds(12, 64, 1);
    let mut full_cache = llama.new_cache();
    let full = llama
        .logits(&llama.forward(&x, None, &mut full_cache).unwrap())
        .unwrap();

    let mut cache = llama.new_cache();
    let mut parts = vec![llama
        .logits(
            &llama
                .forward(&x.narrow(1, 0, 7).unwrap(), None, &mut cache)
                .unwrap(),
        )
        .unwrap()];
    for t in 7..12 {
        let step = x.narrow(1, t, 1).unwrap();
        parts.push(
            llama
                .logits(&llama.forward(&step, None, &mut cache).unwrap())
                .unwrap(),
        );
    }
    let inc = Tensor::cat(&parts, 1).unwrap();
    assert_eq!(cache.len(), 12);
    let diff = common::max_abs_diff(&full, &inc);
    assert!(diff < 1e-4, "max |full - incremental| = {diff}");
    // A chunked continuation (several new positions at once) too.
    let mut cache = llama.new_cache();
    llama
        .forward(&x.narrow(1, 0, 5).unwrap(), None, &mut cache)
        .unwrap();
    let rest = llama
        .logits(
            &llama
                .forward(&x.narrow(1, 5, 7).unwrap(), None, &mut cache)
                .unwrap(),
        )
        .unwrap();
    let diff = common::max_abs_diff(&full.narrow(1, 5, 7).unwrap(), &rest);
    assert!(diff < 1e-4, "chunked continuation differs by {diff}");
}

#[test]
fn beams_over_a_shared_prefix_match_separate_full_passes() {
    let model = model();
    let llama = model.llama();
    let prompt = random_embeds(9, 64, 2);
    let mut prefix = llama.new_cache();
    llama.forward(&prompt, None, &mut prefix).unwrap();

    // Three beams, each continuing the same prompt with its own two steps; the beams
    // attend to the prompt's single-row cache and to their own batched cache.
    let conts: Vec<Tensor> = (0..3).map(|b| random_embeds(2, 64, 10 + b)).collect();
    let mut beam_cache = llama.new_cache();
    let step0 = Tensor::cat(
        &conts
            .iter()
            .map(|c| c.narrow(1, 0, 1).unwrap())
            .collect::<Vec<_>>(),
        0,
    )
    .unwrap();
    llama
        .forward(&step0, Some(&prefix), &mut beam_cache)
        .unwrap();
    // Reorder the beams (as beam search does) before the second step: rows 2, 0, 0.
    let order = Tensor::new(&[2u32, 0, 0], &Device::Cpu).unwrap();
    beam_cache.select_rows(&order).unwrap();
    let reordered = [2usize, 0, 0];
    let step1 = Tensor::cat(
        &reordered
            .iter()
            .map(|&b| conts[b].narrow(1, 1, 1).unwrap())
            .collect::<Vec<_>>(),
        0,
    )
    .unwrap();
    let got = llama
        .logits(
            &llama
                .forward(&step1, Some(&prefix), &mut beam_cache)
                .unwrap(),
        )
        .unwrap();
    for (row, &b) in reordered.iter().enumerate() {
        let whole = Tensor::cat(&[&prompt, &conts[b]], 1).unwrap();
        let mut c = llama.new_cache();
        let full = llama
            .logits(&llama.forward(&whole, None, &mut c).unwrap())
            .unwrap();
        let diff = common::max_abs_diff(
            &full.narrow(1, 10, 1).unwrap(),
            &got.narrow(0, row, 1).unwrap(),
        );
        assert!(
            diff < 1e-4,
            "beam row {row} (continuation {b}) differs by {diff}"
        );
    }
}
