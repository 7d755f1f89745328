#!/usr/bin/env bash
# Memory per idle authenticated TLS session and logins per second against Starling:
# builds release binaries, starts a server pinned to CPU 0 with a throwaway data directory,
# and drives it from CPU 1 with `starling-bench login`. Prints the JSON result line.
#   usage: src/bin/starling-bench/login.sh [SESSIONS] [extra starling-bench args...]
set -euo pipefail
cd "$(dirname "$0")/../../.."
sessions="${1:-10000}"; shift || true
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/starling-target}"
cargo build --release --bins -q
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/starling.toml" <<TOML
[server]
domains = ["localhost"]
data_dir = "$work/data"
[c2s]
listen = ["127.0.0.1:15222"]
direct_tls_listen = ["127.0.0.1:15223"]
scram_iterations = 4096
ping_after_idle = "1h"
[http]
listen = []
[log]
level = "warn"
[modules.register]
allow_registration = true
TOML
ulimit -n 20000 2>/dev/null || true
taskset -c 0 "$bin/starling" --config "$work/starling.toml" serve > "$work/server.log" 2>&1 &
pid=$!
sleep 1
taskset -c 1 "$bin/starling-bench" login --server 127.0.0.1:15222 --register --sessions "$sessions" \
  --concurrency 200 --idle 10 --server-pid "$pid" "$@"
