#!/bin/bash
# Acceptance test of the Neutron VPNaaS v2.0 API with the real OpenStack client (Debian's
# python3-openstackclient + python3-neutronclient, no Keystone), against ipsecgw-api-server
# (the API's test harness: no IKE, no data plane) on a free 127.0.0.1 port.
# Every command form of docs/api.md's transcript table (shared openstack-cli.md): create, list,
# show, set and delete of the five resources; error cases (range, unsupported value, in use,
# not found); the state surviving a restart; the state file's mode 0600.
# usage: test_openstack_cli.sh PATH/TO/ipsecgw-api-server
set -u
SERVER=${1:?usage: $0 ipsecgw-api-server}
if ! command -v openstack >/dev/null 2>&1; then
  echo "SKIP: the openstack client is not installed (apt-get install python3-openstackclient python3-neutronclient)"
  exit 77
fi
# Settings of a real cloud would take precedence over --os-auth-type none.
unset OS_CLOUD OS_AUTH_URL OS_USERNAME OS_PASSWORD OS_PROJECT_NAME OS_TOKEN OS_AUTH_TYPE OS_ENDPOINT

TMP=$(mktemp -d /tmp/ipsecgw-oscli.XXXXXX)
STATE=$TMP/state.yaml
SPID=
cleanup() {
  if [ -n "$SPID" ]; then kill "$SPID" 2>/dev/null; wait "$SPID" 2>/dev/null; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
FAILS=0
CHECKS=0
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
pass() { CHECKS=$((CHECKS + 1)); }

start_server() {
  rm -f "$TMP/port"
  "$SERVER" --state "$STATE" --listen 127.0.0.1:0 --port-file "$TMP/port" \
    --subnet protected=10.1.0.0/24 --subnet protected2=10.3.0.0/24 \
    --external-ip 198.51.100.1 2>>"$TMP/server.log" &
  SPID=$!
  for _ in $(seq 50); do [ -s "$TMP/port" ] && break; sleep 0.1; done
  PORT=$(cat "$TMP/port" 2>/dev/null)
  if [ -z "$PORT" ]; then
    echo "FAIL: ipsecgw-api-server did not start"; cat "$TMP/server.log"; exit 1
  fi
  EP=http://127.0.0.1:$PORT
}
stop_server() {
  kill -TERM "$SPID"; wait "$SPID"; SPID=
}

# os ARGS...: runs the client; stdout in $TMP/out, stderr in $TMP/err, returns its rc.
os() {
  timeout 60 openstack --os-auth-type none --os-endpoint "$EP" "$@" >"$TMP/out" 2>"$TMP/err"
}
# ok DESC ARGS...: the command must succeed.
ok() {
  local d=$1; shift
  if os "$@"; then pass; else fail "$d: rc $? ($(tail -n 3 "$TMP/err"))"; fi
}
# refused DESC PATTERN ARGS...: the command must fail (rc 1) with PATTERN in its message.
refused() {
  local d=$1 pat=$2; shift 2
  os "$@"; local rc=$?
  if [ $rc -ne 1 ]; then fail "$d: rc $rc, expected 1"; return; fi
  if grep -qE -- "$pat" "$TMP/err"; then pass; else fail "$d: message lacks /$pat/: $(cat "$TMP/err")"; fi
}
# field EXPR: evaluates a Python expression on the last JSON output (d).
field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$TMP/out" "$1"; }
# expect DESC EXPR VALUE: the last JSON output's EXPR must print VALUE.
expect() {
  local got; got=$(field "$2" 2>&1)
  if [ "$got" == "$3" ]; then pass; else fail "$1: $2 = '$got', expected '$3'"; fi
}

start_server
echo "ipsecgw-api-server on $EP"

# ---- ike policy
ok "ike policy create" vpn ike policy create --encryption-algorithm aes-256 --auth-algorithm sha256 \
  --pfs group14 --lifetime units=seconds,value=3600 mypolicy -f json
expect "ike create" 'd["Encryption Algorithm"], d["Authentication Algorithm"], d["Perfect Forward Secrecy (PFS)"], d["Lifetime"]["value"], d["IKE Version"], d["Phase1 Negotiation Mode"]' \
  "('aes-256', 'sha256', 'group14', 3600, 'v1', 'main')"
IKE_ID=$(field 'd["ID"]')
ok "ike policy create (defaults)" vpn ike policy create ike-defaults -f json
expect "ike defaults" 'd["Encryption Algorithm"], d["Authentication Algorithm"], d["Perfect Forward Secrecy (PFS)"], d["Lifetime"]' \
  "('aes-128', 'sha1', 'group5', {'units': 'seconds', 'value': 3600})"

# ---- ipsec policy
ok "ipsec policy create" vpn ipsec policy create --encryption-algorithm aes-256 --auth-algorithm sha256 \
  --pfs group14 --transform-protocol esp --encapsulation-mode tunnel --lifetime units=seconds,value=3600 myipsec -f json
expect "ipsec create" 'd["Encryption Algorithm"], d["Authentication Algorithm"], d["Perfect Forward Secrecy (PFS)"], d["Transform Protocol"], d["Encapsulation Mode"]' \
  "('aes-256', 'sha256', 'group14', 'esp', 'tunnel')"
IPSEC_ID=$(field 'd["ID"]')

# ---- vpn service (the SDK looks up the router and subnet: GET /, /v2.0/routers, /v2.0/subnets)
ok "router list" router list -f json
ROUTER_ID=$(field 'd[0]["ID"]')
ok "vpn service create --router NAME --subnet NAME" vpn service create --router ipsecgw --subnet protected vpn1 -f json
expect "service create" 'd["Router"], d["Subnet"] is not None, d["State"], d["Status"]' "('$ROUTER_ID', True, True, 'DOWN')"
ok "vpn service create --router UUID" vpn service create --router "$ROUTER_ID" --description hi --enable v1 -f json
expect "service create by uuid" 'd["Router"], d["Description"], d["Subnet"]' "('$ROUTER_ID', 'hi', None)"
refused "vpn service create, unknown router" "NoneType|not found|could not be found" vpn service create --router nosuchrouter vx

# ---- endpoint groups
ok "endpoint group create cidr" vpn endpoint group create --type cidr --value 192.168.50.0/24 --value 192.168.51.0/24 peers -f json
expect "group cidr" 'd["Type"], d["Endpoints"]' "('cidr', ['192.168.50.0/24', '192.168.51.0/24'])"
ok "endpoint group create cidr (one)" vpn endpoint group create --type cidr --value 192.168.60.0/24 peer1 -f json
ok "endpoint group create subnet" vpn endpoint group create --type subnet --value protected locals -f json
expect "group subnet" 'd["Type"], len(d["Endpoints"]), len(d["Endpoints"][0])' "('subnet', 1, 36)"
refused "endpoint group create, bad cidr" "endpoints\[0\].*not a valid CIDR" vpn endpoint group create --type cidr --value 10.0.0.1/24 badgroup

# ---- site connections
ok "connection create (endpoint groups)" vpn ipsec site connection create --vpnservice v1 --ikepolicy mypolicy \
  --ipsecpolicy myipsec --peer-address 203.0.113.5 --peer-id 203.0.113.5 --psk secret \
  --dpd action=hold,interval=30,timeout=120 --initiator bi-directional --local-endpoint-group locals \
  --peer-endpoint-group peer1 --mtu 1400 conn1 -f json
expect "conn1 create" 'd["MTU"], d["Peer Address"], d["Status"], d["Initiator"], d["IKE Policy"], d["IPSec Policy"], d["dpd"]' \
  "(1400, '203.0.113.5', 'DOWN', 'bi-directional', '$IKE_ID', '$IPSEC_ID', {'action': 'hold', 'interval': 30, 'timeout': 120})"
CONN1_ID=$(field 'd["ID"]')
ok "connection create (peer cidr, partial dpd)" vpn ipsec site connection create --vpnservice vpn1 --ikepolicy mypolicy \
  --ipsecpolicy myipsec --peer-address 203.0.113.5 --peer-id 203.0.113.5 --psk secret --dpd action=clear \
  --peer-cidr 10.9.0.0/24 conn2 -f json
expect "conn2 create" 'd["Peer CIDRs"], d["dpd"], d["MTU"], d["Route Mode"], d["Authentication Algorithm"]' \
  "(['10.9.0.0/24'], {'action': 'clear', 'interval': 30, 'timeout': 120}, 1500, 'static', 'psk')"

# ---- error cases: ranges, unsupported values, references
refused "connection mtu out of range" "mtu: 50 out of range 576\.\.9000" vpn ipsec site connection create \
  --vpnservice vpn1 --ikepolicy mypolicy --ipsecpolicy myipsec --peer-address 203.0.113.9 --peer-id x \
  --psk s --peer-cidr 10.8.0.0/24 --mtu 50 badconn
refused "connection dpd timeout <= interval" "dpd.timeout: 30 must be greater than dpd.interval \(60\)" \
  vpn ipsec site connection create --vpnservice vpn1 --ikepolicy mypolicy --ipsecpolicy myipsec \
  --peer-address 203.0.113.9 --peer-id x --psk s --peer-cidr 10.8.0.0/24 --dpd action=hold,interval=60,timeout=30 badconn
ok "connection with 2 peer CIDRs (a CHILD SA per pair)" \
  vpn ipsec site connection create --vpnservice v1 --ikepolicy mypolicy --ipsecpolicy myipsec \
  --peer-address 203.0.113.9 --peer-id x --psk secret --local-endpoint-group locals --peer-endpoint-group peers multicidr -f json
ok "connection with 2 peer CIDRs deleted" vpn ipsec site connection delete multicidr
refused "ike lifetime out of range" "lifetime.value: 100000 out of range 60\.\.86400" \
  vpn ike policy create --lifetime units=seconds,value=100000 badike
refused "ike version v2" "ike_version: 'v2' is not supported .*IKEv2 is not implemented" \
  vpn ike policy create --ike-version v2 badike
refused "ipsec transform ah" "transform_protocol: 'ah' is not supported" \
  vpn ipsec policy create --transform-protocol ah badipsec
refused "ipsec transport mode" "encapsulation_mode: 'transport' is not supported" \
  vpn ipsec policy create --encapsulation-mode transport badipsec
refused "peer address FQDN" "peer_address: 'peer.example.com' is not an IPv4 address" \
  vpn ipsec site connection create --vpnservice vpn1 --ikepolicy mypolicy --ipsecpolicy myipsec \
  --peer-address peer.example.com --peer-id x --psk s --peer-cidr 10.8.0.0/24 badconn
refused "second connection to a peer with another psk" "psk: differs from the psk of ipsec_site_connection 'conn2'" \
  vpn ipsec site connection create --vpnservice vpn1 --ikepolicy mypolicy --ipsecpolicy myipsec \
  --peer-address 203.0.113.5 --peer-id x --psk other --peer-cidr 10.8.0.0/24 badconn
refused "show unknown" "Unable to find" vpn ike policy show nosuchpolicy
ok "nothing created by refused requests" vpn ike policy list -f json
expect "ike count" 'len(d)' "2"

# ---- list (short and --long) and show (by name and by id)
ok "ike list" vpn ike policy list -f json
expect "ike list" 'sorted(x["Name"] for x in d)' "['ike-defaults', 'mypolicy']"
ok "ike list --long" vpn ike policy list --long -f json
expect "ike list --long" '[x["Phase1 Negotiation Mode"] for x in d]' "['main', 'main']"
ok "ipsec list" vpn ipsec policy list -f json
expect "ipsec list" '[(x["Name"], x["Transform Protocol"]) for x in d]' "[('myipsec', 'esp')]"
ok "service list" vpn service list -f json
expect "service list" '[x["Name"] for x in d]' "['vpn1', 'v1']"
ok "endpoint group list" vpn endpoint group list -f json
expect "group list" '[x["Name"] for x in d]' "['peers', 'peer1', 'locals']"
ok "connection list" vpn ipsec site connection list -f json
expect "connection list" '[(x["Name"], x["Peer Address"], x["Status"]) for x in d]' \
  "[('conn1', '203.0.113.5', 'DOWN'), ('conn2', '203.0.113.5', 'DOWN')]"
ok "connection list --long" vpn ipsec site connection list --long -f json
ok "show by name" vpn ipsec site connection show conn1 -f json
expect "show by name" 'd["ID"], d["Pre-shared Key"]' "('$CONN1_ID', 'secret')"
ok "show by id" vpn ike policy show "$IKE_ID" -f json
expect "show by id" 'd["Name"]' "mypolicy"
ok "ipsec show" vpn ipsec policy show myipsec -f json
ok "service show" vpn service show vpn1 -f json
ok "group show" vpn endpoint group show locals -f json

# ---- set
ok "connection set" vpn ipsec site connection set --dpd action=restart,interval=10,timeout=40 \
  --peer-address 203.0.113.7 --disable --description hello conn1
ok "conn1 show" vpn ipsec site connection show conn1 -f json
expect "conn1 after set" 'd["Peer Address"], d["Peer ID"], d["State"], d["Description"], d["dpd"]' \
  "('203.0.113.7', '203.0.113.5', False, 'hello', {'action': 'restart', 'interval': 10, 'timeout': 40})"
ok "connection set partial dpd" vpn ipsec site connection set --dpd interval=20 conn1
ok "conn1 show" vpn ipsec site connection show conn1 -f json
expect "partial dpd keeps the rest" 'd["dpd"]' "{'action': 'restart', 'interval': 20, 'timeout': 40}"
refused "connection set mtu out of range" "mtu: 10000 out of range 576\.\.9000" vpn ipsec site connection set --mtu 10000 conn1
ok "ike policy set" vpn ike policy set --lifetime units=seconds,value=7200 --name mypolicy2 mypolicy
ok "ike show" vpn ike policy show mypolicy2 -f json
expect "ike after set" 'd["ID"], d["Lifetime"]["value"]' "('$IKE_ID', 7200)"
ok "ipsec policy set" vpn ipsec policy set --pfs group5 myipsec
ok "ipsec show" vpn ipsec policy show myipsec -f json
expect "ipsec after set" 'd["Perfect Forward Secrecy (PFS)"]' "group5"
ok "service set" vpn service set --disable --name vpn1b vpn1
ok "service show" vpn service show vpn1b -f json
expect "service after set" 'd["State"], d["Name"]' "(False, 'vpn1b')"
ok "endpoint group set" vpn endpoint group set --description d2 peers
ok "group show" vpn endpoint group show peers -f json
expect "group after set" 'd["Description"]' "d2"
ok "ike policy set (no options)" vpn ike policy set mypolicy2

# ---- in use: 409
refused "delete ike policy in use" "is in use by existing IPsecSiteConnection" vpn ike policy delete mypolicy2
refused "delete ipsec policy in use" "is in use by existing IPsecSiteConnection" vpn ipsec policy delete myipsec
refused "delete vpn service in use" "is in use by existing IPsecSiteConnection" vpn service delete v1
refused "delete endpoint group in use" "is in use by existing IPsecSiteConnection" vpn endpoint group delete locals

# ---- restart on the same state file
MODE=$(stat -c %a "$STATE")
if [ "$MODE" == 600 ]; then pass; else fail "state file mode $MODE, expected 600"; fi
if grep -q "secret" "$TMP/server.log"; then fail "the server log shows a PSK"; else pass; fi
stop_server
start_server
echo "restarted on $EP"
ok "connection list after restart" vpn ipsec site connection list -f json
expect "connections after restart" '[(x["ID"], x["Name"]) for x in d][0]' "('$CONN1_ID', 'conn1')"
ok "conn1 after restart" vpn ipsec site connection show conn1 -f json
expect "conn1 fields after restart" 'd["Peer Address"], d["State"], d["dpd"], d["MTU"], d["Description"]' \
  "('203.0.113.7', False, {'action': 'restart', 'interval': 20, 'timeout': 40}, 1400, 'hello')"
ok "ike after restart" vpn ike policy show "$IKE_ID" -f json
expect "ike after restart" 'd["Name"], d["Lifetime"]["value"]' "('mypolicy2', 7200)"
for r in "service list" "endpoint group list" "ipsec policy list"; do
  # shellcheck disable=SC2086
  ok "$r after restart" vpn $r -f json
  expect "$r after restart" 'len(d) > 0' "True"
done

# ---- delete (several names in one command, as the client allows)
ok "connection delete" vpn ipsec site connection delete conn1 conn2
ok "endpoint group delete" vpn endpoint group delete peers peer1 locals
ok "service delete" vpn service delete vpn1b v1
ok "ipsec policy delete" vpn ipsec policy delete myipsec
ok "ike policy delete" vpn ike policy delete mypolicy2 ike-defaults
refused "delete unknown" "Unable to find" vpn ike policy delete mypolicy2
for r in "ike policy" "ipsec policy" "service" "endpoint group" "ipsec site connection"; do
  # shellcheck disable=SC2086
  ok "$r list (empty)" vpn $r list -f json
  expect "$r list empty" 'len(d)' "0"
done

echo "openstack CLI test: $CHECKS checks passed, $FAILS failed"
if [ $FAILS -ne 0 ]; then
  echo "--- server log"; tail -n 40 "$TMP/server.log"
  exit 1
fi
exit 0
