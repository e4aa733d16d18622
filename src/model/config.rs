//! The checkpoint's `config.json`: Hugging Face's `LlamaConfig`, read and written as is.
//!
//! Unknown fields are kept (`extra`) so that a checkpoint we load and save again still
//! carries what transformers wrote into it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Llama-3 style RoPE frequency scaling (`rope_scaling` with `rope_type = "llama3"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RopeScaling {
    #[serde(alias = "type")]
    pub rope_type: String,
    pub factor: f32,
    #[serde(default = "one")]
    pub low_freq_factor: f32,
    #[serde(default = "four")]
    pub high_freq_factor: f32,
    #[serde(default = "default_original_max")]
    pub original_max_position_embeddings: usize,
}

fn one() -> f32 {
    1.0
}
fn four() -> f32 {
    4.0
}
fn default_original_max() -> usize {
    8192
}
fn default_rope_theta() -> f32 {
    10_000.0
}
fn default_rms_eps() -> f64 {
    1e-5
}
fn default_max_pos() -> usize {
    4096
}
fn default_act() -> String {
    "silu".into()
}

/// Bounds on a configuration's sizes: far above any released Llama (Llama-3.1-405B has
/// width 16,384 and intermediate 53,248, 126 layers, 128 heads, 128,256 tokens), and low
/// enough that the sizes multiplied together cannot overflow, so a nonsense
/// `config.json` is an error that names the field instead of an allocation that aborts.
const MAX_WIDTH: usize = 1 << 22;
const MAX_LAYERS: usize = 4096;
const MAX_HEADS: usize = 1 << 14;
const MAX_VOCAB: usize = 1 << 24;
/// Llama's heads are 64 or 128 wide. Every loaded model allocates RoPE tables of up to
/// 131,072 positions times half this; at this bound they take 256 MiB each.
const MAX_HEAD_DIM: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LlamaConfig {
    #[serde(default)]
    pub architectures: Vec<String>,
    #[serde(default)]
    pub model_type: Option<String>,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default)]
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f32,
    #[serde(default)]
    pub rope_scaling: Option<RopeScaling>,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub bos_token_id: Option<serde_json::Value>,
    #[serde(default)]
    pub eos_token_id: Option<serde_json::Value>,
    /// Everything else transformers wrote (torch_dtype, pad_token_id, ...), kept on save.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl LlamaConfig {
    /// Reads and validates `config.json`; errors name the file and the offending field.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::files::read_text(path, crate::files::MAX_JSON_BYTES)?;
        Self::from_json(&text, path)
    }

    /// [`Self::from_file`] on text already read, so that the parser can be exercised on
    /// bytes (the fuzz targets in `fuzz/`); `path` is only named in errors.
    pub fn from_json(text: &str, path: &Path) -> Result<Self> {
        let cfg: LlamaConfig = serde_json::from_str(text)
            .map_err(|e| Error::format(path, format!("malformed config.json: {e}")))?;
        cfg.validate().map_err(|m| Error::format(path, m))?;
        Ok(cfg)
    }

    pub fn num_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// The number of weights (embedding, layers, final norm, and the output head unless it
    /// is tied), for checking that a model fits in memory before allocating it. Within
    /// [`Self::validate`]'s bounds this cannot overflow; beyond them (a configuration
    /// checked for memory before it is validated) it is `u64::MAX`.
    pub fn parameter_count(&self) -> u64 {
        let count = || -> Option<u64> {
            let (d, ff, v) = (
                self.hidden_size as u64,
                self.intermediate_size as u64,
                self.vocab_size as u64,
            );
            let hd = self.head_dim() as u64;
            let q = (self.num_attention_heads as u64).checked_mul(hd)?;
            let kv = (self.num_kv_heads() as u64).checked_mul(hd)?;
            // q, k, v and o projections, then gate, up and down, then the two norms.
            let attention = d.checked_mul(q.checked_add(kv)?)?.checked_mul(2)?;
            let layer = attention
                .checked_add(d.checked_mul(ff)?.checked_mul(3)?)?
                .checked_add(2 * d)?;
            let embeddings = v.checked_mul(d)?;
            let head = if self.tie_word_embeddings {
                0
            } else {
                embeddings
            };
            (self.num_hidden_layers as u64)
                .checked_mul(layer)?
                .checked_add(embeddings)?
                .checked_add(d)?
                .checked_add(head)
        };
        count().unwrap_or(u64::MAX)
    }

    /// `Ok` when `bytes_per_weight` bytes for each of this model's weights fit in the
    /// machine's memory, else `OutOfMemory` naming the sizes that set it.
    pub fn check_fits_memory(&self, bytes_per_weight: u64) -> Result<()> {
        crate::memory::check_fits(
            self.parameter_count().saturating_mul(bytes_per_weight),
            &format!(
                "a model of vocab_size {}, hidden {}, intermediate {} and {} layers",
                self.vocab_size, self.hidden_size, self.intermediate_size, self.num_hidden_layers
            ),
        )
    }

    /// Checks that this is a Llama-family decoder we can run, naming the field that is not.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let llama_arch = self.architectures.is_empty()
            || self
                .architectures
                .iter()
                .any(|a| a == "LlamaForCausalLM" || a == "MistralForCausalLM");
        if !llama_arch {
            return Err(format!(
                "unsupported architecture {:?} (field `architectures`): only LlamaForCausalLM is supported",
                self.architectures
            ));
        }
        if let Some(t) = &self.model_type {
            if t != "llama" && t != "mistral" {
                return Err(format!(
                    "unsupported model_type {t:?} (field `model_type`): expected \"llama\""
                ));
            }
        }
        for (name, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("vocab_size", self.vocab_size),
            ("head_dim", self.head_dim()),
        ] {
            if v == 0 {
                return Err(format!("field `{name}` must be positive"));
            }
        }
        for (name, v, max) in [
            ("hidden_size", self.hidden_size, MAX_WIDTH),
            ("intermediate_size", self.intermediate_size, MAX_WIDTH),
            ("num_hidden_layers", self.num_hidden_layers, MAX_LAYERS),
            ("num_attention_heads", self.num_attention_heads, MAX_HEADS),
            ("num_key_value_heads", self.num_kv_heads(), MAX_HEADS),
            ("head_dim", self.head_dim(), MAX_HEAD_DIM),
            ("vocab_size", self.vocab_size, MAX_VOCAB),
        ] {
            if v > max {
                return Err(format!(
                    "field `{name}` is {v}, more than the {max} this library runs"
                ));
            }
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err(format!(
                "field `rms_norm_eps` must be a positive number, not {}",
                self.rms_norm_eps
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(format!(
                "field `rope_theta` must be a positive number, not {}",
                self.rope_theta
            ));
        }
        if let Some(s) = &self.rope_scaling {
            let factors = [s.factor, s.low_freq_factor, s.high_freq_factor];
            if factors.iter().any(|f| !(f.is_finite() && *f > 0.0))
                || s.high_freq_factor <= s.low_freq_factor && s.rope_type == "llama3"
                || s.original_max_position_embeddings == 0
            {
                return Err(format!(
                    "field `rope_scaling` has nonsense values: {s:?} (factors must be positive, high_freq_factor above low_freq_factor)"
                ));
            }
        }
        let kv = self.num_kv_heads();
        if kv == 0 || !self.num_attention_heads.is_multiple_of(kv) {
            return Err(format!(
                "field `num_key_value_heads` ({kv}) must divide num_attention_heads ({})",
                self.num_attention_heads
            ));
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "field `hidden_size` ({}) is not a multiple of num_attention_heads ({})",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !self.head_dim().is_multiple_of(2) {
            return Err(format!(
                "head dimension {} must be even for RoPE",
                self.head_dim()
            ));
        }
        if self.hidden_act != "silu" {
            return Err(format!(
                "unsupported hidden_act {:?} (field `hidden_act`): expected \"silu\"",
                self.hidden_act
            ));
        }
        if self.attention_bias || self.mlp_bias {
            return Err("fields `attention_bias` / `mlp_bias` must be false".into());
        }
        if let Some(s) = &self.rope_scaling {
            if s.rope_type != "llama3" && s.rope_type != "default" {
                return Err(format!(
                    "unsupported rope_scaling type {:?} (field `rope_scaling.rope_type`)",
                    s.rope_type
                ));
            }
        }
        Ok(())
    }

    /// A small Llama for tests and CPU benchmarks.
    pub fn small(
        vocab_size: usize,
        hidden: usize,
        layers: usize,
        heads: usize,
        kv_heads: usize,
    ) -> Self {
        LlamaConfig {
            architectures: vec!["LlamaForCausalLM".into()],
            model_type: Some("llama".into()),
            hidden_size: hidden,
            intermediate_size: hidden.saturating_mul(8) / 3 / 8 * 8,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: Some(kv_heads),
            head_dim: None,
            vocab_size,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            rope_scaling: None,
            max_position_embeddings: 4096,
            tie_word_embeddings: true,
            hidden_act: "silu".into(),
            attention_bias: false,
            mlp_bias: false,
            bos_token_id: None,
            eos_token_id: None,
            extra: serde_json::Map::from_iter([(
                "torch_dtype".to_string(),
                serde_json::Value::String("float32".into()),
            )]),
        }
    }
}
