//! Bad input from a caller: every case is a clear error naming what was wrong, never an
//! abort, a hang, or a model that silently answers nothing. docs/RELIABILITY.md lists
//! these cases by class; the C ABI's own cases are in tests/abi.rs and tests/c.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};

use patchrec::ffi::patchrec_status_t::{self, *};
use patchrec::train::{train, Control, TrainConfig, TrainOptions};
use patchrec::{Catalog, Error, Model, ModelOptions};

fn status(e: &Error) -> patchrec_status_t {
    e.into()
}

/// `result` failed with `want`, and its message names `needle`.
#[track_caller]
fn fails<T>(result: patchrec::Result<T>, want: patchrec_status_t, needle: &str) {
    let Err(e) = result else {
        panic!("expected {want:?} naming {needle:?}, got success");
    };
    assert_eq!(status(&e), want, "{e}");
    assert!(e.to_string().contains(needle), "{needle:?} not in: {e}");
}

// ---------------------------------------------------------------- training configs

fn config_text(out: &Path, data: &Path, init: &str, stage: &str) -> String {
    format!(
        "out = {out:?}\ndata = {data:?}\n[model.init]\n{init}\n[[stage]]\nkind = \"pft-i\"\nm = 2\n{stage}\n"
    )
}

fn parse(init: &str, stage: &str) -> patchrec::Result<TrainConfig> {
    TrainConfig::from_toml(
        &config_text(Path::new("out"), Path::new("data"), init, stage),
        Path::new("."),
    )
}

#[test]
fn nonsense_hyper_parameters_are_refused_by_name() {
    parse("", "").expect("the defaults are valid");
    for (stage, field) in [
        ("learning_rate = nan", "learning_rate"),
        ("learning_rate = inf", "learning_rate"),
        ("learning_rate = -0.001", "learning_rate"),
        ("learning_rate = 0.0", "learning_rate"),
        ("weight_decay = nan", "weight_decay"),
        ("weight_decay = -0.1", "weight_decay"),
        ("weight_decay = inf", "weight_decay"),
        ("max_grad_norm = nan", "max_grad_norm"),
        ("max_grad_norm = 0.0", "max_grad_norm"),
        ("max_grad_norm = -inf", "max_grad_norm"),
        ("warmup_ratio = 1.5", "warmup_ratio"),
        ("warmup_ratio = -0.1", "warmup_ratio"),
        ("warmup_ratio = nan", "warmup_ratio"),
        ("epochs = inf", "epochs"),
        ("epochs = nan", "epochs"),
        ("epochs = 0.0", "epochs"),
        ("epochs = 1e300", "epochs"),
        ("batch_size = 0", "batch_size"),
        ("micro_batch = 0", "micro_batch"),
        ("batch_size = 100000000", "batch_size"),
        ("max_steps = 0", "max_steps"),
        ("checkpoint_every = 0", "checkpoint_every"),
        ("max_history = 0", "max_history"),
        ("learning_rate = \"fast\"", "invalid type"),
        ("colour = 3", "colour"),
    ] {
        fails(parse("", stage), PATCHREC_INVALID_ARGUMENT, field);
    }
}

#[test]
fn a_model_too_big_to_allocate_is_an_error_not_an_abort() {
    // Each of these aborted the process ("memory allocation of N bytes failed").
    fails(
        parse("vocab_size = 1000000000", ""),
        PATCHREC_INVALID_ARGUMENT,
        "vocab_size",
    );
    fails(
        parse("hidden = 1000000", ""),
        PATCHREC_OUT_OF_MEMORY,
        "hidden 1000000",
    );
    fails(
        parse("layers = 4000\nhidden = 4096", ""),
        PATCHREC_OUT_OF_MEMORY,
        "4000 layers",
    );
    fails(
        parse("vocab_size = 0", ""),
        PATCHREC_INVALID_ARGUMENT,
        "vocab_size",
    );
    fails(
        parse("heads = 3\nkv_heads = 2", ""),
        PATCHREC_INVALID_ARGUMENT,
        "num_key_value_heads",
    );
    fails(
        parse("hidden = 0", ""),
        PATCHREC_INVALID_ARGUMENT,
        "must be positive",
    );
    // The same check guards the library's own entry point.
    let opts = patchrec::init::InitOptions::default().with_hidden_size(1_000_000);
    let template = patchrec::text::PromptTemplate::movielens(patchrec::text::ChatFormat::ChatMl);
    let e = patchrec::init::init_model(&["a title"], template, &opts).err();
    assert!(
        matches!(e, Some(Error::OutOfMemory(ref m)) if m.contains("hidden 1000000")),
        "{e:?}"
    );
}

// ---------------------------------------------------------------- checkpoints

/// A saved tiny checkpoint over `titles(12)`.
fn saved_checkpoint(dir: &Path) -> PathBuf {
    let model = common::tiny_model(12);
    let ckpt = dir.join("ckpt");
    model.save(&ckpt).unwrap();
    ckpt
}

fn load(dir: &Path) -> patchrec::Result<Model> {
    Model::load(dir, &ModelOptions::default())
}

fn edit_config(ckpt: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = ckpt.join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut json);
    std::fs::write(&path, json.to_string()).unwrap();
}

#[test]
fn nonsense_model_hyper_parameters_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = saved_checkpoint(tmp.path());
    load(&ckpt).expect("the saved checkpoint loads");
    for (field, value, needle) in [
        ("rope_theta", serde_json::json!(0.0), "rope_theta"),
        ("rope_theta", serde_json::json!(-10000.0), "rope_theta"),
        ("rms_norm_eps", serde_json::json!(0.0), "rms_norm_eps"),
        ("rms_norm_eps", serde_json::json!(-1e-5), "rms_norm_eps"),
        (
            "hidden_size",
            serde_json::json!(1_000_000_000u64),
            "hidden_size",
        ),
        (
            "num_hidden_layers",
            serde_json::json!(1_000_000u64),
            "num_hidden_layers",
        ),
        ("vocab_size", serde_json::json!(1u64 << 40), "vocab_size"),
        ("head_dim", serde_json::json!(1u64 << 40), "head_dim"),
        (
            "rope_scaling",
            serde_json::json!({"rope_type": "llama3", "factor": -8.0}),
            "rope_scaling",
        ),
    ] {
        let copy = tmp.path().join(format!("{field}-{value}"));
        copy_dir(&ckpt, &copy);
        edit_config(&copy, |j| j[field] = value.clone());
        fails(load(&copy), PATCHREC_FORMAT, needle);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn non_finite_weights_are_refused_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = saved_checkpoint(tmp.path());
    let path = ckpt.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &candle_core::Device::Cpu).unwrap();
    let name = "model.layers.0.mlp.down_proj.weight";
    let t = &tensors[name];
    let mut values = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    values[3] = f32::NAN;
    let bad = candle_core::Tensor::from_vec(values, t.dims(), &candle_core::Device::Cpu).unwrap();
    tensors.insert(name.to_string(), bad);
    candle_core::safetensors::save(&tensors, &path).unwrap();
    fails(load(&ckpt), PATCHREC_FORMAT, name);
}

#[test]
fn a_tokenizer_that_does_not_belong_to_the_weights_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = saved_checkpoint(tmp.path());

    // Another model's tokenizer (trained on other titles, so a different vocabulary).
    let other = common::tiny_model_with(
        &common::tiny_options().with_vocab_size(700),
        &common::titles(40),
    );
    let swapped = tmp.path().join("swapped");
    copy_dir(&ckpt, &swapped);
    other
        .tokenizer()
        .save(&swapped.join("tokenizer.json"))
        .unwrap();
    fails(
        load(&swapped),
        PATCHREC_FORMAT,
        "does not belong to these weights",
    );

    // The same tokenizer with the PatchRec tokens removed from its added tokens.
    let stripped = tmp.path().join("stripped");
    copy_dir(&ckpt, &stripped);
    let path = stripped.join("tokenizer.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["added_tokens"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["content"] != "<|item_sep|>");
    json["model"]["vocab"]
        .as_object_mut()
        .unwrap()
        .remove("<|item_sep|>");
    std::fs::write(&path, json.to_string()).unwrap();
    fails(load(&stripped), PATCHREC_FORMAT, "tokenizer.json");

    // A tokenizer larger than the embedding table, with no record to compare against.
    let bigger = tmp.path().join("bigger");
    copy_dir(&ckpt, &bigger);
    edit_config(&bigger, |j| j["vocab_size"] = serde_json::json!(300));
    let meta = bigger.join("patchrec.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    json.as_object_mut().unwrap().remove("vocab");
    std::fs::write(&meta, json.to_string()).unwrap();
    fails(load(&bigger), PATCHREC_FORMAT, "300 rows");
}

#[test]
fn odd_files_in_a_checkpoint_get_one_status_per_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = saved_checkpoint(tmp.path());

    // A FIFO as tokenizer.json: opening it would block forever.
    let fifo = tmp.path().join("fifo");
    copy_dir(&ckpt, &fifo);
    std::fs::remove_file(fifo.join("tokenizer.json")).unwrap();
    assert!(Command::new("mkfifo")
        .arg(fifo.join("tokenizer.json"))
        .status()
        .unwrap()
        .success());
    fails(load(&fifo), PATCHREC_IO, "FIFO");

    // A directory named model.safetensors is that, not "no model.safetensors".
    let dir = tmp.path().join("dir");
    copy_dir(&ckpt, &dir);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    std::fs::create_dir(dir.join("model.safetensors")).unwrap();
    fails(load(&dir), PATCHREC_IO, "is a directory");

    // config.json pointing at /dev/zero would be read for ever.
    let zero = tmp.path().join("zero");
    copy_dir(&ckpt, &zero);
    std::fs::remove_file(zero.join("config.json")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", zero.join("config.json")).unwrap();
    fails(load(&zero), PATCHREC_IO, "not a regular file");

    // Missing files are IO; malformed ones FORMAT.
    let missing = tmp.path().join("missing");
    copy_dir(&ckpt, &missing);
    std::fs::remove_file(missing.join("tokenizer.json")).unwrap();
    fails(load(&missing), PATCHREC_IO, "tokenizer.json");
    let garbage = tmp.path().join("garbage");
    copy_dir(&ckpt, &garbage);
    std::fs::write(garbage.join("tokenizer.json"), "{ not json").unwrap();
    fails(load(&garbage), PATCHREC_FORMAT, "tokenizer.json");
    std::fs::write(garbage.join("config.json"), [0xffu8, 0xfe, 0x00]).unwrap();
    fails(load(&garbage), PATCHREC_FORMAT, "not UTF-8");
}

#[test]
fn a_newer_format_or_an_absent_device_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = saved_checkpoint(tmp.path());
    // A build without the `cuda` feature, a machine without a driver, or an ordinal no
    // machine has: a clear status, no panic. On a GPU (scripts/gpu-check.sh sets
    // PATCHREC_TEST_DEVICE), the device it names loads.
    let on = |d: &str| ModelOptions::default().with_device(Some(d.into()));
    match std::env::var("PATCHREC_TEST_DEVICE") {
        Ok(gpu) if gpu.starts_with("cuda") => {
            let model = Model::load(&ckpt, &on(&gpu)).unwrap();
            assert!(model.device().is_cuda());
        }
        _ => fails(
            Model::load(&ckpt, &on("cuda:0")),
            PATCHREC_UNSUPPORTED,
            "cuda:0",
        ),
    }
    fails(
        Model::load(&ckpt, &on("cuda:99")),
        PATCHREC_UNSUPPORTED,
        "cuda:99",
    );
    let on_tpu = ModelOptions::default().with_device(Some("tpu".into()));
    fails(
        Model::load(&ckpt, &on_tpu),
        PATCHREC_INVALID_ARGUMENT,
        "tpu",
    );
    let meta = ckpt.join("patchrec.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta).unwrap()).unwrap();
    json["format_version"] = 99.into();
    std::fs::write(&meta, json.to_string()).unwrap();
    fails(load(&ckpt), PATCHREC_FORMAT, "format_version 99");
}

#[test]
fn checkpoints_carry_the_files_transformers_auto_classes_read() {
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = saved_checkpoint(tmp.path());
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(ckpt.join(name)).unwrap()).unwrap()
    };
    let tokenizer_config = read("tokenizer_config.json");
    assert_eq!(
        tokenizer_config["tokenizer_class"],
        "PreTrainedTokenizerFast"
    );
    assert_eq!(tokenizer_config["add_bos_token"], false);
    assert_eq!(tokenizer_config["eos_token"], "<|im_end|>");
    let generation = read("generation_config.json");
    let model = load(&ckpt).unwrap();
    assert_eq!(generation["eos_token_id"], model.special().answer_end);
}

// ---------------------------------------------------------------- catalogue

#[test]
fn titles_that_cannot_be_served_are_refused_at_registration() {
    let model = common::tiny_model(12);
    let catalog = Catalog::new(model).unwrap();
    catalog.add(1, "The Red River (1950)").unwrap();
    let long = "x".repeat(1 << 20);
    let many_tokens = "Red River ".repeat(300);
    for (title, needle) in [
        (long.as_str(), "bytes"),
        (many_tokens.as_str(), "tokens"),
        ("Red\nRiver", "control character U+000A"),
        ("Red\tRiver", "control character U+0009"),
        ("\u{7}", "control character"),
        ("\u{200B}\u{200C}\u{200D}", "no visible characters"),
        ("\u{FEFF}\u{2060}", "no visible characters"),
        ("   ", "no visible characters"),
        ("", "no visible characters"),
        ("<|item_sep|>", "special tokens"),
    ] {
        fails(catalog.add(2, title), PATCHREC_INVALID_ARGUMENT, needle);
    }
    // A batch with one bad title registers nothing.
    fails(
        catalog.add_batch(&[(2, "Heat (1995)"), (3, "\u{200B}")]),
        PATCHREC_INVALID_ARGUMENT,
        "item 3",
    );
    assert_eq!(catalog.len(), 1);
    // Titles in other scripts and with inner zero-width joiners are fine.
    catalog.add(4, "Amélie (2001)").unwrap();
    catalog.add(5, "千と千尋の神隠し (2001)").unwrap();
    catalog.add(6, "👩\u{200D}🚀 (2020)").unwrap();
}

#[test]
fn batching_waits_and_widths_are_bounded() {
    use patchrec::serve::{Batcher, BatcherConfig};
    use std::time::Duration;
    let model = common::tiny_model(12);
    let catalog = Arc::new(common::catalog(&model, &common::titles(12)));
    for (config, needle) in [
        (
            BatcherConfig::default().with_max_wait(Duration::from_micros(u64::MAX)),
            "max_wait",
        ),
        (
            BatcherConfig::default().with_max_batch(usize::MAX),
            "max_batch",
        ),
        (BatcherConfig::default().with_queue(0), "queue"),
    ] {
        fails(
            Batcher::new(catalog.clone(), config),
            PATCHREC_INVALID_ARGUMENT,
            needle,
        );
    }
    Batcher::new(
        catalog,
        BatcherConfig::default().with_max_wait(Duration::from_secs(1)),
    )
    .expect("a one-second wait is allowed");
}

// ---------------------------------------------------------------- training runs

fn dataset(dir: &Path) {
    common::write_dataset(dir, 16, 6, 9);
}

fn tiny_run(out: &Path, data: &Path, stage: &str) -> TrainConfig {
    let text = config_text(
        out,
        data,
        "vocab_size = 400\nhidden = 32\nlayers = 1\nheads = 2\nkv_heads = 1",
        &format!("max_history = 6\nbatch_size = 2\nmicro_batch = 2\n{stage}"),
    );
    TrainConfig::from_toml(&text, Path::new(".")).unwrap()
}

fn quiet(resume: bool) -> TrainOptions {
    TrainOptions::default().with_resume(resume).with_quiet(true)
}

#[test]
fn a_diverging_stage_stops_with_an_error_and_keeps_its_last_resume_state() {
    let data = tempfile::tempdir().unwrap();
    dataset(data.path());
    let out = tempfile::tempdir().unwrap();
    // A finite but absurd rate: each of Adam's first updates moves a weight by ~1e38, so
    // within a few steps weights overflow to infinity and the loss to NaN.
    let cfg = tiny_run(
        out.path(),
        data.path(),
        "learning_rate = 1e38\nmax_steps = 8\ncheckpoint_every = 1",
    );
    let mut steps = 0;
    let e = train(&cfg, &quiet(false), &mut |_| {
        steps += 1;
        Control::Continue
    })
    .unwrap_err();
    assert_eq!(status(&e), PATCHREC_NON_FINITE, "{e}");
    assert!(e.to_string().contains("learning_rate"), "{e}");
    let resume = out.path().join("01-pft-i2.resume");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(resume.join("trainer.json")).expect("the resume state is kept"),
    )
    .unwrap();
    assert_eq!(
        state["step"], steps as u64,
        "the state is from the last good step"
    );
    assert!(
        !out.path().join("01-pft-i2").exists(),
        "no final checkpoint"
    );
}

#[test]
fn two_trainings_on_one_output_folder_do_not_both_run() {
    let data = tempfile::tempdir().unwrap();
    dataset(data.path());
    let out = tempfile::tempdir().unwrap();
    let cfg = tiny_run(out.path(), data.path(), "max_steps = 3");
    let inside = Arc::new(Barrier::new(2));
    let release = Arc::new(Barrier::new(2));
    let first = {
        let (cfg, inside, release) = (cfg.clone(), inside.clone(), release.clone());
        std::thread::spawn(move || {
            let mut waited = false;
            train(&cfg, &quiet(false), &mut |_| {
                if !waited {
                    waited = true;
                    inside.wait(); // the first run holds the folder here ...
                    release.wait(); // ... until the second has tried
                }
                Control::Continue
            })
        })
    };
    inside.wait();
    // Resuming or not, the second run is told the folder is in use.
    let resumed = train(&cfg, &quiet(true), &mut |_| Control::Continue);
    let fresh = train(&cfg, &quiet(false), &mut |_| Control::Continue);
    release.wait();
    fails(resumed, PATCHREC_IO, "another training is running");
    fails(fresh, PATCHREC_IO, "another training is running");
    first.join().unwrap().expect("the first run finishes");
    // Once it has, the folder can be resumed (nothing left to do).
    train(&cfg, &quiet(true), &mut |_| Control::Continue).unwrap();
}

#[test]
fn metrics_after_a_resume_hold_each_step_once() {
    let data = tempfile::tempdir().unwrap();
    dataset(data.path());
    let out = tempfile::tempdir().unwrap();
    let cfg = tiny_run(
        out.path(),
        data.path(),
        "max_steps = 5\ncheckpoint_every = 2",
    );
    let mut seen = 0;
    let stopped = train(&cfg, &quiet(false), &mut |_| {
        seen += 1;
        if seen == 2 {
            Control::Stop
        } else {
            Control::Continue
        }
    })
    .unwrap();
    assert!(stopped.stopped);
    // A run killed after its resume state was written leaves rows past that state, and
    // possibly a torn last line.
    let metrics = out.path().join("metrics.jsonl");
    let mut text = std::fs::read_to_string(&metrics).unwrap();
    let row = text.lines().last().unwrap().to_string();
    text.push_str(&row.replace("\"step\":2", "\"step\":3"));
    text.push_str("\n{\"stage\":\"pft-i2\",\"sta");
    std::fs::write(&metrics, text).unwrap();

    train(&cfg, &quiet(true), &mut |_| Control::Continue).unwrap();
    let steps: Vec<u64> = std::fs::read_to_string(&metrics)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4, 5]);
}

// ---------------------------------------------------------------- fuzzing finds (fuzz/)

/// An input of the `gguf` fuzz target, kept in its seed corpus.
fn gguf_seed(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus/gguf")
        .join(name)
}

#[test]
fn gguf_tensor_dimensions_that_overflow_are_an_error_not_a_panic() {
    // Found by the `gguf` target: `blk.0.attn_q.weight` declares dimensions whose product
    // overflows, which candle's tensor reader multiplied unchecked (a panic).
    let path = gguf_seed("crash-dims-overflow.gguf");
    fails(
        patchrec::gguf::convert(&path),
        PATCHREC_FORMAT,
        "tensor `blk.0.attn_q.weight`: dimensions",
    );
    // The seed it came from still converts.
    patchrec::gguf::convert(&gguf_seed("llama3-v2.gguf")).expect("the seed converts");
}

#[test]
fn an_empty_gguf_tensor_is_an_error_not_undefined_behaviour() {
    // Found by the `gguf` target: `blk.0.ffn_up.weight` has a dimension 0. candle read it
    // through a dangling byte pointer cast to f32 (undefined behaviour; an abort in a
    // build with debug assertions).
    fails(
        patchrec::gguf::convert(&gguf_seed("crash-empty-tensor.gguf")),
        PATCHREC_FORMAT,
        "tensor `blk.0.ffn_up.weight`: dimensions [0, 8] hold no elements",
    );
}

#[test]
fn a_gguf_alignment_of_zero_is_an_error_not_a_panic() {
    // candle divides by `general.alignment` to place the tensor data (a panic on 0).
    let path = gguf_seed("crash-alignment-zero.gguf");
    fails(
        patchrec::gguf::convert(&path),
        PATCHREC_FORMAT,
        "general.alignment",
    );
    patchrec::gguf::convert(&gguf_seed("chatml-v3.gguf")).expect("the seed converts");
}

#[test]
fn a_head_dim_beyond_any_llama_is_refused_before_rope_tables_are_allocated() {
    // head_dim was bounded only by the width limit (4M): a config.json with head_dim 2^20
    // passed, and the RoPE tables every load allocates (positions x head_dim / 2 floats)
    // aborted the process; with hidden_size, heads and layers at their limits the
    // parameter count overflowed too. head_dim 0 passed as well.
    let text = |head_dim: u64| {
        format!(
            r#"{{"hidden_size": 4194304, "intermediate_size": 16, "num_hidden_layers": 4096,
                "num_attention_heads": 16384, "head_dim": {head_dim}, "vocab_size": 300}}"#
        )
    };
    let config = Path::new("config.json");
    for (head_dim, needle) in [
        (1u64 << 20, "field `head_dim` is 1048576"),
        (2048, "field `head_dim` is 2048"),
        (0, "field `head_dim` must be positive"),
    ] {
        fails(
            patchrec::model::LlamaConfig::from_json(&text(head_dim), config),
            PATCHREC_FORMAT,
            needle,
        );
    }
    // Every size at its limit: the count (2^60 and a bit) is exact, not wrapped.
    let cfg = patchrec::model::LlamaConfig::from_json(&text(1024), config).expect("valid");
    assert!(cfg.parameter_count() > 1 << 60, "{}", cfg.parameter_count());
    // Beyond the limits (memory is checked before validation) it saturates.
    let huge = patchrec::model::LlamaConfig::small(1 << 40, 1 << 40, 1 << 40, 1, 1);
    assert_eq!(huge.parameter_count(), u64::MAX);
}

#[test]
fn a_tensor_type_candle_cannot_convert_names_the_file_and_tensor() {
    // Seen with a seed of the `safetensors` target: F4, F6 and F8_E8M0 tensors load, but
    // their conversion to f32 failed with a bare TENSOR status and a backtrace.
    let dir = tempfile::tempdir().unwrap();
    let seed = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus/safetensors/other-dtypes.safetensors");
    std::fs::copy(seed, dir.path().join("model.safetensors")).unwrap();
    let store =
        patchrec::model::weights::TensorStore::open(dir.path(), &candle_core::Device::Cpu).unwrap();
    for (name, shape, dtype) in [
        ("e.f4", [4], "F4"),
        ("f.f6_e2m3", [4], "F6_E2M3"),
        ("d.f8_e8m0", [2], "F8_E8M0"),
    ] {
        let needle = format!("tensor `{name}`: {dtype} cannot be read as f32");
        fails(store.get(name, &shape), PATCHREC_FORMAT, &needle);
        let e = store.get(name, &shape).err().unwrap().to_string();
        assert!(e.contains("model.safetensors"), "{e}");
        assert!(!e.contains("backtrace") && e.lines().count() == 1, "{e}");
    }
    let f64s = store.get("a.f64", &[2]).unwrap();
    assert_eq!(f64s.to_vec1::<f32>().unwrap(), [0.25, -2.0]);
}
