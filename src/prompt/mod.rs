//! Prompt assembly: template + history segments -> one embedding matrix.

pub mod builder;

pub use builder::{build_prompt, prompt_embeddings, PatchSource, Prompt};
