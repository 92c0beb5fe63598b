"""ARP (Ethernet/IPv4 only): op, sender and target hardware and protocol addresses.

Produces: (op, sha, spa, tha, tpa), or a string naming what is malformed (Zeek's
`corrupt-arp-header`) so the tracker can count it instead of crashing or guessing.
"""

REQUEST, REPLY = 1, 2


def decode_arp(data: bytes, off: int):
    if len(data) < off + 8:
        return "truncated-arp-header"
    hrd = (data[off] << 8) | data[off + 1]
    pro = (data[off + 2] << 8) | data[off + 3]
    hln, pln = data[off + 4], data[off + 5]
    if hrd != 1 or hln != 6:
        return f"corrupt-arp-header (hrd={hrd}, hln={hln})"
    if pro != 0x0800 or pln != 4:
        return f"corrupt-arp-header (pro={pro}, pln={pln})"
    if len(data) < off + 28:
        return "truncated-arp-body"
    op = (data[off + 6] << 8) | data[off + 7]
    return op, data[off + 8 : off + 14], data[off + 14 : off + 18], data[off + 18 : off + 24], data[off + 24 : off + 28]
