#!/usr/bin/python3
"""Report of scripts/bench-gateway: medians per gateway, direction and size, the ratio
ipsecgw / ipsec-secgw, the output checks and the drop counters.

  report.py RESULTS.jsonl OUT.json
"""
import json
import statistics
import sys

NAMES = {"ipsecgw": "ipsecgw", "secgw": "ipsec-secgw", "secgw-l": "ipsec-secgw -l"}


def ipsecgw_drops(run):
    """Drop reasons from /ipsecgw/stats (whatever shape: every key with 'drop' or a reason)."""
    st = run.get("/ipsecgw/stats")
    if not isinstance(st, dict):
        return None
    body = st.get("/ipsecgw/stats", st)
    out = {}

    def walk(prefix, v):
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else k, x)
        elif isinstance(v, (int, float)) and v and "drop" in prefix.lower():
            out[prefix] = v
    walk("", body)
    return out


def main():
    rows = [json.loads(x) for x in open(sys.argv[1]) if x.strip()]
    runs = [r for r in rows if r.get("kind") == "run"]
    checks = [r for r in rows if r.get("kind") == "check"]
    gws = [g for g in NAMES if any(r["gateway"] == g for r in runs + checks)]
    keys = []
    for r in runs + checks:
        k = (r["direction"], r["size"])
        if k not in keys:
            keys.append(k)

    summary = []
    for d, s in keys:
        e = {"direction": d, "size": s}
        for g in gws:
            rs = [r for r in runs if (r["gateway"], r["direction"], r["size"]) == (g, d, s)]
            outs = [r["out_pps"] for r in rs if "out_pps" in r]
            ins = [r["in_pps"] for r in rs if "in_pps" in r]
            cpu = [r["out_per_worker_cpu_s"] for r in rs if r.get("out_per_worker_cpu_s")]
            share = [r["worker_cpu_share"] for r in rs if r.get("worker_cpu_share") is not None]
            e[g] = {
                "out_pps": outs, "in_pps": ins, "out_per_worker_cpu_s": cpu,
                "worker_cpu_share": share,
                "median_out_per_worker_cpu_s": statistics.median(cpu) if cpu else None,
                "median_worker_cpu_share": statistics.median(share) if share else None,
                "median_out_pps": statistics.median(outs) if outs else None,
                "median_in_pps": statistics.median(ins) if ins else None,
                "out_per_in": (statistics.median(outs) / statistics.median(ins)
                               if outs and ins and statistics.median(ins) else None),
                "errors": [r.get("error") for r in rs if "error" in r],
                "ipsecgw_drops": [ipsecgw_drops(r) for r in rs] if g == "ipsecgw" else None,
                "port_errors": [{k: r[p].get(k) for p in ("in_port_end", "out_port_end")
                                 for k in ("imissed", "ierrors", "oerrors", "rx_nombuf")
                                 if p in r}
                                for r in rs if "in_port_end" in r],
            }
            c = [x["check"] for x in checks if (x["gateway"], x["direction"], x["size"]) == (g, d, s)]
            e[g]["check"] = c[0] if c else None
        a, b = e.get("ipsecgw", {}).get("median_out_pps"), e.get("secgw", {}).get("median_out_pps")
        e["ratio"] = a / b if a and b else None
        a, b = (e.get("ipsecgw", {}).get("median_out_per_worker_cpu_s"),
                e.get("secgw", {}).get("median_out_per_worker_cpu_s"))
        e["ratio_cpu"] = a / b if a and b else None
        a = e.get("ipsecgw", {}).get("median_out_pps")
        if "secgw-l" in e:
            bl = e["secgw-l"]["median_out_pps"]
            e["ratio_vs_lib"] = a / bl if a and bl else None
        summary.append(e)

    def f(x):
        return f"{x / 1e6:7.3f} M" if x else "    n/a  "

    def rt(x):
        return f"{x:5.2f}" if x else "  n/a"

    def pct(x):
        return f"{100 * x:3.0f}%" if x is not None else " n/a"

    def oi(x):
        return f"{x['out_per_in']:.3f}" if x.get("out_per_in") else "n/a"

    def ck(x):
        c = x.get("check")
        if not c:
            return "-"
        return f"{c.get('ok', 0)}/{c.get('captured', 0)} ok" + (
            "" if not c.get("bad") else f" ({c['bad']} BAD: {c.get('first_bad')})")

    names = [NAMES[g] for g in gws]
    print()
    print("Per core: packets out per second of CPU time the worker lcore got "
          "(median of rounds; the figure to compare)")
    print(f"{'direction':<9} {'size':>5}  " + "  ".join(f"{n:>14}" for n in names) +
          "  ratio ipsecgw/ipsec-secgw")
    for e in summary:
        print(f"{e['direction']:<9} {e['size']:>5}  " +
              "  ".join(f"{f(e[g].get('median_out_per_worker_cpu_s')):>14}" for g in gws) +
              f"  {rt(e.get('ratio_cpu'))}")
    print()
    print("Wall clock: packets/s out of the output port (median of rounds), the worker's share "
          "of a CPU in the window, out/in and the output checks")
    print(f"{'direction':<9} {'size':>5}  " + "  ".join(f"{n:>14}  cpu" for n in names) +
          "  ratio  out/in  checks (" + ", ".join(names) + ")")
    for e in summary:
        print(f"{e['direction']:<9} {e['size']:>5}  " +
              "  ".join(f"{f(e[g].get('median_out_pps')):>14} {pct(e[g].get('median_worker_cpu_share'))}"
                        for g in gws) +
              f"  {rt(e.get('ratio'))}  " + ",".join(oi(e[g]) for g in gws) + "  " +
              ", ".join(ck(e[g]) for g in gws))
    print()
    print("out/in = output packets / packets the worker took from the input port (1.000 = "
          "nothing dropped; the two reads are a few microseconds apart). Both gateways share this "
          "machine's CPUs with the pcap PMD's own work: net_pcap's infinite RX copies every "
          "packet into a fresh mbuf inside the worker's rx_burst (the same for both), and "
          "net_null frees what is sent. Wall-clock rates move by tens of percent on a shared VM "
          "(the worker loses its CPU to other processes); the per-CPU-second figures take that "
          "out. ipsec-secgw -l: its librte_ipsec code path.")
    for e in summary:
        d = e.get("ipsecgw", {}).get("ipsecgw_drops")
        if d and any(d):
            print(f"ipsecgw drop counters ({e['direction']} {e['size']}): {d}")
        for g in gws:
            errs = e[g].get("errors")
            if errs:
                print(f"{NAMES[g]} {e['direction']} {e['size']}: measurement errors {errs}")
    json.dump({"summary": summary, "raw": rows}, open(sys.argv[2], "w"), indent=1)
    print(f"raw numbers: {sys.argv[2]}")
    # A benchmark that counts drops or garbage as throughput is worthless: say so, exit 1.
    bad = []
    for e in summary:
        for g in gws:
            x, where = e[g], f"{NAMES[g]} {e['direction']} {e['size']}"
            c = x.get("check")
            if c is not None and (c.get("bad") or c.get("ok", 0) == 0 or
                                  c.get("ok", 0) < c.get("sent", 0)):
                bad.append(f"{where}: output check failed: {c}")
            if x.get("out_per_in") is not None and x["out_per_in"] < 0.99:
                bad.append(f"{where}: only {x['out_per_in']:.3f} of the input came out (drops)")
            if x.get("errors"):
                bad.append(f"{where}: {x['errors']}")
    for b in bad:
        print(f"PROBLEM: {b}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
