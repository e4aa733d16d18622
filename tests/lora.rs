//! LoRA adapters: a fresh adapter leaves the base model's logits exactly as they were;
//! merged and unmerged adapters agree; a LoRA stage trains only the adapters and the new
//! tokens' rows, saves a merged checkpoint and the adapters alone (which applied to the
//! base give the merged checkpoint again), and resumes exactly.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use patchrec::model::LoraConfig;
use patchrec::train::{train, Control, TrainConfig, TrainOptions};
use patchrec::{Model, ModelOptions};

/// Logits at every position of a prompt made of the model's special and title tokens.
fn logits(model: &Model) -> Vec<f32> {
    let sp = model.special();
    let mut ids = model.tokenizer().encode("The Red River (1950)").unwrap();
    ids.extend([sp.start_seq, sp.item_sep, sp.end_seq, sp.answer_end]);
    let llama = model.llama();
    let x = llama.embed_ids(&ids).unwrap().unsqueeze(0).unwrap();
    let hidden = llama.forward(&x, None, &mut llama.new_cache()).unwrap();
    llama
        .logits(&hidden)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Loaded to be trained: the weights as stored (LoRA puts panels back into this layout,
/// so the base logits must come from it to compare bit for bit).
fn load(dir: &Path) -> Model {
    Model::load(dir, &ModelOptions::default().with_panels(Some(false))).unwrap()
}

fn new_tokens(model: &Model) -> std::ops::Range<usize> {
    let range = model.prompt_token_rows();
    assert_eq!(range.len(), 3, "the three history tokens are adjacent");
    range
}

/// A tiny model saved under `tmp`, and its logits.
fn base_checkpoint(tmp: &Path) -> (std::path::PathBuf, Vec<f32>) {
    let dir = tmp.join("base");
    common::tiny_model(12).save(&dir).unwrap();
    let base = logits(&load(&dir));
    (dir, base)
}

fn all_targets(rank: usize) -> LoraConfig {
    LoraConfig::default()
        .with_rank(rank)
        .with_alpha(2.0 * rank as f64)
}

#[test]
fn zero_initialised_adapters_give_the_base_models_logits_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, base) = base_checkpoint(tmp.path());

    let mut adapted = load(&dir);
    let range = new_tokens(&adapted);
    let vars = adapted
        .llama_mut()
        .attach_lora(&all_targets(4), Some(range), 3, None)
        .unwrap();
    // Two matrices for each of 7 projections in 2 layers, and the new rows.
    assert_eq!(vars.len(), 2 * 7 * 2 + 1);
    let got = logits(&adapted);
    let worst = got
        .iter()
        .zip(&base)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        got == base,
        "B = 0 must change nothing: logits differ by up to {worst}"
    );
}

#[test]
fn merged_and_unmerged_adapters_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, base) = base_checkpoint(tmp.path());

    let mut adapted = load(&dir);
    let range = new_tokens(&adapted);
    let config =
        all_targets(3).with_targets(vec!["q_proj".into(), "v_proj".into(), "down_proj".into()]);
    let vars = adapted
        .llama_mut()
        .attach_lora(&config, Some(range.clone()), 5, None)
        .unwrap();
    // Move every adapter and the new rows away from their starting point.
    for (_, var) in &vars {
        let t = var.as_tensor();
        let noise = Tensor::randn(0f32, 0.05, t.dims(), &Device::Cpu).unwrap();
        var.set(&(t + noise).unwrap()).unwrap();
    }
    let unmerged = logits(&adapted);
    assert_ne!(unmerged, base, "the adapters must matter");

    let merged_dir = tmp.path().join("merged");
    adapted.save(&merged_dir).unwrap();
    let merged = logits(&load(&merged_dir));
    let scale = unmerged.iter().fold(1f32, |m, v| m.max(v.abs()));
    let worst = unmerged
        .iter()
        .zip(&merged)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-5 * scale,
        "merged and unmerged logits differ by {worst} (scale {scale})"
    );
}

fn config(out: &Path, data: &Path, stages: &str) -> TrainConfig {
    let text = format!(
        "out = {out:?}\ndata = {data:?}\nseed = 3\n[model.init]\nvocab_size = 400\nhidden = 32\n\
         layers = 2\nheads = 4\nkv_heads = 2\n{stages}"
    );
    TrainConfig::from_toml(&text, Path::new(".")).unwrap()
}

const LORA_STAGE: &str = r#"
[[stage]]
kind = "pft-i"
m = 2
max_history = 6
max_steps = 4
batch_size = 4
micro_batch = 2
learning_rate = 0.01
checkpoint_every = 2
[stage.lora]
rank = 4
alpha = 8
targets = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"]
"#;

fn tensors(dir: &Path, file: &str) -> HashMap<String, Vec<f32>> {
    candle_core::safetensors::load(dir.join(file), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn a_lora_stage_trains_only_its_adapters_and_the_new_rows() {
    let data = tempfile::tempdir().unwrap();
    common::write_dataset(data.path(), 16, 6, 9);
    let out = tempfile::tempdir().unwrap();
    let cfg = config(out.path(), data.path(), LORA_STAGE);
    let quiet = TrainOptions::default().with_resume(false).with_quiet(true);
    let done = train(&cfg, &quiet, &mut |_| Control::Continue).unwrap();
    let trained = done.checkpoint.unwrap();
    let init = out.path().join("00-init");
    let (before, after) = (
        tensors(&init, "model.safetensors"),
        tensors(&trained, "model.safetensors"),
    );
    let range = new_tokens(&load(&init));
    let d = 32;
    for (name, b) in &before {
        let a = &after[name];
        if name == "model.embed_tokens.weight" {
            for (row, (x, y)) in b.chunks(d).zip(a.chunks(d)).enumerate() {
                assert_eq!(
                    x != y,
                    range.contains(&row),
                    "embedding row {row}: only the new tokens' rows train"
                );
            }
        } else {
            let adapted = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj"]
                .iter()
                .any(|t| name.contains(t));
            assert_eq!(a != b, adapted, "{name}: changed only if adapted");
        }
    }
    // The adapters alone, with PEFT's names and their configuration.
    let adapters = out.path().join("01-pft-i2.adapters");
    let saved = tensors(&adapters, "adapters.safetensors");
    assert_eq!(saved.len(), 2 * 5 * 2 + 1);
    assert!(saved.contains_key("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"));
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(adapters.join("adapter_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(config["r"], 4);
    assert_eq!(config["new_token_rows_start"], range.start);

    // Applied to the base again, the adapters give the stage's merged checkpoint.
    let applied = out.path().join("applied");
    patchrec::model::adapters::apply(&init, &adapters, None, &applied).unwrap();
    let again = tensors(&applied, "model.safetensors");
    assert_eq!(again.len(), after.len());
    for (name, a) in &after {
        let worst = a
            .iter()
            .zip(&again[name])
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-6, "{name}: applied adapters differ by {worst}");
    }
    // An adapters file missing a tensor its configuration names is refused, not applied
    // as a fresh (zero) adapter.
    let partial = out.path().join("partial");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::copy(
        adapters.join("adapter_config.json"),
        partial.join("adapter_config.json"),
    )
    .unwrap();
    let mut kept =
        candle_core::safetensors::load(adapters.join("adapters.safetensors"), &Device::Cpu)
            .unwrap();
    kept.remove("base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight");
    candle_core::safetensors::save(&kept, partial.join("adapters.safetensors")).unwrap();
    let err = patchrec::model::adapters::apply(&init, &partial, None, &out.path().join("x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("q_proj.lora_B"), "{err}");
}

#[test]
fn a_resumed_lora_stage_equals_an_uninterrupted_one() {
    let data = tempfile::tempdir().unwrap();
    common::write_dataset(data.path(), 16, 6, 9);
    let quiet = |resume| TrainOptions::default().with_resume(resume).with_quiet(true);
    let a = tempfile::tempdir().unwrap();
    let whole = train(
        &config(a.path(), data.path(), LORA_STAGE),
        &quiet(false),
        &mut |_| Control::Continue,
    )
    .unwrap()
    .checkpoint
    .unwrap();

    let b = tempfile::tempdir().unwrap();
    let cfg = config(b.path(), data.path(), LORA_STAGE);
    let stopped = train(&cfg, &quiet(false), &mut |p| {
        if p.step == 3 {
            Control::Stop
        } else {
            Control::Continue
        }
    })
    .unwrap();
    assert!(stopped.stopped);
    // The resume state holds adapters, not a copy of the model.
    let resume = b.path().join("01-pft-i2.resume");
    assert!(resume.join("adapters.safetensors").is_file());
    assert!(!resume.join("model.safetensors").exists());
    let resumed = train(&cfg, &quiet(true), &mut |_| Control::Continue)
        .unwrap()
        .checkpoint
        .unwrap();
    assert_eq!(
        tensors(&whole, "model.safetensors"),
        tensors(&resumed, "model.safetensors"),
        "resumed LoRA weights differ"
    );
}
