"""firewall_drop: packets that passed one firewall leg and never reached the other.

Judged from captures correlated along the path (correlate/paths.py gathers the packets last seen
at one leg while the next vantage was capturing: `corr.drops`); a drop is inferred only where the
next capture was running MARGIN before and after the packet's expected arrival, and only for
packets within the notes each connection keeps. The finding is about a segment of the path
(`between`); what made the packets invalid for the firewall (a wrong-source reply, a bypass) is
its cause (findings/causes.py).
"""

from __future__ import annotations

from typing import Iterator

from dsrdiag.core.evidence import FrameRef
from dsrdiag.findings.finding import ERROR, MAX_EVIDENCE, Finding, plural
from dsrdiag.findings.kind import PATH, Entry
from dsrdiag.track.records import ORIG

ENTRY = Entry(
    kind="firewall_drop",
    severity=ERROR,
    title="Packets pass one side of the firewall and never appear on the other",
    explanation=(
        "The same packet was captured on one side of the firewall and not on the other, although "
        "the other capture was running: the firewall dropped it (inferred from the captures; its "
        "own counters or logs confirm it). In DSR this is how half conversations die: the client's "
        "ACKs after a SYN-ACK that took another path, or SYN-ACKs from a back-end's real address, "
        "are invalid for the firewall's state table."
    ),
    decided=(
        "Captures named by their place on the path (client, fw-out, fw-in, lb, be...) are matched "
        "packet by packet on addresses, ports, sequence and acknowledgement numbers, flags and "
        "length; a packet whose last vantage is one side of the firewall, while the next vantage on "
        "its way was capturing at that time, is reported with the frame where it was last seen."
    ),
    seen_from="Captures on both sides of the firewall, analysed together.",
    windows="Fix what the firewall rejects: the return path (asymmetric_flow) or the reply's source (return_source_not_vip), not the firewall rule.",
    linux="On a Linux firewall `nft list ruleset` counters (`ct state invalid counter drop`) and `conntrack -E` confirm the drop; fix the path or the source address that makes the packets invalid.",
    load_balancer=(
        "Not on the load balancer: the firewall between the two vantages dropped packets of the connection; see the cause it is explained by."
    ),
    scope=PATH
)

KIND = ENTRY.kind


def decide_path(corr) -> Iterator[Finding]:
    for (d, a, b), items in sorted(corr.drops.items()):
        conns = sorted({f"{fk[0]}:{fk[1]}" for fk, _ in items})
        way = "client->server" if d == ORIG else "server->client"
        evidence = []
        for fk, pp in items[:MAX_EVIDENCE // 2]:
            h = pp.hops[-1]
            evidence.append(FrameRef(h.ts_ns, corr.captures[h.vantage], h.vantage, h.frame,
                                     f"{pp.label} {way} of {fk[0]}:{fk[1]}: last seen here, not at {b}"))
            if len(pp.hops) > 1:  # where it came from: the packet before the firewall, for the record
                h0 = pp.hops[0]
                evidence.append(FrameRef(h0.ts_ns, corr.captures[h0.vantage], h0.vantage, h0.frame,
                                         f"the same {pp.label} earlier on its path"))
        summary = (f"{plural(len(items), 'packet')} of {plural(len(conns), 'connection')} passed {a} and never reached {b} "
                   f"({way}), although {b} was capturing: inferred drop by the firewall between them.")
        yield Finding(kind=KIND, severity=ERROR, vantages=(a, b), between=(a, b), summary=summary,
                      evidence=tuple(sorted(evidence)), connections=corr.uids_of(fk for fk, _ in items), subject=way)
