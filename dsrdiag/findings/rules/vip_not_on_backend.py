"""vip_not_on_backend: SYNs the load balancer delivered to a back-end's MAC are never answered.

Runs before syn_unanswered and claims the connections it explains. A back-end that answered some
of the VIP connections delivered to it is not "missing the VIP": those SYNs stay with
syn_unanswered, which names the back-end.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from dsrdiag.findings.context import Context
from dsrdiag.findings.finding import ERROR, MAX_EVIDENCE, Finding, plural

KIND = "vip_not_on_backend"


class Collector:
    """Fed every service connection in judge's one pass (after return_source_not_vip's claims)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.per_mac = defaultdict(lambda: {"dead": [], "answered": 0})

    def observe(self, c) -> None:
        ctx = self.ctx
        if not ctx.vips or c.server_ip not in ctx.vips or c.uid in ctx.claimed or ctx.lb_view(c):
            return  # at the LB's own interface a back-end's answer is invisible: syn_unanswered says so
        mac = ctx.delivered_to(c)
        if mac is None:
            return
        if c.resp_pkts:
            self.per_mac[mac]["answered"] += 1
        elif c.saw_syn and set(c.history) <= {"S"} and ctx.settled(c):
            self.per_mac[mac]["dead"].append(c)

    def findings(self) -> Iterator[Finding]:
        ctx, per_mac = self.ctx, self.per_mac
        answered_elsewhere = {m: v["answered"] for m, v in per_mac.items()}
        for mac, v in sorted(per_mac.items()):
            dead = v["dead"]
            if not dead or v["answered"]:
                continue
            evidence = []
            for c in dead:
                ctx.claimed.add(c.uid)
                # cite the copies the load balancer sent to the back-end's MAC where they were captured
                delivered = [n for n in c.forwarded_frames if n.dst_mac == mac] or [n for n in c.syn_frames if n.dst_mac == mac]
                for s in delivered[:3]:
                    if len(evidence) < MAX_EVIDENCE:
                        evidence.append(ctx.ref(s, c, f"SYN to VIP {c.server_ip}:{c.server_port} delivered to MAC {s.dst_mac}"))
            others = sum(n for m, n in answered_elsewhere.items() if m != mac)
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
