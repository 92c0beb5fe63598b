"""Link layer: Ethernet (802.1Q/802.1ad/QinQ), Linux cooked SLL/SLL2, raw IP, BSD/OpenBSD loopback.

Reads: a frame's bytes and its link type. Produces: (ethertype, l3 offset, src MAC, dst MAC, VLAN ids).
Never: looks above the link layer. Why: the L2 path (which MAC sent a frame, to which MAC) is how
DSR is seen at all: the load balancer rewrites only the destination MAC.
"""

from struct import unpack_from

from dsrdiag.capture.frame import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
)

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_ARP = 0x0806
VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
_NULL_FAMILY_V6 = frozenset((24, 28, 30))
NO_VLAN: tuple[int, ...] = ()


def decode_link(linktype: int, data: bytes):
    """Return (ethertype, offset, src_mac, dst_mac, vlans) or None if the frame is too short or not IP/ARP."""
    if linktype == LINKTYPE_ETHERNET:
        if len(data) < 14:
            return None
        etype = (data[12] << 8) | data[13]
        off = 14
        vlans = NO_VLAN
        while etype in VLAN_TPIDS:
            if len(data) < off + 4:
                return None
            vlans = vlans + (((data[off] << 8) | data[off + 1]) & 0x0FFF,)
            etype = (data[off + 2] << 8) | data[off + 3]
            off += 4
        return etype, off, data[6:12], data[0:6], vlans
    if linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            return None
        alen = min((data[4] << 8) | data[5], 8)
        src = data[6 : 6 + alen] if alen == 6 else None
        return (data[14] << 8) | data[15], 16, src, None, NO_VLAN
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            return None
        alen = min(data[11], 8)
        src = data[12 : 12 + alen] if alen == 6 else None
        return (data[0] << 8) | data[1], 20, src, None, NO_VLAN
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not data:
            return None
        v = data[0] >> 4
        return (ETH_IPV4 if v == 4 else ETH_IPV6 if v == 6 else 0), 0, None, None, NO_VLAN
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 4:
            return None
        fam = unpack_from(">I" if linktype == LINKTYPE_LOOP else "<I", data)[0]
        if linktype == LINKTYPE_NULL and fam > 0xFFFF:  # written by a big-endian host
            fam = unpack_from(">I", data)[0]
        return (ETH_IPV4 if fam == 2 else ETH_IPV6 if fam in _NULL_FAMILY_V6 else 0), 4, None, None, NO_VLAN
    return None
