"""Wrappers Zeek's packet analyzers decode: MPLS, PPPoE sessions, VXLAN, Geneve and Teredo.

Reads: a frame's bytes at the wrapper's offset. Produces: where the wrapped packet starts, what
it is (an Ethernet frame, IPv4 or IPv6) and a label for the capture note ("VXLAN VNI 42").
Never: decodes what is inside (decode/packet.py does, with the same decoders as for any frame),
keeps state between packets, or unwraps what does not look like the wrapper.
Why: a capture whose traffic is all inside one of these showed 0 packets analysed and a healthy
verdict. Zeek tracks the connection inside (the inner 4-tuple): so does dsrdiag.

The rules are Zeek's (src/packet_analysis/protocol/*, scripts/base/packet-protocols/*):
- MPLS (ethertype 0x8847/0x8848): labels are skipped to the bottom of the stack (S bit); more than
  4 bytes must follow each label ("truncated_link_header"). Zeek hands what follows to its IP
  analyzer (version 4 or 6). A pseudowire (RFC 4448 Ethernet over MPLS) is unwrapped beyond
  Zeek: a first nibble 0 is the control word (RFC 4385) when an Ethernet header with an IP, ARP,
  VLAN, MPLS or PPPoE ethertype follows it; else an Ethernet header straight after the stack.
- PPPoE session (0x8864): 6 bytes of PPPoE and 2 of PPP protocol; more than 8 bytes must be there;
  protocol 0x0021 is IPv4, 0x0057 IPv6, anything else (LCP, IPCP...) is not unwrapped.
- VXLAN (UDP 4789): 8 bytes; the I flag (0x08 in the first byte) must be set; an Ethernet frame
  follows, and must not be empty.
- Geneve (UDP 6081): version 0; 8 bytes plus (first byte & 0x3F) * 4 of options, all present;
  protocol 0x6558 is Ethernet, 0x0800 IPv4, 0x86DD IPv6 (Zeek's script registers 0x08DD, a typo:
  dsrdiag takes the real IPv6 ethertype).
- Teredo (UDP 3544): an optional authentication header (type 1: 4 + id + auth + 8 + 1 bytes) then an
  optional origin indication (type 0, 8 bytes), never two of one nor auth after origin; then an
  IPv6 header whose length is exactly what is left (Zeek's "Teredo payload length" violation),
  except a bubble (next header 59, no payload) with trailing bytes.
The UDP port is the responder's (Zeek forwards on the connection's responder port, after flipping
roles when the source is a likely server port): a datagram to or from the port is a candidate.
Zeek also finds Teredo on other ports by protocol detection; dsrdiag only looks at 3544.
"""

from __future__ import annotations

ETH_MPLS = frozenset((0x8847, 0x8848))
ETH_PPPOE_SESSION = 0x8864
WRAPPED_ETHERTYPES = ETH_MPLS | {ETH_PPPOE_SESSION}
UDP_VXLAN, UDP_GENEVE, UDP_TEREDO = 4789, 6081, 3544
TUNNEL_UDP_PORTS = frozenset((UDP_VXLAN, UDP_GENEVE, UDP_TEREDO))
MAX_WRAPS = 4
"""Wrappers inside wrappers beyond this are not unwrapped (Zeek stops at Tunnel::max_depth, 2
tunnels; MPLS and PPPoE are link layers to Zeek and not counted there): every frame is bounded."""

ETHER, IPV4, IPV6 = "ether", "ipv4", "ipv6"
_INNER_ETHERTYPES = frozenset((0x0800, 0x86DD, 0x0806, 0x8100, 0x88A8, 0x9100, 0x8847, 0x8848, 0x8864))
TRUNCATED_MPLS, TRUNCATED_PPPOE = "truncated-mpls-header", "truncated-pppoe-header"


def _ether_follows(data: bytes, off: int) -> bool:
    """An Ethernet header at off whose ethertype dsrdiag decodes, and an IP version that fits it."""
    if len(data) < off + 15:
        return False
    et = (data[off + 12] << 8) | data[off + 13]
    if et not in _INNER_ETHERTYPES:
        return False
    v = data[off + 14] >> 4
    return not (et == 0x0800 and v != 4) and not (et == 0x86DD and v != 6)


def unwrap_link(etype: int, data: bytes, off: int):
    """(kind, offset, label) of the packet inside an MPLS label stack or PPPoE session header at
    `off`; a str (an anomaly name) when the header is truncated; None when what is inside is not
    something dsrdiag decodes (PPP control protocols, MPLS carrying neither IP nor Ethernet)."""
    n = len(data)
    if etype == ETH_PPPOE_SESSION:
        if 8 >= n - off:
            return TRUNCATED_PPPOE
        proto = (data[off + 6] << 8) | data[off + 7]
        label = f"PPPoE session 0x{(data[off + 2] << 8) | data[off + 3]:04x}"
        if proto == 0x0021:
            return IPV4, off + 8, label
        if proto == 0x0057:
            return IPV6, off + 8, label
        return None
    top = None
    for _ in range((n - off) // 4 + 1):  # bounded by the frame: one label per 4 bytes
        if 4 >= n - off:
            return TRUNCATED_MPLS
        if top is None:
            top = (data[off] << 12) | (data[off + 1] << 4) | (data[off + 2] >> 4)
        bottom = data[off + 2] & 1
        off += 4
        if bottom:
            break
    else:
        return TRUNCATED_MPLS
    label = f"MPLS label {top}"
    v = data[off] >> 4
    if v == 4:
        return IPV4, off, label
    if v == 6:
        return IPV6, off, label
    if v == 0 and _ether_follows(data, off + 4):  # pseudowire control word, then Ethernet
        return ETHER, off + 4, label + " (pseudowire)"
    if _ether_follows(data, off):  # pseudowire without a control word
        return ETHER, off, label + " (pseudowire)"
    return None


def _teredo(data: bytes, pos: int, end: int):
    origin = auth = False
    for _ in range(3):  # auth, origin, then the IPv6 header: at most three steps
        if end - pos < 2:
            return None
        tag = (data[pos] << 8) | data[pos + 1]
        if tag == 0:
            if origin or end - pos < 8:
                return None
            origin, pos = True, pos + 8
        elif tag == 1:
            if origin or auth or end - pos < 4:
                return None
            total = 4 + data[pos + 2] + data[pos + 3] + 8 + 1
            if end - pos < total:
                return None
            auth, pos = True, pos + total
        elif tag >> 12 == 6:
            if end - pos < 40:
                return None
            size = 40 + ((data[pos + 4] << 8) | data[pos + 5])
            if size > end - pos:
                return None  # truncated inner packet (Zeek: CaplenTooSmall, a violation)
            if size < end - pos and not (data[pos + 6] == 59 and size == 40):
                return None  # bytes after the inner packet, not a bubble (Zeek: "Teredo payload length")
            how = ", ".join(w for w, on in (("auth", auth), ("origin indication", origin)) if on)
            return IPV6, pos, "Teredo" + (f" ({how})" if how else "")
        else:
            return None
    return None


def unwrap_udp(data: bytes, l4: int, end: int):
    """(kind, offset, label) of the packet inside a VXLAN, Geneve or Teredo datagram whose UDP
    header is at l4 (the IP packet ends at end); None when it is none of them."""
    if end - l4 < 8:
        return None
    sport, dport = (data[l4] << 8) | data[l4 + 1], (data[l4 + 2] << 8) | data[l4 + 3]
    port = dport if dport in TUNNEL_UDP_PORTS else sport
    pos = l4 + 8
    if port == UDP_VXLAN:
        if end - pos < 8 or not data[pos] & 0x08 or end - pos == 8:
            return None
        vni = (data[pos + 4] << 16) | (data[pos + 5] << 8) | data[pos + 6]
        return ETHER, pos + 8, f"VXLAN VNI {vni}"
    if port == UDP_GENEVE:
        if end - pos < 8 or data[pos] >> 6 != 0:
            return None
        hdr = 8 + (data[pos] & 0x3F) * 4
        if end - pos < hdr or end - pos == hdr:
            return None
        proto = (data[pos + 2] << 8) | data[pos + 3]
        vni = (data[pos + 4] << 16) | (data[pos + 5] << 8) | data[pos + 6]
        label = f"Geneve VNI {vni}"
        kind = {0x6558: ETHER, 0x0800: IPV4, 0x86DD: IPV6}.get(proto)
        return None if kind is None else (kind, pos + hdr, label)
    if port == UDP_TEREDO:
        return _teredo(data, pos, end)
    return None

