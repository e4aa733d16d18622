//! Benchmark data in the shared format, and the paper's sample construction.

pub mod dataset;
pub mod samples;
pub mod synthetic;

pub use dataset::{Dataset, Split, UserSequence};
pub use samples::{samples, Sample, SampleOptions};
