//! Training throughput on a stage's own batches (`patchrec bench-train --config`): the
//! first steps of a training configuration's first stage, as the trainer runs them,
//! unpacked (padded micro-batches) and packed (token trees), in samples and positions per
//! second. The passes' shapes go into the report, so `bench/peer_train_torch.py --shapes`
//! runs PyTorch on exactly the same sequences and trees.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use patchrec::catalog::Catalog;
use patchrec::data::Dataset;
use patchrec::error::{Error, Result};
use patchrec::model::{Model, ModelOptions};
use patchrec::train::epoch::StageData;
use patchrec::train::optimizer::{clip_scale, grad_norm};
use patchrec::train::pack::{example_path, pack};
use patchrec::train::trainer::{stage_optimizer, step_gradients, trainable};
use patchrec::train::{StageConfig, TrainConfig};

#[derive(Debug, Clone, Serialize)]
pub struct StageBenchReport {
    pub stage: String,
    pub mode: String,
    /// `packed` or `unpacked`.
    pub passes: String,
    pub threads: usize,
    pub batch_size: usize,
    /// Seconds of each timed step.
    pub step_seconds: Vec<f64>,
    pub samples_per_second: f64,
    /// Positions the passes computed, per second.
    pub positions_per_second: f64,
    /// The timed steps' passes: `sequences` (lengths and answer lengths of a padded
    /// micro-batch) or `tree` (each node's parent, and the nodes that predict answers).
    pub shapes: Vec<Vec<PassShape>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PassShape {
    Sequences {
        lengths: Vec<usize>,
        answers: Vec<usize>,
    },
    Tree {
        parents: Vec<Option<usize>>,
        rows: Vec<u32>,
    },
}

/// Runs one untimed step, then `steps` timed ones, of `cfg`'s first stage, packed or not
/// (the rest of the stage's settings as configured), from its starting checkpoint.
pub fn run_stage_bench(cfg: &TrainConfig, steps: usize, packed: bool) -> Result<StageBenchReport> {
    cfg.validate()?;
    let checkpoint = cfg.model.checkpoint.as_ref().ok_or_else(|| {
        Error::invalid("bench-train --config needs a configuration that starts from a checkpoint")
    })?;
    let mut stage: StageConfig = cfg.stages[0].clone();
    stage.pack = packed;
    let data = Dataset::open(&cfg.data)?;
    let mut model = Model::load(
        checkpoint,
        &ModelOptions::default().with_panels(Some(false)),
    )?;
    let params = trainable(&mut model, &stage, cfg.seed, None)?;
    let mut opt = stage_optimizer(&params, &stage)?;
    let model = Arc::new(model);
    let catalog = Catalog::new(model.clone())?;
    catalog.add_batch(&data.items)?;
    let snap = catalog.snapshot();
    let mut epoch = StageData::new(cfg, &data, &snap, 0, &stage)?;
    let mut report = StageBenchReport {
        stage: stage.name(),
        mode: match &stage.lora {
            None => "full".into(),
            Some(l) => format!("lora-r{}", l.rank),
        },
        passes: if packed { "packed" } else { "unpacked" }.into(),
        threads: rayon::current_num_threads(),
        batch_size: stage.batch_size,
        step_seconds: Vec::new(),
        samples_per_second: 0.0,
        positions_per_second: 0.0,
        shapes: Vec::new(),
    };
    let (mut samples, mut positions) = (0usize, 0usize);
    for step in 0..=steps as u64 {
        let (examples, n) = epoch.step_examples(step);
        let started = Instant::now();
        let (grads, _, computed) = step_gradients(&model, &snap, &stage, &examples, &params)?;
        let norm = grad_norm(&grads, &params)?;
        opt.step_scaled(
            &grads,
            stage.learning_rate,
            clip_scale(norm, stage.max_grad_norm),
        )?;
        if step == 0 {
            continue;
        }
        report.step_seconds.push(started.elapsed().as_secs_f64());
        samples += n;
        positions += computed;
        report.shapes.push(if packed {
            pack(&model, &snap, &examples, stage.pack_positions)
                .iter()
                .map(|t| PassShape::Tree {
                    parents: t.parents().to_vec(),
                    rows: t.rows().to_vec(),
                })
                .collect()
        } else {
            examples
                .chunks(stage.micro_batch)
                .map(|micro| {
                    let (mut lengths, mut answers) = (Vec::new(), Vec::new());
                    for ex in micro {
                        let (path, answer) = example_path(&model, &snap, ex);
                        lengths.push(path.len());
                        answers.push(answer.len());
                    }
                    PassShape::Sequences { lengths, answers }
                })
                .collect()
        });
    }
    let total: f64 = report.step_seconds.iter().sum();
    report.samples_per_second = samples as f64 / total;
    report.positions_per_second = positions as f64 / total;
    Ok(report)
}
