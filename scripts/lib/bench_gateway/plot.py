#!/usr/bin/python3
"""Plot of scripts/bench-gateway: per-core rate against packet size, ipsecgw beside ipsec-secgw
and the limit (raw crypto + l2fwd), one row per combination and direction; left packets per
CPU-second, right Gbit/s per core (of inner packets: SIZE bytes, the IP packet in clear).

  plot.py BENCH-GATEWAY.json OUT.png
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# (key in the summary, label, colour, line style): gateways from their medians, the limit.
SERIES = [("ipsecgw", "ipsecgw", "tab:blue", "-"),
          ("secgw", "ipsec-secgw", "tab:orange", "-"),
          ("secgw-l", "ipsec-secgw -l", "tab:red", "-"),
          ("limit", "limit (raw crypto + l2fwd)", "tab:gray", "--")]


def main():
    summary = json.load(open(sys.argv[1]))["summary"]
    rows = []
    for e in summary:
        r = (e["combo"], e["direction"])
        if r not in rows:
            rows.append(r)
    if not rows:
        print("plot.py: nothing to plot", file=sys.stderr)
        return 1
    fig, axes = plt.subplots(len(rows), 2, figsize=(11, 3.2 * len(rows)), squeeze=False)
    for i, (combo, direction) in enumerate(rows):
        for encap, marker in (("esp", "o"), ("udp", "s")):
            es = sorted((e for e in summary if (e["combo"], e["direction"], e["encap"]) ==
                         (combo, direction, encap)), key=lambda e: e["size"])
            if not es:
                continue
            for key, label, colour, style in SERIES:
                pts = []
                for e in es:
                    v = e.get("limit") if key == "limit" else \
                        (e.get(key) or {}).get("median_out_per_worker_cpu_s")
                    if v:
                        pts.append((e["size"], v))
                if not pts:
                    continue
                xs = [p[0] for p in pts]
                lab = label + (" ESP-in-UDP" if encap == "udp" else "")
                st = style if encap == "esp" else ":"
                axes[i][0].plot(xs, [p[1] / 1e6 for p in pts], st, color=colour, marker=marker,
                                label=lab)
                axes[i][1].plot(xs, [p[1] * p[0] * 8 / 1e9 for p in pts], st, color=colour,
                                marker=marker, label=lab)
        title = f"{combo}, {direction}"
        axes[i][0].set_title(f"{title}: Mpackets per worker CPU-second", fontsize=10)
        axes[i][1].set_title(f"{title}: Gbit/s per core (inner packets)", fontsize=10)
        for ax in axes[i]:
            ax.set_xlabel("inner packet size (bytes, IP total length)")
            ax.set_ylim(bottom=0)
            ax.grid(True, alpha=0.3)
        axes[i][0].legend(fontsize=8)
    fig.suptitle("scripts/bench-gateway: one worker core each, net_pcap in, net_null out "
                 "(medians; docs/bench-gateway.md)", fontsize=11)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=80)
    print(f"plot: {sys.argv[2]}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
