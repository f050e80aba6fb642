# Shared by the long-running scripts: build the host and a guest, start throwaway servers.
# Sourced, not run.

# build_guest <crate>: builds a guest and prints its path.
build_guest() {
    cargo build --target wasm32-wasip2 --profile guest -p "$1" >&2
    echo "$PWD/target/wasm32-wasip2/guest/${1//-/_}.wasm"
}

# start_server <port> <dir> [redis-server args...]: starts a daemonized server and waits for it.
start_server() {
    local port=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" \
        --logfile "$dir/redis.log" --daemonize yes --enable-debug-command yes \
        --repl-diskless-sync-delay 0 "$@"
    for _ in $(seq 1 100); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "redis-server on port $port did not start; see $dir/redis.log" >&2
    return 1
}

# info_field <port> <section> <field>
info_field() {
    redis-cli -p "$1" INFO "$2" | tr -d '\r' | sed -n "s/^$3://p"
}
