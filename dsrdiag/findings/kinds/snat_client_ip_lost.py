"""snat_client_ip_lost: connections reach a back-end from a load-balancer address: the client is lost.

A connection to a service port from a load-balancer address (given, the VIP itself, or an
address the LB's MAC claims in ARP/NDP) means SNAT / full proxy. A connection the LB's MAC
delivers to a back-end's own address from some other address is NAT with the client kept. When the stream carries a PROXY
header or XCLIENT the address is passed on: that is proxy_protocol_header / smtp_xclient
(information), not this fault.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from dsrdiag.core.evidence import FrameRef
from dsrdiag.findings.context import Context
from dsrdiag.findings.finding import ERROR, MAX_EVIDENCE, Finding, plural
from dsrdiag.findings.kind import Entry

ENTRY = Entry(
    kind="snat_client_ip_lost",
    severity=ERROR,
    title="Connections reach the back-end from the load balancer's address: client IP lost",
    explanation=(
        "The back-end sees connections from the load balancer's own address, not the client's: "
        "the load balancer is in SNAT / full-proxy mode. Every client then looks like the load "
        "balancer: relay permissions (Exchange receive connectors' RemoteIPRanges, Postfix "
        "mynetworks) match the LB's address, so either everyone may relay or nobody may, and "
        "logs, SPF, RBL lookups, rate limits and greylisting act on the wrong address. This is "
        "the problem DSR exists to solve."
    ),
    decided=(
        "Connections to a service port whose client address is a load-balancer address (given "
        "with --lb-ip, the VIP itself, or an address the load balancer's MAC claims in ARP), and "
        "that carry neither a PROXY protocol header nor an SMTP XCLIENT command."
    ),
    seen_from=(
        "A capture on the back-end or on the LB-to-back-end segment. A client capture cannot see "
        "what source address the back-end receives."
    ),
    windows=(
        "Switch the virtual service to DSR and give every Exchange/SMTP server the KM-TEST "
        "loopback adapter with the VIP (weak host send/receive). Exchange supports neither PROXY "
        "protocol nor XCLIENT: behind a full proxy its connectors only ever see the LB's address."
    ),
    linux=(
        "Switch the virtual service to DSR (direct routing) and configure the back-ends for it "
        "(VIP on lo, arp_ignore/arp_announce). If full proxy must stay, have the LB pass the "
        "client address: PROXY protocol (HAProxy `send-proxy`, Postfix "
        "`smtpd_upstream_proxy_protocol = haproxy` on that port) or XCLIENT (Postfix "
        "`smtpd_authorized_xclient_hosts = <LB address>`)."
    ),
    load_balancer=(
        "The load balancer replaces the client address: NetScaler without `USIP` (`set lb vserver <name> -USIP YES`, or MAC mode `-m MAC` for DSR); Kemp with Transparency off (Virtual Service > Standard Options > Transparency), or use \"direct\" forwarding; F5 with a SNAT pool or automap on the virtual server (remove it and route replies through the BIG-IP, or nPath/DSR); keepalived/LVS `lb_kind NAT` with masquerading on the director; HAProxy always connects from its own address: enable `send-proxy` on the server line and accept the PROXY protocol on the MTA (Postfix `smtpd_upstream_proxy_protocol = haproxy`; Exchange does not accept PROXY protocol). The alternative many operators choose: keep SNAT and move relay permission to the load balancer (ACLs or an SMTP profile on the LB that only lets the allowed clients reach the relay virtual server), or give the mail server a second address used only for relay and published without SNAT. The cost: the MTA logs and greylisting see the LB's address, per-client rate limits and SPF/`mynetworks` decisions move to the LB, and abuse reports name the LB."
    ),
    scope="capture, path"
)

KIND = ENTRY.kind


def snat_source(ctx: Context, c) -> str | None:
    """Why this connection's source is the load balancer, in words (None: it is not)."""
    if c.client_ip in ctx.lb_ips:
        return f"{c.client_ip} is a load-balancer address"
    if c.client_ip in ctx.vips and c.server_ip not in ctx.vips:
        return f"{c.client_ip} is the VIP itself"  # the LB connects from the VIP to a back-end's own address
    # the LB's MAC delivering to a back-end's own address is NAT as well as SNAT: only the source
    # address tells them apart, and it is the LB's only when the LB claims it (lb_ips)
    return None


def decide_path(corr) -> Iterator[Finding]:
    """Correlated captures show the source rewritten: a back leg opened by a proxy, or a flow the
    load balancer passed on with its own source address, and no PROXY header or XCLIENT (those
    modes are `proxy+proxy-protocol` / `proxy+xclient`). Reported at the back-end's vantage, where
    the client is lost; not when a capture's own finding already names these connections."""
    groups: dict = defaultdict(list)
    for f in corr.flows:
        if f.mode in ("snat", "full-nat", "proxy") and (f.leg != "front"):
            groups[(f.vantages, f.client.rsplit(":", 1)[0])].append(f)
    for (vantages, source), flows in sorted(groups.items()):
        vantage = vantages[-1]  # the back-end, where the client is lost
        evidence = []
        for f in flows[: max(1, MAX_EVIDENCE // len(vantages))]:
            for v in vantages:  # the connection from the LB's address, at every vantage that saw it
                hop = next((h for p in f.packets for h in p.hops if h.vantage == v), None)
                if hop is not None:
                    evidence.append(FrameRef(hop.ts_ns, corr.captures[v], v, hop.frame,
                                             f"{f.client} -> :{f.server_port} at {v}"
                                             + (f" ({f.linked})" if f.linked else "")))
        summary = (f"{plural(len(flows), 'connection')} reached {vantage} from {source}, which the correlated captures "
                   f"show is the load balancer's side of a {flows[0].mode} connection: the back-end never sees the "
                   "real client address, and no PROXY header or XCLIENT passes it on.")
        yield Finding(kind=KIND, severity=ERROR, vantages=vantages, summary=summary, evidence=tuple(sorted(evidence)),
                      connections=corr.uids_of(f.key for f in flows), subject=source)


class Collector:
    """Fed every service connection in judge's one pass. Idle (judge does not feed it) when the
    topology has neither a load-balancer address nor a VIP: snat_source() is then None for all."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.lost = defaultdict(list)
        sources = ctx.lb_ips | ctx.vips
        self.idle = not sources

        def observe(c) -> None:
            if c.client_ip not in sources:
                return  # snat_source(): a load-balancer address or the VIP, or nothing
            why = snat_source(ctx, c)
            s = c.smtp
            if why is not None and (s is None or (s.proxy is None and s.xclient is None)):
                self.lost[(c.server_ip, c.client_ip)].append((c, why))
        self.observe = observe

    def findings(self) -> Iterator[Finding]:
        ctx = self.ctx
        for (server, client), items in sorted(self.lost.items()):
            evidence = []
            for c, _ in items:
                if c.packets and len(evidence) < MAX_EVIDENCE:
                    evidence.append(ctx.ref(c.packets[0], c, f"connection from {c.client_ip}:{c.client_port} to {server}:{c.server_port}"))
            summary = (
                f"{plural(len(items), 'connection')} reached {server} from {client} ({items[0][1]}); "
                "the back-end never sees the real client address, and no PROXY header or XCLIENT passes it on."
            )
            mac = items[0][0].resp_l2[0][0] if items[0][0].resp_l2 else None
            yield Finding(
                kind=KIND, severity=ERROR, vantages=(ctx.vantage,), summary=summary, evidence=tuple(sorted(evidence)),
                connections=tuple(c.uid for c, _ in items), backend=ctx.backend(mac, server), subject=client,
            )
