"""Every finding kind's fixed texts: title, meaning, where it can be seen from, and the fixes.

Why one catalogue: the terminal report, the JSON report and docs/findings.md all print these same
texts (docs/findings.md is generated from here and a test keeps it current). Kinds are stable
names: tools and pipelines match on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsrdiag.findings.finding import ERROR, INFO


@dataclass(frozen=True)
class Entry:
    kind: str
    severity: str
    title: str
    explanation: str
    decided: str
    """How dsrdiag decides it, from which packets."""
    seen_from: str
    """Which vantage can show it, and what a capture elsewhere cannot."""
    windows: str
    linux: str


CATALOG: dict[str, Entry] = {}


def _add(e: Entry) -> None:
    CATALOG[e.kind] = e


_add(Entry(
    kind="return_source_not_vip",
    severity=ERROR,
    title="Back-end answers from its real IP, not the VIP",
    explanation=(
        "The client connected to the VIP, but the SYN-ACK came back from the back-end's own "
        "address. The client's TCP stack has no connection with that address, so it answers with "
        "a RST (or ignores the packet), and a stateful firewall drops it as a reply to nothing: "
        "to the application this is a connect timeout. In DSR the back-end must answer with the "
        "VIP as source, which it does only when the VIP is configured on it (loopback) and the "
        "reply is allowed to leave with that source."
    ),
    decided=(
        "A SYN-ACK from service port P to client C:p whose acknowledgement number is the ISN+1 of "
        "a SYN that C:p sent to VIP:P, with a source address that is not the VIP. The back-end is "
        "named by that source address and the SYN-ACK's source MAC."
    ),
    seen_from=(
        "Any vantage that sees the reply: the client, the firewall, the server LAN or the "
        "back-end. A capture on the load balancer's own interface does not see DSR replies."
    ),
    windows=(
        "Put the VIP on the KM-TEST loopback adapter with the load balancer's subnet mask and "
        "enable weak host send and receive on it, and weak host receive on the LAN adapter: "
        "`netsh interface ipv4 set interface \"Loopback\" weakhostreceive=enabled weakhostsend=enabled` "
        "and `netsh interface ipv4 set interface \"LAN\" weakhostreceive=enabled`. Without weak "
        "host send the reply sourced from the VIP may not leave through the LAN adapter and the "
        "stack answers from the adapter's own address. Bind the receive connector to all "
        "addresses or to the VIP (`Get-ReceiveConnector | fl Bindings`)."
    ),
    linux=(
        "Put the VIP on lo as /32 (`ip addr add VIP/32 dev lo`; IPv6 `ip -6 addr add VIP/128 dev "
        "lo nodad`) and persist it; let the MTA listen on the VIP or on all addresses (Postfix "
        "`inet_interfaces = all`); make sure no NAT rule rewrites the reply's source (`nft list "
        "ruleset`, `iptables -t nat -S`: no masquerade/SNAT of traffic from port 25)."
    ),
))

_add(Entry(
    kind="arp_reply_for_vip_from_backend",
    severity=ERROR,
    title="A MAC other than the load balancer's answers ARP/NDP for the VIP",
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
))

_add(Entry(
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
        "A connection whose client sent a SYN and then ACKs or data, without any packet from the "
        "server in between (the client got its SYN-ACK another way: Zeek's possible_split_routing), "
        "or one where the server's SYN-ACK and data pass without any packet from the client. "
        "Connections forwarded by the load balancer (the LB's own capture in DSR mode, where "
        "one-way is by design) are not reported."
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
))

_add(Entry(
    kind="syn_unanswered",
    severity=ERROR,
    title="SYNs with no reply at all",
    explanation=(
        "The client sent a SYN, retransmitted it on the usual back-off schedule, and nothing came "
        "back through this point: no SYN-ACK, no RST. The SYN was dropped between here and the "
        "server, the server dropped it, or its answer took a path that never reached the client "
        "(the client would not retransmit if an answer had arrived)."
    ),
    decided=(
        "A connection in which the client sent only SYNs (history S, conn_state S0) and either "
        "retransmitted or the capture went on for at least 3 s after the first SYN, so that the "
        "reply had time to come. SYNs the load balancer delivered to a known back-end MAC are "
        "reported as vip_not_on_backend instead."
    ),
    seen_from=(
        "Any vantage on the request path. It says where the SYN was last seen; captures further "
        "along the path show where it died."
    ),
    windows=(
        "Capture on the back-end (`pktmon start --capture` or Wireshark with Npcap) to see whether "
        "the SYN arrives. Check the VIP on the loopback adapter (`Get-NetIPAddress -IPAddress "
        "VIP`), weak host receive on the LAN adapter (`netsh interface ipv4 show interface "
        "\"LAN\"`), the receive connector's bindings and Windows Firewall rules for the port."
    ),
    linux=(
        "Capture on the load balancer and the back-ends at once (`tcpdump -ni any 'tcp port 25 "
        "and tcp[tcpflags] & tcp-syn != 0'`). On the back-end: VIP on lo (`ip -br addr show lo`), "
        "a listener (`ss -ltn 'sport = :25'`), rp_filter not dropping the frames "
        "(`sysctl net.ipv4.conf.all.rp_filter`; use 2 or 0), no host firewall drop (`nft list ruleset`)."
    ),
))

_add(Entry(
    kind="vip_not_on_backend",
    severity=ERROR,
    title="SYNs delivered to a back-end's MAC die there: the VIP is missing on it",
    explanation=(
        "The load balancer delivered SYNs for the VIP to this back-end's MAC and the back-end "
        "never answered; a closed port would at least have answered with a RST. A host silently "
        "drops frames whose destination IP is not one of its addresses: the VIP is not "
        "configured on this back-end (or is on an interface that is down or does not accept it). "
        "Other back-ends answering shows that the load balancer and the path are fine."
    ),
    decided=(
        "Client SYNs to the VIP whose destination MAC is a back-end's (known, or the MAC the load "
        "balancer forwards to), with no packet at all back from that connection, while the "
        "capture lasted at least 3 s after the SYN or the SYN was retransmitted."
    ),
    seen_from=(
        "A capture on the server LAN, the load balancer or the back-end itself (where the "
        "destination MAC shows the back-end). A client capture sees only syn_unanswered."
    ),
    windows=(
        "Add the VIP to the KM-TEST loopback adapter: `New-NetIPAddress -InterfaceAlias "
        "\"Loopback\" -IPAddress VIP -PrefixLength <LB prefix> -SkipAsSource $true`, then `netsh "
        "interface ipv4 set interface \"LAN\" weakhostreceive=enabled` and `netsh interface ipv4 "
        "set interface \"Loopback\" weakhostreceive=enabled weakhostsend=enabled`; loopback "
        "metric 254, NetBIOS over TCP/IP disabled on it."
    ),
    linux=(
        "`ip addr add VIP/32 dev lo` (IPv6: `ip -6 addr add VIP/128 dev lo nodad`) and persist it; "
        "keep `arp_ignore=1` and `arp_announce=2`; check with `ip -br addr show lo`."
    ),
))

_add(Entry(
    kind="snat_client_ip_lost",
    severity=ERROR,
    title="Connections reach the back-end from the load balancer's address: client IP lost",
    explanation=(
        "The back-end sees connections from the load balancer's own address, not the client's: "
        "the load balancer is in SNAT / full-proxy mode. Every client then looks like the load "
        "balancer: relay permissions (Exchange receive connectors' RemoteIPRanges, Postfix "
        "mynetworks) match the LB's address, so either everyone may relay or nobody may, and "
        "logs, SPF, RBL lookups, rate limits and greylisting act on the wrong address. This is "
        "the problem DSR exists to solve."
    ),
    decided=(
        "Connections to a service port whose client address is a load-balancer address (given "
        "with --lb-ip, the VIP itself, or an address the load balancer's MAC claims in ARP), and "
        "that carry neither a PROXY protocol header nor an SMTP XCLIENT command."
    ),
    seen_from=(
        "A capture on the back-end or on the LB-to-back-end segment. A client capture cannot see "
        "what source address the back-end receives."
    ),
    windows=(
        "Switch the virtual service to DSR and give every Exchange/SMTP server the KM-TEST "
        "loopback adapter with the VIP (weak host send/receive). Exchange supports neither PROXY "
        "protocol nor XCLIENT: behind a full proxy its connectors only ever see the LB's address."
    ),
    linux=(
        "Switch the virtual service to DSR (direct routing) and configure the back-ends for it "
        "(VIP on lo, arp_ignore/arp_announce). If full proxy must stay, have the LB pass the "
        "client address: PROXY protocol (HAProxy `send-proxy`, Postfix "
        "`smtpd_upstream_proxy_protocol = haproxy` on that port) or XCLIENT (Postfix "
        "`smtpd_authorized_xclient_hosts = <LB address>`)."
    ),
))

_add(Entry(
    kind="proxy_protocol_header",
    severity=INFO,
    title="PROXY protocol header carries the client address",
    explanation=(
        "The stream starts with a PROXY protocol header: a full-proxy load balancer passes the "
        "original client address in-band. The server must expect it on this port (or it rejects "
        "the header as a bad command), and relay decisions then use the address in the header."
    ),
    decided="A PROXY v1 line or v2 binary header as the first bytes the client sends.",
    seen_from="A capture between the load balancer and the back-end.",
    windows="Exchange does not accept PROXY protocol: use DSR for Exchange back-ends.",
    linux=(
        "Nothing to fix if intended. Accept PROXY only on a port that only the load balancer can "
        "reach (anyone speaking PROXY could claim any address): Postfix "
        "`smtpd_upstream_proxy_protocol = haproxy` on that port alone."
    ),
))

_add(Entry(
    kind="smtp_xclient",
    severity=INFO,
    title="SMTP XCLIENT forwards the client identity",
    explanation=(
        "The client side issued XCLIENT: an SMTP proxy (the load balancer or a filter) hands the "
        "original client's address and name to the server, which uses them for access control "
        "and logging. It is how Postfix lets a trusted proxy restore the client's identity."
    ),
    decided="An XCLIENT command in the client's SMTP dialogue (and the server offering it in EHLO).",
    seen_from="A capture between the proxy and the server.",
    windows="Exchange does not implement XCLIENT; an XCLIENT proxy needs a Postfix (or similar) back-end.",
    linux="Restrict `smtpd_authorized_xclient_hosts` to the proxy's address only.",
))

KINDS = tuple(CATALOG)


def entry(kind: str) -> Entry:
    return CATALOG[kind]


def render_markdown() -> str:
    """docs/findings.md, generated from this catalogue (`python -m dsrdiag.findings.catalog > docs/findings.md`)."""
    out = [
        "# Findings",
        "",
        "Generated from `dsrdiag/findings/catalog.py` (a test keeps this file current). Every finding",
        "in a report carries its evidence frames (capture, Wireshark frame number, time), this",
        "explanation and these fixes. Kinds are stable names; severities: `error`, `warning`, `info`.",
        "",
        "| kind | severity | title |",
        "| --- | --- | --- |",
    ]
    out += [f"| `{e.kind}` | {e.severity} | {e.title} |" for e in CATALOG.values()]
    for e in CATALOG.values():
        out += [
            "",
            f"## `{e.kind}`: {e.title}",
            "",
            f"Severity: **{e.severity}**.",
            "",
            e.explanation,
            "",
            f"**How dsrdiag decides.** {e.decided}",
            "",
            f"**Where it can be seen from.** {e.seen_from}",
            "",
            f"**Fix on Windows.** {e.windows}",
            "",
            f"**Fix on Linux.** {e.linux}",
        ]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
