"""vip_not_on_backend: SYNs the load balancer delivered to a back-end's MAC are never answered.

A host that holds an address answers a SYN to it (SYN-ACK, or RST when nothing listens); a host
that does not hold it drops the frame silently (or routes it back out). So SYNs to the VIP that
were delivered to a back-end's MAC and die there mean the VIP is missing on that back-end. Seen
at the server LAN or at the back-end's own capture (where the frames arrive addressed to it).
A back-end that answered some of the VIP connections delivered to it is not "missing the VIP",
and a SYN answered from the back-end's real address is return_source_not_vip's.
"""

from __future__ import annotations

from typing import Iterator

from dsrdiag.findings.context import SETTLE_NS, Context
from dsrdiag.findings.finding import ERROR, MAX_EVIDENCE, Finding, plural
from dsrdiag.findings.kind import Entry
from dsrdiag.track.history import FLAGS, SYNS_ONLY

ENTRY = Entry(
    kind="vip_not_on_backend",
    severity=ERROR,
    title="SYNs delivered to a back-end's MAC die there: the VIP is missing on it",
    explanation=(
        "The load balancer delivered SYNs for the VIP to this back-end's MAC and the back-end "
        "never answered; a closed port would at least have answered with a RST. A host silently "
        "drops frames whose destination IP is not one of its addresses: the VIP is not "
        "configured on this back-end (or is on an interface that is down or does not accept it). "
        "Other back-ends answering shows that the load balancer and the path are fine."
    ),
    decided=(
        "Client SYNs to the VIP whose destination MAC is a back-end's (known, or the MAC the load "
        "balancer forwards to), with no packet at all back from that connection, while the "
        "capture lasted at least 3 s after the SYN or the SYN was retransmitted."
    ),
    seen_from=(
        "A capture on the server LAN, the load balancer or the back-end itself (where the "
        "destination MAC shows the back-end). A client capture sees only syn_unanswered."
    ),
    windows=(
        "Add the VIP to the KM-TEST loopback adapter: `New-NetIPAddress -InterfaceAlias "
        "\"Loopback\" -IPAddress VIP -PrefixLength <LB prefix> -SkipAsSource $true`, then `netsh "
        "interface ipv4 set interface \"LAN\" weakhostreceive=enabled` and `netsh interface ipv4 "
        "set interface \"Loopback\" weakhostreceive=enabled weakhostsend=enabled`; loopback "
        "metric 254, NetBIOS over TCP/IP disabled on it."
    ),
    linux=(
        "`ip addr add VIP/32 dev lo` (IPv6: `ip -6 addr add VIP/128 dev lo nodad`) and persist it; "
        "keep `arp_ignore=1` and `arp_announce=2`; check with `ip -br addr show lo`."
    ),
    load_balancer=(
        "If the back-end is not meant to hold the VIP, the virtual server is in the wrong mode for it: DSR (NetScaler `-m MAC`, Kemp \"direct\", F5 nPath, LVS `lb_kind DR`) needs the VIP on every back-end's loopback; otherwise use NAT mode (with the client address kept by routing the replies through the LB)."
    )
)

KIND = ENTRY.kind


class Collector:
    """Fed every service connection in judge's one pass. Idle (judge does not feed it) without a
    VIP: every connection it judges is to one."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.dead: dict[str, list] = {}
        """back-end MAC -> the connections delivered to it that died there (only SYNs, settled)"""
        self.answered: dict[str, int] = {}
        """back-end MAC -> connections delivered to it that were answered"""
        self.idle = not ctx.vips
        self.observe = self._observer()

    def _observer(self):
        """observe(c), with what it reads of the context bound once (it runs for every connection)."""
        ctx, dead, answered = self.ctx, self.dead, self.answered
        vips, lb_interface, elsewhere = ctx.vips, ctx.lb_interface, ctx.answered_elsewhere
        delivered_to, end_ts, memo = ctx.delivered_to, ctx.end_ts, ctx.delivered_memo

        def observe(c) -> None:
            if c.server_ip not in vips or (lb_interface and c.orig_forwarded > 0):
                return  # at the LB's own interface a back-end's answer is invisible: syn_unanswered says so
            mac = memo[c.orig_forwarded > 0].get(c.orig_l2, memo)  # delivered_to()'s memo, read here
            if mac is memo:
                mac = delivered_to(c)
            if mac is None:
                return
            if c.resp_pkts or (elsewhere and (c.client_ip, c.client_port, c.server_port) in elsewhere):
                answered[mac] = answered.get(mac, 0) + 1
            elif FLAGS[c.history] & SYNS_ONLY and (len(c.syn_frames) > 1 or end_ts - c.first_ts_ns >= SETTLE_NS):
                got = dead.get(mac)  # only SYNs (no reply: above), and settled
                if got is None:
                    dead[mac] = [c]
                else:
                    got.append(c)
        return observe

    def findings(self) -> Iterator[Finding]:
        ctx, answered = self.ctx, self.answered
        for mac, dead in sorted(self.dead.items()):
            if answered.get(mac):
                continue
            evidence = []
            for c in dead:
                # cite the copies the load balancer sent to the back-end's MAC where they were captured
                delivered = [n for n in c.forwarded_frames if n.dst_mac == mac] or [n for n in c.syn_frames if n.dst_mac == mac]
                for s in delivered[:3]:
                    if len(evidence) < MAX_EVIDENCE:
                        evidence.append(ctx.ref(s, c, f"SYN to VIP {c.server_ip}:{c.server_port} delivered to MAC {s.dst_mac}"))
            others = sum(n for m, n in answered.items() if m != mac)
            # a host with ip_forward=1 and no VIP routes the frame back out: the strongest sign
            routed_back = [c for c in dead if any(s == mac for s, _ in c.orig_l2)]
            vip = dead[0].server_ip
            summary = (
                f"{plural(len(dead), 'SYN')} to VIP {vip} delivered to {mac} got no answer at all"
                f" (max {max(len(c.syn_frames) for c in dead)} transmissions per connection)"
                + (f", while {plural(others, 'connection')} delivered to other back-ends were answered" if others else "")
                + (f"; {mac} even routed {len(routed_back)} of them back out, as a host without the VIP does with forwarding on" if routed_back else "")
                + "."
            )
            yield Finding(
                kind=KIND, severity=ERROR, vantages=(ctx.vantage,), summary=summary,
                evidence=tuple(sorted(evidence)), connections=tuple(c.uid for c in dead), backend=ctx.backend(mac),
            )
