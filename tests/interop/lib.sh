# tests/interop/lib.sh -- network-namespace helpers for ipsecgw end-to-end tests and the demo.
# Source from bash. Patterns follow /work/shared/peer/peer-lib.sh (tested there):
#   ig_init                       work dir, unique tag (ig<pid>); call ig_cleanup_all from a trap
#   ig_topology                   hostA -- gwA == wan (bridge) == gwB -- hostB (see below)
#   ig_write_static_configs DIR udp_encap(true|false)
#   ig_gw_start A|B CONFIG [extra ipsecgw options...]; ig_gw_stop A|B
#   ig_cap_start NAME NS IF; ig_cap_stop NAME
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
IG_NS_LIST=()
IG_CAPS=()
declare -gA IG_CAP_PIDS=() IG_GW_PIDS=() IG_GW_PREFIX=() IG_GW_RC=()

IG_A_PUB=192.0.2.1 IG_B_PUB=192.0.2.2 IG_WAN_IP=192.0.2.100
IG_A_PRIV=10.1.0.1 IG_B_PRIV=10.2.0.1 IG_HOST_A=10.1.0.2 IG_HOST_B=10.2.0.2
IG_NET_A=10.1.0.0/24 IG_NET_B=10.2.0.0/24
# Static SAs of the tunnel (example keys; A->B uses SPI 0x1001, B->A 0x2002).
IG_SPI_AB=0x1001 IG_ENC_AB=101112131415161718191a1b1c1d1e1f IG_AUTH_AB=303132333435363738393a3b3c3d3e3f40414243
IG_SPI_BA=0x2002 IG_ENC_BA=202122232425262728292a2b2c2d2e2f IG_AUTH_BA=404142434445464748494a4b4c4d4e4f50515253

ig_log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
ig_die() { ig_log "ERROR: $*"; return 1; }

ig_init() {
  [ "$(id -u)" = 0 ] || { ig_die "must run as root (network namespaces)"; return 1; }
  local t
  for t in ip ethtool tcpdump timeout; do
    command -v "$t" >/dev/null || { ig_die "$t not installed"; return 1; }
  done
  modprobe veth 2>/dev/null || true
  if [ -z "$IG_WORK" ]; then IG_WORK=$(mktemp -d /tmp/ipsecgw-e2e.XXXXXX) || return 1; IG_WORK_OWNED=1; fi
  mkdir -p "$IG_WORK"
  ig_log "work dir $IG_WORK, namespace tag $IG_TAG"
}

ig_ns() { printf '%s-%s' "$IG_TAG" "$1"; }
ig_exec() { local ns=$1; shift; ip netns exec "$(ig_ns "$ns")" "$@"; }

ig_ns_add() {
  local n; n=$(ig_ns "$1")
  ip netns add "$n" || return 1
  IG_NS_LIST+=("$1")
  ip -n "$n" link set lo up
  ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
    net.ipv6.conf.default.disable_ipv6=1 >/dev/null
}

# ig_veth NS_A IF_A ADDR_A NS_B IF_B ADDR_B  (ADDR "" = none: an end for DPDK)
ig_veth() {
  local nsa=$1 ifa=$2 adra=$3 nsb=$4 ifb=$5 adrb=$6 ta tb
  ta="v${$}a$RANDOM"; tb="v${$}b$RANDOM"; ta=${ta:0:15}; tb=${tb:0:15}
  ip link add "$ta" type veth peer name "$tb" || return 1
  ig__place "$ta" "$nsa" "$ifa" "$adra" && ig__place "$tb" "$nsb" "$ifb" "$adrb"
}
ig__place() {
  local tmp=$1 ns=$2 ifn=$3 adr=$4
  ip link set "$tmp" netns "$(ig_ns "$ns")" || return 1
  ig_exec "$ns" ip link set "$tmp" name "$ifn" || return 1
  ig_exec "$ns" sysctl -qw "net.ipv6.conf.$ifn.disable_ipv6=1" >/dev/null 2>&1
  [ -n "$adr" ] && { ig_exec "$ns" ip addr add "$adr" dev "$ifn" || return 1; }
  ig_exec "$ns" ip link set "$ifn" up
}
# TX checksum offload off on a kernel-side veth end whose peer is read via AF_PACKET.
ig_csum_off() { ig_exec "$1" ethtool -K "$2" tx off >/dev/null; }

ig_topology() {
  local n
  for n in hostA gwA wan gwB hostB; do ig_ns_add "$n" || return 1; done
  ig_veth hostA ha0 "$IG_HOST_A/24" gwA gA1 "" || return 1
  ig_veth gwA gA0 "" wan wa "" || return 1
  ig_veth gwB gB0 "" wan wb "" || return 1
  ig_veth hostB hb0 "$IG_HOST_B/24" gwB gB1 "" || return 1
  ig_exec wan ip link add br0 type bridge || return 1
  ig_exec wan ip link set br0 type bridge stp_state 0 forward_delay 0 2>/dev/null
  ig_exec wan ip link set wa master br0 && ig_exec wan ip link set wb master br0 || return 1
  ig_exec wan sysctl -qw net.ipv6.conf.br0.disable_ipv6=1 >/dev/null 2>&1
  ig_exec wan ip addr add "$IG_WAN_IP/24" dev br0 && ig_exec wan ip link set br0 up || return 1
  ig_exec hostA ip route add default via "$IG_A_PRIV" || return 1
  ig_exec hostB ip route add default via "$IG_B_PRIV" || return 1
  ig_csum_off hostA ha0 && ig_csum_off hostB hb0 && ig_csum_off wan wa && ig_csum_off wan wb &&
    ig_csum_off wan br0 || return 1
}

# ig_write_static_configs DIR UDP_ENCAP : DIR/gwA.yaml and DIR/gwB.yaml, mirrored static SAs.
ig_write_static_configs() {
  local dir=$1 encap=$2
  ig__static_config "site-a" "$IG_A_PUB" "$IG_A_PRIV" "$IG_B_PUB" "$IG_NET_B" \
    "$IG_SPI_BA" "$IG_ENC_BA" "$IG_AUTH_BA" "$IG_SPI_AB" "$IG_ENC_AB" "$IG_AUTH_AB" "$encap" >"$dir/gwA.yaml"
  ig__static_config "site-b" "$IG_B_PUB" "$IG_B_PRIV" "$IG_A_PUB" "$IG_NET_A" \
    "$IG_SPI_AB" "$IG_ENC_AB" "$IG_AUTH_AB" "$IG_SPI_BA" "$IG_ENC_BA" "$IG_AUTH_BA" "$encap" >"$dir/gwB.yaml"
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

# ig_gw_start A|B CONFIG [ipsecgw options...] : ipsecgw in gwA/gwB, log in $IG_WORK/gwX.log.
ig_gw_start() {
  local x=$1 cfg=$2; shift 2
  local ns="gw$x" lx; lx=$(tr 'AB' 'ab' <<<"$x")
  local prefix="ipsecgw-$IG_TAG-$x" log="$IG_WORK/gw$x.log"
  IG_GW_PREFIX[$x]=$prefix
  # exec chain only (ip netns exec execs ipsecgw), so $! is ipsecgw's PID.
  ip netns exec "$(ig_ns "$ns")" "$IPSECGW" --no-huge -m 512 --no-pci --file-prefix="$prefix" \
    -l 0-1 --log-level=lib.eal:warning \
    --vdev="net_af_packet0,iface=g${x}0" --vdev="net_af_packet1,iface=g${x}1" \
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
  IG_GW_RC[$x]=$?
  IG_GW_PIDS[$x]=
  rm -rf "/run/dpdk/${IG_GW_PREFIX[$x]}" "/var/run/dpdk/${IG_GW_PREFIX[$x]}" 2>/dev/null
  return 0
}
ig_gw_log() { printf '%s/gw%s.log' "$IG_WORK" "$1"; }

# ig_cap_start NAME NS IF [tcpdump filter...] -> $IG_WORK/NAME.pcap
ig_cap_start() {
  local name=$1 ns=$2 ifn=$3; shift 3
  local f="$IG_WORK/$name.pcap" e="$IG_WORK/$name.cap.err" i
  ip netns exec "$(ig_ns "$ns")" tcpdump -n -U --immediate-mode -s 0 -Z root -i "$ifn" -w "$f" "$@" \
    </dev/null >/dev/null 2>"$e" &
  IG_CAP_PIDS[$name]=$!
  IG_CAPS+=("$name")
  for i in $(seq 50); do grep -q 'listening on' "$e" 2>/dev/null && return 0; sleep 0.1; done
  ig_die "tcpdump $name did not start: $(cat "$e")"
}
ig_cap_stop() {
  local pid=${IG_CAP_PIDS[$1]:-} i
  [ -n "$pid" ] || return 0
  sleep 0.3  # let the last packets reach the file
  kill -INT "$pid" 2>/dev/null
  for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  IG_CAP_PIDS[$1]=
  return 0
}
ig_cap_file() { printf '%s/%s.pcap' "$IG_WORK" "$1"; }

# ig_wait_ping NS DST SECONDS : until one echo reply arrives (ARP warm-up), bounded.
ig_wait_ping() {
  local end=$(( $(date +%s) + $3 ))
  while [ "$(date +%s)" -le "$end" ]; do
    ig_exec "$1" ping -n -q -c 1 -W 1 "$2" >/dev/null 2>&1 && return 0
  done
  return 1
}

ig_cleanup_all() {
  local x
  for x in "${IG_CAPS[@]}"; do ig_cap_stop "$x"; done
  for x in "${!IG_GW_PIDS[@]}"; do ig_gw_stop "$x"; done
  for x in "${IG_NS_LIST[@]}"; do ip netns del "$(ig_ns "$x")" 2>/dev/null; done
  IG_NS_LIST=()
  if [ -n "${IG_WORK_OWNED:-}" ] && [ -z "${IG_KEEP:-}" ] && [ -d "$IG_WORK" ]; then
    rm -rf -- "$IG_WORK"
  elif [ -d "$IG_WORK" ]; then
    ig_log "kept $IG_WORK"
  fi
  return 0
}
