#!/usr/bin/env bash
# Drives every host function with pseudo-random arguments, stale and live handles, on a master
# with a replica, for MINUTES minutes (default 10): `EVIL.FUZZ <seed> 500` makes 500 random host
# calls per seed (tests/guests/evil). Fails on a crash or when master and replica diverge.
#
#   scripts/fuzz-host.sh [MINUTES]
#
# SMALL_ENCODINGS=1 lowers the hash, set and sorted-set listpack/intset limits on both servers
# (the fuzzer also crosses the default ones, less often). VERBATIM=1 lets the fuzzer ask for
# replicate-verbatim (the replica then replays EVIL.FUZZ: it loads the guest too).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
minutes=${1:-10}
port=${PORT:-23400}
dir=$(mktemp -d /tmp/redis-wasm-fuzz-host.XXXX)
scripts/build-host.sh >&2
evil=$(build_guest evil)
# A copy, so rebuilding the host during a long run cannot disturb it.
host="$dir/libredis_wasm.so"
cp target/host/libredis_wasm.so "$host"
# Small compressed list nodes, so that the fuzzer's lists have some.
lists=(--list-compress-depth 1 --list-max-listpack-size 4)
if [ -n "${SMALL_ENCODINGS:-}" ]; then
    lists+=(--hash-max-listpack-entries 4 --hash-max-listpack-value 8 --zset-max-listpack-entries 4
        --zset-max-listpack-value 8 --set-max-intset-entries 4)
fi
start_server "$port" "$dir/master" "${lists[@]}" --loadmodule "$host" LOAD "$evil"
start_server $((port + 1)) "$dir/replica" "${lists[@]}" --loadmodule "$host" LOAD "$evil"
trap 'redis-cli -p $port shutdown nosave >/dev/null 2>&1; redis-cli -p $((port + 1)) shutdown nosave >/dev/null 2>&1' EXIT
redis-cli -p $((port + 1)) replicaof 127.0.0.1 "$port" >/dev/null
until redis-cli -p $((port + 1)) info replication | grep -q master_link_status:up; do sleep 0.1; done

# Replication is asynchronous: wait (up to 20 s) until both hold the same dataset.
same_dataset() {
    for _ in $(seq 1 200); do
        a=$(redis-cli -p "$port" debug digest)
        b=$(redis-cli -p $((port + 1)) debug digest)
        [ "$a" = "$b" ] && return 0
        sleep 0.1
    done
    return 1
}

end=$((SECONDS + minutes * 60))
seed=0
errors=0
checks=0
while [ "$SECONDS" -lt "$end" ]; do
    batch=$(for _ in $(seq 1 200); do seed=$((seed + 1)); echo "EVIL.FUZZ $seed 500${VERBATIM:+ verbatim}"; done)
    out=$(echo "$batch" | redis-cli -p "$port")
    seed=$((seed + 200))
    errors=$((errors + $(echo "$out" | grep -c '^ERR' || true)))
    if ! redis-cli -p "$port" ping >/dev/null 2>&1; then
        echo "FINDING: the master stopped answering after seed $seed; log: $dir/master/redis.log" >&2
        exit 1
    fi
    checks=$((checks + 1))
    if ! same_dataset; then
        echo "FINDING: master and replica diverged after seed $seed ($a vs $b); logs in $dir" >&2
        exit 1
    fi
done
echo "fuzz-host: ${minutes} min, $seed seeds, $((seed * 500)) random host calls, $errors fuzz commands that ended in an error reply (each host call's own errors, such as a stale handle's, are values the fuzzer reads and goes past), $checks master/replica digest checks, 0 findings"
