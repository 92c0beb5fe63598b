"""lb_mode_mixed: the load balancer handles connections to the service in different ways.

Judged from captures correlated along the path: correlate/paths.py tells each connection's mode
from its packets (DSR, NAT, SNAT, full NAT, tunnel, proxy with or without PROXY protocol or
XCLIENT); two modes among the front legs of one service is a configuration split (two virtual
servers, a fallback pool, a member in another mode).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from dsrdiag.core.evidence import FrameRef
from dsrdiag.findings.finding import ERROR, Finding, plural
from dsrdiag.findings.kind import PATH, Entry

ENTRY = Entry(
    kind="lb_mode_mixed",
    severity=ERROR,
    title="The load balancer reaches back-ends in different modes",
    explanation=(
        "Some connections reach a back-end in one way (e.g. DSR: addresses kept, MAC rewritten) "
        "and others in another (NAT: addresses rewritten; a tunnel; a full proxy: a new connection "
        "from the load balancer, with or without PROXY protocol or XCLIENT). The back-ends then see "
        "some clients by their own address and others as the load balancer, and reply by different "
        "paths: relay rules and logs disagree between connections, and only some of them survive a "
        "firewall."
    ),
    decided=("Connections matched between the client side and a back-end capture: by the client's ISN "
             "(DSR, tunnel, NAT: their addresses compared), or by SMTP payload and timing (full proxy)."),
    seen_from="A client-side capture and back-end captures analysed together.",
    windows="Put every real server of the virtual service in the same forwarding mode on the load balancer (all DSR), and configure each for it (KM-TEST loopback with the VIP, weak host send/receive).",
    linux="Use one forwarding method for all real servers of the virtual service (e.g. all `ipvsadm -g`), with the VIP on lo and arp_ignore/arp_announce on each.",
    scope=PATH
)

KIND = ENTRY.kind
ROLE_ORDER = {"client": 0, "fw-out": 1, "fw": 2, "fw-in": 3, "lb": 4, "be": 5}


def decide_path(corr) -> Iterator[Finding]:
    per_port: dict[int, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for f in corr.flows:
        if f.mode and f.leg != "back":
            per_port[f.server_port][f.mode].append(f)
    for port, by_mode in sorted(per_port.items()):
        if len(by_mode) > 1:
            yield _mixed(corr, port, by_mode)


def _mixed(corr, port: int, by_mode: dict) -> Finding:
    """One service (port) reached in several ways (a proxy on 587 beside DSR on 25 is no fault)."""
    parts = [f"{plural(len(fs), 'connection')} by {m}" for m, fs in sorted(by_mode.items())]
    evidence = []
    for m, fs in sorted(by_mode.items()):
        for f in fs[:3]:
            h = f.packets[0].hops[-1] if f.packets and f.packets[0].hops else None
            if h:
                evidence.append(FrameRef(h.ts_ns, corr.captures[h.vantage], h.vantage, h.frame, f"{f.client}: handled by {m}"))
    # where the modes show: the front legs' vantages and the back legs' (a proxy's back-end)
    order = {v: i for i, v in enumerate(dict.fromkeys(v for f in corr.flows for v in f.vantages))}
    seen = {v for f in corr.flows if f.mode for v in f.vantages}
    vantages = tuple(sorted(seen, key=lambda v: (ROLE_ORDER.get(corr.roles.get(v), 9) if corr.roles else 0, order[v])))
    return Finding(kind=KIND, severity=ERROR, vantages=vantages,
                  summary=f"the load balancer handles connections to port {port} in different ways: {', '.join(parts)}.",
                  evidence=tuple(sorted(evidence)),
                  connections=corr.uids_of(f.key for fs in by_mode.values() for f in fs),
                  subject=f"port {port}")
