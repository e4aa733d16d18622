//! The device path gives the CPU kernels' numbers. Every op has our CPU kernel and a
//! path through candle's composed ops, which is what a GPU runs (`model::host`). Here
//! one side runs the kernels on the CPU and the other the device path: by default the
//! CPU with the generic kernels (`set_generic_kernels`), so every CI run tests the code
//! a GPU runs; with `PATCHREC_TEST_DEVICE=cuda:N` (scripts/gpu-check.sh) that GPU.
//!
//! Compared: the logits of a forward pass and of a cached continuation (f32 and Q8_0
//! weights), the scores and the order of the top 20 answers in three layouts, every
//! candidate's score, a training step's loss and gradients (full fine-tuning and LoRA,
//! packed and per sample), and AdamW.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use patchrec::history::{segments, Layout};
use patchrec::model::host::set_generic_kernels;
use patchrec::model::{LoraConfig, Model, ModelOptions, Quantization};
use patchrec::train::batch::{batch_loss, Example};
use patchrec::train::optimizer::{AdamW, AdamWConfig};
use patchrec::train::pack::{pack, tree_loss};
use patchrec::train::trainer::make_trainable;
use patchrec::{rank, recommend, Catalog, QueryOptions, RankOptions};

/// The generic-kernel switch is process-wide: one comparison at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The device the other side runs on: `PATCHREC_TEST_DEVICE`, or the CPU.
fn other_device() -> String {
    std::env::var("PATCHREC_TEST_DEVICE").unwrap_or_else(|_| "cpu".into())
}

/// A side of a comparison: the CPU with our kernels, or the device path.
#[derive(Clone, Copy, Debug)]
enum Side {
    Kernels,
    Device,
}

impl Side {
    fn device(self) -> String {
        match self {
            Side::Kernels => "cpu".into(),
            Side::Device => other_device(),
        }
    }

    /// Runs `f` with this side's kernels: the generic ones for the device side on the CPU.
    fn run<T>(self, f: impl FnOnce() -> T) -> T {
        set_generic_kernels(matches!(self, Side::Device) && self.device() == "cpu");
        let out = f();
        set_generic_kernels(false);
        out
    }

    fn load(self, dir: &Path) -> Model {
        self.load_with(dir, None)
    }

    fn load_with(self, dir: &Path, quantization: Option<Quantization>) -> Model {
        let opts = ModelOptions::default()
            .with_device(Some(self.device()))
            .with_quantization(quantization);
        self.run(|| Model::load(dir, &opts))
            .expect("load the checkpoint")
    }
}

const SIDES: [Side; 2] = [Side::Kernels, Side::Device];

/// A tiny model over `titles(n)`, saved so that each side loads it onto its device.
fn checkpoint(n: usize) -> (tempfile::TempDir, Vec<(u64, String)>) {
    let items = common::titles(n);
    let opts = common::tiny_options().with_num_layers(3);
    let model = common::tiny_model_with(&opts, &items);
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("model");
    model.save(&ckpt).unwrap();
    // A random model's attention is nearly uniform (its weights are small), which would
    // hide a wrong score or mask: sharpen it, and the MLP's non-linearity with it.
    let file = ckpt.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&file, &candle_core::Device::Cpu).unwrap();
    for (name, t) in tensors.iter_mut() {
        let gain = match () {
            _ if name.contains("q_proj") || name.contains("k_proj") => 8.0,
            _ if name.contains("gate_proj") || name.contains("up_proj") => 4.0,
            _ => 1.0,
        };
        *t = (&*t * gain).unwrap();
    }
    candle_core::safetensors::save(&tensors, &file).unwrap();
    (dir, items)
}

/// `n` values in [-0.5, 0.5) from `seed`, the same on every side and every run.
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

fn host(t: &Tensor) -> Vec<f32> {
    t.to_device(&candle_core::Device::Cpu)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The logits of a pass over `len` random positions, then of `more` positions continuing
/// from its cache (the decode path), on one side.
fn pass_logits(side: Side, model: &Model, len: usize, more: usize) -> (Vec<f32>, Vec<f32>) {
    side.run(|| {
        let llama = model.llama();
        let d = llama.hidden_size();
        let x = Tensor::from_vec(
            noise((len + more) * d, 11),
            (1, len + more, d),
            model.device(),
        )
        .unwrap();
        let mut cache = llama.new_cache();
        let first = llama
            .forward(&x.narrow(1, 0, len).unwrap(), None, &mut cache)
            .unwrap();
        let rest = llama
            .forward(&x.narrow(1, len, more).unwrap(), None, &mut cache)
            .unwrap();
        (
            host(&llama.logits(&first).unwrap()),
            host(&llama.logits(&rest).unwrap()),
        )
    })
}

#[test]
fn forward_passes_give_the_same_logits() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, _) = checkpoint(30);
    let mut got = Vec::new();
    for side in SIDES {
        let model = side.load(&dir.path().join("model"));
        got.push(pass_logits(side, &model, 37, 5));
    }
    let (prefill, decode) = (max_abs(&got[0].0, &got[1].0), max_abs(&got[0].1, &got[1].1));
    assert!(prefill <= 1e-3, "prefill logits differ by {prefill:.2e}");
    assert!(
        decode <= 1e-3,
        "cached continuation logits differ by {decode:.2e}"
    );
}

/// Q8_0 weights: our kernel on the CPU, candle's quantized matmul on the device path. The
/// two quantize the activations differently, so the bound is looser than f32's.
#[test]
fn q8_0_forward_passes_give_close_logits() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, _) = checkpoint(30);
    let mut got = Vec::new();
    for side in SIDES {
        let model = side.load_with(&dir.path().join("model"), Some(Quantization::Q8_0));
        got.push(pass_logits(side, &model, 37, 5));
    }
    let (prefill, decode) = (max_abs(&got[0].0, &got[1].0), max_abs(&got[0].1, &got[1].1));
    println!("Q8_0 logits: prefill {prefill:.2e} apart, cached continuation {decode:.2e}");
    assert!(
        prefill <= Q8_TOLERANCE,
        "prefill logits differ by {prefill:.2e}"
    );
    assert!(
        decode <= Q8_TOLERANCE,
        "cached continuation logits differ by {decode:.2e}"
    );
}

// Measured between the two on the CPU: 3.4e-3 with Q8_0 weights in the row layout (f32
// multiply-adds), 3.7e-3 in the interleaved one (int8, AVX-512 VNNI).
const Q8_TOLERANCE: f32 = 2e-2;

/// Answers and candidate scores of one side: per user and layout, the top 20 with their
/// scores and the scores of every catalogue item.
type Answers = Vec<(Vec<(u64, f32)>, Vec<(u64, f32)>)>;

fn answers(side: Side, dir: &Path, items: &[(u64, String)]) -> Answers {
    let model = Arc::new(side.load(dir));
    side.run(|| {
        let cat: Catalog = common::catalog(&model, items);
        let ids: Vec<u64> = items.iter().map(|(id, _)| *id).collect();
        let mut out = Vec::new();
        for layout in ["vanilla", "pft-s:5", "stream-s:5"] {
            let layout = Layout::parse(layout).unwrap();
            for len in [3usize, 12, 31] {
                let history: Vec<u64> = (0..len).map(|i| ids[(i * 7 + len) % ids.len()]).collect();
                let user = common::user_with(&cat, &history);
                let q = QueryOptions::default().with_k(20).with_layout(layout);
                let top = recommend(&cat, &user, &q).unwrap();
                let all = rank(
                    &cat,
                    &user,
                    &ids,
                    &RankOptions::default().with_layout(layout),
                )
                .unwrap();
                out.push((
                    top.items.iter().map(|r| (r.item_id, r.score)).collect(),
                    all.items.iter().map(|c| (c.item_id, c.score)).collect(),
                ));
            }
        }
        out
    })
}

#[test]
fn queries_give_the_same_top_20_and_candidate_scores() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, items) = checkpoint(60);
    let ckpt = dir.path().join("model");
    let got: Vec<Answers> = SIDES.iter().map(|&s| answers(s, &ckpt, &items)).collect();
    for (case, (a, b)) in got[0].iter().zip(&got[1]).enumerate() {
        let (top_a, top_b) = (&a.0, &b.0);
        assert_eq!(top_a.len(), 20, "case {case}: a full top 20");
        assert_eq!(top_a.len(), top_b.len(), "case {case}");
        for (i, (x, y)) in top_a.iter().zip(top_b).enumerate() {
            assert!(
                (x.1 - y.1).abs() <= 1e-3,
                "case {case}, rank {i}: score {} vs {}",
                x.1,
                y.1
            );
            // Items whose scores tie within the tolerance may swap places.
            let tied = |j: usize| top_a.get(j).is_some_and(|t| (t.1 - x.1).abs() <= 1e-4);
            assert!(
                x.0 == y.0 || tied(i + 1) || (i > 0 && tied(i - 1)),
                "case {case}, rank {i}: item {} vs {}",
                x.0,
                y.0
            );
        }
        let (all_a, all_b) = (&a.1, &b.1);
        assert_eq!(all_a.len(), items.len());
        for (x, y) in all_a.iter().zip(all_b) {
            assert_eq!(x.0, y.0, "case {case}: candidates in input order");
            assert!(
                (x.1 - y.1).abs() <= 1e-3,
                "case {case}, item {}: {} vs {}",
                x.0,
                x.1,
                y.1
            );
        }
    }
}

/// A user's consecutive targets in `layout` (as in tests/packing.rs).
fn user_examples(stream: &[u32], layout: Layout, k: usize) -> Vec<Example> {
    (1..stream.len())
        .map(|t| {
            let start = t.saturating_sub(k);
            let start = start + layout.stream_skip(start);
            let history = stream[start..t].to_vec();
            Example {
                segments: segments(layout, history.len()),
                history,
                target: stream[t],
            }
        })
        .collect()
}

/// The summed loss and the gradients (on the host, by parameter name) of one side's step.
type Gradients = Vec<(String, Option<Vec<f32>>)>;

fn step(
    side: Side,
    dir: &Path,
    items: &[(u64, String)],
    lora: bool,
    packed: bool,
) -> (f64, Gradients) {
    let mut model = side.load(dir);
    side.run(|| {
        let params: Vec<(String, Var)> = if lora {
            let cfg = LoraConfig::default().with_rank(4).with_alpha(8.0);
            let llama = model.llama_mut();
            let vars = llama.attach_lora(&cfg, None, 5, None).unwrap();
            // LoRA's B starts at zero, which would leave A without a gradient.
            for (name, v) in &vars {
                if name.ends_with("lora_B.weight") {
                    let t = Tensor::from_vec(noise(v.elem_count(), 3), v.shape(), v.device())
                        .unwrap()
                        .affine(0.1, 0.0)
                        .unwrap();
                    v.set(&t).unwrap();
                }
            }
            llama.set_differentiable(true);
            vars
        } else {
            make_trainable(&mut model).unwrap()
        };
        let model = Arc::new(model);
        let cat = common::catalog(&model, items);
        let snap = cat.snapshot();
        let a: Vec<u32> = (0..14).map(|i| (i * 7 % 40) as u32).collect();
        let b: Vec<u32> = (0..12).map(|i| ((i * 3 + 5) % 40) as u32).collect();
        let mut batch = user_examples(&a, Layout::StreamS { l: 3 }, 20);
        batch.extend(user_examples(&b, Layout::PftI { m: 2 }, 6));
        let (nll, grads): (f64, GradStore) = if packed {
            let trees = pack(&model, &snap, &batch, 400);
            let mut nll = 0f64;
            let mut total: Option<Tensor> = None;
            for tree in &trees {
                let bl = tree_loss(&model, &snap, tree).unwrap();
                nll += bl.nll_sum.to_scalar::<f32>().unwrap() as f64;
                total = Some(match total {
                    None => bl.nll_sum,
                    Some(t) => (t + bl.nll_sum).unwrap(),
                });
            }
            (nll, total.unwrap().backward().unwrap())
        } else {
            let bl = batch_loss(&model, &snap, &batch).unwrap();
            (
                bl.nll_sum.to_scalar::<f32>().unwrap() as f64,
                bl.nll_sum.backward().unwrap(),
            )
        };
        let grads = params
            .iter()
            .map(|(name, v)| (name.clone(), grads.get(v.as_tensor()).map(host)))
            .collect();
        (nll, grads)
    })
}

#[test]
fn a_training_step_gives_the_same_loss_and_gradients() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (dir, items) = checkpoint(40);
    for (lora, packed) in [(false, true), (false, false), (true, true)] {
        let ckpt = dir.path().join("model");
        let a = step(Side::Kernels, &ckpt, &items, lora, packed);
        let b = step(Side::Device, &ckpt, &items, lora, packed);
        let what = format!("lora {lora}, packed {packed}");
        assert!(
            (a.0 - b.0).abs() <= 1e-5 * a.0.abs(),
            "{what}: loss {} vs {}",
            a.0,
            b.0
        );
        assert_eq!(a.1.len(), b.1.len());
        for ((name, ga), (_, gb)) in a.1.iter().zip(&b.1) {
            let (ga, gb) = match (ga, gb) {
                (Some(ga), Some(gb)) => (ga, gb),
                (None, None) => continue,
                _ => panic!("{what}: {name} has a gradient on one side only"),
            };
            let norm = ga.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            let diff = ga
                .iter()
                .zip(gb)
                .map(|(x, y)| (x - y) * (x - y))
                .sum::<f32>()
                .sqrt();
            assert!(
                diff / norm <= 1e-4,
                "{what}: {name}'s gradient differs by {:.2e} (relative)",
                diff / norm
            );
        }
    }
}

/// One AdamW step (with weight decay) from the same values and gradients on one side.
fn adamw_step(side: Side, values: &[Vec<f32>], grads: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let device = patchrec::model::parse_device(&side.device()).unwrap();
    side.run(|| {
        let params: Vec<(String, Var)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    format!("p{i}"),
                    Var::from_slice(v, v.len(), &device).unwrap(),
                )
            })
            .collect();
        // The gradient of Σ p·g with respect to p is g.
        let mut loss: Option<Tensor> = None;
        for ((_, p), g) in params.iter().zip(grads) {
            let g = Tensor::from_slice(g, g.len(), &device).unwrap();
            let term = (p.as_tensor() * g).unwrap().sum_all().unwrap();
            loss = Some(match loss {
                None => term,
                Some(l) => (l + term).unwrap(),
            });
        }
        let store = loss.unwrap().backward().unwrap();
        let cfg = AdamWConfig {
            weight_decay: 0.1,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(params.clone(), cfg).unwrap();
        for lr in [1e-3, 5e-4] {
            opt.step_scaled(&store, lr, 0.5).unwrap();
        }
        params.iter().map(|(_, p)| host(p.as_tensor())).collect()
    })
}

#[test]
fn an_optimizer_step_moves_the_weights_alike() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let sizes = [1usize, 7, 64, 1000];
    let values: Vec<Vec<f32>> = sizes.iter().map(|&n| noise(n, n as u64)).collect();
    let grads: Vec<Vec<f32>> = sizes.iter().map(|&n| noise(n, 7 * n as u64)).collect();
    let a = adamw_step(Side::Kernels, &values, &grads);
    let b = adamw_step(Side::Device, &values, &grads);
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        let d = max_abs(x, y);
        assert!(
            d <= 1e-6,
            "parameter {i}: AdamW's updates differ by {d:.2e}"
        );
        assert!(max_abs(x, &values[i]) > 1e-4, "parameter {i} moved");
    }
}
