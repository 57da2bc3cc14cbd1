#!/usr/bin/python3
"""pcap-driven gateway test: generates the input pcaps and checks the output ones with Scapy.

One suite per run: AES-128/192/256-CBC x HMAC-SHA1-96/HMAC-SHA-256-128 x plain ESP/ESP-in-UDP.

The gateway runs on two net_pcap ports (port 0 unprotected, port 1 protected, see
pcap_test.sh). Scapy (scapy.layers.ipsec, an implementation independent of ours) makes the ESP
packets the peer "sends" with the inbound SA's keys, and decrypts what the gateway sent with the
outbound SA's keys.

  pcap_check.py gen DIR --mode esp|udp [--cipher aes-128|aes-192|aes-256] [--auth sha1|sha256]
      writes DIR/config.yaml, DIR/prot_in.pcap, DIR/unprot_in.pcap and DIR/expect.json
  pcap_check.py check DIR --mode esp|udp --report LOG
      (the suite is the one gen wrote into DIR/expect.json) reads DIR/prot_out.pcap, DIR/unprot_out.pcap and the gateway's exit report in LOG
      (stdout of ipsecgw: "=== ipsecgw counters ===" then the Gateway::report() lines); exits
      0 when everything matches, 1 otherwise (each mismatch on its own line)
  pcap_check.py selftest DIR --mode esp|udp [--cipher ...] [--auth ...]
      gen, then plays the gateway with Scapy (what a correct gateway writes, with a matching
      report), checks that it passes, then checks that each of a list of single faults
      (a lost/duplicated/reordered/altered packet, a delivered replay, wrong counters, ...) is
      caught (pcap_selftest.py). Verifies the checker without the binary.

What a correct gateway does with the inputs (the checks):
  protected side in -> unprotected side out:
    every inner packet from the local subnet to the peer subnet leaves as exactly one ESP packet
    (IP proto 50, or UDP 4500->4500 with checksum 0 in udp mode; RFC 3948 §2.1), in input order,
    SPI = outbound SPI, sequence numbers 1..n (RFC 4303 §3.3.3), outer 192.0.2.1 -> 192.0.2.2,
    TTL 64, TOS copied from the inner header (RFC 4301 §5.1.2.1, RFC 6040 normal mode), DF
    copied (DfPolicy::kCopy), a valid header checksum, to the peer's MAC; Scapy verifies the ICV
    and decrypts it to the inner packet with its TTL decremented by one (the gateway routes the
    inner packet before tunnelling it) and the header checksum updated, nothing else changed.
    Packets that match no tunnel, malformed frames and a TTL 1 packet produce nothing.
  unprotected side in -> protected side out:
    every valid ESP packet (incl. one that arrives out of order inside the window, and one that
    reuses the sequence number of an earlier packet whose ICV was bad: a bad ICV must not move
    the window, RFC 4303 §3.4.3) leaves decrypted exactly once, in input order, with TTL - 1, to
    the inner destination's MAC. The replayed packet, the bad-ICV one, one with an unknown SPI,
    one whose inner addresses are outside the SA's selectors (RFC 4301 §5.2) and, in udp mode,
    a NAT-keepalive (RFC 3948 §2.3) produce nothing. Then the corpus of pcap_corpus.py: bad
    inner header checksum, bad padding (twice), next header not IPv4, truncated ESP (twice), ESP
    to another host's MAC, ESP in the other encapsulation than the SA's, a packet left of the
    window after one far ahead: nothing; the one far ahead and two packets sent as outer
    fragments (in order, reversed): decrypted, last.
    Unsolicited ARP replies on both sides change nothing (every frame still goes to the MAC
    the configuration gives).
  exit report: total drop_replay=1, drop_bad_icv=1, drop_no_sa=1, drop_selector_mismatch=1,
    drop_no_policy=<unmatched>, drop_ttl_exceeded=1, the corpus's (arp_unsolicited=3,
    bad_padding=2, ...), runt+bad_ip_header+not_ipv4+wrong_dst_mac+bad_length = <malformed>,
    no other drop reason; the inbound SA's own drop counters exactly; keepalives=1 in udp mode; SA packet counters; each port
    received every frame of its input pcap and sent every frame of its output pcap.
ARP frames in the outputs are ignored (the configuration has static neighbours).

Test keys only; nothing here is logged.
"""
import argparse
import json
import os
import re
import struct
import sys

from scapy.compat import raw
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.layers.l2 import Ether

from pcap_corpus import esp_encrypt, inbound_corpus, ip_cksum

GW_PUB, PEER_PUB = "192.0.2.1", "192.0.2.2"
GW_PRIV = "10.1.0.1"
LOCAL_NET, PEER_NET = "10.1.0.0/24", "10.2.0.0/24"
HOSTS = {"10.1.0.10": "02:00:00:00:01:0a", "10.1.0.11": "02:00:00:00:01:0b"}
PEER_MAC = "02:00:00:00:02:02"
# net_pcap's MACs: frames to the gateway must carry them (it drops others as wrong_dst_mac).
GW_MAC_UNPROT, GW_MAC_PROT = "02:70:63:61:70:00", "02:70:63:61:70:01"

SPI_IN, SPI_OUT = 0x2002, 0x1001
# The suites: cipher (config name -> key bytes) x integrity (config name -> Scapy's name, key
# bytes). configure() picks one; the keys are test patterns of the suite's lengths.
CIPHERS = {"aes-128": 16, "aes-192": 24, "aes-256": 32}
AUTHS = {"sha1": ("HMAC-SHA1-96", 20), "sha256": ("SHA2-256-128", 32)}
SUITE = {}
KEYS_IN = KEYS_OUT = None


def configure(cipher, auth):
    global KEYS_IN, KEYS_OUT
    SUITE.update(cipher=cipher, auth=auth)
    ne, na = CIPHERS[cipher], AUTHS[auth][1]
    KEYS_IN = (bytes(range(0x20, 0x20 + ne)).hex(), bytes(range(0x40, 0x40 + na)).hex())
    KEYS_OUT = (bytes(range(0x10, 0x10 + ne)).hex(), bytes(range(0x30, 0x30 + na)).hex())


configure("aes-128", "sha1")
SPI_UNKNOWN = 0x7777
OUTER_TTL = 64

CONFIG = """\
# Generated by tests/interop/pcap_check.py (test keys only).
vpnservice:
  name: pcap-test
  ports:
    unprotected: {{port: 0, address: {gw_pub}/24}}
    protected: {{port: 1, address: {gw_priv}/24}}
  neighbors:
    - {{ip: {peer_pub}, mac: "{peer_mac}"}}
{hosts}
  unmatched_traffic: drop

dataplane: {{idle_sleep_us: 100, rx_desc: 256, tx_desc: 256}}

ipsecpolicies:
  - name: esp-{cipher}-{auth}
    transform_protocol: esp
    encapsulation_mode: tunnel
    encryption_algorithm: {cipher}
    auth_algorithm: {auth}

ipsec_site_connections:
  - name: pcap-peer
    peer_address: {peer_pub}
    peer_cidrs: [{peer_net}]
    mtu: 1500
    ipsecpolicy: esp-{cipher}-{auth}
    manual_keys:
      inbound:  {{spi: {spi_in:#x}, encryption_key: {ein}, auth_key: {ain}}}
      outbound: {{spi: {spi_out:#x}, encryption_key: {eout}, auth_key: {aout}}}
      udp_encap: {udp}
      replay_window: 64
"""


def sa(spi, keys, src, dst, udp):
    return SecurityAssociation(
        ESP, spi=spi, crypt_algo="AES-CBC", crypt_key=bytes.fromhex(keys[0]),
        auth_algo=AUTHS[SUITE["auth"]][0], auth_key=bytes.fromhex(keys[1]),
        tunnel_header=IP(src=src, dst=dst),
        nat_t_header=UDP(sport=4500, dport=4500) if udp else None)


def write_pcap(path, frames_):
    """libpcap file, Ethernet link type, exact bytes (Scapy cannot build a runt frame)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, fr in enumerate(frames_):
            f.write(struct.pack("<IIII", 1, i, len(fr), len(fr)) + fr)


def read_pcap(path):
    """Frames of a libpcap file (micro- or nanosecond, either byte order; net_pcap writes
    nanosecond ones)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError("%s: %d bytes, not a pcap file" % (path, len(data)))
    for end in "<>":
        if struct.unpack(end + "I", data[:4])[0] in (0xA1B2C3D4, 0xA1B23C4D):
            break
    else:
        raise ValueError("%s: not a pcap file (magic %s)" % (path, data[:4].hex()))
    if struct.unpack(end + "I", data[20:24])[0] != 1:
        raise ValueError("%s: link type is not Ethernet" % path)
    out, off = [], 24
    while off + 16 <= len(data):
        _, _, incl, orig = struct.unpack(end + "IIII", data[off:off + 16])
        if incl != orig:
            raise ValueError("%s: frame %d truncated in the capture (%d of %d bytes)"
                             % (path, len(out) + 1, incl, orig))
        out.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    if off != len(data):
        raise ValueError("%s: %d trailing bytes" % (path, len(data) - off))
    return out


def ttl_minus_one(pkt):
    """The inner packet as a router forwards it: TTL - 1, header checksum recomputed."""
    b = bytearray(pkt)
    ihl = (b[0] & 0x0F) * 4
    b[8] -= 1
    b[10:12] = b"\0\0"
    b[10:12] = ip_cksum(bytes(b[:ihl])).to_bytes(2, "big")
    return bytes(b)


def eth_hdr(src, dst, type=0x0800):
    return raw(Ether(src=src, dst=dst, type=type))


def payload(n, seed):
    return bytes((seed + i) & 0xFF for i in range(n))


def inner_packets_out():
    """(description, inner IPv4 bytes, matches the tunnel) from the local hosts."""
    a, b = "10.1.0.10", "10.1.0.11"
    pk = []

    def add(desc, p, match=True):
        pk.append((desc, raw(p), match))

    add("icmp echo 0B", IP(src=a, dst="10.2.0.5", id=1) / ICMP(id=7, seq=1))
    add("icmp echo 56B", IP(src=a, dst="10.2.0.5", id=2) / ICMP(id=7, seq=2) / payload(56, 1))
    add("icmp echo 1000B DF tos 0xb8",
        IP(src=b, dst="10.2.0.6", id=3, flags="DF", tos=0xB8) / ICMP(id=8, seq=1) /
        payload(1000, 2))
    add("unmatched dst 10.3.0.5", IP(src=a, dst="10.3.0.5") / UDP(sport=1, dport=2) / b"x",
        False)
    for i, n in enumerate((1, 15, 16, 100, 512, 1371, 1372)):  # 1372: 1400-byte inner
        add("udp %dB" % n, IP(src=a if i % 2 else b, dst="10.2.0.%d" % (5 + i % 3), id=10 + i,
                               ttl=64 - i) / UDP(sport=1000 + i, dport=2000) / payload(n, i))
    add("tcp syn", IP(src=a, dst="10.2.0.7", id=20, flags="DF") /
        TCP(sport=40000, dport=80, flags="S", seq=1000, options=[("MSS", 1360)]))
    add("unmatched dst 198.51.100.7 (public)",
        IP(src=b, dst="198.51.100.7") / TCP(sport=1, dport=2, flags="S"), False)
    add("tcp 200B ECT(0)", IP(src=a, dst="10.2.0.7", id=21, tos=0x02) /
        TCP(sport=40000, dport=80, flags="PA", seq=1001, ack=5) / payload(200, 9))
    add("tcp 1300B", IP(src=b, dst="10.2.0.8", id=22) /
        TCP(sport=40001, dport=443, flags="A", seq=7, ack=9) / payload(1300, 3))
    add("unmatched src 10.1.1.1 (off subnet)",
        IP(src="10.1.1.1", dst="10.2.0.5") / ICMP(), False)
    add("icmp ttl 2 (still forwarded)", IP(src=a, dst="10.2.0.5", id=30, ttl=2) / ICMP(seq=3))
    return pk


# The reasons this gateway gives malformed_frames(), for the self-test's report.
MALFORMED_PROT_DETAIL = {"runt": 2, "bad_ip_header": 3, "not_ipv4": 1, "wrong_dst_mac": 1}


def malformed_frames():
    """(description, Ethernet frame bytes): each must be dropped as runt, bad_ip_header,
    not_ipv4 or wrong_dst_mac."""
    eth = raw(Ether(src=HOSTS["10.1.0.10"], dst=GW_MAC_PROT, type=0x0800))
    good = bytearray(raw(IP(src="10.1.0.10", dst="10.2.0.5") / UDP(sport=5, dport=6) /
                         b"malformed"))
    out = [("runt frame (10 bytes)", eth[:10])]
    v6 = raw(Ether(src=HOSTS["10.1.0.10"], dst=GW_MAC_PROT, type=0x86DD)) + bytes(40)
    out.append(("IPv6 ethertype", v6))
    bad_ck = bytearray(good)
    bad_ck[10] ^= 0xFF
    out.append(("bad IPv4 header checksum", eth + bytes(bad_ck)))
    v5 = bytearray(good)
    v5[0] = 0x55
    v5[10:12] = b"\0\0"
    v5[10:12] = ip_cksum(bytes(v5[:20])).to_bytes(2, "big")
    out.append(("IP version 5", eth + bytes(v5)))
    trunc = bytes(good[:24])  # total_length says more than the frame holds
    out.append(("truncated IPv4 (total_length > frame)", eth + trunc))
    ihl3 = bytearray(good)
    ihl3[0] = 0x43
    out.append(("IHL 3", eth + bytes(ihl3)))
    # Issue #11.4: a valid packet for another host on the segment (the port is promiscuous);
    # the gateway must not route it (wrong_dst_mac).
    other = raw(Ether(src=HOSTS["10.1.0.10"], dst="02:00:00:00:09:09", type=0x0800))
    out.append(("frame for another MAC", other + bytes(good)))
    return out


def inner_packets_in():
    """(seq, inner IPv4 bytes) the peer tunnels to us; seq order as on the wire."""
    pk = []
    for seq in range(1, 12):
        src = "10.2.0.%d" % (5 + seq % 3)
        dst = "10.1.0.10" if seq % 2 else "10.1.0.11"
        kind = seq % 3
        if kind == 0:
            p = IP(src=src, dst=dst, id=100 + seq) / ICMP(type=0, id=9, seq=seq) / \
                payload(8 * seq, seq)
        elif kind == 1:
            n = {1: 1, 4: 700, 7: 1372, 10: 300}[seq]  # 1372: a 1400-byte inner packet
            p = IP(src=src, dst=dst, id=100 + seq, ttl=63) / UDP(sport=53, dport=3000 + seq) / \
                payload(n, seq)
        else:
            p = IP(src=src, dst=dst, id=100 + seq, flags="DF") / \
                TCP(sport=443, dport=50000 + seq, flags="PA", seq=seq, ack=1) / \
                payload(120 * seq, seq)
        pk.append((seq, raw(p)))
    return pk


def corpus_inner(seq, size):
    """The inner packet of sequence number `seq` in the corpus (pcap_corpus.py)."""
    return raw(IP(src="10.2.0.%d" % (5 + seq % 3), dst="10.1.0.10" if seq % 2 else "10.1.0.11",
                  id=300 + seq) / UDP(sport=53, dport=4000 + seq) / payload(size, seq))


def eth_unprot(outer):
    return raw(Ether(src=PEER_MAC, dst=GW_MAC_UNPROT, type=0x0800)) + outer


def gen(d, udp):
    cfg = CONFIG.format(
        gw_pub=GW_PUB, gw_priv=GW_PRIV, peer_pub=PEER_PUB, peer_mac=PEER_MAC,
        hosts="\n".join('    - {ip: %s, mac: "%s"}' % (ip, m) for ip, m in HOSTS.items()),
        peer_net=PEER_NET, spi_in=SPI_IN, spi_out=SPI_OUT, ein=KEYS_IN[0], ain=KEYS_IN[1],
        eout=KEYS_OUT[0], aout=KEYS_OUT[1], udp="true" if udp else "false", **SUITE)
    # Owner-only (0600): it holds keys, and ipsecgw refuses group/other access.
    path = os.path.join(d, "config.yaml")
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(cfg)

    # The corpus of malformed and unusual packets from the peer (pcap_corpus.py).
    s_in = sa(SPI_IN, KEYS_IN, PEER_PUB, GW_PUB, udp)
    corpus = inbound_corpus(s_in, sa(SPI_IN, KEYS_IN, PEER_PUB, GW_PUB, not udp), corpus_inner,
                            udp, GW_MAC_UNPROT, PEER_MAC, GW_PUB, PEER_PUB, GW_MAC_PROT,
                            "10.1.0.10")

    # Protected side input, after an ARP reply nobody asked for.
    prot_in, expect_out, unmatched = list(corpus["frames_prot"]), [], 0
    inner = inner_packets_out()
    mal = malformed_frames()
    ttl1 = raw(IP(src="10.1.0.10", dst="10.2.0.5", ttl=1) / ICMP(seq=99))
    # Interleave: malformed frames and the TTL 1 packet between the good ones.
    extra = [f for _, f in mal] + [None]
    for i, (desc, p, match) in enumerate(inner):
        prot_in.append(eth_hdr(HOSTS.get(IP(p).src, "02:00:00:00:01:99"), GW_MAC_PROT) + p)
        if match:
            expect_out.append({"desc": desc, "inner": ttl_minus_one(p).hex(),
                               "tos": p[1], "df": bool(p[6] & 0x40)})
        else:
            unmatched += 1
        if i < len(extra):
            prot_in.append(extra[i] if extra[i] is not None else
                           eth_hdr(src=HOSTS["10.1.0.10"], dst=GW_MAC_PROT) + ttl1)

    # Unprotected side input: ARP replies nobody asked for, then the peer's ESP packets.
    pkts = dict(inner_packets_in())
    enc = {seq: esp_encrypt(s_in, p, seq, udp) for seq, p in pkts.items() if seq != 11}
    n_arp = corpus["unprot_arp"]
    unprot_in, expect_in = list(corpus["frames_unprot"][:n_arp]), []
    for seq in list(range(1, 9)) + [10, 9]:
        unprot_in.append(eth_unprot(enc[seq]))
        expect_in.append({"desc": "seq %d" % seq, "inner": ttl_minus_one(pkts[seq]).hex(),
                          "dst_mac": HOSTS[IP(pkts[seq]).dst]})
    unprot_in.append(eth_unprot(enc[3]))  # replay of seq 3 (RFC 4303 §3.4.3)
    bad = bytearray(esp_encrypt(s_in, pkts[11], 11, udp))
    bad[-1] ^= 0x01  # ICV
    unprot_in.append(eth_unprot(bytes(bad)))
    unprot_in.append(eth_unprot(esp_encrypt(s_in, pkts[11], 11, udp)))  # seq 11 again, valid
    expect_in.append({"desc": "seq 11 (after a bad-ICV seq 11)",
                      "inner": ttl_minus_one(pkts[11]).hex(),
                      "dst_mac": HOSTS[IP(pkts[11]).dst]})
    s_unknown = sa(SPI_UNKNOWN, KEYS_IN, PEER_PUB, GW_PUB, udp)
    unprot_in.append(eth_unprot(esp_encrypt(s_unknown, pkts[1], 12, udp)))
    off_sel = raw(IP(src="10.9.9.9", dst="10.1.0.10") / UDP(sport=1, dport=2) / b"selector")
    unprot_in.append(eth_unprot(esp_encrypt(s_in, off_sel, 12, udp)))
    unprot_in.extend(corpus["frames_unprot"][n_arp:])
    for seq, p in corpus["delivered"]:
        expect_in.append({"desc": "seq %d" % seq + (" (outer fragments)" if seq > 200 else ""),
                          "inner": ttl_minus_one(p).hex(), "dst_mac": HOSTS[IP(p).dst]})
    if udp:
        ka = raw(IP(src=PEER_PUB, dst=GW_PUB) / UDP(sport=4500, dport=4500) / b"\xff")
        unprot_in.append(eth_unprot(ka))

    write_pcap(os.path.join(d, "prot_in.pcap"), prot_in)
    write_pcap(os.path.join(d, "unprot_in.pcap"), unprot_in)
    drops = {"replay": 1, "bad_icv": 1, "no_sa": 1, "selector_mismatch": 1,
             "no_policy": unmatched, "ttl_exceeded": 1}
    drops.update(corpus["drops"])
    sa_in_drops = {"replay": 1, "bad_icv": 1, "selector_mismatch": 1}
    sa_in_drops.update(corpus["sa_in_drops"])
    detail = dict(MALFORMED_PROT_DETAIL)
    for r, n in corpus["malformed_detail"].items():
        detail[r] = detail.get(r, 0) + n
    expect = {
        "udp": udp, "suite": dict(SUITE), "out": expect_out, "in": expect_in,
        "prot_in_frames": len(prot_in), "unprot_in_frames": len(unprot_in),
        "drops": drops, "sa_in_drops": sa_in_drops,
        "malformed": len(mal) + corpus["malformed"],
        "malformed_reasons": ["runt", "bad_ip_header", "not_ipv4", "wrong_dst_mac",
                              "bad_length"],
        "malformed_detail": detail,  # what this gateway counts (the check takes any mix)
        "keepalives": 1 if udp else 0,
    }
    with open(os.path.join(d, "expect.json"), "w") as f:
        json.dump(expect, f, indent=1)
    return expect


# ---- checking --------------------------------------------------------------------------------

def frames(path):
    return read_pcap(path) if os.path.exists(path) else None


def is_arp(f):
    return len(f) >= 14 and f[12:14] == b"\x08\x06"


def mac(b):
    return ":".join("%02x" % x for x in b)


def check_unprot_out(exp, fr, errs):
    s_out = sa(SPI_OUT, KEYS_OUT, GW_PUB, PEER_PUB, exp["udp"])
    esp = [f for f in fr if not is_arp(f)]
    src_macs = set()
    if len(esp) != len(exp["out"]):
        errs.append("unprot_out: %d non-ARP frames, expected %d ESP packets (one per matching "
                    "inner packet)" % (len(esp), len(exp["out"])))
    for i, f in enumerate(esp):
        where = "unprot_out ESP #%d" % (i + 1)
        want = exp["out"][i] if i < len(exp["out"]) else None
        if len(f) < 34 or f[12:14] != b"\x08\x00":
            errs.append("%s: not Ethernet/IPv4: %s" % (where, f[:40].hex()))
            continue
        if mac(f[0:6]) != PEER_MAC:
            errs.append("%s: dst MAC %s, expected the peer's %s" % (where, mac(f[0:6]), PEER_MAC))
        src_macs.add(mac(f[6:12]))
        ip = f[14:]
        ihl = (ip[0] & 0x0F) * 4
        tot = int.from_bytes(ip[2:4], "big")
        if ip[0] != 0x45 or tot != len(ip):
            errs.append("%s: outer IPv4 version/IHL %#x total_length %d, frame holds %d"
                        % (where, ip[0], tot, len(ip)))
            continue
        if ip_cksum(ip[:ihl]) != 0:
            errs.append("%s: bad outer header checksum" % where)
        if ip[12:16] != bytes(map(int, GW_PUB.split("."))) or \
                ip[16:20] != bytes(map(int, PEER_PUB.split("."))):
            errs.append("%s: outer %s -> %s" % (where, IP(ip).src, IP(ip).dst))
        if ip[8] != OUTER_TTL:
            errs.append("%s: outer TTL %d, expected %d" % (where, ip[8], OUTER_TTL))
        frag = int.from_bytes(ip[6:8], "big")
        if frag & 0x3FFF:
            errs.append("%s: outer packet is a fragment (%#x)" % (where, frag))
        if exp["udp"]:
            if ip[9] != 17:
                errs.append("%s: outer protocol %d, expected UDP" % (where, ip[9]))
                continue
            u = ip[ihl:ihl + 8]
            sp, dp, ul, uc = struct.unpack("!HHHH", u)
            if (sp, dp, ul, uc) != (4500, 4500, tot - ihl, 0):
                errs.append("%s: UDP %d->%d len %d cksum %#x, expected 4500->4500 len %d cksum 0"
                            % (where, sp, dp, ul, uc, tot - ihl))
            e = ip[ihl + 8:]
        else:
            if ip[9] != 50:
                errs.append("%s: outer protocol %d, expected ESP (50)" % (where, ip[9]))
                continue
            e = ip[ihl:]
        spi, seq = struct.unpack("!II", e[:8])
        if spi != SPI_OUT:
            errs.append("%s: SPI %#x, expected %#x" % (where, spi, SPI_OUT))
        if seq != i + 1:
            errs.append("%s: sequence number %d, expected %d" % (where, seq, i + 1))
        try:
            dec = raw(s_out.decrypt(IP(ip)))
        except Exception as ex:  # noqa: BLE001 - ICV failure or bad padding
            errs.append("%s: Scapy cannot decrypt/verify it: %s: %s"
                        % (where, type(ex).__name__, ex))
            continue
        if want is None:
            errs.append("%s: unexpected (decrypts to %s)" % (where, IP(dec).summary()))
            continue
        if dec != bytes.fromhex(want["inner"]):
            exp_ip = IP(bytes.fromhex(want["inner"]))
            errs.append("%s: decrypts to %s (ttl %d, %d bytes), expected %s [%s] (ttl %d, "
                        "%d bytes)" % (where, IP(dec).summary(), dec[8], len(dec),
                                       exp_ip.summary(), want["desc"], exp_ip.ttl,
                                       len(exp_ip)))
            continue
        if ip[1] != want["tos"]:
            errs.append("%s: outer TOS %#x, inner %#x: not copied" % (where, ip[1], want["tos"]))
        if bool(frag & 0x4000) != want["df"]:
            errs.append("%s: outer DF %d, inner DF %d: not copied"
                        % (where, bool(frag & 0x4000), want["df"]))
    if len(src_macs) > 1:
        errs.append("unprot_out: several source MACs %s" % sorted(src_macs))
    return len(esp)


def check_prot_out(exp, fr, errs):
    out = [f for f in fr if not is_arp(f)]
    if len(out) != len(exp["in"]):
        errs.append("prot_out: %d non-ARP frames, expected %d decrypted packets"
                    % (len(out), len(exp["in"])))
    src_macs = set()
    wanted = [bytes.fromhex(w["inner"]) for w in exp["in"]]
    for i, f in enumerate(out):
        where = "prot_out #%d" % (i + 1)
        pkt = f[14:]
        if len(f) < 14 or f[12:14] != b"\x08\x00":
            errs.append("%s: not Ethernet/IPv4: %s" % (where, f[:40].hex()))
            continue
        src_macs.add(mac(f[6:12]))
        if i >= len(exp["in"]):
            what = "a replayed" if pkt in wanted else "an unexpected"
            errs.append("%s: %s packet %s" % (where, what, IP(pkt).summary()))
            continue
        want = exp["in"][i]
        if pkt != wanted[i]:
            dup = " (it is an earlier packet again: replay delivered?)" if pkt in wanted[:i] \
                else ""
            errs.append("%s: %s (ttl %d, %d bytes), expected %s [%s] (ttl %d)%s"
                        % (where, IP(pkt).summary(), pkt[8] if len(pkt) > 8 else -1, len(pkt),
                           IP(wanted[i]).summary(), want["desc"], wanted[i][8], dup))
        if mac(f[0:6]) != want["dst_mac"]:
            errs.append("%s: dst MAC %s, expected %s" % (where, mac(f[0:6]), want["dst_mac"]))
    if len(src_macs) > 1:
        errs.append("prot_out: several source MACs %s" % sorted(src_macs))
    return len(out)


def parse_report(text):
    """{'total': {name: int}, 'ports': {side: {...}}, 'sa': {(dir, spi): {...}}} from the
    lines after '=== ipsecgw counters ==='."""
    if "=== ipsecgw counters ===" not in text:
        return None
    text = text.split("=== ipsecgw counters ===", 1)[1]
    rep = {"total": None, "ports": {}, "sa": {}}
    kv = re.compile(r"(\w+)=(\d+)")
    for line in text.splitlines():
        vals = {k: int(v) for k, v in kv.findall(line)}
        if line.startswith("total "):
            rep["total"] = vals
        elif line.startswith("port unprotected "):
            rep["ports"]["unprotected"] = vals
        elif line.startswith("port protected "):
            rep["ports"]["protected"] = vals
        elif line.startswith("sa "):
            m = re.match(r"sa (in|out)\s+(0x[0-9a-f]+)", line)
            if m:
                rep["sa"][(m.group(1), int(m.group(2), 16))] = vals
    return rep


def check_report(exp, text, n_prot_out, n_unprot_out, errs):
    rep = parse_report(text)
    if rep is None or rep["total"] is None:
        errs.append("report: no '=== ipsecgw counters ===' section with a 'total' line")
        return
    t = rep["total"]
    drops = {k[len("drop_"):]: v for k, v in t.items() if k.startswith("drop_")}
    for reason, n in exp["drops"].items():
        if drops.get(reason, 0) != n:
            errs.append("report: total drop_%s=%d, expected %d"
                        % (reason, drops.get(reason, 0), n))
    mal = sum(drops.get(r, 0) for r in exp["malformed_reasons"])
    if mal != exp["malformed"]:
        errs.append("report: total drops of malformed_reasons=%d, expected %d "
                    "(the malformed frames)" % (mal, exp["malformed"]))
    known = set(exp["drops"]) | set(exp["malformed_reasons"])
    for reason, n in drops.items():
        if reason not in known and n:
            errs.append("report: unexpected total drop_%s=%d" % (reason, n))
    if t.get("keepalives", 0) != exp["keepalives"]:
        errs.append("report: keepalives=%d, expected %d" % (t.get("keepalives", 0),
                                                            exp["keepalives"]))
    for key, n in ((("in", SPI_IN), len(exp["in"])), (("out", SPI_OUT), len(exp["out"]))):
        row = rep["sa"].get(key)
        if row is None:
            errs.append("report: no 'sa %s 0x%08x' line" % key)
        elif row.get("packets") != n:
            errs.append("report: sa %s 0x%08x packets=%s, expected %d"
                        % (key[0], key[1], row.get("packets"), n))
    sa_in = rep["sa"].get(("in", SPI_IN), {})
    want_sa = exp["sa_in_drops"]
    for r in sorted(set(want_sa) | {k[len("drop_"):] for k in sa_in if k.startswith("drop_")}):
        if sa_in.get("drop_" + r, 0) != want_sa.get(r, 0):
            errs.append("report: sa in 0x%08x drop_%s=%d, expected %d"
                        % (SPI_IN, r, sa_in.get("drop_" + r, 0), want_sa.get(r, 0)))
    for side, nin, nout in (("unprotected", exp["unprot_in_frames"], n_unprot_out),
                            ("protected", exp["prot_in_frames"], n_prot_out)):
        p = rep["ports"].get(side)
        if p is None:
            errs.append("report: no 'port %s' line" % side)
            continue
        if p.get("ipackets") != nin:
            errs.append("report: port %s ipackets=%s, the input pcap has %d frames"
                        % (side, p.get("ipackets"), nin))
        if p.get("opackets") != nout:
            errs.append("report: port %s opackets=%s, the output pcap has %d frames"
                        % (side, p.get("opackets"), nout))


def check(d, report_text):
    with open(os.path.join(d, "expect.json")) as f:
        exp = json.load(f)
    configure(**exp["suite"])
    errs = []
    uo, po = frames(os.path.join(d, "unprot_out.pcap")), frames(os.path.join(d, "prot_out.pcap"))
    if uo is None or po is None:
        errs.append("missing output pcap(s): unprot_out %s, prot_out %s"
                    % tuple("ok" if x is not None else "missing" for x in (uo, po)))
        return errs, {}
    n_esp = check_unprot_out(exp, uo, errs)
    n_dec = check_prot_out(exp, po, errs)
    check_report(exp, report_text, len(po), len(uo), errs)
    info = {"esp_out": n_esp, "decrypted_in": n_dec, "arp_unprot": sum(map(is_arp, uo)),
            "arp_prot": sum(map(is_arp, po))}
    return errs, info


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd", choices=["gen", "check", "selftest"])
    ap.add_argument("dir")
    ap.add_argument("--mode", choices=["esp", "udp"], required=True)
    ap.add_argument("--cipher", choices=sorted(CIPHERS), default="aes-128",
                    help="gen, selftest (check takes the suite from expect.json)")
    ap.add_argument("--auth", choices=sorted(AUTHS), default="sha1")
    ap.add_argument("--report", help="ipsecgw's stdout (check)")
    a = ap.parse_args()
    udp = a.mode == "udp"
    configure(a.cipher, a.auth)
    if a.cmd == "gen":
        e = gen(a.dir, udp)
        print("generated: %d protected-side frames (%d to tunnel), %d unprotected-side frames "
              "(%d valid ESP)" % (e["prot_in_frames"], len(e["out"]), e["unprot_in_frames"],
                                  len(e["in"])))
        return 0
    if a.cmd == "selftest":
        import pcap_selftest  # it imports this file as a module, and configures that one
        return 0 if pcap_selftest.selftest(a.dir, udp, a.cipher, a.auth) else 1
    text = open(a.report, errors="replace").read() if a.report else ""
    errs, info = check(a.dir, text)
    with open(os.path.join(a.dir, "expect.json")) as f:
        exp = json.load(f)
    if errs:
        for e in errs:
            print("FAIL:", e)
        return 1
    print("pcap check %s %s/%s: OK: %d ESP packets out (seq 1..%d, Scapy-decrypted to the "
          "inner packets), %d decrypted packets in (outer fragments in order and reversed "
          "incl.); replay, outside window, bad ICV, padding, next header, inner checksum, "
          "truncated ESP, encapsulation mismatch, unknown SPI, selector mismatch, unsolicited "
          "ARP, unmatched and malformed frames dropped and counted (ARP frames ignored: %d/%d)"
          % (a.mode, exp["suite"]["cipher"], exp["suite"]["auth"], info["esp_out"],
             len(exp["out"]), info["decrypted_in"], info["arp_unprot"], info["arp_prot"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
