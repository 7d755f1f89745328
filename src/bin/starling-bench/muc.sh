#!/usr/bin/env bash
# A multi-user chat room in Starling: builds release binaries, starts a server pinned to CPU 0
# with a throwaway data directory (SQLite, or with --postgres a throwaway database on the
# PostgreSQL at 127.0.0.1:5432, user postgres), and drives it from CPU 1 with
# `starling-bench muc`. Prints the JSON result line.
#   usage: src/bin/starling-bench/muc.sh [--postgres] [starling-bench muc args...]
# Example (1024 occupants, 4 senders of 100 messages each, 32 entries at a time):
#   src/bin/starling-bench/muc.sh --occupants 1024 --senders 4 --messages 100 --join-concurrency 32
set -euo pipefail
cd "$(dirname "$0")/../../.."
source src/bin/starling-bench/server.sh
taskset -c 1 "$bin/starling-bench" muc --server 127.0.0.1:15222 --register --server-pid "$pid" "$@"
