"""The pcap test's corpus of malformed and unusual packets from the peer's side, and the ESP
and IPv4 byte helpers it shares with pcap_check.py.

Every ESP packet here is made by Scapy (scapy.layers.ipsec) with the inbound SA's keys; the
faults are put in with Scapy's own ESP code (its padding step replaced for one packet) or by
editing bytes, so that a packet is wrong in exactly one way:

  after decryption (valid ICV): inner IPv4 header checksum wrong (RFC 1812 §5.2.2), padding
    bytes not 1, 2, 3, ... and a pad length longer than the payload (RFC 4303 §2.4), next
    header not IPv4 (tunnel mode);
  before it: ESP shorter than its header, IV and ICV; ciphertext not whole cipher blocks;
  framing: a valid ESP packet to another host's MAC (the port is promiscuous); one in the other
    encapsulation than the SA's (ESP-in-UDP for a plain-ESP SA or the reverse);
  ARP: replies nobody asked for, one claiming the peer's address, one another address;
  window (RFC 4303 §3.4.3): a valid packet far ahead moves the window, an older one is then
    left of it;
  outer fragments (RFC 791) of a valid packet, in order and in reverse order: reassembled and
    delivered, in plain ESP and in ESP-in-UDP (RFC 3948) alike.
"""
import struct

from scapy.compat import raw
from scapy.layers.inet import IP
from scapy.layers.l2 import ARP, Ether

ATTACKER_MAC = "02:00:00:00:0e:0e"


def ip_cksum(hdr):
    if len(hdr) % 2:
        hdr += b"\0"
    s = sum(struct.unpack("!%dH" % (len(hdr) // 2), hdr))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def esp_encrypt(s, inner, seq, udp, trailer=None):
    """Outer IPv4 packet bytes (tests/scapy/esp_ref.py logic). `trailer(esp)`, if given, edits
    Scapy's _ESPPlain after its padding step (padding, padlen, nh) for this one packet."""
    algo = s.crypt_algo
    if trailer is not None:
        pad = algo.pad

        def bad_pad(esp):
            esp = pad(esp)
            trailer(esp)
            return esp
        algo.pad = bad_pad  # an instance attribute on Scapy's shared algorithm object
    try:
        out = bytearray(raw(s.encrypt(IP(inner), seq_num=seq)))
    finally:
        if trailer is not None:
            del algo.pad
    if udp:
        # Scapy 2.5 writes UDP length 8 for the NAT-T header: set the real one (RFC 768);
        # checksum zero (RFC 3948 §3.1.2).
        ihl = (out[0] & 0x0F) * 4
        out[ihl + 4:ihl + 6] = (len(out) - ihl).to_bytes(2, "big")
        out[ihl + 6:ihl + 8] = b"\0\0"
    return bytes(out)


def set_lengths(outer, udp):
    """`outer` with its IPv4 total length (and UDP length) set to its size, checksum redone."""
    b = bytearray(outer)
    ihl = (b[0] & 0x0F) * 4
    b[2:4] = len(b).to_bytes(2, "big")
    if udp:
        b[ihl + 4:ihl + 6] = (len(b) - ihl).to_bytes(2, "big")
    b[10:12] = b"\0\0"
    b[10:12] = ip_cksum(bytes(b[:ihl])).to_bytes(2, "big")
    return bytes(b)


def fragments(outer, cut):
    """The two RFC 791 fragments of `outer` (20-byte header): `cut` payload bytes (a multiple
    of 8) with MF set, then the rest at offset cut / 8."""
    assert cut % 8 == 0 and (outer[0] & 0x0F) == 5
    hdr, body = bytearray(outer[:20]), outer[20:]
    out = []
    for part, off, mf in ((body[:cut], 0, 0x2000), (body[cut:], cut // 8, 0)):
        h = bytearray(hdr)
        h[2:4] = (20 + len(part)).to_bytes(2, "big")
        h[6:8] = (mf | off).to_bytes(2, "big")
        h[10:12] = b"\0\0"
        h[10:12] = ip_cksum(bytes(h)).to_bytes(2, "big")
        out.append(bytes(h) + part)
    return out


def arp_reply(dst_mac, claimed_ip, target_ip):
    """An ARP reply nobody asked for: `claimed_ip` is at the attacker's MAC."""
    return raw(Ether(src=ATTACKER_MAC, dst=dst_mac) /
               ARP(op=2, hwsrc=ATTACKER_MAC, psrc=claimed_ip, hwdst=dst_mac, pdst=target_ip))


def bad_inner_checksum(inner):
    b = bytearray(inner)
    b[10] ^= 0x5A
    return bytes(b)


def _wrong_padding(esp):
    # Whole blocks more padding, one byte of it not what RFC 4303 §2.4 says (1, 2, 3, ...).
    n = esp.padlen + 16
    pad = bytearray(range(1, n + 1))
    pad[n // 2] ^= 0x80
    esp.padding, esp.padlen = bytes(pad), n


def _huge_pad_length(esp):
    esp.padlen = 255  # more than the payload holds; the padding bytes stay as they were


def _next_header_ipv6(esp):
    esp.nh = 41


def inbound_corpus(s_in, s_in_other_encap, inner_for, udp, gw_mac, peer_mac, gw_pub, peer_pub,
                   gw_prot_mac, host_ip):
    """The corpus on the unprotected side, after the scenario's other packets (sequence numbers
    from 13 on; 1..12 are used before). Returns a dict:
      frames_unprot: Ethernet frames for unprot_in, in order (after the scenario's)
      frames_prot:   Ethernet frames for prot_in (the protected side's unsolicited ARP reply)
      delivered:     [(seq, inner)] the gateway must decrypt and forward, in this order
      drops:         total drop counters these frames add, by reason (exact)
      sa_in_drops:   the inbound SA's drop counters they add (exact)
      malformed:     how many are malformed frames counted among runt/bad_length/wrong_dst_mac
      unprot_arp:    ARP frames among frames_unprot (the front of the list)
    `s_in_other_encap` is the inbound SA with the other encapsulation (same SPI and keys);
    `inner_for(seq, size)` is the inner packet of a sequence number."""
    def eth(outer, dst=gw_mac):
        return raw(Ether(src=peer_mac, dst=dst, type=0x0800)) + outer

    def enc(seq, inner, trailer=None):
        return esp_encrypt(s_in, inner, seq, udp, trailer)

    arp = [arp_reply(gw_mac, peer_pub, gw_pub), arp_reply(gw_mac, "192.0.2.77", gw_pub)]
    fr = list(arp)
    fr.append(eth(enc(13, bad_inner_checksum(inner_for(13, 64)))))
    fr.append(eth(enc(14, inner_for(14, 100), _wrong_padding)))
    fr.append(eth(enc(15, inner_for(15, 60), _huge_pad_length)))
    fr.append(eth(enc(16, inner_for(16, 80), _next_header_ipv6)))
    # Truncated: the ESP header and 4 bytes (less than IV + ICV); whole packet, 4 bytes short
    # of its last cipher block. IPv4 (and UDP) lengths match what is there.
    full17 = enc(17, inner_for(17, 64))
    esp_off = 20 + (8 if udp else 0)
    fr.append(eth(set_lengths(full17[:esp_off + 12], udp)))
    fr.append(eth(set_lengths(enc(18, inner_for(18, 64))[:-4], udp)))
    fr.append(eth(enc(19, inner_for(19, 64)), dst="02:00:00:00:09:09"))
    fr.append(eth(esp_encrypt(s_in_other_encap, inner_for(21, 64), 21, not udp)))
    delivered = [(20, inner_for(20, 200)), (200, inner_for(200, 120))]
    fr.append(eth(enc(20, delivered[0][1])))
    fr.append(eth(enc(200, delivered[1][1])))
    fr.append(eth(enc(100, inner_for(100, 64))))  # 100 behind the highest: outside the window
    for seq, reverse in ((201, False), (202, True)):
        inner = inner_for(seq, 900)
        frags = fragments(enc(seq, inner), 512)
        fr.extend(eth(f) for f in (reversed(frags) if reverse else frags))
        delivered.append((seq, inner))
    sa_in = {"bad_inner_checksum": 1, "bad_padding": 2, "bad_next_header": 1, "runt": 1,
             "bad_length": 1, "outside_window": 1, "encap_mismatch": 1}
    return {
        "frames_unprot": fr,
        "frames_prot": [arp_reply(gw_prot_mac, host_ip, "10.1.0.1")],
        "delivered": delivered,
        "drops": {"arp_unsolicited": 3, "bad_inner_checksum": 1, "bad_padding": 2,
                  "bad_next_header": 1, "outside_window": 1, "encap_mismatch": 1},
        "sa_in_drops": sa_in,
        "malformed": 3,  # the two truncated packets and the one to another MAC
        "malformed_detail": {"runt": 1, "bad_length": 1, "wrong_dst_mac": 1},
        "unprot_arp": len(arp),
    }
