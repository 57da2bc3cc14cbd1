#!/usr/bin/env python3
"""Numbered UDP traffic for loss checks: sends datagrams carrying sequence numbers 0, 1, ...
at RATE per second from START (epoch seconds) for DURATION seconds to PEER:PORT, and records
the sequence numbers it receives on BIND:PORT until LINGER seconds after its last send. Both
ends run it (one per namespace); each one's `sent` must equal the other's `received`.

usage: udp_seq.py BIND PORT PEER RATE START DURATION OUT_JSON
OUT_JSON: {"sent": n, "received": unique numbers received, "dups": n, "max": highest,
           "missing": [[seq, seconds after START], ...] (first 50 below max),
           "rcvbuf_errors": UDP datagrams this namespace's full socket buffers dropped meanwhile}
"""
import json
import select
import socket
import struct
import sys
import time

LINGER = 2.0


def udp_rcvbuf_errors():
    """This network namespace's UDP RcvbufErrors (/proc/net/snmp): datagrams a full socket
    buffer dropped; None when unreadable."""
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
        return int(rows[1][rows[0].index("RcvbufErrors")])
    except (OSError, ValueError, IndexError):
        return None


def main():
    bind, port, peer, rate, start, duration, out = sys.argv[1:8]
    port, rate, start, duration = int(port), float(rate), float(start), float(duration)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:  # root: past net.core.rmem_max, so a descheduled receiver loses nothing
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUFFORCE, 16 << 20)
    except (OSError, AttributeError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    rcvbuf_errors0 = udp_rcvbuf_errors()
    s.bind((bind, port))
    s.setblocking(False)
    total = int(rate * duration)
    sent, seen, dups = 0, set(), 0
    pad = b"\0" * 56
    end = start + duration + LINGER
    while True:
        now = time.time()
        while sent < total and now >= start + sent / rate:
            try:
                s.sendto(struct.pack("!Q", sent) + pad, (peer, port))
            except OSError:
                pass  # counted as sent: the peer's receive side shows it as missing
            sent += 1
        if now >= end:
            break
        nxt = start + sent / rate if sent < total else end
        r, _, _ = select.select([s], [], [], max(0.0, min(nxt, end) - now))
        while r:
            try:
                data = s.recv(2048)
            except BlockingIOError:
                break
            if len(data) >= 8:
                n = struct.unpack("!Q", data[:8])[0]
                if n in seen:
                    dups += 1
                seen.add(n)
    top = max(seen) if seen else -1
    missing = [[n, round(n / rate, 2)] for n in range(top + 1) if n not in seen][:50]
    with open(out, "w") as f:
        e1 = udp_rcvbuf_errors()
        json.dump({"sent": sent, "received": len(seen), "dups": dups, "max": top,
                   "missing": missing,
                   "rcvbuf_errors": None if e1 is None or rcvbuf_errors0 is None
                   else e1 - rcvbuf_errors0}, f)


if __name__ == "__main__":
    main()
