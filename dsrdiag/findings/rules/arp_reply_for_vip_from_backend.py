"""arp_reply_for_vip_from_backend: a MAC other than the load balancer's claims the VIP in ARP/NDP.

With a known LB MAC every other claimant is named (and mapped to a back-end where it is one);
without one, several claimants are reported as a conflict, as a warning, because the tool cannot
tell which of them is the load balancer. Changes of the VIP's MAC are cited as evidence.
"""

from __future__ import annotations

from typing import Iterator

from dsrdiag.findings.context import Context
from dsrdiag.findings.finding import ERROR, MAX_EVIDENCE, WARNING, Finding, plural

KIND = "arp_reply_for_vip_from_backend"
_KIND_TEXT = {
    "arp-reply": "ARP reply",
    "arp-gratuitous": "gratuitous ARP",
    "nd-advert": "neighbour advertisement",
    "nd-dad": "duplicate address detection probe",
}


def check(ctx: Context) -> Iterator[Finding]:
    nt = ctx.records.neighbours
    for vip in sorted(ctx.vips):
        claims = nt.claims.get(vip, ())
        macs = sorted({c.mac for c in claims})
        if not macs:
            continue
        if ctx.lb_macs:
            offenders = [m for m in macs if m not in ctx.lb_macs]
            severity = ERROR
        elif len(macs) > 1:
            offenders = macs
            severity = WARNING
        else:
            continue
        changes = [
            (prev, cur) for prev, cur in zip(claims, claims[1:]) if prev.mac != cur.mac
        ]
        for mac in offenders:
            own = [c for c in claims if c.mac == mac]
            count = nt.claim_counts.get((vip, mac), len(own))
            evidence = [
                ctx.frame(c.frame, c.ts_ns, f"{_KIND_TEXT[c.kind]}: {vip} is at {mac}"
                          + (f" (sent by {c.src_mac})" if c.src_mac and c.src_mac != mac else ""))
                for c in own[:4]
            ]
            cited = {c.frame for c in own[:4]}
            for prev, cur in changes:
                if mac in (prev.mac, cur.mac) and len(evidence) < MAX_EVIDENCE and cur.frame not in cited:
                    evidence.append(ctx.frame(cur.frame, cur.ts_ns, f"VIP {vip} moves from {prev.mac} to {cur.mac}"))
            kinds = sorted({_KIND_TEXT[c.kind] for c in own})
            others = [m for m in macs if m != mac]
            if severity == ERROR:
                summary = (
                    f"{mac} claimed VIP {vip} {plural(count, 'time')} ({', '.join(kinds)}); "
                    f"the load balancer is {', '.join(sorted(ctx.lb_macs))}."
                )
            else:
                summary = (
                    f"VIP {vip} is claimed by {len(macs)} MACs ({', '.join(macs)}); {mac} claimed it "
                    f"{plural(count, 'time')} ({', '.join(kinds)}). The load balancer's MAC "
                    "is not known here, so the offender cannot be told apart: give --lb-mac."
                )
            if changes:
                summary += f" The VIP's MAC changed {plural(len(changes), 'time')}."
            yield Finding(
                kind=KIND, severity=severity, vantages=(ctx.vantage,), summary=summary,
                evidence=tuple(sorted(evidence)), backend=ctx.backend(mac) if severity == ERROR else None,
                subject=f"{vip} claimed by {mac}" + (f" and {', '.join(others)}" if severity == WARNING and others else ""),
            )
