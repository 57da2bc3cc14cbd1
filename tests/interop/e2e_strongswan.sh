#!/usr/bin/env bash
# End-to-end against a real peer: ipsecgw (DPDK net_af_packet, IKE daemon hooked in) and a
# strongSwan 5.9.x gateway (charon with kernel-libipsec, tests/interop/peer-lib.sh):
#
#   hostA 10.1.0.2 --ha0|gA1-- [gwA: ipsecgw] --gA0|pub0-- [ss: charon, 10.2.0.1 on lo]
#          10.1.0.0/24        10.1.0.1   192.0.2.1     192.0.2.2          10.2.0.0/24
#
# The strongSwan namespace holds 10.2.0.1 inside its local_ts (as ike_strongswan.sh does), so
# it is both the peer gateway and the host behind it. Debian's kernel-libipsec fakes NAT: IKE
# floats to 4500 and ESP is UDP-encapsulated (RFC 3948), which is what the capture must show.
#
# Cases (one per run, fresh namespaces):
#   ss-initiates   strongSwan initiates aes128-sha1-modp1024 (IKE and ESP), ipsecgw response-only
#   we-initiate    ipsecgw (bi-directional) initiates aes256-sha256-modp2048, strongSwan responds
#   wrong-psk      strongSwan initiates with another PSK: our status ERROR with a reason, no
#                  SA on either side, no traffic passes, no ESP on the wire
# Checks for the first two: our status line ACTIVE (log), swanctl --list-sas ESTABLISHED and
# INSTALLED with the SPIs we report, ping hostA <-> 10.2.0.1 both ways, 1 MiB over TCP both ways
# with sha256 compared, the public-link capture holds only ARP, IKE and ESP-in-UDP 4500 between
# the gateways, every ESP packet verified and decrypted by Scapy with the keys charon logged
# (an independent check of our key derivation and ESP), and /ipsecgw/connections telemetry
# plus the exit report show the connection ACTIVE.
#
# usage: e2e_strongswan.sh IPSECGW_BINARY CASE   (root; IG_KEEP=1 keeps logs and pcaps)
# exit: 0 pass, 1 fail, 77 skip (not root / no strongSwan)
# shellcheck disable=SC2015  # "check && ig_pass ... || ig_fail ...": ig_pass always returns 0
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
IPSECGW=$(realpath "${1:?usage: e2e_strongswan.sh IPSECGW_BINARY CASE}")
CASE=${2:?case: ss-initiates | we-initiate | wrong-psk}
PY=/usr/bin/python3
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"             # and peer-lib.sh, for charon
ig_require root
ig_require strongswan
IG_TAG=ige$$
trap ig_cleanup_all EXIT
trap 'exit 130' INT TERM HUP

A_PUB=$IG_A_PUB SS_PUB=$IG_B_PUB HOST_A=$IG_HOST_A SS_HOST=$IG_B_PRIV NET_A=$IG_NET_A NET_SS=$IG_NET_B
PSK=e2e-psk-$$-$RANDOM-secret
CONN="to-strongswan"

case $CASE in
  ss-initiates) ike=aes128-sha1-modp1024; ss_role=initiator; our_init=response-only; ss_psk=$PSK ;;
  we-initiate)  ike=aes256-sha256-modp2048; ss_role=responder; our_init=bi-directional; ss_psk=$PSK ;;
  wrong-psk)    ike=aes128-sha1-modp1024; ss_role=initiator; our_init=response-only; ss_psk=not-$PSK ;;
  *) echo "unknown case $CASE" >&2; exit 2 ;;
esac
IFS=- read -r ciph hash _ <<<"$ike"

ig_init || exit 1
ig_require_tools socat sha256sum tshark scapy || exit 1

ig_step "topology"
ig_topology_ss || exit 1
IG_CONNS=("$CONN")
IG_CONN_PEER[$CONN]=$SS_PUB IG_CONN_NET[$CONN]=$NET_SS IG_CONN_INIT[$CONN]=$our_init
IG_CONN_IKE[$CONN]=$ike IG_CONN_ESP[$CONN]=$ike
ig_write_ike_config "$IG_WORK/gwA.yaml" "$PSK"
ig_check_config "$IG_WORK/gwA.yaml" || exit 1

ig_step "strongSwan ($ss_role, $ike) and ipsecgw ($our_init)"
pn_ss_start ss ss role=$ss_role local_addr=$SS_PUB remote_addr=$A_PUB local_ts=$NET_SS \
  remote_ts=$NET_A psk="$ss_psk" ike="$ike" esp="$ike" keylog=yes || { echo "FAIL: charon did not start"; exit 1; }
ig_cap_start pub ss pub0 || exit 1
ig_gw_start A "$IG_WORK/gwA.yaml" --stats-interval 1 || exit 1
LOG=$(ig_gw_log A)
# Our log again, each line prefixed with the time it appeared (bash's EPOCHREALTIME, no fork
# per line); tail ends with ipsecgw.
TS_LOG=$IG_WORK/gwA.ts.log
tail -n +1 -F --pid="${IG_GW_PIDS[A]}" "$LOG" 2>/dev/null |
  while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done >"$TS_LOG" &

status_line() { ig_status_line "$CONN" "$SS_PUB"; }
# wait_status STATE SECONDS : our last status line for the connection is STATE
wait_status() { ig_wait_status "$CONN" "$SS_PUB" "$1" "$2"; }

if [ "$CASE" = we-initiate ]; then
  ig_step "ipsecgw initiates"
else
  ig_step "strongSwan initiates"
  if pn_ss_initiate ss 25; then
    [ "$CASE" = wrong-psk ] && ig_fail "strongSwan's initiate succeeded with a wrong PSK"
  else
    [ "$CASE" = wrong-psk ] || ig_fail "swanctl --initiate failed: $(tail -5 "$(pn_ss_dir ss)/initiate.out")"
  fi
fi

# /ipsecgw/ike counters against "name=N" (exactly) or "name>=N" conditions.
check_ike_counters() {
  local tel
  if ! tel=$(ig_telemetry /ipsecgw/ike); then ig_fail "no /ipsecgw/ike telemetry answer: $tel"; return; fi
  if /usr/bin/python3 - "$tel" "$@" <<'PY'
import json, re, sys
c = json.loads(sys.argv[1])["/ipsecgw/ike"]
bad = []
for cond in sys.argv[2:]:
    k, op, v = re.fullmatch(r"(\w+)(>=|=)(\d+)", cond).groups()
    have = c.get(k)
    if have is None or (have < int(v) if op == ">=" else have != int(v)):
        bad.append(f"{k}={have} (want {op}{v})")
sys.exit("; ".join(bad) if bad else 0)
PY
  then ig_pass "telemetry /ipsecgw/ike ($*): $tel"
  else ig_fail "telemetry /ipsecgw/ike: $tel"; fi
}

# ------------------------------------------------------------------------------- wrong PSK
if [ "$CASE" = wrong-psk ]; then
  if wait_status ERROR 40; then ig_pass "our status: $(status_line | sed 's/.*ipsecgw.app: //')"
  else ig_fail "our status is not ERROR: '$(status_line)'"; fi
  st=$(status_line)
  grep -qE 'ERROR \(.+\)' <<<"$st" && ig_pass "ERROR carries a reason" || ig_fail "ERROR without a reason: $st"
  grep -q 'spi_in' <<<"$st" && ig_fail "SPIs reported with a wrong PSK: $st"
  reason=$(sed -nE 's/.*ERROR \((.+)\)$/\1/p' <<<"$st")
  tel=$(ig_telemetry /ipsecgw/connections)
  grep -qF "\"last_error\":[\"$reason\"]" <<<"$tel" &&
    grep -qE '"last_error_at": *\["[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z"\]' <<<"$tel" &&
    ig_pass "telemetry: last_error '$reason' and its time" || ig_fail "telemetry last error: $tel"
  # The wrong-PSK MM5 cannot be authenticated: counted and ignored, never a cookie drop.
  check_ike_counters half_open_created'>='1 unauthenticated_drops'>='1 bad_cookie_drops=0
  sas=$(pn_swanctl ss --list-sas 2>&1)
  grep -q INSTALLED <<<"$sas" && ig_fail "strongSwan installed a CHILD SA: $sas"
  out=$(timeout 10 ip netns exec "$(ig_ns hostA)" ping -n -c 3 -i 0.3 -W 1 "$SS_HOST" 2>&1)
  grep -q ' 0 received' <<<"$out" && ig_pass "ping hostA -> $SS_HOST: nothing passes" || ig_fail "ping passed without a tunnel: $(grep received <<<"$out")"
  out=$(timeout 10 ip netns exec "$(ig_ns ss)" ping -n -c 3 -i 0.3 -W 1 -I "$SS_HOST" "$HOST_A" 2>&1)
  grep -qE ' 0 received|unreachable' <<<"$out" && ig_pass "ping $SS_HOST -> hostA: nothing passes" || ig_fail "ping passed without a tunnel: $(grep received <<<"$out")"
  ig_cap_stop pub
  n_esp=$(tshark -n -r "$(ig_cap_file pub)" -Y esp 2>/dev/null | wc -l)
  n_plain=$(tshark -n -r "$(ig_cap_file pub)" -Y "icmp || ip.addr == $NET_A || ip.addr == $NET_SS" 2>/dev/null | wc -l)
  [ "$n_esp" = 0 ] && [ "$n_plain" = 0 ] && ig_pass "public link: no ESP, no inner traffic" ||
    ig_fail "public link: $n_esp ESP and $n_plain inner-address frames"
  grep -q '^=== ipsecgw' "$LOG" && ig_fail "gateway stopped early"
  ig_gw_stop A
  [ "${IG_GW_RC[A]}" = 0 ] && grep -q "connection $CONN (peer $SS_PUB): ERROR" "$LOG" &&
    ig_pass "exit 0, report shows ERROR" || { ig_fail "exit ${IG_GW_RC[A]}, report: $(sed -n '/=== ipsecgw connections/,$p' "$LOG")"; }
  ig_finish "e2e_strongswan ($CASE)"
fi

# ------------------------------------------------------------------------------ tunnel up
if wait_status ACTIVE 40; then ig_pass "our status: $(status_line | sed 's/.*ipsecgw.app: //')"
else ig_fail "our status is not ACTIVE: '$(status_line)'"; tail -30 "$LOG"; tail -20 "$(pn_ss_log ss)"; exit 1; fi
st=$(status_line)
our_in=$(sed -n 's/.*spi_in 0x\([0-9a-f]*\).*/\1/p' <<<"$st")
our_out=$(sed -n 's/.*spi_out 0x\([0-9a-f]*\).*/\1/p' <<<"$st")
grep -q 'esp-in-udp' <<<"$st" || ig_fail "expected ESP in UDP (libipsec fakes NAT): $st"
pn_ss_wait_child ss 10 || ig_fail "strongSwan CHILD SA not INSTALLED"
sas=$(pn_swanctl ss --list-sas 2>&1)
printf '%s\n' "$sas" >"$IG_WORK/list-sas"
grep -qE '^peer: #[0-9]+, ESTABLISHED, IKEv1' <<<"$sas" && ig_pass "strongSwan: IKE SA ESTABLISHED" || ig_fail "strongSwan IKE SA not ESTABLISHED: $sas"
grep -qE '^  net: #[0-9]+, reqid [0-9]+, INSTALLED, TUNNEL-in-UDP' <<<"$sas" && ig_pass "strongSwan: CHILD SA INSTALLED (TUNNEL-in-UDP)" || ig_fail "strongSwan CHILD SA not INSTALLED: $sas"
grep -q "ESP:$(ig_ss_enc "$ciph")/$(ig_ss_integ "$hash")" <<<"$sas" || ig_fail "strongSwan ESP algorithms differ from $ike: $sas"
ss_in=$(sed -nE 's/^    in  ([0-9a-f]{8}).*/\1/p' <<<"$sas" | head -1)
ss_out=$(sed -nE 's/^    out ([0-9a-f]{8}).*/\1/p' <<<"$sas" | head -1)
if [ -n "$ss_in" ] && [ "$ss_in" = "$our_out" ] && [ "$ss_out" = "$our_in" ]; then
  ig_pass "SPIs agree: ours in $our_in out $our_out, strongSwan in $ss_in out $ss_out"
else ig_fail "SPIs differ: ours in '$our_in' out '$our_out', strongSwan in '$ss_in' out '$ss_out'"; fi

ig_step "status ACTIVE follows the SA install at once"
# Ordering from our log itself; the delay from the timestamps of the same lines (status is
# refreshed every 20 ms; the bound only catches a status that lags by a second or more).
n_inst=$(grep -an 'CHILD SA installed' "$LOG" | head -1 | cut -d: -f1)
n_act=$(grep -an "connection $CONN (peer $SS_PUB): ACTIVE" "$LOG" | head -1 | cut -d: -f1)
if [ -n "$n_inst" ] && [ -n "$n_act" ] && [ "$n_inst" -lt "$n_act" ]; then
  ig_pass "log: CHILD SA installed (line $n_inst), then status ACTIVE (line $n_act)"
else ig_fail "log order: install line '$n_inst', ACTIVE line '$n_act'"; fi
for _ in $(seq 20); do grep -aq "): ACTIVE" "$TS_LOG" && break; sleep 0.1; done
t_inst=$(grep -a 'CHILD SA installed' "$TS_LOG" | head -1 | cut -d' ' -f1)
t_act=$(grep -a "connection $CONN (peer $SS_PUB): ACTIVE" "$TS_LOG" | head -1 | cut -d' ' -f1)
if [ -n "$t_inst" ] && [ -n "$t_act" ] && awk -v a="$t_inst" -v b="$t_act" 'BEGIN { exit !(b - a <= 1.5) }'; then
  ig_pass "status ACTIVE $(awk -v a="$t_inst" -v b="$t_act" 'BEGIN { printf "%.3f", b - a }') s after the install"
else ig_fail "status ACTIVE not within about a second of the install: '$t_inst' -> '$t_act'"; fi

ig_step "ping both ways through the tunnel"
if ig_wait_ping hostA "$SS_HOST" 15; then ig_pass "first ping hostA -> $SS_HOST"; else ig_fail "no ping reply hostA -> $SS_HOST"; fi
ig_ping_check "ping hostA -> $SS_HOST" hostA "$SS_HOST" 5
ig_ping_check "ping $SS_HOST -> hostA" ss "$HOST_A" 5 -I "$SS_HOST"

ig_step "1 MiB over TCP, both directions, sha256 compared"
ig_tcp_check hostA ss "$SS_HOST"
ig_tcp_check ss hostA "$HOST_A" "$SS_HOST"

ig_step "telemetry /ipsecgw/connections"
if tel=$(ig_telemetry /ipsecgw/connections); then
  if grep -q '"state": *\["ACTIVE"\]' <<<"$tel" && grep -q "\"name\": *\[\"$CONN\"\]" <<<"$tel"; then ig_pass "telemetry: $tel"
  else ig_fail "telemetry /ipsecgw/connections: $tel"; fi
  # The detail against strongSwan's view: phases, algorithms, NAT-T port, and our inbound
  # packets against its outbound ones on the same CHILD SA (counters read once a second).
  sleep 1.5
  tel=$(ig_telemetry /ipsecgw/connections)
  sas=$(pn_swanctl ss --list-sas 2>&1)
  ss_out_pk=$(sed -nE 's/^    out [0-9a-f]{8}.*, *[0-9]+ bytes, *([0-9]+) packets.*/\1/p' <<<"$sas" | head -1)
  want_ike="$(sed -E 's/aes([0-9]+)/aes-\1-cbc/' <<<"$ciph")/$hash/${ike##*-}"
  if detail=$(TEL=$tel $PY - "$want_ike" "${ss_out_pk:-x}" <<'PY'
import json, os, sys
c = json.loads(os.environ["TEL"])["/ipsecgw/connections"]
want_ike, ss_out = sys.argv[1], sys.argv[2]
got = {k: c[k][0] for k in ("phase1", "phase2", "ike_algorithms", "peer_port", "in_packets",
                           "out_packets", "last_error")}
print(got, "strongSwan out packets", ss_out)
ok = (got["phase1"] == "ESTABLISHED" and got["phase2"] == "INSTALLED"
      and got["ike_algorithms"] == want_ike and got["peer_port"] == 4500
      and got["out_packets"] > 0 and ss_out.isdigit() and abs(got["in_packets"] - int(ss_out)) <= 2
      and got["last_error"] == "")
sys.exit(0 if ok else 1)
PY
  ); then ig_pass "telemetry detail: $detail"
  else ig_fail "telemetry detail: $detail; strongSwan: $(grep -E '^    (in|out) ' <<<"$sas")"; fi
else
  ig_fail "no telemetry answer from /run/dpdk/${IG_GW_PREFIX[A]}: $tel"
fi

ig_step "telemetry /ipsecgw/ike: an honest exchange is counted as such"
# strongSwan initiating leaves exactly one half-open responder entry behind it (MM1); when we
# initiate there is none. An honest peer never trips a cookie, replay or authentication drop.
want_half_open=0; [ "$ss_role" = initiator ] && want_half_open=1
check_ike_counters half_open_created=$want_half_open bad_cookie_drops=0 replay_drops=0 \
  unauthenticated_drops=0 peer_id_mismatches=0 dh_failures=0

ig_cap_stop pub
ig_step "public link: only ARP, IKE and ESP-in-UDP 4500, decrypted by Scapy with charon's keys"
recs=$(pn_ss_esp_keys ss "$SS_PUB" "$A_PUB" "AES-CBC [RFC3602]" "$(ig_ws_integ "$hash")" "$ss_role" 2>&1) ||
  ig_fail "no ESP keys in charon's log: $recs"
# records: "IPv4","src","dst","0xSPI","AES-CBC [RFC3602]","0xENC","AUTH","0xAUTH"
sa_of() { awk -F'","' -v s="$1" -v d="$2" '$2 == s && $3 == d { gsub(/"/, "", $8); print $4 ":" substr($6, 3) ":" substr($8, 3) }' <<<"$recs" | tail -1; }
sa_ab=$(sa_of "$A_PUB" "$SS_PUB"); sa_ba=$(sa_of "$SS_PUB" "$A_PUB")
if [ -n "$sa_ab" ] && [ -n "$sa_ba" ] &&
   timeout 120 $PY "$here/verify_capture.py" "$(ig_cap_file pub)" --gw-a "$A_PUB" --gw-b "$SS_PUB" \
     --net-a "$NET_A" --net-b "$NET_SS" --sa-ab "$sa_ab" --sa-ba "$sa_ba" --udp --allow-ike \
     --auth "$hash" --min-esp 100 --expect-tcp; then
  ig_pass "capture verified"
else
  ig_fail "capture verification (sa a->ss '${sa_ab%%:*}', ss->a '${sa_ba%%:*}')"
fi

ig_step "SIGTERM: exit report with counters and the connection"
ig_gw_stop A
if [ "${IG_GW_RC[A]}" = 0 ] && grep -q '=== ipsecgw counters ===' "$LOG" &&
   sed -n '/=== ipsecgw connections ===/,$p' "$LOG" | grep -q "connection $CONN (peer $SS_PUB): ACTIVE"; then
  ig_pass "exit 0; $(sed -n '/=== ipsecgw connections ===/,$p' "$LOG" | grep "connection $CONN")"
else
  ig_fail "exit ${IG_GW_RC[A]}; $(sed -n '/=== ipsecgw connections ===/,$p' "$LOG")"; tail -30 "$LOG"
fi
sed -n '/=== ipsecgw counters ===/,$p' "$LOG" | head -40

ig_finish "e2e_strongswan ($CASE)"
