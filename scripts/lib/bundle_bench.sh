#!/usr/bin/env bash
# Packs ipsecgw_bench with the shared libraries it needs (Debian 12's DPDK, ipsec-mb, Google
# Benchmark, ...), DPDK's mempool ring driver and the report scripts into one folder, so the
# benchmarks can run on a quiet machine that has none of those packages (any x86-64 Linux with
# glibc >= 2.36). Used for the pinned-core and multi-core figures in docs/performance.md.
#
#   scripts/lib/bundle_bench.sh BUILD_DIR OUT_DIR
#   OUT_DIR/run-bench.sh [ipsecgw_bench args...]   on the other machine (as root: it installs
#                                                   the mempool driver where EAL looks for it)
set -euo pipefail
build=${1:?build dir}; out=${2:?output dir}
bin="$build/benchmarks/ipsecgw_bench"
[ -x "$bin" ] || { echo "bundle_bench: $bin not built" >&2; exit 1; }
top=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$out"; mkdir -p "$out/lib" "$out/pmds"
cp "$bin" "$out/"
# Every library ldd resolves except the C library itself (taken from the target machine).
ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' |
  grep -v -E '/(libc|libm|libpthread|libdl|librt)\.so' | while read -r l; do cp -L "$l" "$out/lib/"; done
pmd=/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0
cp -L "$pmd/librte_mempool_ring.so.23.0" "$out/pmds/librte_mempool_ring.so.23.0"
cp "$top/scripts/lib/bench_report.py" "$out/"
[ -f "$top/scripts/lib/scaling_report.py" ] && cp "$top/scripts/lib/scaling_report.py" "$out/"
cat > "$out/run-bench.sh" <<'RUN'
#!/usr/bin/env bash
# ipsecgw_bench from this folder: DPDK's EAL loads its mempool driver from its compiled-in plugin
# path, so the driver is put there; the libraries come from ./lib.
set -e
d=$(cd "$(dirname "$0")" && pwd)
pmd=/usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0
mkdir -p "$pmd" && cp -n "$d"/pmds/* "$pmd"/ 2>/dev/null || true
export LD_LIBRARY_PATH="$d/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$d/ipsecgw_bench" "$@"
RUN
chmod +x "$out/run-bench.sh"
du -sh "$out" | awk '{print "bundle_bench: " $1 " in " $2}'
