#!/usr/bin/env python3
"""Turns bench/compare.sh's results.jsonl into Markdown tables, one per kind of scenario, each
cell the median (min-max) over the repeats, then the ratios of Starling (SQLite) to Prosody
and to ejabberd, and Starling's figures against its own targets (the TLS echo ceiling, its
rate without storage).

    summarize.py RESULTS.jsonl
"""
import json
import statistics
import sys

SERVERS = ["starling", "starling-pg", "prosody", "ejabberd"]
NAMES = {"starling": "Starling (SQLite)", "starling-pg": "Starling (PostgreSQL)", "prosody": "Prosody",
         "ejabberd": "ejabberd", "echo": "TLS echo"}
CHATS = ["chat", "chat-half", "chat-sm", "chat-archive"]


def spread(values, fmt="{:,.0f}"):
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def ms(values):
    return spread(values, "{:,.1f}")


def load(path):
    runs = {}
    for line in open(path):
        line = line.strip()
        if line:
            row = json.loads(line)
            runs.setdefault((row["scenario"], row["server"]), []).append(row["result"])
    return runs


def ok_results(runs, scenario, server, key):
    """The results of runs that produced `key`, or None after printing nothing if none ran."""
    return [r for r in runs.get((scenario, server), []) if key in r]


def failure(runs, scenario, server):
    results = runs.get((scenario, server), [])
    return f"failed: {results[0].get('error', '?')[:60]}" if results else None


def pick(results, key, q=None):
    return [r[key][q] if q else r[key] for r in results if r.get(key) is not None]


def per_server_cpu(results, count):
    """`count` (delivered messages, established sessions) per second of the server's CPU, for
    each result that measured the server's CPU."""
    return [r[count] / r["server_cpu_s"] for r in results if r.get("server_cpu_s")]


def begin_table(runs, scenario, key, heading, columns):
    """The servers that ran `scenario`, each with its results that have `key`, after printing
    the table's heading (made from the first such result) and its column header; None when no
    server ran it."""
    rows = [(s, ok_results(runs, scenario, s, key)) for s in SERVERS if runs.get((scenario, s))]
    if not rows:
        return None
    first = next((r[0] for _, r in rows if r), None)
    if first:
        print(heading(first))
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    return rows


def failed_row(runs, scenario, server, columns):
    print(f"| {NAMES[server]} | {failure(runs, scenario, server)} |" + " |" * (columns - 2))


def echo_table(runs, medians):
    results = ok_results(runs, "echo", "echo", "delivered_per_sec")
    if not results:
        return
    r = results[0]
    print(f"### TLS echo (the ceiling)\n\n{r['connections']} connections, {r['messages_per_connection']} "
          f"messages each, window {r['window']}\n")
    print("| | messages/s | latency p50 / p99 ms | load generator CPU s | echo server CPU s | messages per server CPU s |")
    print("|---|---|---|---|---|---|")
    rate = pick(results, "delivered_per_sec")
    medians[("echo", "echo")] = statistics.median(rate)
    # Messages per second of the echo server's CPU: the ceiling of one core, also when the
    # load generator is the busier side.
    per_cpu = per_server_cpu(results, "delivered")
    if per_cpu:
        medians[("echo capacity", "echo")] = statistics.median(per_cpu)
    print(f"| TLS echo | {spread(rate)} | {ms(pick(results, 'delivery_ms', 'p50'))} / "
          f"{ms(pick(results, 'delivery_ms', 'p99'))} | {spread(pick(results, 'bench_cpu_s'), '{:.2f}')} | "
          f"{spread(pick(results, 'server_cpu_s'), '{:.2f}')} | {spread(per_cpu)} |\n")


def login_table(runs, medians, scenario="login"):
    """The login scenario (RSA-2048 certificate, memory per idle session), login-ecdsa (an
    ECDSA certificate, for the rate only), relogin and relogin-ecdsa (the same as
    reconnections with cached SCRAM keys and TLS tickets), or relogin-full and
    relogin-full-ecdsa (cached SCRAM keys, full TLS handshakes)."""
    columns = ["server", "logins/s", "KiB per idle session", "established / failed", "TLS resumed",
               "load generator CPU s", "server CPU s", "logins per server CPU s"]
    heading = {
        "login": lambda first: f"### Logins and memory per idle session\n\n{first['sessions']} sessions, TLS "
        f"(RSA-2048 certificate, full handshakes) + {first['mechanism']} + bind + presence, then 10 s idle\n",
        "login-ecdsa": lambda first: f"### Logins with an ECDSA certificate\n\n{first['sessions']} sessions, TLS "
        f"(ECDSA P-256 certificate, full handshakes) + {first['mechanism']} + bind + presence, then 1 s idle\n",
        "relogin": lambda first: f"### Reconnections\n\n{first['sessions']} sessions, TLS (RSA-2048 certificate) + "
        f"{first['mechanism']} + bind + presence, each account having logged in and out once before, so that "
        "the load generator reuses its SCRAM keys (RFC 5802 §3) instead of computing PBKDF2 per login and "
        "offers the account's own TLS session ticket (RFC 8446 §2.2); \"TLS resumed\" counts the handshakes "
        "the server resumed\n",
        "relogin-ecdsa": lambda first: f"### Reconnections with an ECDSA certificate\n\n{first['sessions']} "
        f"sessions, as reconnections with the ECDSA P-256 certificate\n",
        "relogin-full": lambda first: f"### Reconnections with full TLS handshakes\n\n{first['sessions']} sessions, "
        "as reconnections with the RSA-2048 certificate, but the load generator offers no TLS ticket: every "
        "handshake is a full one, so the server does a first login's work while the load generator, "
        "keeping its SCRAM keys, computes no PBKDF2\n",
        "relogin-full-ecdsa": lambda first: f"### Reconnections with full TLS handshakes, ECDSA certificate\n\n"
        f"{first['sessions']} sessions, as reconnections with full TLS handshakes and the ECDSA P-256 certificate\n",
    }[scenario]
    rows = begin_table(runs, scenario, "logins_per_sec", heading, columns)
    for server, results in rows or []:
        if not results:
            failed_row(runs, scenario, server, len(columns))
            continue
        rate, kib = pick(results, "logins_per_sec"), pick(results, "kib_per_session")
        medians[(scenario, server)] = statistics.median(rate)
        if kib and scenario == "login":
            medians[("memory", server)] = statistics.median(kib)
        est = f"{min(pick(results, 'established'))} / {max(pick(results, 'failed'))}"
        resumed = pick(results, "tls_resumed")
        # Logins per second of the server's own CPU: its capacity on one core, also when the
        # load generator (which computes PBKDF2 for every SCRAM login) is the busier side.
        per_cpu = per_server_cpu(results, "established")
        if per_cpu:
            medians[(f"{scenario} capacity", server)] = statistics.median(per_cpu)
        print(f"| {NAMES[server]} | {spread(rate)} | {spread(kib, '{:.1f}')} | {est} | {spread(resumed)} | "
              f"{spread(pick(results, 'bench_cpu_s'), '{:.2f}')} | {spread(pick(results, 'server_cpu_s'), '{:.2f}')} | "
              f"{spread(per_cpu)} |")
    print()


def chat_table(runs, medians):
    present = [c for c in CHATS if any(runs.get((c, s)) for s in SERVERS)]
    if not present:
        return
    first = next(r for c in present for s in SERVERS for r in runs.get((c, s), []) if "pairs" in r)
    print(f"### One-to-one chat\n\n{first['pairs']} pairs, window {first['window']}\n")
    print("| scenario | server | messages | delivered msg/s | delivery p50 / p99 ms | ack p50 / p99 ms | lost | dup |")
    print("|---|---|---|---|---|---|---|---|")
    for scenario in present:
        for server in SERVERS:
            if not runs.get((scenario, server)):
                continue
            results = ok_results(runs, scenario, server, "delivered_per_sec")
            if not results:
                print(f"| {scenario} | {NAMES[server]} | | {failure(runs, scenario, server)} | | | | |")
                continue
            rate = pick(results, "delivered_per_sec")
            medians[(scenario, server)] = statistics.median(rate)
            acks = (f"{ms(pick(results, 'ack_ms', 'p50'))} / {ms(pick(results, 'ack_ms', 'p99'))}"
                    if pick(results, "ack_ms") else "-")
            total = f"{results[0]['pairs'] * results[0]['messages_per_sender']:,}"
            print(f"| {scenario} | {NAMES[server]} | {total} | {spread(rate)} | {ms(pick(results, 'delivery_ms', 'p50'))} / "
                  f"{ms(pick(results, 'delivery_ms', 'p99'))} | {acks} | {max(pick(results, 'lost'))} | "
                  f"{max(pick(results, 'duplicated'))} |")
    print()


def muc_table(runs, medians):
    columns = ["server", "join ms", "server / load generator CPU s in the join", "deliveries/s",
               "latency p50 / p99 ms", "lost", "dup", "load generator CPU s"]
    rows = begin_table(
        runs,
        "muc",
        "deliveries_per_s",
        lambda first: f"### Group chat\n\n{first['occupants']} occupants in one room ({first['join_concurrency']} "
        f"entries at a time), {first['senders']} senders x {first['messages_per_sender']} messages, "
        f"window {first['window']}\n",
        columns,
    )
    for server, results in rows or []:
        if not results:
            failed_row(runs, "muc", server, len(columns))
            continue
        rate, join = pick(results, "deliveries_per_s"), pick(results, "join_ms")
        medians[("muc", server)] = statistics.median(rate)
        medians[("muc join", server)] = 1 / max(statistics.median(join), 1e-9)
        join_cpu = f"{spread(pick(results, 'join_server_cpu_s'), '{:.2f}')} / " \
                   f"{spread(pick(results, 'join_bench_cpu_s'), '{:.2f}')}"
        print(f"| {NAMES[server]} | {spread(join)} | {join_cpu} | {spread(rate)} | "
              f"{ms(pick(results, 'latency_ms', 'p50'))} / "
              f"{ms(pick(results, 'latency_ms', 'p99'))} | {max(pick(results, 'lost'))} | "
              f"{max(pick(results, 'duplicated'))} | {spread(pick(results, 'bench_cpu_s'), '{:.2f}')} |")
    print()


def offline_table(runs, medians):
    columns = ["server", "stored msg/s", "drain s", "drained msg/s", "lost", "dup"]
    rows = begin_table(
        runs,
        "offline",
        "drained_per_sec",
        lambda first: f"### Offline messages\n\n{first['users']} offline accounts x {first['messages_per_user']} "
        f"messages (senders: stream management, window {first['window']}, ack every "
        f"{first['ack_every']}), then the accounts log in\n",
        columns,
    )
    for server, results in rows or []:
        if not results:
            failed_row(runs, "offline", server, len(columns))
            continue
        drained = pick(results, "drained_per_sec")
        medians[("offline drain", server)] = statistics.median(drained)
        medians[("offline store", server)] = statistics.median(pick(results, "stored_per_sec"))
        print(f"| {NAMES[server]} | {spread(pick(results, 'stored_per_sec'))} | "
              f"{spread(pick(results, 'drain_seconds'), '{:.2f}')} | {spread(drained)} | "
              f"{max(pick(results, 'lost'))} | {max(pick(results, 'duplicated'))} |")
    print()


def ratios(medians, runs):
    rows = [("login", "logins per second"), ("login capacity", "logins per second of server CPU"),
            ("login-ecdsa", "logins per second, ECDSA certificate"),
            ("login-ecdsa capacity", "logins per second of server CPU, ECDSA certificate"),
            ("relogin", "reconnections per second"), ("relogin capacity", "reconnections per second of server CPU"),
            ("relogin-ecdsa", "reconnections per second, ECDSA certificate"),
            ("relogin-ecdsa capacity", "reconnections per second of server CPU, ECDSA certificate"),
            ("relogin-full", "full-handshake reconnections per second"),
            ("relogin-full capacity", "full-handshake reconnections per second of server CPU"),
            ("relogin-full-ecdsa", "full-handshake reconnections per second, ECDSA certificate"),
            ("relogin-full-ecdsa capacity", "full-handshake reconnections per second of server CPU, ECDSA certificate"),
            ("memory", "memory per idle session (theirs / ours)"),
            ("chat", "chat"), ("chat-sm", "chat-sm (durable on Starling)"), ("chat-archive", "chat-archive"),
            ("muc", "muc deliveries per second"), ("muc join", "muc join speed"),
            ("offline store", "offline: messages stored per second"),
            ("offline drain", "offline: messages drained per second at login")]
    print("### Ratios (medians, Starling on SQLite)\n")
    print("| | Starling/Prosody | Starling/ejabberd |")
    print("|---|---|---|")
    for key, label in rows:
        mine = medians.get((key, "starling"))
        if mine is None:
            continue
        cells = []
        for other in ("prosody", "ejabberd"):
            theirs = medians.get((key, other))
            if not (mine and theirs):
                cells.append("-")
            elif key == "memory":
                cells.append(f"{theirs / mine:.1f}x smaller")
            else:
                cells.append(f"{mine / theirs:.1f}x")
        print(f"| {label} | {cells[0]} | {cells[1]} |")
    print()
    own = []
    echo = medians.get(("echo", "echo"))
    for server in ("starling", "starling-pg"):
        chat = medians.get(("chat", server))
        if chat and echo:
            own.append(f"- {NAMES[server]} chat is {chat / echo:.2f} of the TLS echo ceiling.")
        capacity, chat_runs = medians.get(("echo capacity", "echo")), runs.get(("chat", server), [])
        per_cpu = per_server_cpu(chat_runs, "delivered")
        if capacity and per_cpu:
            own.append(f"- {NAMES[server]} chat delivers {statistics.median(per_cpu):,.0f} messages per second of "
                       f"server CPU: {statistics.median(per_cpu) / capacity:.2f} of the echo server's "
                       f"{capacity:,.0f}.")
        if chat and medians.get(("chat-sm", server)):
            own.append(f"- {NAMES[server]} durable chat (chat-sm) is {medians[('chat-sm', server)] / chat:.2f} "
                       "of its chat rate.")
    if own:
        print("\n".join(own) + "\n")


def main():
    runs = load(sys.argv[1])
    medians = {}
    echo_table(runs, medians)
    login_table(runs, medians)
    login_table(runs, medians, "login-ecdsa")
    login_table(runs, medians, "relogin")
    login_table(runs, medians, "relogin-ecdsa")
    login_table(runs, medians, "relogin-full")
    login_table(runs, medians, "relogin-full-ecdsa")
    chat_table(runs, medians)
    muc_table(runs, medians)
    offline_table(runs, medians)
    ratios(medians, runs)


if __name__ == "__main__":
    main()
