#!/usr/bin/env bash
# Idle cost of the agent service (issue 22): `aiscout-agent run` with its defaults (live
# capture on every interface that is up, the inventory watch of this machine, the spool),
# enrolled with a reachable collector on loopback and seeing no matching traffic, measured
# over IDLE_SECS beside `tcpdump -i any -w /dev/null` running over the same window.
#
# For each process, from /proc (nothing is sampled in between):
#   wakeups/s  voluntary + involuntary context switches of all its threads
#              (/proc/PID/task/*/status), per second; a thread present at both samples counts
#              its difference, a thread started in between counts all of its switches, a
#              thread that ended in between is not seen (the agent's blocking-pool threads end
#              10 s after their last job, so the warm-up lets start-up's threads go first);
#   cpu        utime + stime of the whole process (/proc/PID/stat) over the window, % of one
#              core;
#   rss        VmRSS at the end and VmHWM (peak) from /proc/PID/status.
#
# Then, with BUSY_SECS > 0 and iperf3 installed, the same figures while iperf3 pushes bulk TCP
# over loopback (the agent captures on `lo` among the others), to check that load costs no
# more than before.
#
# Usage: bash agent/benches/idle.sh [IDLE_SECS] [WARMUP_SECS] [BUSY_SECS]   (as root)
# AGENT= and COLLECTOR= select binaries (default: release agent, debug collector, built here);
# the collector's own cost is not measured. BASELINE= names a second agent binary (say, a build
# of an older commit) run beside the first with its own state folder and measured over the same
# windows, so a before/after comparison shares the machine's conditions.
set -euo pipefail
cd "$(dirname "$0")/../.."
idle="${1:-60}"
warmup="${2:-15}"
busy="${3:-0}"
target="${CARGO_TARGET_DIR:-target}"
# tcpdump is measured beside the agent (.ci/install-deps installs it); without it, or without
# root, the figures would be missing or meaningless, so say so instead of measuring.
command -v tcpdump > /dev/null || { echo "idle.sh needs tcpdump (.ci/install-deps installs it)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "idle.sh runs as root (live capture, and tcpdump beside it)" >&2; exit 1; }
if [ -z "${AGENT:-}" ]; then
  cargo build --release -q -p aiscout-agent --locked
  AGENT="$target/release/aiscout-agent"
fi
if [ -z "${COLLECTOR:-}" ]; then
  cargo build -q -p aiscout-collector --locked
  COLLECTOR="$target/debug/aiscout-collector"
fi
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

printf 'bench-enroll-secret-0123456789abcdefghij\n' > "$work/secret"
"$COLLECTOR" serve --listen 127.0.0.1:0 --data-dir "$work/c" --enroll-secret-file "$work/secret" > "$work/c.out" 2> "$work/c.log" &
pids+=($!)
for _ in $(seq 1 300); do grep -q '^listening on ' "$work/c.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$work/c.out")
pin=$(sed -n 's/^certificate .* sha256 //p' "$work/c.out")
[ -n "$url" ] || { echo "the collector did not start:"; cat "$work/c.log"; exit 1; }
printf '%064d\n' 0 > "$work/catalog.pub"
# Defaults: no `interfaces` (every interface that is up), default intervals.
cat > "$work/agent.toml" <<TOML
collector_url = "$url"
pin_sha256 = "$pin"
enroll_secret_file = "$work/secret"
catalog_key_file = "$work/catalog.pub"
state_dir = "$work/state"
TOML

names=(); procs=()
start_agent() { # name binary state
  sed "s|^state_dir = .*|state_dir = \"$3\"|" "$work/agent.toml" > "$3.toml"
  "$2" run --config "$3.toml" 2> "$3.log" &
  pids+=($!); procs+=($!); names+=("$1")
  for _ in $(seq 1 600); do grep -q 'Enrolled with the collector' "$3.log" 2>/dev/null && break; sleep 0.1; done
  grep -q 'Enrolled with the collector' "$3.log" || { echo "$1 did not enroll:"; cat "$3.log"; exit 1; }
}
start_agent "aiscout-agent run (defaults)" "$AGENT" "$work/state"
agent=${procs[0]}
if [ -n "${BASELINE:-}" ]; then start_agent "baseline agent run (defaults)" "$BASELINE" "$work/state-baseline"; fi
tcpdump -i any -w /dev/null 2> "$work/tcpdump.log" &
pids+=($!); procs+=($!); names+=("tcpdump -i any -w /dev/null")
sleep "$warmup"
# A process that died would otherwise end the script silently at its first /proc read (set -e).
alive() {
  for i in "${!procs[@]}"; do
    kill -0 "${procs[$i]}" 2> /dev/null || { echo "${names[$i]} is not running:"; cat "$work"/*.log; exit 1; }
  done
}
alive

switches() { # pid: "tid count name" per thread
  for s in /proc/"$1"/task/*/status; do
    awk -v t="$(basename "$(dirname "$s")")" '/^Name:/ {c = $2} /^(non)?voluntary_ctxt_switches/ {n += $2} END {print t, n, c}' "$s" 2>/dev/null || true
  done
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)

report() { # name before after ticks0 ticks1 pid secs
  local wakes threads
  wakes=$(awk 'NR == FNR {b[$1] = $2; next} {d = $2 - b[$1]; if (d > 0) s += d} END {print s + 0}' "$2" "$3")
  threads=$(wc -l < "$3")
  awk -v n="$1" -v w="$wakes" -v th="$threads" -v a="$4" -v b="$5" -v s="$7" -v hz="$hz" \
      -v rss="$(kb "$6" VmRSS)" -v hwm="$(kb "$6" VmHWM)" \
    'BEGIN { printf "%-34s %8.2f wakeups/s  cpu %6.3f%% of a core  rss %5.1f MB  peak %5.1f MB  (%d threads, %d switches in %.1f s)\n", n, w/s, (b-a)/hz/s*100, rss/1024, hwm/1024, th, w, s }'
  # Per thread (tid:name:switches), busiest first, in thread start order when tied.
  awk 'NR == FNR {b[$1] = $2; next} {d = $2 - b[$1]; printf "%s:%s:%d\n", $1, $3, d}' "$2" "$3" \
    | sort -t: -k3,3nr -k1,1n | tr '\n' ' ' | sed 's/^/    threads: /; s/ $/\n/'
}

phase() { # label seconds [load command...]: every process over the same window
  local label="$1" secs="$2"; shift 2
  local i start took
  declare -a c0 c1
  for i in "${!procs[@]}"; do switches "${procs[$i]}" > "$work/s0.$i"; c0[$i]=$(cpu_ticks "${procs[$i]}"); done
  start=$(date +%s.%N)
  if [ $# -gt 0 ]; then "$@" > "$work/load.out" 2>&1 || true; else sleep "$secs"; fi
  alive
  for i in "${!procs[@]}"; do switches "${procs[$i]}" > "$work/s1.$i"; c1[$i]=$(cpu_ticks "${procs[$i]}"); done
  took=$(echo "$(date +%s.%N) - $start" | bc)
  echo "== $label (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
  for i in "${!procs[@]}"; do
    report "${names[$i]}" "$work/s0.$i" "$work/s1.$i" "${c0[$i]}" "${c1[$i]}" "${procs[$i]}" "$took"
  done
}

echo "interfaces up: $(ip -o link show up | awk -F': ' '{print $2}' | cut -d@ -f1 | tr '\n' ' ')"
phase "idle ${idle} s" "$idle"
if [ "$busy" -gt 0 ] && command -v iperf3 > /dev/null; then
  iperf3 -s -B 127.0.0.1 -p 5299 > /dev/null 2>&1 &
  pids+=($!)
  sleep 1
  phase "iperf3 on lo ${busy} s" "$busy" iperf3 -c 127.0.0.1 -p 5299 -t "$busy"
  grep -E 'sender|receiver' "$work/load.out" || true
fi
grep -E 'Capture unavailable|Cannot list' "$work"/state*.log || true
kill -TERM "$agent"
stop0=$(date +%s.%N)
wait "$agent" || true
printf 'agent stopped %.3f s after SIGTERM\n' "$(echo "$(date +%s.%N) - $stop0" | bc)"
