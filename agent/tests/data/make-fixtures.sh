#!/usr/bin/env bash
# Regenerates the pcap fixtures under agent/tests/data/pcap/ from real clients (curl,
# openssl s_client, dig, headless Chromium) talking to local servers (openssl s_server and
# tools/dns-responder.py) across a veth pair between two network namespaces this script
# creates, with MTU 1500 and segmentation offloads off, so a browser's ClientHello is split
# as it is on a real network. Nothing leaves the machine: every name resolves to the
# namespace addresses. Needs root, iproute2, ethtool, tcpdump, openssl, curl, dig, python3
# and chromium. Usage: sudo agent/tests/data/make-fixtures.sh [only-this-fixture-name]
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT="$HERE/pcap"
ONLY="${1:-}"
C=aiscout-fx-c        # client namespace
S=aiscout-fx-s        # server namespace
C4=10.99.0.1; S4=10.99.0.2
C6=fd00:99::1; S6=fd00:99::2
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  ip netns del "$C" 2>/dev/null || true
  ip netns del "$S" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

mkdir -p "$OUT"
ip netns del "$C" 2>/dev/null || true
ip netns del "$S" 2>/dev/null || true
ip netns add "$C"; ip netns add "$S"
ip link add c0 netns "$C" type veth peer name s0 netns "$S"
for ns in "$C" "$S"; do ip -n "$ns" link set lo up; done
ip -n "$C" link set c0 mtu 1500 up; ip -n "$S" link set s0 mtu 1500 up
ip -n "$C" addr add "$C4/24" dev c0; ip -n "$S" addr add "$S4/24" dev s0
ip -n "$C" addr add "$C6/64" dev c0 nodad; ip -n "$S" addr add "$S6/64" dev s0 nodad
for pair in "$C c0" "$S s0"; do
  set -- $pair
  ip netns exec "$1" ethtool -K "$2" tso off gso off gro off >/dev/null 2>&1 || true
done

# A self-signed certificate for every name the fixtures use.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=aiscout-fixture \
  -addext "subjectAltName=DNS:chatgpt.com,DNS:api.openai.com,DNS:claude.ai,DNS:gemini.google.com,DNS:example.org" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1

# openssl s_server sets IPV6_V6ONLY, so IPv4 and IPv6 each get a server.
for addr in 0.0.0.0:443 '[::]:443'; do
  ip netns exec "$S" openssl s_server -quiet -accept "$addr" -cert "$WORK/cert.pem" -key "$WORK/key.pem" \
    -www -alpn http/1.1 >/dev/null 2>&1 &
  PIDS+=($!)
done
# A UDP sink on 443 so that Chromium's QUIC attempt gets no ICMP port unreachable and sends
# its whole first flight (two Initials for a post-quantum ClientHello); it never answers.
ip netns exec "$S" python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 443)); s.settimeout(1)
end = time.time() + 600
while time.time() < end:
    try: s.recv(65535)
    except socket.timeout: pass
' &
PIDS+=($!)
for bind in 0.0.0.0 "$S6"; do
  ip netns exec "$S" python3 "$HERE/tools/dns-responder.py" --bind "$bind" --v4 "$S4" --v6 "$S6" --max 200 --seconds 600 &
  PIDS+=($!)
done

wait_for() {  # bounded wait for a condition, 10 s
  for _ in $(seq 1 100); do eval "$1" && return 0; sleep 0.1; done
  echo "timed out waiting for: $1" >&2; return 1
}
wait_for "ip netns exec $S ss -ltn | grep -q ':443 '"
wait_for "ip netns exec $S ss -lun | grep -q ':53 '"

# capture NAME IFACE FILTER -- COMMAND...: runs COMMAND in the client namespace while
# tcpdump writes $OUT/NAME.pcap.
capture() {
  local name=$1 iface=$2 filter=$3; shift 4
  if [ -n "$ONLY" ] && [ "$ONLY" != "$name" ]; then return 0; fi
  local file="$OUT/$name.pcap"
  rm -f "$file"
  ip netns exec "$C" tcpdump -Z root -U --immediate-mode -s 0 -i "$iface" -w "$file" "$filter" 2>"$WORK/tcpdump.log" &
  local td=$!
  wait_for "grep -q 'listening on' $WORK/tcpdump.log"
  ip netns exec "$C" "$@" >/dev/null 2>&1 || true
  sleep 0.5
  kill -INT "$td"; wait "$td" || true
  echo "$name: $(stat -c %s "$file") bytes"
}

capture openssl-tls12-ipv4 c0 "tcp port 443" -- \
  sh -c "echo | timeout 10 openssl s_client -connect $S4:443 -servername chatgpt.com -tls1_2 -alpn h2,http/1.1"
capture openssl-tls13-ipv6 c0 "tcp port 443" -- \
  sh -c "echo | timeout 10 openssl s_client -connect [$S6]:443 -servername claude.ai -tls1_3 -alpn h2"
capture curl-ipv4 c0 "tcp port 443" -- \
  timeout 10 curl -sk --resolve "api.openai.com:443:$S4" https://api.openai.com/
capture curl-ipv6 c0 "tcp port 443" -- \
  timeout 10 curl -sk --resolve "gemini.google.com:443:[$S6]" https://gemini.google.com/
capture curl-any-sll2 any "tcp port 443" -- \
  timeout 10 curl -sk --resolve "claude.ai:443:$S4" https://claude.ai/
capture dig-udp c0 "port 53" -- sh -c "
  dig @$S4 ChatGPT.com. A; dig @$S4 claude.ai AAAA; dig @$S4 claude.ai HTTPS;
  dig @$S4 www.cname.test A; dig @$S4 example.org A"
capture dig-tcp c0 "port 53" -- sh -c "
  dig +tcp @$S4 api.anthropic.com A; dig +tcp @$S4 chatgpt.com HTTPS; dig +tcp @$S6 gemini.google.com AAAA"
CHROME=(chromium --headless --no-sandbox --disable-gpu --no-first-run --disable-background-networking
  --disable-component-update --disable-sync --ignore-certificate-errors
  --host-resolver-rules="MAP * $S4" --user-data-dir="$WORK/chrome")
capture chromium-tls c0 "tcp port 443" -- timeout 20 "${CHROME[@]}" --dump-dom https://chatgpt.com/
capture chromium-quic c0 "udp port 443" -- timeout 20 "${CHROME[@]}" \
  --enable-quic --origin-to-force-quic-on=chatgpt.com:443 --dump-dom https://chatgpt.com/
