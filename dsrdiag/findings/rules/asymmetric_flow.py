"""asymmetric_flow: only one direction of a connection passes this vantage point.

Two shapes: the client's SYN and then its ACKs/data with no server packet (the SYN-ACK went
another way: Zeek's possible_split_routing), or the server's SYN-ACK/data with no client packet
(the request came another way). Connections the load balancer forwarded are not reported: at the
LB's own interface in DSR mode, one-way is the design. When every connection of the capture is
one-sided the same way, the summary says to check the capture point first.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from dsrdiag.decode.tcp import ACK, SYN
from dsrdiag.findings.context import Context, first
from dsrdiag.findings.finding import ERROR, MAX_EVIDENCE, Finding, plural
from dsrdiag.track.records import ORIG, RESP

KIND = "asymmetric_flow"
REPLY_MISSING = "reply"
REQUEST_MISSING = "request"


class Collector:
    """Fed every service connection in judge's one pass; claims are applied when it reports, after
    the rules before it have claimed theirs."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.total = 0
        self.candidates: list = []

    def observe(self, c) -> None:
        ctx = self.ctx
        if not (ctx.is_vip_conn(c) or ctx.topology.backend_by_ip(c.server_ip)):
            return
        self.total += 1
        if c.saw_syn and not c.resp_pkts and ("A" in c.history or "D" in c.history):
            if not ctx.forwarded_by_lb(c):  # the LB's own view of DSR: replies go around it by design
                self.candidates.append((REPLY_MISSING, c))
        elif not c.orig_pkts and c.resp_pkts and ("h" in c.history or "d" in c.history):
            self.candidates.append((REQUEST_MISSING, c))

    def findings(self) -> Iterator[Finding]:
        ctx, total = self.ctx, self.total
        groups = defaultdict(list)
        for case, c in self.candidates:
            if c.uid not in ctx.claimed:
                groups[(case, ctx.backend_of(c))].append(c)
        per_case = defaultdict(int)
        for (case, _), cs in groups.items():
            per_case[case] += len(cs)
        for (case, backend), cs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1].name if kv[0][1] else "")):
            evidence = []
            for c in cs:
                ctx.claimed.add(c.uid)
                if len(evidence) >= MAX_EVIDENCE:
                    continue
                if case == REPLY_MISSING:
                    syn = c.syn_frames[0] if c.syn_frames else None
                    ack = first(c.packets, lambda n: n.direction == ORIG and n.flags & ACK and not n.flags & SYN)
                    if syn:
                        evidence.append(ctx.ref(syn, c, f"SYN {c.client_ip}:{c.client_port} -> {c.server_ip}:{c.server_port}"))
                    if ack:
                        evidence.append(ctx.ref(ack, c, "client ACKs a SYN-ACK that never passed this point"))
                else:
                    sa = first(c.packets, lambda n: n.direction == RESP and n.flags & SYN)
                    data = first(c.packets, lambda n: n.direction == RESP and n.payload_len)
                    for n, what in ((sa, "SYN-ACK with no SYN seen here"), (data, "server data, no client packet seen here")):
                        if n:
                            evidence.append(ctx.ref(n, c, f"{what} ({c.server_ip}:{c.server_port} -> {c.client_ip}:{c.client_port})"))
            seen, missing = ("client->server", "server->client") if case == REPLY_MISSING else ("server->client", "client->server")
            summary = (
                f"{plural(len(cs), 'connection')} seen {seen} only; no {missing} packet passed this vantage."
            )
            if per_case[case] == total and total > 1:
                summary += (
                    " Every connection in this capture is one-sided the same way: if the capture point "
                    "mirrors only one direction (SPAN rx-only, one tap leg), that explains it; otherwise the "
                    f"{missing} path bypasses this point."
                )
            yield Finding(
                kind=KIND, severity=ERROR, vantages=(ctx.vantage,), summary=summary,
                evidence=tuple(sorted(evidence)), connections=tuple(c.uid for c in cs), backend=backend,
                subject=f"{missing} missing",
            )
