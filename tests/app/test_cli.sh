#!/usr/bin/env bash
# The ipsecgw command line without EAL: --help, --check-config and bad options must work with no
# hugepages, ports or root, and fail with a message naming the option or config field.
# Usage: test_cli.sh IPSECGW_BINARY EXAMPLES_DIR
set -u
bin=$1 src_examples=$2
# Config files hold keys: ipsecgw refuses one that group or others may read. Everything this
# script writes is owner-only, the examples included (copied: a checkout makes them 0644).
umask 077
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
fails=0
mkdir "$tmp/examples" && cp "$src_examples"/*.yaml "$tmp/examples/" || exit 1
examples=$tmp/examples

# expect NAME RC PATTERN cmd...: the command exits with RC and its output matches PATTERN.
expect() {
  local name=$1 want_rc=$2 pattern=$3; shift 3
  local out rc
  out=$(timeout 10 "$@" 2>&1); rc=$?
  if [ "$rc" != "$want_rc" ] || ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL $name: rc=$rc (want $want_rc), output should match /$pattern/:"
    sed 's/^/    /' <<<"$out"
    fails=$((fails + 1))
  else
    echo "ok   $name"
  fi
}

expect help 0 'EAL args come first.*' "$bin" --help
expect help-after-eal-args 0 'ipsecgw -l 0-2 -n 4 -a 0000:3b:00.0 -a 0000:3b:00.1 -- --config' \
  "$bin" -l 0-1 --no-huge -- -h
for f in "$examples"/*.yaml; do
  expect "check-config $(basename "$f")" 0 '^configuration OK' "$bin" --check-config --config "$f"
done
expect check-config-after-dashdash 0 'configuration OK' \
  "$bin" -l 0-1 -- --check-config --config "$examples/gw-a-static.yaml"

sed 's/timeout: 120}/timeout: 20}/; s/value: 28800/value: 30/' "$examples/gw-ike.yaml" >"$tmp/bad.yaml"
expect check-config-dpd 1 'ipsec_site_connections\[0\]\.dpd\.timeout: 20 must be greater than dpd\.interval \(30\)' \
  "$bin" --check-config --config "$tmp/bad.yaml"
expect check-config-lifetime 1 'ikepolicies\[0\]\.lifetime\.value: 30 out of range 60\.\.86400' \
  "$bin" --check-config --config "$tmp/bad.yaml"
out=$("$bin" --check-config --config "$tmp/bad.yaml" 2>&1)
if grep -q 'change-me-to-a-long-random-secret' <<<"$out"; then
  echo "FAIL psk printed"; fails=$((fails + 1)); else echo "ok   psk-not-printed"; fi
cp "$examples/gw-ike.yaml" "$tmp/open.yaml" && chmod 640 "$tmp/open.yaml"
expect group-readable-refused 1 "config file '$tmp/open.yaml' has mode 0640: it holds pre-shared keys.*chmod 600 '$tmp/open.yaml'" \
  "$bin" --check-config --config "$tmp/open.yaml"
sed -E 's/psk: .*/psk: "short"/' "$examples/gw-ike.yaml" >"$tmp/short.yaml"
expect short-psk-warned 0 'warning: ipsec_site_connections\[0\]\.psk: 5 bytes, shorter than the recommended 16' \
  "$bin" --check-config --config "$tmp/short.yaml"
sed -E 's/psk: .*/psk: ""/' "$examples/gw-ike.yaml" >"$tmp/empty.yaml"
expect empty-psk-refused 1 'ipsec_site_connections\[0\]\.psk: must not be empty' \
  "$bin" --check-config --config "$tmp/empty.yaml"
expect missing-file 1 "cannot open config file '/nonexistent.yaml'" \
  "$bin" --check-config --config /nonexistent.yaml
expect unknown-option 2 "unrecognised option '--bogus'" \
  "$bin" -l 0-1 -- --config "$examples/gw-a-static.yaml" --bogus
expect bad-stats-interval 2 "'--stats-interval' is invalid" \
  "$bin" -l 0-1 -- --config "$examples/gw-a-static.yaml" --stats-interval abc
expect bad-log-level 2 "'--log-level' is invalid" \
  "$bin" -l 0-1 -- --config "$examples/gw-a-static.yaml" --log-level loud
expect bad-api-listen 2 "'--api-listen' is invalid" \
  "$bin" -l 0-1 -- --config "$examples/gw-a-static.yaml" --api-listen 127.0.0.1
expect bad-api-port 2 "'--api-listen' is invalid" \
  "$bin" -l 0-1 -- --config "$examples/gw-a-static.yaml" --api-listen 127.0.0.1:70000
expect help-api 0 'api-listen' "$bin" --help
expect help-state-file 0 'state-file' "$bin" --help
expect missing-config 2 "'--config' is required" "$bin" -l 0-1
expect stray-argument 2 "unexpected argument 'gw.yaml'" "$bin" -l 0-1 -- gw.yaml

echo "$fails failure(s)"
[ "$fails" = 0 ]
