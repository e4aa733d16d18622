//! libpatchrec: LLM sequential recommendation with PatchRec's multi-grained history
//! compression (Liao et al., "Multi-Grained Patch Training for Efficient LLM-based
//! Recommendation", SIGIR'25; reference implementation `ljy0ustc/PatchRec`).
//!
//! Data flow: items `(id, title)` are tokenised once and their *item patches* (mean of
//! the title's token embeddings) cached in a [`catalog::Catalog`]; a user's
//! [`history::UserHistory`] is laid out (vanilla, PFT-I, PFT-S) into segments; the
//! [`prompt`] builder turns template + segments into one embedding matrix; the
//! [`model::Llama`] decoder prefills it and [`decode`] runs beam search constrained to
//! the catalogue's titles. [`ffi`] exposes all of it as a C ABI.
//!
//! ```
//! use std::sync::Arc;
//! use patchrec::{recommend, rank, Catalog, QueryOptions, RankOptions};
//!
//! # fn main() -> patchrec::Result<()> {
//! # let titles = ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)", "Alien (1979)"];
//! # let template = patchrec::text::PromptTemplate::movielens(patchrec::text::ChatFormat::ChatMl);
//! # let opts = patchrec::init::InitOptions { vocab_size: 400, hidden_size: 32, num_layers: 1, ..Default::default() };
//! # let model = patchrec::init::init_model(&titles, template, &opts)?;
//! // A trained checkpoint: Model::load("checkpoint-dir", &ModelOptions::default())?
//! let catalog = Catalog::new(Arc::new(model))?;
//! catalog.add_batch(&[(1, "Toy Story (1995)"), (2, "Heat (1995)"), (3, "Fargo (1996)"), (4, "Alien (1979)")])?;
//! let user = catalog.history_of(&[1, 3])?;
//!
//! // The next items, best first; never item 4.
//! let top = recommend(&catalog, &user, &QueryOptions { k: 2, deny: vec![4], ..Default::default() })?;
//! assert_eq!(top.items.len(), 2);
//! assert!(top.items.iter().all(|r| r.item_id != 4));
//!
//! // Given candidates, scored on the same scale.
//! let ranked = rank(&catalog, &user, &[2, 4], &RankOptions::default())?;
//! assert_eq!(ranked.items.len(), 2);
//! # Ok(())
//! # }
//! ```

pub mod bench;
pub mod catalog;
pub mod data;
pub mod decode;
pub mod error;
pub mod eval;
pub mod ffi;
pub mod files;
pub mod gguf;
pub mod history;
pub mod init;
pub mod memory;
pub mod model;
pub mod prompt;
pub mod query;
pub mod rank;
pub mod serve;
pub mod text;
pub mod train;

pub use catalog::Catalog;
pub use error::{Error, Result};
pub use history::{Interaction, Layout, LayoutConfig, UserHistory};
pub use model::{Model, ModelOptions};
pub use prompt::PromptCache;
pub use query::{
    layout_stats, recommend, recommend_cached, LayoutStats, QueryOptions, QueryResult,
    Recommendation,
};
pub use rank::{
    rank, rank_cached, Candidate, RankOptions, RankOrder, RankResult, UnknownCandidates,
};

/// The crate version, also returned by `patchrec_version()`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
