"""TCP header: ports, sequence/ack numbers, flags, window, payload.

Reads: bytes from the TCP offset to the end of the IP payload. Produces: a tuple or None.
Never: verifies checksums: captures taken on the sending host carry offloaded (wrong) checksums,
which is why Zeek users run `zeek -C`; dsrdiag behaves like `zeek -C`.
"""

from struct import Struct

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80
_HDR = Struct(">HHIIBBH")


def decode_tcp(data: bytes, off: int, end: int):
    """Return (sport, dport, seq, ack, flags, window, payload) or None if the header is cut short."""
    if end - off < 20:
        return None
    sport, dport, seq, ack, doff, flags, win = _HDR.unpack_from(data, off)
    hl = (doff >> 4) * 4
    if hl < 20 or off + hl > end:
        return None
    return sport, dport, seq, ack, flags, win, data[off + hl : end]


def flag_letters(flags: int) -> str:
    """Flags as letters in bit order, the way scapy and Zeek's history write them: SYN+ACK -> 'SA'."""
    return "".join(ch for bit, ch in enumerate("FSRPAUEC") if flags >> bit & 1)


def flag_text(flags: int) -> str:
    """Flags the way Wireshark's info column writes them: SYN, ACK -> 'SYN, ACK'."""
    names = ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK, "ACK"), (URG, "URG"))
    return ", ".join(n for bit, n in names if flags & bit) or "none"
