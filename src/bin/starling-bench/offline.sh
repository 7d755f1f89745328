#!/usr/bin/env bash
# Offline storage through Starling: builds release binaries, starts a server pinned to CPU 0
# with a throwaway data directory (SQLite, or with --postgres a throwaway PostgreSQL
# database), and drives it from CPU 1 with `starling-bench offline`. Prints the JSON result.
#   usage: src/bin/starling-bench/offline.sh [--postgres] [starling-bench offline args...]
set -euo pipefail
cd "$(dirname "$0")/../../.."
source src/bin/starling-bench/server.sh
taskset -c 1 "$bin/starling-bench" offline --server 127.0.0.1:15222 --register "$@"
