#!/usr/bin/env bash
# Live reconfiguration, CSIT style: one ipsecgw with three connections to three strongSwan
# peers (s1..s3 on a bridge; s4 waits for a fourth), a numbered UDP stream (one datagram every
# 10 ms, echoed back; udp_stream.py) through each tunnel, and then, through the real OpenStack
# client on the gateway's API:
#   - create to-s4 (reusing to-s1's policies): ACTIVE, its stream loses nothing;
#   - update to-s3 in place (DPD timers and action, MTU 1200): no renegotiation, same SPIs, and
#     the new MTU reaches the data plane (a 1300-byte DF ping passed before, gets "frag
#     needed" after);
#   - change to-s2's IPsec policy (PFS group14 -> group5): to-s2 alone renegotiates, new SPIs,
#     strongSwan's CHILD SA uses MODP_1536, make-before-break: its stream loses nothing;
#   - disable to-s2: DOWN, strongSwan's CHILD SA deleted (Delete received), its traffic dropped;
#     enable: ACTIVE again, its stream comes back;
#   - delete to-s4: gone from the list and the telemetry, strongSwan's SAs deleted.
# Throughout, to-s1 and to-s3 lose no datagram and keep their SPIs (/ipsecgw/connections),
# and nothing of the streams or pings crosses the public link in the clear, although
# unmatched_traffic is "forward" (with a gateway) so that a gap would show.
#
# usage: e2e_reconf.sh IPSECGW_BINARY   (root; IG_KEEP=1 keeps logs and pcaps)
# exit: 0 pass, 1 fail, 77 skip (not root / no strongSwan / no openstack client)
# shellcheck disable=SC2015  # "check && ig_pass ... || ig_fail ...": ig_pass always returns 0
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
IPSECGW=$(realpath "${1:?usage: e2e_reconf.sh IPSECGW_BINARY}")
PY=/usr/bin/python3
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
ig_require root
ig_require strongswan
ig_require openstack
IG_TAG=igr$$
trap ig_cleanup_all EXIT  # also kills the streams and echo servers (IG_BG_PIDS)
trap 'exit 130' INT TERM HUP
IG_STEP_CLOCK=1
PSK=reconf-psk-$$-$RANDOM-secret
PORT=7777  # the streams' UDP port (ig_stream_start; the echo servers)
COMBO=aes128-sha256-modp2048

ig_init || exit 1
ig_require_tools tshark || exit 1

# The OpenStack client, the connection rows and the numbered streams: lib.sh's ig_os, ig_conn,
# ig_spis, ig_wait_state, ig_stream_* (shared with e2e_multipeer).
# ss_child INST : strongSwan's CHILD SA line(s) of instance INST
ss_child() { pn_swanctl "$1" --list-sas 2>/dev/null | grep 'net: #.*INSTALLED'; }
# wait_ss_gone INST SECONDS : until strongSwan INST has no INSTALLED CHILD SA
wait_ss_gone() {
  local end=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -le "$end" ]; do ss_child "$1" >/dev/null || return 0; sleep 0.3; done
  return 1
}
# check_no_loss NAME LABEL : every datagram of the stream echoed
check_no_loss() {
  local sent got miss
  sent=$(ig_stream_field "$1" sent) got=$(ig_stream_field "$1" received) miss=$(ig_stream_field "$1" missing)
  [ "$sent" -gt 100 ] && [ "$sent" = "$got" ] && ig_pass "$2: $got/$sent datagrams echoed, none lost" ||
    ig_fail "$2: $got/$sent echoed, missing $miss"
}
# df_ping HOST : 2 pings of 1300 bytes with DF from hostA; prints ping's output
df_ping() { timeout 15 ip netns exec "$(ig_ns hostA)" ping -n -c 2 -i 0.3 -W 1 -M "do" -s 1300 "$1" 2>&1; }

ig_step "topology: hostA -- gwA -- bridge -- s1 s2 s3 s4 (strongSwan)"
ig_site_a && ig_ns_add wan s1 s2 s3 s4 || exit 1
ig_veth gwA gA0 "" wan wa "" || exit 1
ig_csum_off wan wa || exit 1
for i in 1 2 3 4; do
  ig_veth "s$i" pub0 "192.0.2.1$i/24" wan "w$i" "" || exit 1
  ig_exec "s$i" ip addr add "10.1$i.0.1/24" dev lo || exit 1
  ig_csum_off "s$i" pub0 && ig_csum_off wan "w$i" || exit 1
  ip netns exec "$(ig_ns "s$i")" $PY "$IG_STREAM" echo $PORT &  # exec chain: $! is python's
  IG_BG_PIDS+=("$!")
done
ig_bridge wan wa w1 w2 w3 w4 && ig_csum_off wan br0 || exit 1
for i in 1 2 3; do
  c=to-s$i; IG_CONNS+=("$c")
  IG_CONN_PEER[$c]=192.0.2.1$i IG_CONN_NET[$c]=10.1$i.0.0/24 IG_CONN_INIT[$c]=bi-directional
  IG_CONN_IKE[$c]=$COMBO IG_CONN_ESP[$c]=$COMBO
done
# Unmatched traffic forwarded to s1: a connection without a policy would leak in the clear.
IG_PUB_GW=192.0.2.11
ig_write_ike_config "$IG_WORK/gwA.yaml" "$PSK" || exit 1
sed -i 's/unmatched_traffic: drop/unmatched_traffic: forward/' "$IG_WORK/gwA.yaml"
ig_check_config "$IG_WORK/gwA.yaml" || exit 1
for i in 1 2 3 4; do
  # s2 also accepts PFS group5 (MODP_1536): the policy change below must negotiate it.
  esp=$COMBO; [ $i = 2 ] && esp="$COMBO,aes128-sha256-modp1536"
  pn_ss_start "s$i" "s$i" role=responder local_addr="192.0.2.1$i" remote_addr=192.0.2.1 \
    local_ts="10.1$i.0.0/24" remote_ts="$IG_NET_A" psk="$PSK" ike="$COMBO" esp="$esp" ||
    { ig_fail "charon s$i did not start"; ig_finish e2e_reconf; }
done
ig_gw_start A "$IG_WORK/gwA.yaml" --state-file "$IG_WORK/state.yaml" || exit 1
LOG=$(ig_gw_log A)

ig_step "three tunnels up, a numbered stream through each"
for i in 1 2 3; do
  ig_wait_state "to-s$i" ACTIVE 40 && ig_pass "to-s$i: ACTIVE" || { ig_fail "to-s$i: not ACTIVE"; tail -30 "$LOG"; ig_finish e2e_reconf; }
  ig_wait_ping hostA "10.1$i.0.1" 10 || ig_fail "to-s$i: no first ping reply"
done
out=$(df_ping 10.13.0.1)
grep -q ' 2 received' <<<"$out" && ig_pass "to-s3: 1300-byte DF ping passes at MTU 1500" ||
  ig_fail "to-s3: DF ping at MTU 1500: $(grep -E 'received|mtu' <<<"$out" | head -2)"
declare -A SPI0
for i in 1 2 3; do SPI0[to-s$i]=$(ig_spis "to-s$i"); done
ig_cap_start clear wan br0 "icmp or udp port $PORT" || exit 1
for i in 1 2 3; do ig_stream_start "s$i" "10.1$i.0.1" $PORT; done
LOG_MARK=$(wc -l <"$LOG")
sleep 2

ig_step "create to-s4 through the client"
ig_os vpn ipsec site connection create --vpnservice site-a --ikepolicy ike-to-s1 --ipsecpolicy esp-to-s1 \
  --peer-address 192.0.2.14 --peer-id 192.0.2.14 --psk "$PSK" --peer-cidr 10.14.0.0/24 \
  --dpd action=hold,interval=10,timeout=60 to-s4 >/dev/null && ig_pass "to-s4 created" ||
  ig_fail "to-s4: create failed"
ig_wait_state to-s4 ACTIVE 40 && ig_pass "to-s4: ACTIVE" || ig_fail "to-s4: not ACTIVE"
pn_ss_wait_child s4 10 && ig_pass "s4: CHILD SA INSTALLED" || ig_fail "s4: no CHILD SA"
ig_wait_ping hostA 10.14.0.1 10 || ig_fail "to-s4: no first ping reply"
ig_stream_start s4 10.14.0.1 $PORT

ig_step "update to-s3 in place: DPD and MTU"
ig_os vpn ipsec site connection set --dpd action=restart,interval=5,timeout=30 --mtu 1200 to-s3 &&
  ig_pass "to-s3: set --dpd --mtu 1200" || ig_fail "to-s3: set failed"
ig_wait_log "to-s3: settings updated in place" 5 && ig_pass "to-s3: updated in place (log)" ||
  ig_fail "to-s3: no in-place update in the log"
out=$(df_ping 10.13.0.1)
! grep -q ' [12] received' <<<"$out" && grep -qiE 'mtu|too long' <<<"$out" &&
  ig_pass "to-s3: 1300-byte DF ping now refused: $(grep -oiE 'mtu = [0-9]+|message too long' <<<"$out" | head -1)" ||
  ig_fail "to-s3: DF ping after MTU 1200: $(grep -E 'received|mtu' <<<"$out" | head -2)"

ig_step "change to-s2's IPsec policy (PFS group14 -> group5): make-before-break"
ig_os vpn ipsec policy set --pfs group5 esp-to-s2 && ig_pass "esp-to-s2: set --pfs group5" ||
  ig_fail "esp-to-s2: set failed"
end=$(( $(date +%s) + 40 ))
while [ "$(date +%s)" -le "$end" ]; do
  s=$(ig_spis to-s2); [ "$s" != "${SPI0[to-s2]}" ] && [ "$(ig_conn to-s2 state)" = ACTIVE ] && break
  sleep 0.3
done
s=$(ig_spis to-s2)
[ "$s" != "${SPI0[to-s2]}" ] && ig_pass "to-s2: renegotiated, SPIs ${SPI0[to-s2]} -> $s" ||
  ig_fail "to-s2: SPIs unchanged ($s)"
ig_wait_state to-s2 ACTIVE 10 && ig_pass "to-s2: ACTIVE" || ig_fail "to-s2: not ACTIVE"
sleep 7  # the old pair's grace period (5 s) ends: its Deletes go out
ss_child s2 | grep -q 'MODP_1536' && [ "$(ss_child s2 | wc -l)" = 1 ] &&
  ig_pass "s2: one CHILD SA, with MODP_1536 (PFS group5)" ||
  ig_fail "s2: CHILD SAs: $(ss_child s2)"
ig_stream_stop s2 || ig_fail "s2: stream did not stop"
# Make-before-break as strongSwan saw it: its new CHILD SA was installed while the old one still
# was, and the old one went on our Delete.
order=$(grep -aoE 'net\{[0-9]+\} (established|state change: INSTALLED => DELETING)|received DELETE for ESP' "$(pn_ss_log s2)" | tr '\n' ';')
grep -qE 'net\{1\} established;net\{2\} established;(received DELETE for ESP;)+net\{1\} state change: INSTALLED => DELETING' <<<"$order" &&
  ig_pass "s2: new CHILD SA installed before the old one was deleted (Delete from us)" ||
  ig_fail "s2: CHILD SA order: $order"
sent=$(ig_stream_field s2 sent) got=$(ig_stream_field s2 received) last=$(ig_stream_field s2 last_echoed)
[ "$last" -ge $(( sent - 10 )) ] &&
  ig_pass "to-s2 across the renegotiation: $got/$sent echoed, missing $(ig_stream_field s2 missing) (the responder installs its inbound SA on QM3)" ||
  ig_fail "to-s2 across the renegotiation: $got/$sent echoed, last #$last, missing $(ig_stream_field s2 missing)"

ig_step "disable to-s2: Delete, traffic dropped; enable again"
ig_stream_start s2 10.12.0.1 $PORT
ig_os vpn ipsec site connection set --disable to-s2 && ig_pass "to-s2: set --disable" ||
  ig_fail "to-s2: set --disable failed"
ig_wait_state to-s2 DOWN 10 && ig_pass "to-s2: DOWN" || ig_fail "to-s2: not DOWN"
wait_ss_gone s2 10 && ig_pass "s2: CHILD SA deleted (Delete received)" || ig_fail "s2: CHILD SA still installed"
sleep 1
ig_os vpn ipsec site connection set --enable to-s2 && ig_pass "to-s2: set --enable" ||
  ig_fail "to-s2: set --enable failed"
ig_wait_state to-s2 ACTIVE 40 && ig_pass "to-s2: ACTIVE again" || ig_fail "to-s2: not ACTIVE"
sleep 2
ig_stream_stop s2 || ig_fail "s2: stream did not stop"
sent=$(ig_stream_field s2 sent) got=$(ig_stream_field s2 received) last=$(ig_stream_field s2 last_echoed)
[ "$got" -gt 0 ] && [ "$got" -lt "$sent" ] && [ "$last" -ge $(( sent - 10 )) ] &&
  ig_pass "to-s2: $((sent - got)) of $sent datagrams dropped while disabled, stream recovered (last echoed #$last of $sent)" ||
  ig_fail "to-s2: $got/$sent echoed, last #$last, missing $(ig_stream_field s2 missing)"

ig_step "delete to-s4"
ig_stream_stop s4 || ig_fail "s4: stream did not stop"
check_no_loss s4 "to-s4 while up"
ig_os vpn ipsec site connection delete to-s4 && ig_pass "to-s4: deleted" || ig_fail "to-s4: delete failed"
wait_ss_gone s4 10 && ig_pass "s4: CHILD SA deleted (Delete received)" || ig_fail "s4: CHILD SA still installed"
end=$(( $(date +%s) + 5 ))
while [ "$(date +%s)" -le "$end" ] && [ -n "$(ig_conn to-s4 state)" ]; do sleep 0.3; done
[ -z "$(ig_conn to-s4 state)" ] && ig_pass "to-s4: gone from /ipsecgw/connections" ||
  ig_fail "to-s4: still in /ipsecgw/connections"
n=$(ig_os vpn ipsec site connection list -f value -c Name | sort | tr '\n' ' ')
[ "$n" = "to-s1 to-s2 to-s3 " ] && ig_pass "connection list: $n" || ig_fail "connection list: '$n'"

ig_step "the untouched tunnels: no loss, same SPIs"
for i in 1 3; do
  ig_stream_stop "s$i" || ig_fail "s$i: stream did not stop"
  check_no_loss "s$i" "to-s$i"
  s=$(ig_spis "to-s$i")
  [ "$s" = "${SPI0[to-s$i]}" ] && [ "$(ig_conn "to-s$i" state)" = ACTIVE ] &&
    ig_pass "to-s$i: ACTIVE, SPIs kept ($s)" || ig_fail "to-s$i: SPIs ${SPI0[to-s$i]} -> $s"
done
ig_cap_stop clear
clear=$(tshark -n -r "$(ig_cap_file clear)" 2>/dev/null | wc -l)
[ "$clear" = 0 ] && ig_pass "public link: no ICMP and no stream datagram in the clear" ||
  ig_fail "public link: $clear frames in the clear"
late=$(tail -n +$(( LOG_MARK + 1 )) "$LOG" | grep -aE "to-s(1|3).*(initiating|renegotiating|removed|admin state)")
[ -z "$late" ] && ig_pass "log: to-s1 and to-s3 never renegotiated" ||
  ig_fail "log: to-s1/to-s3 renegotiated: $(tail -3 <<<"$late")"
ig_gw_stop A
[ "${IG_GW_RC[A]}" = 0 ] && ig_pass "ipsecgw exit 0" || ig_fail "ipsecgw exit ${IG_GW_RC[A]}"
ig_finish e2e_reconf "in $(( $(date +%s) - IG_T0 )) s"
