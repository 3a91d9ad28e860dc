#!/usr/bin/env python3
"""Renders RELIABILITY.md's chaos tables from run summaries.

    scripts/chaos-table.py DIR|FILE...

Each argument is a run summary written by a chaos round
(tests/chaos/run_summary.h) or a directory of them (tests/chaos/results/<date>/).
Prints one Markdown table, a row per round in run order: faults injected (and
exercised), events acknowledged, lost (must be 0), double-counted (must be 0:
count mismatches + stored twice + phantom), duplicate dispatches counted at the
webhook receiver with their causes, and the round's verdict (a control round,
running a deliberately broken variant, must be caught).
"""
import glob
import json
import os
import sys


def load(args):
    files = []
    for a in args:
        files += sorted(glob.glob(os.path.join(a, "*.json"))) if os.path.isdir(a) else [a]
    return [json.load(open(f)) for f in files]


def n(x):
    return f"{x:,}"


def faults(s):
    f = s["figures"]
    parts = []
    if f["kills"]:
        parts.append(f"{f['kills']} kill -9 ({f['kills_with_leases']} with leases)")
    if f["pauses"]:
        parts.append(f"{f['pauses']} SIGSTOP ({f['zombie_episodes']} with leases: zombies)")
    pg = [(f["pg_restarts"], "fast restart"), (f["pg_immediate_stops"], "immediate stop"),
          (f["pg_kills"], "postmaster kill -9")]
    pg_parts = [f"{k} PG {what}" for k, what in pg if k]
    if pg_parts:
        parts.append(", ".join(pg_parts) + f" ({f['pg_stops_in_load']} in the load)")
    if "hang" in s["faults"]:
        parts.append(f"{f['long_batches']} calls hung past the lease, "
                     f"{n(f['stuck_failures'])} events cut at the timeout")
    if f["cut_requests"] or f["abandoned_requests"]:
        parts.append(f"{f['cut_requests']} cut + {f['abandoned_requests']} abandoned requests")
    for c in s["faults"]:
        if c.startswith("control:"):
            parts.append(c)
    return "; ".join(parts) or "none"


def row(s):
    f = s["figures"]
    double = f["count_mismatches"] + f["stored_twice"] + f["phantom"]
    causes = s.get("redelivery_causes") or "-"
    tree = "" if s["tree"] == "clean" else " (uncommitted changes)"
    control = any(c.startswith("control:") for c in s["faults"])
    if control:
        # A control runs a deliberately broken variant: the checker must catch it.
        verdict = ("caught, as it must be: " + "; ".join(s["violations"][:2])
                   if not s["passed"] else "**NOT caught**")
    else:
        verdict = "pass" if s["passed"] else "**fail**: " + "; ".join(s["violations"][:2])
    return (f"| {s['round']} | {s['store']} | {s['commit']}{tree}, {s['date']}, load "
            f"{s['load_before']:.1f}→{s['load_after']:.1f} | {f['duration_ms'] / 1000:.0f} s | "
            f"{n(f['acked_events'])} / {n(f['unknown_events'])} | {n(f['stored_events'])} | "
            f"{faults(s)} | **{f['lost']}** | **{double}** | "
            f"{n(f['received_repeats'])} ({causes}); unexplained **{f['receiver_unexplained']}** | "
            f"{n(f['duplicate_dispatches'])} (bound {n(f['fault_bound'])}) | "
            f"{f['zombies_not_fenced']} | {verdict} |")


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs = sorted(load(sys.argv[1:]), key=lambda s: s["date"])
    if not runs:
        sys.exit("chaos-table: no run summaries found")
    commands = sorted({s["command"] for s in runs})
    builds = sorted({s["build"] for s in runs})
    print(f"Command: {'; '.join(commands)}. Build: {', '.join(builds)}.\n")
    print("| round | store | commit, date (UTC), load | workload | acked / unknown events | "
          "stored | faults injected (exercised) | lost | double-counted | "
          "repeats at the receiver (cause) | duplicate archive dispatches (fault bound) | "
          "zombies not fenced | verdict |")
    print("| --- " * 13 + "|")
    for s in runs:
        print(row(s))


if __name__ == "__main__":
    main()
