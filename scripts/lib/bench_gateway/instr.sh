#!/usr/bin/env bash
# Instructions per packet of the whole gateway worker (issue #12), counted with valgrind's
# callgrind: deterministic, independent of the load on the machine (docs/performance.md,
# "Worker instructions per packet"). As root (DPDK vdevs), Debian 12 with valgrind:
#
#   scripts/lib/bench_gateway/instr.sh [-t SECONDS] [-s "64 1400"] [-d "outbound inbound"]
#                                      [-f N] [-k] [-m TUNNELS] [-c]
#
# Runs app/ipsecgw of a callgrind build (default build-cg: release, -g, -Dnative=false, i.e.
# DPDK's -march=corei7; under valgrind ipsec-mb's automatic dispatch picks its AVX2 path,
# valgrind 3.19 has no AVX-512) with the traffic and configuration of scripts/bench-gateway
# (one worker lcore, input net_pcap replaying the pcap forever, output net_null) for SECONDS
# (default 20) of valgrind time after start-up, then SIGINT. Per direction and size it prints,
# per packet (packets = the worker's rx_packets from the exit report):
#   total  Ir of GatewayImpl::worker_loop (everything the worker lcore did; only it is collected)
#   imb    inclusive Ir of the calls into libIPSec_MB (the crypto)
#   rx     inclusive Ir of the calls into net_pcap (the input port: RX, its mbuf alloc and copy)
#   tx     inclusive Ir of the calls into net_null (the output port: TX, i.e. the free; and
#          the empty RX polls of the output port)
#   ours   total - imb - rx - tx
# and, with -f N, the N functions (self Ir, outside ipsec-mb and the vdevs) that cost most.
# -k keeps the callgrind files (in $IPSECGW_CG_BUILD/instr/). -m TUNNELS: the many-tunnel
# traffic and config of bench-gateway -t instead (many.py: TUNNELS connections, 4 flows each,
# 40,000 packets in a random order for every TUNNELS, so 1 and 10,000 compare fairly).
# -c: callgrind's cache simulation too (--cache-sim=yes, LL 32 MiB 16-way; I1/D1 32 KiB): adds
# "d1miss" (D1 read + write misses) and "llmiss" (LL data misses) per packet, whole worker. IPSECGW_CG_BUILD=dir (default
# build-cg); IPSECGW_CG_BIN=path: count that ipsecgw binary instead (no build; before/after).
# Output lines "instr DIRECTION SIZE packets=.. total=.. imb=.. rx=.. tx=.. ours=.." are meant
# for scripts/bench-gateway to pick up. Takes about 1 min per direction and size (idle machine).
set -euo pipefail
top=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$top"

secs=20 sizes="64 1400" directions="outbound inbound" top_n=0 keep=0 many=0 cachesim=0
while [ $# -gt 0 ]; do
  case "$1" in
    -t) secs="$2"; shift 2 ;;
    -s) sizes="$2"; shift 2 ;;
    -d) directions="$2"; shift 2 ;;
    -f) top_n="$2"; shift 2 ;;
    -k) keep=1; shift ;;
    -m) many="$2"; shift 2 ;;
    -c) cachesim=1; shift ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "instr.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v valgrind >/dev/null || { echo "instr.sh: valgrind missing (apt-get install valgrind)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "instr.sh: run as root (DPDK vdevs under /run/dpdk)" >&2; exit 1; }

lib=scripts/lib/bench_gateway
build=${IPSECGW_CG_BUILD:-build-cg}
work="$build/instr"
mkdir -p "$work"
bin=${IPSECGW_CG_BIN:-}
if [ -z "$bin" ]; then
  bin="$build/app/ipsecgw"
  if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" --buildtype=release -Ddebug=true -Dnative=false -Dtests=false \
      -Dbenchmarks=false >/dev/null || { echo "instr.sh: meson setup $build failed" >&2; exit 1; }
  fi
  ninja -C "$build" app/ipsecgw >"$work/build.log" 2>&1 || { tail -n 30 "$work/build.log" >&2; exit 1; }
fi
if [ "$many" = 0 ]; then
  # Traffic and config of bench-gateway's default case (AES-128-CBC/HMAC-SHA1-96, plain ESP).
  # pcaps.py config writes the YAML owner-only: it holds keys, ipsecgw refuses others.
  need=()
  for size in $sizes; do
    f="$work/in-aes128-sha1-esp-$size.pcap"
    { [ -f "$f" ] && [ "$f" -nt "$lib/pcaps.py" ]; } || need+=("$size")
  done
  if [ ${#need[@]} -gt 0 ]; then
    /usr/bin/python3 "$lib/pcaps.py" gen "$work" aes128-sha1 esp "${need[@]}" >/dev/null
  fi
  /usr/bin/python3 "$lib/pcaps.py" config "$work" aes128-sha1 esp
  config="$work/ipsecgw-aes128-sha1-esp.yaml" mem=1024
else
  # many.py writes the config (0600) and both directions' pcaps of a size.
  need=()
  for size in $sizes; do
    f="$work/many-$many-in-$size.pcap"
    { [ -f "$f" ] && [ "$f" -nt "$lib/many.py" ]; } || need+=("$size")
  done
  if [ ${#need[@]} -gt 0 ]; then
    /usr/bin/python3 "$lib/many.py" gen "$work" "$many" "${need[@]}" >/dev/null
  fi
  config="$work/many-$many.yaml" mem=2048
fi
cgopts=()
[ "$cachesim" = 1 ] && cgopts=(--cache-sim=yes --I1=32768,8,64 --D1=32768,8,64 --LL=33554432,16,64)
PMDS=/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0

pid=""
cleanup() { [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; true; }
trap cleanup EXIT

for dir in $directions; do
  for size in $sizes; do
    tag="$dir-$size"
    if [ "$many" != 0 ]; then
      tag="many$many-$tag"
      if [ "$dir" = outbound ]; then in="$work/many-$many-out-$size.pcap"; else in="$work/many-$many-in-$size.pcap"; fi
    elif [ "$dir" = outbound ]; then in="$work/out-$size.pcap"; else in="$work/in-aes128-sha1-esp-$size.pcap"; fi
    rx="net_pcap_in,rx_pcap=$in,tx_pcap=/dev/null,infinite_rx=1"
    tx="net_null_out,no-rx=1"
    # Port 0 is the unprotected one: the --vdev order as in scripts/bench-gateway.
    if [ "$dir" = outbound ]; then devs=(--vdev "$tx" --vdev "$rx"); else devs=(--vdev "$rx" --vdev "$tx"); fi
    out="$work/cg.$tag"
    log="$work/$tag.log"
    rm -f "$out"
    # Only the worker lcore's loop is collected (not start-up, not the control lcore).
    valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*GatewayImpl::worker_loop*' \
      "${cgopts[@]}" --callgrind-out-file="$out" "$bin" \
      -l 0,1 -n 1 --no-huge -m "$mem" --no-pci --file-prefix "instr-$tag-$$" -d "$PMDS" \
      "${devs[@]}" -- --config "$config" --no-api --log-level info >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 1800); do  # 15 min: 10,000 connections load slowly under valgrind
      grep -q "ipsecgw running" "$log" && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.5
    done
    grep -q "ipsecgw running" "$log" || { echo "instr.sh: $tag did not start" >&2; tail -n 20 "$log" >&2; exit 1; }
    sleep "$secs"
    kill -INT "$pid"
    wait "$pid" || { echo "instr.sh: $tag exited with an error" >&2; tail -n 20 "$log" >&2; exit 1; }
    pid=""
    rm -rf "/run/dpdk/instr-$tag-$$"
    pkts=$(sed -n 's/^lcore [0-9]* worker rx_packets=\([0-9]*\).*/\1/p' "$log" | head -1)
    if [ -z "$pkts" ] || [ "$pkts" -eq 0 ]; then echo "instr.sh: $tag: no packets" >&2; exit 1; fi
    callgrind_annotate --auto=no --threshold=100 --show=Ir "$out" >"$out.self"
    /usr/bin/python3 - "$dir" "$size" "$pkts" "$out" "$out.self" "$top_n" "$many" <<'PYEOF'
import re, sys
direction, size, pkts, raw, self_, top_n, many = sys.argv[1:]
pkts, top_n = int(pkts), int(top_n)
# Inclusive cost of every call from one object into another, from the callgrind file itself
# (the vdevs' burst functions are static, unnamed in callgrind_annotate's output): a call
# block is "cob=" (callee object, default: the caller's), "calls=", then "position cost".
names, ob, cob, edges, nxt, total, events, sums = {}, None, None, {}, False, 0, [], {}
def name(v):
    m = re.match(r"\((\d+)\)\s*(.*)", v)
    if not m:
        return v
    if m.group(2):
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), "?")
for line in open(raw):
    if nxt:
        nxt = False
        callee = cob if cob is not None else ob
        edges[(ob, callee)] = edges.get((ob, callee), 0) + int(line.split()[1])
        cob = None
    elif line.startswith("ob="):
        ob = name(line[3:].strip())
    elif line.startswith("cob="):
        cob = name(line[4:].strip())
    elif line.startswith("calls="):
        nxt = True
    elif line.startswith("events:"):
        events = line.split()[1:]
    elif line.startswith(("summary:", "totals:")):
        vals = [int(v) for v in line.split()[1:]]
        total = max(total, vals[0])
        for e, v in zip(events, vals):
            sums[e] = max(sums.get(e, 0), v)
def into(pat):
    return sum(v for (a, b), v in edges.items() if re.search(pat, b or "") and not re.search(pat, a or ""))
imb, rx, tx = into("libIPSec_MB"), into("librte_net_pcap"), into("librte_net_null")
ours = total - imb - rx - tx
p = lambda v: round(v / pkts)
# With -c (cache simulation): data misses of the whole worker per packet, one decimal.
cache = ""
if "D1mr" in sums:
    q = lambda v: f"{v / pkts:.1f}"
    cache = (f" d1miss={q(sums['D1mr'] + sums.get('D1mw', 0))}"
             f" llmiss={q(sums.get('DLmr', 0) + sums.get('DLmw', 0))}")
tun = f" tunnels={many}" if many != "0" else ""
print(f"instr {direction} {size} packets={pkts} total={p(total)} imb={p(imb)} rx={p(rx)} "
      f"tx={p(tx)} ours={p(ours)}{tun}{cache}")
# The functions that cost most by themselves (self Ir), outside ipsec-mb and the vdevs (what
# the vdevs call, e.g. librte_mbuf's free, still shows).
own = {}
for line in open(self_):
    m = re.match(r"^\s*([\d,]+)\s+(?:\([^)]*\)\s+)?(\S.*)$", line)
    if not m or "PROGRAM TOTALS" in line:
        continue
    fn, obj = m.group(2), ""
    if fn.endswith("]") and " [" in fn:
        fn, _, obj = fn.rpartition(" [")
    if re.search("libIPSec_MB|librte_net_pcap|librte_net_null", obj):
        continue
    fn = fn.split(":", 1)[1] if ":" in fn else fn
    fn = re.sub(r"\(.*\)( const)?$", "", fn.replace("(anonymous namespace)", "{anon}"))
    # One function's lines inlined from other files are listed apart (without the object).
    own[fn] = own.get(fn, 0) + int(m.group(1).replace(",", ""))
for fn, ir in sorted(own.items(), key=lambda kv: -kv[1])[:top_n]:
    print(f"  {ir / pkts:8.1f}  {fn}")
PYEOF
    [ "$keep" = 1 ] || rm -f "$out" "$out.self"
  done
done
