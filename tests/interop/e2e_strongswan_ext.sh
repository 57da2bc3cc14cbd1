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
#   dpd-hold     dpd hold 1 s / 4 s. charon SIGKILLed -> status ERROR (dead peer detected
#                (DPD)), /ipsecgw/sa empty, no re-initiation by us while charon is back and no
#                traffic flows, the process stays up; a ping from hostA hits the connection's
#                trap policy (counted as drop_trapped, never sent in the clear) and its acquire
#                makes us initiate -> ACTIVE again, ping; exit 0 on SIGTERM.
#   rekey        ipsecpolicy lifetime 60 s, ipsecgw initiates; ping every 0.2 s for ~120 s
#                while at least two CHILD SA rekeys happen (our SPIs change, swanctl agrees);
#                every ping must be answered.
#
# usage: e2e_strongswan_ext.sh IPSECGW_BINARY CASE   (root; IG_KEEP=1 keeps logs and pcaps)
# exit: 0 pass, 1 fail, 77 skip (not root / no strongSwan / no nft)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
IPSECGW=$(realpath "${1:?usage: e2e_strongswan_ext.sh IPSECGW_BINARY CASE}")
CASE=${2:?case: sweep | nat | nat-peer | dpd-restart | dpd-hold | rekey}
PY=/usr/bin/python3
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
[ -x /usr/lib/ipsec/charon ] && [ -x /usr/sbin/swanctl ] || { echo "SKIP: strongSwan charon/swanctl not installed"; exit 77; }
case $CASE in sweep|nat|nat-peer|dpd-restart|dpd-hold|rekey) ;; *) echo "unknown case $CASE" >&2; exit 2 ;; esac
if [ "${CASE#nat}" != "$CASE" ] && ! command -v nft >/dev/null; then echo "SKIP: nft not installed (nftables)"; exit 77; fi

# shellcheck source=lib.sh
. "$here/lib.sh"
IG_TAG=igx$$
PN_TAG=$IG_TAG           # peer-lib's namespace names = lib.sh's: "<tag>-<name>"
# shellcheck source=peer-lib.sh
. "$here/peer-lib.sh"
cleanup() { pn_cleanup_all; ig_cleanup_all; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

T0=$(date +%s)
fails=0
step() { echo "---- [$(( $(date +%s) - T0 ))s] $*"; }
pass() { echo "ok   $*"; }
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
finish() {
  if [ "$fails" = 0 ]; then echo "PASS e2e_strongswan_ext ($CASE) in $(( $(date +%s) - T0 )) s"; exit 0; fi
  echo "FAIL e2e_strongswan_ext ($CASE): $fails check(s) failed"; IG_KEEP=1; exit 1
}

A_PRIV=10.1.0.1 HOST_A=10.1.0.2 NET_A=10.1.0.0/24
PSK=e2e-psk-$$-$RANDOM-secret

# ---- algorithm names: strongSwan proposal words -> Neutron YAML / swanctl --list-sas
neutron_enc() { echo "aes-${1#aes}"; }
neutron_grp() { case $1 in modp1024) echo group2;; modp1536) echo group5;; modp2048) echo group14;; esac; }
ss_enc() { echo "AES_CBC-${1#aes}"; }
ss_integ() { case $1 in sha1) echo HMAC_SHA1_96;; sha256) echo HMAC_SHA2_256_128;; esac; }
ss_prf() { case $1 in sha1) echo PRF_HMAC_SHA1;; sha256) echo PRF_HMAC_SHA2_256;; esac; }
ss_dh() { echo "MODP_${1#modp}"; }

ig_init || exit 1
PN_WORK=$IG_WORK         # one work dir; lib.sh owns (and removes) it
$PY -c 'import json' || exit 1

# ---- configuration: gw_config NAME... writes $IG_WORK/gwA.yaml from the CONN_* arrays
# CONN_PEER[name] CONN_NET[name] CONN_IKE[name]=enc-hash-grp CONN_ESP[name]=enc-hash-grp
# CONN_INIT[name] CONN_PID[name] (peer_id) CONN_DPD[name] ("{action: ..}" YAML) CONN_LIFE[name] (ESP lifetime, s)
declare -A CONN_PID CONN_PEER CONN_NET CONN_IKE CONN_ESP CONN_INIT CONN_DPD CONN_LIFE
CONNS=()
PUB_ADDR=192.0.2.1/24 PUB_GW=""
gw_config() {
  local c e h g
  {
    echo "# generated by tests/interop/e2e_strongswan_ext.sh ($CASE)"
    echo "vpnservice:"
    echo "  name: site-a"
    echo "  ports:"
    echo "    unprotected: {port: 0, address: $PUB_ADDR${PUB_GW:+, gateway: $PUB_GW}}"
    echo "    protected: {port: 1, address: $A_PRIV/24}"
    echo "  unmatched_traffic: drop"
    echo "dataplane:"
    echo "  idle_sleep_us: ${IG_IDLE_SLEEP_US:-100}"
    echo "ikepolicies:"
    for c in "${CONNS[@]}"; do
      IFS=- read -r e h g <<<"${CONN_IKE[$c]}"
      echo "  - {name: ike-$c, auth_algorithm: $h, encryption_algorithm: $(neutron_enc "$e"), pfs: $(neutron_grp "$g")}"
    done
    echo "ipsecpolicies:"
    for c in "${CONNS[@]}"; do
      IFS=- read -r e h g <<<"${CONN_ESP[$c]}"
      echo "  - {name: esp-$c, auth_algorithm: $h, encryption_algorithm: $(neutron_enc "$e"), pfs: $(neutron_grp "$g")${CONN_LIFE[$c]:+, lifetime: {units: seconds, value: ${CONN_LIFE[$c]}\}}}"
    done
    echo "ipsec_site_connections:"
    for c in "${CONNS[@]}"; do
      cat <<EOF
  - name: $c
    peer_address: ${CONN_PEER[$c]}${CONN_PID[$c]:+
    peer_id: ${CONN_PID[$c]}}
    peer_cidrs: [${CONN_NET[$c]}]
    psk: "$PSK"
    initiator: ${CONN_INIT[$c]}
    dpd: ${CONN_DPD[$c]:-"{action: hold, interval: 10, timeout: 60}"}
    ikepolicy: ike-$c
    ipsecpolicy: esp-$c
EOF
    done
  } >"$IG_WORK/gwA.yaml"
  "$IPSECGW" --check-config --config "$IG_WORK/gwA.yaml" >/dev/null ||
    { echo "FAIL: generated config rejected"; "$IPSECGW" --check-config --config "$IG_WORK/gwA.yaml"; cat "$IG_WORK/gwA.yaml"; return 1; }
}

LOG=$(ig_gw_log A)
# status_line CONN : our last status line for the connection
status_line() { grep -a "connection $1 (peer ${CONN_PEER[$1]}): " "$LOG" | tail -1; }
# wait_status CONN REGEX SECONDS : the last status line matches "): REGEX"
wait_status() {
  local end=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -le "$end" ]; do
    grep -qE "\): $2" <<<"$(status_line "$1")" && return 0
    sleep 0.2
  done
  return 1
}
# wait_log REGEX SECONDS : a line of our log matches
wait_log() {
  local end=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -le "$end" ]; do
    grep -aqE "$1" "$LOG" && return 0
    sleep 0.2
  done
  return 1
}
spi_of() { sed -n "s/.*spi_$1 0x\([0-9a-f]*\).*/\1/p" <<<"$2"; }
# telemetry PATH : one DPDK telemetry request to our ipsecgw (JSON on stdout)
telemetry() {
  local sock; sock=$(ls /run/dpdk/"${IG_GW_PREFIX[A]}"/dpdk_telemetry.v2 2>/dev/null) || return 1
  ig_exec gwA $PY - "$sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(5)
s.connect(sys.argv[1])
s.recv(1024)
s.send(sys.argv[2].encode())
print(s.recv(65536).decode())
PY
}
# sa_count : number of SAs in the data plane (/ipsecgw/sa, refreshed every second)
sa_count() { telemetry /ipsecgw/sa | $PY -c 'import json,sys; print(json.load(sys.stdin)["/ipsecgw/sa"]["count"])'; }

# ss_start INST NS ADDR NET ROLE IKE ESP [extra pn_ss_start options]
ss_start() {
  local inst=$1 ns=$2 addr=$3 net=$4 role=$5 ike=$6 esp=$7; shift 7
  pn_ss_start "$inst" "$ns" role="$role" local_addr="$addr" remote_addr="${SS_REMOTE:-192.0.2.1}" local_ts="$net" \
    remote_ts=$NET_A psk="$PSK" ike="$ike" esp="$esp" "$@" || { fail "charon $inst did not start"; return 1; }
}

# check_tunnel CONN INST SS_HOST [nat] : ACTIVE, SPIs and algorithms as swanctl shows them,
# ping both ways. Sets LAST_IN/LAST_OUT (our SPIs).
check_tunnel() {
  local c=$1 inst=$2 host=$3 st sas ss_in ss_out e h g out
  if wait_status "$c" ACTIVE 30; then pass "$c: $(status_line "$c" | sed 's/.*ipsecgw.app: //')"
  else fail "$c: our status is not ACTIVE: '$(status_line "$c")'"; tail -20 "$LOG"; tail -10 "$(pn_ss_log "$inst")"; return 1; fi
  st=$(status_line "$c")
  LAST_IN=$(spi_of in "$st"); LAST_OUT=$(spi_of out "$st")
  grep -q 'esp-in-udp' <<<"$st" || fail "$c: expected ESP in UDP (libipsec fakes NAT): $st"
  pn_ss_wait_child "$inst" 10 || fail "$c: strongSwan CHILD SA not INSTALLED"
  sas=$(pn_swanctl "$inst" --list-sas 2>&1)
  printf '%s\n' "$sas" >"$IG_WORK/list-sas-$inst"
  IFS=- read -r e h g <<<"${CONN_IKE[$c]}"
  grep -qE '^peer: #[0-9]+, ESTABLISHED, IKEv1' <<<"$sas" &&
    grep -qF "$(ss_enc "$e")/$(ss_integ "$h")/$(ss_prf "$h")/$(ss_dh "$g")" <<<"$sas" &&
    pass "$c: strongSwan IKE SA ESTABLISHED $(ss_enc "$e")/$(ss_integ "$h")/$(ss_prf "$h")/$(ss_dh "$g")" ||
    fail "$c: strongSwan IKE SA not ESTABLISHED with ${CONN_IKE[$c]}: $sas"
  IFS=- read -r e h g <<<"${CONN_ESP[$c]}"
  grep -qE "^  net: #[0-9]+, reqid [0-9]+, INSTALLED, TUNNEL-in-UDP, ESP:$(ss_enc "$e")/$(ss_integ "$h")/$(ss_dh "$g")\$" <<<"$sas" &&
    pass "$c: strongSwan CHILD SA INSTALLED ESP:$(ss_enc "$e")/$(ss_integ "$h")/$(ss_dh "$g") (PFS)" ||
    fail "$c: strongSwan CHILD SA not INSTALLED with ${CONN_ESP[$c]}: $sas"
  ss_in=$(sed -nE 's/^    in  ([0-9a-f]{8}).*/\1/p' <<<"$sas" | tail -1)
  ss_out=$(sed -nE 's/^    out ([0-9a-f]{8}).*/\1/p' <<<"$sas" | tail -1)
  if [ -n "$ss_in" ] && [ "$ss_in" = "$LAST_OUT" ] && [ "$ss_out" = "$LAST_IN" ]; then
    pass "$c: SPIs agree: ours in $LAST_IN out $LAST_OUT"
  else fail "$c: SPIs differ: ours in '$LAST_IN' out '$LAST_OUT', strongSwan in '$ss_in' out '$ss_out'"; fi
  if ig_wait_ping hostA "$host" 10; then
    out=$(timeout 15 ip netns exec "$(ig_ns hostA)" ping -n -c 3 -i 0.2 -W 2 "$host" 2>&1)
    grep -q ' 3 received' <<<"$out" && pass "$c: ping hostA -> $host 3/3" || fail "$c: ping hostA -> $host: $(grep received <<<"$out")"
  else fail "$c: no ping reply hostA -> $host"; fi
  out=$(timeout 15 ip netns exec "$(pn_nsname "$inst")" ping -n -c 3 -i 0.2 -W 2 -I "$host" "$HOST_A" 2>&1)
  grep -q ' 3 received' <<<"$out" && pass "$c: ping $host -> hostA 3/3" || fail "$c: ping $host -> hostA: $(grep received <<<"$out")"
}

# simple topology: hostA -- gwA(ipsecgw) --gA0|pub0-- ss (192.0.2.2, host 10.2.0.1 on lo)
simple_topology() {
  for n in hostA gwA ss; do ig_ns_add "$n" || return 1; done
  ig_veth hostA ha0 "$HOST_A/24" gwA gA1 "" || return 1
  ig_veth gwA gA0 "" ss pub0 192.0.2.2/24 || return 1
  ig_exec hostA ip route add default via "$A_PRIV" || return 1
  ig_exec ss ip addr add 10.2.0.1/24 dev lo || return 1
  ig_exec ss sysctl -qw net.ipv4.ip_forward=1 || return 1
  ig_csum_off hostA ha0 && ig_csum_off ss pub0
}

case $CASE in
# ------------------------------------------------------------------------------------ sweep
sweep)
  step "topology: gwA and three charons on a bridge"
  for n in hostA gwA wan s1 s2 s3; do ig_ns_add "$n" || exit 1; done
  ig_veth hostA ha0 "$HOST_A/24" gwA gA1 "" || exit 1
  ig_veth gwA gA0 "" wan wa "" || exit 1
  ig_exec wan ip link add br0 type bridge || exit 1
  ig_exec wan ip link set br0 type bridge stp_state 0 forward_delay 0 2>/dev/null
  ig_exec wan ip link set wa master br0 && ig_exec wan ip link set br0 up || exit 1
  ig_exec hostA ip route add default via "$A_PRIV" || exit 1
  ig_csum_off hostA ha0 && ig_csum_off wan wa || exit 1
  combos=("aes192-sha256-modp1536 aes128-sha256-modp2048"
          "aes128-sha256-modp2048 aes256-sha1-modp1024"
          "aes256-sha1-modp1024 aes192-sha1-modp1536")
  for i in 1 2 3; do
    ig_veth "s$i" pub0 "192.0.2.1$i/24" wan "w$i" "" || exit 1
    ig_exec wan ip link set "w$i" master br0 || exit 1
    ig_exec "s$i" ip addr add "10.1$i.0.1/24" dev lo || exit 1
    ig_csum_off "s$i" pub0 && ig_csum_off wan "w$i" || exit 1
    c=to-s$i; CONNS+=("$c")
    CONN_PEER[$c]=192.0.2.1$i CONN_NET[$c]=10.1$i.0.0/24
    read -r CONN_IKE[$c] CONN_ESP[$c] <<<"${combos[$((i - 1))]}"
  done
  ig_csum_off wan br0 || exit 1
  for round in we ss; do
    for c in "${CONNS[@]}"; do CONN_INIT[$c]=$([ $round = we ] && echo bi-directional || echo response-only); done
    gw_config || exit 1
    for i in 1 2 3; do
      c=to-s$i
      ss_start "s$i" "s$i" "${CONN_PEER[$c]}" "${CONN_NET[$c]}" "$([ $round = we ] && echo responder || echo initiator)" \
        "${CONN_IKE[$c]}" "${CONN_ESP[$c]}" || exit 1
    done
    step "round: $([ $round = we ] && echo 'ipsecgw initiates' || echo 'strongSwan initiates') (3 connections)"
    ig_gw_start A "$IG_WORK/gwA.yaml" || exit 1
    if [ $round = ss ]; then
      for i in 1 2 3; do pn_ss_initiate "s$i" 20 || fail "s$i: swanctl --initiate failed: $(tail -3 "$(pn_ss_dir "s$i")/initiate.out")"; done
    fi
    for i in 1 2 3; do
      step "to-s$i: IKE ${CONN_IKE[to-s$i]} / ESP ${CONN_ESP[to-s$i]}"
      check_tunnel "to-s$i" "s$i" "10.1$i.0.1"
    done
    ig_gw_stop A
    [ "${IG_GW_RC[A]}" = 0 ] && pass "ipsecgw exit 0" || fail "ipsecgw exit ${IG_GW_RC[A]}"
    cp "$LOG" "$IG_WORK/gwA-$round.log"
    for i in 1 2 3; do pn_ss_stop "s$i"; done
  done
  finish ;;

# -------------------------------------------------------------------------------------- nat
nat)
  step "topology: gwA (172.16.0.1) -- nat (masquerade to 192.0.2.254) -- ss (192.0.2.2)"
  for n in hostA gwA nat ss; do ig_ns_add "$n" || exit 1; done
  ig_veth hostA ha0 "$HOST_A/24" gwA gA1 "" || exit 1
  ig_veth gwA gA0 "" nat nat0 172.16.0.254/24 || exit 1
  ig_veth nat nat1 192.0.2.254/24 ss pub0 192.0.2.2/24 || exit 1
  ig_exec hostA ip route add default via "$A_PRIV" || exit 1
  ig_exec nat sysctl -qw net.ipv4.ip_forward=1 || exit 1
  ig_exec ss ip addr add 10.2.0.1/24 dev lo || exit 1
  ig_csum_off hostA ha0 && ig_csum_off nat nat0 && ig_csum_off ss pub0 || exit 1
  pn_nat_masquerade nat nat1 || exit 1
  PUB_ADDR=172.16.0.1/24 PUB_GW=172.16.0.254
  c=to-ss; CONNS=("$c")
  CONN_PEER[$c]=192.0.2.2 CONN_NET[$c]=10.2.0.0/24 CONN_INIT[$c]=bi-directional
  CONN_IKE[$c]=aes128-sha256-modp2048 CONN_ESP[$c]=aes256-sha256-modp2048
  gw_config || exit 1
  SS_REMOTE=%any    # behind the NAT we are 192.0.2.254 to strongSwan
  ss_start ss ss 192.0.2.2 10.2.0.0/24 responder "${CONN_IKE[$c]}" "${CONN_ESP[$c]}" || exit 1
  ig_cap_start pub ss pub0 || exit 1
  step "ipsecgw initiates through the NAT"
  ig_gw_start A "$IG_WORK/gwA.yaml" || exit 1
  check_tunnel "$c" ss 10.2.0.1
  grep -aq 'NAT detected (local' "$LOG" && pass "our log: $(grep -a 'NAT detected' "$LOG" | tail -1 | sed 's/.*ipsecgw.ike: //')" ||
    fail "ipsecgw did not detect that it is behind a NAT: $(grep -a 'NAT detected' "$LOG")"
  sas=$(cat "$IG_WORK/list-sas-ss" 2>/dev/null)
  grep -qE "^  remote '[^']*' @ 192\.0\.2\.254\[[0-9]+\]" <<<"$sas" &&
    pass "strongSwan sees the peer at the NAT's address: $(grep -E '^  remote ' <<<"$sas" | head -1 | sed 's/^ *//')" ||
    fail "strongSwan does not see 192.0.2.254: $sas"
  grep -q 'remote host is behind NAT' "$(pn_ss_log ss)" && pass "strongSwan: remote host is behind NAT" ||
    fail "strongSwan did not detect the NAT in front of us"
  nftc=$(ig_exec nat nft list table ip pnnat 2>&1)
  pk=$(sed -nE 's/.*counter packets ([0-9]+) .*masquerade.*/\1/p' <<<"$nftc")
  [ "${pk:-0}" -ge 2 ] && pass "nft masquerade counter: $pk new flows translated (IKE 500 and 4500)" ||
    fail "nft masquerade counter ${pk:-?}: $nftc"
  ig_cap_stop pub
  priv=$(tshark -n -r "$(ig_cap_file pub)" -Y 'ip.addr == 172.16.0.0/24' 2>/dev/null | wc -l)
  natd=$(tshark -n -r "$(ig_cap_file pub)" -Y 'ip.src == 192.0.2.254 && udp.srcport == 4500' 2>/dev/null | wc -l)
  [ "$priv" = 0 ] && [ "$natd" -gt 0 ] && pass "capture at strongSwan: $natd frames from 192.0.2.254:4500, none from 172.16.0.0/24" ||
    fail "capture at strongSwan: $priv frames with the private address, $natd from 192.0.2.254:4500"
  ig_gw_stop A
  [ "${IG_GW_RC[A]}" = 0 ] && pass "ipsecgw exit 0" || fail "ipsecgw exit ${IG_GW_RC[A]}"
  finish ;;

# --------------------------------------------------------------------------------- nat-peer
nat-peer)
  step "topology: gwA (192.0.2.1) -- nat (masquerade to 192.0.2.254) -- ss (172.16.0.2)"
  for n in hostA gwA wan nat ss; do ig_ns_add "$n" || exit 1; done
  ig_veth hostA ha0 "$HOST_A/24" gwA gA1 "" || exit 1
  ig_veth gwA gA0 "" wan wa "" || exit 1       # wan: a bridge, to capture our public link
  ig_veth nat nat1 192.0.2.254/24 wan wn "" || exit 1
  ig_exec wan ip link add br0 type bridge || exit 1
  ig_exec wan ip link set br0 type bridge stp_state 0 forward_delay 0 2>/dev/null
  ig_exec wan ip link set wa master br0 && ig_exec wan ip link set wn master br0 && ig_exec wan ip link set br0 up || exit 1
  ig_veth nat nat0 172.16.0.254/24 ss pub0 172.16.0.2/24 || exit 1
  ig_exec hostA ip route add default via "$A_PRIV" || exit 1
  ig_exec nat sysctl -qw net.ipv4.ip_forward=1 || exit 1
  ig_exec ss ip route add default via 172.16.0.254 || exit 1
  ig_exec ss ip addr add 10.2.0.1/24 dev lo || exit 1
  ig_csum_off hostA ha0 && ig_csum_off wan wa && ig_csum_off wan wn && ig_csum_off wan br0 &&
    ig_csum_off nat nat1 && ig_csum_off ss pub0 || exit 1
  pn_nat_masquerade nat nat1 || exit 1
  c=to-ss; CONNS=("$c")
  CONN_PEER[$c]=192.0.2.254 CONN_PID[$c]=172.16.0.2 CONN_NET[$c]=10.2.0.0/24 CONN_INIT[$c]=response-only
  CONN_IKE[$c]=aes256-sha256-modp1536 CONN_ESP[$c]=aes128-sha1-modp2048
  gw_config || exit 1
  ss_start ss ss 172.16.0.2 10.2.0.0/24 initiator "${CONN_IKE[$c]}" "${CONN_ESP[$c]}" || exit 1
  ig_cap_start pub wan wa || exit 1
  ig_gw_start A "$IG_WORK/gwA.yaml" || exit 1
  step "strongSwan initiates through the NAT"
  pn_ss_initiate ss 20 || fail "swanctl --initiate failed: $(tail -3 "$(pn_ss_dir ss)/initiate.out")"
  check_tunnel "$c" ss 10.2.0.1
  nd=$(grep -a 'NAT detected' "$LOG" | tail -1 | sed 's/.*ipsecgw.ike: //')
  grep -q 'NAT detected ( remote)' <<<"$nd" && pass "our log: $nd" || fail "our NAT detection: '$nd' (want remote only)"
  sas=$(cat "$IG_WORK/list-sas-ss" 2>/dev/null)
  grep -qE "^  local  '[^']*' @ 172\.16\.0\.2\[4500\]" <<<"$sas" && grep -qE "^  remote '[^']*' @ 192\.0\.2\.1\[4500\]" <<<"$sas" &&
    pass "strongSwan: $(grep -E '^  (local|remote) ' <<<"$sas" | sed 's/^ *//' | paste -sd' ')" ||
    fail "strongSwan endpoints: $sas"
  grep -q 'local host is behind NAT' "$(pn_ss_log ss)" && pass "strongSwan: local host is behind NAT" ||
    fail "strongSwan did not detect the NAT in front of it"
  nftc=$(ig_exec nat nft list table ip pnnat 2>&1)
  pk=$(sed -nE 's/.*counter packets ([0-9]+) .*masquerade.*/\1/p' <<<"$nftc")
  [ "${pk:-0}" -ge 2 ] && pass "nft masquerade counter: $pk new flows translated (IKE 500 and 4500)" ||
    fail "nft masquerade counter ${pk:-?}: $nftc"
  ig_cap_stop pub
  priv=$(tshark -n -r "$(ig_cap_file pub)" -Y 'ip.addr == 172.16.0.0/24' 2>/dev/null | wc -l)
  natd=$(tshark -n -r "$(ig_cap_file pub)" -Y 'ip.dst == 192.0.2.254 && udp.dstport == 4500 && ip.src == 192.0.2.1' 2>/dev/null | wc -l)
  [ "$priv" = 0 ] && [ "$natd" -gt 0 ] && pass "capture at our side: $natd frames from us to 192.0.2.254:4500, none with 172.16.0.0/24" ||
    fail "capture at our side: $priv frames with the private address, $natd to 192.0.2.254:4500"
  ig_gw_stop A
  [ "${IG_GW_RC[A]}" = 0 ] && pass "ipsecgw exit 0" || fail "ipsecgw exit ${IG_GW_RC[A]}"
  finish ;;

# ------------------------------------------------------------------------------------- dpd
dpd-restart|dpd-hold)
  action=${CASE#dpd-}
  step "topology; dpd $action 1 s / 4 s on our side"
  simple_topology || exit 1
  c=to-ss; CONNS=("$c")
  CONN_PEER[$c]=192.0.2.2 CONN_NET[$c]=10.2.0.0/24 CONN_INIT[$c]=bi-directional
  CONN_IKE[$c]=aes128-sha1-modp1024 CONN_ESP[$c]=aes128-sha1-modp1024
  CONN_DPD[$c]="{action: $action, interval: 1, timeout: 4}"
  gw_config || exit 1
  ss_start ss ss 192.0.2.2 10.2.0.0/24 responder "${CONN_IKE[$c]}" "${CONN_ESP[$c]}" || exit 1
  ig_gw_start A "$IG_WORK/gwA.yaml" || exit 1
  check_tunnel "$c" ss 10.2.0.1
  old_in=$LAST_IN old_out=$LAST_OUT
  n=$(sa_count) && [ "$n" = 2 ] && pass "data plane holds 2 SAs" || fail "/ipsecgw/sa count '${n:-?}', want 2"
  step "SIGKILL charon (no Delete reaches us)"
  pn_ss_kill ss
  killed=$(date +%s)
  if wait_log 'dead peer detected' 12; then
    pass "our log after $(( $(date +%s) - killed )) s: $(grep -a 'dead peer detected' "$LOG" | tail -1 | sed 's/.*ipsecgw.ike: //')"
  else fail "no dead peer detected 12 s after the kill: $(tail -5 "$LOG")"; fi
  if [ "$action" = restart ]; then
    grep -aq 'DPD action restart: initiating again' "$LOG" && pass "our log: DPD action restart: initiating again" ||
      fail "no re-initiation logged"
    wait_status "$c" 'PENDING|ERROR' 3 && pass "status: $(status_line "$c" | sed 's/.*ipsecgw.app: //')" ||
      fail "status did not leave ACTIVE: $(status_line "$c")"
  else
    wait_status "$c" 'ERROR \(dead peer detected \(DPD\)\)' 3 && pass "status: $(status_line "$c" | sed 's/.*ipsecgw.app: //')" ||
      fail "status is not ERROR (dead peer detected (DPD)): $(status_line "$c")"
  fi
  for i in $(seq 20); do n=$(sa_count); [ "$n" = 0 ] && break; sleep 0.2; done
  [ "$n" = 0 ] && pass "data plane: SAs deleted (/ipsecgw/sa count 0)" || fail "/ipsecgw/sa count '${n:-?}' after DPD, want 0"
  step "charon started again with the same configuration"
  before=$(grep -ac 'initiating main mode' "$LOG")
  ss_start ss ss 192.0.2.2 10.2.0.0/24 responder "${CONN_IKE[$c]}" "${CONN_ESP[$c]}" || exit 1
  back=$(date +%s)
  if [ "$action" = hold ]; then
    sleep 4
    kill -0 "${IG_GW_PIDS[A]}" 2>/dev/null && pass "ipsecgw still running" || fail "ipsecgw died"
    after=$(grep -ac 'initiating main mode' "$LOG")
    [ "$after" = "$before" ] && wait_status "$c" 'ERROR' 0 && pass "hold: no re-initiation by us, still ERROR" ||
      fail "hold: we initiated again ($before -> $after) or status changed: $(status_line "$c")"
    step "traffic from hostA hits the trap: the acquire makes us initiate"
    timeout 15 ip netns exec "$(ig_ns hostA)" ping -n -c 10 -i 1 -W 1 10.2.0.1 >/dev/null 2>&1 &
    pinger=$!
    if wait_log 'acquire: traffic for the tunnel, initiating' 10; then
      pass "our log: $(grep -a 'acquire: traffic for the tunnel' "$LOG" | tail -1 | sed 's/.*ipsecgw.ike: //')"
    else fail "no acquire-driven initiation 10 s after the ping: $(tail -5 "$LOG")"; fi
    trapped=$(telemetry /ipsecgw/stats | $PY -c 'import json,sys; print(json.load(sys.stdin)["/ipsecgw/stats"]["total_drop_trapped"])' 2>/dev/null)
    [ "${trapped:-0}" -ge 1 ] 2>/dev/null && pass "held packets counted as drop_trapped ($trapped)" ||
      fail "total_drop_trapped '${trapped:-?}', want >= 1"
    kill "$pinger" 2>/dev/null; wait "$pinger" 2>/dev/null
  fi
  check_tunnel "$c" ss 10.2.0.1
  echo "     back ACTIVE $(( $(date +%s) - back )) s after charon restarted"
  [ "$LAST_IN" != "$old_in" ] && [ "$LAST_OUT" != "$old_out" ] && pass "new SPIs (old in $old_in out $old_out)" ||
    fail "SPIs did not change: in $LAST_IN out $LAST_OUT"
  ig_gw_stop A
  [ "${IG_GW_RC[A]}" = 0 ] && pass "ipsecgw exit 0" || fail "ipsecgw exit ${IG_GW_RC[A]}"
  finish ;;

# ----------------------------------------------------------------------------------- rekey
rekey)
  step "topology; ESP lifetime 60 s, ipsecgw initiates"
  simple_topology || exit 1
  c=to-ss; CONNS=("$c")
  CONN_PEER[$c]=192.0.2.2 CONN_NET[$c]=10.2.0.0/24 CONN_INIT[$c]=bi-directional
  CONN_IKE[$c]=aes128-sha256-modp2048 CONN_ESP[$c]=aes128-sha1-modp1024 CONN_LIFE[$c]=60
  gw_config || exit 1
  ss_start ss ss 192.0.2.2 10.2.0.0/24 responder "${CONN_IKE[$c]}" "${CONN_ESP[$c]}" || exit 1
  ig_gw_start A "$IG_WORK/gwA.yaml" || exit 1
  check_tunnel "$c" ss 10.2.0.1
  spis=("$LAST_IN/$LAST_OUT")
  step "ping every 0.2 s for ~120 s through >= 2 rekeys"
  timeout 150 ip netns exec "$(ig_ns hostA)" ping -n -q -c 600 -i 0.2 -W 2 10.2.0.1 >"$IG_WORK/ping.out" 2>&1 &
  ppid=$!
  ss_ok=0
  while kill -0 "$ppid" 2>/dev/null; do
    st=$(status_line "$c")
    cur="$(spi_of in "$st")/$(spi_of out "$st")"
    if grep -q '): ACTIVE' <<<"$st" && [ "$cur" != "${spis[-1]}" ]; then
      spis+=("$cur")
      echo "     [$(( $(date +%s) - T0 ))s] rekeyed: ours in ${cur%/*} out ${cur#*/}"
      sas=$(pn_swanctl ss --list-sas 2>&1)
      grep -qE "^    in  ${cur#*/}" <<<"$sas" && grep -qE "^    out ${cur%/*}" <<<"$sas" && ss_ok=$((ss_ok + 1)) ||
        { sleep 1; sas=$(pn_swanctl ss --list-sas 2>&1)
          grep -qE "^    in  ${cur#*/}" <<<"$sas" && grep -qE "^    out ${cur%/*}" <<<"$sas" && ss_ok=$((ss_ok + 1)) ||
            echo "     swanctl does not show the new SPIs: $sas"; }
    fi
    sleep 0.5
  done
  wait "$ppid"
  out=$(cat "$IG_WORK/ping.out")
  sent=$(sed -nE 's/^([0-9]+) packets transmitted.*/\1/p' <<<"$out")
  got=$(sed -nE 's/.* ([0-9]+) received.*/\1/p' <<<"$out")
  nrekey=$(( ${#spis[@]} - 1 ))
  [ "$nrekey" -ge 2 ] && pass "$nrekey rekeys (SPIs ${spis[*]})" || fail "only $nrekey rekeys in ~120 s (SPIs ${spis[*]})"
  [ "$ss_ok" = "$nrekey" ] && pass "swanctl shows each new CHILD SA with our SPIs ($ss_ok)" || fail "swanctl agreed on $ss_ok of $nrekey rekeys"
  [ -n "$sent" ] && [ "$sent" = "$got" ] && [ "$sent" -ge 590 ] && pass "ping: $got/$sent answered, none lost" ||
    fail "ping: ${got:-?}/${sent:-?} answered ($(( ${sent:-0} - ${got:-0} )) lost): $out"
  grep -a 'rekey\|CHILD SA\|retire\|delet' "$LOG" | sed 's/.*ipsecgw.ike: /     ike: /' | head -20
  for i in $(seq 40); do n=$(sa_count); [ "$n" = 2 ] && break; sleep 0.25; done
  [ "$n" = 2 ] && pass "data plane holds 2 SAs after the retired ones are gone" || fail "/ipsecgw/sa count '${n:-?}', want 2"
  ig_gw_stop A
  [ "${IG_GW_RC[A]}" = 0 ] && pass "ipsecgw exit 0" || fail "ipsecgw exit ${IG_GW_RC[A]}"
  finish ;;
esac
