#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests against real redis-servers with
# the host loaded and guests built from source.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --ignore-rust-version -p redis-wasm -p native-baseline
cargo test --release --ignore-rust-version
