//! Packed training: a pass over one token tree gives the loss and every gradient of the
//! same examples trained one sequence each, and a stage trained packed ends at the
//! weights of the same stage trained unpacked.

mod common;

use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::Var;
use patchrec::history::{segments, Layout};
use patchrec::train::batch::{batch_loss, Example};
use patchrec::train::pack::{pack, tree_loss};
use patchrec::train::trainer::make_trainable;
use patchrec::train::{train, Control, TrainConfig, TrainOptions};

/// A user's consecutive targets in `layout` over a stream of catalogue indices, each
/// seeing at most `k` items (from a session boundary for `stream-s:L`).
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

fn relative_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f64 {
    let norm = |t: &candle_core::Tensor| {
        t.sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
            .sqrt() as f64
    };
    norm(&(a - b).unwrap()) / norm(b).max(1e-12)
}

fn sum_grads(params: &[(String, Var)], acc: Option<GradStore>, g: GradStore) -> GradStore {
    let Some(mut acc) = acc else { return g };
    for (_, v) in params {
        if let Some(new) = g.get(v.as_tensor()) {
            let sum = match acc.get(v.as_tensor()) {
                Some(old) => (old + new).unwrap(),
                None => new.clone(),
            };
            acc.insert(v.as_tensor(), sum);
        }
    }
    acc
}

#[test]
fn a_packed_pass_gives_the_loss_and_gradients_of_unpacked_sequences() {
    let items = common::titles(40);
    let mut model = std::sync::Arc::try_unwrap(common::tiny_model(40))
        .ok()
        .unwrap();
    let params = make_trainable(&mut model).unwrap();
    let model = std::sync::Arc::new(model);
    let cat = common::catalog(&model, &items);
    let snap = cat.snapshot();

    // Two users' streams in the stream-aligned layout (K cuts the second one's window,
    // which then moves a session at a time), a vanilla user, PFT-I examples that share
    // only the template's head, and one example twice.
    let a: Vec<u32> = (0..14).map(|i| (i * 7 % 40) as u32).collect();
    let b: Vec<u32> = (0..22).map(|i| ((i * 3 + 5) % 40) as u32).collect();
    let mut batch = user_examples(&a, Layout::StreamS { l: 3 }, 20);
    batch.extend(user_examples(&b, Layout::StreamS { l: 3 }, 7));
    batch.extend(user_examples(&a[..9], Layout::Vanilla, 6));
    batch.extend(user_examples(&b[..6], Layout::PftI { m: 2 }, 20));
    batch.push(batch[4].clone());

    // Reference: every example as its own sequence.
    let mut want_nll = 0f64;
    let mut want: Option<GradStore> = None;
    for ex in &batch {
        let bl = batch_loss(&model, &snap, std::slice::from_ref(ex)).unwrap();
        want_nll += bl.nll_sum.to_scalar::<f32>().unwrap() as f64;
        want = Some(sum_grads(&params, want, bl.nll_sum.backward().unwrap()));
    }
    let want = want.unwrap();

    // Packed into trees of at most 800 positions.
    let trees = pack(&model, &snap, &batch, 800);
    assert!(trees.len() > 1, "the batch spans several passes");
    let unpacked: usize = trees.iter().map(|t| t.unpacked_positions()).sum();
    let packed: usize = trees.iter().map(|t| t.len()).sum();
    assert_eq!(
        trees.iter().map(|t| t.examples()).sum::<usize>(),
        batch.len()
    );
    assert!(
        packed * 4 < unpacked * 3,
        "shared prefixes are computed once: {packed} positions for {unpacked} unpacked"
    );
    let mut got_nll = 0f64;
    let mut got: Option<GradStore> = None;
    for tree in &trees {
        let bl = tree_loss(&model, &snap, tree).unwrap();
        got_nll += bl.nll_sum.to_scalar::<f32>().unwrap() as f64;
        got = Some(sum_grads(&params, got, bl.nll_sum.backward().unwrap()));
    }
    let got = got.unwrap();

    assert!(
        (got_nll - want_nll).abs() <= 1e-5 * want_nll.abs(),
        "loss {got_nll} packed vs {want_nll} unpacked"
    );
    let mut worst = (0f64, String::new());
    for (name, v) in &params {
        let (g, w) = (got.get(v.as_tensor()), want.get(v.as_tensor()));
        match (g, w) {
            (Some(g), Some(w)) => {
                let d = relative_diff(g, w);
                if d > worst.0 {
                    worst = (d, name.clone());
                }
            }
            (None, None) => {}
            _ => panic!("{name}: a gradient on one side only"),
        }
    }
    assert!(
        worst.0 <= 1e-5,
        "gradients differ by {:.2e} (relative, {})",
        worst.0,
        worst.1
    );
}

fn config(out: &Path, data: &Path, pack: bool) -> TrainConfig {
    let text = format!(
        r#"
out = "{}"
data = "{}"
seed = 3
[model.init]
vocab_size = 400
hidden = 32
layers = 2
heads = 4
kv_heads = 2
[[stage]]
kind = "stream-s"
l = 3
max_history = 8
max_steps = 4
batch_size = 12
micro_batch = 3
learning_rate = 3e-3
order = "users"
pack = {pack}
pack_positions = 600
"#,
        out.display(),
        data.display()
    );
    TrainConfig::from_toml(&text, Path::new(".")).unwrap()
}

#[test]
fn a_stage_trained_packed_ends_at_the_unpacked_weights() {
    let data = tempfile::tempdir().unwrap();
    common::write_dataset(data.path(), 16, 5, 14);
    let out = tempfile::tempdir().unwrap();
    let mut ends = Vec::new();
    for pack in [false, true] {
        let dir = out.path().join(if pack { "packed" } else { "unpacked" });
        let cfg = config(&dir, data.path(), pack);
        let done = train(
            &cfg,
            &TrainOptions::default().with_resume(false).with_quiet(true),
            &mut |_| Control::Continue,
        )
        .unwrap();
        ends.push(common::weights(&done.checkpoint.unwrap()));
    }
    let start = common::weights(&out.path().join("unpacked/00-init"));
    // Float sums in another order move the weights slightly differently; each tensor
    // must end within 0.5 % of how far training moved it.
    let mut moved_most = 0f64;
    for (((name, a), (_, b)), (_, s)) in ends[0].iter().zip(&ends[1]).zip(&start) {
        let d = common::max_abs_diff(a, b) as f64;
        let moved = common::max_abs_diff(a, s) as f64;
        assert!(
            d <= 5e-3 * moved.max(1e-4),
            "{name}: packed and unpacked weights differ by {d:.2e} (training moved them {moved:.2e})"
        );
        moved_most = moved_most.max(moved);
    }
    assert!(
        moved_most > 1e-3,
        "training moved the weights ({moved_most:.2e})"
    );
}
