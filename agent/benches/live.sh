#!/usr/bin/env bash
# Live capture check (issue 3), as root: two network namespaces joined by a veth pair (MTU
# 1500, offloads off). Part 1 runs `aiscout-agent capture` on the client side while dig, openssl
# s_client, curl and headless Chromium talk to local servers. Part 2 measures the agent's CPU
# time while iperf3 pushes bulk TCP over the same veth for 10 s. Nothing leaves the machine.
# Usage: sudo agent/benches/live.sh   (build first: cargo build --release -p aiscout-agent)
set -euo pipefail
HERE=$(cd "$(dirname "$0")/../tests/data" && pwd)
AGENT=${AGENT:-${CARGO_TARGET_DIR:-/work/target-agent}/release/aiscout-agent}
C=aiscout-live-c; S=aiscout-live-s; S4=10.97.0.2
WORK=$(mktemp -d); PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; ip netns del $C 2>/dev/null || true; ip netns del $S 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
ip netns add $C; ip netns add $S
ip link add c0 netns $C type veth peer name s0 netns $S
for ns in $C $S; do ip -n $ns link set lo up; done
ip -n $C link set c0 mtu 1500 up; ip -n $S link set s0 mtu 1500 up
ip -n $C addr add 10.97.0.1/24 dev c0; ip -n $S addr add $S4/24 dev s0
ip netns exec $C ethtool -K c0 tso off gso off gro off >/dev/null 2>&1 || true
ip netns exec $S ethtool -K s0 tso off gso off gro off >/dev/null 2>&1 || true
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=x -addext "subjectAltName=DNS:chatgpt.com,DNS:claude.ai" -keyout $WORK/k.pem -out $WORK/c.pem >/dev/null 2>&1
ip netns exec $S openssl s_server -quiet -accept 0.0.0.0:443 -cert $WORK/c.pem -key $WORK/k.pem -www >/dev/null 2>&1 & PIDS+=($!)
ip netns exec $S python3 $HERE/tools/dns-responder.py --bind 0.0.0.0 --v4 $S4 --max 50 --seconds 120 & PIDS+=($!)
ip netns exec $S iperf3 -s -1 >/dev/null 2>&1 & PIDS+=($!)
sleep 1
echo "== functional: agent capture on c0 for 8 s while curl, dig, openssl and chromium run"
ip netns exec $C $AGENT capture --interface c0 --duration 8 --json > $WORK/obs.json 2> $WORK/obs.err & AG=$!
sleep 1
ip netns exec $C dig @$S4 claude.ai A +short >/dev/null
ip netns exec $C dig +tcp @$S4 chatgpt.com A +short >/dev/null
ip netns exec $C sh -c "echo | timeout 5 openssl s_client -connect $S4:443 -servername claude.ai" >/dev/null 2>&1 || true
ip netns exec $C timeout 5 curl -sk --resolve chatgpt.com:443:$S4 https://chatgpt.com/ >/dev/null || true
ip netns exec $C timeout 10 chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking --disable-component-update --disable-sync --ignore-certificate-errors --host-resolver-rules="MAP * $S4" --user-data-dir=$WORK/chrome --dump-dom https://chatgpt.com/ >/dev/null 2>&1 || true
wait $AG || echo "agent exit $?"
cat $WORK/obs.json; cat $WORK/obs.err
echo "== cost: iperf3 for 10 s, agent capturing on c0 for 12 s"
ip netns exec $C /usr/bin/time -f "agent cpu: user %U s sys %S s wall %e s peak rss %M KB" $AGENT capture --interface c0 --duration 12 --json > $WORK/bulk.json 2> $WORK/bulk.err & AG=$!
sleep 1
ip netns exec $C iperf3 -c $S4 -t 10 -f g | grep -E "sender|receiver"
wait $AG || echo "agent exit $?"
cat $WORK/bulk.err
