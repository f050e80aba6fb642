#!/usr/bin/env bash
# Fuzzes the load path (format checks, compilation, import checks, instantiation, init) with
# `cargo fuzz` for MINUTES minutes (default 10). The corpus is seeded with every guest the
# workspace has (examples and test guests) and the hand-made components no toolchain emits
# (tests/src/hand_made.rs: start functions, endless allocators): from random bytes alone the
# fuzzer never gets past the format check. Needs the nightly toolchain and cargo-fuzz; not part
# of the test suite.
#
#   scripts/fuzz-load.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}

guests=()
for manifest in examples/*/Cargo.toml tests/guests/*/Cargo.toml; do
    guests+=(-p "$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n 1)")
done
# The same target directory as the test build (tests/build.rs), so its guests are reused.
cargo build --target wasm32-wasip2 --profile guest --target-dir target/guests "${guests[@]}" >&2

mkdir -p host/fuzz/corpus/load
cp target/guests/wasm32-wasip2/guest/*.wasm host/fuzz/corpus/load/
cargo run --release --ignore-rust-version -q -p redis-wasm-tests --bin hand_made host/fuzz/corpus/load
cd host/fuzz
cargo +nightly fuzz run -s none load -- -max_total_time=$((minutes * 60))
