"""ARP and IPv6 neighbour discovery: who asked for which IP, and which MAC claimed it, when.

Reads: decoded ARP and ICMPv6 NS/NA packets. Produces: a NeighbourTable.
Never: decides which MAC is legitimate (findings/ knows the topology).
Why: in DSR only the load balancer may answer for the VIP; a back-end that answers ARP (or sends a
neighbour advertisement, or runs duplicate address detection) for the VIP pulls client traffic
past the load balancer. Claims kept per IP: the first claim of every MAC and every change of
MAC (bounded), which is what a reader needs to see a flap.
"""

from __future__ import annotations

from dsrdiag.core.addr import ip_text, mac_text
from dsrdiag.decode.arp import REPLY, REQUEST
from dsrdiag.decode.ndp import NA, NS
from dsrdiag.decode.packet import KIND_ARP
from dsrdiag.track.records import Claim, NeighbourTable

MAX_CLAIMS_PER_IP = 64
_ZERO4 = b"\x00" * 4
_ZERO16 = b"\x00" * 16


class NeighbourWatch:
    def __init__(self):
        self.claims: dict[str, list[Claim]] = {}
        self.last_mac: dict[str, str] = {}
        self.requests: dict[str, int] = {}
        self.counts: dict[tuple[str, str], int] = {}

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
                t = ip_text(p.dst)
                self.requests[t] = self.requests.get(t, 0) + 1

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
                self.requests[target] = self.requests.get(target, 0) + 1

    def _claim(self, ip: str, mac_raw: bytes, kind: str, p) -> None:
        mac = mac_text(mac_raw)
        key = (ip, mac)
        n = self.counts.get(key, 0)
        self.counts[key] = n + 1
        changed = self.last_mac.get(ip) not in (None, mac)
        self.last_mac[ip] = mac
        if n == 0 or changed:
            lst = self.claims.setdefault(ip, [])
            if len(lst) < MAX_CLAIMS_PER_IP:
                lst.append(Claim(ip, mac, kind, p.frame, p.ts_ns, mac_text(p.src_mac) if p.src_mac else None))

    def table(self) -> NeighbourTable:
        return NeighbourTable(
            claims={ip: tuple(c) for ip, c in self.claims.items()},
            requests=dict(self.requests),
            claim_counts=dict(self.counts),
        )
