"""One copy of each value that repeats across records.

Why: a day of mail repeats the VIP, the same client addresses, the same histories (`ShADadFf`),
L2 paths and SMTP command lists hundreds of thousands of times; records that share one copy keep
memory close to what is open, not to what was seen. Bounded: the table is emptied when it grows
past MAX_SHARED (values stay correct, only sharing restarts).
"""

MAX_SHARED = 200_000
_SHARED: dict = {}


def shared(v):
    """`v`, or an equal value seen before (the same object)."""
    got = _SHARED.get(v)
    if got is None:
        if len(_SHARED) > MAX_SHARED:
            _SHARED.clear()
        got = _SHARED[v] = v
    return got
