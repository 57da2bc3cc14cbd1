#!/usr/bin/python3
"""Synthetic traffic and configurations for scripts/bench-gateway, and the check of what a
gateway sent.

  pcaps.py gen DIR COMBO ENCAP SIZE...
        write DIR/out-SIZE.pcap (inner packets; out-SIZE-mac01.pcap the same to the second
        net_pcap port's MAC) and DIR/in-COMBO-ENCAP-SIZE.pcap (ESP)
  pcaps.py config DIR COMBO ENCAP
        write DIR/ipsecgw-COMBO-ENCAP.yaml (mode 0600) and DIR/secgw-COMBO-ENCAP.cfg
  pcaps.py check DIR COMBO ENCAP DIRECTION SIZE OUTPUT.pcap [OUTPUT.pcap ...]
        decode a capture of the gateway's output port (one file per TX queue): outbound,
        every packet must be ESP (SPI 0x1001; ENCAP udp: in UDP 4500 -> 4500) from 192.0.2.1 to
        192.0.2.2 that verifies and decrypts (Scapy, the gateway's keys) to one of the inner
        packets that were sent; inbound, every packet must be one of the inner packets of the
        ESP input, in the clear. Prints one JSON line; exit 0 if every packet checks and as many
        came out as were sent.

COMBO: aes128-sha1 (AES-128-CBC + HMAC-SHA1-96) or aes256-sha256 (AES-256-CBC +
HMAC-SHA256-128). ENCAP: esp (plain ESP, IP protocol 50) or udp (ESP in UDP, NAT-T port 4500
both ways, RFC 3948).

Topology (the one of examples/gw-a-static.yaml, gateway "A"):
  port 0 unprotected 192.0.2.1/24, peer gateway 192.0.2.2 (MAC PEER_MAC)
  port 1 protected   10.1.0.1/24,  host 10.1.0.2 (MAC HOST_MAC), peer subnet 10.2.0.0/24
Outbound: host 10.1.0.2 -> 10.2.0.2, inner IPv4/UDP of SIZE bytes (IP total length, as in
docs/performance.md), sent to port 1. Inbound: ESP (SPI 0x2002) 192.0.2.2 -> 192.0.2.1
carrying inner 10.2.0.2 -> 10.1.0.2 of SIZE bytes, sent to port 0.
"""
import json
import os
import sys

from scapy.all import IP, UDP, Ether, Raw, rdpcap, wrpcap  # noqa: E402
from scapy.layers.ipsec import ESP, SecurityAssociation

SPI_OUT, SPI_IN = 0x1001, 0x2002
GW_PUB, PEER_PUB = "192.0.2.1", "192.0.2.2"
HOST_A, HOST_B = "10.1.0.2", "10.2.0.2"
PEER_MAC = "02:00:00:00:00:02"   # the peer gateway, next hop of ESP out of port 0
HOST_MAC = "02:00:00:00:00:0a"   # host 10.1.0.2, next hop of decrypted packets out of port 1
# The input port's MAC: DPDK 22.11's net_pcap gives its first port 02:70:63:61:70:00 ("pcap"),
# the next :01 and so on; in the benchmark runs the input port is the only net_pcap port. In
# the outbound check runs the output port (port 0, the first --vdev) is a net_pcap too and the
# input port gets :01; ipsecgw drops frames for another MAC (drop reason wrong_dst_mac), so
# those runs get out-SIZE-mac01.pcap, the same packets to :01.
PORT_MAC = "02:70:63:61:70:00"
PORT_MAC_2ND = "02:70:63:61:70:01"
N_PKTS = 1024          # distinct packets per pcap (the pcap is replayed forever)
NATT_PORT = 4500

# COMBO -> (key bytes, Scapy name, ipsecgw name, ipsec-secgw name) for cipher and integrity.
COMBOS = {
    "aes128-sha1": ((16, "AES-CBC", "aes-128", "aes-128-cbc"),
                    (20, "HMAC-SHA1-96", "sha1", "sha1-hmac")),
    "aes256-sha256": ((32, "AES-CBC", "aes-256", "aes-256-cbc"),
                      (32, "SHA2-256-128", "sha256", "sha256-hmac")),
}
ENCAPS = ("esp", "udp")


def keys(combo):
    """Example keys, test only: bytes 0x10.. (encryption) and 0x30.. (integrity) outbound,
    0x20.. and 0x40.. inbound (for aes128-sha1 the keys of examples/gw-a-static.yaml)."""
    (ek, *_), (ak, *_) = COMBOS[combo]
    seq = lambda first, n: bytes(range(first, first + n))  # noqa: E731
    return {"out": (seq(0x10, ek), seq(0x30, ak)), "in": (seq(0x20, ek), seq(0x40, ak))}


def sa(combo, encap, direction):
    """Scapy's SA for our outbound ("out": we encrypt, the peer decrypts) or inbound SA."""
    (_, calg, *_), (_, aalg, *_) = COMBOS[combo]
    enc, auth = keys(combo)[direction]
    src, dst, spi = (GW_PUB, PEER_PUB, SPI_OUT) if direction == "out" else \
        (PEER_PUB, GW_PUB, SPI_IN)
    natt = UDP(sport=NATT_PORT, dport=NATT_PORT) if encap == "udp" else None
    return SecurityAssociation(ESP, spi=spi, crypt_algo=calg, crypt_key=enc, auth_algo=aalg,
                               auth_key=auth, tunnel_header=IP(src=src, dst=dst),
                               nat_t_header=natt)


def inner(src, dst, size, i):
    """An IPv4/UDP packet of exactly `size` bytes (IP total length); flow varies with i."""
    hdr = IP(src=src, dst=dst, ttl=64, id=i & 0xFFFF) / UDP(sport=1024 + (i % 256), dport=9)
    pad = size - len(hdr)
    assert pad >= 0, size
    payload = (i.to_bytes(4, "big") * (pad // 4 + 1))[:pad]
    return IP(bytes(hdr / Raw(payload)))


def encrypt(s, pkt, seq):
    """s.encrypt, with the UDP length of ESP-in-UDP repaired: Scapy 2.5 builds the outer IP +
    UDP header before it appends the ESP, so its UDP length says 8 (header only)."""
    p = s.encrypt(pkt, seq_num=seq)
    if UDP in p and ESP in p[UDP]:
        del p[UDP].len
        del p[IP].chksum
        p = IP(bytes(p))
    return p


def gen(d, combo, encap, sizes):
    sa_in = sa(combo, encap, "in")
    for size in sizes:
        for mac, name in ((PORT_MAC, f"out-{size}"), (PORT_MAC_2ND, f"out-{size}-mac01")):
            if not os.path.exists(f"{d}/{name}.pcap"):
                wrpcap(f"{d}/{name}.pcap", [Ether(src=HOST_MAC, dst=mac) /
                                            inner(HOST_A, HOST_B, size, i) for i in range(N_PKTS)])
        # Inbound: sequence numbers 1..N_PKTS; the pcap repeats them on every replay, so the
        # gateways run with anti-replay off (see docs/bench-gateway.md).
        wrpcap(f"{d}/in-{combo}-{encap}-{size}.pcap",
               [Ether(src=PEER_MAC, dst=PORT_MAC) /
                encrypt(sa_in, inner(HOST_B, HOST_A, size, i), i + 1)
                for i in range(N_PKTS)])


IPSECGW_YAML = """\
# scripts/bench-gateway ({combo}, {encap}; written by pcaps.py config): ipsecgw as gateway A
# of examples/gw-a-static.yaml, one static tunnel 10.1.0.0/24 <-> 10.2.0.0/24 over
# 192.0.2.1 <-> 192.0.2.2. Port 0 unprotected, port 1 protected (the --vdev order).
# Anti-replay off (replay_window: 0): the inbound pcap is replayed forever and repeats its
# sequence numbers; ipsec-secgw runs with its default window 0 (off) too. Static neighbours:
# no ARP on the benchmark's vdevs.
vpnservice:
  name: bench
  ports:
    unprotected: {{port: 0, address: 192.0.2.1/24}}
    protected: {{port: 1, address: 10.1.0.1/24}}
  neighbors:
    - {{ip: 192.0.2.2, mac: "{peer_mac}"}}
    - {{ip: 10.1.0.2, mac: "{host_mac}"}}
  unmatched_traffic: drop

ipsecpolicies:
  - name: bench-policy
    encryption_algorithm: {cipher}
    auth_algorithm: {integ}

ipsec_site_connections:
  - name: bench
    peer_address: 192.0.2.2
    peer_cidrs: [10.2.0.0/24]
    ipsecpolicy: bench-policy
    manual_keys:
      inbound:  {{spi: {spi_in:#x}, encryption_key: {ek_in}, auth_key: {ak_in}}}
      outbound: {{spi: {spi_out:#x}, encryption_key: {ek_out}, auth_key: {ak_out}}}
      udp_encap: {udp}
      replay_window: 0
"""

SECGW_CFG = """\
# scripts/bench-gateway ({combo}, {encap}; written by pcaps.py config): DPDK ipsec-secgw
# with the same tunnel as ipsecgw-{combo}-{encap}.yaml (gateway A): port 0 unprotected
# (-u 0x1), port 1 protected; SPI {spi_out} = {spi_out:#x} out, {spi_in} = {spi_in:#x} in;
# lookaside-none (the crypto_aesni_mb cryptodev). Syntax: DPDK's
# doc/guides/sample_app_ug/ipsec_secgw.rst and the example's ep0.cfg.

sp ipv4 out esp protect {spi_out} pri 1 src 10.1.0.0/24 dst 10.2.0.0/24 sport 0:65535 dport 0:65535
sp ipv4 in esp protect {spi_in} pri 1 src 10.2.0.0/24 dst 10.1.0.0/24 sport 0:65535 dport 0:65535

sa out {spi_out} cipher_algo {scipher} cipher_key {sek_out} auth_algo {sinteg} \\
auth_key {sak_out} mode ipv4-tunnel src 192.0.2.1 dst 192.0.2.2

sa in {spi_in} cipher_algo {scipher} cipher_key {sek_in} auth_algo {sinteg} \\
auth_key {sak_in} mode ipv4-tunnel src 192.0.2.2 dst 192.0.2.1

rt ipv4 dst 192.0.2.2/32 port 0
rt ipv4 dst 10.1.0.0/24 port 1

# Destination MACs per port (ipsec-secgw has one next hop per port): the peer gateway on
# port 0, host 10.1.0.2 on port 1; the same as ipsecgw's static neighbours.
neigh port 0 {peer_mac}
neigh port 1 {host_mac}
"""


def config(d, combo, encap):
    """ipsecgw's YAML (0600: it holds keys, ipsecgw refuses others) and ipsec-secgw's cfg.
    ipsec-secgw 22.11 takes `udp-encap` only for inline or lookaside-protocol SAs (rte_security
    hardware), not for the cryptodev (lookaside-none) used here: no cfg for ENCAP udp."""
    (_, _, cipher, scipher), (_, _, integ, sinteg) = COMBOS[combo]
    k = keys(combo)
    colon = lambda b: ":".join(f"{x:02x}" for x in b)  # noqa: E731
    v = dict(combo=combo, encap=encap, peer_mac=PEER_MAC, host_mac=HOST_MAC, cipher=cipher,
             integ=integ, scipher=scipher, sinteg=sinteg, spi_in=SPI_IN, spi_out=SPI_OUT,
             ek_in=k["in"][0].hex(), ak_in=k["in"][1].hex(), ek_out=k["out"][0].hex(),
             ak_out=k["out"][1].hex(), sek_in=colon(k["in"][0]), sak_in=colon(k["in"][1]),
             sek_out=colon(k["out"][0]), sak_out=colon(k["out"][1]),
             udp="true" if encap == "udp" else "false")
    path = f"{d}/ipsecgw-{combo}-{encap}.yaml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(IPSECGW_YAML.format(**v))
    if encap == "esp":
        with open(f"{d}/secgw-{combo}-{encap}.cfg", "w") as f:
            f.write(SECGW_CFG.format(**v))



def clear_why(p, want):
    """What is wrong with a packet a gateway sent in the clear (inbound), or None."""
    if ESP in p:
        return "still ESP"
    if p[Ether].dst != HOST_MAC:
        return f"dst MAC {p[Ether].dst} (want {HOST_MAC})"
    if key(p[IP]) not in want:
        return "not one of the inner packets sent"
    return None

def key(ip):
    """What must survive the gateway: addresses, protocol, L4 header and payload (not TTL or
    the header checksum, which a router rewrites)."""
    return (ip.src, ip.dst, ip.proto, ip.len, bytes(ip.payload))


def check(d, combo, encap, direction, size, captures):
    if direction == "outbound":
        sent = rdpcap(f"{d}/out-{size}.pcap")
        want = {key(p[IP]) for p in sent}
    else:
        sent = rdpcap(f"{d}/in-{combo}-{encap}-{size}.pcap")
        sa_in = sa(combo, encap, "in")
        want = {key(sa_in.decrypt(p[IP])) for p in sent}
    sa_out = sa(combo, encap, "out")
    got = [p for c in captures for p in rdpcap(c)]
    res = {"combo": combo, "encap": encap, "direction": direction, "size": size,
           "sent": len(sent), "captured": len(got), "ok": 0, "bad": 0, "first_bad": None}
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
                elif encap == "esp" and p[IP].proto != 50:
                    why = f"IP protocol {p[IP].proto}, want 50 (ESP)"
                elif encap == "udp" and (p[IP].proto != 17 or
                                         (p[UDP].sport, p[UDP].dport) != (NATT_PORT, NATT_PORT)):
                    why = f"IP protocol {p[IP].proto}, want ESP in UDP {NATT_PORT}->{NATT_PORT}"
                else:
                    dec = sa_out.decrypt(p[IP])   # verifies the ICV, raises on mismatch
                    if key(dec) not in want:
                        why = "decrypts to a packet that was not sent"
            else:
                why = clear_why(p, want)
        except Exception as e:  # noqa: BLE001 - any decode/ICV failure is a bad packet
            why = f"{type(e).__name__}: {e}"
        if why is None:
            res["ok"] += 1
        else:
            res["bad"] += 1
            res["first_bad"] = res["first_bad"] or why
    print(json.dumps(res))
    return 0 if res["bad"] == 0 and res["ok"] == len(sent) else 1


def case(combo, encap):
    if combo not in COMBOS or encap not in ENCAPS:
        print(f"pcaps.py: unknown combo {combo} or encapsulation {encap} "
              f"(combos {', '.join(COMBOS)}; encapsulations {', '.join(ENCAPS)})", file=sys.stderr)
        sys.exit(2)
    return combo, encap


if __name__ == "__main__":
    a = sys.argv[1:]
    if len(a) >= 5 and a[0] == "gen":
        gen(a[1], *case(a[2], a[3]), [int(s) for s in a[4:]])
        sys.exit(0)
    if len(a) == 4 and a[0] == "config":
        config(a[1], *case(a[2], a[3]))
        sys.exit(0)
    if len(a) >= 7 and a[0] == "check":
        sys.exit(check(a[1], *case(a[2], a[3]), a[4], int(a[5]), a[6:]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
