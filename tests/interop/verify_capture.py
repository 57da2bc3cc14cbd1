#!/usr/bin/python3
"""Checks a capture of the public link with Scapy as an independent ESP implementation.

Every frame must be ARP or an IPv4 packet between the two gateways that is ESP (IP proto 50) or,
with --udp, ESP in UDP 4500 (RFC 3948, no non-ESP marker). Each ESP packet must verify (ICV) and
decrypt with the configured static keys to an IPv4 packet between the two protected subnets, in
the direction of its SA. Outer IP fragments are reassembled first.

With --allow-ike (IKE-negotiated SAs, e.g. against strongSwan) IKE between the gateways is
allowed too: UDP 500<->500, and on 4500 datagrams with the 4-byte non-ESP marker or 1-byte
NAT-keepalives (RFC 3948 §2.2, §2.3); they are counted, not decrypted. --auth sha256 selects
HMAC-SHA-256-128 (RFC 4868); the AES key size follows the key's length.

usage: verify_capture.py PCAP --gw-a IP --gw-b IP --net-a CIDR --net-b CIDR [--udp]
           --sa-ab SPI:ENCHEX:AUTHHEX --sa-ba SPI:ENCHEX:AUTHHEX [--min-esp N] [--expect-tcp]
           [--allow-ike] [--auth sha1|sha256]
"""
import argparse
import ipaddress
import sys
from collections import Counter

from scapy.all import ARP, ESP, ICMP, IP, TCP, UDP, Ether, Raw, rdpcap  # noqa: E402
from scapy.layers.inet import defragment
from scapy.layers.ipsec import SecurityAssociation


AUTH_ALGOS = {"sha1": "HMAC-SHA1-96", "sha256": "SHA2-256-128"}


def parse_sa(text, src, dst, auth_name="sha1"):
    spi, enc, auth = text.split(":")
    sa = SecurityAssociation(ESP, spi=int(spi, 0), crypt_algo="AES-CBC",
                             crypt_key=bytes.fromhex(enc), auth_algo=AUTH_ALGOS[auth_name],
                             auth_key=bytes.fromhex(auth),
                             tunnel_header=IP(src=src, dst=dst))
    return int(spi, 0), sa


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pcap")
    ap.add_argument("--gw-a", required=True)
    ap.add_argument("--gw-b", required=True)
    ap.add_argument("--net-a", required=True)
    ap.add_argument("--net-b", required=True)
    ap.add_argument("--sa-ab", required=True)
    ap.add_argument("--sa-ba", required=True)
    ap.add_argument("--udp", action="store_true")
    ap.add_argument("--min-esp", type=int, default=1)
    ap.add_argument("--expect-tcp", action="store_true")
    ap.add_argument("--allow-ike", action="store_true")
    ap.add_argument("--auth", choices=sorted(AUTH_ALGOS), default="sha1")
    a = ap.parse_args()

    net_a, net_b = ipaddress.ip_network(a.net_a), ipaddress.ip_network(a.net_b)
    spi_ab, sa_ab = parse_sa(a.sa_ab, a.gw_a, a.gw_b, a.auth)
    spi_ba, sa_ba = parse_sa(a.sa_ba, a.gw_b, a.gw_a, a.auth)
    # (outer src, outer dst) -> (spi, SA, inner src net, inner dst net)
    dirs = {(a.gw_a, a.gw_b): (spi_ab, sa_ab, net_a, net_b),
            (a.gw_b, a.gw_a): (spi_ba, sa_ba, net_b, net_a)}

    frames = rdpcap(a.pcap)
    arp = [p for p in frames if ARP in p]
    ip_pkts = [p for p in frames if IP in p]
    other = [p for p in frames if ARP not in p and IP not in p]
    errors = []
    for p in other:
        errors.append("non-IPv4/ARP frame on the public link: %s" % p.summary())
    whole = defragment([p[IP] for p in ip_pkts])
    n_frag = sum(1 for p in ip_pkts if p[IP].flags.MF or p[IP].frag)

    stats = Counter()
    for pkt in whole:
        ip = pkt[IP] if IP in pkt else IP(bytes(pkt))
        key = (ip.src, ip.dst)
        if key not in dirs:
            errors.append("packet not between the gateways: %s" % ip.summary())
            continue
        spi, sa, src_net, dst_net = dirs[key]
        if a.allow_ike and ip.proto == 17 and UDP in ip:
            sport, dport = ip[UDP].sport, ip[UDP].dport
            payload = bytes(ip[UDP].payload)
            if sport == 500 and dport == 500:
                stats["ike"] += 1
                continue
            if sport == 4500 and dport == 4500 and payload[:4] == b"\0\0\0\0":
                stats["ike"] += 1
                continue
            if sport == 4500 and dport == 4500 and payload == b"\xff":
                stats["nat keepalive"] += 1
                continue
        if a.udp:
            if ip.proto != 17 or UDP not in ip or ip[UDP].sport != 4500 or ip[UDP].dport != 4500:
                errors.append("not ESP-in-UDP 4500: %s" % ip.summary())
                continue
            payload = bytes(ip[UDP].payload)
            if len(payload) < 8 or payload[:4] == b"\0\0\0\0":
                errors.append("UDP 4500 without ESP (non-ESP marker/keepalive): %s" % ip.summary())
                continue
            esp_pkt = IP(bytes(IP(src=ip.src, dst=ip.dst, proto=50) / Raw(payload)))
        else:
            if ip.proto != 50:
                errors.append("not ESP (proto %d): %s" % (ip.proto, ip.summary()))
                continue
            esp_pkt = IP(bytes(ip))
        got_spi = esp_pkt[ESP].spi
        if got_spi != spi:
            errors.append("SPI 0x%x, expected 0x%x for %s -> %s" % (got_spi, spi, ip.src, ip.dst))
            continue
        try:
            inner = sa.decrypt(esp_pkt)  # verifies the ICV, raises on mismatch
        except Exception as e:  # noqa: BLE001 -- any failure is a test failure
            errors.append("ESP seq %d %s->%s does not verify/decrypt: %s"
                          % (esp_pkt[ESP].seq, ip.src, ip.dst, e))
            continue
        if IP not in inner:
            errors.append("decrypted payload is not IPv4: %r" % bytes(inner)[:32])
            continue
        isrc, idst = ipaddress.ip_address(inner[IP].src), ipaddress.ip_address(inner[IP].dst)
        if isrc not in src_net or idst not in dst_net:
            errors.append("inner %s -> %s outside %s -> %s" % (isrc, idst, src_net, dst_net))
            continue
        stats["esp"] += 1
        stats["esp %s->%s" % (ip.src, ip.dst)] += 1
        if ICMP in inner:
            stats["inner icmp"] += 1
        elif TCP in inner:
            stats["inner tcp"] += 1
        elif inner[IP].flags.MF or inner[IP].frag:
            stats["inner fragment"] += 1

    print("capture %s: %d frames (%d ARP, %d IPv4 of which %d outer fragments), %s"
          % (a.pcap, len(frames), len(arp), len(ip_pkts), n_frag,
             ", ".join("%s=%d" % kv for kv in sorted(stats.items()))))
    if stats["esp"] < a.min_esp:
        errors.append("only %d ESP packets, expected at least %d" % (stats["esp"], a.min_esp))
    for d in ("%s->%s" % (a.gw_a, a.gw_b), "%s->%s" % (a.gw_b, a.gw_a)):
        if stats["esp " + d] == 0:
            errors.append("no ESP packet %s" % d)
    if a.expect_tcp and stats["inner tcp"] == 0:
        errors.append("no TCP inside the tunnel")
    for e in errors[:20]:
        print("FAIL: " + e)
    if len(errors) > 20:
        print("... %d more" % (len(errors) - 20))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
