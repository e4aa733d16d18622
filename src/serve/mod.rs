//! Serving many concurrent queries: the batching worker, and the catalogue handle that
//! switches it on and off.

pub mod batcher;
pub mod recommender;

pub use batcher::{Batcher, BatcherConfig, BatcherStats};
pub use recommender::Recommender;
