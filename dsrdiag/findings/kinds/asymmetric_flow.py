"""asymmetric_flow: only one direction of a connection passes this point.

At one capture (Collector), five shapes: the client's SYN and then its ACKs/data with no server
packet (the SYN-ACK went another way: Zeek's possible_split_routing); a lone SYN never
retransmitted although the capture went on long enough (the client was answered, not through
here); the server's SYN-ACK/data with no client packet (the request came another way); requests
to one router and routed replies from another (the client's side of a bypass); a server repeating
its SYN-ACK for an ACK that never comes while the client sent its SYN once (the server's side).
Connections the load balancer forwarded, at its own interface, are not reported: one-way is the
design of DSR there. A capture where everything is one-sided the same way is capture_one_sided's
(which then explains these).

Across captures (decide_path): a reply seen beyond the firewall (at the client side) but at none
of its legs while they were capturing went around it. That finding names the bypassed segment
(`between`) and is the cause of the per-capture findings on the same connections.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from dsrdiag.core.evidence import FrameRef
from dsrdiag.decode.tcp import ACK, SYN
from dsrdiag.findings.context import NOT_RETRIED_NS, Context, first
from dsrdiag.findings.finding import ERROR, MAX_EVIDENCE, Finding, plural
from dsrdiag.findings.kind import Entry
from dsrdiag.track.facts import HOPS_OF
from dsrdiag.track.history import FLAGS, NO_ORIG_AFTER_SYNACK, ORIG_PROGRESS, RESP_DATA, SAW_SYN, SYNACK, SYNS_ONLY
from dsrdiag.track.records import ORIG, RESP

ENTRY = Entry(
    kind="asymmetric_flow",
    severity=ERROR,
    title="Only one direction of the connection passes this point",
    explanation=(
        "At this vantage point only one direction of the connection was seen. If this point is a "
        "stateful firewall, it sees half a conversation: with the SYN but no SYN-ACK, the "
        "client's next packets are invalid for its state table and dropped; with a SYN-ACK but "
        "no SYN, the reply itself is dropped. In DSR the reply leaves the back-end with the VIP "
        "as source towards the back-end's default gateway: if that is not the device the request "
        "came through, the flow is asymmetric."
    ),
    decided=(
        "At one capture: a connection whose client sent a SYN and then ACKs or data without any packet "
        "from the server in between (the client got its SYN-ACK another way: Zeek's "
        "possible_split_routing); a lone SYN never retransmitted although the capture went on 3.5 s "
        "after it (longer than any stack's first retransmission: the client was answered, not here); "
        "the client's packets sent to one router while the replies arrive, routed, from another; a "
        "server repeating its SYN-ACK for an ACK that never comes while the client sent its SYN once "
        "(the client got it: its ACK is lost on the request path); "
        "or the server's SYN-ACK and data without any packet from the client. Connections the load "
        "balancer forwarded, at its own interface, are not reported (one-way is the design of DSR). "
        "Across captures: a reply seen at the client side but at neither firewall leg while both were "
        "capturing; that finding names the segment it bypassed (`between`) and is the cause of the "
        "per-capture ones on the same connections."
    ),
    seen_from=(
        "A capture at the device that must see both directions (the firewall's inside and "
        "outside). If every connection in a capture is one-sided in the same direction, suspect "
        "the capture first: a SPAN or tap that mirrors only one direction looks the same."
    ),
    windows=(
        "Make the firewall that forwarded the request the back-end's gateway for client traffic: "
        "one default gateway only (`Get-NetRoute -DestinationPrefix 0.0.0.0/0`), or a persistent "
        "route for the client networks: `route -p add <client-net> mask <mask> <firewall-ip>`. "
        "If the design is asymmetric on purpose, the firewall must allow it for the VIP (TCP "
        "state bypass, asymmetric-routing settings)."
    ),
    linux=(
        "Make the back-ends' return path pass the firewall: default route via the firewall, or a "
        "policy route for traffic from the VIP (`ip rule add from VIP lookup 100; ip route add "
        "default via <firewall> table 100`). A Linux firewall drops such flows as `ct state "
        "invalid`; exempting the VIP flows or `nf_conntrack_tcp_loose=1` accepts them knowingly."
    ),
    load_balancer=(
        "If the firewall must see both directions, the back-ends' default gateway must be the firewall (not another router); in DSR the replies leave the back-ends directly, so the LB cannot fix this. Otherwise let the firewall accept the asymmetric flow for this service (see the firewall fix above)."
    ),
    scope="capture, path"
)

KIND = ENTRY.kind
REPLY_MISSING, NOT_RETRIED, REQUEST_MISSING = "reply", "not-retried", "request"
OTHER_ROUTER, ACK_MISSING = "other-router", "ack-missing"


def _synacks(c) -> int:
    return sum(1 for n in c.packets if n.direction == RESP and n.flags & SYN and n.flags & ACK)


class Collector:
    """Fed every service connection in judge's one pass. Idle (judge does not feed it) when the
    topology has no VIP and no back-end address: it judges connections to those only."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.groups: dict = defaultdict(list)
        self.idle = not ctx.servers
        self.observe = self._observer()

    def _observer(self):
        """observe(c), with what it reads of the context bound once (it runs for every connection);
        the history is read as bits (track/history.py)."""
        ctx, groups = self.ctx, self.groups
        servers, elsewhere, backend_of = ctx.servers, ctx.answered_elsewhere, ctx.backend_of
        lb_interface, end_ts = ctx.lb_interface, ctx.end_ts

        def observe(c) -> None:
            if c.server_ip not in servers:
                return
            f = FLAGS[c.history]
            if not c.resp_pkts:
                if not f & SAW_SYN:
                    return  # neither the first shape nor the others (they need a server packet)
                if ctx.forwarded_by_lb(c) or (lb_interface and c.orig_forwarded > 0):
                    return  # the LB's own view of DSR: replies go around it by design
                if elsewhere and (c.client_ip, c.client_port, c.server_port) in elsewhere:
                    return  # answered from a real address: return_source_not_vip's
                if f & ORIG_PROGRESS:
                    groups[(REPLY_MISSING, backend_of(c))].append(c)
                elif f & SYNS_ONLY and len(c.syn_frames) == 1 and end_ts - c.first_ts_ns >= NOT_RETRIED_NS:
                    groups[(NOT_RETRIED, backend_of(c))].append(c)  # only SYNs, and not_retried
            elif not c.orig_pkts:
                if f & (SYNACK | RESP_DATA):
                    groups[(REQUEST_MISSING, backend_of(c))].append(c)
            elif c.orig_l2 and c.resp_l2:
                to_gw, from_gw = c.orig_l2[0][1], c.resp_l2[0][0]
                if to_gw and from_gw and to_gw != from_gw and HOPS_OF(c.resp_ttl):
                    # both directions routed here, through different routers: the reply path is another one
                    groups[(OTHER_ROUTER, backend_of(c))].append(c)
                elif f & NO_ORIG_AFTER_SYNACK and len(c.syn_frames) == 1 \
                        and end_ts - c.first_ts_ns >= NOT_RETRIED_NS and _synacks(c) > 1:  # the notes are read last
                    # the server repeats its SYN-ACK, the client never repeats its SYN: the client got it,
                    # and its ACK never reaches the server: the request path drops what the reply path began
                    groups[(ACK_MISSING, backend_of(c))].append(c)
        return observe

    def findings(self) -> Iterator[Finding]:
        ctx = self.ctx
        for (case, backend), cs in sorted(self.groups.items(), key=lambda kv: (kv[0][0], kv[0][1].name if kv[0][1] else "")):
            evidence = []
            for c in cs:
                if len(evidence) >= MAX_EVIDENCE:
                    break
                if case == REQUEST_MISSING:
                    sa = first(c.packets, lambda n: n.direction == RESP and n.flags & SYN)
                    data = first(c.packets, lambda n: n.direction == RESP and n.payload_len)
                    for n, what in ((sa, "SYN-ACK with no SYN seen here"), (data, "server data, no client packet seen here")):
                        if n:
                            evidence.append(ctx.ref(n, c, f"{what} ({c.server_ip}:{c.server_port} -> {c.client_ip}:{c.client_port})"))
                    continue
                if case in (OTHER_ROUTER, ACK_MISSING):
                    for n in [n for n in c.packets if n.direction == RESP and n.flags & SYN][:2]:
                        evidence.append(ctx.ref(n, c, f"SYN-ACK from MAC {n.src_mac or '?'}"))
                syn = c.syn_frames[0] if c.syn_frames else None
                if syn:
                    evidence.append(ctx.ref(syn, c, f"SYN {c.client_ip}:{c.client_port} -> {c.server_ip}:{c.server_port}"
                                            + (", never retransmitted" if case == NOT_RETRIED else "")))
                ack = first(c.packets, lambda n: n.direction == ORIG and n.flags & ACK and not n.flags & SYN)
                if ack:
                    evidence.append(ctx.ref(ack, c, "client ACKs a SYN-ACK that never passed this point"))
            if case == REQUEST_MISSING:
                summary = f"{plural(len(cs), 'connection')} seen server->client only; no client->server packet passed this vantage."
                subject = "request missing"
            elif case == OTHER_ROUTER:
                c0 = cs[0]
                summary = (f"{plural(len(cs), 'connection')}: the client's packets go to router {c0.orig_l2[0][1]}, the "
                           f"replies come back from another one, {c0.resp_l2[0][0]}: the return path is not the request path.")
                subject = "reply by another router"
            elif case == ACK_MISSING:
                summary = (f"{plural(len(cs), 'connection')}: the server retransmits its SYN-ACK and no ACK arrives, while the "
                           "client sent its SYN once: the client got the SYN-ACK, and its ACK is lost on the request path "
                           "(a stateful firewall that never saw the SYN-ACK drops it).")
                subject = "ack missing"
            elif case == REPLY_MISSING:
                summary = (f"{plural(len(cs), 'connection')} seen client->server only: the client acknowledged a SYN-ACK "
                           "that never passed this vantage.")
                subject = "reply missing"
            else:
                summary = (f"{plural(len(cs), 'connection')} seen client->server only: one SYN each, never retransmitted "
                           "although the capture went on; the client was answered, but not through this point.")
                subject = "reply missing"
            yield Finding(
                kind=KIND, severity=ERROR, vantages=(ctx.vantage,), summary=summary,
                evidence=tuple(sorted(evidence)), connections=tuple(c.uid for c in cs), backend=backend,
                subject=subject,
            )


def decide_path(corr) -> Iterator[Finding]:
    """Replies that reached the client side without passing any firewall leg (correlate/paths.py
    gathers them as `corr.bypasses`: firewall vantages -> [(flow key, PacketPath)])."""
    for fw_vs, items in sorted(corr.bypasses.items()):
        conns = sorted({f"{fk[0]}:{fk[1]}" for fk, _ in items})
        evidence, gateways = [], set()
        for fk, pp in items[:6]:
            start, end = pp.hops[0], pp.hops[-1]
            if start.dst_mac:
                gateways.add(start.dst_mac)
            evidence.append(FrameRef(start.ts_ns, corr.captures[start.vantage], start.vantage, start.frame,
                                     f"{pp.label} reply of {fk[0]}:{fk[1]} leaves {start.vantage} towards MAC {start.dst_mac}"))
            evidence.append(FrameRef(end.ts_ns, corr.captures[end.vantage], end.vantage, end.frame,
                                     f"the same reply reaches {end.vantage}; {', '.join(fw_vs)} never saw it"))
        summary = (f"replies of {plural(len(conns), 'connection')} reached the client without passing the firewall "
                   f"({', '.join(fw_vs)} never saw them); they left the back-end towards "
                   f"{', '.join(sorted(gateways)) or 'another gateway'}: the return path bypasses the firewall.")
        yield Finding(kind=KIND, severity=ERROR, vantages=tuple(fw_vs), between=(fw_vs[0], fw_vs[-1]),
                      summary=summary, evidence=tuple(sorted(evidence)),
                      connections=corr.uids_of(fk for fk, _ in items), subject="reply bypasses the firewall")
