#!/usr/bin/env bash
# Builds the host and the example guests, starts redis-server with all of them loaded, and shows
# HELLOWORLD.RAND answering. PORT (default 6379) picks the port; stop it with
# `redis-cli -p $PORT shutdown nosave`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

PORT="${PORT:-6379}"
examples=()
for manifest in examples/*/Cargo.toml; do
    examples+=("$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n 1)")
done

echo "==> building the host"
scripts/build-host.sh
echo "==> building the example guests: ${examples[*]}"
cargo build --target wasm32-wasip2 --profile guest $(printf -- '-p %s ' "${examples[@]}")

module_args=()
for name in "${examples[@]}"; do
    module_args+=(LOAD "$PWD/target/wasm32-wasip2/guest/${name//-/_}.wasm")
done

if redis-cli -p "$PORT" ping >/dev/null 2>&1; then
    echo "something already answers on port $PORT; stop it or choose another with PORT=..." >&2
    exit 1
fi

rundir="$PWD/target/run"
mkdir -p "$rundir"
echo "==> starting redis-server on port $PORT (log: $rundir/redis.log)"
redis-server --port "$PORT" --bind 127.0.0.1 --dir "$rundir" --logfile "$rundir/redis.log" --daemonize yes \
    --loadmodule "$PWD/target/host/libredis_wasm.so" "${module_args[@]}"
for _ in $(seq 1 100); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done

echo "==> redis-cli -p $PORT HELLOWORLD.RAND"
redis-cli -p "$PORT" HELLOWORLD.RAND
echo
echo "Loaded example guests: ${examples[*]} (details: redis-cli -p $PORT WASM.LIST)"
echo "Help: redis-cli -p $PORT WASM.HELP    Stop: redis-cli -p $PORT shutdown nosave"
