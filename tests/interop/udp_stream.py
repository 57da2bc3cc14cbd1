#!/usr/bin/env python3
"""A numbered UDP stream through a tunnel, for counting lost packets exactly.

  udp_stream.py echo PORT [ADDR]
      Echoes every datagram back to its sender (run behind the peer gateway); bound to ADDR
      (default all), so that replies leave from ADDR whatever source the route would pick.
  udp_stream.py send DST PORT STOPFILE OUT [INTERVAL_S]
      Sends datagram n = 0, 1, 2 ... (8-byte big-endian sequence number) to DST:PORT every
      INTERVAL_S (default 0.01) until STOPFILE exists, then waits 2 s for the last echoes and
      writes OUT (JSON): sent, received, the missing sequence numbers as [first, last] ranges
      and the largest sequence number echoed. Each number counts once (duplicates ignored).
"""
import json
import os
import select
import socket
import struct
import sys
import time


def echo(port, addr="0.0.0.0"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        data, addr = s.recvfrom(2048)
        s.sendto(data, addr)


def ranges(missing):
    out = []
    for n in missing:
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return out


def send(dst, port, stopfile, out, interval):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((dst, port))
    s.setblocking(False)
    got = set()
    seq = 0
    next_at = time.monotonic()
    stop_at = None

    def drain(timeout):
        r, _, _ = select.select([s], [], [], max(timeout, 0))
        while r:
            try:
                data = s.recv(2048)
            except (BlockingIOError, ConnectionRefusedError):
                break
            if len(data) >= 8:
                got.add(struct.unpack("!Q", data[:8])[0])

    while True:
        now = time.monotonic()
        if stop_at is None and os.path.exists(stopfile):
            stop_at = now + 2.0
        if stop_at is not None:
            if now >= stop_at:
                break
            drain(stop_at - now)
            continue
        if now >= next_at:
            try:
                s.send(struct.pack("!Q", seq) + b"x" * 56)
            except (BlockingIOError, ConnectionRefusedError, OSError):
                pass  # counted as sent: its echo will be missing
            seq += 1
            next_at += interval
            if next_at < now:  # fell behind (scheduling): no burst to catch up
                next_at = now + interval
        drain(next_at - time.monotonic())
    missing = [n for n in range(seq) if n not in got]
    with open(out + ".tmp", "w") as f:
        json.dump({"sent": seq, "received": len([n for n in got if n < seq]),
                   "missing": ranges(missing), "last_echoed": max(got) if got else -1}, f)
    os.rename(out + ".tmp", out)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "echo":
        echo(int(sys.argv[2]), *sys.argv[3:4])
    elif len(sys.argv) >= 6 and sys.argv[1] == "send":
        interval = float(sys.argv[6]) if len(sys.argv) > 6 else 0.01
        send(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], interval)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
