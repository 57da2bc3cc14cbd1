# Copied from /work/shared/peer/peer-lib.sh (CI may lack ../shared). Local change: python
# helpers run /usr/bin/python3 (Debian's), per the house rules; swanctl gets an explicit
# plugin list (PN_SWANCTL_PLUGINS); the default charon plugin list drops "openssl" when
# libstrongswan-standard-plugins is not installed (aes/sha1/sha2/hmac/gmp cover IKEv1 here).
# peer-lib.sh -- helpers for real-peer IKEv1/ESP interop tests in network
# namespaces, using strongSwan 5.9.x charon with userspace ESP
# (kernel-libipsec, TUN device).  Source it from bash:
#
#   . peer-lib.sh
#   pn_init                      # work dir + cleanup bookkeeping (trap pn_cleanup_all EXIT)
#   pn_ns_add gwl; pn_ns_add gwr
#   pn_veth gwl pub0 192.0.2.1/24  gwr pub0 192.0.2.2/24
#   pn_ss_start right gwr role=responder local_addr=192.0.2.2 remote_addr=%any \
#       local_ts=10.2.0.0/24 remote_ts=10.1.0.0/24 psk=secret
#   pn_ss_start left gwl role=initiator local_addr=192.0.2.1 remote_addr=192.0.2.2 \
#       local_ts=10.1.0.0/24 remote_ts=10.2.0.0/24 psk=secret
#   pn_ss_initiate left 15
#
# Everything created (namespaces, daemons, captures, temp dirs) is recorded and
# removed by pn_cleanup_all.  Only processes started here are ever signalled,
# always by PID.  Nothing is routed outside the namespaces created here: the
# root namespace only ever gets veth ends when a namespace argument is "-".
#
# Namespace argument convention: a name created with pn_ns_add (the real netns
# name is "${PN_TAG}-<name>"), or "-" for the root namespace (e.g. a veth end a
# DPDK net_af_packet PMD will attach to).

PN_CHARON=${PN_CHARON:-/usr/lib/ipsec/charon}
PN_SWANCTL=${PN_SWANCTL:-/usr/sbin/swanctl}
PN_TAG=${PN_TAG:-pn$$}
# charon plugin load order (kernel-libipsec before kernel-netlink!).  Names not
# built into the charon in use are skipped with a warning.
if [ -z "${PN_PLUGINS:-}" ]; then
	PN_PLUGINS="random nonce openssl aes sha1 sha2 hmac gmp kernel-libipsec kernel-netlink socket-default vici"
	[ -e /usr/lib/ipsec/plugins/libstrongswan-openssl.so ] || PN_PLUGINS=${PN_PLUGINS/openssl /}
fi
PN_WORK=${PN_WORK:-}
PN_NS_LIST=()          # short names
PN_ROOT_LINKS=()       # veth ends created in the root namespace
PN_DAEMONS=()          # instance names with a running charon
PN_CAPS=()             # capture names
declare -gA PN_CAP_PIDS 2>/dev/null || declare -A PN_CAP_PIDS   # capture name -> tcpdump PID

pn_log()  { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
pn_die()  { pn_log "ERROR: $*"; return 1; }
pn_now()  { date +%s.%N; }
pn_since() { awk -v a="$1" -v b="$(pn_now)" 'BEGIN{printf "%.2f", b-a}'; }

pn_init() {
	[ "$(id -u)" = 0 ] || { pn_die "must run as root"; return 1; }
	if [ -z "$PN_WORK" ]; then PN_WORK=$(mktemp -d /tmp/peer-test.XXXXXX) || return 1; PN_WORK_OWNED=1; fi
	mkdir -p "$PN_WORK"
	pn_log "work dir $PN_WORK, namespace tag $PN_TAG"
}

# ---------------------------------------------------------------- namespaces
pn_nsname() { printf '%s-%s' "$PN_TAG" "$1"; }

# pn_exec NS cmd...   ("-" = root namespace)
pn_exec() {
	local ns=$1; shift
	if [ "$ns" = - ]; then "$@"; else ip netns exec "$(pn_nsname "$ns")" "$@"; fi
}

# pn_ns_add NAME : new netns with lo up, IPv4 forwarding on, IPv6 off on new links
pn_ns_add() {
	local n; n=$(pn_nsname "$1")
	ip netns add "$n" || return 1
	PN_NS_LIST+=("$1")
	ip -n "$n" link set lo up
	ip netns exec "$n" sysctl -qw net.ipv4.ip_forward=1 \
		net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null
}

pn_ns_del() {
	local n; n=$(pn_nsname "$1")
	ip netns del "$n" 2>/dev/null
	local i; for i in "${!PN_NS_LIST[@]}"; do [ "${PN_NS_LIST[$i]}" = "$1" ] && unset 'PN_NS_LIST[i]'; done
	return 0
}

# pn_veth NS_A IF_A ADDR_A NS_B IF_B ADDR_B
#   ADDR may be "" (no address, e.g. for an end a DPDK PMD takes over).
#   NS "-" puts that end in the root namespace (recorded, deleted at cleanup).
pn_veth() {
	local nsa=$1 ifa=$2 adra=$3 nsb=$4 ifb=$5 adrb=$6 tmpa tmpb
	tmpa="v$$a$RANDOM"; tmpb="v$$b$RANDOM"
	tmpa=${tmpa:0:15}; tmpb=${tmpb:0:15}
	ip link add "$tmpa" type veth peer name "$tmpb" || return 1
	pn__place "$tmpa" "$nsa" "$ifa" "$adra" || return 1
	pn__place "$tmpb" "$nsb" "$ifb" "$adrb" || return 1
}
pn__place() {
	local tmp=$1 ns=$2 ifn=$3 adr=$4
	if [ "$ns" = - ]; then
		ip link set "$tmp" name "$ifn" || return 1
		PN_ROOT_LINKS+=("$ifn")
		# keep the root end quiet: no IPv6 autoconf chatter
		sysctl -qw "net.ipv6.conf.$ifn.disable_ipv6=1" >/dev/null 2>&1
	else
		ip link set "$tmp" netns "$(pn_nsname "$ns")" || return 1
		ip -n "$(pn_nsname "$ns")" link set "$tmp" name "$ifn" || return 1
	fi
	[ -n "$adr" ] && { pn_exec "$ns" ip addr add "$adr" dev "$ifn" || return 1; }
	pn_exec "$ns" ip link set "$ifn" up
}

# pn_route NS DEST VIA   (DEST may be "default")
pn_route() { pn_exec "$1" ip route replace "$2" via "$3"; }

# pn_nat_masquerade NS OUT_IF : nftables SNAT (masquerade) of everything leaving OUT_IF.
pn_nat_masquerade() {
	local ns=$1 oif=$2
	command -v nft >/dev/null || { pn_die "nft not installed (apt-get install nftables)"; return 1; }
	pn_exec "$ns" nft -f - <<-EOF
	table ip pnnat {
		chain post {
			type nat hook postrouting priority srcnat; policy accept;
			oifname "$oif" counter masquerade
		}
	}
	EOF
}

# ------------------------------------------------------------------ captures
# pn_cap_start NAME NS IF [filter...] ; pn_cap_stop NAME ; file: $PN_WORK/cap-NAME.pcap
pn_cap_start() {
	local name=$1 ns=$2 ifn=$3; shift 3
	local f="$PN_WORK/cap-$name.pcap" e="$PN_WORK/cap-$name.err" i pid
	# started without a shell function wrapper so that $! is tcpdump's own PID
	if [ "$ns" = - ]; then
		tcpdump -n -U --immediate-mode -s 0 -Z root -i "$ifn" -w "$f" "$@" </dev/null >/dev/null 2>"$e" &
	else
		ip netns exec "$(pn_nsname "$ns")" tcpdump -n -U --immediate-mode -s 0 -Z root -i "$ifn" -w "$f" "$@" </dev/null >/dev/null 2>"$e" &
	fi
	pid=$!
	PN_CAP_PIDS[$name]=$pid
	PN_CAPS+=("$name")
	for i in $(seq 50); do grep -q 'listening on' "$e" 2>/dev/null && return 0; sleep 0.1; done
	pn_die "tcpdump $name did not start: $(cat "$e")"
}
pn_cap_stop() {
	local name=$1 pid i
	pid=${PN_CAP_PIDS[$name]:-}
	[ -n "$pid" ] || return 0
	kill -INT "$pid" 2>/dev/null
	for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	PN_CAP_PIDS[$name]=
	return 0
}
pn_cap_file() { printf '%s/cap-%s.pcap' "$PN_WORK" "$1"; }
# pn_cap_count NAME DISPLAY_FILTER [tshark -o options...]
pn_cap_count() {
	local f; f=$(pn_cap_file "$1"); local flt=$2; shift 2
	tshark -n -r "$f" "$@" -Y "$flt" 2>/dev/null | wc -l
}

# ---------------------------------------------------------------- strongSwan
# pn_ss_start INST NS key=value ...
#  role=initiator|responder   (recorded in $dir/role; default ROLE of pn_ss_esp_keys;
#                              who initiates is decided by calling pn_ss_initiate)
#  local_addr=IP  remote_addr=IP|%any   local_id=  remote_id=  (default: addrs / %any)
#  psk=SECRET     psk_ids="id1 id2"  (empty: PSK matches any identity)
#  ike=PROPOSALS  esp=PROPOSALS  (strongSwan syntax; comma-separated list allowed)
#  local_ts=CIDR  remote_ts=CIDR  mode=tunnel
#  encap=yes|no   (yes = force NAT-T / ESP-in-UDP 4500, ipsec.conf "forceencaps")
#  aggressive=no  (IKEv1 main mode; yes = aggressive mode)
#  dpd_delay=0s dpd_timeout=0s dpd_action=clear|trap|restart  (swanctl names;
#       ipsec.conf "hold" == swanctl "trap")
#  start_action=none|trap|start  close_action=none
#  ike_lifetime=3h  (reauth_time) esp_lifetime=1h (rekey_time) -- 0 disables
#  keylog=yes  (log IKE/CHILD_SA keys at ike/chd level 4 -> pn_ss_esp_keys/pn_ss_ike_keys)
#  raw_esp=yes (kernel-libipsec raw ESP, proto 50, when no NAT: strongSwan >= 5.9.11 only;
#               5.9.8 ignores it and always uses ESP-in-UDP 4500)
#  save_keys=yes (save-keys plugin -> $dir/keys/{esp_sa,ikev1_decryption_table}; needs a
#               charon built with --enable-save-keys, which Debian's is not; add
#               "save-keys" to PN_PLUGINS)
#  port=500 port_nat_t=4500  extra_conn="raw swanctl lines" extra_child="..."
pn_ss_start() {
	local inst=$1 ns=$2; shift 2
	[ "$ns" != - ] || { pn_die "pn_ss_start: charon only runs in a namespace made by pn_ns_add"; return 1; }
	local role=initiator local_addr=%any remote_addr=%any local_id= remote_id=%any
	local psk=interop-test-psk psk_ids= ike=aes128-sha1-modp1024 esp=aes128-sha1-modp1024
	local local_ts= remote_ts= mode=tunnel encap=no aggressive=no
	local dpd_delay=0s dpd_timeout=0s dpd_action=clear start_action=none close_action=none
	local ike_lifetime=3h esp_lifetime=1h keylog=no port=500 port_nat_t=4500
	local raw_esp=no save_keys=no extra_conn= extra_child= kv k v
	for kv in "$@"; do
		k=${kv%%=*}; v=${kv#*=}
		case $k in
		role|local_addr|remote_addr|local_id|remote_id|psk|psk_ids|ike|esp|local_ts|remote_ts|mode|encap|aggressive|dpd_delay|dpd_timeout|dpd_action|start_action|close_action|ike_lifetime|esp_lifetime|keylog|port|port_nat_t|raw_esp|save_keys|extra_conn|extra_child)
			printf -v "$k" '%s' "$v" ;;
		*) pn_die "pn_ss_start: unknown option $k"; return 1 ;;
		esac
	done
	[ -n "$local_id" ] || local_id=$local_addr
	local d="$PN_WORK/ss-$inst"
	pn_ss_stop "$inst"    # never leave an older charon of the same instance behind
	mkdir -p "$d/run" "$d/swanctl/conf.d" "$d/keys"
	# swanctl --load-all complains about every missing credential directory
	( cd "$d/swanctl" && mkdir -p x509 x509ca x509ocsp x509aa x509ac x509crl pubkey private rsa ecdsa bliss pkcs8 pkcs12 )
	: >"$d/charon.log"
	# stale socket/pid file of a previous (killed) instance would fool the waits below
	rm -f "$d/charon.vici" "$d/run/charon.pid"
	local chdlvl=2 ikelvl=2; [ "$keylog" = yes ] && chdlvl=4 ikelvl=4
	cat >"$d/strongswan.conf" <<-EOF
	# generated by peer-lib.sh for instance $inst (netns $(pn_nsname "$ns"))
	charon {
	  load_modular = no
	  # kernel-libipsec MUST come before kernel-netlink: the first registered
	  # kernel_ipsec interface wins; kernel-netlink still provides routes/addrs.
	  load = $PN_PLUGINS
	  port = $port
	  port_nat_t = $port_nat_t
	  install_virtual_ip = no
	  retransmit_timeout = 1.0
	  retransmit_base = 1.4
	  retransmit_tries = 3
	  plugins {
	    vici { socket = unix://$d/charon.vici }
	    kernel-libipsec { allow_peer_ts = no
	      raw_esp = $raw_esp }
	    save-keys { load = $save_keys
	      esp = $save_keys
	      ike = $save_keys
	      wireshark_keys = $d/keys }
	  }
	  syslog { daemon { default = -1 } auth { default = -1 } }
	  filelog {
	    main {
	      path = $d/charon.log
	      time_format = %H:%M:%S
	      time_add_ms = yes
	      flush_line = yes
	      append = yes
	      default = 1
	      ike = $ikelvl
	      cfg = 2
	      knl = 2
	      esp = 2
	      chd = $chdlvl
	    }
	  }
	}
	swanctl { socket = unix://$d/charon.vici
	  # only plugins Debian ships without libstrongswan-standard-plugins (no openssl):
	  # swanctl's default list would print "failed to load" for each missing one
	  load = ${PN_SWANCTL_PLUGINS:-pem pkcs1 pkcs8 x509 pubkey random nonce} }
	EOF
	local secret_ids= i=1 id
	for id in $psk_ids; do secret_ids+="    id-$i = $id"$'\n'; i=$((i+1)); done
	cat >"$d/swanctl/swanctl.conf" <<-EOF
	connections {
	  peer {
	    version = 1
	    aggressive = $aggressive
	    local_addrs = $local_addr
	    remote_addrs = $remote_addr
	    proposals = $ike
	    encap = $encap
	    dpd_delay = $dpd_delay
	    dpd_timeout = $dpd_timeout
	    reauth_time = $ike_lifetime
	    $extra_conn
	    local { auth = psk
	      id = $local_id }
	    remote { auth = psk
	      id = $remote_id }
	    children {
	      net {
	        local_ts = $local_ts
	        remote_ts = $remote_ts
	        mode = $mode
	        esp_proposals = $esp
	        dpd_action = $dpd_action
	        start_action = $start_action
	        close_action = $close_action
	        rekey_time = $esp_lifetime
	        $extra_child
	      }
	    }
	  }
	}
	secrets {
	  ike-psk {
	    secret = "$psk"
	$secret_ids  }
	}
	EOF
	# charon has a hard-coded pid file /var/run/charon.pid (-> /run).  "ip netns
	# exec" runs us in a private (slave) mount namespace, so bind-mounting the
	# instance's run dir over /run there gives every instance its own pid file
	# without touching the host's /run.
	# No function wrapper and only exec's in the chain, so $! is charon's PID.
	ip netns exec "$(pn_nsname "$ns")" sh -c 'mount --bind "$1" /run && exec env STRONGSWAN_CONF="$2" "$3" --use-syslog no' \
		sh "$d/run" "$d/strongswan.conf" "$PN_CHARON" </dev/null >"$d/charon.stdout" 2>&1 &
	printf '%s\n' "$!" >"$d/pid"
	printf '%s\n' "$ns" >"$d/ns"
	printf '%s\n' "$role" >"$d/role"
	PN_DAEMONS+=("$inst")
	local t
	for t in $(seq 100); do
		[ -S "$d/charon.vici" ] && break
		kill -0 "$(cat "$d/pid")" 2>/dev/null || { pn_die "charon $inst died: $(tail -5 "$d/charon.stdout" "$d/charon.log")"; return 1; }
		sleep 0.05
	done
	[ -S "$d/charon.vici" ] || { pn_die "charon $inst: no vici socket"; return 1; }
	pn_swanctl "$inst" --load-all --noprompt >"$d/load.out" 2>&1 || { pn_die "swanctl --load-all failed for $inst: $(cat "$d/load.out")"; return 1; }
	if grep -qiE 'fail|error|invalid' "$d/load.out"; then pn_die "config load problem ($inst): $(cat "$d/load.out")"; return 1; fi
	return 0
}

pn_ss_dir() { printf '%s/ss-%s' "$PN_WORK" "$1"; }
pn_ss_pid() { cat "$(pn_ss_dir "$1")/pid" 2>/dev/null; }
pn_ss_log() { printf '%s/charon.log' "$(pn_ss_dir "$1")"; }

# pn_swanctl INST args...  (runs swanctl against that instance's vici socket)
pn_swanctl() {
	local d; d=$(pn_ss_dir "$1"); shift
	SWANCTL_DIR="$d/swanctl" STRONGSWAN_CONF="$d/strongswan.conf" \
		timeout 30 "$PN_SWANCTL" "$@" --uri "unix://$d/charon.vici"
}

# pn_ss_initiate INST [TIMEOUT_S]  -> 0 when CHILD_SA "net" established
pn_ss_initiate() {
	local inst=$1 to=${2:-15}
	pn_swanctl "$inst" --initiate --child net --timeout "$to" >"$(pn_ss_dir "$inst")/initiate.out" 2>&1 || return 1
	grep -q "initiate completed successfully" "$(pn_ss_dir "$inst")/initiate.out"
}

# pn_ss_wait_child INST TIMEOUT_S : wait until a CHILD_SA named net is INSTALLED
pn_ss_wait_child() {
	local inst=$1 to=${2:-10} end
	end=$(( $(date +%s) + to ))
	while [ "$(date +%s)" -le "$end" ]; do
		pn_swanctl "$inst" --list-sas 2>/dev/null | grep -q 'net: #.*INSTALLED' && return 0
		sleep 0.2
	done
	return 1
}

# pn_ss_stop INST : SIGTERM by PID, then SIGKILL after 3 s
pn_ss_stop() {
	local inst=$1 d pid i
	d=$(pn_ss_dir "$inst"); pid=$(cat "$d/pid" 2>/dev/null) || return 0
	[ -n "$pid" ] || return 0
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null
		for i in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	: >"$d/pid"
	for i in "${!PN_DAEMONS[@]}"; do [ "${PN_DAEMONS[$i]}" = "$inst" ] && unset 'PN_DAEMONS[i]'; done
	return 0
}

# pn_ss_kill INST : SIGKILL by PID (simulates a crashed/vanished peer, no
# DELETE is sent).  Restart later with pn_ss_start (same INST reuses the dir).
pn_ss_kill() {
	local d pid i; d=$(pn_ss_dir "$1"); pid=$(cat "$d/pid" 2>/dev/null)
	[ -n "$pid" ] || return 0
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	: >"$d/pid"
	for i in "${!PN_DAEMONS[@]}"; do [ "${PN_DAEMONS[$i]}" = "$1" ] && unset 'PN_DAEMONS[i]'; done
	return 0
}

# pn_ss_esp_keys INST LOCAL_IP REMOTE_IP ENC_NAME AUTH_NAME ROLE
# Print two Wireshark "esp_sa" UAT records (inbound, outbound) for the last
# CHILD_SA established by INST, parsed from its log (needs keylog=yes: chd
# level 4 dumps the keys; the Debian build lacks the save-keys plugin).
# ENC_NAME/AUTH_NAME are Wireshark's names, e.g. "AES-CBC [RFC3602]",
# "HMAC-SHA-1-96 [RFC2404]", "HMAC-SHA-256-128 [RFC4868]".  ROLE is the IKE role
# of INST (initiator|responder).  IKEv1 (keymat_v1.c): the "initiator" keys
# protect initiator->responder traffic (SPI chosen by the responder), the
# "responder" keys responder->initiator traffic (SPI chosen by the initiator).
pn_ss_esp_keys() {
	/usr/bin/python3 - "$(pn_ss_log "$1")" "$2" "$3" "$4" "$5" "${6:-$(cat "$(pn_ss_dir "$1")/role" 2>/dev/null || echo initiator)}" <<-'PY'
	import re, sys
	log, lip, rip, encn, authn, role = sys.argv[1:]
	keys, want, spis, final = {}, {}, None, None
	hdr = re.compile(r"^\S+ (\d+)\[CHD\] (encryption|integrity) (initiator|responder) key => (\d+) bytes")
	dump = re.compile(r"^\S+ (\d+)\[CHD\]\s+\d+: (.*)$")
	est = re.compile(r"CHILD_SA \S+ established with SPIs ([0-9a-f]{8})_i ([0-9a-f]{8})_o")
	for ln in open(log, errors="replace"):
	    m = hdr.match(ln)
	    if m:
	        k = (m.group(2), m.group(3)); keys[k] = ""; want[k] = (m.group(1), int(m.group(4))); continue
	    m = dump.match(ln)
	    if m:
	        for k, (tid, n) in want.items():
	            if tid == m.group(1) and len(keys[k]) < 2 * n:
	                toks = [t for t in m.group(2)[:48].split() if re.fullmatch(r"[0-9A-F]{2}", t)]
	                keys[k] += "".join(toks)[: 2 * n - len(keys[k])]
	                break
	        continue
	    m = est.search(ln)
	    if m and len(keys) == 4:
	        final = (m.groups(), dict(keys))
	if not final:
	    sys.exit("pn_ss_esp_keys: no keys/SPIs in log (keylog=yes?)")
	(spi_in, spi_out), k = final
	kin, kout = ("responder", "initiator") if role == "initiator" else ("initiator", "responder")
	def rec(src, dst, spi, who):
	    return '"IPv4","%s","%s","0x%s","%s","0x%s","%s","0x%s"' % (
	        src, dst, spi, encn, k[("encryption", who)], authn, k[("integrity", who)])
	print(rec(rip, lip, spi_in, kin))
	print(rec(lip, rip, spi_out, kout))
	PY
}

# pn_ss_ike_keys INST : print one Wireshark "ikev1_decryption_table" UAT record
# ("<initiator cookie>,<Ka>", unquoted hex) per IKEv1 SA in INST's log (needs
# keylog=yes, i.e. ike level 4).  Use: tshark -o "uat:ikev1_decryption_table:REC".
# The cookie is taken from the NAT-D hash input (natd_chunk = CKY-I|CKY-R|IP|port)
# logged by the same thread right after Ka.
pn_ss_ike_keys() {
	/usr/bin/python3 - "$(pn_ss_log "$1")" <<-'PY'
	import re, sys
	hdr = re.compile(r"^\S+ (\d+)\[IKE\] (encryption key Ka|natd_chunk) => (\d+) bytes")
	dump = re.compile(r"^\S+ (\d+)\[IKE\]\s+(\d+): (.*)$")
	pend, cur, out = {}, None, []
	for ln in open(sys.argv[1], errors="replace"):
	    m = hdr.match(ln)
	    if m:
	        cur = (m.group(1), m.group(2), int(m.group(3)), [""])
	        continue
	    m = dump.match(ln)
	    if m and cur and m.group(1) == cur[0]:
	        toks = [t for t in m.group(3)[:48].split() if re.fullmatch(r"[0-9A-F]{2}", t)]
	        cur[3][0] = (cur[3][0] + "".join(toks))[: 2 * cur[2]]
	        if len(cur[3][0]) >= 2 * cur[2] or m.group(2) != "0":
	            tid, what, n, val = cur
	            if what.startswith("encryption"):
	                pend[tid] = val[0]
	            elif tid in pend:
	                rec = "%s,%s" % (val[0][:16].lower(), pend.pop(tid))
	                if rec not in out: out.append(rec)
	        continue
	    cur = None
	print("\n".join(out))
	PY
}

# pn_veth_csum_off NS IF : disable TX checksum offload on a veth end.  Needed on
# the kernel-stack side of a veth whose peer end is read by AF_PACKET (DPDK
# net_af_packet, tcpdump): otherwise the reader sees CHECKSUM_PARTIAL packets,
# i.e. UDP (IKE, ESP-in-UDP) with an unfinished, "bad" checksum.
pn_veth_csum_off() { pn_exec "$1" ethtool -K "$2" tx off >/dev/null; }

# pn_ping NS DST [COUNT] [INTERVAL] : prints "<sent> <received>", rc 0 if any reply.
# Uses ping(8) if installed (iputils-ping), else a raw-socket python3 fallback.
pn_ping() {
	local ns=$1 dst=$2 n=${3:-5} iv=${4:-0.2} out
	if command -v ping >/dev/null; then
		out=$(pn_exec "$ns" ping -n -q -c "$n" -i "$iv" -W 1 "$dst" 2>&1)
		printf '%s %s\n' "$n" "$(sed -n 's/.* \([0-9]*\) received.*/\1/p' <<<"$out")"
	else
		pn_exec "$ns" python3 - "$dst" "$n" "$iv" <<-'PY'
		import os, socket, struct, sys, time
		dst, n, iv = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
		s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
		ident = os.getpid() & 0xffff
		def csum(b):
		    b += b"\0" * (len(b) & 1)
		    c = sum(struct.unpack("!%dH" % (len(b) // 2), b)); c = (c >> 16) + (c & 0xffff); c += c >> 16
		    return ~c & 0xffff
		got = 0
		for seq in range(n):
		    body = struct.pack("!d", time.time()) + bytes(48)
		    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
		    pkt = struct.pack("!BBHHH", 8, 0, csum(hdr + body), ident, seq) + body
		    s.sendto(pkt, (dst, 0)); end = time.time() + 1.0
		    while time.time() < end:
		        s.settimeout(max(0.01, end - time.time()))
		        try: data, addr = s.recvfrom(4096)
		        except socket.timeout: break
		        ihl = (data[0] & 15) * 4
		        t, _, _, i, q = struct.unpack("!BBHHH", data[ihl:ihl + 8])
		        if t == 0 and i == ident and q == seq and addr[0] == dst:
		            got += 1; break
		    time.sleep(iv)
		print(n, got)
		PY
	fi | { read -r a b; echo "$a ${b:-0}"; [ "${b:-0}" -gt 0 ]; }
}

# ------------------------------------------------------------------- cleanup
pn_cleanup_all() {
	local x
	for x in "${PN_CAPS[@]}"; do pn_cap_stop "$x"; done
	for x in "${PN_DAEMONS[@]}"; do pn_ss_stop "$x"; done
	for x in "${PN_NS_LIST[@]}"; do ip netns del "$(pn_nsname "$x")" 2>/dev/null; done
	PN_NS_LIST=()
	for x in "${PN_ROOT_LINKS[@]}"; do ip link del "$x" 2>/dev/null; done
	PN_ROOT_LINKS=()
	if [ -n "${PN_WORK_OWNED:-}" ] && [ -z "${PN_KEEP:-}" ] && [ -d "$PN_WORK" ]; then
		rm -rf -- "$PN_WORK"
	fi
	return 0
}
