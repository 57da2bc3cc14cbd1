# shellcheck shell=bash
# scripts/lib/demo_strongswan.sh -- the default part of scripts/demo (sourced by it, with
# $IPSECGW set and cwd = the repository): ipsecgw negotiates an IKEv1 tunnel with a real
# strongSwan gateway (tests/interop/peer-lib.sh runs charon with kernel-libipsec in a namespace)
# and carries traffic through it. The same topology as tests/interop/e2e_strongswan.sh.

banner() { printf '\n\033[1m==== %s\033[0m\n' "$*"; }
run() { printf '\033[36m$ %s\033[0m\n' "$*"; "$@"; }

if [ ! -x /usr/lib/ipsec/charon ] || [ ! -x /usr/sbin/swanctl ]; then
  echo "scripts/demo: strongSwan (charon, swanctl) is not installed" >&2; exit 1
fi

# shellcheck source-path=SCRIPTDIR/../.. source=tests/interop/lib.sh
. tests/interop/lib.sh       # and peer-lib.sh, for charon
IG_TAG=demo$$
trap ig_cleanup_all EXIT
trap 'exit 130' INT TERM
ig_init || exit 1

A_PUB=$IG_A_PUB SS_PUB=$IG_B_PUB A_PRIV=$IG_A_PRIV HOST_A=$IG_HOST_A SS_HOST=$IG_B_PRIV
PSK=demo-psk-$$-$RANDOM$RANDOM
CONN="to-strongswan"

banner "topology (network namespaces $IG_TAG-*)"
ig_topology_ss || exit 1
echo "hostA: ha0 $HOST_A/24, default via $A_PRIV (ipsecgw)"
echo "gwA:   ipsecgw, DPDK net_af_packet on gA0 (unprotected, $A_PUB) and gA1 (protected, $A_PRIV)"
echo "ss:    strongSwan charon on pub0 $SS_PUB, local subnet 10.2.0.0/24 ($SS_HOST on lo)"

banner "ipsecgw configuration (Neutron VPNaaS names)"
IG_CONNS=("$CONN")
IG_CONN_PEER[$CONN]=$SS_PUB IG_CONN_NET[$CONN]=10.2.0.0/24 IG_CONN_INIT[$CONN]=bi-directional
IG_CONN_IKE[$CONN]=aes256-sha256-modp2048 IG_CONN_ESP[$CONN]=aes256-sha256-modp2048
ig_write_ike_config "$IG_WORK/gwA.yaml" "$PSK"
sed -E 's/psk: .*/psk: <hidden>/' "$IG_WORK/gwA.yaml"
echo
run "$IPSECGW" --check-config --config "$IG_WORK/gwA.yaml" || exit 1

banner "strongSwan (responder, aes256-sha256-modp2048)"
pn_ss_start ss ss role=responder local_addr="$SS_PUB" remote_addr="$A_PUB" local_ts=10.2.0.0/24 \
  remote_ts=10.1.0.0/24 psk="$PSK" ike=aes256-sha256-modp2048 esp=aes256-sha256-modp2048 \
  keylog=yes || exit 1
sed -n '/^connections/,/^secrets/p' "$(pn_ss_dir ss)/swanctl/swanctl.conf" | sed '$d'

banner "ipsecgw starts and initiates"
ig_cap_start pub ss pub0 || exit 1
echo "ipsecgw --no-huge -m 512 --no-pci -l 0-1 --vdev=net_af_packet0,iface=gA0 --vdev=net_af_packet1,iface=gA1 -- --config gwA.yaml"
ig_gw_start A "$IG_WORK/gwA.yaml" || exit 1
LOG=$(ig_gw_log A)
ig_wait_status "$CONN" "$SS_PUB" ACTIVE 30; up=$?
grep -aE 'ipsecgw\.(app|ike)' "$LOG" | sed 's/^/  gwA| /'
[ "$up" = 0 ] || { echo "scripts/demo: the tunnel did not come up"; tail -20 "$(pn_ss_log ss)"; exit 1; }

banner "strongSwan's view"
pn_swanctl ss --list-sas

banner "ping hostA <-> $SS_HOST through the tunnel"
ig_wait_ping hostA "$SS_HOST" 10 || echo "(no reply yet)"
run ip netns exec "$(ig_ns hostA)" ping -n -c 4 -i 0.3 -W 2 "$SS_HOST"
run ip netns exec "$(ig_ns ss)" ping -n -c 4 -i 0.3 -W 2 -I "$SS_HOST" "$HOST_A"

banner "a TCP transfer hostA -> strongSwan side (256 KiB, sha256 compared)"
head -c 262144 /dev/urandom >"$IG_WORK/send.bin"
ig_tcp_send hostA ss "$SS_HOST" "$IG_WORK/send.bin" || echo "($IG_TCP_RC)"
echo "sent     $(ig_sha256 "$IG_WORK/send.bin")"
echo "received $(ig_sha256 "$IG_WORK/recv.bin") ($(stat -c %s "$IG_WORK/recv.bin" 2>/dev/null || echo 0) bytes)"

banner "telemetry: /ipsecgw/connections"
ig_telemetry /ipsecgw/connections || echo "(telemetry not reachable)"

ig_cap_stop pub
banner "the public link (tshark): IKE, then only ESP in UDP 4500 between $A_PUB and $SS_PUB"
pcap=$(ig_cap_file pub)
tshark -n -r "$pcap" 2>/dev/null | head -14
echo "..."
echo "protocol hierarchy:"
tshark -n -r "$pcap" -q -z io,phs 2>/dev/null | sed -n '/frame/,/====/p'
echo "decrypted by tshark with the ESP keys charon logged, first packets:"
recs=$(pn_ss_esp_keys ss "$SS_PUB" "$A_PUB" "AES-CBC [RFC3602]" "$(ig_ws_integ sha256)" responder 2>/dev/null)
uat=()
while IFS= read -r r; do [ -n "$r" ] && uat+=(-o "uat:esp_sa:$r"); done <<<"$recs"
tshark -n -r "$pcap" -o esp.enable_encryption_decode:TRUE "${uat[@]}" -Y 'icmp' 2>/dev/null | head -6

banner "stopping (SIGTERM): counters and connections"
ig_gw_stop A
echo "--- gwA (exit ${IG_GW_RC[A]})"
sed -n '/=== ipsecgw counters ===/,$p' "$LOG"
banner "done: namespaces, veths, charon and files are removed"
exit 0
