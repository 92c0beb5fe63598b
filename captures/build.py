#!/usr/bin/env python3
"""Build the sample captures in this folder, deterministically, with scapy.

Each sample is a small DSR site seen from one vantage point, with real TCP behaviour: random
(seeded) ISNs, SYN retransmissions on Linux's 1 s / 2 s / 4 s back-off, RTTs of a routed client
(~20 ms) and a LAN (~0.2 ms), IP IDs counting per host, TTLs decremented by the router, and a full
SMTP dialogue (banner naming the back-end, EHLO, STARTTLS, a TLS handshake's worth of bytes, FIN).
MANIFEST.toml says what each file shows and which findings dsrdiag must report; the tests read it.

Usage: python captures/build.py [--out DIR] [--seed N]
Addresses are documentation ranges only: clients 198.51.100.0/24 and 2001:db8:51::/64, the
server LAN 192.0.2.0/24 and 2001:db8:25::/64.
"""

from __future__ import annotations

import argparse
import gzip
import random
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.utils import PcapNgWriter, PcapWriter

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
ROUTER = "02:00:00:00:00:01"
LB = "02:00:00:00:00:0a"
CLIENT_MAC = "02:00:00:00:01:07"
BROADCAST = "ff:ff:ff:ff:ff:ff"
VIP4, VIP6 = "192.0.2.25", "2001:db8:25::25"
LB_IP4 = "192.0.2.10"
ROUTER_IP4, ROUTER_IP6 = "192.0.2.1", "2001:db8:25::1"
CLIENTS4 = ["198.51.100.7", "198.51.100.8", "198.51.100.9"]
CLIENTS6 = ["2001:db8:51::7", "2001:db8:51::8"]


@dataclass
class Backend:
    name: str
    ip4: str
    ip6: str
    mac: str


BE1 = Backend("mx1.example.net", "192.0.2.11", "2001:db8:25::11", "02:00:00:00:00:11")
BE2 = Backend("mx2.example.net", "192.0.2.12", "2001:db8:25::12", "02:00:00:00:00:12")

def _tls_record(size: int) -> bytes:
    body = random.Random(size).randbytes(size - 5)
    return b"\x17\x03\x03" + (size - 5).to_bytes(2, "big") + body


# SMTP dialogue: (direction, payload); '>' client to server, '<' server to client
def smtp_dialogue(host: str, tls: bool = True, xclient: str | None = None) -> list[tuple[str, bytes]]:
    steps = [
        ("<", f"220 {host} ESMTP Postfix\r\n".encode()),
        (">", b"EHLO client.example.org\r\n"),
        ("<", (f"250-{host}\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
               + ("250-XCLIENT ADDR NAME HELO\r\n" if xclient else "")
               + "250-STARTTLS\r\n250 8BITMIME\r\n").encode()),
    ]
    if xclient:
        steps += [(">", f"XCLIENT {xclient}\r\n".encode()), ("<", f"220 {host} ESMTP Postfix\r\n".encode()),
                  (">", b"EHLO client.example.org\r\n"), ("<", f"250-{host}\r\n250 STARTTLS\r\n".encode())]
    if tls:
        # After STARTTLS: TLS records of handshake sizes. The bodies are seeded random bytes in
        # application-data records (a real handshake needs a certificate library; dsrdiag stops
        # parsing at STARTTLS, and Wireshark shows these as encrypted Application Data).
        steps += [
            (">", b"STARTTLS\r\n"),
            ("<", b"220 2.0.0 Ready to start TLS\r\n"),
            (">", _tls_record(512)),
            ("<", _tls_record(1360)),
            (">", _tls_record(80)),
            ("<", _tls_record(80)),
        ]
    else:
        steps += [(">", b"QUIT\r\n"), ("<", b"221 2.0.0 Bye\r\n")]
    return steps


@dataclass
class Seg:
    """One TCP segment on the wire, before it is rendered for a vantage point."""

    t: float
    d: str  # '>' client->server, '<' server->client
    flags: str
    seq: int
    ack: int
    payload: bytes = b""
    src: str | None = None  # override the server's source address (wrong_source)


@dataclass
class Conn:
    client: str
    cport: int
    vip: str
    backend: Backend
    half: float = 0.010
    """One-way delay between the client and the server LAN."""
    segs: list[Seg] = field(default_factory=list)


def tcp_session(rng: random.Random, client: str, cport: int, vip: str, be: Backend, t: float, *,
                rtt: float = 0.020, dialogue=None, answer: bool = True, wrong_source: str | None = None,
                syn_tries: int = 4, client_rst_on_wrong: bool = True, proxy: bytes | None = None) -> Conn:
    """A client's connection to the VIP served by `be`, as the segments each side sends.

    Seg.t is the time at the sender; a packet arrives at the other side rtt/2 later. Each side
    answers what it received after a small processing delay, so every vantage sees causal order.
    """
    c = Conn(client, cport, vip, be, half=rtt / 2)
    half = c.half
    cisn, sisn = rng.getrandbits(32), rng.getrandbits(32)
    if not answer:
        for i in range(syn_tries):  # Linux: RTO 1 s, doubling
            c.segs.append(Seg(t + (2 ** i - 1), ">", "S", cisn, 0))
        return c
    if wrong_source:
        # SYN-ACK from the real address: the client's stack resets it and retries its SYN
        for i in range(syn_tries):
            ts = t + (2 ** i - 1)
            c.segs.append(Seg(ts, ">", "S", cisn, 0))
            c.segs.append(Seg(ts + half + 0.0002, "<", "SA", sisn, cisn + 1, src=wrong_source))
            if client_rst_on_wrong:
                c.segs.append(Seg(ts + 2 * half + 0.0003, ">", "R", cisn + 1, 0, src=wrong_source))
        return c
    cli = t  # the client's clock: when it last sent
    c.segs.append(Seg(cli, ">", "S", cisn, 0))
    srv = cli + half + 0.0002
    c.segs.append(Seg(srv, "<", "SA", sisn, cisn + 1))
    cli = srv + half
    c.segs.append(Seg(cli, ">", "A", cisn + 1, sisn + 1))
    srv = cli + half
    cseq, sseq = cisn + 1, sisn + 1
    if proxy:
        cli += 0.0001
        c.segs.append(Seg(cli, ">", "PA", cseq, sseq, proxy))
        cseq += len(proxy)
        srv = cli + half
    first = True
    for d, data in dialogue or smtp_dialogue(be.name):
        if d == "<":
            srv += 0.0015 if first else 0.0004
            first = False
            c.segs.append(Seg(srv, "<", "PA", sseq, cseq, data))
            sseq += len(data)
            cli = srv + half  # the client receives it and ACKs at once
            c.segs.append(Seg(cli, ">", "A", cseq, sseq))
        else:
            cli += 0.0002
            c.segs.append(Seg(cli, ">", "PA", cseq, sseq, data))
            cseq += len(data)
            srv = cli + half
    # the client closes, the server closes
    cli += 0.001
    c.segs.append(Seg(cli, ">", "FA", cseq, sseq))
    srv = max(srv, cli + half) + 0.0002
    c.segs.append(Seg(srv, "<", "FA", sseq, cseq + 1))
    cli = srv + half
    c.segs.append(Seg(cli, ">", "A", cseq + 1, sseq + 1))
    return c


class Renderer:
    """Turn segments into frames as one vantage point captures them."""

    def __init__(self, vantage: str, lb_forward: bool = True, vlan: int | None = None, ipid_seed: int = 1):
        self.vantage = vantage  # 'lan' | 'client' | 'backend' | 'lb'
        self.lb_forward = lb_forward
        self.vlan = vlan
        self.ipid: dict[str, int] = {}
        self.ipid_seed = ipid_seed

    def _id(self, host: str) -> int:
        n = self.ipid.get(host, (zlib.crc32(host.encode()) ^ self.ipid_seed) & 0x7FFF)
        self.ipid[host] = (n + 1) & 0xFFFF
        return n

    def _eth(self, src: str, dst: str, l3, t: float):
        e = Ether(src=src, dst=dst)
        if self.vlan is not None:
            e = e / Dot1Q(vlan=self.vlan)
        p = e / l3
        p.time = t
        return p

    def frames(self, c: Conn, deliver_to: str | None = None):
        """deliver_to: the MAC the LB forwards to (default the back-end's; arp_leak sends to it directly)."""
        out = []
        v6 = ":" in c.client
        for s in c.segs:
            opts = [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)] if "S" in s.flags else []
            win = 64240 if "S" in s.flags else 502
            if s.d == ">":
                src, dst, sport, dport = c.client, (s.src or c.vip), c.cport, 25
                host = c.client
            else:
                src, dst, sport, dport = (s.src or c.vip), c.client, 25, c.cport
                host = c.backend.name
            tcp = TCP(sport=sport, dport=dport, flags=s.flags, seq=s.seq & 0xFFFFFFFF, ack=s.ack & 0xFFFFFFFF,
                      window=win, options=opts) / s.payload

            def l3(ttl):
                if v6:
                    return IPv6(src=src, dst=dst, hlim=ttl) / tcp
                return IP(src=src, dst=dst, ttl=ttl, id=self._id(host), flags="DF") / tcp

            near = s.t + c.half - 0.00005  # a client packet reaching the server LAN
            if s.d == ">":
                if self.vantage == "client":
                    out.append(self._eth(CLIENT_MAC, ROUTER, l3(64), s.t))
                elif self.vantage in ("lan", "lb"):
                    pkt = l3(63)
                    if deliver_to and deliver_to != LB:
                        out.append(self._eth(ROUTER, deliver_to, pkt, near))  # bypasses the LB
                    else:
                        out.append(self._eth(ROUTER, LB, pkt, near))
                        if self.lb_forward:
                            out.append(self._eth(LB, c.backend.mac, pkt.copy(), near + 0.00003))
                elif self.vantage == "backend":
                    out.append(self._eth(LB if not deliver_to else ROUTER, c.backend.mac, l3(63), near + 0.00003))
            else:
                if self.vantage == "client":
                    out.append(self._eth(ROUTER, CLIENT_MAC, l3(63), s.t + c.half))
                elif self.vantage in ("lan", "backend"):
                    out.append(self._eth(c.backend.mac, ROUTER, l3(64), s.t))
                # the LB's own interface does not see DSR replies
        return out


def arp_reply(t, ip, mac, asker_ip=ROUTER_IP4, asker_mac=ROUTER):
    req = Ether(src=asker_mac, dst=BROADCAST) / ARP(op=1, hwsrc=asker_mac, psrc=asker_ip, pdst=ip)
    req.time = t
    rep = Ether(src=mac, dst=asker_mac) / ARP(op=2, hwsrc=mac, psrc=ip, hwdst=asker_mac, pdst=asker_ip)
    rep.time = t + 0.0002
    return [req, rep]


def nd_advert(t, ip, mac, asker_ip=ROUTER_IP6, asker_mac=ROUTER):
    ns = (Ether(src=asker_mac, dst="33:33:ff:00:00:25") / IPv6(src=asker_ip, dst="ff02::1:ff00:25", hlim=255)
          / ICMPv6ND_NS(tgt=ip) / ICMPv6NDOptSrcLLAddr(lladdr=asker_mac))
    ns.time = t
    na = (Ether(src=mac, dst=asker_mac) / IPv6(src=ip, dst=asker_ip, hlim=255)
          / ICMPv6ND_NA(tgt=ip, R=0, S=1, O=1) / ICMPv6NDOptDstLLAddr(lladdr=mac))
    na.time = t + 0.0002
    return [ns, na]


# ---- the samples ------------------------------------------------------------------------------

def healthy(rng, vantage="lan"):
    frames = arp_reply(T0, VIP4, LB) if vantage == "lan" else []
    r = Renderer(vantage)
    t = T0 + 0.5
    for i, (client, be) in enumerate([(CLIENTS4[0], BE1), (CLIENTS4[1], BE2), (CLIENTS4[0], BE2), (CLIENTS4[2], BE1)]):
        frames += r.frames(tcp_session(rng, client, 40000 + i * 7, VIP4, be, t))
        t += 0.8
    return frames


def wrong_source(rng):
    r = Renderer("lan")
    frames = arp_reply(T0, VIP4, LB)
    frames += r.frames(tcp_session(rng, CLIENTS4[0], 41000, VIP4, BE1, T0 + 0.5))
    frames += r.frames(tcp_session(rng, CLIENTS4[1], 41001, VIP4, BE2, T0 + 1.0, wrong_source=BE2.ip4, syn_tries=3))
    frames += r.frames(tcp_session(rng, CLIENTS4[2], 41002, VIP4, BE2, T0 + 1.5, wrong_source=BE2.ip4, syn_tries=3))
    return frames


def arp_leak(rng):
    r = Renderer("lan")
    frames = arp_reply(T0, VIP4, LB)
    frames += r.frames(tcp_session(rng, CLIENTS4[0], 42000, VIP4, BE1, T0 + 0.5))
    frames += r.frames(tcp_session(rng, CLIENTS4[1], 42001, VIP4, BE2, T0 + 1.0))
    # be2 answers the router's next ARP for the VIP too, and wins the race
    frames += arp_reply(T0 + 30.0, VIP4, LB)
    leak = arp_reply(T0 + 30.0, VIP4, BE2.mac)[1]
    leak.time = T0 + 30.0001
    frames.append(leak)
    frames += r.frames(tcp_session(rng, CLIENTS4[2], 42002, VIP4, BE2, T0 + 31.0), deliver_to=BE2.mac)
    return frames


def arp_leak6(rng):
    r = Renderer("lan")
    frames = nd_advert(T0, VIP6, LB)
    frames += r.frames(tcp_session(rng, CLIENTS6[0], 43000, VIP6, BE1, T0 + 0.5))
    leak = nd_advert(T0 + 20.0, VIP6, BE2.mac)[1]
    frames.append(leak)
    frames += r.frames(tcp_session(rng, CLIENTS6[1], 43001, VIP6, BE2, T0 + 21.0), deliver_to=BE2.mac)
    return frames


def asym_bypass(rng):
    """At the firewall (inside leg, 802.1Q VLAN 100): requests pass, be2's replies go around."""
    r = Renderer("client", vlan=100)
    frames = r.frames(tcp_session(rng, CLIENTS4[0], 44000, VIP4, BE1, T0 + 0.5))
    conn = tcp_session(rng, CLIENTS4[1], 44001, VIP4, BE2, T0 + 1.5, dialogue=smtp_dialogue(BE2.name, tls=False))
    # the firewall sees only the client's half: drop the server's segments from this vantage
    conn.segs = [s for s in conn.segs if s.d == ">"][:4]
    frames += r.frames(conn)
    return frames


def vip_missing(rng):
    r = Renderer("lan")
    frames = arp_reply(T0, VIP4, LB)
    frames += r.frames(tcp_session(rng, CLIENTS4[0], 45000, VIP4, BE1, T0 + 0.5))
    frames += r.frames(tcp_session(rng, CLIENTS4[1], 45001, VIP4, BE2, T0 + 1.0, answer=False))
    frames += r.frames(tcp_session(rng, CLIENTS4[2], 45002, VIP4, BE1, T0 + 1.5))
    frames += r.frames(tcp_session(rng, CLIENTS4[0], 45003, VIP4, BE2, T0 + 2.0, answer=False, syn_tries=3))
    return frames


def syn_unanswered(rng):
    r = Renderer("client")
    return r.frames(tcp_session(rng, CLIENTS4[0], 46000, VIP4, BE1, T0, answer=False, syn_tries=4))


def _snat_leg(rng, r: Renderer, t: float, sport: int, proxy: bytes | None = None, xclient: str | None = None,
              dialogue=None):
    """The LB's connection to a back-end's own address (full proxy), as a back-end sees it."""
    be = BE1
    c = tcp_session(rng, LB_IP4, sport, be.ip4, be, t, rtt=0.0004, proxy=proxy,
                    dialogue=dialogue or smtp_dialogue(be.name, tls=False, xclient=xclient))
    out = []
    for f in r.frames(c):
        if f[Ether].dst == be.mac:
            f[Ether].src = LB  # at the back-end: from the LB's MAC
        out.append(f)
    return out


def snat(rng):
    r = Renderer("backend")
    frames = arp_reply(T0, LB_IP4, LB, asker_ip=BE1.ip4, asker_mac=BE1.mac)
    frames += arp_reply(T0 + 0.1, VIP4, LB)
    frames += _snat_leg(rng, r, T0 + 0.5, 50001)
    frames += _snat_leg(rng, r, T0 + 1.5, 50002)
    return frames


def snat_proxy(rng):
    r = Renderer("backend")
    frames = arp_reply(T0, LB_IP4, LB, asker_ip=BE1.ip4, asker_mac=BE1.mac)
    frames += arp_reply(T0 + 0.1, VIP4, LB)
    frames += _snat_leg(rng, r, T0 + 0.5, 50011, proxy=b"PROXY TCP4 198.51.100.7 192.0.2.25 40211 25\r\n")
    frames += _snat_leg(rng, r, T0 + 1.5, 50012, xclient="ADDR=198.51.100.8 NAME=[UNAVAILABLE]")
    return frames


# ---- path sets: the same sessions captured at several vantage points -------------------------
#
# Site: client (198.51.100.x) -> its router -> [fw-out] firewall [fw-in] -> server LAN with the LB
# and the back-ends. Every vantage has its own clock (CLOCK: what that machine's clock is ahead of
# the client's), so the correlator has offsets to find. A packet passes the vantages in path order,
# at positions along the one-way delay `half`; a fault is a packet that stops at a vantage.

OUTSIDE_RTR = "02:00:00:00:00:02"
FW_OUT, FW_IN = "02:00:00:00:0f:01", "02:00:00:00:0f:02"
BYPASS = "02:00:00:00:00:fe"
CLOCK = {"client": 0.0, "fw-out": 0.0123, "fw-in": 0.0123, "lb": 0.350, "be1": -1.250, "be2": 0.0421}
PATH_VANTAGES = ("client", "fw-out", "fw-in", "lb", "be1", "be2")


def _bev(be: Backend) -> str:
    return "be1" if be is BE1 else "be2"


def path_frames(c: Conn, out: dict[str, list], *, mode: str = "dsr", stop=None, bypass: bool = False,
                ipid: dict | None = None) -> None:
    """Append each segment of `c` to the vantages it passes, as each captures it.

    mode: dsr (LB rewrites the MAC only; replies skip it), tunnel (LB sends the client's packet
    inside IP-in-IP to the back-end's own address; replies skip it), nat (LB rewrites the destination to the
    back-end's address and the source of replies back to the VIP), proxy-front (the LB terminates
    the client's connection: it answers as the VIP), proxy-back (the LB's own connection to a
    back-end's address). stop(seg, vantage) -> True: the packet never reaches that vantage (a drop
    just before it). bypass: replies leave the back-end towards another router and reach the
    client without passing the firewall.
    """
    ipid = {} if ipid is None else ipid
    h = c.half
    be = c.backend
    bev = _bev(be)
    v6 = ":" in c.client
    for s in c.segs:
        opts = [("MSS", 1460), ("SAckOK", b""), ("WScale", 7)] if "S" in s.flags else []
        win = 64240 if "S" in s.flags else 502
        sender = c.client if s.d == ">" else be.name
        n = ipid.get(sender, zlib.crc32(sender.encode()) & 0x7FFF)
        ipid[sender] = (n + 1) & 0xFFFF
        if s.d == ">":
            sport, dport, src, dst = c.cport, 25, c.client, c.vip
        else:
            sport, dport, src, dst = 25, c.cport, (s.src or c.vip), c.client

        def l3(src, dst, ttl):
            tcp = TCP(sport=sport, dport=dport, flags=s.flags, seq=s.seq & 0xFFFFFFFF, ack=s.ack & 0xFFFFFFFF,
                      window=win, options=opts) / s.payload
            if v6:
                return IPv6(src=src, dst=dst, hlim=ttl) / tcp
            return IP(src=src, dst=dst, ttl=ttl, id=n, flags="DF") / tcp

        if mode == "proxy-back":  # LB <-> back-end on the server LAN
            if s.d == ">":
                hops = [("lb", 0.0, LB, be.mac, src, dst, 64), (bev, 0.00003, LB, be.mac, src, dst, 64)]
            else:
                hops = [(bev, 0.0, be.mac, LB, src, dst, 64), ("lb", 0.00003, be.mac, LB, src, dst, 64)]
        elif s.d == ">":
            to_be = be.ip6 if v6 else be.ip4
            hops = [("client", 0.0, CLIENT_MAC, ROUTER, src, dst, 64),
                    ("fw-out", 0.5 * h, OUTSIDE_RTR, FW_OUT, src, dst, 62),
                    ("fw-in", 0.5 * h + 0.00004, FW_IN, LB, src, dst, 61),
                    ("lb", h - 0.00006, FW_IN, LB, src, dst, 61)]
            if mode in ("dsr", "nat", "tunnel"):
                fdst = to_be if mode == "nat" else dst
                hops += [("lb", h - 0.00003, LB, be.mac, src, fdst, 61), (bev, h, LB, be.mac, src, fdst, 61)]
        else:
            if mode == "proxy-front":
                hops = [("lb", 0.0, LB, FW_IN, src, dst, 64)]
            elif mode == "nat":
                real = be.ip6 if v6 else be.ip4
                hops = [(bev, 0.0, be.mac, LB, real, dst, 64), ("lb", 0.00003, be.mac, LB, real, dst, 64),
                        ("lb", 0.00006, LB, FW_IN, src, dst, 64)]
            elif bypass:
                hops = [(bev, 0.0, be.mac, BYPASS, src, dst, 64)]
            else:
                hops = [(bev, 0.0, be.mac, FW_IN, src, dst, 64)]
            if not bypass:
                hops += [("fw-in", 0.5 * h - 0.00004, None, FW_IN, src, dst, 64),
                         ("fw-out", 0.5 * h, FW_OUT, OUTSIDE_RTR, src, dst, 63)]
            hops += [("client", h, ROUTER, CLIENT_MAC, src, dst, 62)]
        for v, dt, smac, dmac, a, b, ttl in hops:
            if stop and stop(s, v):
                break
            if v == "fw-in" and smac is None:  # a reply arrives at the firewall from its last L2 hop
                smac = LB if mode in ("nat", "proxy-front") else be.mac
            pkt = l3(a, b, ttl)
            if mode == "tunnel" and s.d == ">" and smac == LB:  # LVS-TUN: the client's packet inside IP-in-IP
                pkt = IP(src=LB_IP4, dst=be.ip4, ttl=64, id=n, flags="DF") / pkt
            f = Ether(src=smac, dst=dmac) / pkt
            f.time = s.t + dt + CLOCK[v]
            out.setdefault(v, []).append(f)


def _sessions(rng, n: int, t: float = T0 + 0.5, port: int = 47000, **kw) -> list[Conn]:
    plan = [(CLIENTS4[0], BE1), (CLIENTS4[1], BE2), (CLIENTS4[0], BE2), (CLIENTS4[2], BE1)][:n]
    return [tcp_session(rng, cl, port + i * 7, VIP4, be, t + i * 0.8, **kw) for i, (cl, be) in enumerate(plan)]


def _later(rng, out: dict) -> None:
    """Healthy sessions after a fault: every capture was still running when the fault happened,
    which is what lets the correlator call a packet's absence a loss."""
    for c in _sessions(rng, 2, t=T0 + 9.0, port=47900):
        path_frames(c, out)


def path_healthy(rng):
    out: dict[str, list] = {"lb": arp_reply(T0 + CLOCK["lb"], VIP4, LB, asker_ip="192.0.2.1", asker_mac=FW_IN)}
    for c in _sessions(rng, 4):
        path_frames(c, out)
    return out


def path_fw_drop_syn(rng):
    """The firewall's policy drops 198.51.100.8's SYNs: seen at fw-out, never at fw-in."""
    out: dict[str, list] = {}
    for c in _sessions(rng, 2):
        path_frames(c, out)
    c = tcp_session(rng, CLIENTS4[1], 47100, VIP4, BE2, T0 + 2.0, answer=False, syn_tries=3)
    path_frames(c, out, stop=lambda s, v: v in ("fw-in", "lb", "be2"))
    _later(rng, out)
    return out


def path_wrong_source(rng):
    """be2 answers from its real address: the stateful firewall drops the SYN-ACKs (no state for
    them) between fw-in and fw-out; the client only retransmits its SYN."""
    out: dict[str, list] = {}
    for c in _sessions(rng, 1):
        path_frames(c, out)
    c = tcp_session(rng, CLIENTS4[1], 47200, VIP4, BE2, T0 + 2.0, wrong_source=BE2.ip4, syn_tries=3,
                    client_rst_on_wrong=False)
    path_frames(c, out, stop=lambda s, v: s.d == "<" and v in ("fw-out", "client"))
    _later(rng, out)
    return out


def path_asym(rng):
    """be2's replies leave through another router and reach the client around the firewall; the
    firewall, which never saw the SYN-ACK, drops the client's ACKs (fw-out, never fw-in)."""
    out: dict[str, list] = {}
    for c in _sessions(rng, 1):
        path_frames(c, out)
    c = Conn(CLIENTS4[1], 47300, VIP4, BE2)
    cisn, sisn = rng.getrandbits(32), rng.getrandbits(32)
    t = T0 + 2.0
    c.segs = [Seg(t, ">", "S", cisn, 0)]
    for i in range(3):  # the back-end retransmits its SYN-ACK; every ACK dies at the firewall
        ts = t + c.half + 0.0002 + (2 ** i - 1)
        c.segs += [Seg(ts, "<", "SA", sisn, cisn + 1), Seg(ts + c.half + 0.0001, ">", "A", cisn + 1, sisn + 1)]
    path_frames(c, out, bypass=True, stop=lambda s, v: s.d == ">" and s.flags == "A" and v in ("fw-in", "lb", "be2"))
    _later(rng, out)
    return out


def path_nat(rng):
    """A NAT load balancer: destination rewritten to the back-end's address, replies back through it."""
    out: dict[str, list] = {}
    for c in _sessions(rng, 4):
        path_frames(c, out, mode="nat")
    return out


def path_tunnel(rng):
    """An LVS-TUN style load balancer: the client's packets reach the back-ends inside IP-in-IP from
    192.0.2.10; the back-ends answer from the VIP directly."""
    out: dict[str, list] = {}
    for c in _sessions(rng, 4):
        path_frames(c, out, mode="tunnel")
    return out


def _proxied(rng, out, client, cport, be, t, *, proxy_header: bool = False, xclient: bool = False):
    """A full proxy: the client's connection ends at the LB; the LB opens its own to the back-end
    (new ISN, the LB's address) a moment later and relays the same SMTP lines."""
    front = tcp_session(rng, client, cport, VIP4, be, t)
    path_frames(front, out, mode="proxy-front")
    hdr = f"PROXY TCP4 {client} {VIP4} {cport} 25\r\n".encode() if proxy_header else None
    xc = f"ADDR={client} NAME=[UNAVAILABLE]" if xclient else None
    back = tcp_session(rng, LB_IP4, 33000 + cport % 1000, be.ip4, be, t + front.half + 0.0005, rtt=0.0004,
                       proxy=hdr, dialogue=smtp_dialogue(be.name, xclient=xc))
    path_frames(back, out, mode="proxy-back")


def path_proxy(rng):
    """A full proxy that passes the client's address in a PROXY v1 header to both back-ends."""
    out: dict[str, list] = {"be1": arp_reply(T0 + CLOCK["be1"], LB_IP4, LB, asker_ip=BE1.ip4, asker_mac=BE1.mac)}
    for i, (cl, be) in enumerate([(CLIENTS4[0], BE1), (CLIENTS4[1], BE2), (CLIENTS4[2], BE1)]):
        _proxied(rng, out, cl, 47400 + i, be, T0 + 0.5 + i * 0.8, proxy_header=True)
    return out


def path_mixed(rng):
    """be1 is reached by DSR, be2 through the LB as a full proxy without PROXY or XCLIENT."""
    out: dict[str, list] = {}
    for c in _sessions(rng, 1):
        path_frames(c, out)
    c = tcp_session(rng, CLIENTS4[2], 47500, VIP4, BE1, T0 + 1.2)
    path_frames(c, out)
    _proxied(rng, out, CLIENTS4[1], 47501, BE2, T0 + 2.0)
    _proxied(rng, out, CLIENTS4[0], 47502, BE2, T0 + 2.8)
    return out


PATH_SETS = {
    "healthy": path_healthy,
    "fw_drop_syn": path_fw_drop_syn,
    "wrong_source": path_wrong_source,
    "asym": path_asym,
    "nat": path_nat,
    "tunnel": path_tunnel,
    "proxy": path_proxy,
    "mixed": path_mixed,
}


def hostile_banner(rng):
    """A back-end whose banner and a client whose EHLO name carry HTML: reports must show them as text."""
    r = Renderer("lan")
    frames = arp_reply(T0, VIP4, LB)
    evil = "mx1.example.net <script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
    dia = smtp_dialogue(evil)
    dia[1] = (">", b"EHLO <b onmouseover=alert(1)>client</b>\r\n")
    frames += r.frames(tcp_session(rng, CLIENTS4[0], 48000, VIP4, BE1, T0 + 0.5, dialogue=dia))
    return frames


HOSTILE = b"\x1b]0;pwned\x07\x1b[1A\x1b[2K\x1b[8m\x00\x9b2J\x1b\\\xc3\x28\xff\xe2\x80\xae\x7f\r"
"""What a hostile peer puts in packet text: an OSC window title, cursor up, erase line, conceal,
NUL, a C1 CSI, a string terminator, invalid UTF-8, a right-to-left override, DEL and a lone CR.
No space, CR LF or `]`... that would end the field early (a PROXY v1 field is space-separated)."""


def hostile_text(rng):
    """A full proxy's two legs at a back-end: PROXY v1 with a hostile source field, XCLIENT with a
    hostile ADDR, and hostile banner, EHLO and reply text in both. No output may pass it raw."""
    r = Renderer("backend")
    frames = arp_reply(T0, LB_IP4, LB, asker_ip=BE1.ip4, asker_mac=BE1.mac)
    frames += arp_reply(T0 + 0.1, VIP4, LB)
    host = b"mx1" + HOSTILE
    dia = [("<", b"220 " + host + b" ESMTP " + HOSTILE + b"\r\n"), (">", b"EHLO " + HOSTILE + b"\r\n"),
           ("<", b"250-" + host + b"\r\n250-XCLIENT ADDR NAME\r\n250 8BITMIME\r\n")]
    end = [(">", b"QUIT\r\n"), ("<", b"221 2.0.0 " + HOSTILE + b"\r\n")]
    frames += _snat_leg(rng, r, T0 + 0.5, 50021, proxy=b"PROXY TCP4 " + HOSTILE + b" 192.0.2.25 40211 25\r\n",
                        dialogue=dia + end)
    xclient = [(">", b"XCLIENT ADDR=" + HOSTILE + b" NAME=" + HOSTILE + b"\r\n"), ("<", b"220 " + host + b" ESMTP\r\n")]
    frames += _snat_leg(rng, r, T0 + 1.5, 50022, dialogue=dia + xclient + end)
    return frames


SAMPLES = {
    "healthy.pcap": lambda rng: healthy(rng, "lan"),
    "healthy-client.pcapng": lambda rng: healthy(rng, "client"),
    "wrong_source.pcap": wrong_source,
    "arp_leak.pcap": arp_leak,
    "arp_leak6.pcapng": arp_leak6,
    "asym_bypass.pcap": asym_bypass,
    "vip_missing.pcap": vip_missing,
    "syn_unanswered.pcap": syn_unanswered,
    "snat.pcap": snat,
    "snat_proxy.pcap": snat_proxy,
    "hostile_banner.pcap": hostile_banner,
    "hostile_text.pcap": hostile_text,
}


def write(path: Path, frames) -> None:
    frames = sorted(frames, key=lambda p: float(p.time))
    if path.suffix == ".pcapng":
        w = PcapNgWriter(str(path))
    else:
        w = PcapWriter(str(path), linktype=1, sync=True)
    for f in frames:
        w.write(f)
    w.close()


def build(out: Path, seed: int) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fn in SAMPLES.items():
        rng = random.Random(f"{seed}:{name}")
        path = out / name
        write(path, fn(rng))
        written.append(path)
    # the same healthy capture compressed, and a copy cut in the middle of a frame
    healthy_bytes = (out / "healthy.pcap").read_bytes()
    (out / "healthy.pcap.gz").write_bytes(gzip.compress(healthy_bytes, mtime=0))
    (out / "damaged.pcap").write_bytes(healthy_bytes[: len(healthy_bytes) * 2 // 3])
    written += [out / "healthy.pcap.gz", out / "damaged.pcap"]
    for name, fn in PATH_SETS.items():
        rng = random.Random(f"{seed}:paths/{name}")
        folder = out / "paths" / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.pcap"):
            old.unlink()
        frames = fn(rng)
        for v in PATH_VANTAGES:  # every vantage captured, even one that saw nothing of a set
            write(folder / f"{v}.pcap", frames.get(v, []))
            written.append(folder / f"{v}.pcap")
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--seed", type=int, default=25)
    a = ap.parse_args()
    for p in build(a.out, a.seed):
        print(p)


if __name__ == "__main__":
    main()
