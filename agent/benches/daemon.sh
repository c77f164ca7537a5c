#!/usr/bin/env bash
# Agent service resources: `aiscout-agent run` (live capture on loopback, the inventory watch,
# the spool and uploads to a local collector) idle, then while iperf3 pushes bulk TCP over
# loopback; beside `tcpdump -w /dev/null` with the same BPF filter under the same load.
# Prints CPU (user+sys, % of one core) and peak RSS for each phase. Needs root, iperf3, tcpdump.
#
# Usage: bash agent/benches/daemon.sh [IDLE_SECS] [BUSY_SECS]
set -euo pipefail
cd "$(dirname "$0")/../.."
idle="${1:-30}"
busy="${2:-20}"
cargo build --release -q -p aiscout-agent -p aiscout-collector
bin="${CARGO_TARGET_DIR:-target}/release"
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

filter=$(python3 - <<'PY'
import re
src = open("agent/src/capture/mod.rs").read()
m = re.search(r'pub const LIVE_FILTER: &str = "(.*?)";', src, re.S)
print(re.sub(r'\\\n', '', m.group(1)))
PY
)

printf 'bench-enroll-secret-0123456789abcdefghij\n' > "$work/secret"
"$bin/aiscout-collector" serve --listen 127.0.0.1:0 --data-dir "$work/c" --enroll-secret-file "$work/secret" > "$work/c.out" 2> "$work/c.log" &
pids+=($!)
for _ in $(seq 1 300); do grep -q '^listening on ' "$work/c.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$work/c.out")
pin=$(sed -n 's/^certificate .* sha256 //p' "$work/c.out")
printf '%064d\n' 0 > "$work/catalog.pub"
cat > "$work/agent.toml" <<TOML
collector_url = "$url"
pin_sha256 = "$pin"
enroll_secret_file = "$work/secret"
catalog_key_file = "$work/catalog.pub"
state_dir = "$work/state"
interfaces = ["lo"]
TOML

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

phase() { # name pid seconds [load command...]
  local name="$1" pid="$2" secs="$3"; shift 3
  local t0; t0=$(cpu_ticks "$pid")
  if [ $# -gt 0 ]; then "$@" > /dev/null 2>&1 || true; else sleep "$secs"; fi
  local t1; t1=$(cpu_ticks "$pid")
  awk -v n="$name" -v a="$t0" -v b="$t1" -v s="$secs" -v hz="$hz" -v rss="$(rss_kb "$pid")" -v hwm="$(hwm_kb "$pid")" \
    'BEGIN { printf "%-44s cpu %6.2f%% of a core   rss %6.1f MB   peak rss %6.1f MB\n", n, (b-a)/hz/s*100, rss/1024, hwm/1024 }'
}

iperf3 -s -B 127.0.0.1 -p 5299 > /dev/null 2>&1 &
pids+=($!)
load() { iperf3 -c 127.0.0.1 -p 5299 -t "$busy"; }

"$bin/aiscout-agent" run --config "$work/agent.toml" 2> "$work/agent.log" &
agent=$!
pids+=($agent)
sleep 5 # start-up: first scan, enrollment
phase "aiscout-agent run, idle ${idle}s" "$agent" "$idle"
phase "aiscout-agent run, iperf3 on lo ${busy}s" "$agent" "$busy" load
kill -TERM "$agent"; wait "$agent" || true

tcpdump -i lo -w /dev/null "$filter" 2> "$work/tcpdump.log" &
td=$!
pids+=($td)
sleep 2
phase "tcpdump -w /dev/null (same filter), idle ${idle}s" "$td" "$idle"
phase "tcpdump -w /dev/null (same filter), iperf3 ${busy}s" "$td" "$busy" load
kill -INT "$td"; wait "$td" || true
grep -E 'captured|dropped' "$work/tcpdump.log" || true
