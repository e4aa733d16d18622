//! The paper's evaluation protocol.

pub mod metrics;

pub use metrics::{rank_of, Metrics};
