#!/usr/bin/env bash
# Replay benchmark (issue 3): builds a large mixed pcap deterministically with mkpcap.py, then
# reads it, in one run, with
#   1. aiscout-agent replay --all --json   (output to /dev/null)
#   2. tshark -r FILE -T fields -e dns.qry.name -e tls.handshake.extensions_server_name
#   3. pcap_floor, a bare libpcap read loop that touches every packet and parses nothing
# each under /usr/bin/time -v (wall time, peak RSS), after one warm-up read so the file is in
# the page cache for all three. Prints a table and the ratios.
# Usage: agent/benches/replay.sh [PCAP] (default /tmp/aiscout-bench.pcap, built if missing).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PCAP=${1:-/tmp/aiscout-bench.pcap}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-agent}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

[ -f "$PCAP" ] || python3 "$HERE/mkpcap.py" "$PCAP"
(cd "$ROOT" && cargo build --release -p aiscout-agent --bin aiscout-agent --example pcap_floor >/dev/null 2>&1)
AGENT="$CARGO_TARGET_DIR/release/aiscout-agent"
FLOOR="$CARGO_TARGET_DIR/release/examples/pcap_floor"
cat "$PCAP" >/dev/null   # warm the page cache

run() {  # run NAME CMD...: time one command, keep its stderr and /usr/bin/time report
  local name=$1; shift
  /usr/bin/time -v -o "$OUT/$name.time" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$OUT/$name.time")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$OUT/$name.time")
  secs=$(python3 -c "p='$wall'.split(':'); print(sum(float(x)*60**i for i,x in enumerate(reversed(p))))")
  echo "$name $secs $rss"
}

echo "file: $PCAP ($(stat -c %s "$PCAP") bytes)"
floor=$(run floor "$FLOOR" "$PCAP")
agent=$(run agent "$AGENT" replay --all --json "$PCAP")
tshark=$(run tshark tshark -r "$PCAP" -T fields -e dns.qry.name -e tls.handshake.extensions_server_name)
echo "floor:  $(cat "$OUT/floor.err")"
echo "agent:  $(tail -1 "$OUT/agent.err"), $(wc -l <"$OUT/agent.out") JSON lines"
echo "tshark: $(grep -c . "$OUT/tshark.out" || true) output lines"
printf '%-8s %10s %12s\n' tool wall_s peak_rss_kb
for r in "$floor" "$agent" "$tshark"; do printf '%-8s %10s %12s\n' $r; done
python3 - "$floor" "$agent" "$tshark" <<'PY'
import sys
f, a, t = (float(x.split()[1]) for x in sys.argv[1:4])
print(f"agent/floor = {a/f:.2f}x   tshark/agent = {t/a:.1f}x")
PY
