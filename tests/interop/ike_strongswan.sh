#!/bin/bash
# IKEv1 interop: our IKE daemon (ike_udp_peer: ike/ + crypto/ over kernel UDP, no DPDK) against
# strongSwan 5.9.x charon, each in its own network namespace joined by a veth pair:
#
#   netns <tag>-us  192.0.2.1  ike_udp_peer   (local 10.1.0.0/24)
#   netns <tag>-ss  192.0.2.2  charon         (local 10.2.0.0/24, kernel-libipsec)
#
# The independent check: for each established connection, strongSwan's `swanctl --list-sas`
# shows the IKE SA ESTABLISHED and the CHILD SA INSTALLED with the SPIs we installed, and the
# ESP keys we derived equal the keys charon logged (filelog chd=4) for both directions. A KDF
# mistake made identically by both of our own peers (tests/ike) cannot pass this.
# Debian's kernel-libipsec fakes NAT (see peer-lib README): IKE floats to 4500 and the SAs
# must be UDP-encapsulated, which is checked too.
#
# usage: ike_strongswan.sh CASE   CASE = initiated-by-strongswan | we-initiate | sweep |
#                                        wrong-psk | wrong-psk-we-initiate | peer-reboot | dpd-hold | dpd-restart | all
# env:   IKE_UDP_PEER=path/to/ike_udp_peer (meson sets it), PN_KEEP=1 keeps the work dir.
# Exit: 0 pass, 1 fail (messages on stderr say which check), 77 skip (not root, no charon).
# shellcheck disable=SC2015  # "check && ... || fail ...": pass and pn_log return 0
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CASE=${1:-all}
PEER_BIN=${IKE_UDP_PEER:-}
[ -n "$PEER_BIN" ] && [ -x "$PEER_BIN" ] || { echo "IKE_UDP_PEER not set or not executable" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)" >&2; exit 77; }
[ -x /usr/lib/ipsec/charon ] && [ -x /usr/sbin/swanctl ] || { echo "SKIP: strongSwan charon/swanctl not installed" >&2; exit 77; }

PN_TAG=ike$$
# shellcheck source-path=SCRIPTDIR source=peer-lib.sh
. "$HERE/peer-lib.sh"

US_IP=192.0.2.1
SS_IP=192.0.2.2
US_NET=10.1.0.0/24
SS_NET=10.2.0.0/24
PSK=interop-psk-$$-secret
OUR_PID=
FAILS=0

# shellcheck disable=SC2317  # called by the EXIT trap
cleanup() {
	if [ -n "$OUR_PID" ]; then kill -TERM "$OUR_PID" 2>/dev/null; wait "$OUR_PID" 2>/dev/null; fi
	pn_cleanup_all
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

fail() { pn_log "FAIL: $*"; FAILS=$((FAILS + 1)); return 1; }
pass() { pn_log "PASS: $*"; }

pn_init || exit 1
pn_ns_add us && pn_ns_add ss || { pn_log "cannot create namespaces"; exit 1; }
pn_veth us pub0 "$US_IP/24" ss pub0 "$SS_IP/24" || { pn_log "cannot create veth"; exit 1; }
# kernel-libipsec routes the remote subnet with a source address inside local_ts
pn_exec ss ip addr add 10.2.0.1/24 dev lo || exit 1

# strongSwan's names in `swanctl --list-sas`
ss_enc()  { case $1 in aes128) echo AES_CBC-128;; aes192) echo AES_CBC-192;; aes256) echo AES_CBC-256;; esac; }
ss_integ() { case $1 in sha1) echo HMAC_SHA1_96;; sha256) echo HMAC_SHA2_256_128;; esac; }
ss_prf()   { case $1 in sha1) echo PRF_HMAC_SHA1;; sha256) echo PRF_HMAC_SHA2_256;; esac; }
ss_group() { echo "MODP_${1#modp}"; }
ws_integ() { case $1 in sha1) echo "HMAC-SHA-1-96 [RFC2404]";; sha256) echo "HMAC-SHA-256-128 [RFC4868]";; esac; }

# start_ours NAME MODE OUTFILE args... : ike_udp_peer in netns "us", in the background
start_ours() {
	local name=$1 mode=$2 out=$3; shift 3
	printf '%s\n' "$PSK_OURS" >"$PN_WORK/psk-$name"
	ip netns exec "$(pn_nsname us)" timeout "${OUR_TIMEOUT:-60}" "$PEER_BIN" --name "$name" \
		--local "$US_IP" --peer "$SS_IP" --local-subnet "$US_NET" --peer-subnet "$SS_NET" \
		--psk-file "$PN_WORK/psk-$name" "$mode" "$@" >"$out" 2>"$out.log" &
	OUR_PID=$!
	local i
	for i in $(seq 100); do
		grep -q ' ready$' "$out" 2>/dev/null && return 0
		kill -0 "$OUR_PID" 2>/dev/null || break
		sleep 0.05
	done
	fail "$name: ike_udp_peer did not start: $(cat "$out.log")"
}
wait_ours() { local rc=0; wait "$OUR_PID" || rc=$?; OUR_PID=; return $rc; }

# our_status NAME OUTFILE : our last status line; spi_of in|out LINE ; first_spi_in OUTFILE
our_status() { grep "^connection $1: " "$2" | tail -1; }
spi_of() { sed -n "s/.* spi_$1=\([0-9a-f]*\).*/\1/p" <<<"$2"; }
first_spi_in() { grep -m1 '^SA add inbound' "$1" | sed 's/.* spi=\([0-9a-f]*\).*/\1/'; }

# check_new_sa NAME OUTFILE OLD_SPI_IN WHEN : ACTIVE again WHEN with another inbound SPI, which
# the restarted charon holds as its outbound one. Sets ST (our status line).
check_new_sa() {
	local name=$1 out=$2 first=$3 when=$4 sas
	ST=$(our_status "$name" "$out")
	[[ $ST == "connection $name: ACTIVE "* ]] || fail "$name: not ACTIVE $when: $ST"
	[[ $ST == *"spi_in=$first "* ]] && fail "$name: still the old inbound SPI $when: $ST"
	sas=$(pn_swanctl ss --list-sas 2>&1)
	grep -q "^    out $(spi_of in "$ST")," <<<"$sas" ||
		fail "$name: the restarted charon does not have our new CHILD SA: $sas"
}

# check_established NAME IKE ESP ROLE_OF_STRONGSWAN OUTFILE KEYSFILE
check_established() {
	local name=$1 ike=$2 esp=$3 ssrole=$4 out=$5 keys=$6
	local ok=0 sas st our_in our_out ss_in ss_out
	IFS=- read -r ic ih ig <<<"$ike"
	IFS=- read -r ec eh eg <<<"$esp"
	st=$(our_status "$name" "$out")
	[[ $st == "connection $name: ACTIVE "* ]] || { fail "$name: our status is '$st'"; return 1; }
	our_in=$(spi_of in "$st"); our_out=$(spi_of out "$st")
	grep -q 'udp_encap=1 peer_port=4500' <<<"$st" || fail "$name: expected UDP encapsulation to port 4500 (libipsec fakes NAT): $st" || ok=1
	[ "$(grep -c "^SA add .*udp_encap=1 local=$US_IP:4500 peer=$SS_IP:4500 local_subnet=$US_NET peer_subnet=$SS_NET" "$out")" = 2 ] ||
		fail "$name: expected 2 UDP-encapsulated SAs on 4500 with our subnets: $(grep '^SA add' "$out")" || ok=1

	sas=$(pn_swanctl ss --list-sas 2>&1)
	printf '%s\n' "$sas" >"$PN_WORK/list-sas-$name"
	grep -qE '^peer: #[0-9]+, ESTABLISHED, IKEv1' <<<"$sas" || fail "$name: strongSwan IKE SA not ESTABLISHED: $sas" || ok=1
	grep -q "$(ss_enc "$ic")/$(ss_integ "$ih")/$(ss_prf "$ih")/$(ss_group "$ig")" <<<"$sas" ||
		fail "$name: strongSwan IKE algorithms differ from $ike: $sas" || ok=1
	grep -qE '^  net: #[0-9]+, reqid [0-9]+, INSTALLED, TUNNEL-in-UDP' <<<"$sas" || fail "$name: strongSwan CHILD SA not INSTALLED (TUNNEL-in-UDP): $sas" || ok=1
	grep -q "ESP:$(ss_enc "$ec")/$(ss_integ "$eh")/$(ss_group "$eg")" <<<"$sas" ||
		fail "$name: strongSwan ESP algorithms differ from $esp: $sas" || ok=1
	ss_in=$(sed -nE 's/^    in  ([0-9a-f]{8}).*/\1/p' <<<"$sas")
	ss_out=$(sed -nE 's/^    out ([0-9a-f]{8}).*/\1/p' <<<"$sas")
	[ -n "$ss_in" ] && [ "$ss_in" = "$our_out" ] || fail "$name: strongSwan inbound SPI '$ss_in' != our outbound '$our_out'" || ok=1
	[ -n "$ss_out" ] && [ "$ss_out" = "$our_in" ] || fail "$name: strongSwan outbound SPI '$ss_out' != our inbound '$our_in'" || ok=1

	# ESP keys: charon's log (chd=4) vs the keys our installer got, per SPI.
	local recs; recs=$(pn_ss_esp_keys ss "$SS_IP" "$US_IP" "AES-CBC [RFC3602]" "$(ws_integ "$eh")" "$ssrole" 2>&1) ||
		{ fail "$name: no keys in charon's log: $recs"; return 1; }
	printf '%s\n' "$recs" >"$PN_WORK/sskeys-$name"
	/usr/bin/python3 - "$keys" "$our_in" "$our_out" "$PN_WORK/sskeys-$name" "$US_IP" <<-'PY' || { ok=1; FAILS=$((FAILS + 1)); }
	import sys
	keys, our_in, our_out, sskeys, us_ip = sys.argv[1:]
	ours = {}
	for ln in open(keys):
	    d, spi, enc, auth = ln.split()
	    ours[spi.lower()] = (d, enc.lower(), auth.lower())
	theirs = {}
	for ln in open(sskeys):
	    if not ln.strip(): continue
	    f = [x.strip('"') for x in ln.strip().split('","')]
	    # "IPv4","src","dst","0xSPI","enc","0xKEY","auth","0xKEY"
	    theirs[f[3][2:].lower()] = (f[1], f[2], f[5][2:].lower(), f[7][2:].lower())
	bad = 0
	for spi, want_dir in ((our_in, "inbound"), (our_out, "outbound")):
	    if spi not in ours or ours[spi][0] != want_dir:
	        print("FAIL: no %s key record for SPI %s from ike_udp_peer" % (want_dir, spi), file=sys.stderr); bad = 1; continue
	    if spi not in theirs:
	        print("FAIL: charon logged no keys for SPI %s (has %s)" % (spi, sorted(theirs)), file=sys.stderr); bad = 1; continue
	    if (theirs[spi][0] == us_ip) != (want_dir == "outbound"):
	        print("FAIL: SPI %s: strongSwan uses it for %s->%s, we for %s" % (
	            spi, theirs[spi][0], theirs[spi][1], want_dir), file=sys.stderr); bad = 1
	    elif ours[spi][1:] != theirs[spi][2:]:
	        print("FAIL: %s SPI %s: our ESP keys differ from strongSwan's (enc %s, auth %s)" % (
	            want_dir, spi, "same" if ours[spi][1] == theirs[spi][2] else "DIFFERENT",
	            "same" if ours[spi][2] == theirs[spi][3] else "DIFFERENT"), file=sys.stderr); bad = 1
	    elif len(ours[spi][1]) == 0 or len(ours[spi][2]) == 0:
	        print("FAIL: empty key for SPI %s" % spi, file=sys.stderr); bad = 1
	    else:
	        print("keys match for %s SPI %s (%d-bit enc, %d-bit auth)" % (
	            want_dir, spi, len(ours[spi][1]) * 4, len(ours[spi][2]) * 4), file=sys.stderr)
	sys.exit(bad)
	PY
	[ $ok = 0 ] && pass "$name: $ike / esp $esp: ESTABLISHED+INSTALLED, SPIs $our_in/$our_out and ESP keys equal strongSwan's"
	return $ok
}

# established WHO IKE ESP [ESP_SS] : one connection, WHO = ss (strongSwan initiates) | us
established() {
	local who=$1 ike=$2 esp=$3 name out rc=0
	name="$who-$ike-$esp"
	out="$PN_WORK/ours-$name"
	PSK_OURS=$PSK
	local ssrole=initiator mode=--responder-only
	[ "$who" = us ] && ssrole=responder mode=--initiator
	pn_ss_start ss ss role=$ssrole local_addr=$SS_IP remote_addr=$US_IP \
		local_ts=$SS_NET remote_ts=$US_NET ike="$ike" esp="$esp" psk="$PSK" keylog=yes ||
		{ fail "$name: charon did not start"; return 1; }
	start_ours "$name" "$mode" "$out" --ike "$ike" --esp "$esp" --until-active 30 --linger 2 \
		--keys-out "$PN_WORK/keys-$name" || { pn_ss_stop ss; return 1; }
	if [ "$who" = ss ]; then
		pn_ss_initiate ss 20 || fail "$name: swanctl --initiate failed: $(cat "$(pn_ss_dir ss)/initiate.out")"
	else
		pn_ss_wait_child ss 20 || fail "$name: strongSwan never installed the CHILD SA"
	fi
	wait_ours || rc=$?
	[ $rc = 0 ] || fail "$name: ike_udp_peer exited $rc: $(tail -3 "$out"; tail -5 "$out.log")"
	check_established "$name" "$ike" "$esp" "$ssrole" "$out" "$PN_WORK/keys-$name"
	rc=$?
	if [ $rc != 0 ]; then
		pn_log "--- our log ($name) ---"; cat "$out" "$out.log" >&2
		pn_log "--- charon log (tail) ---"; grep -v '^\S* [0-9]*\[CHD\] *[0-9]*: ' "$(pn_ss_log ss)" | tail -40 >&2
	fi
	pn_ss_stop ss
	return $rc
}

case_wrong_psk() {
	local name=wrong-psk out="$PN_WORK/ours-wrong-psk" rc=0 sas
	PSK_OURS="not-$PSK"
	pn_ss_start ss ss role=initiator local_addr=$SS_IP remote_addr=$US_IP \
		local_ts=$SS_NET remote_ts=$US_NET psk="$PSK" || { fail "$name: charon did not start"; return 1; }
	start_ours "$name" --responder-only "$out" --until-error 30 --keys-out "$PN_WORK/keys-$name" || return 1
	if pn_ss_initiate ss 20; then fail "$name: strongSwan's initiate succeeded with a wrong PSK"; fi
	wait_ours || rc=$?
	[ $rc = 0 ] || fail "$name: ike_udp_peer exited $rc (expected ERROR): $(tail -3 "$out")"
	grep -q "^connection $name: ERROR authentication failed" "$out" ||
		fail "$name: our status is not 'ERROR authentication failed': $(grep '^connection' "$out")"
	grep -q '^SA add' "$out" && fail "$name: we installed an SA with a wrong PSK"
	[ -s "$PN_WORK/keys-$name" ] && fail "$name: keys written with a wrong PSK"
	# strongSwan gives up after its retransmissions; it must have no SA left.
	local i
	for i in $(seq 40); do
		sas=$(pn_swanctl ss --list-sas 2>&1)
		grep -qE 'ESTABLISHED|INSTALLED|CONNECTING' <<<"$sas" || break
		sleep 0.5
	done
	grep -qE 'ESTABLISHED|INSTALLED|CONNECTING' <<<"$sas" && fail "$name: strongSwan still lists an SA: $sas"
	grep -q 'INSTALLED' <<<"$sas" || grep -q 'ESTABLISHED' <<<"$sas" ||
		pass "$name: both sides failed (ours: $(grep "^connection" "$out" | tail -1); strongSwan: no SA)"
	pn_ss_stop ss
}

# Wrong PSK, we initiate: strongSwan (responder) cannot decrypt/verify our MM5 and answers
# with an unencrypted INFORMATIONAL notify or not at all. We must end in ERROR with a reason
# that says so ("authentication failed" when the peer tells us or its MM6 does not verify;
# "no response to MM5 ..." when it stays silent) -- never "peer unreachable", since it answered
# MM1 and MM3 -- within the retransmission budget, and install nothing.
case_wrong_psk_we_initiate() {
	local name=wrong-psk-we-initiate out="$PN_WORK/ours-wrong-psk-we-initiate" rc=0 sas reason
	PSK_OURS="not-$PSK"
	pn_ss_start ss ss role=responder local_addr=$SS_IP remote_addr=$US_IP \
		local_ts=$SS_NET remote_ts=$US_NET psk="$PSK" || { fail "$name: charon did not start"; return 1; }
	OUR_TIMEOUT=100 start_ours "$name" --initiator "$out" --until-error 90 \
		--keys-out "$PN_WORK/keys-$name" || { pn_ss_stop ss; return 1; }
	wait_ours || rc=$?
	[ $rc = 0 ] || fail "$name: ike_udp_peer exited $rc (expected ERROR): $(tail -3 "$out")"
	reason=$(grep "^connection $name: ERROR" "$out" | tail -1)
	pn_log "$name: ours: ${reason:-none}"
	pn_log "$name: strongSwan: $(grep -E 'sending|received|parsing|authentication|integrity|decrypt|verif' "$(pn_ss_log ss)" | grep -v '\[CHD\]' | tail -6 | tr '\n' '|')"
	grep -qE "^connection $name: ERROR (authentication failed|no response to MM5)" "$out" ||
		fail "$name: our status does not say authentication failed / no response to MM5: ${reason:-$(tail -2 "$out")}"
	grep -q 'unreachable' <<<"$reason" && fail "$name: reported the answering peer as unreachable"
	grep -q '^SA add' "$out" && fail "$name: we installed an SA with a wrong PSK"
	[ -s "$PN_WORK/keys-$name" ] && fail "$name: keys written with a wrong PSK"
	sas=$(pn_swanctl ss --list-sas 2>&1)
	grep -qE 'ESTABLISHED|INSTALLED' <<<"$sas" && fail "$name: strongSwan lists an established SA: $sas"
	[ $FAILS = 0 ] && pass "$name: both sides failed (ours: $reason; strongSwan: no established SA)"
	pn_ss_stop ss
}

# A rebooted peer: strongSwan initiates, is SIGKILLed (no Delete) and started again with
# fresh state, and initiates again; its new Main Mode carries INITIAL-CONTACT (RFC 2407
# §4.6.3.3). We must replace the old SAs cleanly: the old inbound/outbound SAs deleted once
# each, the new pair installed, ACTIVE with the new SPIs that the restarted charon holds.
case_peer_reboot() {
	local name=peer-reboot out="$PN_WORK/ours-peer-reboot" rc=0 first ss_args
	PSK_OURS=$PSK
	# a concrete remote id: strongSwan sends INITIAL_CONTACT only to a peer it can name
	ss_args=(role=initiator local_addr="$SS_IP" remote_addr="$US_IP" remote_id="$US_IP"
		local_ts="$SS_NET" remote_ts="$US_NET" psk="$PSK")
	pn_ss_start ss ss "${ss_args[@]}" || { fail "$name: charon did not start"; return 1; }
	start_ours "$name" --responder-only "$out" --duration 25 || { pn_ss_stop ss; return 1; }
	pn_ss_initiate ss 20 || fail "$name: first initiate failed: $(cat "$(pn_ss_dir ss)/initiate.out")"
	wait_for "$out" '^state ACTIVE' 20 || { fail "$name: never ACTIVE: $(tail -5 "$out.log")"; pn_ss_stop ss; return 1; }
	first=$(first_spi_in "$out")
	pn_ss_kill ss
	pn_ss_start ss ss "${ss_args[@]}" || { fail "$name: charon did not restart"; return 1; }
	pn_ss_initiate ss 20 || fail "$name: initiate after restart failed: $(cat "$(pn_ss_dir ss)/initiate.out")"
	grep -qE 'generating ID_PROT request 0 \[ .*N\(INITIAL_CONTACT\)' "$(pn_ss_log ss)" ||
		fail "$name: the restarted charon sent no INITIAL_CONTACT"
	wait_ours || rc=$?
	[ $rc = 0 ] || fail "$name: ike_udp_peer exited $rc (expected ACTIVE): $(tail -3 "$out"; tail -5 "$out.log")"
	grep -q 'INITIAL-CONTACT: removing other SAs' "$out.log" ||
		fail "$name: INITIAL-CONTACT not acted on: $(tail -5 "$out.log")"
	[ "$(grep -c '^SA add' "$out")" = 4 ] || fail "$name: expected 2 pairs installed: $(grep '^SA ' "$out")"
	[ "$(grep -c "^SA del inbound spi=$first" "$out")" = 1 ] || fail "$name: old inbound SA $first not deleted exactly once: $(grep '^SA del' "$out")"
	[ "$(grep -c '^SA del' "$out")" -ge 1 ] && [ "$(grep -c '^SA del inbound' "$out")" = 1 ] ||
		fail "$name: the new inbound SA was deleted too: $(grep '^SA del' "$out")"
	check_new_sa "$name" "$out" "$first" "after the reboot"
	[ "$FAILS" = 0 ] && pass "$name: old SAs (in $first) replaced after strongSwan restarted: $ST"
	pn_ss_stop ss
}

# wait_for FILE REGEX TIMEOUT_S
wait_for() {
	local f=$1 re=$2 i
	for i in $(seq $(( $3 * 10 ))); do
		grep -qE "$re" "$f" 2>/dev/null && return 0
		kill -0 "$OUR_PID" 2>/dev/null || { grep -qE "$re" "$f" 2>/dev/null; return; }
		sleep 0.1
	done
	return 1
}

# DPD (RFC 3706) against strongSwan. A peer only probes when idle, so each direction gets a
# case: hold -- charon does not probe, we do (interval 2 s, timeout 6 s) and charon ACKs;
# restart -- charon probes every 2 s and we ACK (ours: interval 4 s, timeout 8 s, so we stay
# quiet). The connection must survive 10 s (past our timeout: only answered probes keep it
# up); then charon is SIGKILLed and our DPD must fire: hold -> ERROR "dead peer detected
# (DPD)", SAs deleted, no re-initiation; restart -> re-initiated at once, ACTIVE again with new
# SPIs once charon is back.
case_dpd() {
	local action=$1 name=dpd-$1 out="$PN_WORK/ours-dpd-$1" rc=0 log first ss_args
	PSK_OURS=$PSK
	ss_args=(role=responder local_addr="$SS_IP" remote_addr="$US_IP" local_ts="$SS_NET" remote_ts="$US_NET"
		psk="$PSK" dpd_timeout=30s keylog=yes)
	if [ "$action" = hold ]; then ss_args+=(dpd_delay=0s); else ss_args+=(dpd_delay=2s); fi
	pn_ss_start ss ss "${ss_args[@]}" || { fail "$name: charon did not start"; return 1; }
	if [ "$action" = hold ]; then
		start_ours "$name" --initiator "$out" --dpd-interval 2 --dpd-timeout 6 --dpd-action hold \
			--until-error 60 --keys-out "$PN_WORK/keys-$name" || return 1
	else
		start_ours "$name" --initiator "$out" --dpd-interval 4 --dpd-timeout 8 --dpd-action restart \
			--until-active 90 --active-count 2 --linger 2 --keys-out "$PN_WORK/keys-$name" || return 1
	fi
	wait_for "$out" '^state ACTIVE' 20 || { fail "$name: never ACTIVE: $(tail -5 "$out.log")"; return 1; }
	first=$(first_spi_in "$out")
	sleep 10   # > our interval + timeout: only answered probes keep it up
	log=$(pn_ss_log ss)
	grep -q '^state ERROR' "$out" && fail "$name: connection failed while strongSwan was alive: $(tail -5 "$out.log")"
	if [ "$action" = hold ]; then
		grep -qE 'parsed INFORMATIONAL_V1 request [0-9]+ \[ HASH N\(DPD\) \]' "$log" ||
			fail "$name: strongSwan never received our R-U-THERE"
		grep -qE 'generating INFORMATIONAL_V1 request [0-9]+ \[ HASH N\(DPD_ACK\) \]' "$log" ||
			fail "$name: strongSwan never acknowledged our R-U-THERE"
	else
		grep -qE 'generating INFORMATIONAL_V1 request [0-9]+ \[ HASH N\(DPD\) \]' "$log" ||
			fail "$name: strongSwan never sent R-U-THERE"
		grep -qE 'parsed INFORMATIONAL_V1 request [0-9]+ \[ HASH N\(DPD_ACK\) \]' "$log" ||
			fail "$name: strongSwan never received our R-U-THERE-ACK"
	fi
	pn_swanctl ss --list-sas 2>&1 | grep -q 'INSTALLED' || fail "$name: strongSwan lost the CHILD SA while both were alive"
	pn_log "$name: alive 10 s with DPD; killing charon"
	pn_ss_kill ss
	if [ "$action" = restart ]; then
		wait_for "$out.log" 'DPD action restart: initiating again' 20 ||
			fail "$name: our DPD did not fire / restart after charon was killed: $(tail -5 "$out.log")"
		pn_ss_start ss ss "${ss_args[@]}" || { fail "$name: charon did not restart"; return 1; }
	fi
	wait_ours || rc=$?
	[ $rc = 0 ] || fail "$name: ike_udp_peer exited $rc: $(tail -3 "$out"; tail -5 "$out.log")"
	grep -q 'dead peer detected: no R-U-THERE-ACK' "$out.log" || fail "$name: no dead-peer detection logged"
	[ "$(grep -c "^SA del .*spi=$first" "$out")" = 1 ] || fail "$name: the dead peer's inbound SA $first was not deleted"
	if [ "$action" = hold ]; then
		grep -q "^connection $name: ERROR dead peer detected (DPD)" "$out" ||
			fail "$name: status is not 'ERROR dead peer detected (DPD)': $(grep '^connection' "$out")"
		[ "$(grep -c '^SA add' "$out")" = 2 ] || fail "$name: hold must not re-establish"
	else
		check_new_sa "$name" "$out" "$first" "after restart"
	fi
	[ "$FAILS" = 0 ] && pass "$name: DPD against strongSwan ($action)"
	pn_ss_stop ss
}

# Lifetimes: our CHILD SA lives 60 s and the ISAKMP SA 100 s (strongSwan's are 1 h, so every
# rekey is ours). Over 130 s we must rekey the CHILD SA make-before-break under the ISAKMP SA
# (soft expiry at 51..54 s), re-establish phase 1 (85..90 s) and delete the replaced SAs with
# Delete notifications: the SPIs change, strongSwan keeps an INSTALLED CHILD SA with our
# current SPIs throughout, and we never leave ACTIVE.
case_rekey() {
	local name=rekey out="$PN_WORK/ours-rekey" rc=0 sas st our_in our_out t adds
	PSK_OURS=$PSK
	pn_ss_start ss ss role=responder local_addr=$SS_IP remote_addr=$US_IP local_ts=$SS_NET \
		remote_ts=$US_NET psk="$PSK" keylog=yes || { fail "$name: charon did not start"; return 1; }
	OUR_TIMEOUT=150 start_ours "$name" --initiator "$out" --esp-lifetime 60 --ike-lifetime 100 \
		--duration 130 --keys-out "$PN_WORK/keys-$name" || { pn_ss_stop ss; return 1; }
	wait_for "$out" '^state ACTIVE' 20 || { fail "$name: never ACTIVE: $(tail -5 "$out.log")"; pn_ss_stop ss; return 1; }
	for t in $(seq 12); do  # every 10 s: strongSwan has an INSTALLED CHILD SA
		sleep 10
		sas=$(pn_swanctl ss --list-sas 2>&1)
		grep -qE '^  net: #[0-9]+, reqid [0-9]+, INSTALLED' <<<"$sas" ||
			fail "$name: strongSwan has no INSTALLED CHILD SA after $((t * 10)) s: $sas"
	done
	wait_ours || rc=$?
	[ $rc = 0 ] || fail "$name: ike_udp_peer exited $rc: $(tail -3 "$out"; tail -5 "$out.log")"
	sed -n '/^state ACTIVE/,$p' "$out" | grep -q '^state \(ERROR\|PENDING\|DOWN\)' &&
		fail "$name: left ACTIVE once up: $(grep '^state' "$out")"
	adds=$(grep -c '^SA add inbound' "$out")
	[ "$adds" -ge 3 ] || fail "$name: expected >= 3 inbound SAs (2 rekeys) in 130 s, got $adds"
	grep -q 'CHILD SA soft lifetime reached: rekeying' "$out.log" || fail "$name: no CHILD SA rekey logged"
	grep -q 'ISAKMP SA soft lifetime reached: re-establishing' "$out.log" || fail "$name: no phase-1 re-establishment logged"
	# every replaced inbound SA but the current one was deleted
	[ "$(grep -c '^SA del inbound' "$out")" = $((adds - 1)) ] ||
		fail "$name: $adds inbound SAs added but $(grep -c '^SA del inbound' "$out") deleted (want $((adds - 1)))"
	st=$(our_status "$name" "$out")
	[[ $st == "connection $name: ACTIVE "* ]] || fail "$name: final status '$st'"
	our_in=$(spi_of in "$st"); our_out=$(spi_of out "$st")
	[ "$our_in" != "$(first_spi_in "$out")" ] ||
		fail "$name: inbound SPI never changed"
	sas=$(pn_swanctl ss --list-sas 2>&1)
	printf '%s\n' "$sas" >"$PN_WORK/list-sas-$name"
	grep -q "^    in  $our_out," <<<"$sas" && grep -q "^    out $our_in," <<<"$sas" ||
		fail "$name: strongSwan's CHILD SA SPIs differ from our current $our_in/$our_out: $sas"
	[ "$(grep -cE '^  net: #' <<<"$sas")" = 1 ] ||
		fail "$name: strongSwan kept a replaced CHILD SA (our Delete not honoured): $sas"
	pn_log "$name: strongSwan at the end: $(grep -cE '^  net: #' <<<"$sas") CHILD SA(s), $(grep -cE '^peer: #' <<<"$sas") IKE SA(s):"
	printf '%s\n' "$sas" >&2
	if [ "$FAILS" != 0 ]; then
		pn_log "--- our log ($name) ---"; cat "$out" "$out.log" >&2
		pn_log "--- charon log (tail) ---"; grep -v '^\S* [0-9]*\[CHD\] *[0-9]*: ' "$(pn_ss_log ss)" | tail -60 >&2
		# each replaced CHILD SA needs a Delete that charon honours: under the newest ISAKMP
		# SA once charon adopted it there (a second copy under the old one is "not found")
		pn_log "--- charon Deletes and adoptions ---"
		grep -E 'received DELETE|adopting|CHILD_SA not found|closing CHILD_SA' "$(pn_ss_log ss)" >&2
	else
		pass "$name: $adds CHILD SAs over 130 s, phase 1 re-established, strongSwan INSTALLED throughout"
	fi
	pn_ss_stop ss
}

run_case() {
	case $1 in
	rekey) case_rekey ;;
	initiated-by-strongswan) established ss aes128-sha1-modp1024 aes128-sha1-modp1024 ;;
	we-initiate)             established us aes256-sha256-modp2048 aes256-sha256-modp2048 ;;
	sweep)
		established us aes192-sha256-modp1536 aes192-sha256-modp1536
		established ss aes128-sha256-modp2048 aes256-sha1-modp1024
		established us aes256-sha1-modp1536 aes128-sha256-modp2048
		established ss aes192-sha1-modp2048 aes192-sha256-modp1536 ;;
	wrong-psk) case_wrong_psk ;;
	wrong-psk-we-initiate) case_wrong_psk_we_initiate ;;
	peer-reboot) case_peer_reboot ;;
	dpd-hold) case_dpd hold ;;
	dpd-restart) case_dpd restart ;;
	all) for c in initiated-by-strongswan we-initiate sweep wrong-psk wrong-psk-we-initiate peer-reboot dpd-hold dpd-restart; do run_case $c; done ;;
	*) echo "unknown case $1" >&2; exit 2 ;;
	esac
}

run_case "$CASE"
if [ "$FAILS" != 0 ]; then
	pn_log "ike_strongswan $CASE: $FAILS check(s) FAILED (set PN_KEEP=1 to keep $PN_WORK)"
	exit 1
fi
pn_log "ike_strongswan $CASE: all checks passed"
exit 0
