//! LoRA adapters (Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", 2021):
//! fine-tuning a pretrained model by training, beside each chosen projection `W`, two small
//! matrices `A` `[r, in]` and `B` `[out, r]` whose product `(alpha / r) B A` is added to `W`.
//! The base weights stay frozen, so a step computes no gradient for them and AdamW keeps
//! moments only for the adapters (and for the rows of the tokens PatchRec adds, which a
//! pretrained model has never seen).
//!
//! `A` starts uniform in ±1/sqrt(in) and `B` at zero (as PEFT initialises them), so an
//! adapted model starts exactly where its base model is. A saved checkpoint holds the
//! merged weights `W + (alpha / r) B A`, so serving never sees an adapter; the adapters can
//! also be written alone, named as PEFT names them.

use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The projections an adapter can be attached to, by their Hugging Face names.
pub const TARGETS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// What a stage adapts (`[stage.lora]` in the training configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct LoraConfig {
    /// The adapters' rank r.
    #[serde(default = "default_rank")]
    pub rank: usize,
    /// The update is scaled by alpha / r.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Projections to adapt in every layer (`q_proj`, `k_proj`, `v_proj`, `o_proj`,
    /// `gate_proj`, `up_proj`, `down_proj`).
    #[serde(default = "default_targets")]
    pub targets: Vec<String>,
    /// Also train the embedding rows of the tokens PatchRec adds to a pretrained
    /// vocabulary (`<|start_seq|>`, `<|end_seq|>`, `<|item_sep|>`), which start as the mean
    /// row and mean nothing to the model until trained.
    #[serde(default = "yes")]
    pub train_new_tokens: bool,
}

setters!(LoraConfig {
    with_rank => rank: usize,
    with_alpha => alpha: f64,
    with_targets => targets: Vec<String>,
    with_train_new_tokens => train_new_tokens: bool,
});

fn default_rank() -> usize {
    16
}
fn default_alpha() -> f64 {
    32.0
}
fn default_targets() -> Vec<String> {
    TARGETS.iter().map(|t| t.to_string()).collect()
}
fn yes() -> bool {
    true
}

impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig {
            rank: default_rank(),
            alpha: default_alpha(),
            targets: default_targets(),
            train_new_tokens: true,
        }
    }
}

impl LoraConfig {
    /// Fails, naming the field, when the rank is outside 1..=4096, alpha is not a positive
    /// finite number, a target is not one of the projections `targets` lists, or nothing
    /// would be trained.
    pub fn validate(&self) -> Result<()> {
        if self.rank == 0 || self.rank > 4096 {
            return Err(Error::invalid(format!(
                "lora `rank` must be within 1..=4096, not {}",
                self.rank
            )));
        }
        if !(self.alpha.is_finite() && self.alpha > 0.0) {
            return Err(Error::invalid(format!(
                "lora `alpha` must be a positive finite number, not {}",
                self.alpha
            )));
        }
        if self.targets.is_empty() && !self.train_new_tokens {
            return Err(Error::invalid(
                "lora trains nothing: `targets` is empty and `train_new_tokens` is false",
            ));
        }
        if let Some(t) = self.targets.iter().find(|t| !TARGETS.contains(&t.as_str())) {
            return Err(Error::invalid(format!(
                "lora target {t:?} is not one of {}",
                TARGETS.join(", ")
            )));
        }
        Ok(())
    }

    /// The scale alpha / r of the adapters' product `B A`.
    pub fn scale(&self) -> f64 {
        self.alpha / self.rank as f64
    }

    /// Whether the projection `name` (`q_proj`, say) is adapted.
    pub fn targets(&self, name: &str) -> bool {
        self.targets.iter().any(|t| t == name)
    }
}

/// One projection's adapter: `A` `[r, in]`, `B` `[out, r]` and the scale alpha / r.
pub(crate) struct Adapter {
    pub(crate) a: Tensor,
    pub(crate) b: Tensor,
    pub(crate) scale: f64,
    tracked: Tracked,
}

/// Whether an adapter's tensors enter the autograd graph. Only while training: a tracked
/// tensor makes every product after it decline our CPU kernels (they have no backward
/// pass), so inference with tracked adapters would round differently from the base model.
#[derive(Default)]
pub(crate) struct Tracked(AtomicBool);

impl Tracked {
    pub(crate) fn set(&self, on: bool) {
        self.0.store(on, Ordering::Relaxed);
    }

    /// `t` as this mode uses it: itself while training, detached otherwise.
    fn view(&self, t: &Tensor) -> Tensor {
        if self.0.load(Ordering::Relaxed) {
            t.clone()
        } else {
            t.detach()
        }
    }
}

impl Adapter {
    /// A fresh adapter for a weight `[out, in]`: `A` uniform in ±1/sqrt(in) from `seed`, `B`
    /// zero. Returns it with its two variables.
    pub(crate) fn new(
        out: usize,
        input: usize,
        cfg: &LoraConfig,
        seed: u64,
        device: &Device,
    ) -> Result<(Self, Var, Var)> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let bound = 1.0 / (input as f32).sqrt();
        let values: Vec<f32> = (0..cfg.rank * input)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let a = Var::from_tensor(&Tensor::from_vec(values, (cfg.rank, input), device)?)?;
        let b = Var::from_tensor(&Tensor::zeros((out, cfg.rank), DType::F32, device)?)?;
        Ok((Self::from_vars(&a, &b, cfg.scale()), a, b))
    }

    /// An adapter over existing variables (a resumed run's).
    pub(crate) fn from_vars(a: &Var, b: &Var, scale: f64) -> Self {
        Adapter {
            a: a.as_tensor().clone(),
            b: b.as_tensor().clone(),
            scale,
            tracked: Tracked::default(),
        }
    }

    pub(crate) fn set_tracked(&self, on: bool) {
        self.tracked.set(on);
    }

    /// True while training (see [`Tracked`]).
    pub(crate) fn is_tracked(&self) -> bool {
        self.tracked.0.load(Ordering::Relaxed)
    }

    /// `scale * x A^T B^T` for `x` `[.., in]`.
    pub(crate) fn delta(&self, x: &Tensor) -> Result<Tensor> {
        let (a, b) = (self.tracked.view(&self.a), self.tracked.view(&self.b));
        let low = x.broadcast_matmul(&a.t()?)?;
        Ok((low.broadcast_matmul(&b.t()?)? * self.scale)?)
    }

    /// The merged weight `w + scale * B A`.
    pub(crate) fn merge(&self, w: &Tensor) -> Result<Tensor> {
        Ok((w + (self.b.matmul(&self.a)? * self.scale)?)?)
    }
}

/// Embedding rows `start..start + rows` trained as one variable while the rest of the
/// table stays frozen.
pub(crate) struct TrainedRows {
    pub(crate) start: usize,
    pub(crate) rows: Tensor,
    pub(crate) tracked: Tracked,
}

impl TrainedRows {
    /// The rows as this mode uses them: the variable while training, detached otherwise.
    pub(crate) fn current(&self) -> Tensor {
        self.tracked.view(&self.rows)
    }

    /// Rows of `ids` from the frozen `table`, with the trained rows in place of theirs;
    /// differentiable with respect to the trained rows.
    pub(crate) fn lookup(&self, table: &Tensor, ids: &[u32]) -> Result<Tensor> {
        let rows = self.tracked.view(&self.rows);
        let n = rows.dim(0)?;
        let inside = |id: u32| (id as usize).checked_sub(self.start).filter(|&i| i < n);
        if ids.iter().all(|&id| inside(id).is_none()) {
            let ids = Tensor::new(ids, table.device())?;
            return Ok(table.index_select(&ids, 0)?);
        }
        let device = table.device();
        let from_table = Tensor::new(ids, device)?;
        let own: Vec<u32> = ids
            .iter()
            .map(|&id| inside(id).unwrap_or(0) as u32)
            .collect();
        let mask: Vec<u8> = ids
            .iter()
            .map(|&id| u8::from(inside(id).is_some()))
            .collect();
        let d = table.dim(1)?;
        let mask = Tensor::new(mask.as_slice(), device)?
            .unsqueeze(1)?
            .broadcast_as((ids.len(), d))?;
        let trained = rows.index_select(&Tensor::new(own.as_slice(), device)?, 0)?;
        let frozen = table.index_select(&from_table, 0)?;
        Ok(mask.where_cond(&trained, &frozen)?)
    }

    /// The whole table with the trained rows in place (the tied output head).
    pub(crate) fn table(&self, table: &Tensor) -> Result<Tensor> {
        let (v, _) = table.dims2()?;
        let rows = self.tracked.view(&self.rows);
        let n = rows.dim(0)?;
        let mut parts = Vec::with_capacity(3);
        if self.start > 0 {
            parts.push(table.narrow(0, 0, self.start)?);
        }
        parts.push(rows);
        if self.start + n < v {
            parts.push(table.narrow(0, self.start + n, v - self.start - n)?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }
}
