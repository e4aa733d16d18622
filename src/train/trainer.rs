//! The training loop: stages that chain (each starts from the previous stage's
//! checkpoint), AdamW with a warm-up + cosine schedule, gradient-norm clipping, gradient
//! accumulation, seeded data order, and atomic resume checkpoints.
//!
//! Output folder layout: `00-init/` (a from-scratch start), `NN-<stage>/` (each stage's
//! final checkpoint), `NN-<stage>.resume/` (the running stage's latest state: model,
//! optimizer moments, `trainer.json`), `metrics.jsonl`.
//!
//! Each step's examples come from [`super::epoch`] (seeded per stage, epoch and step, so
//! a resumed run replays exactly what an uninterrupted one would have done), and each
//! pass over them is padded sequences or one packed token tree ([`super::pack`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::Var;

use super::batch::{batch_loss, Example};
use super::config::{StageConfig, TrainConfig};
use super::epoch::{mix, StageData};
use super::optimizer::{clip_scale, grad_norm, AdamW, AdamWConfig};
use super::pack::{pack, tree_loss};
use super::progress::{Control, Progress, Reporter};
use super::schedule::cosine_with_warmup;
use crate::catalog::Catalog;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::init::init_model;
use crate::model::{Llama, Model, ModelOptions};
use crate::text::{ChatFormat, PromptTemplate};

/// How to run a training. `TrainOptions::default()` and the `with_*` setters build one.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct TrainOptions {
    /// Continue from the output folder's state instead of refusing to overwrite it.
    pub resume: bool,
    /// No progress on stderr (metrics.jsonl is still written).
    pub quiet: bool,
}

setters!(TrainOptions {
    with_resume => resume: bool,
    with_quiet => quiet: bool,
});

/// How a training ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TrainOutcome {
    /// The last completed stage's checkpoint (None if stopped before any finished).
    pub checkpoint: Option<PathBuf>,
    /// True when the callback asked to stop; the resume state is on disk.
    pub stopped: bool,
}

/// Runs the stages of `cfg` in order, each writing a checkpoint under `cfg.out`, and calls
/// `on_progress` after every optimizer step; [`Control::Stop`] from it writes resume state
/// and returns. An output folder that is not empty is refused unless `opts.resume`.
pub fn train(
    cfg: &TrainConfig,
    opts: &TrainOptions,
    on_progress: &mut dyn FnMut(&Progress) -> Control,
) -> Result<TrainOutcome> {
    cfg.validate()?;
    let data = Dataset::open(&cfg.data)?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
    // Locked first, so a second training on a folder in use is told so, resume or not.
    let _lock = lock_output(&cfg.out)?;
    if !opts.resume {
        let mut entries = std::fs::read_dir(&cfg.out).map_err(|e| Error::io(&cfg.out, e))?;
        if entries.any(|e| e.map_or(true, |e| e.file_name() != LOCK_FILE)) {
            return Err(Error::invalid(format!(
                "output folder {} is not empty: pass resume to continue it, or choose another",
                cfg.out.display()
            )));
        }
    }
    let mut reporter = Reporter::new(&cfg.out.join("metrics.jsonl"), opts.quiet)?;
    let mut input = initial_checkpoint(cfg, &data)?;
    let mut last = None;
    for (index, stage) in cfg.stages.iter().enumerate() {
        let final_dir = cfg.out.join(format!("{:02}-{}", index + 1, stage.name()));
        if final_dir.join("model.safetensors").is_file() {
            input = final_dir.clone();
            last = Some(final_dir);
            continue;
        }
        let resume_dir = cfg
            .out
            .join(format!("{:02}-{}.resume", index + 1, stage.name()));
        let ended = run_stage(
            cfg,
            &data,
            index,
            stage,
            &input,
            &final_dir,
            &resume_dir,
            &mut reporter,
            on_progress,
        )?;
        if ended == StageEnd::Stopped {
            return Ok(TrainOutcome {
                checkpoint: last,
                stopped: true,
            });
        }
        input = final_dir.clone();
        last = Some(final_dir);
        // A stop asked for at a stage's last step still lets the stage finish, then
        // stops before the next one.
        if ended == StageEnd::FinishedStopRequested && index + 1 < cfg.stages.len() {
            return Ok(TrainOutcome {
                checkpoint: last,
                stopped: true,
            });
        }
    }
    Ok(TrainOutcome {
        checkpoint: last,
        stopped: false,
    })
}

/// The file in an output folder that a running training holds locked.
const LOCK_FILE: &str = ".lock";

/// Locks `out` for this training: a second training on the same folder (another thread,
/// process or machine sharing the disk) would overwrite the first one's checkpoints and
/// interleave its metrics. The lock is released when the returned file is dropped, also
/// when the process dies, so a killed run never leaves the folder locked.
fn lock_output(out: &Path) -> Result<std::fs::File> {
    let path = out.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                format!(
                    "another training is running in {} (it holds this lock)",
                    out.display()
                ),
            ),
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// The checkpoint the first stage starts from; a from-scratch model is written to
/// `00-init` once, so a resumed run starts from the same weights and tokenizer.
fn initial_checkpoint(cfg: &TrainConfig, data: &Dataset) -> Result<PathBuf> {
    if let Some(ckpt) = &cfg.model.checkpoint {
        return Ok(ckpt.clone());
    }
    let dir = cfg.out.join("00-init");
    if dir.join("model.safetensors").is_file() {
        return Ok(dir);
    }
    let init = cfg
        .model
        .init
        .as_ref()
        .expect("validated: checkpoint or init");
    from_scratch(data, init, cfg.seed)?.save(&dir)?;
    Ok(dir)
}

/// A from-scratch model for `data`: a tokenizer trained on its titles and prompt, and a
/// random Llama seeded by `seed`.
pub(crate) fn from_scratch(
    data: &Dataset,
    init: &super::config::InitConfig,
    seed: u64,
) -> Result<Model> {
    let template = PromptTemplate::from_prompt_text(&data.prompt, ChatFormat::ChatMl)?;
    let titles: Vec<&str> = data.items.iter().map(|(_, t)| t.as_str()).collect();
    init_model(&titles, template, &init.options(seed))
}

/// Swaps the model's weights for trainable variables (same values) and returns them.
pub fn make_trainable(model: &mut Model) -> Result<Vec<(String, Var)>> {
    let named = model.llama().named_tensors()?;
    let mut vars = Vec::with_capacity(named.len());
    for (name, t) in named {
        vars.push((name, Var::from_tensor(&t)?));
    }
    let map: HashMap<_, _> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let cfg = model.llama().config().clone();
    let device = model.device().clone();
    let mut llama = Llama::from_named(cfg, map, &device)?;
    llama.set_differentiable(true);
    *model.llama_mut() = llama;
    Ok(vars)
}

/// AdamW over `params` with the stage's weight decay.
pub fn stage_optimizer(params: &[(String, Var)], stage: &StageConfig) -> Result<AdamW> {
    AdamW::new(
        params.to_vec(),
        AdamWConfig {
            weight_decay: stage.weight_decay,
            ..Default::default()
        },
    )
}

/// The variables a stage trains: every weight, or for a LoRA stage fresh adapters
/// (seeded by `seed`, or `resume`'s) and the new tokens' rows.
pub fn trainable(
    model: &mut Model,
    stage: &StageConfig,
    seed: u64,
    resume: Option<&HashMap<String, candle_core::Tensor>>,
) -> Result<Vec<(String, Var)>> {
    match &stage.lora {
        None => make_trainable(model),
        Some(lora) => {
            let new_tokens = lora.train_new_tokens.then(|| model.prompt_token_rows());
            let llama = model.llama_mut();
            let vars = llama.attach_lora(lora, new_tokens, seed, resume)?;
            llama.set_differentiable(true);
            Ok(vars)
        }
    }
}

/// How a stage ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StageEnd {
    Finished,
    /// The callback asked to stop at the stage's last step: the stage is complete.
    FinishedStopRequested,
    /// Stopped mid-stage; the resume state is on disk.
    Stopped,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct TrainerState {
    step: u64,
    total_steps: u64,
    /// Positions (tokens and patches) processed and seconds spent in the steps so far,
    /// kept across resumes so the stage's totals are the whole run's (0 in states written
    /// before these were recorded).
    #[serde(default)]
    positions: u64,
    #[serde(default)]
    seconds: f64,
}

#[allow(clippy::too_many_arguments)]
fn run_stage(
    cfg: &TrainConfig,
    data: &Dataset,
    index: usize,
    stage: &StageConfig,
    input: &Path,
    final_dir: &Path,
    resume_dir: &Path,
    reporter: &mut Reporter,
    on_progress: &mut dyn FnMut(&Progress) -> Control,
) -> Result<StageEnd> {
    let started = Instant::now();
    let resuming = resume_dir.join("trainer.json").is_file();
    // A LoRA stage's resume state holds only its adapters: the base is the stage's input.
    let from = if resuming && stage.lora.is_none() {
        resume_dir
    } else {
        input
    };
    let model_cfg = crate::model::LlamaConfig::from_file(&from.join("config.json"))?;
    // Weights, gradients and AdamW's two moments, in f32.
    model_cfg.check_fits_memory(16).map_err(|e| match e {
        Error::OutOfMemory(m) => Error::OutOfMemory(format!("training {}: {m}", from.display())),
        e => e,
    })?;
    let mut model = Model::load(from, &ModelOptions::default().with_panels(Some(false)))?;
    let resume = match (resuming, &stage.lora) {
        (true, Some(_)) => Some(crate::model::adapters::load(resume_dir)?.1),
        _ => None,
    };
    let seed = mix(&[cfg.seed, index as u64, 0x10A]);
    let params = trainable(&mut model, stage, seed, resume.as_ref())?;
    let mut opt = stage_optimizer(&params, stage)?;
    let mut step = 0;
    let (mut total_positions, mut seconds_before) = (0u64, 0f64);
    if resuming {
        opt.load(resume_dir)?;
        let path = resume_dir.join("trainer.json");
        let text = crate::files::read_text(&path, crate::files::MAX_JSON_BYTES)?;
        let state: TrainerState = serde_json::from_str(&text)
            .map_err(|e| Error::format(&path, format!("malformed: {e}")))?;
        step = state.step;
        (total_positions, seconds_before) = (state.positions, state.seconds);
    }

    let model = Arc::new(model);
    let catalog = Catalog::new(model.clone())?;
    catalog.add_batch(&data.items)?;
    let snap = catalog.snapshot();
    let mut stage_data = StageData::new(cfg, data, &snap, index, stage)?;
    let n = stage_data.len();
    let total = stage_data.total_steps();
    let warmup = (total as f64 * stage.warmup_ratio).ceil() as u64;
    let layout = stage.layout()?;
    let name = stage.name();
    // Rows written after the state we resume from were never part of this run's result.
    reporter.rewind(index, step)?;
    reporter.stage_started(&name, step, total);

    let mut last_loss = f64::NAN;
    let mut stop_requested = false;
    while step < total {
        let step_started = Instant::now();
        let (examples, samples_in_step) = stage_data.step_examples(step);
        let (grads, nll, positions) = step_gradients(&model, &snap, stage, &examples, &params)?;
        let grad_norm = grad_norm(&grads, &params)?;
        if !(nll.is_finite() && grad_norm.is_finite()) {
            // The optimizer has not applied this step, and the last resume state on disk
            // is from before it: a resume with a lower learning rate starts from there.
            let kept = if resume_dir.join("trainer.json").is_file() {
                format!("the resume state in {} is kept", resume_dir.display())
            } else {
                "no resume state had been written yet".to_string()
            };
            return Err(Error::NonFinite(format!(
                "stage {name}, step {}: loss {nll}, gradient norm {grad_norm}; training \
                 stopped before applying the step ({kept}); try a lower learning_rate",
                step + 1
            )));
        }
        let lr = cosine_with_warmup(step, total, warmup, stage.learning_rate);
        opt.step_scaled(&grads, lr, clip_scale(grad_norm, stage.max_grad_norm))?;
        step += 1;
        last_loss = nll;
        let progress = Progress {
            stage: name.clone(),
            stage_index: index,
            step,
            total_steps: total,
            loss: nll,
            learning_rate: lr,
            grad_norm,
            tokens_per_second: positions as f64 / step_started.elapsed().as_secs_f64(),
            samples_per_second: samples_in_step as f64 / step_started.elapsed().as_secs_f64(),
        };
        total_positions += positions as u64;
        reporter.step(&progress)?;
        let control = on_progress(&progress);
        stop_requested = control == Control::Stop;
        let stop = stop_requested && step < total;
        if stop || (step < total && step % stage.checkpoint_every.max(1) == 0) {
            let state = TrainerState {
                step,
                total_steps: total,
                positions: total_positions,
                seconds: seconds_before + started.elapsed().as_secs_f64(),
            };
            let write_state = |dir: &Path| {
                opt.save(dir)?;
                let path = dir.join("trainer.json");
                std::fs::write(&path, serde_json::to_string(&state).expect("serialises"))
                    .map_err(|e| Error::io(&path, e))
            };
            match &stage.lora {
                None => model.save_with(resume_dir, write_state)?,
                Some(lora) => crate::model::checkpoint::write_dir(resume_dir, |dir| {
                    crate::model::adapters::save(&model, lora, input, dir)?;
                    write_state(dir)
                })?,
            }
        }
        if stop {
            return Ok(StageEnd::Stopped);
        }
    }
    drop(catalog);
    let mut model = Arc::try_unwrap(model).map_err(|_| Error::invalid("model still shared"))?;
    model.llama_mut().set_differentiable(false);
    model.meta_mut().training.push(serde_json::json!({
        "stage": name,
        "kind": stage.kind,
        "layout": layout.to_string(),
        "max_history": stage.max_history,
        "data": data.dir.display().to_string(),
        "samples": n,
        "epochs": stage.epochs,
        "steps": total,
        "batch_size": stage.batch_size,
        "pack": stage.pack,
        "lora": stage.lora,
        "learning_rate": stage.learning_rate,
        "final_loss": last_loss,
        // Over the whole stage, resumes included (when its resume state recorded them).
        "wall_seconds": seconds_before + started.elapsed().as_secs_f64(),
        "positions": total_positions,
    }));
    if stage.kind != super::config::StageKind::Ppt {
        model.meta_mut().layout.layout = layout;
        model.meta_mut().layout.max_items = stage.max_history;
    }
    model.save(final_dir)?;
    if let Some(lora) = &stage.lora {
        // The adapters alone: a small artifact to ship or to apply to the base again.
        let dir = cfg
            .out
            .join(format!("{:02}-{}.adapters", index + 1, stage.name()));
        crate::model::checkpoint::write_dir(&dir, |tmp| {
            crate::model::adapters::save(&model, lora, input, tmp)
        })?;
    }
    let _ = std::fs::remove_dir_all(resume_dir);
    Ok(if stop_requested {
        StageEnd::FinishedStopRequested
    } else {
        StageEnd::Finished
    })
}

/// One forward/backward pass of a step.
enum Pass<'a> {
    /// Padded sequences, one per example.
    Examples(&'a [Example]),
    /// One token tree holding several examples.
    Tree(super::pack::PackedTree),
}

/// The gradients of a step's examples, summed over its passes (padded micro-batches,
/// or packed trees when the stage packs), of the mean answer-token cross-entropy over
/// the whole step; with that loss and the positions the passes computed.
pub fn step_gradients(
    model: &Model,
    snap: &crate::catalog::CatalogSnapshot,
    stage: &StageConfig,
    examples: &[Example],
    params: &[(String, Var)],
) -> Result<(GradStore, f64, usize)> {
    let answer_tokens: usize = examples
        .iter()
        .map(|e| snap.item(e.target).tokens.len() + 1)
        .sum();
    let passes: Vec<Pass> = if stage.pack {
        pack(model, snap, examples, stage.pack_positions)
            .into_iter()
            .map(Pass::Tree)
            .collect()
    } else {
        examples
            .chunks(stage.micro_batch)
            .map(Pass::Examples)
            .collect()
    };
    let mut grads: Option<GradStore> = None;
    let (mut nll, mut positions) = (0f64, 0usize);
    for pass in &passes {
        let bl = match pass {
            Pass::Examples(micro) => batch_loss(model, snap, micro)?,
            Pass::Tree(tree) => tree_loss(model, snap, tree)?,
        };
        positions += bl.positions;
        let loss = (bl.nll_sum / answer_tokens as f64)?;
        nll += loss.to_scalar::<f32>()? as f64;
        let g = loss.backward()?;
        grads = Some(match grads {
            None => g,
            Some(mut acc) => {
                for (_, v) in params {
                    if let Some(new) = g.get(v.as_tensor()) {
                        let sum = match acc.get(v.as_tensor()) {
                            Some(old) => (old + new)?,
                            None => new.clone(),
                        };
                        acc.insert(v.as_tensor(), sum);
                    }
                }
                acc
            }
        });
    }
    let grads = grads.ok_or_else(|| Error::invalid("a training step with no examples"))?;
    Ok((grads, nll, positions))
}
