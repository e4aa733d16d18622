//! Benchmarks run by `patchrec bench`: serving latency per layout and history length, and
//! the machine's matmul rate that prefill is compared with.

pub mod matmul;
pub mod serving;

pub use serving::{run_serving_bench, BenchOptions, BenchReport};
