"""capture_one_sided: the capture holds one direction of traffic only.

Every TCP connection in the capture (any port) is one-sided the same way, the side seen went on as
if answered (ACKs and data, not only retransmitted SYNs, which say the other side never spoke), and
nothing else in it shows the other direction (no ARP/NDP request beside an answer): that is a capture point that
mirrors one direction (SPAN rx only, one tap leg), not a network fault, and one warning about the
capture replaces an asymmetric_flow per connection (which it explains: findings/causes.py).
"""

from __future__ import annotations

from typing import Iterator

from dsrdiag.findings.context import Context
from dsrdiag.findings.finding import MAX_EVIDENCE, WARNING, Finding, plural
from dsrdiag.findings.kind import Entry
from dsrdiag.track.history import FLAGS, ORIG_PROGRESS, RESP_PROGRESS

ENTRY = Entry(
    kind="capture_one_sided",
    severity=WARNING,
    title="The capture holds one direction of traffic only",
    explanation=(
        "Every connection in this capture is one-sided in the same direction, and nothing else in it "
        "shows the other direction either. That is what a capture point that mirrors one direction looks "
        "like (a SPAN session with rx only, one leg of a tap, a capture filter on one host), and it "
        "would make every connection look like an asymmetric flow. The capture cannot judge replies."
    ),
    decided=(
        "At least two TCP connections, all with packets from one side only, and no ARP/NDP answer or other "
        "two-way traffic in the capture."
    ),
    seen_from="The capture itself; a capture taken elsewhere says nothing about this one.",
    windows="Capture both directions: in a SPAN session `both` (Cisco `monitor session 1 source interface Gi1/0/1 both`); in Wireshark/dumpcap, no one-way capture filter.",
    linux="Capture both directions: `tcpdump -i <iface> -w file.pcap` without `-Q in`/`--direction`; on a SPAN or tap, both legs.",
)

KIND = ENTRY.kind
MIN_CONNECTIONS = 2


def _both_ways(nt) -> bool:
    """ARP/NDP questions and answers both passed: the capture point sees both directions."""
    answers = any(c.kind in ("arp-reply", "nd-advert") for cls in nt.claims.values() for c in cls)
    return bool(answers and nt.requests)


class Collector:
    """Sees every connection of the capture, not only the service's (`all_ports`)."""

    all_ports = True

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.total = 0
        self.progressed = 0
        self.sides: set[str] = set()
        self.service: list = []
        """the first MAX_EVIDENCE service connections seen one-sided (the evidence)"""
        self.uids: list[str] = []
        """the uids of the first 10,000 (the finding names them)"""
        self.idle = ctx.lb_interface or _both_ways(ctx.records.neighbours)
        """Decided before the pass, as findings() would: the LB's own interface, or ARP/NDP questions
        and answers both in the capture. judge does not feed an idle collector."""

    def observe(self, c) -> bool:
        """Count `c`; True once two sides were seen (nothing later can make the capture one-sided:
        judge stops feeding it)."""
        self.total += 1
        side = "client->server" if not c.resp_pkts else "server->client" if not c.orig_pkts else "both"
        sides = self.sides
        sides.add(side)
        # the side seen went on as if answered (the client ACKs or sends data; the server sends data):
        # only then did the other direction exist; SYNs alone, retransmitted, were simply not answered
        if FLAGS[c.history] & (ORIG_PROGRESS if side == "client->server" else RESP_PROGRESS):
            self.progressed += 1
        if side != "both" and c.server_port in self.ctx.ports and len(self.uids) < 10_000:
            self.uids.append(c.uid)
            if len(self.service) < MAX_EVIDENCE:
                self.service.append(c)
        return len(sides) > 1 or side == "both"

    def claimed_rows(self, block) -> None:
        """observe() of a block of lone SYNs (findings/judge.py): one client SYN each, nothing more."""
        n = len(block)
        self.total += n
        self.sides.add("client->server")
        room = 10_000 - len(self.uids)
        if room > 0:
            ports, vantage = self.ctx.ports, block.vantage
            for t in block.rows():  # the first rows' uids; records only for the evidence
                if room <= 0:
                    break
                if t[8] in ports:
                    self.uids.append(f"{vantage}:C{t[0]}")
                    if len(self.service) < MAX_EVIDENCE:
                        self.service.append(block.connection(t))
                    room -= 1

    def findings(self) -> Iterator[Finding]:
        ctx = self.ctx
        if self.idle:
            return  # the LB's own interface in DSR (client->server only is the design, not the capture),
            # or ARP/NDP questions and answers both passed: the capture point sees both ways
        if self.total < MIN_CONNECTIONS or len(self.sides) != 1 or "both" in self.sides or not self.service \
                or self.progressed < MIN_CONNECTIONS:
            return
        side = next(iter(self.sides))
        evidence = []
        for c in self.service[:MAX_EVIDENCE]:
            n = (c.packets or c.syn_frames or (None,))[0]
            if n is not None:
                evidence.append(ctx.ref(n, c))
        yield Finding(
            kind=KIND, severity=WARNING, vantages=(ctx.vantage,),
            summary=(f"all {plural(self.total, 'TCP connection')} in this capture are seen {side} only, and no other "
                     "traffic shows the other direction: the capture point mirrors one direction; replies cannot be judged here."),
            evidence=tuple(sorted(evidence)), connections=tuple(self.uids), subject=side,
        )
