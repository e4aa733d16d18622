//! What fine-tuning trains: LoRA adapters beside the frozen projections, and the rows of the
//! new tokens beside the frozen embedding table, named as they are saved.

use candle_core::Tensor;

use super::Llama;
use crate::error::{Error, Result};
use crate::model::lora::{Adapter, LoraConfig, TrainedRows};

impl Llama {
    /// Attaches LoRA adapters to the projections `cfg` targets, and (with `new_tokens`)
    /// trains the embedding rows `new_tokens` beside the frozen table. Adapters found in
    /// `resume` (by [`Llama::lora_tensors`]' names) continue from there; the others start
    /// fresh from `seed`. Returns the variables to optimise, named as they are saved.
    pub fn attach_lora(
        &mut self,
        cfg: &LoraConfig,
        new_tokens: Option<std::ops::Range<usize>>,
        seed: u64,
        resume: Option<&std::collections::HashMap<String, Tensor>>,
    ) -> Result<Vec<(String, candle_core::Var)>> {
        cfg.validate()?;
        if self.quantization.is_some() {
            return Err(Error::invalid(
                "a quantized model cannot take LoRA adapters",
            ));
        }
        self.unpack_panels()?;
        let device = self.device.clone();
        let from_resume = |name: &str, shape: &[usize]| -> Result<Option<candle_core::Var>> {
            let Some(t) = resume.and_then(|r| r.get(name)) else {
                return Ok(None);
            };
            if t.dims() != shape {
                return Err(Error::invalid(format!(
                    "LoRA tensor `{name}` has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            Ok(Some(candle_core::Var::from_tensor(t)?))
        };
        let mut vars = Vec::new();
        for (i, block) in self.blocks.iter_mut().enumerate() {
            for (n, proj) in block.projections_mut() {
                let short = n.rsplit('.').next().unwrap_or(n);
                if !cfg.targets(short) {
                    continue;
                }
                let w = proj
                    .weight()
                    .ok_or_else(|| Error::invalid("quantized projection"))?;
                let (out, input) = w.dims2()?;
                let (na, nb) = lora_names(i, n);
                let (adapter, a, b) = match (
                    from_resume(&na, &[cfg.rank, input])?,
                    from_resume(&nb, &[out, cfg.rank])?,
                ) {
                    (Some(a), Some(b)) => (Adapter::from_vars(&a, &b, cfg.scale()), a, b),
                    _ => {
                        let layer_seed = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                        let salt = crate::model::lora::TARGETS
                            .iter()
                            .position(|t| *t == short)
                            .unwrap_or(0);
                        Adapter::new(
                            out,
                            input,
                            cfg,
                            layer_seed.wrapping_add(salt as u64),
                            &device,
                        )?
                    }
                };
                adapter.set_tracked(self.differentiable);
                proj.adapt(adapter)?;
                vars.push((na, a));
                vars.push((nb, b));
            }
        }
        if let Some(range) = new_tokens.filter(|r| !r.is_empty()) {
            if range.end > self.cfg.vocab_size {
                return Err(Error::invalid(format!(
                    "new token rows {range:?} outside the {}-token vocabulary",
                    self.cfg.vocab_size
                )));
            }
            let shape = [range.len(), self.cfg.hidden_size];
            let rows = match from_resume(NEW_TOKEN_ROWS, &shape)? {
                Some(v) => v,
                None => candle_core::Var::from_tensor(&self.embed.narrow(
                    0,
                    range.start,
                    range.len(),
                )?)?,
            };
            self.trained_rows = Some(TrainedRows {
                start: range.start,
                rows: rows.as_tensor().clone(),
                tracked: Default::default(),
            });
            if let Some(trained) = &self.trained_rows {
                trained.tracked.set(self.differentiable);
            }
            vars.push((NEW_TOKEN_ROWS.to_string(), rows));
        }
        Ok(vars)
    }

    /// The adapters and trained rows alone (empty without LoRA), for saving them apart
    /// from the merged model.
    pub fn lora_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            for (n, proj) in block.projections() {
                if let Some(adapter) = proj.adapter() {
                    let (na, nb) = lora_names(i, n);
                    out.push((na, adapter.a.clone()));
                    out.push((nb, adapter.b.clone()));
                }
            }
        }
        if let Some(rows) = &self.trained_rows {
            out.push((NEW_TOKEN_ROWS.to_string(), rows.rows.clone()));
        }
        out
    }

    /// The first of the trained embedding rows, if any.
    pub fn trained_rows_start(&self) -> Option<usize> {
        self.trained_rows.as_ref().map(|r| r.start)
    }
}

/// PEFT's names for one projection's adapter matrices.
fn lora_names(layer: usize, proj: &str) -> (String, String) {
    let base = format!("base_model.model.model.layers.{layer}.{proj}");
    (
        format!("{base}.lora_A.weight"),
        format!("{base}.lora_B.weight"),
    )
}

/// The name the trained new-token rows are saved under.
pub const NEW_TOKEN_ROWS: &str = "base_model.model.model.embed_tokens.new_token_rows";
