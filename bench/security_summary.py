#!/usr/bin/env python3
"""Markdown table of bench/security.sh results.

Input: one `flm-bench load` JSON line per run, labelled `<scenario>/<direct|keys|secure>`
in the order they ran. The n-th `keys` run of a scenario is paired with its n-th
`secure` run (same round); differences and ratios are computed per pair and the median
over pairs is reported. `direct` (the engine without proxy) is context only.

Exit status: 1 when any run had errors or non-2xx answers (counted per side), or,
with --enforce, when a bar is missed; 0 otherwise.
"""

import argparse
import json
import statistics
import sys

SIDES = ("direct", "keys", "secure")
# Issue bars: secure vs keys.
BAR_P99_C1_US = 100.0
BAR_THROUGHPUT = 0.9


def fmt(x):
    return "–" if x is None else f"{x:.1f}"


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--rss", nargs=3, action="append", default=[],
                    metavar=("SIDE", "IDLE_KIB", "C64_KIB"))
    ap.add_argument("--enforce", action="store_true")
    args = ap.parse_args()

    runs = {}
    totals = {s: {"runs": 0, "requests": 0, "errors": 0, "non_2xx": 0, "reconnects": 0} for s in SIDES}
    with open(args.results) as f:
        for line in f:
            if not line.strip():
                continue
            r = json.loads(line)
            scenario, side = r["label"].rsplit("/", 1)
            if side not in SIDES:
                sys.exit(f"label {r['label']!r} is not <scenario>/<direct|keys|secure>")
            runs.setdefault(scenario, {s: [] for s in SIDES})[side].append(r)
            t = totals[side]
            t["runs"] += 1
            for k in ("requests", "errors", "non_2xx", "reconnects"):
                t[k] += r[k]

    rows = [
        "| scenario | metric | direct (no proxy) | keys-only | all protections | all vs keys-only | bar | result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    missed = []

    def row(scn, metric, kind, f, bar=None):
        p = runs.get(scn)
        if not p:
            return
        pairs = list(zip(p["keys"], p["secure"]))
        if kind == "added":
            rel = med([f(s) - f(k) for k, s in pairs])
            rel_s = "–" if rel is None else f"{rel:+.1f}"
            ok = None if bar is None or rel is None else rel <= bar
            bar_s = "–" if bar is None else f"≤ +{bar:.0f} µs"
        else:
            rel = med([f(s) / f(k) for k, s in pairs if f(k) > 0])
            rel_s = "–" if rel is None else f"×{rel:.2f}"
            ok = None if bar is None or rel is None else rel >= bar
            bar_s = "–" if bar is None else f"≥ ×{bar:.1f}"
        verdict = "–" if ok is None else ("pass" if ok else "**MISS**")
        if ok is False:
            missed.append(f"{scn}: {metric} ({rel_s}, bar {bar_s})")
        vals = [fmt(med([f(r) for r in p[s]])) for s in SIDES]
        rows.append(f"| {scn_name[scn]} | {metric} | " + " | ".join(vals) + f" | {rel_s} | {bar_s} | {verdict} |")

    scn_name = {"chat-c1": "chat, c=1", "chat-c64": "chat, c=64", "stream-c16": "stream (20 chunks), c=16"}
    row("chat-c1", "p50 latency µs", "added", lambda r: r["p50_us"])
    row("chat-c1", "p99 latency µs", "added", lambda r: r["p99_us"], BAR_P99_C1_US)
    row("chat-c1", "requests/s", "ratio", lambda r: r["rps"])
    row("chat-c64", "requests/s", "ratio", lambda r: r["rps"], BAR_THROUGHPUT)
    row("chat-c64", "p50 latency µs", "added", lambda r: r["p50_us"])
    row("chat-c64", "p99 latency µs", "added", lambda r: r["p99_us"])
    row("stream-c16", "TTFB p50 µs", "added", lambda r: r["ttfb_p50_us"] or 0.0)
    row("stream-c16", "TTFB p99 µs", "added", lambda r: r["ttfb_p99_us"] or 0.0)
    row("stream-c16", "streams/s", "ratio", lambda r: r["rps"], BAR_THROUGHPUT)
    row("stream-c16", "full stream p50 µs", "added", lambda r: r["p50_us"])
    rss = {side: (int(i), int(c)) for side, i, c in args.rss}
    if "keys" in rss and "secure" in rss:
        for idx, metric in ((0, "idle MiB"), (1, "after c=64 MiB (max)")):
            k, s = rss["keys"][idx] / 1024, rss["secure"][idx] / 1024
            rows.append(f"| proxy RSS | {metric} | – | {k:.1f} | {s:.1f} | {s - k:+.1f} | – | – |")

    print("\n".join(rows))
    rounds = max((min(len(p["keys"]), len(p["secure"])) for p in runs.values()), default=0)
    print()
    print("Columns: medians of the per-round figures; `all vs keys-only`: median of the "
          "per-round differences (or ratios) of the keys-only and all-protections runs "
          f"of the same round, so it need not equal the difference of the medians. {rounds} rounds.")
    print()
    print("| side | runs | measured requests | errors | non-2xx | reconnects |")
    print("|---|---|---|---|---|---|")
    failures = 0
    for s in SIDES:
        t = totals[s]
        failures += t["errors"] + t["non_2xx"]
        name = {"direct": "direct", "keys": "keys-only", "secure": "all protections"}[s]
        print(f"| {name} | {t['runs']} | {t['requests']} | {t['errors']} | {t['non_2xx']} | {t['reconnects']} |")
    print()
    if missed:
        print("Bars missed: " + "; ".join(missed))
    else:
        print("All bars met.")
    if failures:
        print(f"security_summary: {failures} failed requests (errors or non-2xx): "
              "the figures are not valid", file=sys.stderr)
        return 1
    if args.enforce and missed:
        print("security_summary: bars missed: " + "; ".join(missed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
