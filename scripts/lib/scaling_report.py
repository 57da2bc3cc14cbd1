#!/usr/bin/env python3
"""Report for the multi-core scaling benchmarks (benchmarks/bench_scaling.cpp).

Reads the Google Benchmark JSON written by
  ipsecgw_bench --benchmark_filter=Scale --benchmark_format=json [--benchmark_repetitions=N]
and prints, per benchmark and thread count:

  packets/s    aggregate over all threads (Google Benchmark sums items over threads; UseRealTime)
  per thread   aggregate / threads
  efficiency   rate(N threads) / (N x rate(1 thread)) of the same benchmark; 1.00 = linear
  ours/raw     BM_ScaleEspOutbound / BM_ScaleRawIpsecMb, BM_ScaleEspInbound /
               BM_ScaleRawIpsecMbDecrypt, same combo, length and thread count

With repetitions the "median" aggregate is used when present; otherwise the median of the plain
per-repetition entries. Rows with more threads than the machine's CPUs (context.num_cpus) are
marked "*": the threads share CPUs, and Google Benchmark's rate (items / mean per-thread wall
time) then overstates the aggregate, so read those rows as "oversubscribed", not as scaling.

Usage: scaling_report.py bench.json
Standard library only; any python3 >= 3.8.
"""

import json
import re
import sys

from bench_report import median  # same folder (scripts/lib, or the benchmark bundle)

# "BM_ScaleEspOutbound/aes128-sha1/64/real_time/threads:4" (+ "_median" etc. on aggregates).
THREADS_RE = re.compile(r"/threads:(\d+)$")

# ESP benchmark family -> its raw ipsec-mb baseline family.
PAIRS = {
    "BM_ScaleEspOutbound": "BM_ScaleRawIpsecMb",
    "BM_ScaleEspInbound": "BM_ScaleRawIpsecMbDecrypt",
}


def split_name(run_name):
    """'BM_X/combo/len/real_time/threads:4' -> ('BM_X', 'combo/len', 4)."""
    threads = 1
    m = THREADS_RE.search(run_name)
    if m:
        threads = int(m.group(1))
        run_name = run_name[: m.start()]
    parts = [p for p in run_name.split("/") if p not in ("real_time", "manual_time", "process_time")]
    return parts[0], "/".join(parts[1:]), threads


def load(path):
    """Returns {(family, args, threads): packets/s} and the context dict."""
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    medians = {}  # key -> median aggregate
    plain = {}  # key -> [per-repetition rates]
    for b in doc.get("benchmarks", []):
        if b.get("error_occurred"):
            continue
        rate = b.get("items_per_second")
        if rate is None:
            continue
        run_name = b.get("run_name") or b["name"]
        family, args, threads = split_name(run_name)
        threads = int(b.get("threads", threads))
        key = (family, args, threads)
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[key] = float(rate)
        else:
            plain.setdefault(key, []).append(float(rate))
    rates = {k: median(v) for k, v in plain.items()}
    rates.update(medians)
    return rates, doc.get("context", {})


def fmt_rate(r):
    if r is None:
        return "-"
    if r >= 1e6:
        return "%.3fM" % (r / 1e6)
    if r >= 1e3:
        return "%.1fk" % (r / 1e3)
    return "%.0f" % r


def order_key(key):
    family, args, threads = key
    fam_order = ["BM_ScaleEspOutbound", "BM_ScaleRawIpsecMb", "BM_ScaleEspInbound",
                 "BM_ScaleRawIpsecMbDecrypt"]
    fi = fam_order.index(family) if family in fam_order else len(fam_order)
    parts = args.split("/")
    combo = parts[0] if parts else ""
    length = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return (combo, length, fi, family, threads)


def main(argv):
    if len(argv) != 2:
        sys.stderr.write("usage: scaling_report.py bench.json\n")
        return 2
    rates, ctx = load(argv[1])
    if not rates:
        sys.stderr.write("no benchmark with items_per_second in %s\n" % argv[1])
        return 1
    ncpus = ctx.get("num_cpus")
    print("host %s, %s CPUs, load avg %s" % (ctx.get("host_name", "?"), ncpus if ncpus else "?",
                                            " ".join("%.2f" % x for x in ctx.get("load_avg", []))))
    header = ("benchmark", "threads", "packets/s", "per thread", "efficiency", "ours/raw")
    rows = []
    for key in sorted(rates, key=order_key):
        family, args, threads = key
        rate = rates[key]
        one = rates.get((family, args, 1))
        eff = rate / (threads * one) if one else None
        raw_family = PAIRS.get(family)
        raw = rates.get((raw_family, args, threads)) if raw_family else None
        ratio = rate / raw if raw else None
        mark = "*" if ncpus and threads > int(ncpus) else ""
        rows.append((family + "/" + args, "%d%s" % (threads, mark), fmt_rate(rate),
                     fmt_rate(rate / threads), "%.2f" % eff if eff is not None else "-",
                     "%.3f" % ratio if ratio is not None else "-"))
    widths = [max(len(h), max(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(widths[0]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(header))
    print(line)
    print("-" * len(line))
    prev = None
    for r in rows:
        if prev is not None and r[0] != prev:
            print()
        prev = r[0]
        print("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
    if ncpus and any(r[1].endswith("*") for r in rows):
        print("\n* more threads than CPUs (%s): threads share CPUs; not a scaling figure." % ncpus)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
