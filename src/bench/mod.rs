//! Benchmarks run by `patchrec bench`: serving latency per layout and history length, and
//! the machine's matmul rate that prefill is compared with; prompts exported for the peers'
//! benchmarks (`bench/`); training throughput (`patchrec bench-train`).

pub mod export;
pub mod matmul;
pub mod memory;
pub mod serving;
pub mod train;
pub mod train_stage;

pub use export::{export_prompts, ExportManifest, ExportOptions};
pub use memory::{resident_bytes, MemoryReport};
pub use serving::{run_serving_bench, BenchOptions, BenchReport};
pub use train::{run_train_bench, TrainBenchOptions, TrainBenchReport};
pub use train_stage::{run_stage_bench, StageBenchReport};
