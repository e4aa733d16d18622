//! The paper's evaluation protocol.

pub mod evaluate;
pub mod metrics;

pub use evaluate::{evaluate, popularity, EvalOptions, EvalReport};
pub use metrics::{rank_of, Metrics};
