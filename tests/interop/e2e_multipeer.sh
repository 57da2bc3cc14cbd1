#!/usr/bin/env bash
# Several connections to one peer (issue #9): one strongSwan (s1) with one IKEv1 connection and
# two children (net: 10.11.0.0/24, net2: 10.21.0.0/24, both to site A's 10.1.0.0/24), and
# ipsecgw with two site connections to it (to-s1a, to-s1b). Checked:
#   - both ACTIVE over ONE ISAKMP SA (strongSwan lists one IKE SA with two CHILD SAs);
#   - a numbered UDP stream (10 ms, echoed; udp_stream.py) through each tunnel;
#   - to-s1a deleted through the real OpenStack client: strongSwan's net CHILD SA goes
#     (Delete received), its net2 CHILD SA and the IKE SA stay; to-s1b keeps its SPIs and its
#     stream loses no datagram.
#
# usage: e2e_multipeer.sh IPSECGW_BINARY   (root; IG_KEEP=1 keeps logs)
# exit: 0 pass, 1 fail, 77 skip (not root / no strongSwan / no openstack client)
# shellcheck disable=SC2015  # "check && ig_pass ... || ig_fail ...": ig_pass always returns 0
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
IPSECGW=$(realpath "${1:?usage: e2e_multipeer.sh IPSECGW_BINARY}")
PY=/usr/bin/python3
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
ig_require root
ig_require strongswan
ig_require openstack
IG_TAG=igm$$
trap ig_cleanup_all EXIT  # also kills the streams and echo servers (IG_BG_PIDS)
trap 'exit 130' INT TERM HUP
IG_STEP_CLOCK=1
PSK=multipeer-psk-$$-$RANDOM-secret
PORT=7777  # the streams' UDP port (ig_stream_start; the echo servers)
COMBO=aes128-sha256-modp2048

ig_init || exit 1

# The OpenStack client, the connection rows and the numbered streams: lib.sh's ig_os, ig_conn,
# ig_spis, ig_wait_state, ig_stream_* (shared with e2e_reconf).
sas() { pn_swanctl s1 --list-sas 2>/dev/null; }
# children CHILD : strongSwan's INSTALLED CHILD SAs named CHILD
children() { sas | grep -c "^ *$1: #.*INSTALLED"; }
ike_sas() { sas | grep -c '^peer: #.*ESTABLISHED'; }
wait_children() {  # CHILD COUNT SECONDS
  local end=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -le "$end" ]; do [ "$(children "$1")" = "$2" ] && return 0; sleep 0.3; done
  return 1
}

ig_step "topology: hostA -- gwA -- s1 (strongSwan, two children)"
ig_site_a && ig_ns_add s1 || exit 1
ig_veth gwA gA0 "" s1 pub0 "192.0.2.11/24" || exit 1
ig_csum_off s1 pub0 || exit 1
ig_exec s1 ip addr add 10.11.0.1/24 dev lo && ig_exec s1 ip addr add 10.21.0.1/24 dev lo || exit 1
# One echo server per address: replies leave from the address the stream went to (strongSwan's
# route to site A has one source address for both children).
for a in 10.11.0.1 10.21.0.1; do
  ip netns exec "$(ig_ns s1)" $PY "$IG_STREAM" echo $PORT $a &  # exec chain: $! is python's
  IG_BG_PIDS+=("$!")
done
for c in a b; do
  n=to-s1$c; IG_CONNS+=("$n")
  IG_CONN_PEER[$n]=192.0.2.11 IG_CONN_INIT[$n]=bi-directional
  IG_CONN_IKE[$n]=$COMBO IG_CONN_ESP[$n]=$COMBO
done
IG_CONN_NET[to-s1a]=10.11.0.0/24 IG_CONN_NET[to-s1b]=10.21.0.0/24
ig_write_ike_config "$IG_WORK/gwA.yaml" "$PSK" || exit 1
ig_check_config "$IG_WORK/gwA.yaml" || exit 1
# The second child: swanctl merges the two "children" sections of the connection.
net2=$'children {\n      net2 {\n        local_ts = 10.21.0.0/24\n        remote_ts = '"$IG_NET_A"$'\n        esp_proposals = '"$COMBO"$'\n      }\n    }'
pn_ss_start s1 s1 role=responder local_addr=192.0.2.11 remote_addr=192.0.2.1 \
  local_ts=10.11.0.0/24 remote_ts="$IG_NET_A" psk="$PSK" ike="$COMBO" esp="$COMBO" \
  extra_conn="$net2" || { ig_fail "charon s1 did not start"; ig_finish e2e_multipeer; }
ig_gw_start A "$IG_WORK/gwA.yaml" --state-file "$IG_WORK/state.yaml" || exit 1
LOG=$(ig_gw_log A)

ig_step "two connections, one ISAKMP SA, a CHILD SA each"
for c in a b; do
  ig_wait_state "to-s1$c" ACTIVE 40 && ig_pass "to-s1$c: ACTIVE" ||
    { ig_fail "to-s1$c: not ACTIVE"; tail -30 "$LOG"; ig_finish e2e_multipeer; }
done
wait_children net2 1 10 && [ "$(children net)" = 1 ] && ig_pass "s1: CHILD SAs net and net2 INSTALLED" ||
  ig_fail "s1: CHILD SAs: $(sas | grep INSTALLED)"
[ "$(ike_sas)" = 1 ] && ig_pass "s1: one IKE SA" || ig_fail "s1: $(ike_sas) IKE SAs"
ig_wait_ping hostA 10.11.0.1 10 || ig_fail "to-s1a: no first ping reply"
ig_wait_ping hostA 10.21.0.1 10 || ig_fail "to-s1b: no first ping reply"
SPI_B=$(ig_spis to-s1b)
ig_stream_start a 10.11.0.1 $PORT
ig_stream_start b 10.21.0.1 $PORT
sleep 2

ig_step "delete to-s1a through the client"
LOG_MARK=$(wc -l <"$LOG")
ig_os vpn ipsec site connection delete to-s1a && ig_pass "to-s1a: deleted" || ig_fail "to-s1a: delete failed"
wait_children net 0 10 && ig_pass "s1: CHILD SA net deleted (Delete received)" ||
  ig_fail "s1: net still installed"
sleep 3
ig_stream_stop a || ig_fail "a: stream did not stop"
ig_stream_stop b || ig_fail "b: stream did not stop"
[ "$(children net2)" = 1 ] && [ "$(ike_sas)" = 1 ] &&
  ig_pass "s1: CHILD SA net2 and the IKE SA stay" || ig_fail "s1: after the delete: $(sas)"
s=$(ig_spis to-s1b)
[ "$s" = "$SPI_B" ] && [ "$(ig_conn to-s1b state)" = ACTIVE ] &&
  ig_pass "to-s1b: ACTIVE, SPIs kept ($s)" || ig_fail "to-s1b: SPIs $SPI_B -> $s, $(ig_conn to-s1b state)"
sent=$(ig_stream_field b sent) got=$(ig_stream_field b received)
[ "$sent" -gt 100 ] && [ "$sent" = "$got" ] && ig_pass "to-s1b: $got/$sent datagrams echoed, none lost" ||
  ig_fail "to-s1b: $got/$sent echoed, missing $(ig_stream_field b missing)"
got=$(ig_stream_field a received) sent=$(ig_stream_field a sent) last=$(ig_stream_field a last_echoed)
[ "$got" -gt 100 ] && [ "$last" -lt $(( sent - 100 )) ] &&
  ig_pass "to-s1a: $got/$sent echoed, none after its deletion (last #$last)" ||
  ig_fail "to-s1a: $got/$sent echoed, last #$last"
late=$(tail -n +$(( LOG_MARK + 1 )) "$LOG" | grep -aE "to-s1b.*(initiat|renegotiat|removed|ISAKMP SA established)")
[ -z "$late" ] && ig_pass "log: to-s1b never renegotiated" ||
  ig_fail "log: to-s1b renegotiated: $(tail -2 <<<"$late")"
ig_gw_stop A
[ "${IG_GW_RC[A]}" = 0 ] && ig_pass "ipsecgw exit 0" || ig_fail "ipsecgw exit ${IG_GW_RC[A]}"
ig_finish e2e_multipeer "in $(( $(date +%s) - IG_T0 )) s"
