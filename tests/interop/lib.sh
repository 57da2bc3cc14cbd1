# shellcheck shell=bash source-path=SCRIPTDIR
# tests/interop/lib.sh -- network-namespace helpers for ipsecgw end-to-end tests and the demo.
# Source from bash. Built on peer-lib.sh (sourced here; a copy of /work/shared/peer's): its
# namespaces, veths and captures, and charon for the strongSwan tests (same tag, same work dir).
#   ig_init                       work dir, unique tag (ig<pid>); call ig_cleanup_all from a trap
#   ig_topology                   hostA -- gwA == wan (bridge) == gwB -- hostB (see below)
#   ig_topology_ss                hostA -- gwA -- ss (strongSwan's namespace, see ig_topology_ss)
#   ig_site_a, ig_bridge NS IF... pieces of both, for other topologies
#   ig_write_static_configs DIR udp_encap(true|false)
#   ig_gw_start A|B CONFIG [extra ipsecgw options...]; ig_gw_stop A|B
#   ig_cap_start NAME NS IF; ig_cap_stop NAME
#   ig_write_ike_config FILE      ipsecgw with IKE connections (IG_CONN_* arrays)
#   ig_step, ig_pass, ig_fail, ig_finish NAME   check reporting (IG_FAILS counts failures)
#   ig_ping_check, ig_tcp_check, ig_telemetry, ig_status_line, ig_wait_status, ig_wait_log
#
# Topology (all in namespaces named "$IG_TAG-<name>", nothing in the root namespace):
#
#   hostA 10.1.0.2 --ha0|gA1-- [gwA: ipsecgw] --gA0|wa-- wan br0 --wb|gB0-- [gwB: ipsecgw] --gB1|hb0-- hostB 10.2.0.2
#          10.1.0.0/24         10.1.0.1  192.0.2.1      192.0.2.100     192.0.2.2  10.2.0.1          10.2.0.0/24
#
# gA0/gA1/gB0/gB1 are opened by DPDK's net_af_packet inside the gateway's namespace: no kernel
# IP, IPv6 off. Their kernel-side peers (ha0, hb0, wa, wb) get `ethtool -K tx off`, so AF_PACKET
# readers never see unfinished (CHECKSUM_PARTIAL) checksums. Only processes started here are
# ever signalled, always by PID.

IG_TAG=${IG_TAG:-ig$$}
IG_WORK=${IG_WORK:-}
declare -gA IG_GW_PIDS=() IG_GW_PREFIX=() IG_GW_RC=()

IG_A_PUB=192.0.2.1 IG_B_PUB=192.0.2.2 IG_WAN_IP=192.0.2.100
IG_A_PRIV=10.1.0.1 IG_B_PRIV=10.2.0.1 IG_HOST_A=10.1.0.2 IG_HOST_B=10.2.0.2
IG_NET_A=10.1.0.0/24 IG_NET_B=10.2.0.0/24
# Static SAs of the tunnel (example keys; A->B uses SPI 0x1001, B->A 0x2002).
IG_SPI_AB=0x1001 IG_ENC_AB=101112131415161718191a1b1c1d1e1f IG_AUTH_AB=303132333435363738393a3b3c3d3e3f40414243
IG_SPI_BA=0x2002 IG_ENC_BA=202122232425262728292a2b2c2d2e2f IG_AUTH_BA=404142434445464748494a4b4c4d4e4f50515253

# shellcheck source=peer-lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/peer-lib.sh"

ig_log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
ig_die() { ig_log "ERROR: $*"; return 1; }

# ig_require root|strongswan|nft|openstack : prints SKIP and exits 77 when it is missing
ig_require() {
  case $1 in
    root) [ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; } ;;
    strongswan) if [ ! -x /usr/lib/ipsec/charon ] || [ ! -x /usr/sbin/swanctl ]; then
      echo "SKIP: strongSwan charon/swanctl not installed"; exit 77; fi ;;
    nft) command -v nft >/dev/null || { echo "SKIP: nft not installed (nftables)"; exit 77; } ;;
    openstack) command -v openstack >/dev/null || { echo "SKIP: openstack client not installed"; exit 77; } ;;
  esac
}
# ig_require_tools TOOL... (scapy: /usr/bin/python3's module) : prints FAIL and returns 1 when missing
ig_require_tools() {
  local t
  for t in "$@"; do
    if [ "$t" = scapy ]; then
      /usr/bin/python3 -c 'import scapy' 2>/dev/null || { echo "FAIL: /usr/bin/python3 has no scapy (python3-scapy)"; return 1; }
    else
      command -v "$t" >/dev/null || { echo "FAIL: $t not installed"; return 1; }
    fi
  done
}

ig_init() {
  [ "$(id -u)" = 0 ] || { ig_die "must run as root (network namespaces)"; return 1; }
  local t
  for t in ip ethtool tcpdump timeout; do
    command -v "$t" >/dev/null || { ig_die "$t not installed"; return 1; }
  done
  modprobe veth 2>/dev/null || true
  if [ -z "$IG_WORK" ]; then IG_WORK=$(mktemp -d /tmp/ipsecgw-e2e.XXXXXX) || return 1; IG_WORK_OWNED=1; fi
  mkdir -p "$IG_WORK"
  PN_TAG=$IG_TAG PN_WORK=$IG_WORK   # peer-lib's names and files = ours: "<tag>-<name>"; lib.sh removes the dir
  ig_log "work dir $IG_WORK, namespace tag $IG_TAG"
}

ig_ns() { printf '%s-%s' "$IG_TAG" "$1"; }
ig_exec() { local ns=$1; shift; ip netns exec "$(ig_ns "$ns")" "$@"; }

# ig_ns_add NAME... : peer-lib's namespaces (lo up, IPv6 off, forwarding on), removed at cleanup
ig_ns_add() {
  local n
  for n in "$@"; do pn_ns_add "$n" || return 1; done
}

# ig_veth NS_A IF_A ADDR_A NS_B IF_B ADDR_B  (ADDR "" = none: an end for DPDK); IPv6 off on both
ig_veth() {
  pn_veth "$@" || return 1
  ig_exec "$1" sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1" >/dev/null 2>&1
  ig_exec "$4" sysctl -qw "net.ipv6.conf.$5.disable_ipv6=1" >/dev/null 2>&1
  return 0
}
# TX checksum offload off on a kernel-side veth end whose peer is read via AF_PACKET.
ig_csum_off() { pn_veth_csum_off "$@"; }

# ig_bridge NS IF... : bridge br0 in NS over the links IF... (no STP, no forwarding delay), up
ig_bridge() {
  local ns=$1 i; shift
  ig_exec "$ns" ip link add br0 type bridge || return 1
  ig_exec "$ns" ip link set br0 type bridge stp_state 0 forward_delay 0 2>/dev/null
  for i in "$@"; do ig_exec "$ns" ip link set "$i" master br0 || return 1; done
  ig_exec "$ns" sysctl -qw net.ipv6.conf.br0.disable_ipv6=1 >/dev/null 2>&1
  ig_exec "$ns" ip link set br0 up
}

# ig_site_a : namespaces hostA and gwA; hostA ha0 10.1.0.2/24 (default via 10.1.0.1) -- gA1
ig_site_a() {
  ig_ns_add hostA gwA || return 1
  ig_veth hostA ha0 "$IG_HOST_A/24" gwA gA1 "" || return 1
  ig_exec hostA ip route add default via "$IG_A_PRIV" || return 1
  ig_csum_off hostA ha0
}

ig_topology() {
  ig_site_a && ig_ns_add wan gwB hostB || return 1
  ig_veth gwA gA0 "" wan wa "" || return 1
  ig_veth gwB gB0 "" wan wb "" || return 1
  ig_veth hostB hb0 "$IG_HOST_B/24" gwB gB1 "" || return 1
  ig_bridge wan wa wb || return 1
  ig_exec wan ip addr add "$IG_WAN_IP/24" dev br0 || return 1
  ig_exec hostB ip route add default via "$IG_B_PRIV" || return 1
  ig_csum_off hostB hb0 && ig_csum_off wan wa && ig_csum_off wan wb && ig_csum_off wan br0
}

# ig_topology_ss : hostA -- gwA --gA0|pub0-- ss, where ss (192.0.2.2/24 on pub0, forwarding on)
# runs strongSwan and holds 10.2.0.1/24 on lo: kernel-libipsec needs a source in local_ts, so
# ss is both the peer gateway and the host behind it.
ig_topology_ss() {
  ig_site_a && ig_ns_add ss || return 1
  ig_veth gwA gA0 "" ss pub0 "$IG_B_PUB/24" || return 1
  ig_exec ss ip addr add "$IG_B_PRIV/24" dev lo || return 1
  ig_csum_off ss pub0
}

# ig_write_static_configs DIR UDP_ENCAP : DIR/gwA.yaml and DIR/gwB.yaml, mirrored static SAs.
ig_write_static_configs() {
  local dir=$1 encap=$2
  ig__static_config "site-a" "$IG_A_PUB" "$IG_A_PRIV" "$IG_B_PUB" "$IG_NET_B" \
    "$IG_SPI_BA" "$IG_ENC_BA" "$IG_AUTH_BA" "$IG_SPI_AB" "$IG_ENC_AB" "$IG_AUTH_AB" "$encap" >"$dir/gwA.yaml"
  ig__static_config "site-b" "$IG_B_PUB" "$IG_B_PRIV" "$IG_A_PUB" "$IG_NET_A" \
    "$IG_SPI_AB" "$IG_ENC_AB" "$IG_AUTH_AB" "$IG_SPI_BA" "$IG_ENC_BA" "$IG_AUTH_BA" "$encap" >"$dir/gwB.yaml"
  chmod 600 "$dir/gwA.yaml" "$dir/gwB.yaml"  # they hold keys: ipsecgw refuses group/other access
}
ig__static_config() {
  cat <<EOF
# generated by tests/interop/lib.sh: static SAs (manual_keys), no IKE
vpnservice:
  name: $1
  ports:
    unprotected: {port: 0, address: $2/24}
    protected: {port: 1, address: $3/24}
  unmatched_traffic: drop
dataplane:
  idle_sleep_us: ${IG_IDLE_SLEEP_US:-100}   # shared test machines: idle workers sleep
ipsecpolicies:
  - {name: esp-aes128-sha1, encryption_algorithm: aes-128, auth_algorithm: sha1}
ipsec_site_connections:
  - name: $1-tunnel
    peer_address: $4
    peer_cidrs: [$5]
    ipsecpolicy: esp-aes128-sha1
    manual_keys:
      inbound:  {spi: $6, encryption_key: $7, auth_key: $8}
      outbound: {spi: $9, encryption_key: ${10}, auth_key: ${11}}
      udp_encap: ${12}
EOF
}


# ---- ipsecgw with IKE (strongSwan tests, demo)
# strongSwan proposal words (aes128, sha256, modp2048) -> Neutron YAML and swanctl --list-sas names
ig_neutron_enc() { echo "aes-${1#aes}"; }
ig_neutron_grp() { case $1 in modp1024) echo group2;; modp1536) echo group5;; modp2048) echo group14;; esac; }
ig_ss_enc() { echo "AES_CBC-${1#aes}"; }
ig_ss_integ() { case $1 in sha1) echo HMAC_SHA1_96;; sha256) echo HMAC_SHA2_256_128;; esac; }
ig_ss_prf() { case $1 in sha1) echo PRF_HMAC_SHA1;; sha256) echo PRF_HMAC_SHA2_256;; esac; }
ig_ss_dh() { echo "MODP_${1#modp}"; }
# Wireshark's name of the ESP integrity algorithm (charon's keylog, tshark's esp_sa table)
ig_ws_integ() { case $1 in sha1) echo "HMAC-SHA-1-96 [RFC2404]";; sha256) echo "HMAC-SHA-256-128 [RFC4868]";; esac; }

# ig_write_ike_config FILE PSK : gwA's configuration with the connections named in IG_CONNS:
#   IG_CONN_PEER[c] IG_CONN_NET[c] IG_CONN_IKE[c]=enc-hash-grp IG_CONN_ESP[c]=enc-hash-grp
#   IG_CONN_INIT[c] (initiator), optional IG_CONN_PID[c] (peer_id), IG_CONN_DPD[c] ("{action: ..}"
#   YAML), IG_CONN_LIFE[c] (ESP lifetime, s); public port IG_PUB_ADDR (CIDR), IG_PUB_GW (gateway).
declare -gA IG_CONN_PID=() IG_CONN_PEER=() IG_CONN_NET=() IG_CONN_IKE=() IG_CONN_ESP=() IG_CONN_INIT=() \
  IG_CONN_DPD=() IG_CONN_LIFE=()
IG_CONNS=()
IG_PUB_ADDR=$IG_A_PUB/24 IG_PUB_GW=""
ig_write_ike_config() {
  local file=$1 psk=$2 c e h g
  {
    echo "# generated by tests/interop/lib.sh: IKE connections"
    echo "vpnservice:"
    echo "  name: site-a"
    echo "  ports:"
    echo "    unprotected: {port: 0, address: $IG_PUB_ADDR${IG_PUB_GW:+, gateway: $IG_PUB_GW}}"
    echo "    protected: {port: 1, address: $IG_A_PRIV/24}"
    echo "  unmatched_traffic: drop"
    echo "dataplane:"
    echo "  idle_sleep_us: ${IG_IDLE_SLEEP_US:-100}"
    echo "ikepolicies:"
    for c in "${IG_CONNS[@]}"; do
      IFS=- read -r e h g <<<"${IG_CONN_IKE[$c]}"
      echo "  - {name: ike-$c, auth_algorithm: $h, encryption_algorithm: $(ig_neutron_enc "$e"), pfs: $(ig_neutron_grp "$g")}"
    done
    echo "ipsecpolicies:"
    for c in "${IG_CONNS[@]}"; do
      IFS=- read -r e h g <<<"${IG_CONN_ESP[$c]}"
      echo "  - {name: esp-$c, auth_algorithm: $h, encryption_algorithm: $(ig_neutron_enc "$e"), pfs: $(ig_neutron_grp "$g")${IG_CONN_LIFE[$c]:+, lifetime: {units: seconds, value: ${IG_CONN_LIFE[$c]}\}}}"
    done
    echo "ipsec_site_connections:"
    for c in "${IG_CONNS[@]}"; do
      cat <<YAML
  - name: $c
    peer_address: ${IG_CONN_PEER[$c]}${IG_CONN_PID[$c]:+
    peer_id: ${IG_CONN_PID[$c]}}
    peer_cidrs: [${IG_CONN_NET[$c]}]
    psk: "$psk"
    initiator: ${IG_CONN_INIT[$c]}
    dpd: ${IG_CONN_DPD[$c]:-"{action: hold, interval: 10, timeout: 60}"}
    ikepolicy: ike-$c
    ipsecpolicy: esp-$c
YAML
    done
  } >"$file"
  chmod 600 "$file"  # it holds the PSK: ipsecgw refuses group/other access
}

# ig_check_config FILE : $IPSECGW --check-config accepts it (else FAIL, its complaint, rc 1)
ig_check_config() {
  "$IPSECGW" --check-config --config "$1" >/dev/null && return 0
  echo "FAIL: generated config rejected"; "$IPSECGW" --check-config --config "$1"; cat "$1"; return 1
}

# ig_gw_start A|B CONFIG [ipsecgw options...] : ipsecgw in gwA/gwB, log in $IG_WORK/gwX.log.
# IG_AFP_ARGS (e.g. ",framecnt=4096") is appended to both net_af_packet vdevs.
ig_gw_start() {
  local x=$1 cfg=$2; shift 2
  local ns="gw$x"
  local prefix="ipsecgw-$IG_TAG-$x" log="$IG_WORK/gw$x.log"
  IG_GW_PREFIX[$x]=$prefix
  # exec chain only (ip netns exec execs ipsecgw), so $! is ipsecgw's PID.
  ip netns exec "$(ig_ns "$ns")" "$IPSECGW" --no-huge -m 512 --no-pci --file-prefix="$prefix" \
    -l 0-1 --log-level=lib.eal:warning \
    --vdev="net_af_packet0,iface=g${x}0${IG_AFP_ARGS:-}" --vdev="net_af_packet1,iface=g${x}1${IG_AFP_ARGS:-}" \
    -- --config "$cfg" "$@" </dev/null >"$log" 2>&1 &
  IG_GW_PIDS[$x]=$!
  local i
  for i in $(seq 300); do
    grep -q 'ipsecgw running' "$log" 2>/dev/null && return 0
    kill -0 "${IG_GW_PIDS[$x]}" 2>/dev/null || { ig_die "ipsecgw $x exited at start:"; cat "$log" >&2; return 1; }
    sleep 0.1
  done
  ig_die "ipsecgw $x not running after 30 s:"; cat "$log" >&2; return 1
}

# ig_gw_stop A|B : SIGTERM, wait up to 15 s (then SIGKILL); IG_GW_RC[x] = exit status.
ig_gw_stop() {
  local x=$1 pid i
  pid=${IG_GW_PIDS[$x]:-}
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    ig_log "ipsecgw $x did not stop on SIGTERM: SIGKILL"
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null
  # shellcheck disable=SC2034  # read by the scripts
  IG_GW_RC[$x]=$?
  IG_GW_PIDS[$x]=
  rm -rf "/run/dpdk/${IG_GW_PREFIX[$x]}" "/var/run/dpdk/${IG_GW_PREFIX[$x]}" 2>/dev/null
  return 0
}
ig_gw_log() { printf '%s/gw%s.log' "$IG_WORK" "$1"; }

# ig_cap_start NAME NS IF [tcpdump filter...] ; ig_cap_stop NAME ; ig_cap_file NAME (peer-lib's)
ig_cap_start() { pn_cap_start "$@"; }
ig_cap_stop() {
  sleep 0.3  # let the last packets reach the file
  pn_cap_stop "$1"
}
ig_cap_file() { pn_cap_file "$1"; }

# ---- checks (tests): ig_step, ig_pass, ig_fail (IG_FAILS counts them), ig_finish NAME [SUFFIX]
IG_FAILS=0 IG_T0=$(date +%s)
ig_step() { echo "---- ${IG_STEP_CLOCK:+[$(( $(date +%s) - IG_T0 ))s] }$*"; }
ig_pass() { echo "ok   $*"; }
ig_fail() { echo "FAIL $*"; IG_FAILS=$((IG_FAILS + 1)); }
# ig_finish NAME [PASS_SUFFIX] : "PASS NAME", exit 0; or "FAIL NAME: N check(s) failed", work dir kept, exit 1
ig_finish() {
  if [ "$IG_FAILS" = 0 ]; then echo "PASS $1${2:+ $2}"; exit 0; fi
  echo "FAIL $1: $IG_FAILS check(s) failed"; IG_KEEP=1; exit 1
}

# ig_wait_ping NS DST SECONDS : until one echo reply arrives (ARP warm-up), bounded.
ig_wait_ping() {
  local end=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -le "$end" ]; do
    ig_exec "$1" ping -n -q -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
  done
  return 1
}

# ig_ping_check LABEL NS DST COUNT [ping options...] : COUNT pings 0.2 s apart, every one answered
#   -> ig_pass "LABEL: COUNT/COUNT", else ig_fail with ping's summary; rc 0 on pass
ig_ping_check() {
  local label=$1 ns=$2 dst=$3 n=$4 out; shift 4
  out=$(timeout $(( n + 15 )) ip netns exec "$(ig_ns "$ns")" ping -n -c "$n" -i 0.2 -W 2 "$@" "$dst" 2>&1)
  if grep -q " $n received" <<<"$out"; then ig_pass "$label: $n/$n"; return 0; fi
  ig_fail "$label: $(grep received <<<"$out")"; return 1
}

# ig_tcp_send FROM TO DST_IP FILE [SRC_IP] : FILE over TCP port 5001 from namespace FROM to a
# socat listener in TO, into $IG_WORK/recv.bin; bounded (60 s each end). rc 0 when both ends
# exited 0; IG_TCP_RC says how each ended.
ig_tcp_send() {
  local from=$1 to=$2 dst=$3 file=$4 bind=${5:+,bind=$5} lpid crc lrc i
  rm -f "$IG_WORK/recv.bin"
  timeout 60 ip netns exec "$(ig_ns "$to")" socat -u TCP-LISTEN:5001,reuseaddr \
    "OPEN:$IG_WORK/recv.bin,creat,trunc" </dev/null 2>"$IG_WORK/socat-l.err" &
  lpid=$!
  for i in $(seq 50); do ig_exec "$to" ss -ltn 2>/dev/null | grep -q ':5001 ' && break; sleep 0.1; done
  timeout 60 ip netns exec "$(ig_ns "$from")" socat -u "OPEN:$file" \
    "TCP:$dst:5001,connect-timeout=10$bind" 2>"$IG_WORK/socat-c.err"
  crc=$?
  wait "$lpid"; lrc=$?
  IG_TCP_RC="sender rc=$crc receiver rc=$lrc"
  [ "$crc" = 0 ] && [ "$lrc" = 0 ]
}
ig_sha256() { sha256sum <"$1" 2>/dev/null | cut -d' ' -f1; }
# ig_tcp_check FROM TO DST_IP [SRC_IP] : 1 MiB of random bytes (one file per run), sha256 compared
ig_tcp_check() {
  local f="$IG_WORK/send.bin" want got ok=0
  [ -s "$f" ] || head -c 1048576 /dev/urandom >"$f"
  want=$(ig_sha256 "$f")
  ig_tcp_send "$1" "$2" "$3" "$f" "${4:-}" || ok=1
  got=$(ig_sha256 "$IG_WORK/recv.bin")
  if [ "$ok" = 0 ] && [ "$got" = "$want" ]; then
    ig_pass "TCP $1 -> $2: 1048576 bytes, sha256 ${want:0:16}... matches"
  else
    ig_fail "TCP $1 -> $2: $IG_TCP_RC, $(stat -c %s "$IG_WORK/recv.bin" 2>/dev/null || echo 0) bytes, sha256 ${got:-none} (want $want) $(cat "$IG_WORK"/socat-*.err)"
  fi
}

# ig_telemetry PATH [A|B] : one DPDK telemetry request to that ipsecgw, its JSON answer on stdout
ig_telemetry() {
  local x=${2:-A} sock; sock=$(ls /run/dpdk/"${IG_GW_PREFIX[$x]}"/dpdk_telemetry.v2 2>/dev/null) || return 1
  ig_exec "gw$x" /usr/bin/python3 - "$sock" "$1" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(5)
s.connect(sys.argv[1])
s.recv(1024)
s.send(sys.argv[2].encode())
print(s.recv(65536).decode())
PY
}

# ig_status_line CONN PEER : gwA's last status line for the connection
ig_status_line() { grep -a "connection $1 (peer $2): " "$(ig_gw_log A)" | tail -1; }
# ig_wait_status CONN PEER REGEX SECONDS : until the last status line matches "): REGEX"
ig_wait_status() {
  local end=$(( $(date +%s) + $4 ))
  while [ "$(date +%s)" -le "$end" ]; do
    grep -qE "\): $3" <<<"$(ig_status_line "$1" "$2")" && return 0
    sleep 0.2
  done
  return 1
}
# ig_wait_log REGEX SECONDS : until a line of gwA's log matches
ig_wait_log() {
  local end=$(( $(date +%s) + $2 ))
  while [ "$(date +%s)" -le "$end" ]; do
    grep -aqE "$1" "$(ig_gw_log A)" && return 0
    sleep 0.2
  done
  return 1
}

# ---- the REST API, connection rows, numbered UDP streams (e2e_api, e2e_reconf, e2e_multipeer)
# ig_os ARGS... : the OpenStack client in gwA's namespace against the gateway's API (ipsecgw's
# default, 127.0.0.1:9696 on gwA's lo; bounded)
ig_os() { timeout 60 ip netns exec "$(ig_ns gwA)" openstack --os-auth-type none --os-endpoint http://127.0.0.1:9696 "$@"; }
# ig_conn NAME FIELD : the field (state, spi_in, spi_out ...) of NAME's row in gwA's /ipsecgw/connections
ig_conn() {
  ig_telemetry /ipsecgw/connections | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)["/ipsecgw/connections"]
for i, n in enumerate(d.get("name", [])):
    if n == sys.argv[1]:
        print(d[sys.argv[2]][i])' "$1" "$2" 2>/dev/null
}
# ig_spis NAME : its row's SPI_IN/SPI_OUT
ig_spis() { echo "$(ig_conn "$1" spi_in)/$(ig_conn "$1" spi_out)"; }
# ig_wait_state NAME STATE SECONDS : until its row's state is STATE; else prints the last one, rc 1
ig_wait_state() {
  local end=$(( $(date +%s) + $3 )) st=
  while [ "$(date +%s)" -le "$end" ]; do
    st=$(ig_conn "$1" state); [ "$st" = "$2" ] && return 0
    sleep 0.3
  done
  echo "$1: last state '$st'"; return 1
}
# The numbered stream (udp_stream.py: one datagram every 10 ms, echoed back by `udp_stream.py
# echo PORT` on the far side). Its PID and the echo servers' go in IG_BG_PIDS.
IG_STREAM=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/udp_stream.py
IG_BG_PIDS=()
# ig_stream_start NAME HOST PORT : the stream hostA -> HOST:PORT, result in $IG_WORK/NAME.json
ig_stream_start() {
  rm -f "$IG_WORK/stop-$1" "$IG_WORK/$1.json"
  ip netns exec "$(ig_ns hostA)" /usr/bin/python3 "$IG_STREAM" send "$2" "$3" "$IG_WORK/stop-$1" \
    "$IG_WORK/$1.json" 0.01 &
  IG_BG_PIDS+=("$!")
}
# ig_stream_stop NAME : stops it and waits for its result
ig_stream_stop() {
  touch "$IG_WORK/stop-$1"
  local i
  for i in $(seq 100); do [ -s "$IG_WORK/$1.json" ] && return 0; sleep 0.1; done
  return 1
}
# ig_stream_field NAME KEY : sent, received, missing, last_echoed ... of its result
ig_stream_field() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$IG_WORK/$1.json" "$2"; }

# ig_cleanup_all : the background helpers of IG_BG_PIDS killed, gateways stopped, then peer-lib's cleanup (captures, charons, namespaces);
# the work dir removed unless IG_KEEP is set.
ig_cleanup_all() {
  local x
  for x in "${IG_BG_PIDS[@]}"; do kill "$x" 2>/dev/null; done
  for x in "${!IG_GW_PIDS[@]}"; do ig_gw_stop "$x"; done
  pn_cleanup_all
  if [ -n "${IG_WORK_OWNED:-}" ] && [ -z "${IG_KEEP:-}" ] && [ -d "$IG_WORK" ]; then
    rm -rf -- "$IG_WORK"
  elif [ -d "$IG_WORK" ]; then
    ig_log "kept $IG_WORK"
  fi
  return 0
}

# ig_seq_check SENT_JSON RECV_JSON LABEL : every number the sender (udp_seq.py's report) sent
# arrived at the receiver once; prints one ok/FAIL line; status 1 on FAIL.
ig_seq_check() {
  /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import json, sys
s, r, label = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
ok = s["sent"] > 0 and r["received"] == s["sent"] and r["dups"] == 0
print(("ok   " if ok else "FAIL ") + f"{label}: {r['received']}/{s['sent']} numbered datagrams received"
      f" ({s['sent'] - r['received']} lost, {r['dups']} duplicated)"
      + ("" if ok else f"; receiver socket drops {r.get('rcvbuf_errors')}; missing [seq, s]: {r['missing']}"))
sys.exit(0 if ok else 1)
PY
}
