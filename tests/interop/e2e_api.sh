#!/usr/bin/env bash
# End-to-end through the Neutron VPNaaS API (issue #9): ipsecgw starts with ports and a
# vpnservice but no connection; the real OpenStack client (no Keystone) creates the IKE policy,
# the IPsec policy, the vpnservice and a site connection to strongSwan on the gateway's API:
#
#   hostA 10.1.0.2 --ha0|gA1-- [gwA: ipsecgw, API 127.0.0.1:9696 on gwA's lo] --gA0|pub0-- [ss: charon]
#
# The API listens on the loopback of the gateway's own namespace (never on a DPDK port); the
# client runs in that namespace. unmatched_traffic is "forward" with a route to strongSwan, so
# a disabled connection whose traffic were not dropped would show up in the clear.
# Checks: status reaches ACTIVE in `vpn ipsec site connection show`, and in the vpnservice;
# ping through the tunnel; `set --disable` -> DOWN, strongSwan's CHILD SA deleted, pings
# neither answered nor seen in the clear on the public link; `set --enable` -> ACTIVE again
# and ping; restart with the state file -> the connection is back, ACTIVE, ping; `delete` ->
# gone from the list, and then (control) its traffic is forwarded in the clear as configured;
# the state file is mode 0600.
#
# usage: e2e_api.sh IPSECGW_BINARY   (root; IG_KEEP=1 keeps logs and pcaps)
# exit: 0 pass, 1 fail, 77 skip (not root / no strongSwan / no openstack client)
# shellcheck disable=SC2015  # "check && ig_pass ... || ig_fail ...": ig_pass always returns 0
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
IPSECGW=$(realpath "${1:?usage: e2e_api.sh IPSECGW_BINARY}")
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
ig_require root
ig_require strongswan
ig_require openstack
IG_TAG=iga$$
trap ig_cleanup_all EXIT
trap 'exit 130' INT TERM HUP

SS_PUB=$IG_B_PUB SS_HOST=$IG_B_PRIV A_PUB=$IG_A_PUB
PSK=api-psk-$$-$RANDOM-secret
IKE=aes256-sha256-modp2048

ig_init || exit 1
ig_require_tools tshark || exit 1
ig_step "topology; ipsecgw without connections"
ig_topology_ss || exit 1
cat >"$IG_WORK/gwA.yaml" <<YAML
vpnservice:
  name: site-a
  ports:
    unprotected: {port: 0, address: $A_PUB/24, gateway: $SS_PUB}
    protected: {port: 1, address: $IG_A_PRIV/24}
  unmatched_traffic: forward
dataplane:
  idle_sleep_us: ${IG_IDLE_SLEEP_US:-100}
YAML
chmod 600 "$IG_WORK/gwA.yaml"  # it holds a PSK: ipsecgw refuses group/other access
ig_check_config "$IG_WORK/gwA.yaml" || exit 1
pn_ss_start ss ss role=responder local_addr=$SS_PUB remote_addr=$A_PUB local_ts=$IG_NET_B \
  remote_ts=$IG_NET_A psk="$PSK" ike="$IKE" esp="$IKE" || { echo "FAIL: charon did not start"; exit 1; }
STATE=$IG_WORK/state.yaml
ig_gw_start A "$IG_WORK/gwA.yaml" --state-file "$STATE" || exit 1
LOG=$(ig_gw_log A)

# ig_os ARGS... (lib.sh): the OpenStack client in gwA's namespace against the gateway's API
# status_of RESOURCE... : the "Status" field of `openstack RESOURCE... show -f json`
status_of() {
  ig_os "$@" -f json 2>/dev/null | /usr/bin/python3 -c \
    'import json, sys; d = json.load(sys.stdin); print(d.get("Status", d.get("status", "")))' 2>/dev/null
}
conn_status() { status_of vpn ipsec site connection show site-b; }
# wait_conn STATUS SECONDS
wait_conn() {
  local end=$(( $(date +%s) + $2 )) st=
  while [ "$(date +%s)" -le "$end" ]; do
    st=$(conn_status); [ "$st" = "$1" ] && return 0
    sleep 0.5
  done
  echo "last status: '$st'"; return 1
}
# ping_in_clear LABEL : 3 pings hostA -> ss; PING_OUT = ping's summary, CLEAR = the number of
# ICMP frames seen in the clear on the public link meanwhile
ping_in_clear() {
  ig_cap_start "clear-$1" ss pub0 icmp || return 1
  PING_OUT=$(timeout 10 ip netns exec "$(ig_ns hostA)" ping -n -c 3 -i 0.3 -W 1 "$SS_HOST" 2>&1)
  ig_cap_stop "clear-$1"
  CLEAR=$(tshark -n -r "$(ig_cap_file "clear-$1")" 2>/dev/null | wc -l)
}
no_ping_in_clear() {
  ping_in_clear "$1" || { ig_fail "$1: capture did not start"; return; }
  grep -q ' 0 received' <<<"$PING_OUT" && ig_pass "$1: ping hostA -> $SS_HOST not answered" ||
    ig_fail "$1: ping answered: $(grep received <<<"$PING_OUT")"
  [ "$CLEAR" = 0 ] && ig_pass "$1: no ICMP in the clear on the public link" ||
    ig_fail "$1: $CLEAR ICMP frames in the clear on the public link"
}

ig_step "create through the OpenStack client"
ig_os vpn ike policy create --encryption-algorithm aes-256 --auth-algorithm sha256 --pfs group14 ike1 >/dev/null &&
ig_os vpn ipsec policy create --encryption-algorithm aes-256 --auth-algorithm sha256 --pfs group14 ipsec1 >/dev/null &&
ig_os vpn service create --router ipsecgw --subnet protected vpn1 >/dev/null &&
ig_os vpn ipsec site connection create --vpnservice vpn1 --ikepolicy ike1 --ipsecpolicy ipsec1 \
  --peer-address "$SS_PUB" --peer-id "$SS_PUB" --psk "$PSK" --peer-cidr "$IG_NET_B" \
  --dpd action=hold,interval=10,timeout=60 site-b >/dev/null &&
  ig_pass "ike policy, ipsec policy, vpn service, site connection created" ||
  { ig_fail "create failed"; tail -20 "$LOG"; ig_finish e2e_api; }

ig_step "ACTIVE through the tunnel"
if out=$(wait_conn ACTIVE 40); then ig_pass "connection show: ACTIVE"
else ig_fail "connection show: not ACTIVE ($out)"; tail -30 "$LOG"; ig_finish e2e_api; fi
st=$(status_of vpn service show vpn1)
[ "$st" = ACTIVE ] && ig_pass "vpn service show: ACTIVE" || ig_fail "vpn service show: '$st'"
pn_ss_wait_child ss 10 && ig_pass "strongSwan: CHILD SA INSTALLED" || ig_fail "strongSwan: no CHILD SA"
ig_wait_ping hostA "$SS_HOST" 15 || ig_fail "no first ping reply"
ig_ping_check "ping hostA -> $SS_HOST" hostA "$SS_HOST" 5
# The status detail next to Neutron's fields, as the real client shows it (raw field name).
sleep 1.2  # traffic counters are read once a second
detail=$(ig_os vpn ipsec site connection show site-b -f json 2>&1 | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)["status_detail"]
d = json.loads(d) if isinstance(d, str) else d
print(d)
sys.exit(0 if d["phase1"] == "ESTABLISHED" and d["phase2"] == "INSTALLED" and d["spi_in"]
         and d["in_packets"] >= 5 and d["out_packets"] >= 5 else 1)' 2>&1) &&
  ig_pass "connection show: status_detail $detail" || ig_fail "connection show: status_detail: $detail"

ig_step "set --disable: DOWN, Delete to strongSwan, traffic dropped (not in the clear)"
ig_os vpn ipsec site connection set --disable site-b && ig_pass "set --disable" || ig_fail "set --disable"
out=$(wait_conn DOWN 5) && ig_pass "connection show: DOWN" || ig_fail "connection show: not DOWN ($out)"
grep -aq 'connection site-b (peer [0-9.]*): DOWN (admin_state_up false)' "$LOG" &&
  ig_pass "log: $(grep -a 'DOWN (admin_state_up false)' "$LOG" | tail -1 | sed 's/.*ipsecgw.app: //')" ||
  ig_fail "no log line 'DOWN (admin_state_up false)'"
st=$(status_of vpn service show vpn1)
[ "$st" = DOWN ] && ig_pass "vpn service show: DOWN" || ig_fail "vpn service show: '$st'"
end=$(( $(date +%s) + 10 ))
while [ "$(date +%s)" -le "$end" ] && pn_swanctl ss --list-sas 2>/dev/null | grep -q 'INSTALLED'; do sleep 0.3; done
pn_swanctl ss --list-sas 2>/dev/null | grep -q INSTALLED && ig_fail "strongSwan still has its CHILD SA" ||
  ig_pass "strongSwan's CHILD SA deleted (Delete received)"
no_ping_in_clear disabled

ig_step "set --enable: ACTIVE again"
ig_os vpn ipsec site connection set --enable site-b && ig_pass "set --enable" || ig_fail "set --enable"
out=$(wait_conn ACTIVE 40) && ig_pass "connection show: ACTIVE" || ig_fail "connection show: not ACTIVE ($out)"
ig_wait_ping hostA "$SS_HOST" 15 && ig_ping_check "ping hostA -> $SS_HOST" hostA "$SS_HOST" 5 ||
  ig_fail "no ping after enable"

ig_step "restart: the state file brings the connection back"
ig_gw_stop A
[ "${IG_GW_RC[A]}" = 0 ] && ig_pass "stopped, exit 0" || ig_fail "exit ${IG_GW_RC[A]}"
ig_gw_start A "$IG_WORK/gwA.yaml" --state-file "$STATE" || { ig_fail "restart"; ig_finish e2e_api; }
grep -aq "desired state from the state file" "$LOG" && ig_pass "loaded from the state file" ||
  ig_fail "not loaded from the state file"
out=$(wait_conn ACTIVE 40) && ig_pass "connection show after restart: ACTIVE" ||
  ig_fail "after restart: not ACTIVE ($out)"
ig_wait_ping hostA "$SS_HOST" 15 && ig_ping_check "ping hostA -> $SS_HOST" hostA "$SS_HOST" 5 ||
  ig_fail "no ping after restart"

ig_step "delete"
ig_os vpn ipsec site connection delete site-b && ig_pass "delete" || ig_fail "delete"
n=$(ig_os vpn ipsec site connection list -f value | wc -l)
[ "$n" = 0 ] && ig_pass "connection list: empty" || ig_fail "connection list: $n connection(s)"
ig_os vpn ipsec site connection show site-b >/dev/null 2>&1 && ig_fail "show finds the deleted connection" ||
  ig_pass "show: not found"
# The control for the disabled check: without any policy the traffic is unmatched, and
# unmatched_traffic: forward sends it in the clear -- so the check above could have failed.
ping_in_clear deleted
[ "${CLEAR:-0}" -gt 0 ] && ig_pass "deleted (control): no policy left, $CLEAR ICMP frames forwarded in the clear as configured" ||
  ig_fail "deleted (control): no ICMP in the clear: the disabled check proves nothing"
grep -aq "site-b: connection removed\|connection removed" "$LOG" && ig_pass "IKE daemon: connection removed" ||
  ig_fail "no 'connection removed' in the log"

mode=$(stat -c %a "$STATE" 2>/dev/null)
[ "$mode" = 600 ] && ig_pass "state file mode 0600" || ig_fail "state file mode '$mode'"
ig_gw_stop A
[ "${IG_GW_RC[A]}" = 0 ] && ig_pass "exit 0" || ig_fail "exit ${IG_GW_RC[A]}"
ig_finish e2e_api
