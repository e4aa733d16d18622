//! Benchmarks run by `patchrec bench`: serving latency per layout and history length, and
//! the machine's matmul rate that prefill is compared with; prompts exported for the peers'
//! benchmarks (`bench/`).

pub mod export;
pub mod matmul;
pub mod memory;
pub mod serving;

pub use export::{export_prompts, ExportManifest, ExportOptions};
pub use memory::{resident_bytes, MemoryReport};
pub use serving::{run_serving_bench, BenchOptions, BenchReport};
