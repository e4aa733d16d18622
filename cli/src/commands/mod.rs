//! One module per subcommand: its arguments (`Args`) and what it runs (`run`).

pub mod apply_adapters;
pub mod bench;
pub mod bench_catalogue;
pub mod bench_filters;
pub mod bench_rank;
pub mod bench_train;
pub mod bench_users;
pub mod convert;
pub mod eval;
pub mod export_prompts;
pub mod init;
pub mod plot;
pub mod recommend;
pub mod synth;
pub mod train;
