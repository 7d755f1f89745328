#!/usr/bin/env bash
# Starling against Prosody and ejabberd (Debian packages) on the same machine, in the same run.
#
# Installs prosody and ejabberd with apt when missing (without starting their system services),
# then, for each repeat, runs every scenario against each server in turn (Starling on SQLite,
# Starling on PostgreSQL, Prosody, ejabberd), each server alone on CPU 0 and the load
# generator on CPU 1. All servers get the same setup: loopback, STARTTLS with a self-signed
# RSA-2048 certificate, SCRAM with 4096 iterations (SCRAM-SHA-256, the mechanism of the
# benchmark plan's login target, unless --mech says SCRAM-SHA-1), in-band registration for the
# accounts, stream management, offline storage, the archive off or on per scenario, a
# multi-user chat service on conference.localhost taking rooms of at least 1024 occupants, a
# listen backlog of 1024 (Starling's own), no rate limits or shapers.
#
# Scenarios (each ends with one JSON line from starling-bench):
#   echo          no XMPP server: a trivial TLS echo (starling-bench echo-server, the same
#                 certificate) driven with the chat messages, PAIRS connections of
#                 CHAT_MESSAGES messages: the ceiling. Its CPU time gives the ceiling of
#                 one core also when the load generator is the bound;
#   login         LOGIN_SESSIONS accounts registered, then logged in (TLS, SCRAM, bind,
#                 presence, 50 at a time) and left idle 10 s: logins per second and the
#                 server's resident memory per idle session;
#   login-ecdsa   as login, ECDSA_SESSIONS sessions (2,000), every server presenting a
#                 self-signed ECDSA P-256 certificate instead: the RSA-2048 signature in
#                 each handshake dominates a login's cost on every server, and an ECDSA
#                 signature is a small part of it, so this shows the servers' own work;
#   relogin       RELOGIN_SESSIONS accounts (4,000) with the RSA-2048 certificate, each
#                 logged in and out once, then logged in again and measured: reconnections, the load
#                 generator reusing the SCRAM keys of the first login as RFC 5802 §3 lets
#                 clients do (so it no longer pays PBKDF2 per login and the server's own rate
#                 shows) and offering each account's own TLS session ticket from that login,
#                 as a client that reconnects does; the result counts resumed handshakes.
#                 The other login scenarios make full TLS handshakes only. 4,000 because
#                 2,000 reconnections last about half a second on Starling, and then the
#                 ramp-up of the first 50 and the tail of the last weigh in the rate;
#   relogin-ecdsa as relogin with the ECDSA P-256 certificate;
#   relogin-full  as relogin, but offering no TLS ticket: each measured login makes a full
#                 TLS handshake with the RSA-2048 certificate, as a client whose ticket has
#                 expired does. The server does all the work of a first login (no server
#                 derives keys at login; each keeps the salted keys), while the load
#                 generator, keeping its SCRAM keys, spends no PBKDF2, which bounds its rate
#                 of first logins in login and login-ecdsa against a fast server;
#   relogin-full-ecdsa  as relogin-full with the ECDSA P-256 certificate;
#   chat          PAIRS pairs, CHAT_MESSAGES messages per sender, window 10, no stream
#                 management: delivered messages per second. Nothing waits for storage here,
#                 so the run is long enough (300,000 messages by default) that storage work
#                 queued behind the deliveries (Starling's group commit takes up to 65,536
#                 writes) is paid within it;
#   chat-half     Starling only: chat paced at half of the rate the same server reached in
#                 this repeat's chat run: latency at a moderate load;
#   chat-sm       SM_MESSAGES messages per sender (CHAT_MESSAGES unless given, so that the
#                 durable and the plain rate come from runs of the same length), stream
#                 management, an ack request after every message (acks wait for storage on
#                 Starling): also the time from send to ack (on Starling that ack means
#                 "committed to storage");
#   chat-archive  as chat-sm with the archive on for every message, MESSAGES messages per
#                 sender (the slowest server takes minutes for 50,000);
#   muc           OCCUPANTS occupants enter one room, 32 entries at a time (join time, and
#                 the CPU the server and the load generator used for it), then
#                 SENDERS of them send MUC_MESSAGES groupchat messages each, window 10:
#                 deliveries per second and delivery latency. The room archive is off
#                 everywhere: Prosody and ejabberd run without their MUC archive module or
#                 option; Starling archives rooms by default, so on Starling the creator
#                 submits muc#roomconfig_enablearchiving=0 (ejabberd refuses unknown fields,
#                 and its muc#roomconfig_enablelogging needs mod_muc_log, so the others get
#                 the plain instant-room form);
#   offline       OFFLINE_USERS offline accounts get OFFLINE_MESSAGES messages each (senders
#                 with stream management, window 50, ack every 10), then log in: time to store,
#                 time to drain at login.
#
# Writes every JSON result line to $OUT/results.jsonl, prints Markdown tables of medians
# (min-max) with the Starling/Prosody and Starling/ejabberd ratios and, with --write, puts
# them with the run's setup into BENCHMARKS.md between its "compare.sh" markers.
#   usage: bench/compare.sh [--pairs N] [--chat-messages N] [--sm-messages N] [--messages N]
#                           [--login-sessions N] [--ecdsa-sessions N] [--relogin-sessions N]
#                           [--occupants N] [--senders N] [--muc-messages N] [--offline-users N]
#                           [--offline-messages N] [--repeats N] [--servers "a b"]
#                           [--scenarios "a b"] [--mech SCRAM-SHA-256|SCRAM-SHA-1] [--write]
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=100 chat_messages=3000 sm_messages="" messages=500 repeats=3 servers="starling starling-pg prosody ejabberd"
occupants=1024 senders=4 muc_messages=100 login_sessions=10000 ecdsa_sessions=2000 relogin_sessions=4000
offline_users=10
offline_messages=1000 mech=SCRAM-SHA-256 scenarios="echo login login-ecdsa relogin relogin-ecdsa relogin-full relogin-full-ecdsa chat chat-half chat-sm chat-archive muc offline"
write=false
command_line="bench/compare.sh $*"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pairs) pairs="$2"; shift 2 ;;
    --chat-messages) chat_messages="$2"; shift 2 ;;
    --sm-messages) sm_messages="$2"; shift 2 ;;
    --messages) messages="$2"; shift 2 ;;
    --login-sessions) login_sessions="$2"; shift 2 ;;
    --ecdsa-sessions) ecdsa_sessions="$2"; shift 2 ;;
    --relogin-sessions) relogin_sessions="$2"; shift 2 ;;
    --occupants) occupants="$2"; shift 2 ;;
    --senders) senders="$2"; shift 2 ;;
    --muc-messages) muc_messages="$2"; shift 2 ;;
    --offline-users) offline_users="$2"; shift 2 ;;
    --offline-messages) offline_messages="$2"; shift 2 ;;
    --repeats) repeats="$2"; shift 2 ;;
    --servers) servers="$2"; shift 2 ;;
    --scenarios) scenarios="$2"; shift 2 ;;
    --mech) mech="$2"; shift 2 ;;
    --write) write=true; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
sm_messages="${sm_messages:-$chat_messages}"
# Every server stores the accounts' SCRAM keys for the hash of the mechanism the load
# generator uses (Prosody's password_hash, ejabberd's auth_scram_hash).
case "$mech" in
  SCRAM-SHA-256) prosody_hash=SHA-256 ejabberd_hash=sha256 ;;
  SCRAM-SHA-1) prosody_hash=SHA-1 ejabberd_hash=sha ;;
  *) echo "--mech must be SCRAM-SHA-256 or SCRAM-SHA-1" >&2; exit 2 ;;
esac

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/starling-target}"
cargo build --release --bins -q
bin="$CARGO_TARGET_DIR/release"
OUT="${OUT:-$(mktemp -d /tmp/starling-compare.XXXX)}"
work="$OUT/work"
mkdir -p "$work"
chmod 755 "$OUT" "$work"
results="$OUT/results.jsonl"
: > "$results"

install_packages() {
  local missing=()
  command -v prosody > /dev/null || missing+=(prosody)
  command -v ejabberdctl > /dev/null || missing+=(ejabberd)
  [[ ${#missing[@]} -eq 0 ]] && return
  # Packages only: the system services stay stopped (a policy-rc.d refusing them, if the
  # machine has none of its own).
  local policy=/usr/sbin/policy-rc.d blocker=false
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; blocker=true; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" > "$OUT/apt.log" 2>&1
  if $blocker; then rm -f "$policy"; fi
}
install_packages

openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost" -keyout "$work/key.pem" -out "$work/cert.pem" 2> /dev/null
cat "$work/cert.pem" "$work/key.pem" > "$work/both.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost" -keyout "$work/ecdsa-key.pem" -out "$work/ecdsa-cert.pem" 2> /dev/null
cat "$work/ecdsa-cert.pem" "$work/ecdsa-key.pem" > "$work/ecdsa-both.pem"
chmod 644 "$work"/*.pem

PORT=25222
pid=""
database=""
# The most occupants a room may have, on every server.
room_cap=$(( occupants > 1024 ? occupants : 1024 ))
ulimit -n 20000 2> /dev/null || true

archive_on() { [[ "$1" == chat-archive ]]; }
# The certificate files a scenario's server presents: the ECDSA pair for the -ecdsa scenarios,
# the RSA pair otherwise (as a prefix of cert.pem, key.pem and both.pem).
pem() { [[ "$1" == *-ecdsa ]] && echo "$work/ecdsa-" || echo "$work/"; }

start_starling() { # scenario postgres?
  local storage="" mam=never
  archive_on "$1" && mam=always
  if [[ "$2" == pg ]]; then
    database="starling_compare_$$"
    createdb -h 127.0.0.1 -U postgres "$database"
    storage="[storage]
url = \"postgres://postgres@127.0.0.1:5432/$database\""
  fi
  rm -rf "$work/starling-data"
  cat > "$work/starling.toml" <<TOML
[server]
domains = ["localhost"]
data_dir = "$work/starling-data"
$storage
[c2s]
listen = ["127.0.0.1:$PORT"]
direct_tls_listen = []
scram_iterations = 4096
[tls.certs."localhost"]
cert = "$(pem "$1")cert.pem"
key = "$(pem "$1")key.pem"
[http]
listen = []
[s2s]
listen = []
[log]
level = "error"
[modules.register]
allow_registration = true
[modules.mam]
default = "$mam"
[modules.muc]
max_occupants = $room_cap
TOML
  taskset -c 0 "$bin/starling" --config "$work/starling.toml" serve > "$work/starling.log" 2>&1 &
  pid=$!
}

start_prosody() {
  local policy=false
  archive_on "$1" && policy=true
  rm -rf "$work/prosody-data"; mkdir -p "$work/prosody-data"
  cat > "$work/prosody.cfg.lua" <<LUA
run_as_root = true
daemonize = false
pidfile = "$work/prosody.pid"
data_path = "$work/prosody-data"
log = { { levels = { min = "error" }, to = "file", filename = "$work/prosody.log" } }
interfaces = { "127.0.0.1" }
c2s_ports = { $PORT }
s2s_ports = { }
http_ports = { }
https_ports = { }
c2s_direct_tls_ports = { }
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping", "register", "smacks", "offline", "mam", "carbons" }
modules_disabled = { "s2s" }
authentication = "internal_hashed"
password_hash = "$prosody_hash"
default_iteration_count = 4096
network_settings = { tcp_backlog = 1024 }
c2s_require_encryption = true
allow_registration = true
default_archive_policy = $policy
archive_expires_after = "1w"
VirtualHost "localhost"
  ssl = { certificate = "$(pem "$1")cert.pem", key = "$(pem "$1")key.pem" }
-- Prosody 0.12's MUC has no occupant limit of its own; max_occupants is the option of the
-- community module mod_muc_max_occupants, should it be installed. Rooms lock until the
-- creator submits the configuration form, as in Starling. No muc_mam: no room archive.
Component "conference.localhost" "muc"
  max_occupants = $room_cap
  muc_room_locking = true
  muc_room_default_history_length = 20
  restrict_room_creation = false
LUA
  taskset -c 0 prosody --config "$work/prosody.cfg.lua" -F > "$work/prosody.out" 2>&1 &
  pid=$!
}

# Its own ctl config too: Debian's sets the config path back to /etc/ejabberd. Run as user
# ejabberd directly: run by root, ejabberdctl switches with su, whose PAM session sets the
# open files limit back to 1024, too few for the muc scenario's connections.
EJABBERD=(env HOME=/var/lib/ejabberd setpriv --reuid=ejabberd --regid=ejabberd --init-groups
          ejabberdctl --config "$work/ejabberd.yml" --ctl-config "$work/ejabberdctl.cfg" --spool "$work/ejabberd-db"
          --logs "$work/ejabberd-logs" --node "bench@localhost")
start_ejabberd() {
  local mam=never
  archive_on "$1" && mam=always
  rm -rf "$work/ejabberd-db" "$work/ejabberd-logs"; mkdir -p "$work/ejabberd-db" "$work/ejabberd-logs"
  chmod 777 "$work/ejabberd-db" "$work/ejabberd-logs"
  cat > "$work/ejabberd.yml" <<YAML
hosts: ["localhost"]
loglevel: error
certfiles: ["$(pem "$1")both.pem"]
auth_method: internal
auth_password_format: scram
auth_scram_hash: $ejabberd_hash
registration_timeout: infinity
shaper: {}
shaper_rules: {}
acl: {}
access_rules:
  register: {allow: all}
  local: {allow: all}
listen:
  - port: $PORT
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
    max_stanza_size: 262144
    backlog: 1024
modules:
  mod_roster: {}
  mod_disco: {}
  mod_ping: {}
  mod_register: {access: register, ip_access: all}
  mod_stream_mgmt: {}
  mod_offline: {}
  mod_carboncopy: {}
  mod_mam: {default: $mam}
  mod_muc:
    hosts: ["conference.localhost"]
    access_create: all
    max_users: $room_cap
    max_users_presence: $room_cap
    max_user_conferences: 1000
    history_size: 20
    min_message_interval: 0
    min_presence_interval: 0
    default_room_options: {max_users: $room_cap, mam: false}
YAML
  printf 'ERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"\nEJABBERD_PID_PATH=%s\n' "$work/ejabberd-db/ejabberd.pid" \
    > "$work/ejabberdctl.cfg"
  chmod 644 "$work/ejabberd.yml" "$work/ejabberdctl.cfg"
  taskset -c 0 "${EJABBERD[@]}" foreground > "$work/ejabberd.out" 2>&1 &
  pid=$!
  "${EJABBERD[@]}" started > /dev/null 2>&1 || true
}

wait_for_port() {
  for _ in $(seq 1 200); do
    (exec 3<> "/dev/tcp/127.0.0.1/$PORT") 2> /dev/null && return 0
    sleep 0.1
  done
  echo "server did not listen on $PORT" >&2
  return 1
}

stop_server() {
  case "$1" in
    ejabberd) "${EJABBERD[@]}" stop > /dev/null 2>&1 || true ;;
  esac
  if [[ -n "$pid" ]]; then
    # Prosody 0.12 sometimes hangs in its shutdown (an error in mod_c2s while closing
    # hibernating sessions): after 10 s it is killed.
    kill "$pid" 2> /dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2> /dev/null || true
    wait "$pid" 2> /dev/null || true
  fi
  pid=""
  if [[ -n "$database" ]]; then dropdb -h 127.0.0.1 -U postgres "$database" || true; database=""; fi
  sleep 1
}
trap 'stop_server ejabberd' EXIT

# The process whose memory counts: the started one or its largest descendant (ejabberd runs
# in a beam.smp below its control script).
largest_process() {
  local all=("$pid") queue=("$pid") next
  while [[ ${#queue[@]} -gt 0 ]]; do
    next=$(pgrep -P "${queue[0]}" || true); queue=("${queue[@]:1}")
    for child in $next; do all+=("$child"); queue+=("$child"); done
  done
  for p in "${all[@]}"; do echo "$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2> /dev/null || echo 0) $p"; done \
    | sort -n | tail -1 | cut -d' ' -f2
}

declare -A chat_rate=()
record() { # server scenario repeat json-line
  echo "{\"server\":\"$1\",\"scenario\":\"$2\",\"repeat\":$3,\"result\":$4}" | tee -a "$results"
}

run_echo() { # repeat
  taskset -c 0 "$bin/starling-bench" echo-server --listen "127.0.0.1:$PORT" --cert "$work/cert.pem" \
    --key "$work/key.pem" > "$work/echo.out" 2>&1 &
  pid=$!
  wait_for_port
  local line
  line=$(taskset -c 1 "$bin/starling-bench" echo --server "127.0.0.1:$PORT" --connections "$pairs" \
    --messages "$chat_messages" --window 10 --server-pid "$pid" 2> "$work/bench.err" || true)
  [[ -z "$line" ]] && line="{\"error\":\"$(tr -d '"\n' < "$work/bench.err" | cut -c1-200)\"}"
  record echo echo "$1" "$line"
  stop_server echo
}

run_one() { # server scenario repeat
  local server="$1" scenario="$2" repeat="$3" args=()
  if [[ "$scenario" == chat-half ]]; then
    # Only Starling, and only once its chat rate of this repeat is known.
    [[ "$server" == starling* && -n "${chat_rate[$server]:-}" ]] || return 0
  fi
  case "$server" in
    starling) start_starling "$scenario" sqlite ;;
    starling-pg) start_starling "$scenario" pg ;;
    prosody) start_prosody "$scenario" ;;
    ejabberd) start_ejabberd "$scenario" ;;
  esac
  wait_for_port
  case "$scenario" in
    login) args=(login --sessions "$login_sessions" --idle 10) ;;
    login-ecdsa) args=(login --sessions "$ecdsa_sessions" --idle 1) ;;
    relogin | relogin-ecdsa) args=(login --sessions "$relogin_sessions" --idle 1 --reconnect) ;;
    relogin-full | relogin-full-ecdsa) args=(login --sessions "$relogin_sessions" --idle 1 --reconnect --no-resume) ;;
    chat) args=(chat --pairs "$pairs" --messages "$chat_messages" --window 10) ;;
    chat-half) args=(chat --pairs "$pairs" --messages "$chat_messages" --window 10
                     --rate "$(python3 -c "print(round(${chat_rate[$server]} / 2 / $pairs, 1))")") ;;
    chat-sm) args=(chat --pairs "$pairs" --messages "$sm_messages" --window 10 --ack-every 1) ;;
    chat-archive) args=(chat --pairs "$pairs" --messages "$messages" --window 10 --ack-every 1) ;;
    muc) args=(muc --occupants "$occupants" --senders "$senders" --messages "$muc_messages" --window 10
               --join-concurrency 32) ;;
    offline) args=(offline --users "$offline_users" --messages "$offline_messages" --window 50 --ack-every 10) ;;
  esac
  [[ "$scenario" == muc && "$server" == starling* ]] && args+=(--room-config "muc#roomconfig_enablearchiving=0")
  local line concurrency=20
  [[ "$scenario" == *login* ]] && concurrency=50
  line=$(taskset -c 1 "$bin/starling-bench" "${args[0]}" --server "127.0.0.1:$PORT" --mech "$mech" --register \
    --concurrency "$concurrency" --server-pid "$(largest_process)" "${args[@]:1}" \
    $( [[ "$scenario" == *login* ]] || echo --deadline 240 ) \
    2> "$work/bench.err" || true)
  [[ -z "$line" ]] && line="{\"error\":\"$(tr -d '"\n' < "$work/bench.err" | cut -c1-200)\"}"
  if [[ "$scenario" == chat ]]; then
    chat_rate[$server]=$(python3 -c "import json,sys; print(json.loads(sys.argv[1]).get('delivered_per_sec', ''))" "$line")
  fi
  record "$server" "$scenario" "$repeat" "$line"
  stop_server "$server"
}

started=$(date -u '+%Y-%m-%d %H:%M')
for repeat in $(seq 1 "$repeats"); do
  chat_rate=()
  for scenario in $scenarios; do
    if [[ "$scenario" == echo ]]; then run_echo "$repeat"; continue; fi
    # Alternate the order of servers between repeats.
    order=$servers
    (( repeat % 2 == 0 )) && order=$(echo "$servers" | tr ' ' '\n' | tac | tr '\n' ' ')
    for server in $order; do
      run_one "$server" "$scenario" "$repeat"
    done
  done
done
finished=$(date -u '+%H:%M')

python3 bench/summarize.py "$results" > "$OUT/tables.md"
cat "$OUT/tables.md"
if $write; then
  versions="Prosody $(dpkg-query -W -f '${Version}' prosody 2> /dev/null || echo '?'), ejabberd \
$(dpkg-query -W -f '${Version}' ejabberd 2> /dev/null || echo '?'), Starling $(git rev-parse --short HEAD)"
  machine="$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), \
$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
  python3 bench/write_benchmarks.py BENCHMARKS.md "$OUT/tables.md" "$command_line" "$started-$finished UTC" \
    "$versions" "$machine" "$mech"
  echo "BENCHMARKS.md updated"
fi
echo "results: $results"
