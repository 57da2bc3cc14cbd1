#!/usr/bin/python3
"""Writes the attack mix of tests/interop/flood.sh as a pcap for tcpreplay.

usage: flood_pcap.py OUT.pcap DST_MAC SRC_MAC GATEWAY_IP PEER_IP[,PEER_IP...] [PACKETS (20000)]

Every frame is addressed to the gateway (DST_MAC, GATEWAY_IP):
  40% IKEv1 Main Mode first messages (MM1: zero responder cookie, an SA payload the gateway
      accepts: AES-128/SHA2-256/MODP-2048/PSK), to UDP 500, or 4500 with the non-ESP marker;
  30% spoofed "MM3"s: a responder cookie we never issued, KE (256 bytes) and nonce payloads;
  15% ICMP echo requests;
  15% first fragments (MF set, never completed) of UDP 500 datagrams and of ESP packets.
Sources: a quarter the peers' own addresses (the IKE packets), the rest random addresses
outside the gateway's subnet (198.18.0.0/15), from random ports; initiator cookies random.
The layers come from Scapy (scapy.layers.isakmp and inet): one template per kind, then the
addresses, ports, cookies and checksums of each copy are patched in place (building 20,000
packets with Scapy alone takes too long on a small machine).
"""
import random
import struct
import sys

from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.isakmp import (ISAKMP, ISAKMP_payload_KE, ISAKMP_payload_Nonce,
                                 ISAKMP_payload_Proposal, ISAKMP_payload_SA,
                                 ISAKMP_payload_Transform)
from scapy.layers.l2 import Ether
from scapy.packet import Raw


def ip_checksum(hdr: bytes) -> int:
    s = sum(struct.unpack("!10H", hdr[:20]))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def main() -> int:
    if len(sys.argv) < 6:
        print(__doc__, file=sys.stderr)
        return 2
    out, dst_mac, src_mac, gw_ip, peers = sys.argv[1:6]
    count = int(sys.argv[6]) if len(sys.argv) > 6 else 20000
    peers = peers.split(",")
    rnd = random.Random(4242)
    eth = Ether(dst=dst_mac, src=src_mac)

    sa = ISAKMP_payload_SA(prop=ISAKMP_payload_Proposal(trans_nb=1, trans=ISAKMP_payload_Transform(
        num=1, transforms=[("Encryption", "AES-CBC"), ("KeyLength", 128), ("Hash", "SHA2-256"),
                           ("GroupDesc", "2048MODPgr"), ("Authentication", "PSK"),
                           ("LifeType", "Seconds"), ("LifeDuration", 28800)])))
    mm1 = ISAKMP(init_cookie=b"\x01" * 8, resp_cookie=b"\x00" * 8, exch_type=2) / sa
    mm3 = (ISAKMP(init_cookie=b"\x01" * 8, resp_cookie=b"\x02" * 8, exch_type=2) /
           ISAKMP_payload_KE(load=bytes(256)) / ISAKMP_payload_Nonce(load=bytes(32)))
    t_mm1 = bytes(eth / IP(src="1.1.1.1", dst=gw_ip) / UDP(sport=500, dport=500) / mm1)
    t_mm1_nat = bytes(eth / IP(src="1.1.1.1", dst=gw_ip) / UDP(sport=4500, dport=4500) /
                      Raw(b"\x00" * 4) / mm1)
    t_mm3 = bytes(eth / IP(src="1.1.1.1", dst=gw_ip) / UDP(sport=500, dport=500) / mm3)
    t_echo = bytes(eth / IP(src="1.1.1.1", dst=gw_ip) / ICMP(type=8, id=7, seq=1) /
                   Raw(bytes(range(56))))
    t_frag_udp = bytes(eth / IP(src="1.1.1.1", dst=gw_ip, flags="MF", id=1) /
                       UDP(sport=500, dport=500, len=1400) / Raw(bytes(200)))
    t_frag_esp = bytes(eth / IP(src="1.1.1.1", dst=gw_ip, flags="MF", id=1, proto=50) /
                       Raw(bytes(208)))
    for t in (t_mm1, t_mm1_nat, t_mm3, t_echo, t_frag_udp, t_frag_esp):
        assert len(t) >= 42

    def source(ike: bool) -> bytes:
        if ike and rnd.random() < 0.25:
            return bytes(int(x) for x in rnd.choice(peers).split("."))
        return struct.pack("!I", (198 << 24 | 18 << 16) + rnd.randrange(1 << 17))

    def patch(t: bytes, ike: bool, udp: bool = True) -> bytearray:
        f = bytearray(t)
        f[26:30] = source(ike)
        f[18:20] = struct.pack("!H", rnd.randrange(1 << 16))  # IP id
        f[24:26] = b"\x00\x00"
        f[24:26] = struct.pack("!H", ip_checksum(bytes(f[14:34])))
        if udp:
            f[40:42] = b"\x00\x00"  # UDP checksum: none (RFC 768)
        return f

    with open(out, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(count):
            r = rnd.random()
            if r < 0.40:  # MM1
                nat = rnd.random() < 0.2
                f = patch(t_mm1_nat if nat else t_mm1, True)
                if rnd.random() < 0.5:
                    f[34:36] = struct.pack("!H", rnd.randrange(1024, 65536))  # source port
                off = 42 + (4 if nat else 0)
                f[off:off + 8] = rnd.randbytes(8)  # initiator cookie
            elif r < 0.70:  # spoofed MM3
                f = patch(t_mm3, True)
                if rnd.random() < 0.5:
                    f[34:36] = struct.pack("!H", rnd.randrange(1024, 65536))
                f[42:58] = rnd.randbytes(16)  # both cookies
                f[-32:] = rnd.randbytes(32)
            elif r < 0.85:  # ICMP echo request
                f = patch(t_echo, False, udp=False)
                f[38:40] = struct.pack("!H", i & 0xFFFF)  # sequence
                f[36:38] = b"\x00\x00"
                s = sum(struct.unpack("!%dH" % ((len(f) - 34) // 2), bytes(f[34:])))
                while s >> 16:
                    s = (s & 0xFFFF) + (s >> 16)
                f[36:38] = struct.pack("!H", ~s & 0xFFFF)
            else:  # a first fragment that never completes
                f = patch(t_frag_udp if rnd.random() < 0.5 else t_frag_esp, False,
                          udp=False)
            fh.write(struct.pack("<IIII", i // 1000000, i % 1000000, len(f), len(f)))
            fh.write(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
