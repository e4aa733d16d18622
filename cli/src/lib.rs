//! What the `patchrec` command line adds to the library: the benchmark harness behind
//! `patchrec bench*` (also run by this package's tests and `cargo bench`), and the SVG
//! plot of evaluation reports.

pub mod bench;
pub mod plot;
