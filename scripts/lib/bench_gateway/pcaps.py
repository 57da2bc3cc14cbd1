#!/usr/bin/python3
"""Synthetic traffic for scripts/bench-gateway, and the check of what a gateway sent.

  pcaps.py gen DIR                 write DIR/{out,in}-{64,1400}.pcap
  pcaps.py check DIR DIRECTION SIZE OUTPUT.pcap [OUTPUT.pcap ...]
        decode a capture of the gateway's output port (one file per TX queue): outbound,
        every packet must be ESP (SPI 0x1001) from 192.0.2.1 to 192.0.2.2 that decrypts
        (AES-128-CBC + HMAC-SHA1-96, Scapy, the gateway's keys) to one of the inner packets
        that were sent; inbound, every packet must be one of the inner packets of the ESP
        input, in the clear. Prints one JSON line; exit 0 if every packet checks and as many
        came out as were sent.

Topology (the one of examples/gw-a-static.yaml, gateway "A"):
  port 0 unprotected 192.0.2.1/24, peer gateway 192.0.2.2 (MAC PEER_MAC)
  port 1 protected   10.1.0.1/24,  host 10.1.0.2 (MAC HOST_MAC), peer subnet 10.2.0.0/24
Outbound: host 10.1.0.2 -> 10.2.0.2, inner IPv4/UDP of SIZE bytes (IP total length, as in
docs/performance.md), sent to port 1. Inbound: ESP (SPI 0x2002) 192.0.2.2 -> 192.0.2.1
carrying inner 10.2.0.2 -> 10.1.0.2 of SIZE bytes, sent to port 0.
"""
import json
import sys

from scapy.all import IP, UDP, Ether, Raw, rdpcap, wrpcap  # noqa: E402
from scapy.layers.ipsec import ESP, SecurityAssociation

# Example keys (the same as examples/gw-a-static.yaml and tests/interop/lib.sh); test only.
SPI_OUT, ENC_OUT, AUTH_OUT = 0x1001, "101112131415161718191a1b1c1d1e1f", \
    "303132333435363738393a3b3c3d3e3f40414243"
SPI_IN, ENC_IN, AUTH_IN = 0x2002, "202122232425262728292a2b2c2d2e2f", \
    "404142434445464748494a4b4c4d4e4f50515253"
GW_PUB, PEER_PUB = "192.0.2.1", "192.0.2.2"
HOST_A, HOST_B = "10.1.0.2", "10.2.0.2"
PEER_MAC = "02:00:00:00:00:02"   # the peer gateway, next hop of ESP out of port 0
HOST_MAC = "02:00:00:00:00:0a"   # host 10.1.0.2, next hop of decrypted packets out of port 1
# The input port's MAC: DPDK 22.11's net_pcap gives its first port 02:70:63:61:70:00 ("pcap"),
# the next :01 and so on; in the benchmark runs the input port is the only net_pcap port. In
# the check runs the output port is a net_pcap too (:00 or :01 by order); neither gateway
# filters on the destination MAC, so that does not change what they do.
PORT_MAC = "02:70:63:61:70:00"
SIZES = (64, 1400)
N_PKTS = 1024          # distinct packets per pcap (the pcap is replayed forever)


def sa(spi, enc, auth, src, dst):
    return SecurityAssociation(ESP, spi=spi, crypt_algo="AES-CBC", crypt_key=bytes.fromhex(enc),
                               auth_algo="HMAC-SHA1-96", auth_key=bytes.fromhex(auth),
                               tunnel_header=IP(src=src, dst=dst))


def inner(src, dst, size, i):
    """An IPv4/UDP packet of exactly `size` bytes (IP total length); flow varies with i."""
    hdr = IP(src=src, dst=dst, ttl=64, id=i & 0xFFFF) / UDP(sport=1024 + (i % 256), dport=9)
    pad = size - len(hdr)
    assert pad >= 0, size
    payload = (i.to_bytes(4, "big") * (pad // 4 + 1))[:pad]
    return IP(bytes(hdr / Raw(payload)))


def gen(d):
    sa_in = sa(SPI_IN, ENC_IN, AUTH_IN, PEER_PUB, GW_PUB)
    for size in SIZES:
        outp = [Ether(src=HOST_MAC, dst=PORT_MAC) / inner(HOST_A, HOST_B, size, i)
                for i in range(N_PKTS)]
        wrpcap(f"{d}/out-{size}.pcap", outp)
        # Inbound: sequence numbers 1..N_PKTS; the pcap repeats them on every replay, so the
        # gateways run with anti-replay off (see docs/bench-gateway.md).
        inp = [Ether(src=PEER_MAC, dst=PORT_MAC) /
               sa_in.encrypt(inner(HOST_B, HOST_A, size, i), seq_num=i + 1)
               for i in range(N_PKTS)]
        wrpcap(f"{d}/in-{size}.pcap", inp)


def key(ip):
    """What must survive the gateway: addresses, protocol, L4 header and payload (not TTL or
    the header checksum, which a router rewrites)."""
    return (ip.src, ip.dst, ip.proto, ip.len, bytes(ip.payload))


def check(d, direction, size, captures):
    sent_dir = "out" if direction == "outbound" else "in"
    sent = rdpcap(f"{d}/{sent_dir}-{size}.pcap")
    if direction == "outbound":
        want = {key(p[IP]) for p in sent}
    else:
        sa_in = sa(SPI_IN, ENC_IN, AUTH_IN, PEER_PUB, GW_PUB)
        want = {key(sa_in.decrypt(p[IP])) for p in sent}
    sa_out = sa(SPI_OUT, ENC_OUT, AUTH_OUT, GW_PUB, PEER_PUB)
    got = [p for c in captures for p in rdpcap(c)]
    res = {"direction": direction, "size": size, "sent": len(sent), "captured": len(got),
           "ok": 0, "bad": 0, "first_bad": None}
    for p in got:
        why = None
        try:
            if direction == "outbound":
                if ESP not in p:
                    why = "not ESP"
                elif p[Ether].dst != PEER_MAC:
                    why = f"dst MAC {p[Ether].dst} (want {PEER_MAC})"
                elif (p[IP].src, p[IP].dst, p[ESP].spi) != (GW_PUB, PEER_PUB, SPI_OUT):
                    why = f"outer {p[IP].src}->{p[IP].dst} spi {p[ESP].spi:#x}"
                else:
                    dec = sa_out.decrypt(p[IP])   # verifies the ICV, raises on mismatch
                    if key(dec) not in want:
                        why = "decrypts to a packet that was not sent"
            else:
                if ESP in p:
                    why = "still ESP"
                elif p[Ether].dst != HOST_MAC:
                    why = f"dst MAC {p[Ether].dst} (want {HOST_MAC})"
                elif key(p[IP]) not in want:
                    why = "not one of the inner packets sent"
        except Exception as e:  # noqa: BLE001 - any decode/ICV failure is a bad packet
            why = f"{type(e).__name__}: {e}"
        if why is None:
            res["ok"] += 1
        else:
            res["bad"] += 1
            res["first_bad"] = res["first_bad"] or why
    print(json.dumps(res))
    return 0 if res["bad"] == 0 and res["ok"] == len(sent) else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "gen":
        gen(sys.argv[2])
        sys.exit(0)
    if len(sys.argv) >= 6 and sys.argv[1] == "check":
        sys.exit(check(sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
