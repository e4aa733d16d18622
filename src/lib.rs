//! libpatchrec: LLM sequential recommendation with PatchRec's multi-grained history
//! compression (Liao et al., "Multi-Grained Patch Training for Efficient LLM-based
//! Recommendation", SIGIR'25; reference implementation `ljy0ustc/PatchRec`).
//!
//! Data flow: items `(id, title)` are tokenised once and their *item patches* (mean of
//! the title's token embeddings) cached in a [`Catalog`]; a user's [`UserHistory`] is laid
//! out ([`Layout`]: vanilla, PFT-I, PFT-S, stream-aligned sessions) into title text, item
//! patches and session patches; the prompt turns them into one embedding matrix, which
//! the [`Model`] prefills; [`recommend`] then runs beam search constrained to the
//! catalogue's titles, and [`rank`] scores given candidates. The C ABI
//! (`include/patchrec.h`) exposes the same calls.
//!
//! The API, by what a caller does:
//! - **load a model:** [`Model::load`], [`ModelOptions`], [`convert_gguf`] (a Llama GGUF
//!   file), [`init_model`] (a small from-scratch model), [`apply_adapters`];
//! - **register a catalogue:** [`Catalog`], [`read_items_tsv`], [`CatalogSnapshot`];
//! - **keep a user's history:** [`UserHistory`], [`Interaction`], [`LayoutConfig`];
//! - **query:** [`recommend`], [`QueryOptions`], [`PromptCache`] (reuse a user's prompt
//!   state between queries), [`Recommender`] (a catalogue whose concurrent queries can
//!   share forward passes, through a [`Batcher`]);
//! - **rank candidates:** [`rank`], [`RankOptions`];
//! - **train:** [`train()`](fn@crate::train), [`TrainConfig`] (a TOML file), [`TrainOptions`];
//! - **evaluate:** [`evaluate`], [`Dataset`], [`EvalOptions`], [`EvalReport`].
//!
//! ```
//! use std::sync::Arc;
//! use patchrec::{recommend, rank, Catalog, QueryOptions, RankOptions};
//!
//! # fn main() -> patchrec::Result<()> {
//! # let titles = ["Toy Story (1995)", "Heat (1995)", "Fargo (1996)", "Alien (1979)"];
//! # let template = patchrec::PromptTemplate::movielens(patchrec::ChatFormat::ChatMl);
//! # let opts = patchrec::InitOptions::default().with_vocab_size(400).with_hidden_size(32).with_num_layers(1);
//! # let model = patchrec::init_model(&titles, template, &opts)?;
//! // A trained checkpoint: Model::load("checkpoint-dir", &ModelOptions::default())?
//! let catalog = Catalog::new(Arc::new(model))?;
//! catalog.add_batch(&[(1, "Toy Story (1995)"), (2, "Heat (1995)"), (3, "Fargo (1996)"), (4, "Alien (1979)")])?;
//! let user = catalog.history_of(&[1, 3])?;
//!
//! // The next items, best first; never item 4.
//! let top = recommend(&catalog, &user, &QueryOptions::default().with_k(2).with_deny(vec![4]))?;
//! assert_eq!(top.items.len(), 2);
//! assert!(top.items.iter().all(|r| r.item_id != 4));
//!
//! // Given candidates, scored on the same scale.
//! let ranked = rank(&catalog, &user, &[2, 4], &RankOptions::default())?;
//! assert_eq!(ranked.items.len(), 2);
//! # Ok(())
//! # }
//! ```

// The public API is documented; `internals` also exposes private modules, not held to it.
#![cfg_attr(not(feature = "internals"), warn(missing_docs))]

#[macro_use]
mod setters;

/// Declares a module below the public API: crate-private, or public (and hidden from the
/// docs) with the `internals` feature, which the command line's benchmarks, the fuzzers
/// and the tests use to reach kernels and reference computations.
macro_rules! internal {
    ($($name:ident),* $(,)?) => {$(
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        // Without `internals`, code only the benchmarks or tests call is unused here.
        #[cfg(not(feature = "internals"))]
        #[allow(dead_code, unused_imports)]
        pub(crate) mod $name;
    )*};
}

internal!(
    catalog, data, decode, error, eval, ffi, files, gguf, history, init, memory, model, prompt,
    query, rank, serve, text, train,
);

pub use catalog::tsv::read_items_tsv;
pub use catalog::{Catalog, CatalogItem, CatalogSnapshot, PatchStorage};
pub use data::{Dataset, SampleOptions, Split};
pub use error::{Error, Result, TensorError};
pub use eval::evaluate::{evaluate, popularity, EvalOptions, EvalReport};
pub use eval::Metrics;
pub use gguf::convert as convert_gguf;
pub use history::{Interaction, Layout, LayoutChoice, LayoutConfig, UserHistory};
pub use init::{init_model, InitOptions};
pub use model::adapters::apply as apply_adapters;
pub use model::{LoraConfig, Model, ModelOptions, PatchrecMeta, Quantization};
pub use prompt::{KvStats, PromptCache};
pub use query::{
    layout_stats, recommend, recommend_cached, LayoutStats, QueryOptions, QueryResult,
    Recommendation,
};
pub use rank::{
    rank, rank_cached, Candidate, RankOptions, RankOrder, RankResult, UnknownCandidates,
};
pub use serve::{Batcher, BatcherConfig, BatcherStats, Recommender};
pub use text::{ChatFormat, PromptTemplate};
pub use train::{train, Control, Progress, TrainConfig, TrainOptions, TrainOutcome};

/// The crate version, also returned by `patchrec_version()`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
