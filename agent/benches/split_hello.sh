#!/usr/bin/env bash
# Split-ClientHello check for the live filter (issue 3), as root. Two network namespaces joined
# by a veth pair with MTU 600 (MSS 548); the client connects and sends one 2,500-byte write
# that starts like a TLS handshake record (0x16 0x03 0x01), so without segmentation offload it
# leaves as five segments. tcpdump on the client side records, once with the veth's default
# GSO/TSO and once with `gso_max_segs 1` (segmentation in the stack, as on a device without
# TSO), what `LIVE_FILTER` (extracted from agent/src/capture/mod.rs) admits and, for
# comparison, every TCP packet. Nothing leaves the machine.
# Usage: sudo agent/benches/split_hello.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
FILTER=$(python3 - "$ROOT/agent/src/capture/mod.rs" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
m = re.search(r'pub const LIVE_FILTER: &str = "(.*?)";', s, re.S)
print(re.sub(r'\\\n', '', m.group(1)).replace('\n', ''))
PY
)
A=aiscout-split-a; B=aiscout-split-b
WORK=$(mktemp -d)
cleanup() { ip netns del $A 2>/dev/null || true; ip netns del $B 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
ip netns add $A; ip netns add $B
ip link add sa netns $A type veth peer name sb netns $B
ip -n $A addr add 10.98.0.1/24 dev sa; ip -n $B addr add 10.98.0.2/24 dev sb
for ns in $A $B; do ip -n $ns link set lo up; done
for mode in gso no-gso; do
  segs=65535; [ $mode = no-gso ] && segs=1
  ip -n $A link set sa down; ip -n $B link set sb down
  ip -n $A link set sa mtu 600 gso_max_segs $segs; ip -n $B link set sb mtu 600
  ip -n $A link set sa up; ip -n $B link set sb up
  sleep 1
  ip netns exec $B python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.98.0.2", 8443)); s.listen(1)
c, _ = s.accept()
while c.recv(65536): pass' &
  server=$!
  ip netns exec $A tcpdump -i sa -nn -w "$WORK/$mode-filter.pcap" "$FILTER" 2>/dev/null &
  t1=$!
  ip netns exec $A tcpdump -i sa -nn -w "$WORK/$mode-all.pcap" tcp 2>/dev/null &
  t2=$!
  sleep 1
  ip netns exec $A python3 -c '
import socket, time
c = socket.create_connection(("10.98.0.2", 8443))
c.sendall(bytes([0x16, 3, 1, 0x09, 0xc4, 1, 0, 9, 0xc0]) + bytes(2500 - 9))
time.sleep(0.3); c.close()'
  sleep 1
  kill $t1 $t2; wait $t1 $t2 2>/dev/null || true; wait $server || true
  echo "== $mode: client data segments on the wire (all TCP), then what LIVE_FILTER admits"
  tcpdump -nn -r "$WORK/$mode-all.pcap" 2>/dev/null | grep -v 'length 0' | sed 's/.*Flags/  Flags/'
  echo "  --"
  tcpdump -nn -r "$WORK/$mode-filter.pcap" 2>/dev/null | sed 's/.*Flags/  Flags/'
done
