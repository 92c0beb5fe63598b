"""ICMPv6 neighbour discovery: solicitations (135) and advertisements (136) - IPv6's ARP.

Produces: (type, target, flags, lladdr) where flags holds R/S/O bits of an advertisement and lladdr
is the source (NS) or target (NA) link-layer address option, or None.
"""

NS, NA = 135, 136
R_FLAG, S_FLAG, O_FLAG = 0x80, 0x40, 0x20


def decode_nd(data: bytes, off: int, end: int):
    if end - off < 24:
        return None
    typ = data[off]
    if typ not in (NS, NA):
        return None
    flags = data[off + 4] if typ == NA else 0
    target = data[off + 8 : off + 24]
    lladdr = None
    pos = off + 24
    for _ in range(16):  # bounded option walk
        if pos + 2 > end:
            break
        otype, olen = data[pos], data[pos + 1] * 8
        if olen == 0 or pos + olen > end:
            break
        if otype in (1, 2) and olen >= 8:
            lladdr = data[pos + 2 : pos + 8]
        pos += olen
    return typ, target, flags, lladdr
