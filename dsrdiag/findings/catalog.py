"""Every finding kind's fixed texts, collected: title, meaning, where it can be seen from, the fixes.

Why one catalogue: the terminal report, the JSON report and docs/findings.md all print these same
texts (docs/findings.md is generated from here and a test keeps it current). Kinds are stable
names: tools and pipelines match on them. The kinds judged from packets declare their entries in
their own modules (findings/kinds/<kind>.py, beside their decision); the host-setting kinds,
judged in audit/checks.py from a host's settings, are declared here.
"""

from __future__ import annotations

from dsrdiag.findings.finding import ERROR, WARNING
from dsrdiag.findings.kind import HOST, Entry
from dsrdiag.findings.kinds import ALL as PACKET_KINDS


CATALOG: dict[str, Entry] = {}


def _add(e: Entry) -> None:
    CATALOG[e.kind] = e


for _k in PACKET_KINDS:  # the kinds judged from packets declare their entries in their own modules
    _add(_k.ENTRY)


def _host(e: Entry) -> None:
    """Host-setting kinds (judged in audit/checks.py)."""
    _add(Entry(**{**e.__dict__, "scope": HOST}))














# ---- host configuration (dsrdiag hostcheck) ---------------------------------------------------

_host(Entry(
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

_host(Entry(
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

_host(Entry(
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

_host(Entry(
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

_host(Entry(
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

_host(Entry(
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

_host(Entry(
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

_host(Entry(
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

_host(Entry(
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

_host(Entry(
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

_host(Entry(
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

_host(Entry(
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

_host(Entry(
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

_host(Entry(
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

_host(Entry(
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
            f'<a id="{e.kind}"></a>',  # `docs/findings.md#kind`, as the text report links it
            "",
            f"## `{e.kind}`: {e.title}",
            "",
            f"Severity: **{e.severity}**. Judged from: {e.scope}" + (f" (`dsrdiag/findings/kinds/{e.kind}.py`)." if e.scope != "host" else " (`dsrdiag/audit/checks.py`)."),
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


def readme_table() -> str:
    """The README's table of every kind (kept current by tests/test_architecture.py)."""
    rows = ["| finding | severity | scope | what went wrong |", "| --- | --- | --- | --- |"]
    rows += [f"| `{e.kind}` | {e.severity} | {e.scope} | {e.title} |" for e in CATALOG.values()]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import sys

    print(readme_table() if sys.argv[1:] == ["--readme-table"] else render_markdown(), end="")
