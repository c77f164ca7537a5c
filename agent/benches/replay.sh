#!/usr/bin/env bash
# Replay benchmark (issue 3): builds a large mixed pcap deterministically with mkpcap.py, then
# reads it, in one run, with
#   1. aiscout-agent replay --all --json   (output to /dev/null)
#   2. tshark -r FILE -T fields -e dns.qry.name -e tls.handshake.extensions_server_name
#   3. pcap_floor, a bare libpcap read loop that touches every packet and parses nothing
#   4. aiscout-agent replay --all --json --libpcap-reader: the agent reading through libpcap
#      instead of its own classic pcap reader (the reader's share of the difference)
# each under /usr/bin/time -v (wall time, peak RSS), after one warm-up read so the file is in
# the page cache for all of them. Prints a table and the ratios.
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
echo "before: $(uptime)"
floor=$(run floor "$FLOOR" "$PCAP")
agent=$(run agent "$AGENT" replay --all --json "$PCAP")
agentlp=$(run agent-lp "$AGENT" replay --all --json --libpcap-reader "$PCAP")
tshark=$(run tshark tshark -r "$PCAP" -T fields -e dns.qry.name -e tls.handshake.extensions_server_name)
echo "after:  $(uptime)"
echo "floor:  $(cat "$OUT/floor.err")"
echo "agent:  $(tail -1 "$OUT/agent.err"), $(wc -l <"$OUT/agent.out") JSON lines"
echo "agent-lp: $(tail -1 "$OUT/agent-lp.err")"
cmp -s "$OUT/agent.out" "$OUT/agent-lp.out" && echo "agent and agent-lp output: identical" \
  || echo "agent and agent-lp output: DIFFERENT"
echo "tshark: $(grep -c . "$OUT/tshark.out" || true) output lines"
printf '%-8s %10s %12s\n' tool wall_s peak_rss_kb
for r in "$floor" "$agent" "$agentlp" "$tshark"; do printf '%-8s %10s %12s\n' $r; done
python3 - "$floor" "$agent" "$tshark" "$agentlp" <<'PY'
import sys
f, a, t, l = (float(x.split()[1]) for x in sys.argv[1:5])
print(f"agent/floor = {a/f:.2f}x   tshark/agent = {t/a:.1f}x   tshark/floor = {t/f:.1f}x   "
      f"agent-lp/agent = {l/a:.2f}x")
PY
