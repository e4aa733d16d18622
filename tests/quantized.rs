//! Serving from quantized weights: scores stay close to the dense model's, quantizing
//! while loading gives the model quantized after loading, the model refuses to be saved or
//! trained, and a bad name or a second format is a clear error.

mod common;

use std::sync::Arc;

use candle_core::{Device, Tensor};
use patchrec::model::Quantization;
use patchrec::{recommend, Catalog, Interaction, Model, ModelOptions, QueryOptions, UserHistory};

/// bf16 weights need the CPU kernel (x86-64 with AVX2 or AVX-512); elsewhere loading
/// them is an error and the tests of that format are skipped.
fn kernel_formats_run(q: Quantization) -> bool {
    #[cfg(target_arch = "x86_64")]
    let cpu = std::is_x86_feature_detected!("avx2") || std::is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    let cpu = false;
    let runs = q != Quantization::Bf16 || cpu;
    if !runs {
        eprintln!("{q} needs AVX2 or AVX-512: not exercised");
    }
    runs
}

fn top(model: Arc<Model>, items: &[(u64, String)]) -> Vec<(u64, f32)> {
    let cat = Catalog::new(model).unwrap();
    cat.add_batch(items).unwrap();
    let mut user = UserHistory::new();
    let history: Vec<Interaction> = items[3..15]
        .iter()
        .map(|(id, _)| Interaction {
            item_id: *id,
            timestamp: None,
        })
        .collect();
    cat.append(&mut user, &history).unwrap();
    let opts = QueryOptions::default().with_k(10);
    recommend(&cat, &user, &opts)
        .unwrap()
        .items
        .iter()
        .map(|r| (r.item_id, r.score))
        .collect()
}

/// A tiny model whose every input width is a multiple of 32 (so every weight quantizes),
/// saved into a temporary checkpoint directory.
fn saved_quantizable(items: &[(u64, String)]) -> (Arc<Model>, tempfile::TempDir) {
    let opts = common::tiny_options()
        .with_hidden_size(64)
        .with_intermediate_size(Some(128));
    let model = common::tiny_model_with(&opts, items);
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    (model, dir)
}

#[test]
fn quantized_scores_stay_close_to_dense_ones() {
    let items = common::titles(40);
    let (dense, dir) = saved_quantizable(&items);
    let want = top(dense, &items);
    for (q, tolerance) in [
        (Quantization::Q8_0, 0.02),
        (Quantization::Q4_0, 0.3),
        (Quantization::Bf16, 0.02),
    ] {
        if !kernel_formats_run(q) {
            continue;
        }
        let options = ModelOptions::default().with_quantization(Some(q));
        let model = Model::load(dir.path(), &options).unwrap();
        assert_eq!(model.llama().quantization(), Some(q));
        let got = top(Arc::new(model), &items);
        // Each item the dense model ranks is scored within tolerance by the quantized one
        // when both return it; the top item is the same.
        let mut worst = 0f32;
        for (id, score) in &want {
            if let Some((_, s)) = got.iter().find(|(i, _)| i == id) {
                worst = worst.max((s - score).abs());
            }
        }
        assert!(worst < tolerance, "{q}: score differs by {worst}");
        assert_eq!(got[0].0, want[0].0, "{q}: top item changed");
        println!("{q}: largest score difference {worst:.5}");
    }
}

#[test]
fn a_quantized_model_is_not_saved_or_trained_and_bad_names_fail() {
    let (_, dir) = saved_quantizable(&common::titles(20));
    let options = ModelOptions::default().with_quantization(Some(Quantization::Q8_0));
    let model = Model::load(dir.path(), &options).unwrap();
    let out = dir.path().join("copy");
    let err = model.save(&out).unwrap_err().to_string();
    assert!(err.contains("quantized"), "{err}");
    assert!(!out.exists(), "a failed save leaves nothing behind");
    // Training starts from the named dense tensors, which a quantized model no longer has.
    let err = model.llama().named_tensors().unwrap_err().to_string();
    assert!(err.contains("quantized"), "{err}");
    let err = "q5_k".parse::<Quantization>().unwrap_err().to_string();
    assert!(err.contains("q5_k") && err.contains("q8_0"), "{err}");
}

/// `Model::load` quantizes each projection as it reads it (so the dense checkpoint is never
/// whole in memory) and the head after the vocabulary is final. The result must be the
/// model that quantizing a fully loaded dense model gives: the same logits, bit for bit.
#[test]
fn quantizing_while_loading_equals_quantizing_after_loading() {
    let (dense, dir) = saved_quantizable(&common::titles(20));
    let d = dense.llama().hidden_size();
    let data: Vec<f32> = (0..9 * d)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 400.0)
        .collect();
    let x = Tensor::from_vec(data, (1, 9, d), &Device::Cpu).unwrap();
    let logits = |llama: &patchrec::model::Llama| {
        let mut cache = llama.new_cache();
        let h = llama.forward(&x, None, &mut cache).unwrap();
        llama.logits(&h).unwrap()
    };
    for q in [Quantization::Q8_0, Quantization::Q4_0, Quantization::Bf16] {
        if !kernel_formats_run(q) {
            continue;
        }
        let options = ModelOptions::default().with_quantization(Some(q));
        let while_loading = Model::load(dir.path(), &options).unwrap();
        let mut after = patchrec::model::Llama::from_named(
            dense.llama().config().clone(),
            dense.llama().named_tensors().unwrap().into_iter().collect(),
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(
            after.quantize(q).unwrap(),
            (
                while_loading.llama().num_layers() * 7 + 1,
                while_loading.llama().num_layers() * 7 + 1
            )
        );
        let diff = common::max_abs_diff(&logits(while_loading.llama()), &logits(&after));
        assert_eq!(diff, 0.0, "{q}: logits differ by {diff}");
        // ... and not the dense model's logits (the weights really are quantized).
        let off = common::max_abs_diff(&logits(dense.llama()), &logits(&after));
        assert!(off > 0.0, "{q}: quantized logits equal the dense ones");
    }
}

#[test]
fn a_model_quantized_in_one_format_refuses_another() {
    let (dense, _dir) = saved_quantizable(&common::titles(20));
    let store = patchrec::model::weights::TensorStore::from_map(
        dense.llama().named_tensors().unwrap().into_iter().collect(),
    );
    let mut llama = patchrec::model::Llama::load(
        dense.llama().config().clone(),
        &store,
        &Device::Cpu,
        Some(Quantization::Q8_0),
    )
    .unwrap();
    assert_eq!(llama.quantization(), None, "the head is not quantized yet");
    let err = llama.quantize(Quantization::Q4_0).unwrap_err().to_string();
    assert!(err.contains("q8_0") && err.contains("q4_0"), "{err}");
    llama.quantize(Quantization::Q8_0).unwrap();
    assert_eq!(llama.quantization(), Some(Quantization::Q8_0));
}
