#!/usr/bin/env bash
# Soak run (long; not part of scripts/test: scripts/soak runs it): ipsecgw with several tunnels
# to strongSwan peers (one charon per peer namespace), CHILD SA lifetime 60 s on our side and
# 75 s on strongSwan's (rekeys from both sides, dozens per tunnel), DPD on, numbered UDP both
# ways on every tunnel (udp_seq.py) for MINUTES minutes.
#
# Pass, each checked and printed:
#  - every numbered datagram arrives exactly once, both ways, on every tunnel;
#  - ipsecgw's RSS is flat: sampled every 30 s, the last sample at most 4 MiB above the sample
#    taken after the first 5 minutes (RSS log kept in the work dir);
#  - the tables are back to their starting size: 2 SAs per tunnel in /ipsecgw/sa once the
#    retired ones are gone, as after the first negotiation;
#  - counters add up: the gateway encrypted at least what the site sent into the tunnels and
#    decrypted at least what the peers sent, and no ESP packet was dropped for replay,
#    authentication, unknown SPI or window reasons (all drop totals are printed);
#  - each tunnel rekeyed at least MINUTES times (ours and strongSwan's counted from the logs).
#
# usage: soak.sh IPSECGW_BINARY [MINUTES (30)] [TUNNELS (3)] [RATE per tunnel and direction (100)]
# Root only; IG_KEEP=1 keeps the work dir (logs, RSS samples, sequence reports).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
IPSECGW=$(realpath "${1:?usage: soak.sh IPSECGW_BINARY [MINUTES] [TUNNELS] [RATE]}")
MINUTES=${2:-30} TUNNELS=${3:-3} RATE=${4:-100}
PY=/usr/bin/python3
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
ig_require root
ig_require strongswan
IG_TAG=igs$$
trap ig_cleanup_all EXIT
trap 'exit 130' INT TERM HUP
IG_STEP_CLOCK=1
HOST_A=$IG_HOST_A NET_A=$IG_NET_A
PSK=soak-psk-$$-$RANDOM-secret
ig_init || exit 1
LOG=$(ig_gw_log A)
SECS=$((MINUTES * 60))

ig_step "topology: gwA and $TUNNELS charons on a bridge; ESP lifetime 60 s (strongSwan 75 s), DPD 10 s"
ig_site_a && ig_ns_add wan || exit 1
ig_veth gwA gA0 "" wan wa "" || exit 1
ig_csum_off wan wa || exit 1
links=(wa)
for i in $(seq "$TUNNELS"); do
  ig_ns_add "s$i" || exit 1
  ig_veth "s$i" pub0 "192.0.2.1$i/24" wan "w$i" "" || exit 1
  ig_exec "s$i" ip addr add "10.1$i.0.1/24" dev lo || exit 1
  ig_csum_off "s$i" pub0 && ig_csum_off wan "w$i" || exit 1
  c=to-s$i; IG_CONNS+=("$c"); links+=("w$i")
  IG_CONN_PEER[$c]=192.0.2.1$i IG_CONN_NET[$c]=10.1$i.0.0/24 IG_CONN_INIT[$c]=bi-directional
  IG_CONN_IKE[$c]=aes128-sha256-modp2048 IG_CONN_ESP[$c]=aes128-sha1-modp1024 IG_CONN_LIFE[$c]=60
  IG_CONN_DPD[$c]="{action: restart, interval: 10, timeout: 40}"
done
ig_bridge wan "${links[@]}" && ig_csum_off wan br0 || exit 1
ig_write_ike_config "$IG_WORK/gwA.yaml" "$PSK" && ig_check_config "$IG_WORK/gwA.yaml" || exit 1
for i in $(seq "$TUNNELS"); do
  pn_ss_start "s$i" "s$i" role=responder local_addr="192.0.2.1$i" remote_addr=192.0.2.1 \
    local_ts="10.1$i.0.0/24" remote_ts="$NET_A" psk="$PSK" ike=aes128-sha256-modp2048 \
    esp=aes128-sha1-modp1024 esp_lifetime=75s dpd_delay=10s dpd_timeout=40s ||
    { ig_fail "charon s$i did not start"; ig_finish soak; }
done
IG_AFP_ARGS=",framecnt=4096" ig_gw_start A "$IG_WORK/gwA.yaml" || exit 1
GW_PID=${IG_GW_PIDS[A]}
for i in $(seq "$TUNNELS"); do
  if ig_wait_status "to-s$i" "192.0.2.1$i" ACTIVE 60 && ig_wait_ping hostA "10.1$i.0.1" 20; then
    ig_pass "to-s$i ACTIVE, ping answered"
  else ig_fail "to-s$i did not come up: $(ig_status_line "to-s$i" "192.0.2.1$i")"; fi
done
sa_count() { ig_telemetry /ipsecgw/sa | $PY -c 'import json,sys; print(json.load(sys.stdin)["/ipsecgw/sa"]["count"])'; }
sleep 2
sa_start=$(sa_count)
echo "     data plane SAs after the first negotiations: $sa_start"

ig_step "numbered UDP, $RATE/s each way on each of $TUNNELS tunnels, for $MINUTES min"
t_start=$(awk -v t="$(date +%s.%N)" 'BEGIN{printf "%.3f", t + 2}')
pids=()
for i in $(seq "$TUNNELS"); do
  ig_exec hostA $PY "$here/udp_seq.py" "$HOST_A" "70$i" "10.1$i.0.1" "$RATE" "$t_start" "$SECS" "$IG_WORK/seq-a$i.json" &
  pids+=($!)
  ig_exec "s$i" $PY "$here/udp_seq.py" "10.1$i.0.1" "70$i" "$HOST_A" "$RATE" "$t_start" "$SECS" "$IG_WORK/seq-s$i.json" &
  pids+=($!)
done
rss_log=$IG_WORK/rss.log
: >"$rss_log"
while kill -0 "${pids[0]}" 2>/dev/null; do
  el=$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%d", b - a}')
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$GW_PID/status" 2>/dev/null)
  echo "$el ${rss:-gone}" >>"$rss_log"
  [ $((el % 300)) -lt 30 ] && echo "     [${el}s] ipsecgw RSS ${rss:-gone} kB, $(grep -ac 'CHILD SA installed' "$LOG") CHILD SAs installed so far"
  [ -n "$rss" ] || break
  sleep 30
done
wait "${pids[@]}"
rss=$(awk '/^VmRSS/ {print $2}' "/proc/$GW_PID/status" 2>/dev/null)
echo "$SECS ${rss:-gone}" >>"$rss_log"

ig_step "checks"
for i in $(seq "$TUNNELS"); do
  for dir in "a$i s$i" "s$i a$i"; do
    read -r from to <<<"$dir"
    ig_seq_check "$IG_WORK/seq-$from.json" "$IG_WORK/seq-$to.json" "to-s$i $from -> $to" ||
      IG_FAILS=$((IG_FAILS + 1))
  done
done
$PY - "$rss_log" <<'PY' || IG_FAILS=$((IG_FAILS + 1))
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
rows = [(int(t), int(k)) for t, k in rows if k.isdigit()]
warm = [k for t, k in rows if t >= 300] or [k for t, k in rows]
base, last, peak = warm[0], rows[-1][1], max(k for t, k in rows)
ok = last - base <= 4096
print(("ok   " if ok else "FAIL ") + f"ipsecgw RSS: {base} kB after 5 min, {last} kB at the end, peak {peak} kB "
      f"({len(rows)} samples; growth {last - base} kB, bound 4096)")
sys.exit(0 if ok else 1)
PY
for k in $(seq 40); do n=$(sa_count); [ "$n" = "$sa_start" ] && break; sleep 0.5; done
[ "$n" = "$sa_start" ] && [ "$n" = $((2 * TUNNELS)) ] && ig_pass "data plane SAs back to $n (2 per tunnel) after the retired ones are gone" ||
  ig_fail "/ipsecgw/sa count '${n:-?}', at the start $sa_start, want $((2 * TUNNELS))"
ig_telemetry /ipsecgw/stats >"$IG_WORK/stats.json"
$PY - "$IG_WORK/stats.json" "$IG_WORK" "$TUNNELS" <<'PY' || IG_FAILS=$((IG_FAILS + 1))
import json, sys
st = json.load(open(sys.argv[1]))["/ipsecgw/stats"]
work, n = sys.argv[2], int(sys.argv[3])
sent_a = sum(json.load(open(f"{work}/seq-a{i}.json"))["sent"] for i in range(1, n + 1))
sent_s = sum(json.load(open(f"{work}/seq-s{i}.json"))["sent"] for i in range(1, n + 1))
out, inn = st["total_esp_out_packets"], st["total_esp_in_packets"]
drops = {k[len("total_drop_"):]: v for k, v in st.items() if k.startswith("total_drop_") and v}
bad = {k: v for k, v in drops.items() if k in ("no_sa", "replay", "outside_window", "bad_icv", "trapped",
                                                "sa_down", "no_policy")}
ok = out >= sent_a and inn >= sent_s and not bad
print(("ok   " if ok else "FAIL ") + f"counters: {out} ESP out >= {sent_a} datagrams sent by the site, "
      f"{inn} ESP in >= {sent_s} sent by the peers; drops {drops or 'none'}" + (f"; unexpected {bad}" if bad else ""))
sys.exit(0 if ok else 1)
PY
ours=$(grep -ac 'quick mode (rekey) initiated' "$LOG"); theirs=$(grep -ac 'quick mode response' "$LOG")
[ $((ours + theirs)) -ge $((MINUTES * TUNNELS)) ] && ig_pass "rekeys: $ours initiated by us, $theirs by strongSwan" ||
  ig_fail "only $ours + $theirs rekeys in $MINUTES min over $TUNNELS tunnels"
ig_gw_stop A
[ "${IG_GW_RC[A]}" = 0 ] && ig_pass "ipsecgw exit 0" || ig_fail "ipsecgw exit ${IG_GW_RC[A]}"
ig_finish "soak ($MINUTES min, $TUNNELS tunnels, $RATE/s each way)" "in $(( $(date +%s) - IG_T0 )) s"
