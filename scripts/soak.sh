#!/usr/bin/env bash
# A million guest calls mixing normal calls, traps, refused memory growth, writes refused by
# maxmemory and kills, then checks that the server's RSS, the guests' memory and the instance
# count stayed bounded.
#
#   scripts/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
port=${PORT:-23500}
dir=$(mktemp -d /tmp/redis-wasm-soak.XXXX)
scripts/build-host.sh >&2
evil=$(build_guest evil)
api=$(build_guest api-guest)
# A copy, so rebuilding the host during a long run cannot disturb it.
host="$dir/libredis_wasm.so"
cp target/host/libredis_wasm.so "$host"
start_server "$port" "$dir" --busy-reply-threshold 50 --wasm.max-memory 32mb \
    --loadmodule "$host" LOAD "$evil" LOAD "$api"
trap 'redis-cli -p $port shutdown nosave >/dev/null 2>&1' EXIT

# ask <command...>: runs a command once no runaway guest holds the server (-BUSY otherwise).
ask() {
    local out
    until out=$(redis-cli -p "$port" "$@" | tr -d '\r') && [[ $out != BUSY* ]]; do sleep 0.05; done
    echo "$out"
}
field() { ask INFO "$1" | sed -n "s/^$2://p"; }
rss() { field memory used_memory_rss; }
# bench <n> <command...>: sends the command n times, pipelined; error replies are expected (and
# would stop redis-benchmark, so redis-cli --pipe sends them as inline commands). A pipe whose
# final ECHO lands on a -BUSY server never sees its reply: --pipe-timeout ends it.
bench() {
    yes "${*:2}" | head -n "$1" | sed 's/$/\r/' |
        redis-cli -p "$port" --pipe --pipe-timeout 3 >/dev/null 2>&1 || true
}

ask EVIL.CALLS 1 >/dev/null
rss_before=$(rss)
start=$SECONDS
# Kills: a runaway guest is started and killed over and over, alongside the load below.
(
    while [ ! -f "$dir/stop" ]; do
        redis-cli -p "$port" EVIL.LOOP >/dev/null 2>&1 &
        sleep 0.2
        redis-cli -p "$port" WASM.KILL >/dev/null 2>&1 || true
        wait
        # Commands arriving while the loop runs get -BUSY: leave the server to the load a while.
        sleep 2
    done
) &
killer=$!
rounds=0
# Commands that hit a busy server are refused, so rounds go on until a million calls ran.
while [ "$(field wasm wasm_calls)" -lt 1000000 ]; do
    rounds=$((rounds + 1))
    bench 100000 EVIL.CALLS 1            # normal calls into Redis
    bench 30000 EVIL.OOB                 # traps: instance dropped and re-created each time
    bench 15000 EVIL.GROW 64             # refused memory growth, then a trap
    bench 15000 EVIL.RECURSE 100000000   # stack overflow
    ask CONFIG SET maxmemory 1 >/dev/null
    bench 20000 API.WCALL 2 SET k v      # writes through call refused: out of memory
    bench 5000 EVIL.FUZZ 7 20            # random host calls, writes refused
    ask CONFIG SET maxmemory 0 >/dev/null
done
touch "$dir/stop"
wait "$killer"
rss_after=$(rss)
calls=$(field wasm wasm_calls)
errors=$(field wasm wasm_errors)
traps=$(field wasm wasm_traps)
kills=$(field wasm wasm_kills)
restarts=$(field wasm wasm_restarts)
instances=$(field wasm wasm_instances)
memory=$(field wasm wasm_memory_bytes)
oom=$(field errorstats errorstat_CALLERR | sed 's/count=//')
echo "soak: $calls guest calls in $rounds rounds, $((SECONDS - start)) s: $errors errors, $traps traps, $kills kills, $restarts instance restarts, ${oom:-0} writes refused for lack of memory"
echo "soak: RSS $((rss_before / 1048576)) MB before, $((rss_after / 1048576)) MB after; guest memory $((memory / 1048576)) MB; live instances $instances"
[ "$calls" -ge 1000000 ] || { echo "fewer than a million calls" >&2; exit 1; }
[ "$instances" -le 2 ] || { echo "instances leaked (more than one per guest)" >&2; exit 1; }
[ $((rss_after - rss_before)) -lt $((100 * 1048576)) ] || { echo "RSS grew by more than 100 MB" >&2; exit 1; }
ask PING
