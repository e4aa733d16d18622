//! What a training configuration will compute, without training: per stage, the samples,
//! steps and forward-pass positions, packed and unpacked (`patchrec train --plan`).

use std::sync::Arc;

use serde::Serialize;

use super::config::TrainConfig;
use super::epoch::StageData;
use super::pack::pack;
use crate::catalog::Catalog;
use crate::data::Dataset;
use crate::error::Result;
use crate::model::{Model, ModelOptions};

#[derive(Debug, Clone, Serialize)]
pub struct StagePlan {
    pub stage: String,
    /// Samples in one epoch.
    pub samples: usize,
    pub steps: u64,
    /// Samples the stage's steps visit (epochs times samples, or fewer with `max_steps`).
    pub samples_visited: usize,
    /// Positions the steps compute one sequence per example.
    pub unpacked_positions: u64,
    /// Positions the steps compute packed (`pack_positions` per pass, the stage's order).
    pub packed_positions: u64,
    /// Forward passes packed.
    pub packed_passes: u64,
    /// Whether the stage trains packed.
    pub pack: bool,
}

/// Walks every step of every stage as the trainer would, counting positions.
pub fn plan(cfg: &TrainConfig) -> Result<Vec<StagePlan>> {
    cfg.validate()?;
    let data = Dataset::open(&cfg.data)?;
    // Every stage shares the first one's tokenizer and template, which is all the plan
    // reads of the model.
    let model = match (&cfg.model.checkpoint, &cfg.model.init) {
        (Some(ckpt), _) => Model::load(ckpt, &ModelOptions::default().with_panels(Some(false)))?,
        (None, Some(init)) => super::trainer::from_scratch(&data, init, cfg.seed)?,
        (None, None) => unreachable!("validated: checkpoint or init"),
    };
    let model = Arc::new(model);
    let catalog = Catalog::new(model.clone())?;
    catalog.add_batch(&data.items)?;
    let snap = catalog.snapshot();
    let mut out = Vec::with_capacity(cfg.stages.len());
    for (index, stage) in cfg.stages.iter().enumerate() {
        let mut epoch = StageData::new(cfg, &data, &snap, index, stage)?;
        let mut plan = StagePlan {
            stage: stage.name(),
            samples: epoch.len(),
            steps: epoch.total_steps(),
            samples_visited: 0,
            unpacked_positions: 0,
            packed_positions: 0,
            packed_passes: 0,
            pack: stage.pack,
        };
        for step in 0..epoch.total_steps() {
            let (examples, samples) = epoch.step_examples(step);
            plan.samples_visited += samples;
            for tree in pack(&model, &snap, &examples, stage.pack_positions) {
                plan.unpacked_positions += tree.unpacked_positions() as u64;
                plan.packed_positions += tree.len() as u64;
                plan.packed_passes += 1;
            }
        }
        out.push(plan);
    }
    Ok(out)
}
