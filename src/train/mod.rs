//! Training: SFT, patch pre-training (PPT), and patch fine-tuning (PFT-I, PFT-S) on a
//! dataset in the shared format, following the paper (§3.3-3.4) and the reference
//! implementation's recipe (loss on answer tokens, AdamW, cosine schedule with warm-up,
//! gradient-norm clipping).

pub mod batch;
pub mod config;
pub mod epoch;
pub mod optimizer;
pub mod pack;
pub mod plan;
pub mod progress;
pub mod schedule;
pub mod trainer;

pub use config::{StageConfig, StageKind, TrainConfig};
pub use progress::{Control, Progress};
pub use trainer::{train, TrainOptions, TrainOutcome};
