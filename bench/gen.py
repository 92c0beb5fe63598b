#!/usr/bin/env python3
"""Generate, deterministically, the benchmark's captures: every shape and format of issue 14.

Shapes (each seeded: the same arguments give the same bytes):
- relay N: a mail relay on the server LAN of a DSR site (N packets). SMTP sessions to the VIP
  192.0.2.25:25, each client frame from the router to the LB and the LB's forwarded copy to a
  back-end, the back-ends' replies from the VIP; banner, EHLO, STARTTLS and TLS-sized data (1-40
  records of up to 1,448 bytes); about 2% of sessions broken (SYNs retransmitted, never answered);
  ARP for the VIP; about 60% unrelated traffic (HTTPS bulk and DNS) that the BPF filter drops.
- syn N: N unanswered SYNs to the VIP from many sources (a SYN flood or a scan), 100k a second,
  every 4-tuple distinct (the 508 documentation addresses of 198.51.100/24 and 203.0.113/24 times
  source ports).
- sessions N: N short complete SMTP sessions (handshake, banner, EHLO, QUIT, FIN both ways: 10
  packets), 64 at a time interleaved, as a back-end sees them.
- hash-xorshift / hash-modulo / hash-random N: N IPv6 SYNs to [2001:db8::25]:25 whose client
  4-tuples all fall in one slot of a connection table hashed by main's old unkeyed
  multiply-xorshift hash (_conntrack.c before SipHash: the key is inverted, so every 4-tuple gets
  the SAME 64-bit hash), or by a plain modulo of the address (addresses 2^20 apart: equal modulo
  any power of two up to 2^20), or random addresses of the same count (the control).
- seqjump N: the relay with one segment 2^31 past the expected sequence number in one session.

Formats (of any shape): pcap (microseconds), pcap-ns (nanosecond magic), sll (Linux cooked v1,
as `tcpdump -i any` writes it: written directly here), pcapng (editcap -F pcapng of the pcap),
pcap.gz and pcapng.gz (gzip, mtime 0: deterministic).

Built from byte templates with struct (scapy would take minutes per million packets).

Usage: python bench/gen.py OUT --shape relay --count 1000000 [--format pcap] [--seed 7]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
import struct
import subprocess
from pathlib import Path

ROUTER, LB = bytes.fromhex("020000000001"), bytes.fromhex("02000000000a")
BACKENDS = [bytes.fromhex("020000000011"), bytes.fromhex("020000000012"), bytes.fromhex("020000000013")]
VIP = bytes([192, 0, 2, 25])
VIP6 = bytes.fromhex("20010db8000000000000000000000025")
T0 = 1_700_000_000
SYN, ACK, PSH, FIN, RST = 0x02, 0x10, 0x08, 0x01, 0x04
LINKTYPE_ETHERNET, LINKTYPE_LINUX_SLL = 1, 113


def ip4(n: int) -> bytes:
    return struct.pack(">I", n)


# 198.51.100.0/24 and 203.0.113.0/24 without .0 and .255: the flood's and sessions' sources
SOURCES = [ip4(0xC6336400 + i) for i in range(1, 255)] + [ip4(0xCB007100 + i) for i in range(1, 255)]


class Writer:
    """A classic pcap (micro- or nanosecond) of Ethernet or Linux cooked (SLL) frames."""

    def __init__(self, path: Path, linktype: int = LINKTYPE_ETHERNET, nanos: bool = False):
        self.f = open(path, "wb", buffering=1 << 20)
        self.f.write(struct.pack("<IHHiIII", 0xA1B23C4D if nanos else 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        self.sll = linktype == LINKTYPE_LINUX_SLL
        self.scale = 1_000_000_000 if nanos else 1_000_000
        self.n = 0
        self.ipid = 0
        self._rec = struct.Struct("<IIII")

    def _link(self, src_mac: bytes, dst_mac: bytes, etype: bytes) -> bytes:
        if self.sll:  # tcpdump -i any: packet type, ARPHRD_ETHER, address length, source MAC (padded to 8), protocol
            ptype = b"\x00\x04" if src_mac in BACKENDS else b"\x00\x00"  # sent by this host / to this host
            return ptype + b"\x00\x01\x00\x06" + src_mac + b"\x00\x00" + etype
        return dst_mac + src_mac + etype

    def raw(self, t: float, data: bytes) -> None:
        sec = int(t)
        self.f.write(self._rec.pack(T0 + sec, int((t - sec) * self.scale), len(data), len(data)))
        self.f.write(data)
        self.n += 1

    def frame(self, t: float, src_mac: bytes, dst_mac: bytes, src: bytes, dst: bytes, proto: int, l4: bytes, ttl: int = 64,
              same_ip_id: bool = False):
        if not same_ip_id:  # the LB's forwarded copy is the same IP packet: same IP ID
            self.ipid = (self.ipid + 1) & 0xFFFF
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), self.ipid, 0x4000, ttl, proto, 0, src, dst)
        self.raw(t, self._link(src_mac, dst_mac, b"\x08\x00") + ip + l4)

    def frame6(self, t: float, src_mac: bytes, dst_mac: bytes, src: bytes, dst: bytes, l4: bytes, hlim: int = 64):
        ip = struct.pack(">IHBB16s16s", 0x60000000, len(l4), 6, hlim, src, dst)
        self.raw(t, self._link(src_mac, dst_mac, b"\x86\xdd") + ip + l4)

    def arp(self, t: float, op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes, dst: bytes):
        body = struct.pack(">HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha, spa, tha, tpa)
        self.raw(t, self._link(sha, dst, b"\x08\x06") + body + (b"" if self.sll else bytes(18)))

    def close(self) -> None:
        self.f.close()


def tcp(sport, dport, seq, ack, flags, payload=b"", win=502):
    return struct.pack(">HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, win, 0, 0) + payload


def smtp_session(w: Writer, rng: random.Random, t: float, client: bytes, cport: int, be: int, broken: bool,
                 jump: bool = False) -> float:
    bmac = BACKENDS[be]
    cisn, sisn = rng.getrandbits(32), rng.getrandbits(32)

    def c2s(t, seq, ack, flags, payload=b""):
        seg = tcp(cport, 25, seq, ack, flags, payload)
        w.frame(t, ROUTER, LB, client, VIP, 6, seg, 63)
        w.frame(t + 0.00003, LB, bmac, client, VIP, 6, seg, 63, same_ip_id=True)

    def s2c(t, seq, ack, flags, payload=b""):
        w.frame(t, bmac, ROUTER, VIP, client, 6, tcp(25, cport, seq, ack, flags, payload), 64)

    if broken:
        for i in range(3):
            c2s(t + (2 ** i - 1), cisn, 0, SYN)
        return t + 3.5
    c2s(t, cisn, 0, SYN)
    t += 0.0002
    s2c(t, sisn, cisn + 1, SYN | ACK)
    t += 0.02
    c2s(t, cisn + 1, sisn + 1, ACK)
    cseq, sseq = cisn + 1, sisn + 1
    host = f"mx{be + 1}.example.net"
    steps = [("<", f"220 {host} ESMTP Postfix\r\n".encode()), (">", b"EHLO relay.example.org\r\n"),
             ("<", f"250-{host}\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n250 8BITMIME\r\n".encode()),
             (">", b"STARTTLS\r\n"), ("<", b"220 2.0.0 Ready to start TLS\r\n")]
    for _ in range(rng.randint(1, 40)):
        size = rng.choice((80, 517, 1448, 1448, 1448))
        steps.append((rng.choice("><"), b"\x17\x03\x03" + (size - 5).to_bytes(2, "big") + bytes(size - 5)))
    for i, (d, data) in enumerate(steps):
        t += 0.0005
        if d == "<":
            s2c(t, sseq, cseq, PSH | ACK, data)
            sseq += len(data)
            t += 0.02
            c2s(t, cseq, sseq, ACK)
        else:
            if jump and i == 6:  # one segment 2^31 past what the receiver expects, then the stream goes on
                c2s(t, cseq + (1 << 31), sseq, PSH | ACK, data)
                t += 0.0003
            c2s(t, cseq, sseq, PSH | ACK, data)
            cseq += len(data)
            t += 0.0003
            s2c(t, sseq, cseq, ACK)
    t += 0.001
    c2s(t, cseq, sseq, FIN | ACK)
    s2c(t + 0.0003, sseq, cseq + 1, FIN | ACK)
    c2s(t + 0.02, cseq + 1, sseq + 1, ACK)
    return t + 0.03


def noise(w: Writer, rng: random.Random, t: float, k: int) -> None:
    """Unrelated traffic: HTTPS bulk (TCP 443) and DNS (UDP 53) between other hosts."""
    a, b = ip4(0xC6336400 + rng.randint(10, 250)), ip4(0xCB007100 + rng.randint(1, 250))
    if rng.random() < 0.8:
        p = rng.randint(30000, 60000)
        seq = rng.getrandbits(32)
        for i in range(k):
            w.frame(t + i * 0.0001, ROUTER, BACKENDS[2], b, a, 6, tcp(443, p, seq + i * 1448, 1, ACK, bytes(1448 if i % 3 else 60)))
    else:
        for i in range(k):
            q = struct.pack(">HHHHHH", rng.getrandbits(16), 0x0100, 1, 0, 0, 0) + b"\x04mail\x07example\x03net\x00\x00\x01\x00\x01"
            w.frame(t + i * 0.0001, ROUTER, BACKENDS[2], a, ip4(0xC0000235), 17, struct.pack(">HHHH", rng.randint(1024, 65535), 53, 8 + len(q), 0) + q)


def relay(w: Writer, packets: int, rng: random.Random, jump: bool = False) -> dict:
    t = 0.0
    cport = 20000
    sessions = 0
    jumped = False
    while w.n < packets:
        if sessions % 50 == 0:
            w.arp(t, 1, ROUTER, bytes([192, 0, 2, 1]), bytes(6), VIP, b"\xff" * 6)
            w.arp(t + 0.0001, 2, LB, VIP, ROUTER, bytes([192, 0, 2, 1]), ROUTER)
        client = ip4(0xC6336400 + rng.randint(10, 250))  # 198.51.100.x
        before = w.n
        broken = rng.random() < 0.02
        this_jump = jump and not broken and sessions >= 100 and not jumped
        t = smtp_session(w, rng, t, client, cport, 0 if rng.random() < 0.5 else 1, broken, this_jump)
        jumped = jumped or this_jump
        smtp = w.n - before
        k = int(smtp * 1.5)  # about 60% of all packets unrelated
        noise(w, rng, t, k)
        t += k * 0.0001
        t += 0.002
        cport = cport + 1 if cport < 65000 else 20000
        sessions += 1
    return {"smtp_sessions": sessions}


def synflood(w: Writer, n: int, rng: random.Random) -> dict:
    """n SYNs, 100k a second, every 4-tuple distinct; an ARP exchange for the VIP every 10,000."""
    ns = len(SOURCES)
    for i in range(n):
        t = i * 0.00001
        if i % 10000 == 0:
            w.arp(t, 1, ROUTER, bytes([192, 0, 2, 1]), bytes(6), VIP, b"\xff" * 6)
            w.arp(t, 2, LB, VIP, ROUTER, bytes([192, 0, 2, 1]), ROUTER)
        w.frame(t, ROUTER, LB, SOURCES[i % ns], VIP, 6, tcp(1024 + i // ns, 25, rng.getrandbits(32), 0, SYN, win=1024), 57)
    return {"syns": n}


def sessions(w: Writer, n: int, rng: random.Random) -> dict:
    """n short complete SMTP sessions as a back-end sees them (client frames forwarded by the LB,
    replies straight to the router), 64 at a time interleaved packet by packet."""
    ns = len(SOURCES)
    bmac = BACKENDS[0]
    banner = b"220 mx1.example.net ESMTP\r\n"
    ehlo, ok, quit_, bye = b"EHLO c.example.org\r\n", b"250 mx1.example.net\r\n", b"QUIT\r\n", b"221 2.0.0 Bye\r\n"
    t = 0.0
    for start in range(0, n, 64):
        batch = []
        for j in range(start, min(n, start + 64)):
            client, cport = SOURCES[j % ns], 1024 + (j // ns) % 64000
            c, s = rng.getrandbits(32), rng.getrandbits(32)
            # (direction, seq, ack, flags, payload) from the client's side (>) or the server's (<)
            steps = [(">", c, 0, SYN, b""), ("<", s, c + 1, SYN | ACK, b""), (">", c + 1, s + 1, ACK, b""),
                     ("<", s + 1, c + 1, PSH | ACK, banner), (">", c + 1, s + 1 + len(banner), PSH | ACK, ehlo)]
            s1, c1 = s + 1 + len(banner), c + 1 + len(ehlo)
            steps += [("<", s1, c1, PSH | ACK, ok), (">", c1, s1 + len(ok), PSH | ACK, quit_)]
            s2, c2 = s1 + len(ok), c1 + len(quit_)
            steps += [("<", s2, c2, PSH | ACK | FIN, bye), (">", c2, s2 + len(bye) + 1, FIN | ACK, b""),
                      ("<", s2 + len(bye) + 1, c2 + 1, ACK, b"")]
            batch.append((client, cport, steps))
        for k in range(10):
            for client, cport, steps in batch:
                d, seq, ack, flags, payload = steps[k]
                t += 0.00002
                if d == ">":
                    w.frame(t, LB, bmac, client, VIP, 6, tcp(cport, 25, seq, ack, flags, payload), 60)
                else:
                    w.frame(t, bmac, ROUTER, VIP, client, 6, tcp(25, cport, seq, ack, flags, payload), 64)
    return {"sessions": n}


# ---- the adversary's addresses -------------------------------------------------------------
M64 = (1 << 64) - 1
_C1, _C2, _C3 = 0x9E3779B97F4A7C15, 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53


def old_key_hash(k: bytes) -> int:
    """main's C tracker's table hash before SipHash (git log -p -S xorshift -- _conntrack.c), over
    its 37-byte key: the address length, then (address, port) of the endpoint that sorts lower,
    then the other's; words read little-endian (x86)."""
    h = _C1 ^ k[0]
    for i in range(1, 33, 8):
        h = ((h ^ int.from_bytes(k[i:i + 8], "little")) * _C2) & M64
        h ^= h >> 32
    h = ((h ^ int.from_bytes(k[33:37], "little")) * _C3) & M64
    return h ^ (h >> 29)


def _unxorshift(y: int, s: int) -> int:
    x = y
    for _ in range(64 // s + 1):
        x = y ^ (x >> s)
    return x & M64


def old_table_key(client: bytes, cport: int, server: bytes = VIP6, sport: int = 25) -> bytes:
    a, b = client + cport.to_bytes(2, "big"), server + sport.to_bytes(2, "big")
    lo, hi = (a, b) if a <= b else (b, a)
    return bytes([16]) + lo + hi


def xorshift_colliders(n: int, rng: random.Random, target: int = 0x5EED) -> list[tuple[bytes, int]]:
    """n distinct (IPv6 address in 2001:db8::/32, port) whose old_table_key all hash to `target`.

    The key is [16][VIP][25][client][port] (the client sorts after 2001:db8::25). The last round
    takes the client's bytes 14-15 and port (r, 32 bits); the one before its bytes 6-13 (w3). Both
    rounds are a xor, a multiply by an odd constant and a xorshift: all invertible. Choose the low
    half of the state between them at random; w3 and r follow."""
    inv2, inv3 = pow(_C2, -1, 1 << 64), pow(_C3, -1, 1 << 64)
    x = (_unxorshift(target, 29) * inv3) & M64  # the state after round 3, xor r
    out, seen = [], set()
    while len(out) < n:
        b45 = rng.randint(1, 0xFFFF).to_bytes(2, "big")
        prefix = bytes([16]) + VIP6 + (25).to_bytes(2, "big") + bytes.fromhex("20010db8") + b45
        h = _C1 ^ 16
        for i in range(1, 25, 8):
            h = ((h ^ int.from_bytes(prefix[i:i + 8], "little")) * _C2) & M64
            h ^= h >> 32
        hb = (x & ~0xFFFFFFFF) | rng.getrandbits(32)  # the state after round 3: its high half is x's
        g = _unxorshift(hb, 32)
        w3 = ((g * inv2) & M64) ^ h
        r = (x ^ hb) & 0xFFFFFFFF
        rb = r.to_bytes(4, "little")
        client = bytes.fromhex("20010db8") + b45 + w3.to_bytes(8, "little") + rb[:2]
        port = int.from_bytes(rb[2:], "big")
        if port == 0 or (client, port) in seen:
            continue
        k = old_table_key(client, port)
        assert k[19:35] == client and old_key_hash(k) == target
        seen.add((client, port))
        out.append((client, port))
    return out


def modulo_colliders(n: int) -> list[tuple[bytes, int]]:
    """Addresses 2^20 apart, one port: equal modulo every power of two up to 2^20."""
    base = int.from_bytes(bytes.fromhex("20010db8000100000000000000000000"), "big")
    return [((base + (i << 20)).to_bytes(16, "big"), 40000) for i in range(n)]


def random_sources(n: int, rng: random.Random) -> list[tuple[bytes, int]]:
    out: dict[tuple[bytes, int], None] = {}
    while len(out) < n:
        out[(bytes.fromhex("20010db8") + rng.getrandbits(96).to_bytes(12, "big"), rng.randint(1024, 65535))] = None
    return list(out)


def syn6(w: Writer, srcs: list[tuple[bytes, int]], rng: random.Random) -> dict:
    for i, (client, port) in enumerate(srcs):
        w.frame6(i * 0.00001, ROUTER, LB, client, VIP6, tcp(port, 25, rng.getrandbits(32), 0, SYN, win=1024), 57)
    return {"syns": len(srcs)}


SHAPES = ("relay", "syn", "sessions", "hash-xorshift", "hash-modulo", "hash-random", "seqjump")
FORMATS = ("pcap", "pcap-ns", "sll", "pcapng", "pcap.gz", "pcapng.gz")


def file_name(shape: str, count: int, fmt: str) -> str:
    ext = {"pcap": "pcap", "pcap-ns": "ns.pcap", "sll": "sll.pcap", "pcapng": "pcapng", "pcap.gz": "pcap.gz", "pcapng.gz": "pcapng.gz"}[fmt]
    return f"{shape}-{count}.{ext}"


def _gzip(src: Path, dst: Path) -> None:
    with open(src, "rb") as f, open(dst, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as z:
        shutil.copyfileobj(f, z, 1 << 20)


def generate(path: Path, shape: str | int, count: int | None = None, fmt: str = "pcap", seed: int = 7) -> dict:
    """Write `path` (its directory holds the intermediate pcap a derived format needs) and return
    what is in it: {"packets": n, ...}, also written beside it as PATH.json.
    `generate(path, packets, seed=s)` (a number for the shape) is the relay, as before issue 14's
    shapes (tests/test_parallel_crew.py makes its big capture that way)."""
    if isinstance(shape, int):
        shape, count = "relay", shape
    meta_path = path.with_name(path.name + ".json")
    if fmt in ("pcapng", "pcap.gz", "pcapng.gz"):
        base = path.with_name(file_name(shape, count, "pcapng" if fmt == "pcapng.gz" else "pcap"))
        if not base.exists():
            generate(base, shape, count, "pcapng" if fmt == "pcapng.gz" else "pcap", seed)
        meta = json.loads(base.with_name(base.name + ".json").read_text())
        if fmt == "pcapng":
            subprocess.run(["editcap", "-F", "pcapng", str(base), str(path)], check=True)
        else:
            _gzip(base, path)
    else:
        rng = random.Random(seed)
        w = Writer(path, LINKTYPE_LINUX_SLL if fmt == "sll" else LINKTYPE_ETHERNET, nanos=fmt == "pcap-ns")
        if shape == "relay":
            meta = relay(w, count, rng)
        elif shape == "seqjump":
            meta = relay(w, count, rng, jump=True)
        elif shape == "syn":
            meta = synflood(w, count, rng)
        elif shape == "sessions":
            meta = sessions(w, count, rng)
        elif shape == "hash-xorshift":
            meta = syn6(w, xorshift_colliders(count, rng), rng)
        elif shape == "hash-modulo":
            meta = syn6(w, modulo_colliders(count), rng)
        elif shape == "hash-random":
            meta = syn6(w, random_sources(count, rng), rng)
        else:
            raise SystemExit(f"unknown shape {shape!r}: one of {', '.join(SHAPES)}")
        w.close()
        meta["packets"] = w.n
    meta.update(shape=shape, count=count, format=fmt, seed=seed, bytes=path.stat().st_size)
    meta_path.write_text(json.dumps(meta))
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--shape", choices=SHAPES, default="relay")
    ap.add_argument("--count", "--packets", type=int, default=1_000_000,
                    help="packets (relay, seqjump), SYNs (syn, hash-*) or sessions (sessions)")
    ap.add_argument("--format", choices=FORMATS, default="pcap")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    m = generate(a.out, a.shape, a.count, a.format, a.seed)
    print(f"{a.out}: {m['packets']} packets, {m['bytes'] / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
