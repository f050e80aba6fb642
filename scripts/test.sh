#!/usr/bin/env bash
# Runs the whole test suite: unit tests, and integration tests against real redis-servers with
# the host loaded and guests built from source. The host is the one scripts/build-host.sh builds
# (with profile-guided optimization), the one that ships.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build-host.sh
REDIS_WASM_MODULE_DIR="$PWD/target/host" cargo test --release --ignore-rust-version
