//! Serving from quantized weights: scores stay close to the dense model's, the model
//! refuses to be saved or trained, and a bad name is a clear error.

mod common;

use std::sync::Arc;

use patchrec::init::InitOptions;
use patchrec::model::Quantization;
use patchrec::{recommend, Catalog, Interaction, Model, ModelOptions, QueryOptions, UserHistory};

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
    let opts = QueryOptions {
        k: 10,
        ..Default::default()
    };
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
    let opts = InitOptions {
        hidden_size: 64,
        intermediate_size: Some(128),
        ..Default::default()
    };
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
    for (q, tolerance) in [(Quantization::Q8_0, 0.02), (Quantization::Q4_0, 0.3)] {
        let options = ModelOptions {
            quantization: Some(q),
            ..Default::default()
        };
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
    let options = ModelOptions {
        quantization: Some(Quantization::Q8_0),
        ..Default::default()
    };
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
