//! The training configuration: one TOML format read by `patchrec train CONFIG`, the Rust
//! API and `patchrec_train_file` / `patchrec_train_toml` in the C ABI. Every field but
//! `out`, `data` and the stages has a default; see `docs/TRAINING.md` for a documented
//! example.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::history::Layout;

/// A training run: its dataset and output folders, the model it starts from, and the
/// stages it runs in order. Read from TOML ([`TrainConfig::from_file`]);
/// `docs/TRAINING.md` has a documented example.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Output folder: one checkpoint per stage, resume state, `metrics.jsonl`.
    pub out: PathBuf,
    /// Dataset folder in the shared format.
    pub data: PathBuf,
    /// Seeds everything random in the run: a from-scratch model, sampling and sample order,
    /// adapters (default 42).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// `[model]`: the checkpoint to start from, or a from-scratch model.
    pub model: ModelSource,
    /// `[samples]`: which training samples to use (default all).
    #[serde(default)]
    pub samples: SampleConfig,
    /// The `[[stage]]` tables, run in order; each writes a checkpoint.
    #[serde(rename = "stage")]
    pub stages: Vec<StageConfig>,
}

fn default_seed() -> u64 {
    42
}

/// Where the first stage starts: an existing checkpoint, or a from-scratch model whose
/// tokenizer is trained on the dataset's titles and prompt.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    pub checkpoint: Option<PathBuf>,
    pub init: Option<InitConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitConfig {
    #[serde(default = "d_vocab")]
    pub vocab_size: usize,
    #[serde(default = "d_hidden")]
    pub hidden: usize,
    #[serde(default = "d_layers")]
    pub layers: usize,
    #[serde(default = "d_heads")]
    pub heads: usize,
    #[serde(default = "d_kv_heads")]
    pub kv_heads: usize,
    pub intermediate: Option<usize>,
}

// `[model.init]` defaults to what `patchrec init` does (`InitOptions::default`).
fn d_vocab() -> usize {
    crate::init::InitOptions::default().vocab_size
}
fn d_hidden() -> usize {
    crate::init::InitOptions::default().hidden_size
}
fn d_layers() -> usize {
    crate::init::InitOptions::default().num_layers
}
fn d_heads() -> usize {
    crate::init::InitOptions::default().num_heads
}
fn d_kv_heads() -> usize {
    crate::init::InitOptions::default().num_kv_heads
}

/// Which training samples to use (the paper's rule, optionally subsampled).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    pub max_users: Option<usize>,
    pub max_samples: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageKind {
    /// Vanilla fine-tuning: every history item as text.
    Sft,
    /// Patch pre-training: each sample twice, as text and with each item compressed
    /// with probability step / total steps.
    Ppt,
    /// Patch fine-tuning, item level: latest M as text, the rest item patches.
    PftI,
    /// Patch fine-tuning, session level: groups of L counted back from the newest item.
    PftS,
    /// Stream-aligned patch fine-tuning (the `stream-s:L` serving layout): groups of L
    /// counted from the start of the user's stream, so a prompt only grows at its end as
    /// items arrive and a user's targets can be trained in one packed pass.
    StreamS,
}

/// The order a stage visits its samples in, reshuffled every epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Each sample on its own.
    Samples,
    /// Runs of one user's consecutive targets that see the same window of their stream
    /// (at most `pack_targets` long) stay together, so a packed pass shares their history.
    Users,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    pub kind: StageKind,
    /// M for `pft-i`.
    pub m: Option<usize>,
    /// L for `pft-s` and `stream-s`.
    pub l: Option<usize>,
    /// History truncation K.
    #[serde(default = "d_k")]
    pub max_history: usize,
    #[serde(default = "d_epochs")]
    pub epochs: f64,
    /// Stop after this many optimizer steps even if the epochs are not done.
    pub max_steps: Option<u64>,
    /// Samples per optimizer step.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Sequences per forward/backward pass (gradient accumulation over the batch).
    /// Unpacked stages only: a packed pass holds as many as `pack_positions` allows.
    #[serde(default = "d_micro")]
    pub micro_batch: usize,
    /// Packed training: the samples of a pass become one token tree whose shared
    /// prefixes (the template's head, a user's history) are computed once; each sample's
    /// branch sees exactly its own prompt at its own positions, so the loss and gradients
    /// are those of unpacked training (see docs/TRAINING.md).
    #[serde(default)]
    pub pack: bool,
    /// Positions (tree nodes) per packed pass; a sample longer than this gets a pass alone.
    #[serde(default = "d_pack_positions")]
    pub pack_positions: usize,
    /// Most consecutive targets of one user kept together by `order = "users"`.
    #[serde(default = "d_pack_targets")]
    pub pack_targets: usize,
    /// Sample order: `samples` or `users` (the default when `pack` is on).
    pub order: Option<Order>,
    #[serde(default = "d_lr")]
    pub learning_rate: f64,
    #[serde(default = "d_warmup")]
    pub warmup_ratio: f64,
    #[serde(default = "d_clip")]
    pub max_grad_norm: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// Write resume state every this many steps.
    #[serde(default = "d_every")]
    pub checkpoint_every: u64,
    /// Fine-tune through LoRA adapters with the base weights frozen (`[stage.lora]`);
    /// without it every weight is trained.
    #[serde(default)]
    pub lora: Option<crate::model::LoraConfig>,
}

fn d_k() -> usize {
    100
}
fn d_epochs() -> f64 {
    1.0
}
fn d_batch() -> usize {
    64
}
fn d_micro() -> usize {
    8
}
fn d_pack_positions() -> usize {
    512
}
fn d_pack_targets() -> usize {
    16
}
fn d_lr() -> f64 {
    1e-4
}
fn d_warmup() -> f64 {
    0.05
}
fn d_clip() -> f64 {
    0.3
}
fn d_every() -> u64 {
    50
}

impl InitConfig {
    /// The from-scratch model's options, seeded by the run's seed.
    pub fn options(&self, seed: u64) -> crate::init::InitOptions {
        crate::init::InitOptions {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden,
            num_layers: self.layers,
            num_heads: self.heads,
            num_kv_heads: self.kv_heads,
            intermediate_size: self.intermediate,
            seed,
        }
    }
}

/// Above this many samples per step or per pass a stage is a typo, not a plan (and its
/// buffers would not fit).
const MAX_BATCH: usize = 1 << 16;
/// Keeps a stage's sample count (samples x epochs) far from overflowing a step counter.
const MAX_EPOCHS: f64 = 1e6;

impl StageConfig {
    /// Refuses values that would train a broken model or none: a NaN, infinite or
    /// negative rate, a warm-up beyond the run, zero-sized batches. Each error names the
    /// field.
    pub fn validate(&self) -> Result<()> {
        self.layout()?;
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "`{name}` must be a positive finite number, not {v}"
                )))
            }
        };
        positive("learning_rate", self.learning_rate)?;
        positive("max_grad_norm", self.max_grad_norm)?;
        positive("epochs", self.epochs)?;
        if self.epochs > MAX_EPOCHS {
            return Err(Error::invalid(format!(
                "`epochs` must be at most {MAX_EPOCHS}, not {}",
                self.epochs
            )));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(Error::invalid(format!(
                "`weight_decay` must be a finite number >= 0, not {}",
                self.weight_decay
            )));
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            return Err(Error::invalid(format!(
                "`warmup_ratio` must be within 0..=1 (a share of the stage's steps), not {}",
                self.warmup_ratio
            )));
        }
        for (name, v) in [
            ("batch_size", self.batch_size),
            ("micro_batch", self.micro_batch),
            ("pack_positions", self.pack_positions),
            ("pack_targets", self.pack_targets),
        ] {
            if v == 0 || v > MAX_BATCH {
                return Err(Error::invalid(format!(
                    "`{name}` must be within 1..={MAX_BATCH}, not {v}"
                )));
            }
        }
        if self.max_history == 0 {
            return Err(Error::invalid("`max_history` must be at least 1"));
        }
        if let (StageKind::StreamS, Some(l)) = (self.kind, self.l) {
            if self.max_history < l {
                return Err(Error::invalid(format!(
                    "stream-s shows whole sessions, so `max_history` ({}) must be at least `l` ({l})",
                    self.max_history
                )));
            }
        }
        if self.max_steps == Some(0) {
            return Err(Error::invalid("`max_steps` must be at least 1"));
        }
        if self.checkpoint_every == 0 {
            return Err(Error::invalid("`checkpoint_every` must be at least 1"));
        }
        if let Some(lora) = &self.lora {
            lora.validate()?;
        }
        Ok(())
    }

    /// The layout fine-tuning stages train (and PPT's text copy).
    pub fn layout(&self) -> Result<Layout> {
        let need = |v: Option<usize>, name: &str| {
            v.ok_or_else(|| Error::invalid(format!("stage {:?} needs `{name}`", self.kind)))
        };
        let layout = match self.kind {
            StageKind::Sft | StageKind::Ppt => Layout::Vanilla,
            StageKind::PftI => Layout::PftI {
                m: need(self.m, "m")?,
            },
            StageKind::PftS => Layout::PftS {
                l: need(self.l, "l")?,
            },
            StageKind::StreamS => Layout::StreamS {
                l: need(self.l, "l")?,
            },
        };
        layout.validate()?;
        Ok(layout)
    }

    pub fn name(&self) -> String {
        match self.kind {
            StageKind::Sft => "sft".into(),
            StageKind::Ppt => "ppt".into(),
            StageKind::PftI => format!("pft-i{}", self.m.unwrap_or(0)),
            StageKind::PftS => format!("pft-s{}", self.l.unwrap_or(0)),
            StageKind::StreamS => format!("stream-s{}", self.l.unwrap_or(0)),
        }
    }

    /// The sample order: as configured, else `users` when packing.
    pub fn order(&self) -> Order {
        self.order.unwrap_or(if self.pack {
            Order::Users
        } else {
            Order::Samples
        })
    }
}

impl TrainConfig {
    /// Parses TOML; relative paths are taken from `base` (the config file's folder).
    pub fn from_toml(text: &str, base: &Path) -> Result<Self> {
        let mut cfg: TrainConfig =
            toml::from_str(text).map_err(|e| Error::invalid(format!("training config: {e}")))?;
        for p in [&mut cfg.out, &mut cfg.data] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if let Some(c) = cfg.model.checkpoint.as_mut().filter(|c| c.is_relative()) {
            *c = base.join(&*c);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and checks a TOML file; relative paths are taken from its folder, and errors name it.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = crate::files::read_text(path, crate::files::MAX_JSON_BYTES)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base).map_err(|e| match e {
            Error::InvalidArgument(m) => Error::format(path, m),
            e => e,
        })
    }

    /// Fails when there is no stage, when `[model]` has not exactly one of `checkpoint` and
    /// `init`, or when the model or a stage is invalid (naming it).
    pub fn validate(&self) -> Result<()> {
        if self.stages.is_empty() {
            return Err(Error::invalid("training config has no [[stage]]"));
        }
        if self.model.checkpoint.is_some() == self.model.init.is_some() {
            return Err(Error::invalid(
                "[model] needs exactly one of `checkpoint` or `init`",
            ));
        }
        if let Some(init) = &self.model.init {
            init.options(self.seed).validate().map_err(|e| match e {
                Error::OutOfMemory(m) => Error::OutOfMemory(format!("[model.init]: {m}")),
                e => Error::invalid(format!("[model.init]: {e}")),
            })?;
        }
        for (i, s) in self.stages.iter().enumerate() {
            s.validate()
                .map_err(|e| Error::invalid(format!("[[stage]] {} ({}): {e}", i + 1, s.name())))?;
        }
        Ok(())
    }
}
