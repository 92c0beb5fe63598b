"""snat_client_ip_lost, proxy_protocol_header, smtp_xclient: the client address and full proxies.

A connection to a service port from a load-balancer address (given, the VIP itself, or an
address the LB's MAC claims) means SNAT / full proxy. If the stream carries a PROXY header or an
XCLIENT command the address is passed on: that is reported as information, not as a fault.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from dsrdiag.findings.context import Context
from dsrdiag.findings.finding import ERROR, INFO, MAX_EVIDENCE, Finding, plural

KIND = "snat_client_ip_lost"
PROXY = "proxy_protocol_header"
XCLIENT = "smtp_xclient"


def _snat_source(ctx: Context, c) -> str | None:
    if c.client_ip in ctx.lb_ips:
        return f"{c.client_ip} is a load-balancer address"
    if c.client_ip in ctx.vips:
        return f"{c.client_ip} is the VIP itself"
    if ctx.lb_macs and c.orig_l2 and c.orig_l2[0][0] in ctx.lb_macs and c.server_ip not in ctx.vips:
        return f"sent by the load balancer's MAC {c.orig_l2[0][0]} to the back-end's own address {c.server_ip}"
    return None


class Collector:
    """Fed every service connection in judge's one pass."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.lost = defaultdict(list)
        self.proxied: list = []
        self.xclient: list = []

    def observe(self, c) -> None:
        why = _snat_source(self.ctx, c)
        s = c.smtp
        if why is not None and (s is None or (s.proxy is None and s.xclient is None)):
            self.lost[(c.server_ip, c.client_ip)].append((c, why))
        if s is not None and s.proxy:
            self.proxied.append(c)
        if s is not None and s.xclient:
            self.xclient.append(c)

    def findings(self) -> Iterator[Finding]:
        ctx, lost = self.ctx, self.lost
        for (server, client), items in sorted(lost.items()):
            evidence = []
            for c, _ in items:
                if c.packets and len(evidence) < MAX_EVIDENCE:
                    evidence.append(ctx.ref(c.packets[0], c, f"connection from {c.client_ip}:{c.client_port} to {server}:{c.server_port}"))
            why = items[0][1]
            summary = (
                f"{plural(len(items), 'connection')} reached {server} from {client} ({why}); "
                "the back-end never sees the real client address, and no PROXY header or XCLIENT passes it on."
            )
            mac = items[0][0].resp_l2[0][0] if items[0][0].resp_l2 else None
            yield Finding(
                kind=KIND, severity=ERROR, vantages=(ctx.vantage,), summary=summary, evidence=tuple(sorted(evidence)),
                connections=tuple(c.uid for c, _ in items), backend=ctx.backend(mac, server), subject=client,
            )
        yield from _carried(ctx, self.proxied, self.xclient)


def _carried(ctx: Context, proxied: list, xclient: list) -> Iterator[Finding]:
    """PROXY headers and XCLIENT wherever they appear: how a full proxy keeps the client address."""
    for kind, cs in ((PROXY, proxied), (XCLIENT, xclient)):
        if not cs:
            continue
        evidence = []
        clients = []
        for c in cs:
            if kind == PROXY:
                h = c.smtp.proxy
                clients.append(f"{h.client_ip}:{h.client_port}" if h.client_ip else "unknown")
                if len(evidence) < MAX_EVIDENCE:
                    evidence.append(ctx.frame(h.frame, h.ts_ns, f"PROXY v{h.version} header: client {clients[-1]}"))
            else:
                clients.append(c.smtp.xclient)
                if len(evidence) < MAX_EVIDENCE and c.smtp.xclient_frame:
                    evidence.append(ctx.frame(c.smtp.xclient_frame, c.smtp.xclient_ts_ns, f"XCLIENT {c.smtp.xclient}"))
        shown = ", ".join(sorted(set(clients))[:5])
        summary = (
            f"{plural(len(cs), 'connection')} from {', '.join(sorted({c.client_ip for c in cs}))} "
            f"carry the original client ({'PROXY protocol' if kind == PROXY else 'XCLIENT'}): {shown}."
        )
        yield Finding(
            kind=kind, severity=INFO, vantages=(ctx.vantage,), summary=summary, evidence=tuple(sorted(evidence)),
            connections=tuple(c.uid for c in cs), backend=ctx.backend_of(cs[0]),
        )
