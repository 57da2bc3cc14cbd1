"""The pcap checker's self-test: Scapy plays the gateway.

gen, then writes what a correct gateway writes for those inputs (with a matching counters
report) and checks that pcap_check.check passes it; then checks that each of a list of single
faults (a lost/duplicated/reordered/altered packet, a delivered replay, a delivered bad inner
checksum, swapped reassembled packets, wrong counters, ...) is caught by the check meant for it.
Verifies the checker without the binary. Run through `pcap_check.py selftest`.
"""
import os

from scapy.compat import raw
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

import pcap_check as pc
from pcap_check import (GW_MAC_PROT, GW_MAC_UNPROT, GW_PUB, HOSTS, OUTER_TTL, PEER_MAC,
                        PEER_PUB, SPI_IN, SPI_OUT, check, corpus_inner, eth_hdr, gen, sa,
                        ttl_minus_one, write_pcap)
from pcap_corpus import bad_inner_checksum, esp_encrypt, ip_cksum


def simulate(d, exp):
    """What a correct gateway writes for the inputs gen() made, and its report."""
    udp = exp["udp"]
    s_out = sa(SPI_OUT, pc.KEYS_OUT, GW_PUB, PEER_PUB, udp)
    uo = []
    for i, w in enumerate(exp["out"]):
        outer = bytearray(esp_encrypt(s_out, bytes.fromhex(w["inner"]), i + 1, udp))
        outer[1] = w["tos"]
        outer[6:8] = (0x4000 if w["df"] else 0).to_bytes(2, "big")
        outer[8] = OUTER_TTL
        outer[10:12] = b"\0\0"
        outer[10:12] = ip_cksum(bytes(outer[:20])).to_bytes(2, "big")
        uo.append(eth_hdr(src=GW_MAC_UNPROT, dst=PEER_MAC) + bytes(outer))
    po = [eth_hdr(src=GW_MAC_PROT, dst=w["dst_mac"]) + bytes.fromhex(w["inner"])
          for w in exp["in"]]
    return uo, po


def make_report(exp, n_uo, n_po, unprot_in=None, **drop_overrides):
    """The exit report a correct gateway prints (Gateway::report() line formats)."""
    udp = exp["udp"]
    drops = dict(exp["drops"])
    drops.update(exp["malformed_detail"])
    sa_in_drops = dict(exp["sa_in_drops"])
    for k, v in drop_overrides.items():
        drops[k] = v
        if k in sa_in_drops:
            sa_in_drops[k] = v
    rep = ["=== ipsecgw counters ===",
           "port unprotected id 0 (net_pcap, 1 rx / 1 tx queues) 192.0.2.1 ipackets=%d "
           "opackets=%d ibytes=0" % (exp["unprot_in_frames"] if unprot_in is None else unprot_in,
                                     n_uo),
           "port protected id 1 (net_pcap, 1 rx / 1 tx queues) 10.1.0.1 ipackets=%d "
           "opackets=%d ibytes=0" % (exp["prot_in_frames"], n_po),
           "lcore 1 worker rx_packets=1 keepalives=%d" % exp["keepalives"],
           "total rx_packets=1 keepalives=%d " % exp["keepalives"] +
           " ".join("drop_%s=%d" % kv for kv in drops.items() if kv[1]),
           "sa in  0x%08x conn 1 peer 192.0.2.2%s packets=%d bytes=1 " % (
               SPI_IN, " udp" if udp else "", len(exp["in"])) +
           " ".join("drop_%s=%d" % kv for kv in sa_in_drops.items() if kv[1]),
           "sa out 0x%08x conn 1 peer 192.0.2.2%s packets=%d bytes=1"
           % (SPI_OUT, " udp" if udp else "", len(exp["out"]))]
    return "\n".join(rep) + "\n"


def write_outputs(d, uo, po):
    write_pcap(os.path.join(d, "unprot_out.pcap"), uo)
    write_pcap(os.path.join(d, "prot_out.pcap"), po)


def selftest(d, udp, cipher, auth):
    pc.configure(cipher, auth)
    exp = gen(d, udp)
    uo, po = simulate(d, exp)
    rep = make_report(exp, len(uo), len(po))

    def run(name, uo2, po2, rep2, want):
        """want: None = must pass; else a substring one of the errors must contain (the fault
        is caught by the check meant for it, not by a side effect)."""
        should_pass = want is None
        write_outputs(d, uo2, po2)
        errs, _ = check(d, rep2)
        ok = (not errs) if should_pass else any(want in e for e in errs)
        print("selftest %-4s %-45s %s%s" % ("udp" if udp else "esp", name,
                                             "ok" if ok else "FAILED",
                                             "" if should_pass or not errs else
                                             " (caught: %s)" % errs[0]))
        if not ok:
            for e in errs:
                print("   ", e)
        return ok

    def flip(f, off):
        b = bytearray(f)
        b[off] ^= 1
        return bytes(b)

    arp = raw(Ether(src=GW_MAC_UNPROT, dst="ff:ff:ff:ff:ff:ff") /
              ARP(psrc=GW_PUB, pdst=PEER_PUB))
    s_out = sa(SPI_OUT, pc.KEYS_OUT, GW_PUB, PEER_PUB, udp)

    def ttl_plus_one(pkt):
        b = bytearray(pkt)
        b[8] += 1
        b[10:12] = b"\0\0"
        b[10:12] = ip_cksum(bytes(b[:20])).to_bytes(2, "big")
        return bytes(b)

    # The first ESP packet again, its inner TTL not decremented (outer header as simulate()).
    w0 = exp["out"][0]
    assert w0["tos"] == 0 and not w0["df"]
    no_dec = eth_hdr(src=GW_MAC_UNPROT, dst=PEER_MAC) + \
        esp_encrypt(s_out, ttl_plus_one(bytes.fromhex(w0["inner"])), 1, udp)
    # The corpus's seq 13 (inner header checksum wrong) as a gateway that forwards it would.
    bad_ck = eth_hdr(src=GW_MAC_PROT, dst=HOSTS["10.1.0.10"]) + \
        ttl_minus_one(bad_inner_checksum(corpus_inner(13, 64)))
    cases = [
        ("correct gateway", uo, po, rep, None),
        ("correct gateway + ARP frames", [arp] + uo, po + [arp],
         make_report(exp, len(uo) + 1, len(po) + 1), None),
        ("lost ESP packet", uo[:-1], po, make_report(exp, len(uo) - 1, len(po)),
         "expected 14 ESP packets"),
        ("duplicated ESP packet", uo + uo[-1:], po, make_report(exp, len(uo) + 1, len(po)),
         "sequence number 14, expected 15"),
        ("swapped ESP packets (seq order)", [uo[1], uo[0]] + uo[2:], po, rep,
         "sequence number 2, expected 1"),
        ("ESP with a bad ICV", [flip(uo[0], len(uo[0]) - 1)] + uo[1:], po, rep,
         "Scapy cannot decrypt"),
        ("inner TTL not decremented", [no_dec] + uo[1:], po, rep, "(ttl 64, 28 bytes), expected"),
        ("outer TTL 65", [flip(uo[0], 22)] + uo[1:], po, rep, "outer TTL 65, expected 64"),
        ("ESP to the wrong MAC", [flip(uo[0], 5)] + uo[1:], po, rep, "dst MAC 02:00:00:00:02:03"),
        ("unmatched packet tunnelled",
         uo + [eth_hdr(src=GW_MAC_UNPROT, dst=PEER_MAC) + esp_encrypt(
             s_out, raw(IP(src="10.1.0.10", dst="10.3.0.5") / UDP()), len(uo) + 1, udp)],
         po, make_report(exp, len(uo) + 1, len(po)), "unexpected (decrypts to"),
        ("replayed packet delivered", uo, po + [po[2]], make_report(exp, len(uo), len(po) + 1),
         "a replayed packet"),
        ("bad-ICV packet delivered (seq 11 twice)", uo, po + [po[10]],
         make_report(exp, len(uo), len(po) + 1), "a replayed packet"),
        ("decrypted packet lost", uo, po[:-1], make_report(exp, len(uo), len(po) - 1),
         "expected %d decrypted" % len(po)),
        ("bad inner checksum delivered", uo, po[:11] + [bad_ck] + po[11:],
         make_report(exp, len(uo), len(po) + 1), "prot_out #12: "),
        ("reassembled packets swapped", uo, po[:-2] + [po[-1], po[-2]], rep,
         "prot_out #%d: " % (len(po) - 1)),
        ("report outside_window=0", uo, po, make_report(exp, len(uo), len(po), outside_window=0),
         "total drop_outside_window=0, expected 1"),
        ("report sa bad_padding=1", uo, po, make_report(exp, len(uo), len(po), bad_padding=1),
         "drop_bad_padding=1, expected 2"),
        ("report arp_unsolicited=0", uo, po,
         make_report(exp, len(uo), len(po), arp_unsolicited=0),
         "total drop_arp_unsolicited=0, expected 3"),
        ("decrypted packet altered", uo, po[:3] + [flip(po[3], 40)] + po[4:], rep,
         "prot_out #4: "),
        ("decrypted TTL not decremented", uo,
         [po[0][:14] + ttl_plus_one(po[0][14:])] + po[1:], rep, "prot_out #1: "),
        ("decrypted to the wrong MAC", uo, [flip(po[0], 5)] + po[1:], rep,
         "dst MAC 02:00:00:00:01:0b, expected 02:00:00:00:01:0a"),
        ("report replay=2", uo, po, make_report(exp, len(uo), len(po), replay=2),
         "total drop_replay=2, expected 1"),
        ("report bad_icv=0", uo, po, make_report(exp, len(uo), len(po), bad_icv=0),
         "total drop_bad_icv=0, expected 1"),
        ("report ring_full=1", uo, po, make_report(exp, len(uo), len(po), ring_full=1),
         "unexpected total drop_ring_full=1"),
        ("report without counters", uo, po, "", "no '=== ipsecgw counters ==='"),
        ("report: a frame not read", uo, po,
         make_report(exp, len(uo), len(po), unprot_in=exp["unprot_in_frames"] - 1),
         "port unprotected ipackets="),
    ]
    ok = all([run(*c) for c in cases])
    write_outputs(d, [], [])
    return ok
