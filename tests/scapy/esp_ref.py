#!/usr/bin/python3
"""Independent ESP tunnel-mode reference (Scapy's scapy.layers.ipsec) for the data-path tests.

Reads one JSON document on stdin and writes one on stdout, so a test can batch many packets into
one Python start-up:

  in:  {"jobs": [{"op": "encrypt" | "decrypt", "spi": int, "seq": int (encrypt),
                  "cipher": "aes-128-cbc" | "aes-192-cbc" | "aes-256-cbc",
                  "integ": "hmac-sha1-96" | "hmac-sha256-128",
                  "enc_key": hex, "auth_key": hex, "encap": bool,
                  "src": "a.b.c.d", "dst": "a.b.c.d",   # outer addresses (encrypt)
                  "packet": hex}, ...]}
       encrypt: "packet" is the inner IPv4 packet; the result is the outer packet.
       decrypt: "packet" is the outer packet (ESP or ESP-in-UDP 4500); the result is the inner
                packet, after Scapy verified the ICV.
  out: {"results": [{"packet": hex} | {"error": "..."}, ...]}

Test keys only; nothing here is logged.
"""
import json
import sys

try:
    from scapy.layers.inet import IP, UDP
    from scapy.layers.ipsec import ESP, SecurityAssociation
    from scapy.compat import raw
except ImportError as e:  # the gtest turns this into a clear failure
    sys.stdout.write(json.dumps({"fatal": "scapy not importable: %s" % e}))
    sys.exit(3)

CIPHERS = {"aes-128-cbc": "AES-CBC", "aes-192-cbc": "AES-CBC", "aes-256-cbc": "AES-CBC"}
INTEGS = {"hmac-sha1-96": "HMAC-SHA1-96", "hmac-sha256-128": "SHA2-256-128"}


def make_sa(job):
    return SecurityAssociation(
        ESP,
        spi=job["spi"],
        crypt_algo=CIPHERS[job["cipher"]],
        crypt_key=bytes.fromhex(job["enc_key"]),
        auth_algo=INTEGS[job["integ"]],
        auth_key=bytes.fromhex(job["auth_key"]),
        tunnel_header=IP(src=job.get("src", "0.0.0.0"), dst=job.get("dst", "0.0.0.0")),
        nat_t_header=UDP(sport=4500, dport=4500) if job["encap"] else None,
    )


def run(job):
    sa = make_sa(job)
    data = bytes.fromhex(job["packet"])
    if job["op"] == "encrypt":
        out = bytearray(raw(sa.encrypt(IP(data), seq_num=job["seq"])))
        if job["encap"]:
            # Scapy 2.5 serialises the NAT-T header before the ESP payload is attached, so its
            # UDP length says 8. Set the real length (RFC 768); the checksum stays zero
            # (RFC 3948 §3.1.2). Nothing else of Scapy's output is touched.
            ihl = (out[0] & 0x0F) * 4
            udp_len = len(out) - ihl
            out[ihl + 4:ihl + 6] = udp_len.to_bytes(2, "big")
        return bytes(out)
    if job["op"] == "decrypt":
        pkt = IP(data)
        if job["encap"] and not (pkt.haslayer(UDP) and pkt[UDP].dport == 4500):
            raise ValueError("not ESP-in-UDP")
        if not pkt.haslayer(ESP):
            raise ValueError("no ESP layer")
        return raw(sa.decrypt(pkt))
    raise ValueError("unknown op %r" % job["op"])


def main():
    req = json.load(sys.stdin)
    results = []
    for job in req["jobs"]:
        try:
            results.append({"packet": run(job).hex()})
        except Exception as e:  # noqa: BLE001 - reported per job
            results.append({"error": "%s: %s" % (type(e).__name__, e)})
    sys.stdout.write(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
