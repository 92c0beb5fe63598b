"""arp_reply_for_vip_from_backend: a back-end answers ARP/NDP for the VIP.

Who is a back-end comes from the topology (given, or inferred from behaviour on the wire: a MAC
that sends SYN-ACKs from the VIP, or receives VIP frames the load balancer re-sent), so no
--lb-mac is needed: at the firewall's inside leg the leaking back-end is named, and at a
back-end's own capture its own answer for the VIP is the leak. A claimant that is not a back-end
(a second load balancer, another host given the VIP) is vip_claimed_by_several_macs', which
names the load balancer beside it when it is known. Claimants that cannot be told apart are
vip_claimed_by_several_macs (its own module), which this finding explains when both are seen.
"""

from __future__ import annotations

from typing import Iterator

from dsrdiag.findings.context import Context, claim_conflict
from dsrdiag.findings.finding import ERROR, MAX_EVIDENCE, Finding, times
from dsrdiag.findings.kind import Entry

CLAIM_TEXT = {
    "arp-reply": "ARP reply",
    "arp-gratuitous": "gratuitous ARP",
    "nd-advert": "neighbour advertisement",
    "nd-dad": "duplicate address detection probe",
    "arp-request": "ARP request sent from it",
    "nd-solicit": "neighbour solicitation sent from it",
}

ENTRY = Entry(
    kind="arp_reply_for_vip_from_backend",
    severity=ERROR,
    title="A back-end answers ARP/NDP for the VIP",
    explanation=(
        "Only the load balancer may answer ARP (IPv6: neighbour advertisements) for the VIP. "
        "When a back-end answers too, routers and hosts on the segment send VIP traffic straight "
        "to that back-end, past the load balancer: one server takes the new connections its "
        "answer attracted, health checks and balancing stop applying to them, and each time the "
        "VIP's MAC flips in a router's cache, established connections break."
    ),
    decided=(
        "ARP replies, gratuitous ARP, neighbour advertisements and duplicate address detection "
        "probes for the VIP, grouped by the MAC that claims it. A claiming MAC that is not the "
        "load balancer's (given with --lb-mac, or inferred from the MAC that forwards VIP "
        "frames) is the finding; without a known load-balancer MAC, several MACs claiming the VIP "
        "is reported as a conflict. A change of the VIP's MAC between claims is cited as evidence."
    ),
    seen_from=(
        "Only a capture on the VIP's own segment (the server LAN, the load balancer, a back-end). "
        "A client or firewall-outside capture is on another segment and sees no ARP for the VIP: "
        "there dsrdiag says that it could not check this."
    ),
    windows=(
        "The VIP must be on the KM-TEST loopback adapter only, never on the LAN adapter or a NIC "
        "team (`Get-NetIPAddress -IPAddress VIP`); Windows does not answer ARP for an address on "
        "the loopback adapter. Remove a VIP from the LAN adapter with `Remove-NetIPAddress "
        "-IPAddress VIP -InterfaceAlias \"LAN\"`, disable NetBIOS over TCP/IP on the loopback "
        "adapter, then clear the router's ARP entry for the VIP."
    ),
    linux=(
        "On every back-end: `sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.all.arp_announce=2` "
        "and the same for the LAN interface (the kernel takes the maximum of `all` and the "
        "interface); persist in /etc/sysctl.d/. Keep the VIP only on lo as /32; for IPv6 use lo, "
        "/128 and `nodad`, never the LAN interface. Then flush the router's ARP/neighbour entry."
    ),
    load_balancer=(
        "Only the load balancer may answer for the VIP: NetScaler answers ARP for a VIP by default (`set ns ip <VIP> -arp ENABLED`); Kemp and F5 (a virtual address with ARP enabled) likewise; keepalived/LVS: the director holds the VIP in `virtual_ipaddress`, the real servers only on `lo` with arp_ignore/arp_announce. Clear the ARP cache of the router/firewall after fixing the back-end (`clear arp` / `ip neigh flush`)."
    )
)

KIND = ENTRY.kind


def claim_evidence(ctx: Context, vip: str, claims, mac: str) -> list:
    """The first answers `mac` sent for `vip`, and the moments the VIP's MAC moved to or from it."""
    own = [c for c in claims if c.mac == mac]
    evidence = [
        ctx.frame(c.frame, c.ts_ns, f"{CLAIM_TEXT[c.kind]}: {vip} is at {mac}"
                  + (f" (sent by {c.src_mac})" if c.src_mac and c.src_mac != mac else ""))
        for c in own[:4]
    ]
    cited = {c.frame for c in own[:4]}
    for prev, cur in zip(claims, claims[1:]):
        if prev.mac != cur.mac and mac in (prev.mac, cur.mac) and len(evidence) < MAX_EVIDENCE and cur.frame not in cited:
            evidence.append(ctx.frame(cur.frame, cur.ts_ns, f"VIP {vip} moves from {prev.mac} to {cur.mac}"))
    return evidence


def check(ctx: Context) -> Iterator[Finding]:
    nt = ctx.records.neighbours
    for vip in sorted(ctx.vips):
        claims = nt.claims.get(vip, ())
        macs = sorted({c.mac for c in claims})
        # the address is a VIP (held by a load balancer) only if the capture or the user says so: a
        # load balancer is known, the VIP was given, or other MACs contend for it; otherwise a server
        # answering for the address its clients connect to is just a server
        is_vip = bool(ctx.lb_macs) or any(v.ip == vip and v.source == "given" for v in ctx.topology.vips) \
            or len(claim_conflict(claims)) > 1
        for mac in macs:
            if mac in ctx.lb_macs or not ctx.is_backend_mac(mac) or not is_vip:
                continue  # the LB itself; or not known to be a back-end: vip_claimed_by_several_macs
            own = [c for c in claims if c.mac == mac]
            count = nt.claim_counts.get((vip, mac), len(own))
            kinds = sorted({CLAIM_TEXT[c.kind] for c in own})
            role = "a back-end (it serves the VIP's connections)"
            summary = f"{mac}, {role}, claimed VIP {vip} {times(count)} ({', '.join(kinds)})."
            others = [m for m in macs if m != mac]
            if others:
                summary += f" Also claiming it in this capture: {', '.join(others)}."
            yield Finding(
                kind=KIND, severity=ERROR, vantages=(ctx.vantage,), summary=summary,
                evidence=tuple(sorted(claim_evidence(ctx, vip, claims, mac)[:MAX_EVIDENCE])),
                backend=ctx.backend(mac), subject=vip,
            )
