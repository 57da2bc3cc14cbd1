#!/bin/bash
# pcap-driven gateway test: net_pcap in, net_pcap out, the output checked with Scapy.
#
#   pcap_test.sh IPSECGW SUITE [WORKDIR]
#   pcap_test.sh --selftest SUITE [WORKDIR]   (the checker against Scapy playing the gateway)
#
# SUITE is MODE[:CIPHER:AUTH]: MODE esp (plain ESP) or udp (ESP-in-UDP 4500, RFC 3948),
# CIPHER aes-128|aes-192|aes-256 (CBC), AUTH sha1 (HMAC-SHA1-96) | sha256 (HMAC-SHA-256-128);
# default aes-128:sha1. The SAs, the config and Scapy's reference all use that suite.
#
# ipsecgw runs with two net_pcap ports and static SAs (manual_keys), no namespaces, no root:
#   port 0 unprotected: rx unprot_in.pcap  (the peer's ESP, made by Scapy with the inbound keys,
#                                           incl. a replay, a bad ICV, an unknown SPI, and the
#                                           corpus of tests/interop/pcap_corpus.py: bad padding,
#                                           inner checksum, truncated ESP, outer fragments ...)
#                       tx unprot_out.pcap (must be our ESP: Scapy decrypts it with the outbound
#                                           keys to each tunnelled inner packet, seq 1..n)
#   port 1 protected:   rx prot_in.pcap    (inner packets: ICMP/UDP/TCP of various sizes, some
#                                           matching no tunnel, some malformed)
#                       tx prot_out.pcap   (must be every valid inbound ESP packet decrypted,
#                                           exactly once)
# When both directions have put out what they should (watched through --stats-interval), or
# after at most 30 s, SIGINT; ipsecgw must exit 0 and its counters report must show the drops
# (replay=1, bad_icv=1, ...). tests/interop/pcap_check.py holds the scenario and every check.
# Exit: 0 pass, 1 fail, 77 skipped (no Scapy).
set -u

PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
CHECK="$HERE/pcap_check.py"

die() { echo "pcap_test: FAIL: $*" >&2; exit 1; }

[ $# -ge 2 ] || { echo "usage: $0 IPSECGW|--selftest MODE[:CIPHER:AUTH] [WORKDIR]" >&2; exit 2; }
BIN=$1 SUITE=$2
IFS=: read -r MODE CIPHER AUTH <<<"$SUITE"
CIPHER=${CIPHER:-aes-128} AUTH=${AUTH:-sha1}
case "$MODE" in esp|udp) ;; *) echo "mode must be esp or udp" >&2; exit 2 ;; esac
case "$CIPHER" in aes-128|aes-192|aes-256) ;; *) echo "bad cipher $CIPHER" >&2; exit 2 ;; esac
case "$AUTH" in sha1|sha256) ;; *) echo "bad integrity $AUTH" >&2; exit 2 ;; esac
SUITE_ARGS=(--mode "$MODE" --cipher "$CIPHER" --auth "$AUTH")
"$PY" -c 'import scapy.layers.ipsec' 2>/dev/null || { echo "SKIP: $PY has no scapy"; exit 77; }

OWN_WORK=1
if [ $# -ge 3 ]; then
  WORK=$3 OWN_WORK=
  mkdir -p "$WORK" || die "cannot create $WORK"
  rm -f "$WORK"/*.pcap "$WORK"/gw.log "$WORK"/expect.json "$WORK"/config.yaml
else
  WORK=$(mktemp -d /tmp/ipsecgw-pcap.XXXXXX) || die "mktemp"
fi
GW_PID=
PREFIX="pcaptest$$"
cleanup() {
  if [ -n "$GW_PID" ] && kill -0 "$GW_PID" 2>/dev/null; then
    kill -KILL "$GW_PID" 2>/dev/null
    wait "$GW_PID" 2>/dev/null
  fi
  [ -z "$OWN_WORK" ] || [ -n "${KEEP:-}" ] || rm -rf "$WORK"
  # EAL's runtime directory for our file prefix (empty with --no-shconf, but left behind).
  local d
  for d in /var/run/dpdk "${XDG_RUNTIME_DIR:-/nonexistent}/dpdk" /tmp/dpdk; do
    [ -d "$d/$PREFIX" ] && rm -rf "${d:?}/$PREFIX"
  done
  return 0
}
trap cleanup EXIT

if [ "$BIN" = "--selftest" ]; then
  timeout 120 "$PY" "$CHECK" selftest "$WORK" "${SUITE_ARGS[@]}" || die "checker self-test"
  exit 0
fi
[ -x "$BIN" ] || die "$BIN is not an executable"
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")

timeout 60 "$PY" "$CHECK" gen "$WORK" "${SUITE_ARGS[@]}" || die "generating the pcaps"
EXPECT_OUT=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["out"]))' \
  "$WORK/expect.json")
EXPECT_IN=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["in"]))' \
  "$WORK/expect.json")

# Port order: the config says unprotected = port 0, protected = port 1, i.e. the order of the
# --vdev args. The output pcaps are written as the gateway transmits.
LOG="$WORK/gw.log"
(cd "$WORK" && exec timeout -s KILL 90 "$BIN" --no-huge -m 512 --no-pci --no-shconf --no-telemetry \
  --file-prefix="$PREFIX" -l 0-1 --log-level=lib.eal:warning \
  --vdev=net_pcap0,rx_pcap=unprot_in.pcap,tx_pcap=unprot_out.pcap \
  --vdev=net_pcap1,rx_pcap=prot_in.pcap,tx_pcap=prot_out.pcap \
  -- --config config.yaml --stats-interval 1 --no-api) </dev/null >"$LOG" 2>&1 &
GW_PID=$!

# Wait (at most 30 s) until ESP out/in reach what the inputs should give; a gateway that puts
# out fewer is then stopped anyway and the checker says what is missing.
done_=0
for _ in $(seq 300); do
  kill -0 "$GW_PID" 2>/dev/null || break
  if grep -q "esp out $EXPECT_OUT in $EXPECT_IN " "$LOG" 2>/dev/null; then done_=1; break; fi
  sleep 0.1
done
if ! kill -0 "$GW_PID" 2>/dev/null; then
  wait "$GW_PID"; rc=$?; GW_PID=
  cat "$LOG" >&2
  die "ipsecgw exited early with status $rc"
fi
[ $done_ = 1 ] ||
  echo "pcap_test: ESP counters did not reach out=$EXPECT_OUT in=$EXPECT_IN in 30 s" >&2
sleep 1  # let the worker finish the TX of what it counted
kill -INT "$GW_PID"
rc=
for _ in $(seq 150); do
  kill -0 "$GW_PID" 2>/dev/null || { wait "$GW_PID"; rc=$?; GW_PID=; break; }
  sleep 0.1
done
if [ -z "$rc" ]; then
  cat "$LOG" >&2
  die "ipsecgw did not exit within 15 s of SIGINT"
fi
if [ "$rc" != 0 ]; then
  cat "$LOG" >&2
  die "ipsecgw exited with status $rc after SIGINT"
fi

if ! timeout 120 "$PY" "$CHECK" check "$WORK" --mode "$MODE" --report "$LOG"; then
  echo "---- ipsecgw output ($LOG) ----" >&2
  cat "$LOG" >&2
  die "output does not match (suite $MODE:$CIPHER:$AUTH)"
fi
echo "pcap_test $MODE:$CIPHER:$AUTH: PASS"
