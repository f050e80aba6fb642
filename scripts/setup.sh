#!/usr/bin/env bash
# Installs what the build and tests need, if missing: Debian's redis-server and redis-tools
# (Redis 7.0), libclang-dev (bindgen in the redis-module crate), the wasm32-wasip2 target, and
# rustup's llvm-tools (llvm-profdata, for scripts/build-host.sh's profile-guided build).
# Arguments name more Debian packages to install if their command is missing (e.g. valgrind).
set -euo pipefail

missing=()
for extra in "$@"; do
    command -v "$extra" >/dev/null 2>&1 || missing+=("$extra")
done
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v redis-benchmark >/dev/null 2>&1 || missing+=(redis-tools)
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "==> adding the wasm32-wasip2 target"
    rustup target add wasm32-wasip2
fi

if [ ! -x "$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-profdata" ]; then
    echo "==> adding rustup's llvm-tools (llvm-profdata)"
    rustup component add llvm-tools
fi
