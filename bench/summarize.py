#!/usr/bin/env python3
"""Turns bench/compare.sh's results.jsonl into Markdown tables: per chat scenario and server the
median (min-max) of delivered messages per second, delivery and ack latency p50/p99, losses;
for the muc scenario the join time, deliveries per second, delivery latency p50/p99 and
losses; and the ratios of Starling (SQLite) to Prosody and to ejabberd.

    summarize.py RESULTS.jsonl PAIRS MESSAGES
"""
import json
import statistics
import sys


def spread(values, fmt="{:.0f}"):
    if not values:
        return "-"
    med = statistics.median(values)
    if len(values) == 1:
        return fmt.format(med)
    return f"{fmt.format(med)} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def main():
    path, pairs, messages = sys.argv[1], sys.argv[2], sys.argv[3]
    runs = {}
    for line in open(path):
        line = line.strip()
        if not line:
            continue
        row = json.loads(line)
        runs.setdefault((row["scenario"], row["server"]), []).append(row["result"])
    order = ["chat", "chat-sm", "chat-archive", "muc"]
    scenarios = sorted({s for s, _ in runs}, key=lambda s: order.index(s) if s in order else len(order))
    chats = [s for s in scenarios if s != "muc"]
    servers = ["starling", "starling-pg", "prosody", "ejabberd"]
    medians = {}
    if chats:
        chat_table(runs, chats, servers, pairs, messages, medians)
    if "muc" in scenarios:
        muc_table(runs, servers, medians)
    print("| scenario | Starling/Prosody | Starling/ejabberd |")
    print("|---|---|---|")
    rows = scenarios + (["muc join"] if "muc" in scenarios else [])
    for scenario in rows:
        mine = medians.get((scenario, "starling"))
        cells = []
        for other in ("prosody", "ejabberd"):
            theirs = medians.get((scenario, other))
            cells.append(f"{mine / theirs:.1f}x" if mine and theirs else "-")
        print(f"| {scenario} | {cells[0]} | {cells[1]} |")
    if "muc" in scenarios:
        print("\n(muc: ratio of deliveries per second; muc join: of join speed, the inverse of join time)")


def lat(results, key, q):
    return [r[key][q] for r in results if r.get(key)]


def chat_table(runs, scenarios, servers, pairs, messages, medians):
    print(f"{pairs} pairs, {messages} messages per sender; median (min-max) over repeats\n")
    print("| scenario | server | delivered msg/s | delivery p50 / p99 ms | ack p50 / p99 ms | lost | dup |")
    print("|---|---|---|---|---|---|---|")
    for scenario in scenarios:
        for server in servers:
            results = runs.get((scenario, server))
            if not results:
                continue
            ok = [r for r in results if "delivered_per_sec" in r]
            if not ok:
                print(f"| {scenario} | {server} | failed: {results[0].get('error', '?')[:60]} | | | | |")
                continue
            rate = [r["delivered_per_sec"] for r in ok]
            medians[(scenario, server)] = statistics.median(rate)
            delivery = f"{spread(lat(ok, 'delivery_ms', 'p50'), '{:.1f}')} / {spread(lat(ok, 'delivery_ms', 'p99'), '{:.1f}')}"
            acks = (f"{spread(lat(ok, 'ack_ms', 'p50'), '{:.1f}')} / {spread(lat(ok, 'ack_ms', 'p99'), '{:.1f}')}"
                    if lat(ok, "ack_ms", "p50") else "-")
            lost = max(r["lost"] for r in ok)
            dup = max(r["duplicated"] for r in ok)
            print(f"| {scenario} | {server} | {spread(rate)} | {delivery} | {acks} | {lost} | {dup} |")
    print()


def muc_table(runs, servers, medians):
    results = [r for server in servers for r in runs.get(("muc", server), []) if "deliveries_per_s" in r]
    if results:
        r = results[0]
        print(f"muc: {r['occupants']} occupants ({r['join']} entries, {r['join_concurrency']} at a time), "
              f"{r['senders']} senders x {r['messages_per_sender']} messages, window {r['window']}; "
              "median (min-max) over repeats\n")
    print("| server | join ms | deliveries/s | msg/s | latency p50 / p99 ms | lost | dup | bench CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    for server in servers:
        results = runs.get(("muc", server))
        if not results:
            continue
        ok = [r for r in results if "deliveries_per_s" in r]
        if not ok:
            print(f"| {server} | failed: {results[0].get('error', '?')[:60]} | | | | | | |")
            continue
        rate = [r["deliveries_per_s"] for r in ok]
        medians[("muc", server)] = statistics.median(rate)
        join_ms = [r["join_ms"] for r in ok]
        medians[("muc join", server)] = 1 / statistics.median(join_ms) if statistics.median(join_ms) > 0 else None
        join = spread(join_ms)
        msgs = spread([r["messages_per_s"] for r in ok])
        latency = f"{spread(lat(ok, 'latency_ms', 'p50'), '{:.1f}')} / {spread(lat(ok, 'latency_ms', 'p99'), '{:.1f}')}"
        lost = max(r["lost"] for r in ok)
        dup = max(r["duplicated"] for r in ok)
        cpu = spread([r["bench_cpu_s"] for r in ok], "{:.2f}")
        print(f"| {server} | {join} | {spread(rate)} | {msgs} | {latency} | {lost} | {dup} | {cpu} |")
    print()


if __name__ == "__main__":
    main()
