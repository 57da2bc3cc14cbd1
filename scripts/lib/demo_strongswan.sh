# scripts/lib/demo_strongswan.sh -- the default part of scripts/demo (sourced by it, with
# $IPSECGW set and cwd = the repository): ipsecgw negotiates an IKEv1 tunnel with a real
# strongSwan gateway (tests/interop/peer-lib.sh runs charon with kernel-libipsec in a namespace)
# and carries traffic through it. The same topology as tests/interop/e2e_strongswan.sh.

banner() { printf '\n\033[1m==== %s\033[0m\n' "$*"; }
run() { printf '\033[36m$ %s\033[0m\n' "$*"; "$@"; }

[ -x /usr/lib/ipsec/charon ] && [ -x /usr/sbin/swanctl ] ||
  { echo "scripts/demo: strongSwan (charon, swanctl) is not installed" >&2; exit 1; }

# shellcheck source=../../tests/interop/lib.sh
. tests/interop/lib.sh
IG_TAG=demo$$
PN_TAG=$IG_TAG
# shellcheck source=../../tests/interop/peer-lib.sh
. tests/interop/peer-lib.sh
trap 'pn_cleanup_all; ig_cleanup_all' EXIT
trap 'exit 130' INT TERM
ig_init || exit 1
PN_WORK=$IG_WORK

A_PUB=192.0.2.1 SS_PUB=192.0.2.2 A_PRIV=10.1.0.1 HOST_A=10.1.0.2 SS_HOST=10.2.0.1
PSK=demo-psk-$$-$RANDOM$RANDOM
CONN=to-strongswan

banner "topology (network namespaces $IG_TAG-*)"
for n in hostA gwA ss; do ig_ns_add "$n" || exit 1; done
ig_veth hostA ha0 "$HOST_A/24" gwA gA1 "" || exit 1
ig_veth gwA gA0 "" ss pub0 "$SS_PUB/24" || exit 1
ig_exec hostA ip route add default via "$A_PRIV" || exit 1
ig_exec ss ip addr add "$SS_HOST/24" dev lo || exit 1
ig_csum_off hostA ha0 && ig_csum_off ss pub0 || exit 1
echo "hostA: ha0 $HOST_A/24, default via $A_PRIV (ipsecgw)"
echo "gwA:   ipsecgw, DPDK net_af_packet on gA0 (unprotected, $A_PUB) and gA1 (protected, $A_PRIV)"
echo "ss:    strongSwan charon on pub0 $SS_PUB, local subnet 10.2.0.0/24 ($SS_HOST on lo)"

banner "ipsecgw configuration (Neutron VPNaaS names)"
cat >"$IG_WORK/gwA.yaml" <<EOF
vpnservice:
  name: site-a
  ports:
    unprotected: {port: 0, address: $A_PUB/24}
    protected: {port: 1, address: $A_PRIV/24}
dataplane:
  idle_sleep_us: 100
ikepolicies:
  - {name: ike-aes256, auth_algorithm: sha256, encryption_algorithm: aes-256, pfs: group14}
ipsecpolicies:
  - {name: esp-aes256, auth_algorithm: sha256, encryption_algorithm: aes-256, pfs: group14}
ipsec_site_connections:
  - name: $CONN
    peer_address: $SS_PUB
    peer_cidrs: [10.2.0.0/24]
    psk: "$PSK"
    initiator: bi-directional
    dpd: {action: hold, interval: 10, timeout: 60}
    ikepolicy: ike-aes256
    ipsecpolicy: esp-aes256
EOF
sed -E 's/psk: .*/psk: <hidden>/' "$IG_WORK/gwA.yaml"
echo
run "$IPSECGW" --check-config --config "$IG_WORK/gwA.yaml" || exit 1

banner "strongSwan (responder, aes256-sha256-modp2048)"
pn_ss_start ss ss role=responder local_addr=$SS_PUB remote_addr=$A_PUB local_ts=10.2.0.0/24 \
  remote_ts=10.1.0.0/24 psk="$PSK" ike=aes256-sha256-modp2048 esp=aes256-sha256-modp2048 \
  keylog=yes || exit 1
sed -n '/^connections/,/^secrets/p' "$(pn_ss_dir ss)/swanctl/swanctl.conf" | sed '$d'

banner "ipsecgw starts and initiates"
ig_cap_start pub ss pub0 || exit 1
echo "ipsecgw --no-huge -m 512 --no-pci -l 0-1 --vdev=net_af_packet0,iface=gA0 --vdev=net_af_packet1,iface=gA1 -- --config gwA.yaml"
ig_gw_start A "$IG_WORK/gwA.yaml" || exit 1
LOG=$(ig_gw_log A)
for i in $(seq 150); do grep -q "connection $CONN .*: ACTIVE" "$LOG" && break; sleep 0.2; done
grep -aE 'ipsecgw\.(app|ike)' "$LOG" | sed 's/^/  gwA| /'
grep -q "connection $CONN .*: ACTIVE" "$LOG" || { echo "scripts/demo: the tunnel did not come up"; tail -20 "$(pn_ss_log ss)"; exit 1; }

banner "strongSwan's view"
pn_swanctl ss --list-sas

banner "ping hostA <-> $SS_HOST through the tunnel"
ig_wait_ping hostA "$SS_HOST" 10 || echo "(no reply yet)"
run ip netns exec "$(ig_ns hostA)" ping -n -c 4 -i 0.3 -W 2 "$SS_HOST"
run ip netns exec "$(ig_ns ss)" ping -n -c 4 -i 0.3 -W 2 -I "$SS_HOST" "$HOST_A"

banner "a TCP transfer hostA -> strongSwan side (256 KiB, sha256 compared)"
head -c 262144 /dev/urandom >"$IG_WORK/send.bin"
timeout 30 ip netns exec "$(ig_ns ss)" socat -u TCP-LISTEN:5001,reuseaddr \
  "OPEN:$IG_WORK/recv.bin,creat,trunc" </dev/null &
lpid=$!
for i in $(seq 50); do ig_exec ss ss -ltn 2>/dev/null | grep -q ':5001 ' && break; sleep 0.1; done
timeout 30 ip netns exec "$(ig_ns hostA)" socat -u "OPEN:$IG_WORK/send.bin" "TCP:$SS_HOST:5001,connect-timeout=10"
wait "$lpid"
echo "sent     $(sha256sum <"$IG_WORK/send.bin" | cut -c1-64)"
echo "received $(sha256sum <"$IG_WORK/recv.bin" 2>/dev/null | cut -c1-64) ($(stat -c %s "$IG_WORK/recv.bin" 2>/dev/null || echo 0) bytes)"

banner "telemetry: /ipsecgw/connections"
sock=/run/dpdk/${IG_GW_PREFIX[A]}/dpdk_telemetry.v2
/usr/bin/python3 - "$sock" <<'PY' || echo "(telemetry not reachable)"
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(5)
s.connect(sys.argv[1])
s.recv(1024)
s.send(b"/ipsecgw/connections")
print(s.recv(65536).decode())
PY

ig_cap_stop pub
banner "the public link (tshark): IKE, then only ESP in UDP 4500 between $A_PUB and $SS_PUB"
pcap=$(ig_cap_file pub)
tshark -n -r "$pcap" 2>/dev/null | head -14
echo "..."
echo "protocol hierarchy:"
tshark -n -r "$pcap" -q -z io,phs 2>/dev/null | sed -n '/frame/,/====/p'
echo "decrypted by tshark with the ESP keys charon logged, first packets:"
recs=$(pn_ss_esp_keys ss "$SS_PUB" "$A_PUB" "AES-CBC [RFC3602]" "HMAC-SHA-256-128 [RFC4868]" responder 2>/dev/null)
uat=()
while IFS= read -r r; do [ -n "$r" ] && uat+=(-o "uat:esp_sa:$r"); done <<<"$recs"
tshark -n -r "$pcap" -o esp.enable_encryption_decode:TRUE "${uat[@]}" -Y 'icmp' 2>/dev/null | head -6

banner "stopping (SIGTERM): counters and connections"
ig_gw_stop A
echo "--- gwA (exit ${IG_GW_RC[A]})"
sed -n '/=== ipsecgw counters ===/,$p' "$LOG"
banner "done: namespaces, veths, charon and files are removed"
exit 0
