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
source src/bin/starling-bench/server.sh
taskset -c 1 "$bin/starling-bench" chat --server 127.0.0.1:15222 --register --server-pid "$pid" "$@"
