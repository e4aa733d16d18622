//! Benchmarks run by `patchrec bench`: serving latency per layout and history length, and
//! the machine's matmul rate that prefill is compared with; prompts exported for the peers'
//! benchmarks (`bench/`); candidate scoring (`patchrec bench-rank`);
//! catalogue size (`patchrec bench-catalogue`); allow- and deny-lists (`patchrec bench-filters`); many users under a KV
//! budget (`patchrec bench-users`); training throughput (`patchrec bench-train`).

pub mod catalogue;
pub mod export;
pub mod filters;
pub mod matmul;
pub mod memory;
pub mod rank;
pub mod roofline;
pub mod serving;
pub mod train;
pub mod train_stage;
pub mod users;

pub use catalogue::{run_catalogue_bench, CatalogueBenchOptions, CatalogueBenchReport};
pub use export::{export_prompts, ExportManifest, ExportOptions};
pub use filters::{run_filters_bench, FiltersBenchOptions, FiltersBenchReport};
pub use memory::{resident_bytes, MemoryReport};
pub use rank::{run_rank_bench, synthetic_catalogue, RankBenchOptions, RankBenchReport};
pub use serving::{run_serving_bench, BenchOptions, BenchReport};
pub use train::{run_train_bench, TrainBenchOptions, TrainBenchReport};
pub use train_stage::{run_stage_bench, StageBenchReport};
pub use users::{run_users_bench, UsersBenchOptions, UsersBenchReport};
