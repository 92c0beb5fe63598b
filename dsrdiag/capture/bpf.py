"""The BPF filter that keeps only what dsrdiag analyses, per link type.

Reads: the service ports. Produces: filter text for libpcap's compiler.
Why: in a mail relay's capture most packets are unrelated (HTTPS, DNS); libpcap drops them in C
before any Python object exists. The filter keeps TCP on the service ports, ARP, ICMPv6
neighbour solicitations/advertisements, and IPv6 packets whose next header is an extension
header (libpcap's `tcp port` only looks at the first next-header; decode/ walks the chain).
VLAN/QinQ tags are only expressible on Ethernet: `X or (vlan and (X or (vlan and X)))` is the
form that matches untagged, 802.1Q and QinQ frames with libpcap's offset-shifting `vlan`.
Wrappers Zeek decodes (decode/tunnel.py) pass whole: every MPLS and PPPoE-session frame and every
datagram to or from UDP 4789 (VXLAN), 6081 (Geneve) and 3544 (Teredo); decode/ drops what is not
service traffic inside. libpcap's `mpls`/`pppoes` would look inside, but they shift every later
offset of the expression, reject `arp` after them, and cannot skip a pseudowire's control word;
the C walker passes these frames to Python (it only tracks plain Ethernet/IP TCP itself).
"""

from dsrdiag.capture.frame import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LOOP,
    LINKTYPE_RAW,
)

# libpcap's compiler takes DLT_* numbers; these link types have different DLT values.
DLT_FOR_LINKTYPE = {LINKTYPE_RAW: 12, LINKTYPE_IPV4: 12, LINKTYPE_IPV6: 12, LINKTYPE_LOOP: 108}

_IPV6_EXT = "(ip6 and (ip6[6] == 0 or ip6[6] == 43 or ip6[6] == 44 or ip6[6] == 60 or ip6[6] == 51))"
_ND = "(icmp6 and (ip6[40] == 135 or ip6[40] == 136))"


_TUNNEL = "(ip proto 4 or ip proto 41 or ip proto 47)"
"""IP-in-IP, 6in4 and GRE: an encapsulating load balancer's packets (decode/ looks inside)."""


_WRAPPERS = "(ether proto 0x8847 or ether proto 0x8848 or ether proto 0x8864 or udp port 4789 or udp port 6081 or udp port 3544)"
"""MPLS (unicast, multicast), PPPoE session, VXLAN, Geneve, Teredo: decode/tunnel.py unwraps them."""


def core_filter(ports: tuple[int, ...]) -> str:
    tcp = " or ".join(f"tcp port {p}" for p in sorted(set(ports)))
    return f"({tcp}) or arp or {_ND} or {_IPV6_EXT} or {_TUNNEL} or {_WRAPPERS}"


def filter_for(linktype: int, ports: tuple[int, ...]) -> str:
    x = f"({core_filter(ports)})"
    if linktype == LINKTYPE_ETHERNET:
        return f"{x} or (vlan and ({x} or (vlan and {x})))"
    return x


def dlt_for(linktype: int) -> int:
    return DLT_FOR_LINKTYPE.get(linktype, linktype)
