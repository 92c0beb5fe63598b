"""Raw pcap writer for the flood tests and their profiling: SYN floods, scans, retrying clients and
short complete SMTP sessions, a million packets in seconds (no scapy: struct only).

Why not captures/build.py: that builder makes every frame with scapy (~50 us each); a flood test
needs thousands of attempts and a profile needs millions. Addresses are documentation ranges only.
"""

from __future__ import annotations

import random
import struct
import sys

VIP = "192.0.2.25"
CLIENT_MAC = b"\x02\x00\x00\x00\x00\x02"
LB_MAC = b"\x02\x00\x00\x00\x00\x01"
SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def _ip4(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


class Pcap:
    """Ethernet/IPv4/TCP frames in a classic pcap (microsecond stamps), in time order: frames are
    written as they come while their stamps rise, and sorted on close when shapes were mixed."""

    def __init__(self, path):
        self.f = open(path, "wb")
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        self.ipid = 0
        self.held: list = []
        self.last = float("-inf")
        self.mixed = False

    def tcp(self, ts: float, src: str, sport: int, dst: str, dport: int, flags: int, seq: int = 0, ack: int = 0,
            payload: bytes = b"", to_server: bool = True) -> None:
        s, d = _ip4(src), _ip4(dst)
        tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 64240, 0, 0)
        pseudo = s + d + struct.pack("!BBH", 0, 6, len(tcp) + len(payload))
        tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp + payload)) + tcp[18:]
        self.ipid = (self.ipid + 1) & 0xFFFF
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), self.ipid, 0, 64, 6, 0, s, d)
        ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
        eth = (LB_MAC + CLIENT_MAC) if to_server else (CLIENT_MAC + LB_MAC)
        fr = eth + b"\x08\x00" + ip + tcp + payload
        us = int(round(ts * 1e6))
        self.mixed = self.mixed or us < self.last
        self.last = max(self.last, us)
        self.held.append((us, len(self.held), fr))
        if len(self.held) >= 65536 and not self.mixed:
            self._flush()

    def _flush(self) -> None:
        if self.mixed:
            self.held.sort()
        for us, _, fr in self.held:
            self.f.write(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(fr), len(fr)) + fr)
        self.held = []

    def close(self) -> None:
        self._flush()
        self.f.close()


def source(rng: random.Random, n_sources: int) -> str:
    i = rng.randrange(n_sources)
    return f"203.0.113.{i % 256}" if i < 256 else f"198.51.100.{i % 256}"


def flood(p: Pcap, rng: random.Random, n: int, start: float, rate: float, n_sources: int = 512, dst: str = VIP) -> None:
    """`n` lone SYNs (never retransmitted, never answered) at `rate` per second."""
    for i in range(n):
        p.tcp(start + i / rate, source(rng, n_sources), rng.randrange(1024, 65535), dst, 25, SYN, rng.getrandbits(32))


def retrying(p: Pcap, rng: random.Random, n: int, start: float, rate: float, client: str = "198.51.100.7") -> None:
    """`n` real clients whose SYNs go unanswered: each retransmits after 1 s and 3 s (RFC 6298)."""
    frames = []
    for i in range(n):
        t, port, isn = start + i / rate, 20000 + i % 40000, rng.getrandbits(32)
        frames += [(t + dt, client, port, isn) for dt in (0.0, 1.0, 3.0)]
    for t, c, port, isn in sorted(frames):
        p.tcp(t, c, port, VIP, 25, SYN, isn)


def sessions(p: Pcap, rng: random.Random, n: int, start: float, rate: float, n_clients: int = 64) -> None:
    """`n` short complete SMTP sessions (handshake, banner, QUIT, 221, FIN both ways), DSR-style:
    the replies come from the VIP. Each lasts 4 ms; they do not overlap when rate <= 250/s."""
    for i in range(n):
        t = start + i / rate
        c, port = source(rng, n_clients), 1024 + (i * 7) % 60000
        a, b = rng.getrandbits(32), rng.getrandbits(32)
        banner = b"220 mx1.example.net ESMTP\r\n"
        p.tcp(t, c, port, VIP, 25, SYN, a)
        p.tcp(t + 0.0005, VIP, 25, c, port, SYN | ACK, b, a + 1, to_server=False)
        p.tcp(t + 0.001, c, port, VIP, 25, ACK, a + 1, b + 1)
        p.tcp(t + 0.0015, VIP, 25, c, port, PSH | ACK, b + 1, a + 1, banner, to_server=False)
        p.tcp(t + 0.002, c, port, VIP, 25, PSH | ACK, a + 1, b + 1 + len(banner), b"QUIT\r\n")
        p.tcp(t + 0.0025, VIP, 25, c, port, PSH | ACK, b + 1 + len(banner), a + 7, b"221 bye\r\n", to_server=False)
        p.tcp(t + 0.003, c, port, VIP, 25, FIN | ACK, a + 7, b + 10 + len(banner))
        p.tcp(t + 0.0035, VIP, 25, c, port, FIN | ACK, b + 10 + len(banner), a + 8, to_server=False)
        p.tcp(t + 0.004, c, port, VIP, 25, ACK, a + 8, b + 11 + len(banner))


def scan(p: Pcap, rng: random.Random, targets: int, start: float, src: str = "203.0.113.66") -> None:
    """One source SYNs port 25 of `targets` addresses (an address scan), once each."""
    for i in range(targets):
        p.tcp(start + i * 0.01, src, 40000 + i, f"192.0.2.{100 + i}", 25, SYN, rng.getrandbits(32))


def mixed(path, seed: int, *, start: float = 1_700_000_000.0, n_sessions: int = 40, session_rate: float = 20.0,
          n_flood: int = 3000, flood_rate: float = 3000.0, n_sources: int = 60, n_retrying: int = 5,
          retry_at: float = 0.7, n_scan: int = 30, scan_at: float = 1.2):
    """A flood with complete sessions, clients retrying their SYNs and an address scan in the middle
    of it (records between rows, for the lone-SYN lane's tests); `path` returned."""
    p, rng = Pcap(path), random.Random(seed)
    sessions(p, rng, n_sessions, start, session_rate)
    flood(p, rng, n_flood, start + 0.5, flood_rate, n_sources=n_sources)
    retrying(p, rng, n_retrying, start + retry_at, 10.0)
    scan(p, rng, n_scan, start + scan_at)
    p.close()
    return path


if __name__ == "__main__":  # python3 tests/floodgen.py flood|sessions N OUT
    shape, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    w, r = Pcap(out), random.Random(1)
    if shape == "flood":
        flood(w, r, n, 1700000000.0, 100000.0)
    elif shape == "sessions":
        sessions(w, r, n, 1700000000.0, 2000.0, n_clients=512)
    else:
        raise SystemExit(f"unknown shape {shape!r}: flood or sessions")
    w.close()
