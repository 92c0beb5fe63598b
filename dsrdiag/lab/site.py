"""The lab site as data: namespaces, links, addresses (documentation ranges only), MACs.

Why data: `up`, `down`, `status`, the tests and docs/lab.md all read the same description, and
`down` can remove everything by name even after a crash.

    client ── cnet bridge ──┬── fw (nftables, stateful) ── lan bridge ──┬── lb  (VIP on its LAN interface: answers ARP/NDP;
    198.51.100.7            │   .1 / 192.0.2.1                          │        netdev ingress: rewrite MACs, fwd)
                            └── byp (a router with no firewall) ────────┼── be1 192.0.2.11 (VIP on lo, smtpd)
                                198.51.100.254 / 192.0.2.254            ├── be2 192.0.2.12 (VIP on lo, smtpd)
                                                                        └── lb2 192.0.2.9 (the load balancer's HA peer:
                                                                             a standby; holds the VIP only in vip_claimed_twice)
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "dsrdiag-"
VIP4, VIP6 = "192.0.2.25", "2001:db8:25::25"
PORT = 25


@dataclass(frozen=True)
class Host:
    role: str
    ns: str
    ifname: str
    """The interface facing the server LAN (or the client LAN for the client)."""
    mac: str
    ip4: str
    ip6: str
    prefix4: int = 24
    prefix6: int = 64


CLIENT = Host("client", PREFIX + "client", "cl0", "02:00:00:00:01:07", "198.51.100.7", "2001:db8:51::7")
FW_OUT = Host("fw-out", PREFIX + "fw", "fwout", "02:00:00:00:01:01", "198.51.100.1", "2001:db8:51::1")
FW_IN = Host("fw-in", PREFIX + "fw", "fwin", "02:00:00:00:00:01", "192.0.2.1", "2001:db8:25::1")
LB = Host("lb", PREFIX + "lb", "lb0", "02:00:00:00:00:0a", "192.0.2.10", "2001:db8:25::10")
LB2 = Host("lb2", PREFIX + "lb2", "lb2eth", "02:00:00:00:00:0b", "192.0.2.9", "2001:db8:25::9")
BE1 = Host("be1", PREFIX + "be1", "be1eth", "02:00:00:00:00:11", "192.0.2.11", "2001:db8:25::11")
BE2 = Host("be2", PREFIX + "be2", "be2eth", "02:00:00:00:00:12", "192.0.2.12", "2001:db8:25::12")
BYP_OUT = Host("byp-out", PREFIX + "byp", "bypout", "02:00:00:00:01:fe", "198.51.100.254", "2001:db8:51::fe")
BYP_IN = Host("byp-in", PREFIX + "byp", "bypin", "02:00:00:00:00:fe", "192.0.2.254", "2001:db8:25::fe")
CNET = PREFIX + "cnet"
LAN = PREFIX + "lan"

BACKENDS = (BE1, BE2)
BANNER = {"be1": "mx1.lab.example", "be2": "mx2.lab.example"}
NAMESPACES = (CLIENT.ns, CNET, FW_IN.ns, LAN, LB2.ns, LB.ns, BE1.ns, BE2.ns, BYP_IN.ns)
# (host, bridge namespace, bridge name): every host interface is a veth whose peer is a bridge port.
# The order matters where several hosts answer one broadcast: the bridge floods a frame to its ports
# newest first, so hosts later in this list hear (and answer) an ARP/NDP request for the VIP earlier.
# lb2 comes before lb: where both claim the VIP the load balancer's answer comes first (arp_leak: be2's
# comes first of all, so be2 attracts the VIP's traffic; runner._standby says which answer is kept).
LINKS = (
    (CLIENT, CNET, "brc"), (FW_OUT, CNET, "brc"), (BYP_OUT, CNET, "brc"),
    (FW_IN, LAN, "brl"), (LB2, LAN, "brl"), (LB, LAN, "brl"), (BE1, LAN, "brl"), (BE2, LAN, "brl"), (BYP_IN, LAN, "brl"),
)
# where each vantage captures: (vantage, host)
VANTAGES = (("client", CLIENT), ("fw-out", FW_OUT), ("fw-in", FW_IN), ("lb", LB), ("be1", BE1), ("be2", BE2))


def vip(ipv6: bool) -> str:
    return VIP6 if ipv6 else VIP4


def addr(h: Host, ipv6: bool) -> str:
    return h.ip6 if ipv6 else h.ip4
