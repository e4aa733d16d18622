//! The LoRA adapters artifact: a folder with `adapters.safetensors` (PEFT's tensor names,
//! and the trained rows of the tokens PatchRec adds) and `adapter_config.json` (rank,
//! alpha, targets, the base checkpoint). A LoRA stage writes one beside its merged
//! checkpoint and keeps one as its resume state; [`apply`] merges one into its base
//! again, so a service can ship a few MB per fine-tune instead of the model.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;
use serde::Deserialize;

use super::checkpoint::{Model, ModelOptions};
use super::lora::LoraConfig;
use crate::error::{Error, Result};
use crate::history::LayoutConfig;

const TENSORS: &str = "adapters.safetensors";
const CONFIG: &str = "adapter_config.json";

/// Writes `model`'s adapters (and trained new-token rows) into `dir`, recording `base` as
/// the checkpoint they apply to.
pub(crate) fn save(model: &Model, lora: &LoraConfig, base: &Path, dir: &Path) -> Result<()> {
    let tensors: HashMap<String, Tensor> = model.llama().lora_tensors().into_iter().collect();
    let path = dir.join(TENSORS);
    candle_core::safetensors::save(&tensors, &path).map_err(|e| {
        Error::format(
            &path,
            format!("cannot write: {}", crate::error::candle_message(&e)),
        )
    })?;
    let config = serde_json::json!({
        "peft_type": "LORA",
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "target_modules": lora.targets,
        "base_model_name_or_path": base.display().to_string(),
        "new_token_rows_start": model.llama().trained_rows_start(),
    });
    let path = dir.join(CONFIG);
    std::fs::write(&path, serde_json::to_string_pretty(&config).expect("json"))
        .map_err(|e| Error::io(&path, e))
}

/// What `adapter_config.json` records.
#[derive(Debug, Clone, Deserialize)]
pub struct AdapterConfig {
    pub r: usize,
    pub lora_alpha: f64,
    pub target_modules: Vec<String>,
    pub base_model_name_or_path: String,
    pub new_token_rows_start: Option<usize>,
}

impl AdapterConfig {
    pub fn lora(&self) -> LoraConfig {
        LoraConfig {
            rank: self.r,
            alpha: self.lora_alpha,
            targets: self.target_modules.clone(),
            train_new_tokens: self.new_token_rows_start.is_some(),
        }
    }
}

/// Reads an adapters folder: its configuration and tensors.
pub fn load(dir: &Path) -> Result<(AdapterConfig, HashMap<String, Tensor>)> {
    let path = dir.join(CONFIG);
    let text = crate::files::read_text(&path, crate::files::MAX_JSON_BYTES)?;
    let config: AdapterConfig =
        serde_json::from_str(&text).map_err(|e| Error::format(&path, format!("malformed: {e}")))?;
    let path = dir.join(TENSORS);
    crate::files::regular_file(&path)?;
    let tensors =
        candle_core::safetensors::load(&path, &candle_core::Device::Cpu).map_err(|e| {
            Error::format(
                &path,
                format!("cannot read: {}", crate::error::candle_message(&e)),
            )
        })?;
    Ok((config, tensors))
}

/// Merges the adapters in `adapters` into the checkpoint `base` and saves the result as
/// a checkpoint in `out` (serving it needs nothing else), with `layout` as its default
/// layout if given. Every adapter the configuration names must be in the file, with the
/// base's shapes.
pub fn apply(base: &Path, adapters: &Path, layout: Option<LayoutConfig>, out: &Path) -> Result<()> {
    let (config, tensors) = load(adapters)?;
    let lora = config.lora();
    let mut model = Model::load(base, &ModelOptions::default().with_panels(Some(false)))?;
    let rows = model.prompt_token_rows();
    if let Some(start) = config.new_token_rows_start.filter(|&s| s != rows.start) {
        return Err(Error::invalid(format!(
            "{}: the adapters train embedding rows from {start}, the base's new tokens start at {}: \
             they were trained on another base",
            adapters.display(),
            rows.start
        )));
    }
    let new_tokens = lora.train_new_tokens.then_some(rows);
    let vars = model
        .llama_mut()
        .attach_lora(&lora, new_tokens, 0, Some(&tensors))?;
    if let Some((name, _)) = vars.iter().find(|(name, _)| !tensors.contains_key(name)) {
        return Err(Error::format(
            adapters.join(TENSORS),
            format!("no tensor `{name}`, which the adapters' configuration names"),
        ));
    }
    if let Some(layout) = layout {
        layout.validate()?;
        model.meta_mut().layout = layout;
    }
    model.save(out)
}
