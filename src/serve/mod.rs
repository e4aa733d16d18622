//! Serving many concurrent queries: the batching worker.

pub mod batcher;

pub use batcher::{Batcher, BatcherConfig, BatcherStats};
