#!/usr/bin/python3
"""Many-tunnel traffic for scripts/bench-gateway -t (issue #12): N tunnels x 4 flows each.

  many.py gen DIR N [SIZE...]  write DIR/many-N.yaml (0600, scripts/lib/gen_connections.py,
                             anti-replay off) and DIR/many-N-{out,in}-SIZE.pcap (default
                             sizes 64 1400; scripts/lib/bench_gateway/instr.sh -m N uses them)
  many.py bench DIR IPSECGW PMDS "1 1000 10000" "outbound inbound" "64 1400" ROUNDS WARMUP
          WINDOW CHECK    scripts/bench-gateway -t: for each N the pcaps (once), with CHECK=1 a
                             check run per direction and size (the pcap once in, the output
                             port captured, then `check`), then ROUNDS rounds in which every N
                             runs once per direction and size, in a random order: ipsecgw with
                             one worker, the pcap replayed forever (net_pcap), measure.py over
                             the window once all N connections are installed. Prints packets
                             per worker CPU-second (median) and the rate at N over the rate at
                             1 tunnel (target >= 0.85); raw numbers in DIR/many.json. Exit 1 on
                             a failed check or measurement.
  many.py ab DIR PMDS "1 10000" DIRECTION SIZE ROUNDS WINDOW EXE_A EXE_B
                             two ipsecgw binaries on the same traffic (pcaps from `gen` or
                             `bench` in DIR), one after the other in a random order within each
                             round, so that both see the same minutes of a shared machine; per
                             round the rate ratio after/before at each N and N-max over N-min
                             per binary, then the medians (before/after comparisons of a change:
                             docs/performance.md). No output check.
  many.py check DIR N DIRECTION SIZE OUTPUT.pcap [...]
                             decode a capture of the gateway's output port: as many packets as
                             were sent, and a sample of up to SAMPLE of them checked with Scapy
                             (outbound: ESP to the tunnel's peer with its SPI, ICV verified,
                             decrypting to a packet sent through that tunnel; inbound: in the
                             clear, to the host's MAC, one of the inner packets sent). One JSON
                             line; exit 0 when all checks hold.

Tunnel i is gen_connections.tunnel(i): local 10.(64+i/256).(i%256).0/24, peer subnet
10.(128+i/256).(i%256).0/24, peer 198.18.0.0+i+1 behind the next hop 192.0.2.254 (MAC
02:00:00:00:00:02), host side 10.0.0.2 (MAC 02:00:00:00:00:0a). Flow f (0..3) of tunnel i:
10.(64+..).(i%256).(2+f) <-> 10.(128+..).(i%256).2, UDP 1024+f -> 9. Each pcap holds
max(MIN_PKTS = 40,000, 4 N) packets, every (tunnel, flow) equally often, in a random order
(seeded), so consecutive packets rarely share a tunnel; inbound ESP sequence numbers count per tunnel
(the gateway runs with anti-replay off: the pcap is replayed forever).
"""
import ipaddress
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gen_connections as gc  # noqa: E402
from pcaps import HOST_MAC, PEER_MAC, PORT_MAC, clear_why, inner, key  # noqa: E402
from scapy.all import IP, Ether, rdpcap, wrpcap  # noqa: E402
from scapy.layers.ipsec import ESP, SecurityAssociation  # noqa: E402

FLOWS = 4
MIN_PKTS = 40000  # every pcap this long (up to 10,000 tunnels): see the module doc
SAMPLE = 2000
GW_PUB = gc.UNPROTECTED.split("/")[0]


def sa(spi, enc, auth, src, dst):
    return SecurityAssociation(ESP, spi=spi, crypt_algo="AES-CBC", crypt_key=enc,
                               auth_algo="HMAC-SHA1-96", auth_key=auth,
                               tunnel_header=IP(src=src, dst=dst))


def hosts(t, f):
    """(local host, peer host) of flow f of tunnel t."""
    local = ipaddress.IPv4Network(t["local"])[2 + f]
    peer = ipaddress.IPv4Network(t["peer_subnet"])[2]
    return str(local), str(peer)


def order(n):
    """(tunnel, flow, i) in a seeded random order, every pair equally often."""
    total = max(MIN_PKTS, FLOWS * n)
    seq = [(k % (FLOWS * n)) for k in range(total)]
    random.Random(12).shuffle(seq)
    return [(s // FLOWS, s % FLOWS, k) for k, s in enumerate(seq)]


def eal_memory(mb):
    """DPDK memory flags: 2 MiB hugepages with IPSECGW_BENCH_HUGE=1 (what scripts/bench-gateway
    exports unless --no-huge, after reserving and mounting them; --huge-unlink leaves no files
    behind), else 4 KiB pages (--no-huge, as when many.py is called on its own)."""
    if os.environ.get("IPSECGW_BENCH_HUGE") == "1":
        return ["-m", str(mb), "--huge-unlink"]
    return ["--no-huge", "-m", str(mb)]


def write_config(d, n):
    """The gateway's config: anti-replay off (the pcap repeats), and 65,536 mbufs for every N
    (net_pcap's infinite_rx holds the whole pcap, up to 40,000 packets, in mbufs)."""
    gc.write_0600(f"{d}/many-{n}.yaml", gc.render(n, replay_window=0, mbufs=65536))


SIZES = (64, 1400)  # the default inner sizes (bytes, IP total length)


def gen(d, n, sizes=SIZES):
    write_config(d, n)
    ts = [gc.tunnel(i) for i in range(n)]
    sas = [sa(t["spi_in"], t["in_enc"], t["in_auth"], t["peer"], GW_PUB) for t in ts]
    seqs = [0] * n
    for size in sizes:
        seqs = [0] * n
        outp, inp = [], []
        for (i, f, k) in order(n):
            local, peer = hosts(ts[i], f)
            outp.append(Ether(src=HOST_MAC, dst=PORT_MAC) / inner(local, peer, size, f))
            seqs[i] += 1
            inp.append(Ether(src=PEER_MAC, dst=PORT_MAC) /
                       sas[i].encrypt(inner(peer, local, size, f), seq_num=seqs[i]))
        wrpcap(f"{d}/many-{n}-out-{size}.pcap", outp)
        wrpcap(f"{d}/many-{n}-in-{size}.pcap", inp)


def check(d, n, direction, size, captures):
    ts = [gc.tunnel(i) for i in range(n)]
    by_peer = {t["peer"]: t for t in ts}
    sent_dir = "out" if direction == "outbound" else "in"
    sent = rdpcap(f"{d}/many-{n}-{sent_dir}-{size}.pcap")
    got = [p for c in captures for p in rdpcap(c)]
    res = {"tunnels": n, "direction": direction, "size": size, "sent": len(sent),
           "captured": len(got), "checked": 0, "ok": 0, "bad": 0, "first_bad": None}
    want = set()
    for (i, f, _k) in order(n):
        local, peer = hosts(ts[i], f)
        want.add(key(inner(local, peer, size, f) if direction == "outbound"
                     else inner(peer, local, size, f)))
    sample = random.Random(5).sample(got, min(SAMPLE, len(got)))
    for p in sample:
        why = None
        try:
            if direction == "outbound":
                t = by_peer.get(p[IP].dst) if IP in p else None
                if ESP not in p:
                    why = "not ESP"
                elif p[Ether].dst != PEER_MAC:
                    why = f"dst MAC {p[Ether].dst} (want {PEER_MAC})"
                elif t is None or p[IP].src != GW_PUB or p[ESP].spi != t["spi_out"]:
                    why = f"outer {p[IP].src}->{p[IP].dst} spi {p[ESP].spi:#x}"
                else:
                    s = sa(t["spi_out"], t["out_enc"], t["out_auth"], GW_PUB, t["peer"])
                    dec = s.decrypt(p[IP])  # verifies the ICV
                    if key(dec) not in want:
                        why = "decrypts to a packet that was not sent"
                    elif not ipaddress.IPv4Address(dec.dst) in ipaddress.IPv4Network(
                            t["peer_subnet"]):
                        why = "a packet in another tunnel's SA"
            else:
                why = clear_why(p, want)
        except Exception as e:  # noqa: BLE001 - any decode/ICV failure is a bad packet
            why = f"{type(e).__name__}: {e}"
        res["checked"] += 1
        if why is None:
            res["ok"] += 1
        else:
            res["bad"] += 1
            res["first_bad"] = res["first_bad"] or why
    print(json.dumps(res))
    return 0 if res["bad"] == 0 and len(got) == len(sent) else 1


def installed(prefix, n, proc, timeout=300):
    """Waits until /ipsecgw/connections reports all n connections (the static SAs are
    installed before the rows are published); False on timeout."""
    path = f"/run/dpdk/{prefix}/dpdk_telemetry.v2"
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            s.settimeout(2)
            s.connect(path)
            size = json.loads(s.recv(4096).decode()).get("max_output_len", 16384)
            s.send(b"/ipsecgw/connections,0")
            r = json.loads(s.recv(size).decode())
            s.close()
            if (r.get("/ipsecgw/connections") or {}).get("total") == n:
                return True
        except (OSError, ValueError, AttributeError):
            pass
        time.sleep(0.05)
    return False


class Gateway:
    """ipsecgw on the many-N config: port 0 unprotected, port 1 protected; the input port
    replays the pcap (forever: bench) or once with the output captured (check)."""

    def __init__(self, d, exe, pmds, n, direction, size, mode, tag):
        self.prefix = f"gwb-many-{tag}-{os.getpid()}"
        sent_dir = "out" if direction == "outbound" else "in"
        pcap = f"{d}/many-{n}-{sent_dir}-{size}.pcap"
        if mode == "check" and direction == "outbound":
            # The input port is then the second net_pcap port (02:70:63:61:70:01, DPDK 22.11),
            # and ipsecgw drops frames not to its MAC: a copy addressed to that port.
            pkts = rdpcap(pcap)
            for p in pkts:
                p[Ether].dst = PORT_MAC[:-2] + "01"
            pcap = f"{d}/input-{tag}.pcap"
            wrpcap(pcap, pkts)
        rx = f"net_pcap_in,rx_pcap={pcap},tx_pcap=/dev/null,tx_pcap=/dev/null"
        tx = "net_null_out,no-rx=1"
        if mode == "bench":
            rx += ",infinite_rx=1"
        else:
            tx = f"net_pcap_out,tx_pcap={d}/capture-{tag}-q0.pcap,tx_pcap={d}/capture-{tag}-q1.pcap"
        devs = ["--vdev", tx, "--vdev", rx] if direction == "outbound" else \
            ["--vdev", rx, "--vdev", tx]
        args = [exe, "-l", "0,1", "-n", "1"] + eal_memory(2048) + ["--no-pci",
                "--file-prefix", self.prefix, "-d", pmds] + devs + \
            ["--", "--config", f"{d}/many-{n}.yaml", "--log-level", "notice", "--no-api"]
        self.log = open(f"{d}/{tag}.log", "w")
        self.p = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.ports = ("1", "0") if direction == "outbound" else ("0", "1")

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()
        subprocess.run(["rm", "-rf", f"/run/dpdk/{self.prefix}"], check=False)


def measure(lib, gw, warmup, window):
    env = dict(os.environ, BENCH_GW_PID=str(gw.p.pid))
    out = subprocess.run([sys.executable, f"{lib}/measure.py", gw.prefix, *gw.ports,
                          str(warmup), str(window), "/ipsecgw/stats"],
                         env=env, capture_output=True, text=True, check=False).stdout
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": out[-300:]}


def fresh(path):
    """True when `path` exists and is newer than this script (pcaps of an older layout or
    length are written again)."""
    return os.path.exists(path) and os.path.getmtime(path) > os.path.getmtime(__file__)


def bench(d, exe, pmds, ns, directions, sizes, rounds, warmup, window, check_out):
    lib = os.path.dirname(os.path.abspath(__file__))
    ok = True
    results = []
    for n in ns:
        write_config(d, n)
        todo = [s for s in sizes if not fresh(f"{d}/many-{n}-in-{s}.pcap")]
        if todo:
            print(f"== many tunnels: writing the pcaps for {n} tunnel(s) (Scapy)", flush=True)
            gen(d, n, todo)
    if check_out:
        print("== many tunnels: checking the output (pcap once in, output captured, Scapy)")
        for n in ns:
            for direction in directions:
                for size in sizes:
                    tag = f"chk-{n}-{direction}-{size}"
                    for q in (0, 1):
                        if os.path.exists(f"{d}/capture-{tag}-q{q}.pcap"):
                            os.unlink(f"{d}/capture-{tag}-q{q}.pcap")
                    gw = Gateway(d, exe, pmds, n, direction, size, "check", tag)
                    try:
                        up = installed(gw.prefix, n, gw.p)
                        time.sleep(3)  # the pcap once through
                    finally:
                        gw.stop()
                    caps = [f"{d}/capture-{tag}-q{q}.pcap" for q in (0, 1)
                            if os.path.exists(f"{d}/capture-{tag}-q{q}.pcap")]
                    r = subprocess.run([sys.executable, os.path.abspath(__file__), "check", d,
                                        str(n), direction, str(size), *caps],
                                       capture_output=True, text=True, check=False)
                    line = (r.stdout.strip().splitlines() or [r.stderr[-200:]])[-1]
                    print(f"   {n} tunnels {direction} {size}: {line}", flush=True)
                    ok &= up and r.returncode == 0
                    results.append({"kind": "check", "tunnels": n, "direction": direction,
                                    "size": size, "installed": up, "result": line})
    print(f"== many tunnels: {rounds} round(s), {warmup} s warm-up, {window} s window, "
          "one worker; tunnel counts in a random order per direction and size", flush=True)
    rng = random.Random(7)
    for r in range(1, rounds + 1):
        for direction in directions:
            for size in sizes:
                for n in rng.sample(ns, len(ns)):
                    tag = f"run-{n}-{direction}-{size}-r{r}"
                    gw = Gateway(d, exe, pmds, n, direction, size, "bench", tag)
                    try:
                        m = measure(lib, gw, warmup, window) \
                            if installed(gw.prefix, n, gw.p) else \
                            {"error": f"not all {n} installed (log {d}/{tag}.log)"}
                    finally:
                        gw.stop()
                    m.update(kind="run", tunnels=n, direction=direction, size=size, round=r)
                    results.append(m)
                    per = m.get("out_per_worker_cpu_s")
                    ratio = m.get("out_pps", 0) / m["in_pps"] if m.get("in_pps") else 0
                    print(f"   round {r} {direction:8} {size:4} {n:6} tunnels: " +
                          (f"{per:.0f} pkt per worker CPU-s, out/in {ratio:.3f}" if per
                           else str(m)), flush=True)
                    ok &= bool(per) and ratio >= 0.99
    with open(f"{d}/many.json", "w") as f:
        json.dump(results, f, indent=1)
    print("\nmany tunnels, ipsecgw, packets per worker CPU-second (median over rounds); "
          "rate vs 1 tunnel (target >= 0.85)")
    print(f"{'direction':10} {'size':>5} {'tunnels':>8} {'pkt/CPU-s':>12} {'vs 1':>6}")
    for direction in directions:
        for size in sizes:
            med = {}
            for n in ns:
                v = [x["out_per_worker_cpu_s"] for x in results if x.get("kind") == "run" and
                     x["tunnels"] == n and x["direction"] == direction and x["size"] == size
                     and x.get("out_per_worker_cpu_s")]
                med[n] = statistics.median(v) if v else None
            for n in ns:
                base = med.get(1) if 1 in med else med[ns[0]]
                vs = f"{med[n] / base:6.2f}" if med[n] and base else "     -"
                print(f"{direction:10} {size:5} {n:8} {med[n] or 0:12.0f} {vs}")
    return 0 if ok else 1


def ab(d, pmds, ns, direction, size, rounds, window, exes):
    lib = os.path.dirname(os.path.abspath(__file__))
    rng = random.Random(11)
    rate = {}
    for r in range(1, rounds + 1):
        for label, exe in rng.sample(list(zip("AB", exes)), 2):
            for n in rng.sample(ns, len(ns)):
                write_config(d, n)
                gw = Gateway(d, exe, pmds, n, direction, size, "bench", f"ab-{label}-{n}-r{r}")
                try:
                    m = measure(lib, gw, 2, window) if installed(gw.prefix, n, gw.p) else {}
                finally:
                    gw.stop()
                rate[(r, label, n)] = m.get("out_per_worker_cpu_s")
                print(f"   round {r} {label} {n:6} tunnels: {rate[(r, label, n)]}", flush=True)
    lo, hi = min(ns), max(ns)
    cols = {f"B/A at {n}": [] for n in ns}
    cols.update({f"A {hi}/{lo}": [], f"B {hi}/{lo}": []})
    for r in range(1, rounds + 1):
        g = lambda lab, n: rate.get((r, lab, n)) or 0.0  # noqa: E731
        if not all(g(lab, n) for lab in "AB" for n in ns):
            print(f"round {r}: a run failed, left out")
            continue
        for n in ns:
            cols[f"B/A at {n}"].append(g("B", n) / g("A", n))
        for lab in "AB":
            cols[f"{lab} {hi}/{lo}"].append(g(lab, hi) / g(lab, lo))
    print(f"A = {exes[0]}, B = {exes[1]}; {direction} {size} B, {window} s windows")
    for k, v in cols.items():
        print(f"{k:14} " + " ".join(f"{x:.3f}" for x in v) +
              (f"   median {statistics.median(v):.3f}" if v else ""))
    return 0 if all(cols.values()) else 1


if __name__ == "__main__":
    if len(sys.argv) == 11 and sys.argv[1] == "ab":
        a = sys.argv
        sys.exit(ab(a[2], a[3], [int(x) for x in a[4].split()], a[5], int(a[6]), int(a[7]),
                    float(a[8]), a[9:11]))
    if len(sys.argv) == 12 and sys.argv[1] == "bench":
        a = sys.argv
        sys.exit(bench(a[2], a[3], a[4], [int(x) for x in a[5].split()], a[6].split(),
                       [int(x) for x in a[7].split()], int(a[8]), float(a[9]), float(a[10]),
                       a[11] == "1"))
    if len(sys.argv) >= 4 and sys.argv[1] == "gen":
        gen(sys.argv[2], int(sys.argv[3]), [int(x) for x in sys.argv[4:]] or SIZES)
        sys.exit(0)
    if len(sys.argv) >= 7 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]),
                       sys.argv[6:]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
