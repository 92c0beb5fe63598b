"""ARP and IPv6 neighbour discovery: who asked for which IP, and which MAC claimed it, when.

Reads: decoded ARP and ICMPv6 NS/NA packets. Produces: a NeighbourTable.
Never: decides which MAC is legitimate (findings/ knows the topology).
Why: in DSR only the load balancer may answer for the VIP; a back-end that answers ARP (or sends a
neighbour advertisement, runs duplicate address detection, or asks for a neighbour from the VIP:
every receiver caches a request's sender, RFC 826 and RFC 4861 7.2.3) for the VIP pulls client
traffic past the load balancer. Who asked for an address is kept too (a few MACs): the router
that routes to the VIP is the one that asks for it. Counts are exact (claims per IP and MAC, MAC changes per IP); the claims
kept as evidence are bounded: per IP the first claim of every MAC and the first changes of MAC,
then the most recent ones (a flap of 10,000 changes shows its start and its end, and says 10,000).
Memory is bounded too: beyond MAX_IPS addresses (or MAX_PAIRS address/MAC pairs) new ones are
counted in `overflow`, not kept, so a million forged replies cost what MAX_IPS do.
"""

from __future__ import annotations

from dsrdiag.core.addr import ip_text, mac_text
from dsrdiag.decode.arp import REPLY, REQUEST
from dsrdiag.decode.ndp import NA, NS
from dsrdiag.decode.packet import KIND_ARP
from dsrdiag.track.records import Claim, NeighbourTable

from collections import deque

MAX_CLAIMS_PER_IP = 64
"""Claims kept per IP as evidence: the first half, then a window of the most recent."""
MAX_IPS = 4096
MAX_REQUESTERS = 4
"""MACs kept per IP that asked for it (the router that routes to a VIP asks for it)."""
MAX_PAIRS = 16384
_ZERO4 = b"\x00" * 4
_ZERO16 = b"\x00" * 16


class NeighbourWatch:
    def __init__(self):
        self.claims: dict[str, list[Claim]] = {}
        self.recent: dict[str, deque] = {}
        self.last_mac: dict[str, str] = {}
        self.requests: dict[str, int] = {}
        self.requesters: dict[str, list[str]] = {}
        self.counts: dict[tuple[str, str], int] = {}
        self.changes: dict[str, int] = {}
        self.overflow = 0

    def packet(self, p) -> None:
        if p.kind == KIND_ARP:
            self._arp(p)
        else:
            self._nd(p)

    def _arp(self, p) -> None:
        # p.src = sender protocol address, p.dst = target protocol address, p.sha/p.tha hardware
        if p.op == REPLY:
            self._claim(ip_text(p.src), p.sha, "arp-reply", p)
        elif p.op == REQUEST:
            if p.src == p.dst and p.src != _ZERO4:
                self._claim(ip_text(p.src), p.sha, "arp-gratuitous", p)  # announcement
            else:
                self._request(ip_text(p.dst), p.sha)
                if p.src != _ZERO4:  # every receiver caches the sender's address (RFC 826): a claim too
                    self._claim(ip_text(p.src), p.sha, "arp-request", p)

    def _nd(self, p) -> None:
        target = ip_text(p.tha)
        if p.op == NA:
            mac = p.sha or p.src_mac
            if mac:
                self._claim(target, mac, "nd-advert", p)
        elif p.op == NS:
            if p.src == _ZERO16 and p.src_mac:
                self._claim(target, p.src_mac, "nd-dad", p)  # duplicate address detection: "I want this address"
            else:
                self._request(target, p.sha or p.src_mac)
                if p.sha and p.src != _ZERO16:  # its source link-layer option is cached by every receiver (RFC 4861 7.2.3)
                    self._claim(ip_text(p.src), p.sha, "nd-solicit", p)

    def _request(self, ip: str, mac_raw: bytes | None = None) -> None:
        n = self.requests.get(ip)
        if n is None and len(self.requests) >= MAX_IPS:
            self.overflow += 1
            return
        self.requests[ip] = (n or 0) + 1
        if mac_raw:
            who = self.requesters.setdefault(ip, [])
            mac = mac_text(mac_raw)
            if mac not in who and len(who) < MAX_REQUESTERS:
                who.append(mac)

    def _claim(self, ip: str, mac_raw: bytes, kind: str, p) -> None:
        mac = mac_text(mac_raw)
        key = (ip, mac)
        n = self.counts.get(key, 0)
        if n == 0 and (len(self.counts) >= MAX_PAIRS or (ip not in self.last_mac and len(self.last_mac) >= MAX_IPS)):
            self.overflow += 1
            return
        self.counts[key] = n + 1
        last = self.last_mac.get(ip)
        changed = last is not None and last != mac
        self.last_mac[ip] = mac
        if changed:
            self.changes[ip] = self.changes.get(ip, 0) + 1
        if n == 0 or changed:
            c = Claim(ip, mac, kind, p.frame, p.ts_ns, mac_text(p.src_mac) if p.src_mac else None)
            lst = self.claims.setdefault(ip, [])
            if len(lst) < MAX_CLAIMS_PER_IP // 2:
                lst.append(c)
            else:
                self.recent.setdefault(ip, deque(maxlen=MAX_CLAIMS_PER_IP // 2)).append(c)

    def table(self) -> NeighbourTable:
        return NeighbourTable(
            claims={ip: tuple(c) + tuple(self.recent.get(ip, ())) for ip, c in self.claims.items()},
            requests=dict(self.requests),
            requesters={ip: tuple(m) for ip, m in self.requesters.items()},
            claim_counts=dict(self.counts),
            mac_changes=dict(self.changes),
            overflow=self.overflow,
        )
