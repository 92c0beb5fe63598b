"""vip_claimed_by_several_macs: two or more MACs answer ARP/NDP for one VIP.

Always an error, even before the rightful owner is known: exactly one device may answer for the
VIP. Claims that overlap (two MACs within a second, or the VIP taken back and forth) are a
conflict; one MAC taking over from another once is a move (a docked laptop, an HA failover
announced from the new primary's MAC) and no finding; a load balancer given with --lb-mac holds it whether or not its own answer was captured, so
one other claimant is enough. When one of the claimants is a known back-end, its arp_reply_for_vip_from_backend is the
cause and this its consequence (findings/causes.py links them by the VIP, their subject); two
load balancers (an HA pair in split brain, two devices given one VIP) stay the cause themselves.
"""

from __future__ import annotations

from typing import Iterator

from dsrdiag.findings.context import Context, claim_conflict
from dsrdiag.findings.finding import ERROR, MAX_EVIDENCE, Finding, times
from dsrdiag.findings.kind import Entry
from dsrdiag.findings.kinds.arp_reply_for_vip_from_backend import claim_evidence

ENTRY = Entry(
    kind="vip_claimed_by_several_macs",
    severity=ERROR,
    title="Several MACs answer ARP/NDP for the VIP",
    explanation=(
        "More than one MAC address claimed the VIP (ARP replies, gratuitous ARP, neighbour advertisements). "
        "Routers and clients then send the VIP's traffic to whichever answered last: connections go past "
        "the load balancer to one host, or flip between hosts mid-session. Exactly one device, the load "
        "balancer (or the active member of its HA pair), may answer for the VIP."
    ),
    decided=(
        "Two or more distinct MACs in ARP/NDP answers for one VIP in one capture. When the behaviour on the "
        "wire tells which claimant is a back-end (it sends SYN-ACKs from the VIP, or receives the VIP's "
        "frames re-sent by the load balancer), that back-end's arp_reply_for_vip_from_backend is the cause "
        "and this finding its consequence; otherwise this is the cause, with every claimant named."
    ),
    seen_from=(
        "A capture on the VIP's segment that sees the answers: the router's or firewall's inside leg (it "
        "asks), a SPAN of the server LAN, a back-end that answers. Not from the client's side of a router."
    ),
    windows=(
        "On a Windows back-end, the VIP belongs on the KM-TEST loopback adapter only, never on the LAN "
        "adapter; `Get-NetIPAddress -IPAddress <VIP>` must list only the loopback."
    ),
    linux=(
        "On a Linux back-end: VIP/32 on `lo` only, `sysctl -w net.ipv4.conf.all.arp_ignore=1 "
        "net.ipv4.conf.all.arp_announce=2` (and on the LAN interface); for IPv6 the VIP on `lo` with "
        "`nodad`, never on the LAN interface."
    ),
    load_balancer=(
        "Two load balancers claiming one VIP is an HA pair in split brain or two devices configured with the "
        "same VIP: NetScaler `show ha node` (one primary), F5 `tmsh show sys failover` and traffic-group "
        "state, Kemp HA status, keepalived: one MASTER per VRRP instance (check `virtual_router_id` clashes)."
    ),
)

KIND = ENTRY.kind


def check(ctx: Context) -> Iterator[Finding]:
    nt = ctx.records.neighbours
    given_lb = sorted(m for m, src in ctx.topology.lb_macs if src == "given")
    for vip in sorted(ctx.vips):
        claims = nt.claims.get(vip, ())
        macs = sorted({c.mac for c in claims})
        # the load balancer the user gave holds the VIP whether or not its own answer was captured;
        # otherwise MACs that claim it at the same time, or back and forth: one MAC after another
        # once is a move (a failover announced from the new MAC), not a conflict
        if given_lb and set(macs) - set(given_lb):
            holders = sorted(set(macs) | set(given_lb))
        else:
            holders = claim_conflict(claims)
            if nt.mac_changes.get(vip, 0) >= 2 and len(macs) > 1:
                holders = macs  # back and forth, beyond the claims kept as evidence
        if len(holders) < 2:
            continue
        evidence = []
        for mac in macs:
            evidence += claim_evidence(ctx, vip, claims, mac)[: max(2, MAX_EVIDENCE // len(macs))]
        counts = [f"{m} {times(nt.claim_counts.get((vip, m), 0))}" if m in macs else f"{m} (given as the load balancer)"
                  for m in holders]
        changes = nt.mac_changes.get(vip, 0)  # exact, whatever sample of the claims is kept
        roles = [f"{m} is the load balancer" if m in ctx.lb_macs else f"{m} is a back-end"
                 for m in holders if m in ctx.lb_macs or ctx.is_backend_mac(m)]
        summary = (f"VIP {vip} is claimed by {len(holders)} MACs: {', '.join(counts)}"
                   + (f"; {'; '.join(roles)}" if roles else "; none of them is seen serving the VIP's connections here")
                   + (f". The VIP's MAC changed {times(changes)}." if changes else "."))
        yield Finding(kind=KIND, severity=ERROR, vantages=(ctx.vantage,), summary=summary,
                      evidence=tuple(sorted(evidence[:MAX_EVIDENCE])), subject=vip)
