#!/usr/bin/env bash
# A million guest calls mixing normal calls, traps, out-of-memory and kills, then checks that
# the server's RSS, the guests' memory and the instance count stayed bounded.
#
#   scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
port=${PORT:-23500}
dir=$(mktemp -d /tmp/redis-wasm-soak.XXXX)
cargo build --release -p redis-wasm >&2
evil=$(build_guest evil)
# A copy, so rebuilding the host during a long run cannot disturb it.
host="$dir/libredis_wasm.so"
cp target/release/libredis_wasm.so "$host"
start_server "$port" "$dir" --busy-reply-threshold 50 --wasm.max-memory 32mb \
    --loadmodule "$host" LOAD "$evil"
trap 'redis-cli -p $port shutdown nosave >/dev/null 2>&1' EXIT

rss() { info_field "$port" memory used_memory_rss; }
# bench <n> <command...>: sends the command n times, pipelined; error replies are expected (and
# would stop redis-benchmark, so redis-cli --pipe sends them as inline commands).
bench() { yes "${*:2}" | head -n "$1" | sed 's/$/\r/' | redis-cli -p "$port" --pipe >/dev/null 2>&1 || true; }

redis-cli -p "$port" EVIL.CALLS 1 >/dev/null
rss_before=$(rss)
start=$SECONDS
kills=0
# Kills: a runaway guest is started and killed over and over, alongside the load below.
(
    while [ ! -f "$dir/stop" ]; do
        redis-cli -p "$port" EVIL.LOOP >/dev/null 2>&1 &
        sleep 0.2
        redis-cli -p "$port" WASM.KILL >/dev/null 2>&1 || true
        wait
        # Commands arriving while the loop runs get -BUSY: leave the server to the load a while.
        sleep 1
    done
) &
killer=$!
for round in 1 2 3 4; do
    bench 150000 EVIL.CALLS 1      # normal calls into Redis
    bench 50000 EVIL.OOB           # traps: instance dropped and re-created each time
    bench 25000 EVIL.GROW 64       # refused memory growth, then a trap
    bench 25000 EVIL.RECURSE 100000000   # stack overflow
done
touch "$dir/stop"
wait "$killer"
rss_after=$(rss)
calls=$(info_field "$port" wasm wasm_calls)
traps=$(info_field "$port" wasm wasm_traps)
kills=$(info_field "$port" wasm wasm_kills)
restarts=$(info_field "$port" wasm wasm_restarts)
instances=$(info_field "$port" wasm wasm_instances)
memory=$(info_field "$port" wasm wasm_memory_bytes)
echo "soak: $calls guest calls in $((SECONDS - start)) s: $traps traps, $kills kills, $restarts instance restarts"
echo "soak: RSS $((rss_before / 1048576)) MB before, $((rss_after / 1048576)) MB after; guest memory $((memory / 1048576)) MB; live instances $instances"
[ "$calls" -ge 1000000 ] || { echo "fewer than a million calls" >&2; exit 1; }
[ "$instances" -le 1 ] || { echo "instances leaked" >&2; exit 1; }
[ $((rss_after - rss_before)) -lt $((100 * 1048576)) ] || { echo "RSS grew by more than 100 MB" >&2; exit 1; }
redis-cli -p "$port" ping
