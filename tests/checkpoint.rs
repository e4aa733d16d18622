//! Checkpoints: save/load round trips, and every kind of bad checkpoint is an error that
//! names what is wrong, never a panic.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use patchrec::{Error, Model};

fn saved_tiny(dir: &Path) -> std::path::PathBuf {
    let model = common::tiny_model(10);
    let ckpt = dir.join("tiny");
    model.save(&ckpt).unwrap();
    ckpt
}

fn load_err(dir: &Path) -> Error {
    match Model::load(dir, &Default::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e,
    }
}

/// The logits of one title's tokens through a fresh cache.
fn title_logits(m: &Model) -> Tensor {
    let ids = m.tokenizer().encode("The Red Garden (1950)").unwrap();
    let x = m.llama().embed_ids(&ids).unwrap().unsqueeze(0).unwrap();
    let mut c = m.llama().new_cache();
    m.llama()
        .logits(&m.llama().forward(&x, None, &mut c).unwrap())
        .unwrap()
}

fn rewrite_tensors(ckpt: &Path, edit: impl FnOnce(&mut HashMap<String, Tensor>)) {
    let path = ckpt.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, &path).unwrap();
}

#[test]
fn save_then_load_gives_the_same_logits_and_template() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::tiny_model(10);
    let ckpt = dir.path().join("tiny");
    model.save(&ckpt).unwrap();
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "patchrec.json",
    ] {
        assert!(ckpt.join(file).is_file(), "{file} written");
    }
    // With the weights as stored, the logits are the same bit for bit.
    let rows = patchrec::ModelOptions::default().with_panels(Some(false));
    let loaded = Model::load(&ckpt, &rows).unwrap();
    assert_eq!(
        common::max_abs_diff(&title_logits(&model), &title_logits(&loaded)),
        0.0
    );
    // Served (f32 projections in panels where the CPU runs their kernel): the same
    // weights, given back exactly, and logits within the products' summation order.
    let served = Model::load(&ckpt, &Default::default()).unwrap();
    let diff = common::max_abs_diff(&title_logits(&model), &title_logits(&served));
    assert!(diff < 1e-5, "served logits differ by {diff}");
    let named = |m: &Model| -> HashMap<String, Tensor> {
        m.llama().named_tensors().unwrap().into_iter().collect()
    };
    let (want, got) = (named(&loaded), named(&served));
    assert_eq!(want.len(), got.len());
    for (name, t) in &want {
        assert_eq!(common::max_abs_diff(t, &got[name]), 0.0, "{name}");
    }
    assert_eq!(loaded.head_ids(), model.head_ids());
    assert_eq!(loaded.special(), model.special());
    // Saving again over the same directory replaces it cleanly.
    loaded.save(&ckpt).unwrap();
    Model::load(&ckpt, &Default::default()).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        vec![std::ffi::OsString::from("tiny")],
        "no temporary directories left"
    );
}

#[test]
fn missing_directory_is_an_io_error_naming_it() {
    let e = load_err(Path::new("/nonexistent/patchrec-checkpoint"));
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    assert!(
        e.to_string().contains("/nonexistent/patchrec-checkpoint"),
        "{e}"
    );
}

#[test]
fn missing_tensor_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = saved_tiny(dir.path());
    rewrite_tensors(&ckpt, |t| {
        t.remove("model.layers.1.mlp.up_proj.weight");
    });
    let e = load_err(&ckpt);
    assert!(matches!(e, Error::Format { .. }), "{e:?}");
    assert!(
        e.to_string().contains("model.layers.1.mlp.up_proj.weight"),
        "{e}"
    );
}

#[test]
fn wrong_shape_names_tensor_file_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = saved_tiny(dir.path());
    rewrite_tensors(&ckpt, |t| {
        t.insert(
            "model.layers.0.self_attn.k_proj.weight".into(),
            Tensor::zeros((3, 64), candle_core::DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let msg = load_err(&ckpt).to_string();
    assert!(
        msg.contains("model.layers.0.self_attn.k_proj.weight"),
        "{msg}"
    );
    assert!(msg.contains("model.safetensors"), "{msg}");
    assert!(msg.contains("[3, 64]"), "{msg}");
}

#[test]
fn malformed_or_unsupported_config_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = saved_tiny(dir.path());
    let config = ckpt.join("config.json");
    let good = std::fs::read_to_string(&config).unwrap();

    std::fs::write(&config, "{ not json").unwrap();
    let msg = load_err(&ckpt).to_string();
    assert!(
        msg.contains("config.json") && msg.contains("malformed"),
        "{msg}"
    );

    let mut json: serde_json::Value = serde_json::from_str(&good).unwrap();
    json["architectures"] = serde_json::json!(["GPT2LMHeadModel"]);
    std::fs::write(&config, json.to_string()).unwrap();
    let msg = load_err(&ckpt).to_string();
    assert!(
        msg.contains("architectures") && msg.contains("GPT2LMHeadModel"),
        "{msg}"
    );

    let mut json: serde_json::Value = serde_json::from_str(&good).unwrap();
    json["num_key_value_heads"] = serde_json::json!(3);
    std::fs::write(&config, json.to_string()).unwrap();
    let msg = load_err(&ckpt).to_string();
    assert!(msg.contains("num_key_value_heads"), "{msg}");

    let mut json: serde_json::Value = serde_json::from_str(&good).unwrap();
    json.as_object_mut().unwrap().remove("hidden_size");
    std::fs::write(&config, json.to_string()).unwrap();
    let msg = load_err(&ckpt).to_string();
    assert!(msg.contains("hidden_size"), "{msg}");
}

#[test]
fn missing_tokenizer_and_weights_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = saved_tiny(dir.path());
    std::fs::remove_file(ckpt.join("model.safetensors")).unwrap();
    let msg = load_err(&ckpt).to_string();
    assert!(msg.contains("model.safetensors"), "{msg}");
    std::fs::remove_file(ckpt.join("tokenizer.json")).unwrap();
    let msg = load_err(&ckpt).to_string();
    assert!(msg.contains("tokenizer.json"), "{msg}");
}

#[test]
fn without_patchrec_json_the_chat_format_follows_the_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = saved_tiny(dir.path());
    std::fs::remove_file(ckpt.join("patchrec.json")).unwrap();
    let m = Model::load(&ckpt, &Default::default()).unwrap();
    assert!(m.meta().template.chat.contains("<|im_start|>"));
    assert_eq!(m.meta().template.answer_end, "<|im_end|>");
}

#[test]
fn sharded_checkpoints_load_with_the_single_files_logits() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = saved_tiny(dir.path());
    let expected = title_logits(&Model::load(&ckpt, &Default::default()).unwrap());
    let single = ckpt.join("model.safetensors");
    let tensors = candle_core::safetensors::load(&single, &Device::Cpu).unwrap();
    let (mut a, mut b) = (HashMap::new(), HashMap::new());
    let mut map = serde_json::Map::new();
    for (i, (name, t)) in tensors.into_iter().enumerate() {
        let file = if i % 2 == 0 {
            "model-00001-of-00002.safetensors"
        } else {
            "model-00002-of-00002.safetensors"
        };
        map.insert(name.clone(), file.into());
        if i % 2 == 0 {
            a.insert(name, t)
        } else {
            b.insert(name, t)
        };
    }
    candle_core::safetensors::save(&a, ckpt.join("model-00001-of-00002.safetensors")).unwrap();
    candle_core::safetensors::save(&b, ckpt.join("model-00002-of-00002.safetensors")).unwrap();
    std::fs::write(
        ckpt.join("model.safetensors.index.json"),
        serde_json::json!({ "weight_map": map }).to_string(),
    )
    .unwrap();
    std::fs::remove_file(&single).unwrap();
    let sharded = Model::load(&ckpt, &Default::default()).unwrap();
    assert_eq!(
        common::max_abs_diff(&expected, &title_logits(&sharded)),
        0.0
    );
}

#[test]
fn saved_weights_carry_the_metadata_transformers_requires() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = saved_tiny(tmp.path());
    let bytes = std::fs::read(ckpt.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(
        header["__metadata__"]["format"], "pt",
        "{}",
        header["__metadata__"]
    );
}
