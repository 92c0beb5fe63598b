"""syn_unanswered: the client retransmitted its SYNs and no reply of any kind passed this vantage.

The retransmissions are the proof: the client's stack got no answer and tried again. A SYN that is
never retransmitted although the capture went on long enough was answered some other way (the
reply path bypasses this point: asymmetric_flow's), and one whose capture ended too soon is not
judged. Grouped per server address and the MAC the SYNs were delivered to (a back-end when the
load balancer's rewrite is visible). What causes it (a wrong-source reply, a missing VIP, a
bypass, a firewall drop) is linked by findings/causes.py.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from dsrdiag.findings.context import Context
from dsrdiag.findings.finding import ERROR, MAX_EVIDENCE, Finding, plural
from dsrdiag.findings.kind import Entry
from dsrdiag.track.history import FLAGS, SYNS_ONLY

ENTRY = Entry(
    kind="syn_unanswered",
    severity=ERROR,
    title="SYNs with no reply at all",
    explanation=(
        "The client sent a SYN, retransmitted it on the usual back-off schedule, and nothing came "
        "back through this point: no SYN-ACK, no RST. The SYN was dropped between here and the "
        "server, the server dropped it, or its answer took a path that never reached the client "
        "(the client would not retransmit if an answer had arrived)."
    ),
    decided=(
        "A connection in which the client sent only SYNs (history S, conn_state S0) and retransmitted "
        "at least once: no answer reached the client's stack. A lone SYN that is never retransmitted "
        "although the capture went on 3.5 s after it was answered another way and is asymmetric_flow; "
        "one whose capture ended sooner is not judged. When another finding explains the silence (a "
        "wrong-source reply, a missing VIP, a bypass, a firewall drop on the same connections), this "
        "finding is its consequence."
    ),
    seen_from=(
        "Any vantage on the request path. It says where the SYN was last seen; captures further "
        "along the path show where it died."
    ),
    windows=(
        "Capture on the back-end (`pktmon start --capture` or Wireshark with Npcap) to see whether "
        "the SYN arrives. Check the VIP on the loopback adapter (`Get-NetIPAddress -IPAddress "
        "VIP`), weak host receive on the LAN adapter (`netsh interface ipv4 show interface "
        "\"LAN\"`), the receive connector's bindings and Windows Firewall rules for the port."
    ),
    linux=(
        "Capture on the load balancer and the back-ends at once (`tcpdump -ni any 'tcp port 25 "
        "and tcp[tcpflags] & tcp-syn != 0'`). On the back-end: VIP on lo (`ip -br addr show lo`), "
        "a listener (`ss -ltn 'sport = :25'`), rp_filter not dropping the frames "
        "(`sysctl net.ipv4.conf.all.rp_filter`; use 2 or 0), no host firewall drop (`nft list ruleset`)."
    ),
)

KIND = ENTRY.kind


class Collector:
    """Fed every service connection in judge's one pass. Idle (judge does not feed it) without a
    VIP: every connection it judges is to one."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.groups: dict = defaultdict(list)
        self.idle = not ctx.vips
        self.observe = self._observer()

    def _observer(self):
        """observe(c), with what it reads of the context bound once (it runs for every connection)."""
        ctx, groups = self.ctx, self.groups
        vips, elsewhere, delivered_to = ctx.vips, ctx.answered_elsewhere, ctx.delivered_to

        def observe(c) -> None:
            # only SYNs (no reply, nothing but 'S' in the history), retransmitted, to a VIP
            if c.resp_pkts or c.server_ip not in vips or len(c.syn_frames) < 2 or not FLAGS[c.history] & SYNS_ONLY:
                return
            if elsewhere and (c.client_ip, c.client_port, c.server_port) in elsewhere:
                return  # a reply from a real address is a reply
            groups[(c.server_ip, c.server_port, delivered_to(c))].append(c)
        return observe

    def findings(self) -> Iterator[Finding]:
        ctx = self.ctx
        for (ip, port, mac), conns in sorted(self.groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")):
            evidence = []
            for c in conns:
                for s in c.syn_frames[:4]:
                    if len(evidence) < MAX_EVIDENCE:
                        evidence.append(ctx.ref(s, c, f"SYN {c.client_ip}:{c.client_port} -> {ip}:{port}"))
            tries = max(len(c.syn_frames) for c in conns)
            c0 = max(conns, key=lambda c: len(c.syn_frames))
            gaps = [f"{(b.ts_ns - a.ts_ns) / 1e9:.1f}s" for a, b in zip(c0.syn_frames, c0.syn_frames[1:])]
            summary = (
                f"{plural(len(conns), 'connection')} to {ip}:{port}"
                + (f" delivered to MAC {mac}" if mac else "")
                + f": the client sent up to {plural(tries, 'SYN')} per connection"
                + (f" (retransmitted after {', '.join(gaps)})" if gaps else "")
                + "; no SYN-ACK, RST or other reply passed this vantage."
            )
            if mac and any(ctx.lb_view(c) for c in conns):
                summary += (
                    f" This is the load balancer's own interface: it forwarded them to {mac}, and DSR replies "
                    "never pass here, so whether that back-end answered cannot be seen: the client retried, so "
                    "no answer reached it. Captures at the back-end or the client tell which."
                )
            yield Finding(
                kind=KIND, severity=ERROR, vantages=(ctx.vantage,), summary=summary,
                evidence=tuple(sorted(evidence)), connections=tuple(c.uid for c in conns),
                backend=ctx.backend(mac) if mac and mac not in ctx.lb_macs else None, subject=f"{ip}:{port}",
            )
