"""The lab's scenarios: one healthy site and one per DSR fault, each with the proof of its fault and
what an expert must conclude from each capture.

Each scenario says how the site differs from a healthy one and which back-ends are broken; `proofs`
are tcpdump filters over the captures that show the fault happened, checked without dsrdiag (the
lab is the analyser's independent ground truth); and the judgements: for each vantage analysed
alone and without any option (`dsrdiag analyze --format json be1.pcap`), and for all captures
together (with the run's topology.toml and without it), the finding kinds at error or warning
severity, the subset that are root causes there (explained by no other finding), and the verdict
state. Each judgement is derived from the packets physically present in that capture (`why` says
which), not from what the analyser happens to print; docs/lab.md shows them as a table
(`expectations_markdown`, kept current by a test).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dsrdiag.lab.site import BE1, BE2, BYP_OUT, CLIENT, LB, LB2, VANTAGES, VIP4, VIP6

# fault names
ARP_LEAK, WRONG_SOURCE, ASYM_BYPASS, VIP_MISSING = "arp_leak", "wrong_source", "asym_bypass", "vip_missing"
CONN_REFUSED, VIP_TWICE = "connection_refused", "vip_claimed_twice"

# verdict states and their exit codes (docs/exit-codes.md)
HEALTHY, BROKEN, INCONCLUSIVE = "healthy", "broken", "inconclusive"
EXIT = {HEALTHY: 0, BROKEN: 1, INCONCLUSIVE: 4}


@dataclass(frozen=True)
class Proof:
    vantage: str
    bpf: str
    want: str
    """'some' (at least one packet matches) or 'none'."""
    means: str


@dataclass(frozen=True)
class Judgement:
    """What dsrdiag must conclude from some captures: kinds, root causes, verdict."""

    kinds: frozenset[str]
    """The finding kinds at error or warning severity (info findings are not judged here)."""
    causes: frozenset[str]
    """The kinds among them that are root causes: some finding of that kind has explained_by null."""
    state: str
    """healthy, broken or inconclusive (nothing could be judged)."""
    why: str
    """Which packets in the capture(s) make it so."""

    @property
    def exit_code(self) -> int:
        return EXIT[self.state]


def healthy(why: str) -> Judgement:
    return Judgement(frozenset(), frozenset(), HEALTHY, why)


def blind(why: str) -> Judgement:
    """Nothing wrong can be seen and nothing could be judged: inconclusive, never healthy."""
    return Judgement(frozenset(), frozenset(), INCONCLUSIVE, why)


def broken(kinds: set[str], why: str, causes: set[str] | None = None) -> Judgement:
    causes = set(kinds) if causes is None else causes
    assert causes <= set(kinds) and causes, (kinds, causes)
    return Judgement(frozenset(kinds), frozenset(causes), BROKEN, why)


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    ipv6: bool = False
    mode: str = "dsr"
    """dsr (MAC rewrite + fwd) or fullnat (DNAT + SNAT on the load balancer)."""
    fault: str | None = None
    broken: tuple[str, ...] = ()
    """Roles of the back-ends that carry the fault (a finding naming any other back-end is wrong)."""
    alone: dict[str, Judgement] = field(default_factory=dict)
    """vantage -> the judgement of its capture analysed alone, with no option at all."""
    together: Judgement | None = None
    """All captures together, with the run's topology.toml."""
    bare: Judgement | None = None
    """All captures together without the topology (None: the same as `together`)."""
    between: dict[str, tuple[str, str]] = field(default_factory=dict)
    """kind -> (from, to): where a path-segment finding of the captures together lies."""
    proofs: tuple[Proof, ...] = ()
    sessions_ok: str = "all"
    """What the client must see: all sessions ok, none ok, or some ok."""

    @property
    def without_topology(self) -> Judgement:
        return self.bare or self.together


def _arp(ipv6: bool, mac: str) -> str:
    if ipv6:
        return f"ether src {mac} and icmp6 and ip6[40] == 136"
    return f"ether src {mac} and arp and arp[6:2] == 2"


def _syn(ipv6: bool) -> str:
    return "ip6[53] & 0x12 == 0x02" if ipv6 else "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn"


def _synack(ipv6: bool) -> str:
    return "ip6[53] & 0x12 == 0x12" if ipv6 else "tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)"


def _rst(ipv6: bool) -> str:
    return "ip6[53] & 0x04 != 0" if ipv6 else "tcp[tcpflags] & tcp-rst != 0"


def _not_syn(ipv6: bool) -> str:
    return "ip6[53] & 0x02 == 0" if ipv6 else "tcp[tcpflags] & tcp-syn == 0"


# the same physical facts recur across scenarios: one sentence each
_CLIENT_OK = "every session completes: SYN-ACK and banner from the VIP"
_LB_BLIND = ("the LB's own interface: client frames in to its MAC and out to a back-end's, no reply ever passes "
             "here in DSR (by design) and no SYN is retransmitted: nothing to judge")
_BE_OK = "SYNs to the VIP delivered to its MAC, answered from the VIP, sessions complete"
_SYN_DEAD = "SYNs to the VIP retransmitted, nothing ever comes back"


def _build(ipv6: bool) -> list[Scenario]:
    sfx = "-6" if ipv6 else ""
    vip = VIP6 if ipv6 else VIP4
    nd = "NDP" if ipv6 else "ARP"
    be_ip = lambda b: b.ip6 if ipv6 else b.ip4  # noqa: E731
    syn, synack, rst = _syn(ipv6), _synack(ipv6), _rst(ipv6)
    H = lambda why=_CLIENT_OK: healthy(why)  # noqa: E731

    # arp_leak: be2's answer is the first the firewall hears (LINKS order), so it gets every connection
    # and is the one back-end the captures show as a back-end. Over IPv6 be2 also solicits the
    # firewall's address from the VIP (the VIP is on its LAN interface): a neighbour solicitation whose
    # source is the VIP, with be2's MAC, which every host on the LAN hears and caches (RFC 4861 7.2.3).
    if ipv6:
        leak_lb = broken({"vip_claimed_by_several_macs"},
                         "its own NDP answer for the VIP, and be2's neighbour solicitation from the VIP with be2's MAC: "
                         "two MACs claim the VIP, neither seen acting as LB or back-end (no VIP traffic here)")
        leak_be1 = broken({"vip_claimed_by_several_macs"},
                          "its own NDP answer for the VIP and be2's solicitation from the VIP: two MACs claim it; be1 "
                          "carries no traffic, so nothing shows either is a back-end")
    else:
        leak_lb = blind("only its own ARP answer for the VIP (the other answers are unicast to the firewall) and no VIP "
                        "traffic at all: the firewall sends it to be2")
        leak_be1 = blind("only its own ARP answer for the VIP and no VIP traffic: nothing shows this host is a back-end "
                         "(the LB's own capture looks the same)")
    fw_leak = broken({"arp_reply_for_vip_from_backend", "vip_claimed_by_several_macs"},
                     f"be2, be1 and the LB all answer the firewall's {nd} request for the VIP; be2's MAC sends the "
                     "SYN-ACKs from the VIP, so be2 is a back-end leaking the VIP",
                     causes={"arp_reply_for_vip_from_backend"})

    # a full-NAT back-end's own capture: the LB asks for the back-end from its own address (ARP
    # request / neighbour solicitation: its address is on this segment, at its MAC), yet the
    # connections from that address arrive with the TTL of packets routed from further away: the LB
    # forwarded them with their source rewritten. Over IPv6 it also solicits from the VIP.
    _snat_be = broken({"snat_client_ip_lost"},
                      "the connections come from the LB's own address (its MAC announces it in its "
                      f"{nd} requests) with a routed TTL: the LB forwarded them with the source rewritten (SNAT)")

    return [
        Scenario(
            "healthy" + sfx, "a healthy DSR site: the LB answers ARP/NDP for the VIP and rewrites MACs; back-ends answer from the VIP",
            ipv6=ipv6,
            alone={"client": H(), "fw-out": H(), "fw-in": H(f"SYNs to the LB's MAC, SYN-ACKs from the VIP from be1's and be2's MACs; only the LB answers {nd}"),
                   "lb": blind(_LB_BLIND), "be1": H(_BE_OK), "be2": H(_BE_OK)},
            together=H("every vantage agrees; the LB's blindness is by design"),
            proofs=(Proof("client", f"src host {vip} and {synack}", "some", "the client got SYN-ACKs from the VIP"),),
        ),
        Scenario(
            "arp_leak" + sfx, "both back-ends answer ARP/NDP for the VIP (Linux: arp_ignore=0/arp_announce=0; IPv6: the VIP on the LAN interface)",
            ipv6=ipv6, fault=ARP_LEAK, broken=("be1", "be2"),
            alone={"client": H(f"every session completes (with be2 only); no {nd} for the VIP on this segment"),
                   "fw-out": H(f"every session completes; no {nd} for the VIP on this segment"),
                   "fw-in": fw_leak, "lb": leak_lb, "be1": leak_be1,
                   "be2": H(f"it won the {nd} race: the router sends it every connection directly and it serves "
                            "them all; its answer for the address is the only one it sees, no load balancer passes "
                            "it anything: from here the VIP looks like a plain server's own address (with --vip, or "
                            "beside any capture that shows the LB, the leak is named)")},
            together=broken({"arp_reply_for_vip_from_backend", "vip_claimed_by_several_macs"},
                            "three MACs claim the VIP; be1 and be2 are back-ends (the topology): the leaks are the "
                            "cause, the several claims their consequence",
                            causes={"arp_reply_for_vip_from_backend"}),
            bare=broken({"arp_reply_for_vip_from_backend", "vip_claimed_by_several_macs"},
                        "three MACs claim the VIP; be2's SYN-ACKs from the VIP make it a back-end (be1 carries no "
                        "traffic): be2's leak is the cause, the several claims its consequence",
                        causes={"arp_reply_for_vip_from_backend"}),
            proofs=tuple(Proof(b.role, _arp(ipv6, b.mac), "some", f"{b.role} answered for the VIP") for b in (BE1, BE2))
            + (Proof("fw-in", f"ether dst {BE2.mac} and dst host {vip} and {syn}", "some",
                     "the firewall sent the VIP's SYNs to be2, whose answer came first"),)
            + ((Proof("lb", f"ether src {BE2.mac} and src host {vip} and icmp6 and ip6[40] == 135", "some",
                      "be2 solicited a neighbour from the VIP, heard by the whole LAN"),) if ipv6 else ()),
            sessions_ok="all",
        ),
        Scenario(
            "wrong_source" + sfx, "both back-ends send their replies from their real address (a source rewrite on egress); the firewall drops them",
            ipv6=ipv6, fault=WRONG_SOURCE, broken=("be1", "be2"),
            alone={"client": broken({"syn_unanswered"}, _SYN_DEAD), "fw-out": broken({"syn_unanswered"}, _SYN_DEAD),
                   "fw-in": broken({"return_source_not_vip"}, "SYN-ACKs acknowledging the VIP's SYNs come from the back-ends' real addresses"),
                   "lb": broken({"syn_unanswered"}, "the LB forwards SYNs that the client retransmits: no answer reached the client by any path"),
                   "be1": broken({"return_source_not_vip"}, "it answers SYNs to the VIP from its real address"),
                   "be2": broken({"return_source_not_vip"}, "it answers SYNs to the VIP from its real address")},
            together=broken({"return_source_not_vip", "syn_unanswered", "firewall_drop"},
                            "the real-address SYN-ACKs enter the firewall (fw-in) and never leave it (fw-out); the client's "
                            "unanswered SYNs and the LB's view follow from the wrong source",
                            causes={"return_source_not_vip"}),
            between={"firewall_drop": ("fw-in", "fw-out")},
            proofs=(Proof("fw-in", f"(src host {be_ip(BE1)} or src host {be_ip(BE2)}) and tcp src port 25 and {synack}", "some",
                          "SYN-ACKs left a back-end from its real address"),
                    Proof("client", synack, "none", "the firewall dropped them: the client saw none")),
            sessions_ok="none",
        ),
        Scenario(
            "asym_bypass" + sfx, "both back-ends route replies through a second router that bypasses the stateful firewall",
            ipv6=ipv6, fault=ASYM_BYPASS, broken=("be1", "be2"),
            alone={"client": broken({"asymmetric_flow"},
                                    "its SYNs go to the firewall's MAC, the SYN-ACKs come from another router's MAC "
                                    f"({BYP_OUT.mac}), and the server retransmits its SYN-ACK although the client ACKed: "
                                    "the replies take another path and the ACKs die on this one"),
                   "fw-out": broken({"asymmetric_flow"}, "only the client's packets pass (SYN, ACKs, FIN), never one from the server"),
                   "fw-in": broken({"asymmetric_flow"},
                                   "each SYN passes once, is never retransmitted and never answered here: the client was "
                                   "answered by a path that bypasses this point"),
                   "lb": blind(_LB_BLIND + "; the client's ACKs never arrive, which a refusal elsewhere would explain as well"),
                   "be1": broken({"asymmetric_flow"},
                                 "it retransmits its SYN-ACKs and never gets an ACK, while the client never retransmits "
                                 "its SYN: the client got the SYN-ACK, its ACK dies on the request path"),
                   "be2": broken({"asymmetric_flow"},
                                 "it retransmits its SYN-ACKs and never gets an ACK, while the client never retransmits "
                                 "its SYN: the client got the SYN-ACK, its ACK dies on the request path")},
            together=broken({"asymmetric_flow", "firewall_drop"},
                            "the replies bypass the firewall (one cause); the firewall then drops the client's ACKs "
                            "(fw-out to fw-in) as invalid",
                            causes={"asymmetric_flow"}),
            between={"firewall_drop": ("fw-out", "fw-in")},
            proofs=(Proof("client", f"src host {vip} and {synack}", "some", "the client got SYN-ACKs (by the bypass)"),
                    Proof("client", f"ether src {BYP_OUT.mac} and src host {vip} and {synack}", "some",
                          "the SYN-ACKs came from the bypass router's MAC, not the firewall's"),
                    Proof("fw-out", f"src host {vip}", "none", "no reply passed the firewall"),
                    Proof("be1", f"src host {CLIENT.ip6 if ipv6 else CLIENT.ip4} and tcp and {_not_syn(ipv6)}", "none",
                          "no client packet after the SYN ever reached be1")),
            sessions_ok="none",
        ),
        Scenario(
            "vip_missing" + sfx, "the VIP is not configured on the back-ends: SYNs delivered to their MACs die",
            ipv6=ipv6, fault=VIP_MISSING, broken=("be1", "be2"),
            alone={"client": broken({"syn_unanswered"}, _SYN_DEAD), "fw-out": broken({"syn_unanswered"}, _SYN_DEAD),
                   "fw-in": broken({"syn_unanswered"}, _SYN_DEAD),
                   "lb": broken({"syn_unanswered"}, "the LB forwards SYNs that the client retransmits; whether a back-end "
                                "answered cannot be seen here"),
                   "be1": broken({"vip_not_on_backend"}, "SYNs to the VIP delivered to its own MAC, never answered"),
                   "be2": broken({"vip_not_on_backend"}, "SYNs to the VIP delivered to its own MAC, never answered")},
            together=broken({"vip_not_on_backend", "syn_unanswered"},
                            "the SYNs reach the back-ends and die there; every unanswered SYN upstream follows from it",
                            causes={"vip_not_on_backend"}),
            proofs=(Proof("lb", f"ether src {LB.mac} and dst host {vip} and {syn}", "some", "the LB forwarded SYNs"),
                    Proof("client", f"src host {vip}", "none", "nothing ever came back")),
            sessions_ok="none",
        ),
        Scenario(
            "snat" + sfx, "full NAT on the load balancer (DNAT to a back-end, SNAT to the LB's address): the back-ends never see the client",
            ipv6=ipv6, mode="fullnat",
            alone={"client": H(), "fw-out": H(),
                   "fw-in": H("SYNs to the LB's MAC and SYN-ACKs from the VIP from the LB's MAC: a NAT or proxy that works"),
                   "lb": broken({"snat_client_ip_lost"},
                                "each client SYN to the VIP leaves again, same port and sequence number, from the LB's own "
                                "address (the MAC that answers for the VIP) to a back-end's"),
                   "be1": _snat_be, "be2": _snat_be},
            together=broken({"snat_client_ip_lost"},
                            "the LB's capture shows its address replacing the client's, the back-ends receive only it"),
            proofs=(Proof("be1", f"src host {LB.ip6 if ipv6 else LB.ip4} and tcp dst port 25", "some", "be1 got connections from the LB's address"),),
        ),
        Scenario(
            "mixed" + sfx, "one healthy and one broken back-end: be1 is healthy, be2 lacks the VIP",
            ipv6=ipv6, fault=VIP_MISSING, broken=("be2",),
            alone={"client": broken({"syn_unanswered"}, "sessions hashed to be2: " + _SYN_DEAD),
                   "fw-out": broken({"syn_unanswered"}, "sessions hashed to be2: " + _SYN_DEAD),
                   "fw-in": broken({"syn_unanswered"}, "sessions hashed to be2: " + _SYN_DEAD),
                   "lb": broken({"syn_unanswered"}, "SYNs it forwards to be2's MAC are retransmitted"),
                   "be1": H(_BE_OK),
                   "be2": broken({"vip_not_on_backend"}, "SYNs to the VIP delivered to its own MAC, never answered")},
            together=broken({"vip_not_on_backend", "syn_unanswered"},
                            "be2 drops the SYNs to the VIP; the unanswered SYNs upstream follow from it",
                            causes={"vip_not_on_backend"}),
            proofs=(Proof("be1", f"src host {vip} and {synack}", "some", "be1 answered from the VIP"),
                    Proof("be2", f"src host {vip}", "none", "be2 never answered")),
            sessions_ok="some",
        ),
        Scenario(
            "connection_refused" + sfx, "be2 holds the VIP (on lo, correctly) but its MTA listens on its real address only: SYNs to the VIP get a RST",
            ipv6=ipv6, fault=CONN_REFUSED, broken=("be2",),
            alone={"client": broken({"connection_refused"}, "sessions hashed to be2: the SYN is answered by a RST from the VIP"),
                   "fw-out": broken({"connection_refused"}, "a RST from the VIP answers some SYNs"),
                   "fw-in": broken({"connection_refused"}, "a RST from the VIP, from be2's MAC, answers the SYNs sent to the LB"),
                   "lb": blind(_LB_BLIND + "; the RSTs do not pass here"),
                   "be1": H(_BE_OK),
                   "be2": broken({"connection_refused"}, "it answers SYNs to the VIP delivered to its MAC with a RST")},
            together=broken({"connection_refused"}, "be2 refuses connections to the VIP; every vantage on the reply path shows the RST"),
            proofs=(Proof("be2", f"src host {vip} and tcp src port 25 and {rst}", "some",
                          "be2 reset the SYNs to the VIP: nothing listens there"),
                    Proof("client", f"src host {vip} and {rst}", "some", "the client got the resets"),
                    Proof("be1", f"src host {vip} and {synack}", "some", "be1 answered from the VIP")),
            sessions_ok="some",
        ),
        Scenario(
            "vip_claimed_twice" + sfx, "lb2, the load balancer's HA peer, also holds the VIP and forwards (split brain): two MACs answer ARP/NDP for it",
            ipv6=ipv6, fault=VIP_TWICE,
            alone={"client": H(), "fw-out": H(),
                   "fw-in": broken({"vip_claimed_by_several_macs"},
                                   f"the LB ({LB.mac}) and lb2 ({LB2.mac}) both answer the firewall's {nd} request for the "
                                   "VIP; neither sends a SYN-ACK (the back-ends do), so neither is a back-end: no "
                                   "offender can be named" + ("; the SYNs move from the LB's MAC to lb2's" if ipv6 else "")),
                   "lb": blind(_LB_BLIND + f"; lb2's {nd} answer is unicast to the firewall and not seen here"
                               + ("; only the first connection passes here, lb2 forwards the rest" if ipv6 else "")),
                   "be1": H(_BE_OK + f"; no {nd} answer for the VIP reaches this port"),
                   "be2": H(_BE_OK + f"; no {nd} answer for the VIP reaches this port")},
            together=broken({"vip_claimed_by_several_macs"}, "only fw-in hears both claims; nothing else is wrong (yet)"),
            proofs=(Proof("fw-in", _arp(ipv6, LB.mac), "some", "the LB answered for the VIP"),
                    Proof("fw-in", _arp(ipv6, LB2.mac), "some", "lb2 answered for the VIP too"),
                    Proof("fw-in", f"ether dst {LB.mac} and dst host {vip} and {syn}", "some",
                          "the firewall sent SYNs to the LB's MAC (the first answer)"),
                    Proof("fw-in", f"ether dst {LB2.mac} and dst host {vip} and {syn}", "some" if ipv6 else "none",
                          "and, over IPv6 only, to lb2's (the last answer overrides)" if ipv6 else "and none to lb2's")),
            sessions_ok="all",
        ),
    ]


SCENARIOS: dict[str, Scenario] = {s.name: s for s in _build(False) + _build(True)}


def get(name: str) -> Scenario:
    from dsrdiag.lab.netns import LabError

    try:
        return SCENARIOS[name]
    except KeyError:
        raise LabError(f"unknown scenario {name!r}: one of {', '.join(SCENARIOS)}") from None


def _cell(j: Judgement) -> str:
    if not j.kinds:
        return f"{j.state} ({j.exit_code})"
    kinds = ", ".join(f"`{k}`" + ("" if k in j.causes else " (consequence)") for k in sorted(j.kinds))
    return f"{j.state} ({j.exit_code}): {kinds}"


def expectations_markdown() -> str:
    """The judgements as a Markdown table per scenario (IPv4; IPv6 noted where it differs), for docs/lab.md."""
    lines = []
    for name, sc in SCENARIOS.items():
        if sc.ipv6:
            continue
        six = SCENARIOS[name + "-6"]
        lines += [f"#### `{name}`", "", "| captures | verdict (exit code): kinds | why |", "| --- | --- | --- |"]
        rows = [(v, sc.alone[v], six.alone[v]) for v, _ in VANTAGES]
        rows += [("all, with topology.toml", sc.together, six.together),
                 ("all, no options", sc.without_topology, six.without_topology)]
        for label, j, j6 in rows:
            lines.append(f"| {label} | {_cell(j)} | {j.why} |")
            if (j6.kinds, j6.causes, j6.state) != (j.kinds, j.causes, j.state):
                lines.append(f"| {label} (IPv6) | {_cell(j6)} | {j6.why} |")
        lines.append("")
    return "\n".join(lines)
