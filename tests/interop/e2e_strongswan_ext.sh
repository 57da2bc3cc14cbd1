#!/usr/bin/env bash
# More end-to-end cases against a real peer: the ipsecgw binary (IKE daemon, DPDK
# net_af_packet) and strongSwan 5.9.x (charon, kernel-libipsec) in private namespaces. Same
# building blocks as e2e_strongswan.sh (lib.sh for ipsecgw, peer-lib.sh for charon).
#
# Cases (one per run, fresh namespaces, everything removed on exit):
#   sweep        one ipsecgw with three connections to three charons on a bridge, each with
#                another IKE/ESP/PFS combination; first ipsecgw initiates all three, then
#                (fresh ipsecgw and charons) each charon initiates. Per connection: our status
#                ACTIVE, swanctl ESTABLISHED + INSTALLED with our SPIs and the configured
#                algorithms (DH group in the ESP line = PFS), ping both ways.
#   nat          ipsecgw behind a middle namespace doing nft masquerade; ipsecgw initiates.
#                Our log: NAT detected (local), status ACTIVE esp-in-udp; strongSwan sees the
#                translated address (192.0.2.254) and logs the remote host behind NAT; the
#                capture at strongSwan holds nothing from the private address; ping both
#                ways; the nft masquerade counter shows the NAT translated our flows.
#   nat-peer     strongSwan (172.16.0.2) behind the masquerading namespace, ipsecgw public;
#                strongSwan initiates. Our connection's peer is the NAT's address 192.0.2.254;
#                our log: NAT detected (remote, not local); status ACTIVE esp-in-udp, SPIs as
#                swanctl shows them, swanctl's local endpoint is the private address; the
#                capture at our side holds only 192.0.2.254; ping both ways; nft counter.
#   dpd-restart  dpd restart 1 s / 4 s. charon SIGKILLed -> our log "dead peer detected" and
#                "DPD action restart", status leaves ACTIVE (and the CHILD SAs are gone from
#                the data plane) within timeout + slack; charon started again with the same
#                configuration -> we re-initiate, ACTIVE with new SPIs matching swanctl, ping.
#   dpd-hold     dpd hold 1 s / 4 s. charon SIGKILLed -> status DOWN (dead peer detected
#                (DPD)), /ipsecgw/sa empty, no re-initiation by us while charon is back and no
#                traffic flows, the process stays up; a ping from hostA hits the connection's
#                trap policy (counted as drop_trapped, never sent in the clear) and its acquire
#                makes us initiate -> ACTIVE again, ping; exit 0 on SIGTERM.
#   rekey        ipsecgw initiates, with a CHILD SA soft packet limit of 12500 (hidden option);
#                numbered UDP at 1000/s each way for 60 s (udp_seq.py) while we rekey at the
#                soft limit and strongSwan rekeys twice (swanctl --rekey): >= 2 rekeys from each
#                side, our outbound switch waits for strongSwan's traffic on the new SA, every
#                datagram arrives exactly once both ways, swanctl shows our current SPIs.
#   shutdown     ipsecgw initiates, strongSwan's DPD every 30 s; SIGTERM to ipsecgw: within 3 s
#                swanctl --list-sas shows no SA, charon logged our Deletes (ESP SPI, IKE_SA),
#                ipsecgw exits 0.
#
# usage: e2e_strongswan_ext.sh IPSECGW_BINARY CASE   (root; IG_KEEP=1 keeps logs and pcaps)
# exit: 0 pass, 1 fail, 77 skip (not root / no strongSwan / no nft)
# shellcheck disable=SC2015  # "check && ig_pass ... || ig_fail ...": ig_pass always returns 0
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
IPSECGW=$(realpath "${1:?usage: e2e_strongswan_ext.sh IPSECGW_BINARY CASE}")
CASE=${2:?case: sweep | nat | nat-peer | dpd-restart | dpd-hold | rekey | shutdown}
PY=/usr/bin/python3
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"             # and peer-lib.sh, for charon
ig_require root
ig_require strongswan
case $CASE in sweep|nat|nat-peer|dpd-restart|dpd-hold|rekey|shutdown) ;; *) echo "unknown case $CASE" >&2; exit 2 ;; esac
if [ "${CASE#nat}" != "$CASE" ]; then ig_require nft; fi
IG_TAG=igx$$
trap ig_cleanup_all EXIT
trap 'exit 130' INT TERM HUP

IG_STEP_CLOCK=1              # ig_step prints the seconds since the start
finish() { ig_finish "e2e_strongswan_ext ($CASE)" "in $(( $(date +%s) - IG_T0 )) s"; }

HOST_A=$IG_HOST_A NET_A=$IG_NET_A
PSK=e2e-psk-$$-$RANDOM-secret

ig_init || exit 1
$PY -c 'import json' || exit 1

# gw_config : $IG_WORK/gwA.yaml from the IG_CONN_* arrays (lib.sh), checked by ipsecgw
gw_config() {
  ig_write_ike_config "$IG_WORK/gwA.yaml" "$PSK" && ig_check_config "$IG_WORK/gwA.yaml"
}

LOG=$(ig_gw_log A)
# status_line CONN : our last status line for the connection
status_line() { ig_status_line "$1" "${IG_CONN_PEER[$1]}"; }
# wait_status CONN REGEX SECONDS : the last status line matches "): REGEX"
wait_status() { ig_wait_status "$1" "${IG_CONN_PEER[$1]}" "$2" "$3"; }
spi_of() { sed -n "s/.*spi_$1 0x\([0-9a-f]*\).*/\1/p" <<<"$2"; }
# sa_count : number of SAs in the data plane (/ipsecgw/sa, refreshed every second)
sa_count() { ig_telemetry /ipsecgw/sa | $PY -c 'import json,sys; print(json.load(sys.stdin)["/ipsecgw/sa"]["count"])'; }

# ss_start INST NS ADDR NET ROLE IKE ESP [extra pn_ss_start options]
ss_start() {
  local inst=$1 ns=$2 addr=$3 net=$4 role=$5 ike=$6 esp=$7; shift 7
  pn_ss_start "$inst" "$ns" role="$role" local_addr="$addr" remote_addr="${SS_REMOTE:-192.0.2.1}" local_ts="$net" \
    remote_ts=$NET_A psk="$PSK" ike="$ike" esp="$esp" "$@" || { ig_fail "charon $inst did not start"; return 1; }
}

# check_tunnel CONN INST SS_HOST [nat] : ACTIVE, SPIs and algorithms as swanctl shows them,
# ping both ways. Sets LAST_IN/LAST_OUT (our SPIs).
check_tunnel() {
  local c=$1 inst=$2 host=$3 st sas ss_in ss_out e h g
  if wait_status "$c" ACTIVE 30; then ig_pass "$c: $(status_line "$c" | sed 's/.*ipsecgw.app: //')"
  else ig_fail "$c: our status is not ACTIVE: '$(status_line "$c")'"; tail -20 "$LOG"; tail -10 "$(pn_ss_log "$inst")"; return 1; fi
  st=$(status_line "$c")
  LAST_IN=$(spi_of in "$st"); LAST_OUT=$(spi_of out "$st")
  grep -q 'esp-in-udp' <<<"$st" || ig_fail "$c: expected ESP in UDP (libipsec fakes NAT): $st"
  pn_ss_wait_child "$inst" 10 || ig_fail "$c: strongSwan CHILD SA not INSTALLED"
  sas=$(pn_swanctl "$inst" --list-sas 2>&1)
  printf '%s\n' "$sas" >"$IG_WORK/list-sas-$inst"
  IFS=- read -r e h g <<<"${IG_CONN_IKE[$c]}"
  grep -qE '^peer: #[0-9]+, ESTABLISHED, IKEv1' <<<"$sas" &&
    grep -qF "$(ig_ss_enc "$e")/$(ig_ss_integ "$h")/$(ig_ss_prf "$h")/$(ig_ss_dh "$g")" <<<"$sas" &&
    ig_pass "$c: strongSwan IKE SA ESTABLISHED $(ig_ss_enc "$e")/$(ig_ss_integ "$h")/$(ig_ss_prf "$h")/$(ig_ss_dh "$g")" ||
    ig_fail "$c: strongSwan IKE SA not ESTABLISHED with ${IG_CONN_IKE[$c]}: $sas"
  IFS=- read -r e h g <<<"${IG_CONN_ESP[$c]}"
  grep -qE "^  net: #[0-9]+, reqid [0-9]+, INSTALLED, TUNNEL-in-UDP, ESP:$(ig_ss_enc "$e")/$(ig_ss_integ "$h")/$(ig_ss_dh "$g")\$" <<<"$sas" &&
    ig_pass "$c: strongSwan CHILD SA INSTALLED ESP:$(ig_ss_enc "$e")/$(ig_ss_integ "$h")/$(ig_ss_dh "$g") (PFS)" ||
    ig_fail "$c: strongSwan CHILD SA not INSTALLED with ${IG_CONN_ESP[$c]}: $sas"
  ss_in=$(sed -nE 's/^    in  ([0-9a-f]{8}).*/\1/p' <<<"$sas" | tail -1)
  ss_out=$(sed -nE 's/^    out ([0-9a-f]{8}).*/\1/p' <<<"$sas" | tail -1)
  if [ -n "$ss_in" ] && [ "$ss_in" = "$LAST_OUT" ] && [ "$ss_out" = "$LAST_IN" ]; then
    ig_pass "$c: SPIs agree: ours in $LAST_IN out $LAST_OUT"
  else ig_fail "$c: SPIs differ: ours in '$LAST_IN' out '$LAST_OUT', strongSwan in '$ss_in' out '$ss_out'"; fi
  if ig_wait_ping hostA "$host" 10; then ig_ping_check "$c: ping hostA -> $host" hostA "$host" 3
  else ig_fail "$c: no ping reply hostA -> $host"; fi
  ig_ping_check "$c: ping $host -> hostA" "$inst" "$HOST_A" 3 -I "$host"
}

# conn_to_ss PEER INITIATOR IKE ESP : the one connection c="to-ss", to 10.2.0.0/24 behind PEER
conn_to_ss() {
  c="to-ss"; IG_CONNS=("$c")
  IG_CONN_PEER[$c]=$1 IG_CONN_NET[$c]=10.2.0.0/24 IG_CONN_INIT[$c]=$2 IG_CONN_IKE[$c]=$3 IG_CONN_ESP[$c]=$4
}

# stop_gw : SIGTERM to our ipsecgw, which must exit 0
stop_gw() {
  ig_gw_stop A
  [ "${IG_GW_RC[A]}" = 0 ] && ig_pass "ipsecgw exit 0" || ig_fail "ipsecgw exit ${IG_GW_RC[A]}"
}

# nat_checks WHERE FILTER WHAT : the nft masquerade counter in namespace nat; the capture "pub"
# (taken WHERE) holds nothing with 172.16.0.0/24 and some frames matching FILTER (WHAT); stop_gw
nat_checks() {
  local nftc pk priv natd
  nftc=$(ig_exec nat nft list table ip pnnat 2>&1)
  pk=$(sed -nE 's/.*counter packets ([0-9]+) .*masquerade.*/\1/p' <<<"$nftc")
  [ "${pk:-0}" -ge 2 ] && ig_pass "nft masquerade counter: $pk new flows translated (IKE 500 and 4500)" ||
    ig_fail "nft masquerade counter ${pk:-?}: $nftc"
  ig_cap_stop pub
  priv=$(tshark -n -r "$(ig_cap_file pub)" -Y 'ip.addr == 172.16.0.0/24' 2>/dev/null | wc -l)
  natd=$(tshark -n -r "$(ig_cap_file pub)" -Y "$2" 2>/dev/null | wc -l)
  [ "$priv" = 0 ] && [ "$natd" -gt 0 ] && ig_pass "capture $1: $natd frames $3, none with 172.16.0.0/24" ||
    ig_fail "capture $1: $priv frames with the private address, $natd $3"
  stop_gw
}

case $CASE in
# ------------------------------------------------------------------------------------ sweep
sweep)
  ig_step "topology: gwA and three charons on a bridge"
  ig_site_a && ig_ns_add wan s1 s2 s3 || exit 1
  ig_veth gwA gA0 "" wan wa "" || exit 1
  ig_csum_off wan wa || exit 1
  combos=("aes192-sha256-modp1536 aes128-sha256-modp2048"
          "aes128-sha256-modp2048 aes256-sha1-modp1024"
          "aes256-sha1-modp1024 aes192-sha1-modp1536")
  for i in 1 2 3; do
    ig_veth "s$i" pub0 "192.0.2.1$i/24" wan "w$i" "" || exit 1
    ig_exec "s$i" ip addr add "10.1$i.0.1/24" dev lo || exit 1
    ig_csum_off "s$i" pub0 && ig_csum_off wan "w$i" || exit 1
    c=to-s$i; IG_CONNS+=("$c")
    IG_CONN_PEER[$c]=192.0.2.1$i IG_CONN_NET[$c]=10.1$i.0.0/24
    read -r IG_CONN_IKE[$c] IG_CONN_ESP[$c] <<<"${combos[$((i - 1))]}"
  done
  ig_bridge wan wa w1 w2 w3 && ig_csum_off wan br0 || exit 1
  for round in we ss; do
    for c in "${IG_CONNS[@]}"; do IG_CONN_INIT[$c]=$([ $round = we ] && echo bi-directional || echo response-only); done
    gw_config || exit 1
    for i in 1 2 3; do
      c=to-s$i
      ss_start "s$i" "s$i" "${IG_CONN_PEER[$c]}" "${IG_CONN_NET[$c]}" "$([ $round = we ] && echo responder || echo initiator)" \
        "${IG_CONN_IKE[$c]}" "${IG_CONN_ESP[$c]}" || exit 1
    done
    ig_step "round: $([ $round = we ] && echo 'ipsecgw initiates' || echo 'strongSwan initiates') (3 connections)"
    ig_gw_start A "$IG_WORK/gwA.yaml" || exit 1
    if [ $round = ss ]; then
      for i in 1 2 3; do pn_ss_initiate "s$i" 20 || ig_fail "s$i: swanctl --initiate failed: $(tail -3 "$(pn_ss_dir "s$i")/initiate.out")"; done
    fi
    for i in 1 2 3; do
      ig_step "to-s$i: IKE ${IG_CONN_IKE[to-s$i]} / ESP ${IG_CONN_ESP[to-s$i]}"
      check_tunnel "to-s$i" "s$i" "10.1$i.0.1"
    done
    stop_gw
    cp "$LOG" "$IG_WORK/gwA-$round.log"
    for i in 1 2 3; do pn_ss_stop "s$i"; done
  done
  finish ;;

# -------------------------------------------------------------------------------------- nat
nat)
  ig_step "topology: gwA (172.16.0.1) -- nat (masquerade to 192.0.2.254) -- ss (192.0.2.2)"
  ig_site_a && ig_ns_add nat ss || exit 1
  ig_veth gwA gA0 "" nat nat0 172.16.0.254/24 || exit 1
  ig_veth nat nat1 192.0.2.254/24 ss pub0 192.0.2.2/24 || exit 1
  ig_exec nat sysctl -qw net.ipv4.ip_forward=1 || exit 1
  ig_exec ss ip addr add 10.2.0.1/24 dev lo || exit 1
  ig_csum_off nat nat0 && ig_csum_off ss pub0 || exit 1
  pn_nat_masquerade nat nat1 || exit 1
  IG_PUB_ADDR=172.16.0.1/24 IG_PUB_GW=172.16.0.254
  conn_to_ss 192.0.2.2 bi-directional aes128-sha256-modp2048 aes256-sha256-modp2048
  gw_config || exit 1
  SS_REMOTE=%any    # behind the NAT we are 192.0.2.254 to strongSwan
  ss_start ss ss 192.0.2.2 10.2.0.0/24 responder "${IG_CONN_IKE[$c]}" "${IG_CONN_ESP[$c]}" || exit 1
  ig_cap_start pub ss pub0 || exit 1
  ig_step "ipsecgw initiates through the NAT"
  ig_gw_start A "$IG_WORK/gwA.yaml" || exit 1
  check_tunnel "$c" ss 10.2.0.1
  grep -aq 'NAT detected (local' "$LOG" && ig_pass "our log: $(grep -a 'NAT detected' "$LOG" | tail -1 | sed 's/.*ipsecgw.ike: //')" ||
    ig_fail "ipsecgw did not detect that it is behind a NAT: $(grep -a 'NAT detected' "$LOG")"
  sas=$(cat "$IG_WORK/list-sas-ss" 2>/dev/null)
  grep -qE "^  remote '[^']*' @ 192\.0\.2\.254\[[0-9]+\]" <<<"$sas" &&
    ig_pass "strongSwan sees the peer at the NAT's address: $(grep -E '^  remote ' <<<"$sas" | head -1 | sed 's/^ *//')" ||
    ig_fail "strongSwan does not see 192.0.2.254: $sas"
  grep -q 'remote host is behind NAT' "$(pn_ss_log ss)" && ig_pass "strongSwan: remote host is behind NAT" ||
    ig_fail "strongSwan did not detect the NAT in front of us"
  nat_checks "at strongSwan" 'ip.src == 192.0.2.254 && udp.srcport == 4500' "from 192.0.2.254:4500"
  finish ;;

# --------------------------------------------------------------------------------- nat-peer
nat-peer)
  ig_step "topology: gwA (192.0.2.1) -- nat (masquerade to 192.0.2.254) -- ss (172.16.0.2)"
  ig_site_a && ig_ns_add wan nat ss || exit 1
  ig_veth gwA gA0 "" wan wa "" || exit 1       # wan: a bridge, to capture our public link
  ig_veth nat nat1 192.0.2.254/24 wan wn "" || exit 1
  ig_bridge wan wa wn || exit 1
  ig_veth nat nat0 172.16.0.254/24 ss pub0 172.16.0.2/24 || exit 1
  ig_exec nat sysctl -qw net.ipv4.ip_forward=1 || exit 1
  ig_exec ss ip route add default via 172.16.0.254 || exit 1
  ig_exec ss ip addr add 10.2.0.1/24 dev lo || exit 1
  ig_csum_off wan wa && ig_csum_off wan wn && ig_csum_off wan br0 &&
    ig_csum_off nat nat1 && ig_csum_off ss pub0 || exit 1
  pn_nat_masquerade nat nat1 || exit 1
  conn_to_ss 192.0.2.254 response-only aes256-sha256-modp1536 aes128-sha1-modp2048
  IG_CONN_PID[$c]=172.16.0.2
  gw_config || exit 1
  ss_start ss ss 172.16.0.2 10.2.0.0/24 initiator "${IG_CONN_IKE[$c]}" "${IG_CONN_ESP[$c]}" || exit 1
  ig_cap_start pub wan wa || exit 1
  ig_gw_start A "$IG_WORK/gwA.yaml" || exit 1
  ig_step "strongSwan initiates through the NAT"
  pn_ss_initiate ss 20 || ig_fail "swanctl --initiate failed: $(tail -3 "$(pn_ss_dir ss)/initiate.out")"
  check_tunnel "$c" ss 10.2.0.1
  nd=$(grep -a 'NAT detected' "$LOG" | tail -1 | sed 's/.*ipsecgw.ike: //')
  grep -q 'NAT detected ( remote)' <<<"$nd" && ig_pass "our log: $nd" || ig_fail "our NAT detection: '$nd' (want remote only)"
  sas=$(cat "$IG_WORK/list-sas-ss" 2>/dev/null)
  grep -qE "^  local  '[^']*' @ 172\.16\.0\.2\[4500\]" <<<"$sas" && grep -qE "^  remote '[^']*' @ 192\.0\.2\.1\[4500\]" <<<"$sas" &&
    ig_pass "strongSwan: $(grep -E '^  (local|remote) ' <<<"$sas" | sed 's/^ *//' | paste -sd' ')" ||
    ig_fail "strongSwan endpoints: $sas"
  grep -q 'local host is behind NAT' "$(pn_ss_log ss)" && ig_pass "strongSwan: local host is behind NAT" ||
    ig_fail "strongSwan did not detect the NAT in front of it"
  nat_checks "at our side" 'ip.dst == 192.0.2.254 && udp.dstport == 4500 && ip.src == 192.0.2.1' "from us to 192.0.2.254:4500"
  finish ;;

# ------------------------------------------------------------------------------------- dpd
dpd-restart|dpd-hold)
  action=${CASE#dpd-}
  ig_step "topology; dpd $action 1 s / 4 s on our side"
  ig_topology_ss || exit 1
  conn_to_ss 192.0.2.2 bi-directional aes128-sha1-modp1024 aes128-sha1-modp1024
  IG_CONN_DPD[$c]="{action: $action, interval: 1, timeout: 4}"
  gw_config || exit 1
  ss_start ss ss 192.0.2.2 10.2.0.0/24 responder "${IG_CONN_IKE[$c]}" "${IG_CONN_ESP[$c]}" || exit 1
  ig_gw_start A "$IG_WORK/gwA.yaml" || exit 1
  check_tunnel "$c" ss 10.2.0.1
  old_in=$LAST_IN old_out=$LAST_OUT
  n=$(sa_count) && [ "$n" = 2 ] && ig_pass "data plane holds 2 SAs" || ig_fail "/ipsecgw/sa count '${n:-?}', want 2"
  ig_step "SIGKILL charon (no Delete reaches us)"
  pn_ss_kill ss
  killed=$(date +%s)
  if ig_wait_log 'dead peer detected' 12; then
    ig_pass "our log after $(( $(date +%s) - killed )) s: $(grep -a 'dead peer detected' "$LOG" | tail -1 | sed 's/.*ipsecgw.ike: //')"
  else ig_fail "no dead peer detected 12 s after the kill: $(tail -5 "$LOG")"; fi
  if [ "$action" = restart ]; then
    grep -aq 'DPD action restart: initiating again' "$LOG" && ig_pass "our log: DPD action restart: initiating again" ||
      ig_fail "no re-initiation logged"
    wait_status "$c" 'PENDING_CREATE|DOWN' 3 && ig_pass "status: $(status_line "$c" | sed 's/.*ipsecgw.app: //')" ||
      ig_fail "status did not leave ACTIVE: $(status_line "$c")"
  else
    # The tunnel ended, nothing failed: DOWN (Neutron's status of a tunnel not up) with the reason.
    wait_status "$c" 'DOWN \(dead peer detected \(DPD\)\)' 3 && ig_pass "status: $(status_line "$c" | sed 's/.*ipsecgw.app: //')" ||
      ig_fail "status is not DOWN (dead peer detected (DPD)): $(status_line "$c")"
    tel=$(ig_telemetry /ipsecgw/connections)
    grep -q '"last_error": *\["dead peer detected (DPD)"\]' <<<"$tel" &&
      grep -qE '"last_error_at": *\["[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z"\]' <<<"$tel" &&
      ig_pass "telemetry: last_error and its time" || ig_fail "telemetry without the last error: $tel"
  fi
  for i in $(seq 20); do n=$(sa_count); [ "$n" = 0 ] && break; sleep 0.2; done
  [ "$n" = 0 ] && ig_pass "data plane: SAs deleted (/ipsecgw/sa count 0)" || ig_fail "/ipsecgw/sa count '${n:-?}' after DPD, want 0"
  ig_step "charon started again with the same configuration"
  before=$(grep -ac 'initiating main mode' "$LOG")
  ss_start ss ss 192.0.2.2 10.2.0.0/24 responder "${IG_CONN_IKE[$c]}" "${IG_CONN_ESP[$c]}" || exit 1
  back=$(date +%s)
  if [ "$action" = hold ]; then
    sleep 4
    kill -0 "${IG_GW_PIDS[A]}" 2>/dev/null && ig_pass "ipsecgw still running" || ig_fail "ipsecgw died"
    after=$(grep -ac 'initiating main mode' "$LOG")
    [ "$after" = "$before" ] && wait_status "$c" 'DOWN' 0 && ig_pass "hold: no re-initiation by us, still DOWN" ||
      ig_fail "hold: we initiated again ($before -> $after) or status changed: $(status_line "$c")"
    ig_step "traffic from hostA hits the trap: the acquire makes us initiate"
    timeout 15 ip netns exec "$(ig_ns hostA)" ping -n -c 10 -i 1 -W 1 10.2.0.1 >/dev/null 2>&1 &
    pinger=$!
    if ig_wait_log 'acquire: traffic for the tunnel, initiating' 10; then
      ig_pass "our log: $(grep -a 'acquire: traffic for the tunnel' "$LOG" | tail -1 | sed 's/.*ipsecgw.ike: //')"
    else ig_fail "no acquire-driven initiation 10 s after the ping: $(tail -5 "$LOG")"; fi
    trapped=$(ig_telemetry /ipsecgw/stats | $PY -c 'import json,sys; print(json.load(sys.stdin)["/ipsecgw/stats"]["total_drop_trapped"])' 2>/dev/null)
    [ "${trapped:-0}" -ge 1 ] 2>/dev/null && ig_pass "held packets counted as drop_trapped ($trapped)" ||
      ig_fail "total_drop_trapped '${trapped:-?}', want >= 1"
    kill "$pinger" 2>/dev/null; wait "$pinger" 2>/dev/null
  fi
  check_tunnel "$c" ss 10.2.0.1
  echo "     back ACTIVE $(( $(date +%s) - back )) s after charon restarted"
  [ "$LAST_IN" != "$old_in" ] && [ "$LAST_OUT" != "$old_out" ] && ig_pass "new SPIs (old in $old_in out $old_out)" ||
    ig_fail "SPIs did not change: in $LAST_IN out $LAST_OUT"
  stop_gw
  finish ;;

# ----------------------------------------------------------------------------------- rekey
rekey)
  SOFT=12500 RATE=1000 SECS=60
  ig_step "topology; ipsecgw initiates; CHILD SA soft packet limit $SOFT (test option)"
  ig_topology_ss || exit 1
  conn_to_ss 192.0.2.2 bi-directional aes128-sha256-modp2048 aes128-sha1-modp1024
  IG_CONN_LIFE[$c]=60
  gw_config || exit 1
  ss_start ss ss 192.0.2.2 10.2.0.0/24 responder "${IG_CONN_IKE[$c]}" "${IG_CONN_ESP[$c]}" || exit 1
  # Rings for 4 s of traffic at RATE: a worker descheduled on a loaded machine loses nothing.
  IG_AFP_ARGS=",framecnt=4096" ig_gw_start A "$IG_WORK/gwA.yaml" --test-child-soft-packets "$SOFT" || exit 1
  check_tunnel "$c" ss 10.2.0.1
  spis=("$LAST_IN/$LAST_OUT")
  ig_step "numbered UDP $RATE/s each way for $SECS s; we rekey every ~$SOFT packets, strongSwan at 20 s and 42 s"
  t_start=$(awk -v t="$(date +%s.%N)" 'BEGIN{printf "%.3f", t + 1}')
  ig_exec hostA $PY "$here/udp_seq.py" "$HOST_A" 7000 10.2.0.1 "$RATE" "$t_start" "$SECS" "$IG_WORK/seq-a.json" &
  pa=$!
  ig_exec ss $PY "$here/udp_seq.py" 10.2.0.1 7000 "$HOST_A" "$RATE" "$t_start" "$SECS" "$IG_WORK/seq-ss.json" &
  pb=$!
  ss_rekeys=()
  while kill -0 "$pa" 2>/dev/null; do
    el=$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%d", b - a}')
    for at in 20 42; do
      if [ "$el" -ge "$at" ] && [[ " ${ss_rekeys[*]} " != *" $at "* ]]; then
        ss_rekeys+=("$at")
        pn_swanctl ss --rekey --child net >"$IG_WORK/ss-rekey-$at.out" 2>&1 &&
          echo "     [${el}s] strongSwan rekeys (swanctl --rekey)" || echo "     swanctl --rekey failed: $(cat "$IG_WORK/ss-rekey-$at.out")"
      fi
    done
    st=$(status_line "$c")
    cur="$(spi_of in "$st")/$(spi_of out "$st")"
    if grep -q '): ACTIVE' <<<"$st" && [ "$cur" != "${spis[-1]}" ]; then
      spis+=("$cur")
      echo "     [${el}s] rekeyed: ours in ${cur%/*} out ${cur#*/}"
    fi
    sleep 0.5
  done
  wait "$pa" "$pb"
  ours=$(grep -ac 'quick mode (rekey) initiated' "$LOG")
  theirs=$(grep -ac 'quick mode response' "$LOG")
  nrekey=$(( ${#spis[@]} - 1 ))
  [ "$ours" -ge 2 ] && [ "$theirs" -ge 2 ] && ig_pass "rekeys: $ours initiated by us, $theirs by strongSwan ($nrekey SPI changes seen)" ||
    ig_fail "want >= 2 rekeys from each side: ours $ours, strongSwan's $theirs (SPIs ${spis[*]})"
  soft=$(grep -ac 'data plane reports soft volume limit: rekeying' "$LOG")
  [ "$soft" -ge 2 ] && ig_pass "our rekeys come from the data plane's soft packet limit ($soft events)" ||
    ig_fail "only $soft soft-limit events from the data plane"
  grep -aq 'switching outbound to SPI .* (peer sends on the new SA)' "$LOG" &&
    ig_pass "our rekeys switch outbound once strongSwan sends on the new SA" ||
    ig_fail "no outbound switch triggered by strongSwan's traffic on the new SA"
  # seq_check FROM TO : FROM's sent numbers all arrived at TO, once each
  seq_check() { ig_seq_check "$IG_WORK/seq-$1.json" "$IG_WORK/seq-$2.json" "$1 -> $2"; }
  seq_check a ss || IG_FAILS=$((IG_FAILS + 1))
  seq_check ss a || IG_FAILS=$((IG_FAILS + 1))
  sas=$(pn_swanctl ss --list-sas 2>&1)
  cur=${spis[-1]}
  grep -qE "^    in  ${cur#*/}" <<<"$sas" && grep -qE "^    out ${cur%/*}" <<<"$sas" &&
    ig_pass "swanctl shows the current CHILD SA with our SPIs (in ${cur%/*} out ${cur#*/})" ||
    ig_fail "swanctl does not show our current SPIs ${cur}: $sas"
  grep -a 'rekey\|switching\|retire\|delet' "$LOG" | sed 's/.*ipsecgw.ike: /     ike: /' | head -30
  for i in $(seq 40); do n=$(sa_count); [ "$n" = 2 ] && break; sleep 0.25; done
  [ "$n" = 2 ] && ig_pass "data plane holds 2 SAs after the retired ones are gone" || ig_fail "/ipsecgw/sa count '${n:-?}', want 2"
  stop_gw
  finish ;;
# -------------------------------------------------------------------------------- shutdown
shutdown)
  ig_step "topology; ipsecgw initiates; strongSwan's DPD every 30 s"
  ig_topology_ss || exit 1
  conn_to_ss 192.0.2.2 bi-directional aes128-sha1-modp2048 aes128-sha1-modp2048
  gw_config || exit 1
  ss_start ss ss 192.0.2.2 10.2.0.0/24 responder "${IG_CONN_IKE[$c]}" "${IG_CONN_ESP[$c]}" \
    dpd_delay=30s dpd_timeout=150s || exit 1
  ig_gw_start A "$IG_WORK/gwA.yaml" || exit 1
  check_tunnel "$c" ss 10.2.0.1
  ig_step "SIGTERM to ipsecgw: strongSwan learns from our Deletes, not its DPD"
  ss_log=$(pn_ss_log ss)
  kill -TERM "${IG_GW_PIDS[A]}"
  t0=$(date +%s.%N) gone=""
  for i in $(seq 30); do
    sas=$(pn_swanctl ss --list-sas 2>&1)
    if ! grep -qE 'ESTABLISHED|INSTALLED' <<<"$sas"; then
      gone=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}'); break
    fi
    sleep 0.1
  done
  [ -n "$gone" ] && ig_pass "swanctl --list-sas shows no SA ${gone} s after SIGTERM (DPD would take >= 30 s)" ||
    ig_fail "strongSwan still holds SAs 3 s after SIGTERM: $sas"
  # The Delete names the SPI we receive with (RFC 2408 §3.15), strongSwan's outbound one.
  grep -aqE 'received DELETE for ESP CHILD_SA with SPI '"$LAST_IN" "$ss_log" &&
    ig_pass "strongSwan: received DELETE for ESP CHILD_SA $LAST_IN" ||
    ig_fail "strongSwan's log shows no Delete for ESP SPI $LAST_IN: $(grep -a DELETE "$ss_log")"
  grep -aqE 'received DELETE for IKE_SA' "$ss_log" && ig_pass "strongSwan: received DELETE for IKE_SA" ||
    ig_fail "strongSwan's log shows no Delete for the IKE SA: $(grep -a DELETE "$ss_log")"
  grep -a 'DELETE' "$ss_log" | sed 's/^/     charon: /'
  stop_gw
  grep -aq 'sent Delete for the SAs of 1 ISAKMP SA' "$LOG" && ig_pass "our log: Deletes sent at shutdown" ||
    ig_fail "our log does not say the Deletes were sent"
  finish ;;
esac
