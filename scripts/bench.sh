#!/usr/bin/env bash
# The benchmark suite (see BENCHMARKS.md): every case as a native module, a guest and Lua, side by
# side in one server, then other clients' latency while a ~1 MB guest loads.
# `scripts/bench.sh --instructions [case...]` counts instructions per call instead, under valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--instructions" ]; then
    scripts/setup.sh valgrind
    scripts/build-host.sh
    export REDIS_WASM_MODULE_DIR="$PWD/target/host"
    exec cargo run --release --ignore-rust-version -q -p redis-wasm-tests --bin bench -- "$@"
fi
scripts/setup.sh
scripts/build-host.sh
export REDIS_WASM_MODULE_DIR="$PWD/target/host"
cargo run --release --ignore-rust-version -q -p redis-wasm-tests --bin bench
cargo run --release --ignore-rust-version -q -p redis-wasm-tests --bin load_latency
