#!/usr/bin/env python3
"""Turns bench/compare.sh's results.jsonl into a Markdown table: per scenario and server the
median (min-max) of delivered messages per second, delivery and ack latency p50/p99, losses,
and the ratios of Starling (SQLite) to Prosody and to ejabberd.

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
    scenarios = sorted({s for s, _ in runs}, key=["chat", "chat-sm", "chat-archive"].index)
    servers = ["starling", "starling-pg", "prosody", "ejabberd"]
    print(f"{pairs} pairs, {messages} messages per sender; median (min-max) over repeats\n")
    print("| scenario | server | delivered msg/s | delivery p50 / p99 ms | ack p50 / p99 ms | lost | dup |")
    print("|---|---|---|---|---|---|---|")
    medians = {}
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

            def lat(key, q):
                return [r[key][q] for r in ok if r.get(key)]

            delivery = f"{spread(lat('delivery_ms', 'p50'), '{:.1f}')} / {spread(lat('delivery_ms', 'p99'), '{:.1f}')}"
            acks = (f"{spread(lat('ack_ms', 'p50'), '{:.1f}')} / {spread(lat('ack_ms', 'p99'), '{:.1f}')}"
                    if lat("ack_ms", "p50") else "-")
            lost = max(r["lost"] for r in ok)
            dup = max(r["duplicated"] for r in ok)
            print(f"| {scenario} | {server} | {spread(rate)} | {delivery} | {acks} | {lost} | {dup} |")
    print()
    print("| scenario | Starling/Prosody | Starling/ejabberd |")
    print("|---|---|---|")
    for scenario in scenarios:
        mine = medians.get((scenario, "starling"))
        cells = []
        for other in ("prosody", "ejabberd"):
            theirs = medians.get((scenario, other))
            cells.append(f"{mine / theirs:.1f}x" if mine and theirs else "-")
        print(f"| {scenario} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
