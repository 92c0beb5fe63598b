"""The lab's scenarios: one healthy site and one per DSR fault, each with the proof of its fault.

Each scenario says how the site differs from a healthy one, which back-ends are broken, the
findings dsrdiag is expected to report at each vantage (the end-to-end tests and docs/lab.md read
this), and `proof`: tcpdump filters over the captures that show the fault happened, checked
without dsrdiag (the lab is the analyser's independent ground truth).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dsrdiag.lab.site import BE1, BE2, LB, VIP4, VIP6

# fault names
ARP_LEAK, WRONG_SOURCE, ASYM_BYPASS, VIP_MISSING = "arp_leak", "wrong_source", "asym_bypass", "vip_missing"


@dataclass(frozen=True)
class Proof:
    vantage: str
    bpf: str
    want: str
    """'some' (at least one packet matches) or 'none'."""
    means: str


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    ipv6: bool = False
    mode: str = "dsr"
    """dsr (MAC rewrite + fwd) or fullnat (DNAT + SNAT on the load balancer)."""
    fault: str | None = None
    broken: tuple[str, ...] = ()
    """Roles of the back-ends that carry the fault."""
    expected: dict[str, frozenset[str]] = field(default_factory=dict)
    """vantage -> the finding kinds dsrdiag must report there (errors and warnings; absent = none)."""
    proofs: tuple[Proof, ...] = ()
    sessions_ok: str = "all"
    path_expected: dict[str, frozenset[str]] = field(default_factory=dict)
    """Findings only the captures together show (correlated paths), by their vantage ("fw-out->fw-in")."""
    """What the client must see: all sessions ok, none ok, or some ok."""


def _v(ipv6: bool) -> str:
    return VIP6 if ipv6 else VIP4


def _host(ipv6: bool) -> str:
    return "host"  # pcap-filter's `host` matches IPv4 and IPv6 addresses alike


def _arp(ipv6: bool, mac: str) -> str:
    if ipv6:
        return f"ether src {mac} and icmp6 and ip6[40] == 136"
    return f"ether src {mac} and arp and arp[6:2] == 2"


def _syn(ipv6: bool) -> str:
    return "ip6[53] & 0x12 == 0x02" if ipv6 else "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn"


def _synack(ipv6: bool) -> str:
    return "ip6[53] & 0x12 == 0x12" if ipv6 else "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)"


def _build(ipv6: bool) -> list[Scenario]:
    sfx = "-6" if ipv6 else ""
    vip = _v(ipv6)
    h = _host(ipv6)
    be_ip = lambda b: b.ip6 if ipv6 else b.ip4  # noqa: E731
    S = frozenset
    return [
        Scenario(
            "healthy" + sfx, "a healthy DSR site: the LB answers ARP/NDP for the VIP and rewrites MACs; back-ends answer from the VIP",
            ipv6=ipv6,
            proofs=(Proof("client", f"src {h} {vip} and {_synack(ipv6)}", "some", "the client got SYN-ACKs from the VIP"),),
        ),
        Scenario(
            "arp_leak" + sfx, "both back-ends answer ARP/NDP for the VIP (Linux: arp_ignore=0/arp_announce=0; IPv6: the VIP on the LAN interface)",
            ipv6=ipv6, fault=ARP_LEAK, broken=("be1", "be2"),
            expected={"fw-in": S({"arp_reply_for_vip_from_backend"}), "be1": S({"arp_reply_for_vip_from_backend"}),
                      "be2": S({"arp_reply_for_vip_from_backend"})},
            proofs=tuple(Proof(b.role, _arp(ipv6, b.mac), "some", f"{b.role} answered for the VIP") for b in (BE1, BE2)),
            sessions_ok="all",
        ),
        Scenario(
            "wrong_source" + sfx, "both back-ends send their replies from their real address (a source rewrite on egress); the firewall drops them",
            ipv6=ipv6, fault=WRONG_SOURCE, broken=("be1", "be2"),
            expected={"client": S({"syn_unanswered"}), "fw-out": S({"syn_unanswered"}), "fw-in": S({"return_source_not_vip"}),
                      "lb": S({"syn_unanswered"}), "be1": S({"return_source_not_vip"}), "be2": S({"return_source_not_vip"})},
            proofs=(Proof("fw-in", f"(src {h} {be_ip(BE1)} or src {h} {be_ip(BE2)}) and tcp src port 25 and {_synack(ipv6)}", "some",
                          "SYN-ACKs left a back-end from its real address"),
                    Proof("client", f"{_synack(ipv6)}", "none", "the firewall dropped them: the client saw none")),
            sessions_ok="none",
            path_expected={"fw-in->fw-out": S({"firewall_drop"})},
        ),
        Scenario(
            "asym_bypass" + sfx, "both back-ends route replies through a second router that bypasses the stateful firewall",
            ipv6=ipv6, fault=ASYM_BYPASS, broken=("be1", "be2"),
            expected={"fw-out": S({"asymmetric_flow"}), "fw-in": S({"syn_unanswered"}), "lb": S({"syn_unanswered"})},
            proofs=(Proof("client", f"src {h} {vip} and {_synack(ipv6)}", "some", "the client got SYN-ACKs (by the bypass)"),
                    Proof("fw-out", f"src {h} {vip}", "none", "no reply passed the firewall")),
            sessions_ok="none",
            path_expected={"fw-out->fw-in": S({"firewall_drop"}), "fw-in/fw-out": S({"asymmetric_flow"})},
        ),
        Scenario(
            "vip_missing" + sfx, "the VIP is not configured on the back-ends: SYNs delivered to their MACs die",
            ipv6=ipv6, fault=VIP_MISSING, broken=("be1", "be2"),
            expected={"client": S({"syn_unanswered"}), "fw-out": S({"syn_unanswered"}), "fw-in": S({"syn_unanswered"}),
                      "lb": S({"syn_unanswered"}), "be1": S({"vip_not_on_backend"}), "be2": S({"vip_not_on_backend"})},
            proofs=(Proof("lb", f"ether src {LB.mac} and dst {h} {vip} and {_syn(ipv6)}", "some", "the LB forwarded SYNs"),
                    Proof("client", f"src {h} {vip}", "none", "nothing ever came back")),
            sessions_ok="none",
        ),
        Scenario(
            "snat" + sfx, "full NAT on the load balancer (DNAT to a back-end, SNAT to the LB's address): the back-ends never see the client",
            ipv6=ipv6, mode="fullnat",
            expected={"lb": S({"snat_client_ip_lost"}), "be1": S({"snat_client_ip_lost"}), "be2": S({"snat_client_ip_lost"})},
            proofs=(Proof("be1", f"src {h} {LB.ip6 if ipv6 else LB.ip4} and tcp dst port 25", "some", "be1 got connections from the LB's address"),),
        ),
        Scenario(
            "mixed" + sfx, "one healthy and one broken back-end: be1 is healthy, be2 lacks the VIP",
            ipv6=ipv6, fault=VIP_MISSING, broken=("be2",),
            expected={"client": S({"syn_unanswered"}), "fw-out": S({"syn_unanswered"}), "fw-in": S({"syn_unanswered"}),
                      "lb": S({"syn_unanswered"}), "be2": S({"vip_not_on_backend"})},
            proofs=(Proof("be1", f"src {h} {vip} and {_synack(ipv6)}", "some", "be1 answered from the VIP"),
                    Proof("be2", f"src {h} {vip}", "none", "be2 never answered")),
            sessions_ok="some",
        ),
    ]


SCENARIOS: dict[str, Scenario] = {s.name: s for s in _build(False) + _build(True)}


def get(name: str) -> Scenario:
    from dsrdiag.lab.netns import LabError

    try:
        return SCENARIOS[name]
    except KeyError:
        raise LabError(f"unknown scenario {name!r}: one of {', '.join(SCENARIOS)}") from None
