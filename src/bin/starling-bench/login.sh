#!/usr/bin/env bash
# Memory per idle authenticated TLS session and logins per second against Starling:
# builds release binaries, starts a server pinned to CPU 0 with a throwaway data directory,
# and drives it from CPU 1 with `starling-bench login`. Prints the JSON result line.
#   usage: src/bin/starling-bench/login.sh [SESSIONS] [extra starling-bench args...]
set -euo pipefail
cd "$(dirname "$0")/../../.."
sessions="${1:-10000}"; shift || true
source src/bin/starling-bench/server.sh
taskset -c 1 "$bin/starling-bench" login --server 127.0.0.1:15222 --register --sessions "$sessions" \
  --concurrency 200 --idle 10 --server-pid "$pid" "$@"
