"""syn_unanswered: a client's SYNs (with retransmissions) got no reply at all at this vantage.

Grouped per server address and back-end (when the destination MAC names one). Connections whose
capture ended too soon after the SYN are not judged (the answer may simply not be in the file).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from dsrdiag.findings.context import Context
from dsrdiag.findings.finding import ERROR, MAX_EVIDENCE, Finding, plural

KIND = "syn_unanswered"


class Collector:
    """Fed every service connection in judge's one pass; claims are applied when it reports, after
    the rules before it have claimed theirs."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.candidates: list = []

    def observe(self, c) -> None:
        ctx = self.ctx
        if ctx.is_vip_conn(c) and c.saw_syn and not c.resp_pkts and set(c.history) <= {"S"} and ctx.settled(c):
            self.candidates.append(c)

    def findings(self) -> Iterator[Finding]:
        ctx = self.ctx
        groups = defaultdict(list)
        for c in self.candidates:
            if c.uid not in ctx.claimed:
                groups[(c.server_ip, c.server_port, ctx.delivered_to(c))].append(c)
        for (ip, port, mac), conns in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")):
            evidence = []
            for c in conns:
                ctx.claimed.add(c.uid)
                for s in c.syn_frames[:4]:
                    if len(evidence) < MAX_EVIDENCE:
                        evidence.append(ctx.ref(s, c, f"SYN {c.client_ip}:{c.client_port} -> {ip}:{port}"))
            tries = max(len(c.syn_frames) for c in conns)
            gaps = []
            c0 = max(conns, key=lambda c: len(c.syn_frames))
            for a, b in zip(c0.syn_frames, c0.syn_frames[1:]):
                gaps.append(f"{(b.ts_ns - a.ts_ns) / 1e9:.1f}s")
            summary = (
                f"{plural(len(conns), 'connection')} to {ip}:{port}"
                + (f" delivered to MAC {mac}" if mac else "")
                + f": only SYNs seen, up to {tries} per connection"
                + (f" (retransmitted after {', '.join(gaps)})" if gaps else "")
                + ", no SYN-ACK, RST or other reply at this vantage."
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
                backend=ctx.backend(mac) if mac else None, subject=f"{ip}:{port}",
            )
