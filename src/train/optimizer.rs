//! AdamW with decoupled weight decay (PyTorch's `torch.optim.AdamW` update).
//!
//! Our own rather than candle-nn's: resuming a run must restore the moment estimates
//! exactly, and candle's `AdamW` keeps them private.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

use crate::error::{candle_message, Error, Result};

#[derive(Debug, Clone, Copy)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

pub struct AdamW {
    cfg: AdamWConfig,
    params: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    steps: u64,
}

impl AdamW {
    pub fn new(params: Vec<(String, Var)>, cfg: AdamWConfig) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        let m = params
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle_core::Result<_>>()?;
        let v = params
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle_core::Result<_>>()?;
        Ok(AdamW {
            cfg,
            params,
            m,
            v,
            steps: 0,
        })
    }

    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One update with learning rate `lr` from `grads` (parameters without a gradient
    /// are left alone, their moments too).
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.steps += 1;
        let c = self.cfg;
        let t = self.steps as i32;
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        for (i, (_, var)) in self.params.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let m = ((&self.m[i] * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            let v = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let update = ((&m / bias1)? / ((&v / bias2)?.sqrt()? + c.eps)?)?;
            let theta = var.as_tensor();
            let decayed = (theta * (1.0 - lr * c.weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Writes the moments (safetensors) and the step count, for an exact resume.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut map = HashMap::new();
        for (i, (name, _)) in self.params.iter().enumerate() {
            map.insert(format!("m.{name}"), self.m[i].clone());
            map.insert(format!("v.{name}"), self.v[i].clone());
        }
        let path = dir.join("optimizer.safetensors");
        candle_core::safetensors::save(&map, &path)
            .map_err(|e| Error::format(&path, format!("cannot write: {}", candle_message(&e))))?;
        let steps_path = dir.join("optimizer.json");
        std::fs::write(
            &steps_path,
            serde_json::json!({ "steps": self.steps }).to_string(),
        )
        .map_err(|e| Error::io(&steps_path, e))
    }

    pub fn load(&mut self, dir: &Path) -> Result<()> {
        let path = dir.join("optimizer.safetensors");
        let map = candle_core::safetensors::load(&path, self.m[0].device())
            .map_err(|e| Error::format(&path, format!("cannot read: {}", candle_message(&e))))?;
        for (i, (name, _)) in self.params.iter().enumerate() {
            let get = |k: String| {
                map.get(&k)
                    .cloned()
                    .ok_or_else(|| Error::format(&path, format!("missing tensor `{k}`")))
            };
            self.m[i] = get(format!("m.{name}"))?;
            self.v[i] = get(format!("v.{name}"))?;
        }
        let steps_path = dir.join("optimizer.json");
        let text = crate::files::read_text(&steps_path, crate::files::MAX_JSON_BYTES)?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(&steps_path, format!("malformed: {e}")))?;
        self.steps = json["steps"]
            .as_u64()
            .ok_or_else(|| Error::format(&steps_path, "missing `steps`"))?;
        Ok(())
    }
}

/// Scales `grads` so their global L2 norm is at most `max_norm`; returns the norm before.
pub fn clip_grad_norm(
    grads: &mut GradStore,
    params: &[(String, Var)],
    max_norm: f64,
) -> Result<f64> {
    let mut sq = 0f64;
    for (_, v) in params {
        if let Some(g) = grads.get(v.as_tensor()) {
            sq += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    let norm = sq.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for (_, v) in params {
            if let Some(g) = grads.remove(v.as_tensor()) {
                grads.insert(v.as_tensor(), (g * scale)?);
            }
        }
    }
    Ok(norm)
}
