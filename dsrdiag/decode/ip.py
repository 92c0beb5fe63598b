"""IPv4 and IPv6 headers: addresses, TTL/hop limit, IP ID, and the offset of the transport header.

Reads: bytes from the L3 offset. Produces: (proto, src, dst, ttl, ip_id, l4 offset, l4 end) or None.
Never: reassembles fragments (a non-first fragment carries no TCP header; it is skipped and counted).
Why: the IP total length trims Ethernet padding, which would otherwise count as TCP payload; the
IPv6 extension-header chain is walked so TCP behind Hop-by-Hop/Routing/Destination/Fragment/AH is found.
"""

IPPROTO_TCP = 6
IPPROTO_ICMPV6 = 58
IPPROTO_IPIP = 4
IPPROTO_IPV6 = 41
IPPROTO_GRE = 47
TUNNEL_PROTOS = frozenset((IPPROTO_IPIP, IPPROTO_IPV6, IPPROTO_GRE))
_EXT_8 = frozenset((0, 43, 60))  # Hop-by-Hop, Routing, Destination Options: (len+1)*8 bytes
FRAGMENT = "fragment"


def decode_ipv4(data: bytes, off: int):
    if len(data) < off + 20:
        return None
    vihl = data[off]
    if vihl >> 4 != 4:
        return None
    ihl = (vihl & 0x0F) * 4
    total = (data[off + 2] << 8) | data[off + 3]
    if total == 0:
        # TCP segmentation offload: captured on the sender before the NIC filled the length
        # in (Wireshark: "total length 0, assumed TSO"); the frame holds the real payload.
        total = len(data) - off
    if ihl < 20 or total < ihl:
        return None
    if ((data[off + 6] & 0x1F) << 8) | data[off + 7]:
        return FRAGMENT
    end = min(off + total, len(data))
    return (
        data[off + 9],
        data[off + 12 : off + 16],
        data[off + 16 : off + 20],
        data[off + 8],
        (data[off + 4] << 8) | data[off + 5],
        off + ihl,
        end,
    )


def decode_ipv6(data: bytes, off: int):
    if len(data) < off + 40 or data[off] >> 4 != 6:
        return None
    plen = (data[off + 4] << 8) | data[off + 5]
    nxt = data[off + 6]
    end = min(off + 40 + plen, len(data))
    pos = off + 40
    for _ in range(8):  # bounded walk of the extension-header chain
        if nxt in _EXT_8:
            if pos + 2 > end:
                return None
            nxt, pos = data[pos], pos + (data[pos + 1] + 1) * 8
        elif nxt == 44:  # Fragment
            if pos + 8 > end:
                return None
            if ((data[pos + 2] << 8) | data[pos + 3]) & 0xFFF8:
                return FRAGMENT
            nxt, pos = data[pos], pos + 8
        elif nxt == 51:  # Authentication Header
            if pos + 2 > end:
                return None
            nxt, pos = data[pos], pos + (data[pos + 1] + 2) * 4
        else:
            break
    if pos > end:
        return None
    return nxt, data[off + 8 : off + 24], data[off + 24 : off + 40], data[off + 7], None, pos, end


def decode_tunnel(proto: int, data: bytes, l4: int, end: int):
    """The packet inside an IP-in-IP (4), 6in4 (41) or GRE (47, IPv4/IPv6 payload) header, as
    decode_ipv4/decode_ipv6 return it; None when it is not one of those or is truncated.

    Why: an LVS-TUN style load balancer encapsulates the client's packet to the back-end's real
    address; inside is the client's packet to the VIP, which the back-end answers directly."""
    inner = data[:end]
    if proto == IPPROTO_IPIP:
        return decode_ipv4(inner, l4)
    if proto == IPPROTO_IPV6:
        return decode_ipv6(inner, l4)
    if proto != IPPROTO_GRE or l4 + 4 > end:
        return None
    flags, ptype = data[l4], (data[l4 + 2] << 8) | data[l4 + 3]
    if data[l4 + 1] & 0x07:  # GRE version 0 only (1 is PPTP)
        return None
    pos = l4 + 4 + (4 if flags & 0x80 else 0) + (4 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
    if pos > end:
        return None
    if ptype == 0x0800:
        return decode_ipv4(inner, pos)
    if ptype == 0x86DD:
        return decode_ipv6(inner, pos)
    return None
