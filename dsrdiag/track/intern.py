"""One copy of each value that repeats across records.

Why: a day of mail repeats the VIP, the same client addresses, the same histories (`ShADadFf`),
L2 paths and SMTP command lists hundreds of thousands of times; records that share one copy keep
memory close to what is open, not to what was seen. Bounded: the table is emptied when it grows
past MAX_SHARED (values stay correct, only sharing restarts).
"""

from dsrdiag.core import addr

MAX_SHARED = 200_000
_SHARED: dict = {}
_MAC_TEXT: dict = {}
_IP_TEXT: dict = {}
_L2_TEXT: dict = {}


def shared(v):
    """`v`, or an equal value seen before (the same object)."""
    got = _SHARED.get(v)
    if got is None:
        if len(_SHARED) > MAX_SHARED:
            _SHARED.clear()
        got = _SHARED[v] = v
    return got


def mac_text(raw: bytes | None) -> str | None:
    """A raw MAC's text (core.addr's spelling), one string per MAC: notes cite few MACs many times."""
    if raw is None:
        return None
    got = _MAC_TEXT.get(raw)
    if got is None:
        if len(_MAC_TEXT) > MAX_SHARED:
            _MAC_TEXT.clear()
        got = _MAC_TEXT[raw] = addr.mac_text(raw)
    return got


def ip_text(raw: bytes) -> str:
    """A raw address's text (core.addr's spelling), one shared string per address."""
    got = _IP_TEXT.get(raw)
    if got is None:
        if len(_IP_TEXT) > MAX_SHARED:
            _IP_TEXT.clear()
        got = _IP_TEXT[raw] = shared(addr.ip_text(raw))
    return got


def l2_text(raw_pairs) -> tuple:
    """[(source MAC bytes, destination MAC bytes)] -> the shared tuple of their text pairs. A
    connection's L2 path is one of a few per vantage: looked up whole, not MAC by MAC."""
    key = raw_pairs if type(raw_pairs) is tuple else tuple(raw_pairs)
    got = _L2_TEXT.get(key)
    if got is None:
        if len(_L2_TEXT) > MAX_SHARED:
            _L2_TEXT.clear()
        got = _L2_TEXT[key] = shared(tuple((mac_text(a), mac_text(b)) for a, b in key))
    return got


def tables() -> tuple:
    """(addresses, shared values, L2 paths): the tables themselves, for the C tracker, which looks
    values up in them and calls ip_text, shared and l2_text on a miss (track/_conntrack.c
    conn_record): one table, one policy, whichever tracker asks."""
    return _IP_TEXT, _SHARED, _L2_TEXT
