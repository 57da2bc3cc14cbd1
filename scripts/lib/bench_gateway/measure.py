#!/usr/bin/python3
"""Sample a running DPDK gateway's port counters through its telemetry socket.

  measure.py FILE_PREFIX IN_PORT OUT_PORT WARMUP_S WINDOW_S [EXTRA_COMMAND ...]

Waits for the socket (up to 20 s), then until the first packet has left the output port (up
to 30 s more: on a loaded machine a gateway can take seconds between the ports answering
telemetry and the forwarding loop running), waits WARMUP_S, reads /ethdev/stats of both ports, waits
WINDOW_S, reads them again and prints one JSON line: the packets/s forwarded at the output
port (opackets delta / elapsed, elapsed measured between the two reads), the packets/s taken
in at the input port, the port error/missed counters, and the replies to EXTRA_COMMANDs (e.g.
/ipsecgw/stats) read at the end.

With BENCH_GW_PID=PID in the environment it also reads, over the same window, the CPU time of
that process's worker lcore thread (the one whose name ends in "worker-1": EAL's
"lcore-worker-1", ipsecgw's "rte-worker-1") from /proc/PID/task/*/schedstat (ns on a CPU), and
gives out_per_worker_cpu_s: packets forwarded per second of CPU time the worker actually got.
On a shared machine where other processes take the worker's CPU away at times, that is the
per-core figure; out_pps is the wall-clock one. BENCH_GW_THREAD=main reads the process's main
thread instead (DPDK's l2fwd example run on one lcore, its main lcore, does the work there). Works for any DPDK 22.11 application (EAL registers
/ethdev/stats), so for ipsecgw and ipsec-secgw alike.
"""
import json
import os
import socket
import sys
import time


class Telemetry:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.s.settimeout(5)
        self.s.connect(path)
        hello = json.loads(self.s.recv(4096).decode())
        self.size = hello.get("max_output_len", 16384)

    def q(self, cmd):
        self.s.send(cmd.encode())
        return json.loads(self.s.recv(self.size).decode())


def worker_cpu_ns(pid):
    """ns on a CPU of the worker lcore thread of pid (or its main thread), or None."""
    try:
        if os.environ.get("BENCH_GW_THREAD") == "main":
            with open(f"/proc/{pid}/task/{pid}/schedstat") as f:
                return int(f.read().split()[0])
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            if name.endswith("worker-1"):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    return int(f.read().split()[0])
    except OSError:
        return None
    return None


def stats(t, port):
    return t.q(f"/ethdev/stats,{port}")["/ethdev/stats"]


def main():
    prefix, in_port, out_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    warmup, window = float(sys.argv[4]), float(sys.argv[5])
    extra = sys.argv[6:]
    path = f"/run/dpdk/{prefix}/dpdk_telemetry.v2"
    deadline = time.monotonic() + 20
    t = None
    while t is None:
        try:
            t = Telemetry(path)
            stats(t, out_port)  # the ports exist: the application finished its start-up
        except (OSError, KeyError, ValueError, TypeError):
            t = None
            if time.monotonic() > deadline:
                print(json.dumps({"error": f"no telemetry at {path}"}))
                return 1
            time.sleep(0.2)
    deadline = time.monotonic() + 30
    while stats(t, out_port)["opackets"] == 0:
        if time.monotonic() > deadline:
            print(json.dumps({"error": "no packet out of the output port within 30 s"}))
            return 1
        time.sleep(0.05)
    pid = os.environ.get("BENCH_GW_PID")
    time.sleep(warmup)
    c0 = worker_cpu_ns(pid) if pid else None
    a_in, a_out, t0 = stats(t, in_port), stats(t, out_port), time.monotonic()
    time.sleep(window)
    b_in, b_out, t1 = stats(t, in_port), stats(t, out_port), time.monotonic()
    c1 = worker_cpu_ns(pid) if pid else None
    dt = t1 - t0
    res = {
        "elapsed_s": dt,
        "out_pps": (b_out["opackets"] - a_out["opackets"]) / dt,
        "in_pps": (b_in["ipackets"] - a_in["ipackets"]) / dt,
        "worker_cpu_share": (c1 - c0) / 1e9 / dt if c0 is not None and c1 is not None else None,
        "out_per_worker_cpu_s": ((b_out["opackets"] - a_out["opackets"]) / ((c1 - c0) / 1e9)
                                 if c0 is not None and c1 is not None and c1 > c0 else None),
        "in_port_end": b_in,
        "out_port_end": b_out,
    }
    for cmd in extra:
        try:
            res[cmd] = t.q(cmd)
        except (OSError, ValueError) as e:
            res[cmd] = f"error: {e}"
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 6:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
