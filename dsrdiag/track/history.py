"""What the per-record passes ask of a connection's Zeek history, answered once per distinct string.

Why: every record's history is asked the same questions by several passes (track/facts.py as the
record is made; the judge's collectors and the verdict's tallies in judge's shared pass: a SYN
seen, the handshake completed, only SYNs, the server's data), each a scan of the string, some of a
slice of it. A day of mail has few distinct histories (the tracker shares one string per value,
track/intern.py), so each string's answers are computed once, as bits, and each question is then
one dict lookup and a bit test. The answers are exactly those of the string scans they replace
(tests/test_history_flags.py checks every history of the real captures and all short ones).
"""

from __future__ import annotations

SAW_SYN = 1
"""'S' in history: the client's SYN was seen (Connection.saw_syn)."""
OPENED = 2
"""history[0] == 'S': the client's SYN opened the connection (not a mid-stream pick-up)."""
SYNACK = 4
"""'h' in history: the server's SYN-ACK was seen."""
ORIG_PROGRESS = 8
"""'A' or 'D' in history: the client ACKed or sent data."""
RESP_PROGRESS = 16
"""'d' or 'a' in history: the server sent data or ACKed."""
REFUSED = 32
"""'r' in history: the server reset it."""
RESP_DATA = 64
"""'d' in history: the server sent data (an SMTP server speaks first: its banner)."""
DONE_AFTER_SYNACK = 128
"""'h' in history and the client's ACK or data after the first 'h': the handshake completed."""
DONE_NO_SYNACK = 256
"""No 'h', and the client's ACK or data after its first SYN: completed where replies do not pass
this vantage, when the record has no server packet (completed() adds that test: resp_pkts)."""
SYNS_ONLY = 512
"""'S' in history and nothing but 'S': the client's SYNs and nothing else (Context.only_syns adds
resp_pkts == 0)."""
NO_ORIG_AFTER_SYNACK = 1024
"""No 'D' anywhere and no 'A' after the first 'h' (or anywhere when no 'h'): the client never
went on after the SYN-ACK (asymmetric_flow's ack-missing shape)."""
ANSWERED = 2048
"""DONE_AFTER_SYNACK and RESP_DATA: the verdict's completion (jobs/analyze.py answered())."""

MAX_KEPT = 1 << 16
"""Distinct histories remembered (a hostile capture could make many): beyond, computed each time."""


def flags_of(h: str) -> int:
    """The bits above for one history string (the string scans, done once)."""
    f = 0
    if "S" in h:
        f |= SAW_SYN
        if set(h) <= {"S"}:
            f |= SYNS_ONLY
    if h[:1] == "S":
        f |= OPENED
    if "A" in h or "D" in h:
        f |= ORIG_PROGRESS
    if "d" in h or "a" in h:
        f |= RESP_PROGRESS
    if "r" in h:
        f |= REFUSED
    if "d" in h:
        f |= RESP_DATA
    i = h.find("h")
    if i >= 0:
        f |= SYNACK
        if "A" in h[i:] or "D" in h[i:]:
            f |= DONE_AFTER_SYNACK
            if "d" in h:
                f |= ANSWERED
    else:
        j = h.find("S")
        if j >= 0 and ("A" in h[j:] or "D" in h[j:]):
            f |= DONE_NO_SYNACK
    if "D" not in h and "A" not in h.split("h", 1)[-1]:
        f |= NO_ORIG_AFTER_SYNACK
    return f


class _Flags(dict):
    """history -> its bits, filled on first sight (bounded: MAX_KEPT)."""

    __slots__ = ()

    def __missing__(self, h: str) -> int:
        f = flags_of(h)
        if len(self) < MAX_KEPT:
            self[h] = f
        return f


FLAGS: dict[str, int] = _Flags()
"""FLAGS[c.history]: the history's bits (an empty table until the first record asks)."""
