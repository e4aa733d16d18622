//! Prompt assembly: template + history segments -> one embedding matrix, the per-user
//! cache of a prompt's KV, and the memory budget those caches share.

pub mod budget;
pub mod builder;
pub mod cache;
pub mod prefill;

pub use budget::{KvBudget, KvStats};
pub use builder::{
    build_prompt, build_prompt_shown, embed_keys, fixed_positions, prompt_embeddings, prompt_keys,
    PatchSource, PositionKey, Prompt,
};
pub use cache::{PromptCache, ReuseStats};
pub use prefill::{prefill, prefill_from, Prefilled};
