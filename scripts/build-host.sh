#!/usr/bin/env bash
# Builds the host (libredis_wasm.so) and the native benchmark twin (libnative_baseline.so) for
# release into target/host, with profile-guided optimization (PGO):
#   1. an instrumented build (target/pgo/instrumented) that counts which code runs;
#   2. a training run against real redis-servers: `bench --train` (the benchmark cases and the
#      example guests' commands) and the integration tests, whose counts llvm-profdata merges
#      into target/pgo/host.profdata;
#   3. the optimized build (target/pgo/optimized), laid out by those counts: hot code together,
#      cold code out of its way. Guest commands ran 2-23% faster (BENCHMARKS.md).
# REDIS_WASM_PGO=0 builds a plain release build instead (quicker while developing).
# Assumes scripts/setup.sh has run (redis-server, libclang, the wasm target, llvm-tools).
set -euo pipefail
cd "$(dirname "$0")/.."

out=target/host
mkdir -p "$out"
cargo=(cargo build --release --ignore-rust-version -p redis-wasm -p native-baseline)

# Copies the two libraries from $1 into target/host by renaming a copy over the old file: a
# server still running the old one keeps its mapping (writing into it would crash that server).
install_libraries() {
    for lib in libredis_wasm.so libnative_baseline.so; do
        cp "$1/$lib" "$out/.$lib.new"
        mv -f "$out/.$lib.new" "$out/$lib"
    done
}

if [ "${REDIS_WASM_PGO:-1}" = 0 ]; then
    echo "==> building the host (no PGO: REDIS_WASM_PGO=0)"
    "${cargo[@]}"
    install_libraries target/release
    exit 0
fi

triple="$(rustc -vV | sed -n 's/^host: //p')"
profdata_tool="$(rustc --print sysroot)/lib/rustlib/$triple/bin/llvm-profdata"
if [ ! -x "$profdata_tool" ]; then
    echo "llvm-profdata is missing: run scripts/setup.sh (it adds rustup's llvm-tools)," \
        "or build without PGO: REDIS_WASM_PGO=0 $0" >&2
    exit 1
fi
pgo="$PWD/target/pgo"
# --target keeps RUSTFLAGS off build scripts and proc macros; each build has its own directory
# so that neither rebuilds the other's dependencies.
echo "==> PGO 1/3: building the instrumented host"
RUSTFLAGS="-Cprofile-generate=$pgo/raw" CARGO_TARGET_DIR="$pgo/instrumented" \
    "${cargo[@]}" --target "$triple"
instrumented="$pgo/instrumented/$triple/release"

# Train again when the instrumented build or what the training runs changed: the tests, the
# trainer, the guests, the SDK and WIT they are built from, or the redis-server they run on.
stamp="$({
    sha256sum "$instrumented/libredis_wasm.so" "$instrumented/libnative_baseline.so"
    find tests/src tests/all tests/guests examples guest-sdk wit -type f -print0 |
        LC_ALL=C sort -z | xargs -0 sha256sum
    redis-server --version
} | sha256sum | cut -c1-16)"
if [ "$(cat "$pgo/host.profdata.stamp" 2>/dev/null)" != "$stamp" ] || [ ! -s "$pgo/host.profdata" ]; then
    echo "==> PGO 2/3: training (bench --train, then the integration tests)"
    rm -rf "$pgo/raw"
    cargo build --release --ignore-rust-version -q -p redis-wasm-tests --bin bench
    REDIS_WASM_MODULE_DIR="$instrumented" target/release/bench --train
    # The integration tests reach nearly all of the host, so that code the benchmark does not
    # run is not compiled as code that never runs. They must build; under the slower
    # instrumented build a timing-sensitive test may fail, and its counts are used all the same
    # (the tests proper run later against the optimized build), but the profile is then not
    # kept for the next build.
    cargo test --release --ignore-rust-version -q -p redis-wasm-tests --test all --no-run
    complete=yes
    REDIS_WASM_MODULE_DIR="$instrumented" REDIS_WASM_GRACEFUL_STOP=1 \
        cargo test --release --ignore-rust-version -q -p redis-wasm-tests --test all \
        >"$pgo/training-tests.log" 2>&1 || complete=no
    if [ "$complete" = no ]; then
        echo "==> some tests failed under the instrumented build (see $pgo/training-tests.log);" \
            "their counts are used, and the next build trains again"
    fi
    "$profdata_tool" merge -o "$pgo/host.profdata" "$pgo/raw"
    if [ "$complete" = yes ]; then
        echo "$stamp" > "$pgo/host.profdata.stamp"
    else
        rm -f "$pgo/host.profdata.stamp"
    fi
else
    echo "==> PGO 2/3: the instrumented build and the training are unchanged; keeping the profile"
fi

echo "==> PGO 3/3: building the optimized host"
RUSTFLAGS="-Cprofile-use=$pgo/host.profdata" CARGO_TARGET_DIR="$pgo/optimized" \
    "${cargo[@]}" --target "$triple"
install_libraries "$pgo/optimized/$triple/release"
echo "==> built $out/libredis_wasm.so (PGO)"
