#!/usr/bin/env python3
"""A tiny authoritative DNS responder for fixture generation (UDP and TCP, port 53).

Answers every A/AAAA query with the server's test address, HTTPS (65) queries with an
HTTPS record whose TargetName is svc.<qname> and an alpn=h3,h2 parameter, and names under
`cname.test` with a CNAME to api.openai.com plus an A record for it. Owner names are
compression pointers to the question, as real servers send them. Stops after --max queries
or --seconds, whichever comes first (bounded, for scripts).
"""
import argparse, socket, struct, threading, time, ipaddress

def read_name(msg, off):
    labels = []
    while True:
        n = msg[off]; off += 1
        if n == 0:
            return ".".join(labels), off
        labels.append(msg[off:off + n].decode("ascii", "replace")); off += n

def wire(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\x00"

def rr(owner, rtype, rdata, ttl=60):
    return owner + struct.pack("!HHIH", rtype, 1, ttl, len(rdata)) + rdata

def answer(query, v4, v6):
    qid, flags, qd = struct.unpack("!HHH", query[:6])
    name, end = read_name(query, 12)
    qtype, qclass = struct.unpack("!HH", query[end:end + 4])
    question = query[12:end + 4]
    ptr = b"\xc0\x0c"
    answers = []
    lname = name.lower()
    if lname.endswith("cname.test"):
        target = wire("api.openai.com")
        answers.append(rr(ptr, 5, target))
        # The A record's owner points at the CNAME target inside the first answer's RDATA.
        target_off = 12 + len(question) + 2 + 10
        answers.append(rr(struct.pack("!H", 0xC000 | target_off), 1, ipaddress.ip_address(v4).packed))
    elif qtype == 1:
        answers.append(rr(ptr, 1, ipaddress.ip_address(v4).packed))
    elif qtype == 28:
        answers.append(rr(ptr, 28, ipaddress.ip_address(v6).packed))
    elif qtype == 65:
        params = struct.pack("!HH", 1, 6) + b"\x02h3\x02h2"
        answers.append(rr(ptr, 65, struct.pack("!H", 1) + wire("svc." + lname) + params))
    header = struct.pack("!HHHHHH", qid, 0x8180 | (flags & 0x0100), 1, len(answers), 0, 0)
    return header + question + b"".join(answers)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bind", default="127.0.0.1")
    ap.add_argument("--v4", default="127.0.0.1")
    ap.add_argument("--v6", default="::1")
    ap.add_argument("--max", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60)
    a = ap.parse_args()
    fam = socket.AF_INET6 if ":" in a.bind else socket.AF_INET
    deadline = time.time() + a.seconds
    count = [0]
    u = socket.socket(fam, socket.SOCK_DGRAM); u.bind((a.bind, 53)); u.settimeout(0.2)
    t = socket.socket(fam, socket.SOCK_STREAM); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.bind((a.bind, 53)); t.listen(8); t.settimeout(0.2)
    def tcp_loop():
        while time.time() < deadline and count[0] < a.max:
            try:
                c, _ = t.accept()
            except socket.timeout:
                continue
            c.settimeout(2)
            try:
                for _ in range(8):
                    hdr = c.recv(2)
                    if len(hdr) < 2:
                        break
                    (n,) = struct.unpack("!H", hdr)
                    q = b""
                    while len(q) < n:
                        chunk = c.recv(n - len(q))
                        if not chunk:
                            break
                        q += chunk
                    resp = answer(q, a.v4, a.v6)
                    c.sendall(struct.pack("!H", len(resp)) + resp)
                    count[0] += 1
            except OSError:
                pass
            finally:
                c.close()
    threading.Thread(target=tcp_loop, daemon=True).start()
    while time.time() < deadline and count[0] < a.max:
        try:
            q, peer = u.recvfrom(4096)
        except socket.timeout:
            continue
        u.sendto(answer(q, a.v4, a.v6), peer)
        count[0] += 1

if __name__ == "__main__":
    main()
