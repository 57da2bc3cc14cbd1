#!/usr/bin/env python3
"""N static (manual-key) site connections for one ipsecgw, as a 0600 YAML file (issue #12).

Tunnel i (0 <= i < N, N <= 16384), all AES-128-CBC + HMAC-SHA1-96:
  local subnet  10.(64 + i // 256).(i % 256).0/24    (an endpoint group per connection)
  peer subnet   10.(128 + i // 256).(i % 256).0/24   (peer_cidrs)
  peer address  198.18.0.0 + i + 1                   (off-link: via 192.0.2.254)
  inbound SPI   0x10000 + i,  outbound SPI 0x20000 + i
  keys          SHA-256 of "ipsecgw-many/<seed>/<i>/<direction>/<enc|auth>", cut to length
Gateway: port 0 unprotected 192.0.2.1/24 (gateway 192.0.2.254, MAC 02:00:00:00:00:02), port 1
protected 10.0.0.1/24 (host 10.0.0.2, MAC 02:00:00:00:00:0a, the route to 10.64.0.0/10).

  gen_connections.py -n 10000 -o gw.yaml [--replay-window W] [--seed S]

scripts/lib/bench_gateway/many.py imports tunnel() for the same addresses, SPIs and keys.
"""
import argparse
import hashlib
import ipaddress
import os
import sys

MAX_TUNNELS = 16384
UNPROTECTED = "192.0.2.1/24"
NEXT_HOP, NEXT_HOP_MAC = "192.0.2.254", "02:00:00:00:00:02"
PROTECTED = "10.0.0.1/24"
HOST, HOST_MAC = "10.0.0.2", "02:00:00:00:00:0a"
LOCAL_ROUTE = "10.64.0.0/10"
PEER_BASE = int(ipaddress.IPv4Address("198.18.0.0"))


def _key(seed, i, direction, what, n):
    h = hashlib.sha256(f"ipsecgw-many/{seed}/{i}/{direction}/{what}".encode()).digest()
    return h[:n]


def tunnel(i, seed=0):
    """Tunnel i as a dict: name, addresses, SPIs and keys (bytes), from our side."""
    if not 0 <= i < MAX_TUNNELS:
        raise ValueError(f"tunnel index {i} out of 0..{MAX_TUNNELS - 1}")
    hi, lo = 64 + i // 256, i % 256
    return {
        "name": f"t{i:05d}",
        "local": f"10.{hi}.{lo}.0/24",
        "peer_subnet": f"10.{hi + 64}.{lo}.0/24",
        "peer": str(ipaddress.IPv4Address(PEER_BASE + i + 1)),
        "spi_in": 0x10000 + i,
        "spi_out": 0x20000 + i,
        "in_enc": _key(seed, i, "in", "enc", 16), "in_auth": _key(seed, i, "in", "auth", 20),
        "out_enc": _key(seed, i, "out", "enc", 16), "out_auth": _key(seed, i, "out", "auth", 20),
    }


def render(n, replay_window=64, seed=0, mbufs=0, ike=False):
    """The YAML; with ike, IKEv1 (PSK, response-only: idle until the peer initiates) instead of
    manual keys."""
    kind = "IKE (response-only)" if ike else "static"
    out = [
        f"# {n} {kind} site connections, written by scripts/lib/gen_connections.py (seed {seed}).",
        "vpnservice:",
        "  name: many",
        "  ports:",
        f"    unprotected: {{port: 0, address: {UNPROTECTED}, gateway: {NEXT_HOP}}}",
        f"    protected: {{port: 1, address: {PROTECTED}}}",
        "  neighbors:",
        f"    - {{ip: {NEXT_HOP}, mac: \"{NEXT_HOP_MAC}\"}}",
        f"    - {{ip: {HOST}, mac: \"{HOST_MAC}\"}}",
        "  routes:",
        f"    - {{destination: {LOCAL_ROUTE}, nexthop: {HOST}}}",
        "  unmatched_traffic: drop",
        "dataplane:",
        f"  sa_capacity: {max(4096, 2 * n)}",
        f"  mbufs: {mbufs}",
        "ipsecpolicies:",
        "  - {name: esp-aes128-sha1, encryption_algorithm: aes-128, auth_algorithm: sha1}",
    ]
    if ike:
        out += ["ikepolicies:",
                "  - {name: ike-aes128-sha1, encryption_algorithm: aes-128, auth_algorithm: sha1}"]
    out += [
        "endpoint_groups:",
    ]
    ts = [tunnel(i, seed) for i in range(n)]
    for t in ts:
        out.append(f"  - {{name: {t['name']}-local, type: cidr, endpoints: [{t['local']}]}}")
    out.append("ipsec_site_connections:")
    for t in ts:
        out += [
            f"  - name: {t['name']}",
            f"    peer_address: {t['peer']}",
            f"    peer_cidrs: [{t['peer_subnet']}]",
            f"    local_ep_group: {t['name']}-local",
            "    ipsecpolicy: esp-aes128-sha1",
        ]
        if ike:
            out += [
                "    ikepolicy: ike-aes128-sha1",
                "    initiator: response-only",
                f"    psk: \"{t['in_auth'].hex()}\"",
            ]
            continue
        out += [
            "    manual_keys:",
            f"      inbound: {{spi: {t['spi_in']:#x}, encryption_key: {t['in_enc'].hex()}, "
            f"auth_key: {t['in_auth'].hex()}}}",
            f"      outbound: {{spi: {t['spi_out']:#x}, encryption_key: {t['out_enc'].hex()}, "
            f"auth_key: {t['out_auth'].hex()}}}",
            f"      replay_window: {replay_window}",
        ]
    return "\n".join(out) + "\n"


def write_0600(path, text):
    """Writes text to path with mode 0600 from the start (the gateway refuses others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, required=True, help=f"connections, 1..{MAX_TUNNELS}")
    ap.add_argument("-o", required=True, help="output YAML (written mode 0600)")
    ap.add_argument("--replay-window", type=int, default=64, help="0 (off)..4096, default 64")
    ap.add_argument("--seed", type=int, default=0, help="key seed (default 0)")
    a = ap.parse_args()
    if not 1 <= a.n <= MAX_TUNNELS:
        sys.exit(f"gen_connections.py: -n {a.n} out of 1..{MAX_TUNNELS}")
    write_0600(a.o, render(a.n, a.replay_window, a.seed))


if __name__ == "__main__":
    main()
