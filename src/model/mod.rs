//! The model: a Llama-family decoder over input embeddings, its KV cache, and the
//! checkpoint directory it loads from and saves to.

pub mod adapters;
mod attend;
mod attend_train;
/// Attention's time per call along each of its paths, for the benchmarks.
pub use attend::{bench_us as attention_bench_us, Path as AttentionPath};
pub mod checkpoint;
pub mod config;
pub(crate) mod expf;
mod frozen;
pub(crate) mod head_loss;
pub mod host;
pub mod kv_cache;
pub mod llama;
pub mod logprobs;
pub mod lora;
pub mod meta;
mod norm;
pub(crate) mod pool;
pub(crate) mod product;
pub mod proj;
pub mod rope;
pub mod skinny;
pub mod softmax;
mod swiglu;
#[cfg(test)]
pub(crate) mod testing;
mod trained_product;
pub mod tree_kv;
pub mod weights;

pub use checkpoint::{parse_device, Model, ModelOptions};
pub use config::LlamaConfig;
pub use kv_cache::KvCache;
pub use llama::{DecodeGroup, Llama};
pub use lora::LoraConfig;
pub use meta::PatchrecMeta;
pub use proj::Quantization;
pub use tree_kv::TreeKv;
