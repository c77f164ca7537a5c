#!/usr/bin/env python3
"""Builds a large mixed pcap deterministically for agent/benches/replay.sh.

Bulk TCP transfers (full-size 1448-byte segments, each acknowledged by a 66-byte ACK) between
a few hosts, with the real handshakes from agent/tests/data/pcap/*.pcap (Ethernet fixtures:
curl, openssl, dig, Chromium TLS and QUIC) spliced in every --every bulk packets, each copy
with its client and server addresses rewritten so that every splice is a distinct flow.
Checksums are not recomputed (neither aiscout-agent nor tshark verifies them by default).
Same arguments, same bytes.
"""
import argparse, glob, os, random, struct

def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack("<I", data[:4])
    assert magic == 0xA1B2C3D4, path
    link, = struct.unpack("<I", data[20:24])
    off, pkts = 24, []
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack("<IIII", data[off:off + 16])
        pkts.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    return link, pkts

def rewrite(pkt, n):
    """Gives a fixture packet instance n's addresses: 10.99.0.x -> 10.(100+hi).lo.x and
    fd00:99::x -> fd00:99::hi:lo:x."""
    b = bytearray(pkt)
    et = struct.unpack("!H", b[12:14])[0]
    hi, lo = (n >> 8) & 0x7F, n & 0xFF
    if et == 0x0800:
        for o in (26, 30):
            if b[o:o + 3] == b"\x0a\x63\x00":
                b[o + 1] = 100 + hi
                b[o + 2] = lo
    elif et == 0x86DD:
        for o in (22, 38):
            b[o + 10] = hi
            b[o + 11] = lo
    return bytes(b)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--bulk", type=int, default=800_000, help="bulk data segments (each + 1 ACK)")
    ap.add_argument("--every", type=int, default=40, help="bulk segments between handshake splices")
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "pcap"))
    a = ap.parse_args()
    rng = random.Random(20251129)
    fixtures = []
    for path in sorted(glob.glob(os.path.join(a.fixtures, "*.pcap"))):
        link, pkts = read_pcap(path)
        if link == 1:
            fixtures.append(pkts)
    blob = bytes(rng.getrandbits(8) for _ in range(65536 + 1448))
    macs = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01"
    flows = []
    for i in range(8):
        flows.append({"src": bytes([172, 16, 0, 1 + i]), "dst": bytes([172, 16, 1, 1 + i]),
                      "sport": 40000 + i, "dport": 5201, "seq": rng.getrandbits(32), "ack": rng.getrandbits(32)})
    ts = 1_764_374_400_000_000
    npk = nbytes = 0
    with open(a.out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        def emit(frame):
            nonlocal ts, npk, nbytes
            ts += 5
            f.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(frame), len(frame)))
            f.write(frame)
            npk += 1
            nbytes += len(frame)
        def tcp(fl, reverse, seq, ack, flags, payload):
            src, dst = (fl["dst"], fl["src"]) if reverse else (fl["src"], fl["dst"])
            sp, dp = (fl["dport"], fl["sport"]) if reverse else (fl["sport"], fl["dport"])
            tcph = struct.pack("!HHIIBBHHH", sp, dp, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, 65535, 0, 0)
            iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
            return macs + b"\x08\x00" + iph + tcph + payload
        splice = 0
        for i in range(a.bulk):
            fl = flows[i % len(flows)]
            off = (fl["seq"] * 7) % 65536
            emit(tcp(fl, False, fl["seq"], fl["ack"], 0x10 | (0x08 if i % 64 == 63 else 0), blob[off:off + 1448]))
            fl["seq"] += 1448
            emit(tcp(fl, True, fl["ack"], fl["seq"], 0x10, b""))
            if i % a.every == a.every - 1:
                pkts = fixtures[splice % len(fixtures)]
                for p in pkts:
                    emit(rewrite(p, splice))
                splice += 1
    print(f"{a.out}: {npk} packets, {nbytes} bytes of frames, {splice} handshake splices")

if __name__ == "__main__":
    main()
