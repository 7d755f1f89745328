#!/usr/bin/env bash
# One-to-one chat across one server-to-server link: builds release binaries, starts two Starling
# servers on loopback, a.test (clients on 127.0.0.1:16222, servers on 16269) and b.test
# (clients on 16322, servers on 16369), each with its own throwaway data directory and SQLite
# database, static routes to each other, self-signed certificates (dialback), in-band
# registration on; both pinned to CPU 0. Then drives them from CPU 1 with `starling-bench chat`,
# senders on a.test and receivers on b.test, and prints the JSON result line of each run.
#
# Without arguments, two runs of 100 pairs x 500 messages:
#   - window 10 without stream management: messages per second across the link.
#   - window 20 with stream management and an ack request after every message, each sender
#     paced to 20 messages per second (2000 per second in all): delivery and acknowledgement
#     latency across the link under that load.
# A full link queue ([s2s] max_queued) holds senders back; stanzas that wait more than 10 s
# bounce with resource-constraint (counted as `bounced`).
# With arguments: one run with those.
#   usage: src/bin/starling-bench/s2s.sh [starling-bench chat args...]
# Example:
#   src/bin/starling-bench/s2s.sh --pairs 10 --messages 1000 --window 20 --ack-every 1
set -euo pipefail
cd "$(dirname "$0")/../../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/starling-target}"
cargo build --release --bins -q
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
ulimit -n 20000 2>/dev/null || true

start() { # domain c2s-port s2s-port peer-domain peer-s2s-port
  mkdir -p "$work/$1"
  cat > "$work/$1/starling.toml" <<TOML
[server]
domains = ["$1"]
data_dir = "$work/$1/data"
[c2s]
listen = ["127.0.0.1:$2"]
direct_tls_listen = []
scram_iterations = 4096
ping_after_idle = "1h"
[http]
listen = []
[s2s]
listen = ["127.0.0.1:$3"]
require_valid_certs = false
[s2s.routes]
"$4" = "127.0.0.1:$5"
[log]
level = "warn"
[modules.register]
allow_registration = true
TOML
  taskset -c 0 "$bin/starling" --config "$work/$1/starling.toml" serve > "$work/$1/server.log" 2>&1 &
  pids+=($!)
}

ready() { # port
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "no server on port $1" >&2
  return 1
}

start a.test 16222 16269 b.test 16369
start b.test 16322 16369 a.test 16269
ready 16222 && ready 16322

chat() {
  if ! taskset -c 1 "$bin/starling-bench" chat --server 127.0.0.1:16222 --domain a.test \
    --peer-server 127.0.0.1:16322 --peer-domain b.test --register "$@"; then
    tail -n 20 "$work"/*/server.log >&2
    return 1
  fi
}

if [[ $# -gt 0 ]]; then
  chat "$@"
else
  chat --pairs 100 --messages 500 --window 10 --deadline 60
  chat --pairs 100 --messages 500 --window 20 --ack-every 1 --rate 20 --deadline 60
fi
