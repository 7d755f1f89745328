# Sourced by login.sh, chat.sh and muc.sh: builds release binaries and starts Starling for `localhost`
# with a throwaway data directory, pinned to CPU 0, clients on 127.0.0.1:15222 (STARTTLS) and
# 15223 (direct TLS), in-band registration on. Sets $bin, $work and $pid, and removes it all
# (and the PostgreSQL database in $database, if set) on exit. $storage, if set, is a
# `[storage]` section for the configuration.
# A first argument --postgres (of the sourcing script, whose arguments this shares) puts the
# server on a throwaway database of the PostgreSQL at 127.0.0.1:5432 (user postgres).
storage="${storage:-}"
database="${database:-}"
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
pid=""
cleanup() {
  [[ -n "$pid" ]] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  rm -rf "$work"
  [[ -n "${database:-}" ]] && dropdb -h 127.0.0.1 -U postgres "$database" || true
}
trap cleanup EXIT
cat > "$work/starling.toml" <<TOML
[server]
domains = ["localhost"]
data_dir = "$work/data"
${storage:-}
[c2s]
listen = ["127.0.0.1:15222"]
direct_tls_listen = ["127.0.0.1:15223"]
scram_iterations = 4096
ping_after_idle = "1h"
[http]
listen = []
[s2s]
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
