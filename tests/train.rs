//! Training: PPT batch composition, loss masking, resume == uninterrupted, and a tiny
//! model that overfits a tiny dataset until beam search ranks the target first.

mod common;

use std::path::Path;

use candle_core::{Tensor, D};
use patchrec::data::{samples, Dataset, SampleOptions, Split};
use patchrec::history::{Layout, SegmentKind};
use patchrec::train::batch::{batch_loss, examples_for, Example};
use patchrec::train::{train, Control, StageKind, TrainConfig, TrainOptions};
use patchrec::{Catalog, Interaction, Model, QueryOptions, UserHistory};

#[test]
fn ppt_holds_each_sample_twice_with_compressed_share_p() {
    let history: Vec<u32> = (0..400).collect();
    for p in [0.0, 0.25, 0.5, 1.0] {
        let ex = examples_for(StageKind::Ppt, Layout::Vanilla, history.clone(), 7, p, 99);
        assert_eq!(ex.len(), 2, "compressed copy and text copy");
        assert!(ex.iter().all(|e| e.history == history && e.target == 7));
        assert!(ex[1].segments.iter().all(|s| s.kind == SegmentKind::Text));
        let compressed = ex[0]
            .segments
            .iter()
            .filter(|s| s.kind == SegmentKind::Item)
            .count();
        let share = compressed as f64 / history.len() as f64;
        assert!((share - p).abs() < 0.08, "p = {p}: share {share}");
        assert_eq!(ex[0].segments.len(), history.len(), "one segment per item");
    }
    // Other stages: one example in the stage's layout.
    let ex = examples_for(
        StageKind::PftI,
        Layout::PftI { m: 5 },
        history.clone(),
        7,
        0.5,
        1,
    );
    assert_eq!(ex.len(), 1);
    assert_eq!(
        ex[0]
            .segments
            .iter()
            .filter(|s| s.kind == SegmentKind::Text)
            .count(),
        5
    );
}

#[test]
fn loss_covers_exactly_the_answer_tokens() {
    let items = common::titles(12);
    let model = common::tiny_model(12);
    let cat = common::catalog(&model, &items);
    let snap = cat.snapshot();
    let batch = vec![
        Example {
            history: vec![0, 1, 2],
            segments: patchrec::history::segments(Layout::PftI { m: 1 }, 3),
            target: 5,
        },
        Example {
            history: vec![3],
            segments: patchrec::history::segments(Layout::Vanilla, 1),
            target: 9,
        },
    ];
    let got = batch_loss(&model, &snap, &batch).unwrap();
    let mut want = 0f64;
    let mut tokens = 0;
    for ex in &batch {
        // Reference: one unpadded forward per example, log-probs of the answer tokens.
        let prompt = patchrec::prompt::prompt_embeddings(
            &model,
            &snap,
            &ex.history,
            &ex.segments,
            patchrec::prompt::PatchSource::Cached,
        )
        .unwrap();
        let mut answer = snap.item(ex.target).tokens.clone();
        answer.push(model.special().answer_end);
        tokens += answer.len();
        let llama = model.llama();
        let x = Tensor::cat(&[&prompt, &llama.embed_ids(&answer).unwrap()], 0)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let mut c = llama.new_cache();
        let lp = candle_nn::ops::log_softmax(
            &llama
                .logits(&llama.forward(&x, None, &mut c).unwrap())
                .unwrap()
                .squeeze(0)
                .unwrap(),
            D::Minus1,
        )
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
        let p = prompt.dim(0).unwrap();
        for (j, &t) in answer.iter().enumerate() {
            want -= lp[p - 1 + j][t as usize] as f64;
        }
    }
    assert_eq!(got.answer_tokens, tokens);
    let got_nll = got.nll_sum.to_scalar::<f32>().unwrap() as f64;
    assert!(
        (got_nll - want).abs() < 1e-3 * want.abs().max(1.0),
        "{got_nll} vs {want}"
    );
}

fn config(dir: &Path, data: &Path, stages: &str) -> TrainConfig {
    let text = format!(
        r#"
out = "{}"
data = "{}"
seed = 7
[model.init]
vocab_size = 400
hidden = 32
layers = 2
heads = 4
kv_heads = 2
{stages}
"#,
        dir.display(),
        data.display()
    );
    TrainConfig::from_toml(&text, Path::new(".")).unwrap()
}

fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    common::weights(dir)
        .into_iter()
        .map(|(k, v)| (k, v.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

#[test]
fn resumed_training_equals_uninterrupted() {
    let data = tempfile::tempdir().unwrap();
    common::write_dataset(data.path(), 16, 6, 9);
    let stages = r#"
[[stage]]
kind = "ppt"
max_steps = 4
batch_size = 4
micro_batch = 3
learning_rate = 0.01
checkpoint_every = 100
[[stage]]
kind = "pft-s"
l = 2
max_steps = 5
batch_size = 4
micro_batch = 2
learning_rate = 0.01
checkpoint_every = 2
"#;
    let a = tempfile::tempdir().unwrap();
    let cfg_a = config(a.path(), data.path(), stages);
    let quiet = TrainOptions::default().with_resume(false).with_quiet(true);
    let out = train(&cfg_a, &quiet, &mut |_| Control::Continue).unwrap();
    assert!(!out.stopped);
    let final_a = out.checkpoint.unwrap();

    let b = tempfile::tempdir().unwrap();
    let cfg_b = config(b.path(), data.path(), stages);
    // Stop in the middle of each stage: after step 2 of PPT, then after step 3 of PFT-S.
    let out = train(&cfg_b, &quiet, &mut |p| {
        if p.step == 2 {
            Control::Stop
        } else {
            Control::Continue
        }
    })
    .unwrap();
    assert!(out.stopped && out.checkpoint.is_none());
    let resume = TrainOptions::default().with_resume(true).with_quiet(true);
    let out = train(&cfg_b, &resume, &mut |p| {
        if p.stage_index == 1 && p.step == 3 {
            Control::Stop
        } else {
            Control::Continue
        }
    })
    .unwrap();
    assert!(out.stopped);
    assert!(out.checkpoint.unwrap().ends_with("01-ppt"));
    let out = train(&cfg_b, &resume, &mut |_| Control::Continue).unwrap();
    assert!(!out.stopped);
    let final_b = out.checkpoint.unwrap();
    assert_eq!(
        weights(&final_a),
        weights(&final_b),
        "resumed weights differ"
    );
    // The stages' position counts survive the resumes.
    let positions = |dir: &std::path::Path| -> Vec<u64> {
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("patchrec.json")).unwrap())
                .unwrap();
        meta["training"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["positions"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(positions(&final_a), positions(&final_b));
    assert!(positions(&final_a).iter().all(|&p| p > 0));
    // Not resuming into a used folder is refused.
    assert!(train(&cfg_b, &quiet, &mut |_| Control::Continue).is_err());
    let meta = std::fs::read_to_string(final_b.join("patchrec.json")).unwrap();
    assert!(
        meta.contains("\"stage\": \"pft-s2\"") && meta.contains("\"stage\": \"ppt\""),
        "{meta}"
    );
}

#[test]
fn a_tiny_model_overfits_a_tiny_dataset() {
    let data = tempfile::tempdir().unwrap();
    common::write_dataset(data.path(), 10, 4, 6);
    let out = tempfile::tempdir().unwrap();
    let cfg = config(
        out.path(),
        data.path(),
        r#"
[[stage]]
kind = "pft-i"
m = 2
epochs = 150
batch_size = 4
micro_batch = 4
learning_rate = 0.01
warmup_ratio = 0.05
max_grad_norm = 1.0
checkpoint_every = 1000
"#,
    );
    let mut first = None;
    let mut last = 0.0;
    let res = train(
        &cfg,
        &TrainOptions::default().with_resume(false).with_quiet(true),
        &mut |p| {
            first.get_or_insert(p.loss);
            last = p.loss;
            Control::Continue
        },
    )
    .unwrap();
    eprintln!("loss {:.3} -> {last:.3}", first.unwrap());
    assert!(last < 0.1, "final loss {last}");
    let model =
        std::sync::Arc::new(Model::load(&res.checkpoint.unwrap(), &Default::default()).unwrap());
    let dataset = Dataset::open(data.path()).unwrap();
    let cat = Catalog::new(model.clone()).unwrap();
    cat.add_batch(&dataset.items).unwrap();
    let train_samples = samples(&dataset, Split::Train, &SampleOptions::default());
    let mut hits = 0;
    for s in &train_samples {
        let mut user = UserHistory::new();
        let ints: Vec<Interaction> = s
            .history
            .iter()
            .map(|&item_id| Interaction {
                item_id,
                timestamp: None,
            })
            .collect();
        cat.append(&mut user, &ints).unwrap();
        let res = patchrec::recommend(
            &cat,
            &user,
            &QueryOptions::default().with_k(5).with_beam_width(5),
        )
        .unwrap();
        hits += usize::from(res.items[0].item_id == s.target);
    }
    assert_eq!(
        hits,
        train_samples.len(),
        "target at rank 0 for every training sample"
    );
}

#[test]
fn a_stop_at_a_stages_last_step_finishes_it_and_starts_no_other() {
    let data = tempfile::tempdir().unwrap();
    common::write_dataset(data.path(), 12, 4, 7);
    let out = tempfile::tempdir().unwrap();
    let cfg = config(
        out.path(),
        data.path(),
        r#"
[[stage]]
kind = "sft"
max_steps = 2
batch_size = 2
micro_batch = 2
[[stage]]
kind = "pft-i"
m = 2
max_steps = 2
batch_size = 2
micro_batch = 2
"#,
    );
    let quiet = TrainOptions::default().with_resume(false).with_quiet(true);
    let res = train(&cfg, &quiet, &mut |p| {
        if p.step == p.total_steps {
            Control::Stop
        } else {
            Control::Continue
        }
    })
    .unwrap();
    assert!(res.stopped);
    assert!(res.checkpoint.unwrap().ends_with("01-sft"));
    let second: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("02-"))
        .collect();
    assert!(second.is_empty(), "the second stage did not start");
    let resume = TrainOptions::default().with_resume(true).with_quiet(true);
    let res = train(&cfg, &resume, &mut |_| Control::Continue).unwrap();
    assert!(!res.stopped);
    assert!(res.checkpoint.unwrap().ends_with("02-pft-i2"));
}
