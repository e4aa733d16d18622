//! Prompt assembly: template + history segments -> one embedding matrix, and the per-user
//! cache of a prompt's KV.

pub mod builder;
pub mod cache;

pub use builder::{
    build_prompt, build_prompt_shown, embed_keys, fixed_positions, prompt_embeddings, prompt_keys,
    PatchSource, PositionKey, Prompt,
};
pub use cache::{PromptCache, ReuseStats};
