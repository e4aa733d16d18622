//! Cached (incremental, shared-prefix, batched) forward passes give the logits of one
//! full forward pass.

mod common;

use candle_core::{Device, Tensor};

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
    let opts = common::tiny_options()
        .with_hidden_size(64)
        .with_num_layers(3)
        .with_num_heads(4)
        .with_num_kv_heads(2);
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

/// The logits of the last position of `prompt` followed by `path`, by one full pass.
fn full_pass_last(llama: &patchrec::model::Llama, prompt: &Tensor, path: &[&Tensor]) -> Tensor {
    let mut parts = vec![prompt];
    parts.extend_from_slice(path);
    let whole = Tensor::cat(&parts, 1).unwrap();
    let len = whole.dim(1).unwrap();
    let mut c = llama.new_cache();
    let hidden = llama.forward(&whole, None, &mut c).unwrap();
    llama
        .logits(&hidden.narrow(1, len - 1, 1).unwrap())
        .unwrap()
}

#[test]
fn token_tree_rows_over_shared_prompts_match_separate_full_passes() {
    use patchrec::model::DecodeGroup;
    let model = model();
    let llama = model.llama();
    // Two searches with their own prompts, decoded in the same passes.
    let prompts = [random_embeds(9, 64, 2), random_embeds(6, 64, 3)];
    let prefixes: Vec<_> = prompts
        .iter()
        .map(|p| {
            let mut c = llama.new_cache();
            llama.forward(p, None, &mut c).unwrap();
            c
        })
        .collect();
    // One token embedding per tree node; node n of search s is `tok(s, n)`.
    let tok = |s: usize, n: usize| random_embeds(1, 64, 100 + 10 * s as u64 + n as u64);
    let mut trees = [llama.new_tree(), llama.new_tree()];
    // Pass 1: search 0 feeds two first tokens (nodes 0, 1) and a token continuing node 0
    // in the same pass (node 2); search 1 feeds one (node 0).
    // Pass 2: search 0 continues node 1 (node 3), node 2 (node 4) and node 0 again (node
    // 5): rows of three depths; search 1 continues its node 0 (node 1).
    let passes: [[Vec<Vec<u32>>; 2]; 2] = [
        [vec![vec![0], vec![1], vec![0, 2]], vec![vec![0]]],
        [
            vec![vec![1, 3], vec![0, 2, 4], vec![0, 5]],
            vec![vec![0, 1]],
        ],
    ];
    let mut held = [0usize, 0];
    for contexts in &passes {
        let mut rows = Vec::new();
        for (s, ctxs) in contexts.iter().enumerate() {
            for r in 0..ctxs.len() {
                rows.push(tok(s, held[s] + r));
            }
        }
        let embeds = Tensor::cat(&rows, 0).unwrap(); // [rows, 1, hidden]
        let [t0, t1] = &mut trees;
        let mut groups = [
            DecodeGroup {
                prefix: &prefixes[0],
                tree: t0,
                contexts: &contexts[0],
            },
            DecodeGroup {
                prefix: &prefixes[1],
                tree: t1,
                contexts: &contexts[1],
            },
        ];
        let got = llama
            .logits(&llama.forward_groups(&embeds, &mut groups).unwrap())
            .unwrap();
        let mut row = 0;
        for (s, ctxs) in contexts.iter().enumerate() {
            for ctx in ctxs {
                let path: Vec<Tensor> = ctx.iter().map(|&n| tok(s, n as usize)).collect();
                let want = full_pass_last(llama, &prompts[s], &path.iter().collect::<Vec<_>>());
                let diff = common::max_abs_diff(&want, &got.narrow(0, row, 1).unwrap());
                assert!(diff < 1e-4, "search {s}, context {ctx:?} differs by {diff}");
                row += 1;
            }
            held[s] += ctxs.len();
        }
    }
    assert_eq!((trees[0].len(), trees[1].len()), (6, 2));
    // A context that does not end with the row's own node, or names a node that does not
    // exist, is refused.
    for bad in [vec![vec![0u32]], vec![vec![9u32, 6]]] {
        let mut groups = [DecodeGroup {
            prefix: &prefixes[0],
            tree: &mut trees[0],
            contexts: &bad,
        }];
        let e = llama.forward_groups(&tok(0, 6), &mut groups).unwrap_err();
        assert!(e.to_string().contains("tree rows"), "{e}");
    }
}

/// The fused inference attention (the default on the CPU) against the same attention
/// composed from candle's ops: a prefill in two chunks (causal rows after cached ones)
/// and token-tree passes over a shared prompt give the same logits.
#[test]
fn fused_attention_matches_candles_composition() {
    use patchrec::model::DecodeGroup;
    let run = |llama: &patchrec::model::Llama| -> Vec<Tensor> {
        let prompt = random_embeds(11, 64, 4);
        let mut cache = llama.new_cache();
        let first = llama.forward(&prompt.narrow(1, 0, 6).unwrap(), None, &mut cache);
        let rest = llama.forward(&prompt.narrow(1, 6, 5).unwrap(), None, &mut cache);
        let mut out = vec![
            llama.logits(&first.unwrap()).unwrap(),
            llama.logits(&rest.unwrap()).unwrap(),
        ];
        let mut tree = llama.new_tree();
        let passes: [Vec<Vec<u32>>; 2] = [
            vec![vec![0], vec![1], vec![0, 2]],
            vec![vec![1, 3], vec![0, 2, 4], vec![0, 5]],
        ];
        for (p, contexts) in passes.iter().enumerate() {
            let rows: Vec<Tensor> = (0..contexts.len())
                .map(|r| random_embeds(1, 64, 200 + 10 * p as u64 + r as u64))
                .collect();
            let embeds = Tensor::cat(&rows, 0).unwrap();
            let mut groups = [DecodeGroup {
                prefix: &cache,
                tree: &mut tree,
                contexts,
            }];
            let hidden = llama.forward_groups(&embeds, &mut groups).unwrap();
            out.push(llama.logits(&hidden).unwrap());
        }
        out
    };
    let model = model();
    let fused = run(model.llama());
    let mut model = std::sync::Arc::into_inner(model).expect("one owner");
    model.llama_mut().set_fused_attention(false);
    let composed = run(model.llama());
    for (i, (a, b)) in fused.iter().zip(&composed).enumerate() {
        let diff = common::max_abs_diff(a, b);
        assert!(
            diff < 1e-5,
            "output {i}: fused and composed differ by {diff}"
        );
    }
}

/// A batch of two sequences (which the fused attention does not take: candle's ops run,
/// with the causal mask) gives each sequence the logits it gets alone.
#[test]
fn batched_prefill_matches_each_sequence_alone() {
    let model = model();
    let llama = model.llama();
    let seqs = [random_embeds(8, 64, 5), random_embeds(8, 64, 6)];
    let both = Tensor::cat(&[&seqs[0], &seqs[1]], 0).unwrap();
    let mut cache = llama.new_cache();
    let batched = llama
        .logits(&llama.forward(&both, None, &mut cache).unwrap())
        .unwrap();
    for (b, seq) in seqs.iter().enumerate() {
        let mut c = llama.new_cache();
        let alone = llama
            .logits(&llama.forward(seq, None, &mut c).unwrap())
            .unwrap();
        let diff = common::max_abs_diff(&alone, &batched.narrow(0, b, 1).unwrap());
        assert!(diff < 1e-4, "sequence {b} differs by {diff} in a batch");
    }
}
