"""Every finding kind's fixed texts: title, meaning, where it can be seen from, and the fixes.

Why one catalogue: the terminal report, the JSON report and docs/findings.md all print these same
texts (docs/findings.md is generated from here and a test keeps it current). Kinds are stable
names: tools and pipelines match on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsrdiag.findings.finding import ERROR, INFO, WARNING


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
    load_balancer: str = ""
    """The fix on the load balancer, where the fault can be there (NetScaler, Kemp, F5, HAProxy, LVS)."""


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
    load_balancer=(
        "Check that the virtual server really is in DSR mode, so that the back-end receives the VIP as destination and can answer from it: Citrix NetScaler / ADC: MAC-based forwarding (`add lb vserver ... -m MAC`) with `USIP` enabled (`set lb vserver <name> -USIP YES` / `enable ns mode USIP`); Kemp LoadMaster: Virtual Service > Standard Options > Forwarding method \"direct\" (Transparency on); F5 BIG-IP: nPath routing, a FastL4 profile with loose initiation/close and address and port translation disabled on the virtual server; keepalived/LVS: `lb_kind DR`. HAProxy cannot do DSR: it is a full proxy, use PROXY protocol (`send-proxy`) with Postfix `smtpd_upstream_proxy_protocol = haproxy` instead."
    )
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
    load_balancer=(
        "Only the load balancer may answer for the VIP: NetScaler answers ARP for a VIP by default (`set ns ip <VIP> -arp ENABLED`); Kemp and F5 (a virtual address with ARP enabled) likewise; keepalived/LVS: the director holds the VIP in `virtual_ipaddress`, the real servers only on `lo` with arp_ignore/arp_announce. Clear the ARP cache of the router/firewall after fixing the back-end (`clear arp` / `ip neigh flush`)."
    )
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
    load_balancer=(
        "If the firewall must see both directions, the back-ends' default gateway must be the firewall (not another router); in DSR the replies leave the back-ends directly, so the LB cannot fix this. Otherwise let the firewall accept the asymmetric flow for this service (see the firewall fix above)."
    )
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
    load_balancer=(
        "If the back-end is not meant to hold the VIP, the virtual server is in the wrong mode for it: DSR (NetScaler `-m MAC`, Kemp \"direct\", F5 nPath, LVS `lb_kind DR`) needs the VIP on every back-end's loopback; otherwise use NAT mode (with the client address kept by routing the replies through the LB)."
    )
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
    load_balancer=(
        "The load balancer replaces the client address: NetScaler without `USIP` (`set lb vserver <name> -USIP YES`, or MAC mode `-m MAC` for DSR); Kemp with Transparency off (Virtual Service > Standard Options > Transparency), or use \"direct\" forwarding; F5 with a SNAT pool or automap on the virtual server (remove it and route replies through the BIG-IP, or nPath/DSR); keepalived/LVS `lb_kind NAT` with masquerading on the director; HAProxy always connects from its own address: enable `send-proxy` on the server line and accept the PROXY protocol on the MTA (Postfix `smtpd_upstream_proxy_protocol = haproxy`; Exchange does not accept PROXY protocol). The alternative many operators choose: keep SNAT and move relay permission to the load balancer (ACLs or an SMTP profile on the LB that only lets the allowed clients reach the relay virtual server), or give the mail server a second address used only for relay and published without SNAT. The cost: the MTA logs and greylisting see the LB's address, per-client rate limits and SPF/`mynetworks` decisions move to the LB, and abuse reports name the LB."
    )
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


_add(Entry(
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
    )
))

_add(Entry(
    kind="lb_mode_mixed",
    severity=ERROR,
    title="The load balancer reaches back-ends in different modes",
    explanation=(
        "Some connections reach a back-end in one way (e.g. DSR: addresses kept, MAC rewritten) "
        "and others in another (NAT: addresses rewritten; a tunnel; a full proxy: a new connection "
        "from the load balancer, with or without PROXY protocol or XCLIENT). The back-ends then see "
        "some clients by their own address and others as the load balancer, and reply by different "
        "paths: relay rules and logs disagree between connections, and only some of them survive a "
        "firewall."
    ),
    decided=("Connections matched between the client side and a back-end capture: by the client's ISN "
             "(DSR, tunnel, NAT: their addresses compared), or by SMTP payload and timing (full proxy)."),
    seen_from="A client-side capture and back-end captures analysed together.",
    windows="Put every real server of the virtual service in the same forwarding mode on the load balancer (all DSR), and configure each for it (KM-TEST loopback with the VIP, weak host send/receive).",
    linux="Use one forwarding method for all real servers of the virtual service (e.g. all `ipvsadm -g`), with the VIP on lo and arp_ignore/arp_announce on each.",
))

_add(Entry(
    kind="sessions_failed",
    severity=ERROR,
    title="SMTP sessions to the VIP failed",
    explanation=(
        "Some of the probe's real SMTP sessions to the VIP did not complete (timeout, reset, "
        "refused, no banner). When the probe's own capture explains why, that finding is "
        "reported instead; this one stands when nothing in the capture does, or when there was "
        "no capture (no root or libpcap): then the failure is certain, its cause is not."
    ),
    decided="Sessions whose outcome is not ok and that no packet-level finding of the same run explains.",
    seen_from="dsrdiag probe, from wherever it runs.",
    windows="Run the probe again as administrator/root for a capture, and capture on the load balancer and the back-ends (see syn_unanswered).",
    linux="Run the probe as root (or with CAP_NET_RAW) so that it captures what came back, and probe from the server LAN to see ARP.",
))

# ---- host configuration (dsrdiag hostcheck) ---------------------------------------------------

_add(Entry(
    kind="vip_not_on_loopback",
    severity=ERROR,
    title="The VIP is not configured on the back-end",
    explanation=(
        "The back-end does not hold the VIP on any interface. Frames the load balancer delivers "
        "to it carry the VIP as destination; a host drops packets for an address it does not "
        "have, so every connection the load balancer sends here dies silently (what "
        "vip_not_on_backend shows in a capture)."
    ),
    decided="No interface address equals the VIP (netlink on Linux; Get-NetIPAddress / ipconfig on Windows).",
    seen_from="dsrdiag hostcheck on the back-end (Linux) or on saved Windows output.",
    windows=(
        "Install the KM-TEST loopback adapter (hdwwiz, Network adapters, Microsoft, KM-TEST Loopback "
        "Adapter), rename it \"Loopback\", and add the VIP with the load balancer's subnet mask: "
        "`New-NetIPAddress -InterfaceAlias \"Loopback\" -IPAddress VIP -PrefixLength <LB prefix> -SkipAsSource $true`."
    ),
    linux="`ip addr add VIP/32 dev lo` (IPv6: `ip -6 addr add VIP/128 dev lo nodad`) and persist it (netplan, NetworkManager, ifcfg).",
))

_add(Entry(
    kind="vip_on_lan_interface",
    severity=ERROR,
    title="The VIP is on an interface that answers ARP/NDP",
    explanation=(
        "The VIP sits on a LAN interface instead of a loopback: the back-end answers ARP (IPv6: "
        "runs duplicate address detection and answers neighbour solicitations) for the VIP, "
        "competing with the load balancer for the VIP's traffic (what "
        "arp_reply_for_vip_from_backend shows in a capture). arp_ignore cannot help: the address "
        "really is on the interface that receives the request."
    ),
    decided="An interface address equal to the VIP on an interface that is neither loopback nor NOARP.",
    seen_from="dsrdiag hostcheck on the back-end, or saved Windows output.",
    windows="Remove it from the LAN adapter (`Remove-NetIPAddress -IPAddress VIP -InterfaceAlias \"LAN\"`) and put it on the KM-TEST loopback adapter.",
    linux="`ip addr del VIP/<len> dev <lan-if>`; `ip addr add VIP/32 dev lo` (IPv6: /128 on lo, `nodad`).",
))

_add(Entry(
    kind="vip_prefix_too_wide",
    severity=ERROR,
    title="The VIP on lo has a prefix wider than /32 (/128)",
    explanation=(
        "On Linux every address of a prefix configured on lo is local: VIP/24 on lo makes the "
        "whole /24 local to this host, so it stops reaching its neighbours, its gateway and the "
        "load balancer on that subnet. The VIP on lo must be a host route: /32, or /128 for IPv6."
    ),
    decided="The VIP is on the loopback device with a prefix length below 32 (IPv4) or 128 (IPv6).",
    seen_from="dsrdiag hostcheck on a Linux back-end.",
    windows="Not applicable on Windows: there the loopback adapter carries the VIP with the LB's subnet mask (see vip_mask_mismatch).",
    linux="`ip addr del VIP/<len> dev lo && ip addr add VIP/32 dev lo` (IPv6: /128).",
))

_add(Entry(
    kind="vip_mask_mismatch",
    severity=WARNING,
    title="The VIP on the loopback adapter does not have the load balancer's subnet mask",
    explanation=(
        "Windows DSR guides (Microsoft NLB, Kemp, F5) put the VIP on the loopback adapter with "
        "the same subnet mask as the VIP's network on the LAN. A different mask changes which "
        "destinations Windows considers on-link through the loopback adapter and can divert "
        "traffic for neighbours of the VIP to it."
    ),
    decided="The loopback adapter's VIP prefix length differs from that of the LAN interface whose subnet contains the VIP.",
    seen_from="Saved Windows output (Get-NetIPAddress or ipconfig /all).",
    windows="`Set-NetIPAddress -InterfaceAlias \"Loopback\" -IPAddress VIP -PrefixLength <LAN prefix>`.",
    linux="Not applicable on Linux: there the VIP on lo must be /32 (see vip_prefix_too_wide).",
))

_add(Entry(
    kind="arp_ignore_unsafe",
    severity=ERROR,
    title="arp_ignore lets the back-end answer ARP for the VIP",
    explanation=(
        "With arp_ignore=0 (the default) Linux answers ARP for any local address on any "
        "interface, so the VIP on lo is announced on the LAN. It must be 1 (answer only for "
        "addresses on the receiving interface) or 2. The kernel uses the larger of "
        "`conf.all.arp_ignore` and the interface's own value."
    ),
    decided="max(net.ipv4.conf.all.arp_ignore, net.ipv4.conf.<if>.arp_ignore) is not 1 or 2 on an ARP-capable interface that is up.",
    seen_from="dsrdiag hostcheck on a Linux back-end.",
    windows="Windows does not answer ARP for addresses on the loopback adapter; keep the VIP off the LAN adapter (vip_on_lan_interface).",
    linux="`sysctl -w net.ipv4.conf.all.arp_ignore=1 net.ipv4.conf.<if>.arp_ignore=1`, persisted in /etc/sysctl.d/90-dsr.conf.",
))

_add(Entry(
    kind="arp_announce_unsafe",
    severity=ERROR,
    title="arp_announce lets the back-end use the VIP as ARP source",
    explanation=(
        "With arp_announce below 2 Linux may put the VIP in the sender field of its own ARP "
        "requests when the packet that triggered them came from the VIP (every DSR reply), "
        "which teaches neighbours that the VIP is at this back-end's MAC. It must be 2 (always "
        "use the best local address of the outgoing interface). The kernel uses the larger of "
        "`conf.all.arp_announce` and the interface's value."
    ),
    decided="max(net.ipv4.conf.all.arp_announce, net.ipv4.conf.<if>.arp_announce) is not 2 on an ARP-capable interface that is up.",
    seen_from="dsrdiag hostcheck on a Linux back-end.",
    windows="Not applicable: with the VIP on the loopback adapter Windows does not use it as ARP source.",
    linux="`sysctl -w net.ipv4.conf.all.arp_announce=2 net.ipv4.conf.<if>.arp_announce=2`, persisted in /etc/sysctl.d/.",
))

_add(Entry(
    kind="rp_filter_strict",
    severity=WARNING,
    title="Strict reverse-path filtering may drop the load balancer's frames",
    explanation=(
        "With rp_filter=1 (strict) Linux drops a packet when the route back to its source does "
        "not leave through the interface it arrived on. Client packets forwarded by the load "
        "balancer arrive on the LAN interface; if the route back to clients leaves by another "
        "interface, they are dropped before TCP sees them."
    ),
    decided="max(conf.all.rp_filter, conf.<if>.rp_filter) = 1 on the interface facing the VIP's subnet while the default route leaves by another interface.",
    seen_from="dsrdiag hostcheck on a Linux back-end.",
    windows="Not applicable (Windows weak/strong host model: see weakhost_receive_disabled).",
    linux="`sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.<if>.rp_filter=2` (loose), or make the route to clients use the LAN interface.",
))

_add(Entry(
    kind="no_listener_on_vip",
    severity=ERROR,
    title="Nothing listens on the VIP's port",
    explanation=(
        "No TCP socket listens on VIP:port or on the wildcard address. Connections the load "
        "balancer delivers here are answered with a RST (connection refused)."
    ),
    decided="No LISTEN socket in /proc/net/tcp or tcp6 on the port with the VIP, 0.0.0.0 or :: as address.",
    seen_from="dsrdiag hostcheck on a Linux back-end.",
    windows="Bind the receive connector to all addresses or to the VIP: `Set-ReceiveConnector <name> -Bindings 0.0.0.0:25`; check with `netstat -ano | findstr :25`.",
    linux="Make the MTA listen on all addresses (Postfix `inet_interfaces = all`, then `postfix reload`); check with `ss -ltn 'sport = :25'`.",
))

_add(Entry(
    kind="no_default_route",
    severity=ERROR,
    title="The back-end has no default route for the VIP's address family",
    explanation=(
        "In DSR the back-end answers clients directly; without a default route (or a route to "
        "the client networks) the replies cannot leave."
    ),
    decided="No default route of the VIP's address family in the main routing table.",
    seen_from="dsrdiag hostcheck on a Linux back-end.",
    windows="Set a default gateway on the LAN adapter only (`New-NetRoute -DestinationPrefix 0.0.0.0/0 -InterfaceAlias \"LAN\" -NextHop <firewall>`), none on the loopback adapter.",
    linux="`ip route add default via <firewall> dev <lan-if>` and persist it.",
))

_add(Entry(
    kind="return_route_not_via_gateway",
    severity=ERROR,
    title="Replies leave by another gateway than the one that forwards the requests",
    explanation=(
        "The default route points at another router than the firewall given with --gateway, "
        "which forwards the clients' requests: the replies bypass it, the firewall sees half of "
        "each conversation and drops it (what asymmetric_flow shows in a capture)."
    ),
    decided="The default route's gateway differs from --gateway.",
    seen_from="dsrdiag hostcheck on a Linux back-end, with --gateway.",
    windows="Make the firewall the only default gateway (`Get-NetRoute -DestinationPrefix 0.0.0.0/0`; remove the others).",
    linux="`ip route replace default via <firewall>`, or a policy route for traffic from the VIP (`ip rule add from VIP lookup 100`).",
))

_add(Entry(
    kind="weakhost_receive_disabled",
    severity=ERROR,
    title="Weak host receive is disabled where DSR needs it",
    explanation=(
        "Windows uses the strong host model by default: a packet is accepted only on the "
        "interface that holds its destination address. In DSR the VIP is on the loopback adapter "
        "but the packets arrive on the LAN adapter, so both need weak host receive, or every "
        "SYN the load balancer delivers is dropped."
    ),
    decided="`Weak Host Receives : disabled` (netsh) or `WeakHostReceive : Disabled` (Get-NetIPInterface) on the LAN adapter or the loopback adapter.",
    seen_from="Saved Windows output.",
    windows="`netsh interface ipv4 set interface \"LAN\" weakhostreceive=enabled` and `netsh interface ipv4 set interface \"Loopback\" weakhostreceive=enabled`.",
    linux="Not applicable: Linux uses the weak host model (see arp_ignore_unsafe, rp_filter_strict).",
))

_add(Entry(
    kind="weakhost_send_disabled",
    severity=ERROR,
    title="Weak host send is disabled on the loopback adapter",
    explanation=(
        "A reply from the VIP (on the loopback adapter) leaves through the LAN adapter. With the "
        "strong host model Windows will not send a packet whose source address belongs to another "
        "interface: the reply is dropped or sent from the LAN address (what return_source_not_vip "
        "shows in a capture)."
    ),
    decided="`Weak Host Sends : disabled` (netsh) or `WeakHostSend : Disabled` (Get-NetIPInterface) on the loopback adapter.",
    seen_from="Saved Windows output.",
    windows="`netsh interface ipv4 set interface \"Loopback\" weakhostsend=enabled`.",
    linux="Not applicable: Linux sends from any local address.",
))

_add(Entry(
    kind="loopback_metric_not_254",
    severity=WARNING,
    title="The loopback adapter's metric is not 254",
    explanation=(
        "The loopback adapter must never be preferred for outbound traffic: with metric 254 "
        "Windows picks the LAN adapter's routes first. A lower metric can make Windows route "
        "through the loopback adapter or pick the VIP as a source for outbound connections."
    ),
    decided="Metric / InterfaceMetric of the loopback adapter is not 254.",
    seen_from="Saved Windows output.",
    windows="`Set-NetIPInterface -InterfaceAlias \"Loopback\" -AutomaticMetric Disabled -InterfaceMetric 254`.",
    linux="Not applicable.",
))

_add(Entry(
    kind="netbios_enabled_on_loopback",
    severity=WARNING,
    title="NetBIOS over TCP/IP is enabled on the loopback adapter",
    explanation=(
        "With NetBIOS enabled the loopback adapter registers and defends the host's NetBIOS "
        "name with the VIP: every back-end then claims the same names on the VIP, causing name "
        "conflicts and traffic to the VIP that bypasses the load balancer."
    ),
    decided="`NetBIOS over Tcpip . . . : Enabled` for the loopback adapter in ipconfig /all.",
    seen_from="Saved Windows output (ipconfig /all).",
    windows="Adapter properties, IPv4, Advanced, WINS: Disable NetBIOS over TCP/IP; or `(Get-WmiObject Win32_NetworkAdapterConfiguration -Filter \"Description like '%Loopback%'\").SetTcpipNetbios(2)`.",
    linux="Not applicable.",
))

_add(Entry(
    kind="ipv6_bound_on_loopback",
    severity=WARNING,
    title="IPv6 is bound on the loopback adapter",
    explanation=(
        "The loopback adapter should carry only the IPv4 VIP. With IPv6 bound it gets a "
        "link-local address, takes part in neighbour discovery and can be chosen for IPv6 "
        "traffic; an IPv4 VIP does not need it."
    ),
    decided="An IPv6 interface (Get-NetIPInterface) or an IPv6 address (ipconfig /all) on the loopback adapter.",
    seen_from="Saved Windows output.",
    windows="`Disable-NetAdapterBinding -Name \"Loopback\" -ComponentID ms_tcpip6`.",
    linux="Not applicable.",
))

_add(Entry(
    kind="connection_refused",
    severity=ERROR,
    title="The back-end refuses connections to the VIP",
    explanation=(
        "The client's SYN to the VIP was answered with a RST: a host holds the VIP (it answered for it) "
        "but nothing accepts connections on the VIP and port. Typically the MTA listens on the "
        "back-end's real address only (Postfix `inet_interfaces` naming one address, an Exchange receive "
        "connector bound to the LAN adapter's address), or the VIP is on the host but the service was "
        "never restarted after it was added. In DSR the back-end receives the client's packets addressed "
        "to the VIP, so the service must listen on the VIP (or on every address)."
    ),
    decided=(
        "A connection to VIP:P whose SYN was answered by a RST from the VIP (Zeek's REJ), grouped by "
        "the back-end that answered (the RST's source MAC, or the MAC the SYN was delivered to)."
    ),
    seen_from=(
        "Any vantage that sees the RST: the client (unless a firewall drops it), the firewall, the server "
        "LAN, the back-end itself. Not the load balancer's own interface in DSR (replies do not pass it)."
    ),
    windows=(
        "Bind the receive connector to all addresses or to the VIP: `Get-ReceiveConnector | ft Name,Bindings`, "
        "then `Set-ReceiveConnector \"<server>\\Default Frontend <server>\" -Bindings 0.0.0.0:25`; "
        "check with `netstat -ano | findstr :25` that something listens on the VIP (or 0.0.0.0)."
    ),
    linux=(
        "Make the MTA listen on every address or on the VIP too: Postfix `inet_interfaces = all` (or list the "
        "VIP) and `postfix reload`; Exim `local_interfaces`; check with `ss -ltnp 'sport = :25'`."
    ),
    load_balancer=(
        "Not on the load balancer; but its health monitor should probe the VIP on the back-end (NetScaler "
        "monitor with `-destIP` the VIP and `-transparent YES`, F5 monitor alias address, keepalived "
        "`TCP_CHECK` with `connect_ip` the VIP) so that a back-end refusing the VIP is taken out of service."
    ),
))

_add(Entry(
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
))

_add(Entry(
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
))

KINDS = tuple(CATALOG)


def entry(kind: str) -> Entry:
    return CATALOG[kind]


def title(kind: str) -> str:
    """The kind's short title (the verdict names causes by it); the kind itself when uncatalogued."""
    e = CATALOG.get(kind)
    return e.title if e else kind


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
        if e.load_balancer:
            out += ["", f"**Fix on the load balancer.** {e.load_balancer}"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render_markdown(), end="")
