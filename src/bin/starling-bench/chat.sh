#!/usr/bin/env bash
# One-to-one chat through Starling: builds release binaries, starts a server pinned to CPU 0
# with a throwaway data directory (SQLite, or with --postgres a throwaway database on the
# PostgreSQL at 127.0.0.1:5432, user postgres), and drives it from CPU 1 with
# `starling-bench chat`. Prints the JSON result line.
#   usage: src/bin/starling-bench/chat.sh [--postgres] [starling-bench chat args...]
# Example (durable chat with stream-management acks after every message):
#   src/bin/starling-bench/chat.sh --pairs 100 --messages 500 --window 20 --ack-every 1
set -euo pipefail
cd "$(dirname "$0")/../../.."
storage=""
database=""
if [[ "${1:-}" == "--postgres" ]]; then
  database="starling_bench_$$"
  createdb -h 127.0.0.1 -U postgres "$database"
  storage="[storage]
url = \"postgres://postgres@127.0.0.1:5432/$database\""
  shift
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/starling-target}"
cargo build --release --bins -q
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
  [[ -n "$database" ]] && dropdb -h 127.0.0.1 -U postgres "$database" || true
}
trap cleanup EXIT
cat > "$work/starling.toml" <<TOML
[server]
domains = ["localhost"]
data_dir = "$work/data"
$storage
[c2s]
listen = ["127.0.0.1:15222"]
direct_tls_listen = []
scram_iterations = 4096
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
taskset -c 1 "$bin/starling-bench" chat --server 127.0.0.1:15222 --register "$@"
