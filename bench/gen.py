#!/usr/bin/env python3
"""Generate, deterministically, a realistic mail-relay capture of N packets for the benchmark.

What is in it (server-LAN vantage of a DSR site): SMTP sessions to the VIP 192.0.2.25:25, each
frame from the router to the LB and the LB's forwarded copy to a back-end, the back-ends' replies
from the VIP; banner, EHLO, STARTTLS and TLS-sized data (1-40 records of up to 1,448 bytes); about
2% of sessions broken (SYNs to a back-end without the VIP, retransmitted); ARP for the VIP every
few thousand packets; and about 60% unrelated traffic (HTTPS bulk and DNS) that the BPF filter
drops. Built from byte templates with struct (scapy would take minutes per million packets).

Usage: python bench/gen.py OUT.pcap --packets 1000000 [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import struct
from pathlib import Path

ROUTER, LB = bytes.fromhex("020000000001"), bytes.fromhex("02000000000a")
BACKENDS = [bytes.fromhex("020000000011"), bytes.fromhex("020000000012"), bytes.fromhex("020000000013")]
VIP = bytes([192, 0, 2, 25])
T0 = 1_700_000_000


def ip4(n: int) -> bytes:
    return struct.pack(">I", n)


class Writer:
    def __init__(self, path: Path):
        self.f = open(path, "wb", buffering=1 << 20)
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self.n = 0
        self.ipid = 0

    def frame(self, t: float, src_mac: bytes, dst_mac: bytes, src: bytes, dst: bytes, proto: int, l4: bytes, ttl: int = 64,
              same_ip_id: bool = False):
        if not same_ip_id:  # the LB's forwarded copy is the same IP packet: same IP ID
            self.ipid = (self.ipid + 1) & 0xFFFF
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), self.ipid, 0x4000, ttl, proto, 0, src, dst)
        data = dst_mac + src_mac + b"\x08\x00" + ip + l4
        sec = int(t)
        usec = int((t - sec) * 1_000_000)
        self.f.write(struct.pack("<IIII", T0 + sec, usec, len(data), len(data)))
        self.f.write(data)
        self.n += 1

    def arp(self, t: float, op: int, sha: bytes, spa: bytes, tha: bytes, tpa: bytes, dst: bytes):
        body = struct.pack(">HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sha, spa, tha, tpa)
        data = dst + sha + b"\x08\x06" + body + bytes(18)
        sec = int(t)
        self.f.write(struct.pack("<IIII", T0 + sec, int((t - sec) * 1e6), len(data), len(data)))
        self.f.write(data)
        self.n += 1


def tcp(sport, dport, seq, ack, flags, payload=b"", win=502):
    return struct.pack(">HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 0x50, flags, win, 0, 0) + payload


SYN, ACK, PSH, FIN, RST = 0x02, 0x10, 0x08, 0x01, 0x04


def smtp_session(w: Writer, rng: random.Random, t: float, client: bytes, cport: int, be: int, broken: bool) -> float:
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
    for d, data in steps:
        t += 0.0005
        if d == "<":
            s2c(t, sseq, cseq, PSH | ACK, data)
            sseq += len(data)
            t += 0.02
            c2s(t, cseq, sseq, ACK)
        else:
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


def generate(path: Path, packets: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    w = Writer(path)
    t = 0.0
    cport = 20000
    sessions = 0
    while w.n < packets:
        if sessions % 50 == 0:
            w.arp(t, 1, ROUTER, bytes([192, 0, 2, 1]), bytes(6), VIP, b"\xff" * 6)
            w.arp(t + 0.0001, 2, LB, VIP, ROUTER, bytes([192, 0, 2, 1]), ROUTER)
        client = ip4(0xC6336400 + rng.randint(10, 250))  # 198.51.100.x
        before = w.n
        broken = rng.random() < 0.02
        t = smtp_session(w, rng, t, client, cport, 0 if rng.random() < 0.5 else 1, broken and True)
        smtp = w.n - before
        k = int(smtp * 1.5)  # about 60% of all packets unrelated
        noise(w, rng, t, k)
        t += k * 0.0001
        t += 0.002
        cport = cport + 1 if cport < 65000 else 20000
        sessions += 1
    w.f.close()
    return w.n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    n = generate(a.out, a.packets, a.seed)
    print(f"{a.out}: {n} packets, {a.out.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
