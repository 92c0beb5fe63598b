"""Lone SYNs: connections of one packet (a client's SYN, never answered, never retried), packed.

Why a lane of their own: a SYN flood or a scan is millions of them, and each one's record is the
same record but for a few numbers (client address and port, frame, time, sequence number). As
Connection objects, made, pickled to the record store, read back, judged and listed one by one,
they cost ~100 us each in Python (docs/performance.md); packed as fixed-size rows they are made in
C (track/_conntrack.c) or here, stored, sorted and read as bytes, and the passes that see every
connection (track/facts.py, findings/judge.py, report/jsondoc.py) take a block of rows at once.

Exactness: a row is a lossless form of exactly one Connection. `row_of(c)` packs a record when (and
only when) it is lone, `Block.connection(i)` gives the equal record back, and every consumer's
block path gives what its per-record path gives on those records (tests/test_lone.py compares
whole reports with the lane on and off, DSRDIAG_LONE=0). The C tracker packs the same rows from
its own state; tests compare its rows with `row_of` of the reference tracker's records.

A lone SYN's record: history `S`, conn_state `S0`, one originator packet (a SYN without ACK, no
payload, not forwarded, not cut, not tunnelled), nothing from the responder; its one packet note
is also its one SYN note, and its one L2 pair and TTL are that packet's.
"""

# No `from __future__ import annotations`: Digest is built at every start (records.py says why).

import os
import _socket as socket  # not socket.py: its enums and selectors cost ~2 ms at every start; these use inet_ntop/pton only
import struct
from array import array
from typing import NamedTuple

from dsrdiag.track.intern import ip_text, l2_text
from dsrdiag.track.records import Connection, NoteBlock, _NOTE

ROW = struct.Struct("<QQqqq16s16sHHIIi6s6sBBBB")
"""num, frame, first_ts_ns, last_ts_ns, the note's ts_ns, client address, server address (16 bytes,
an IPv4 address in the first 4, the rest zero), client port, server port, seq, ack, ip_id (-1: none,
IPv6), source MAC, destination MAC (zero when absent), ttl, TCP flags, address length (4 or 16),
MACs present (bit 0 source, bit 1 destination). Little-endian, 104 bytes, no padding."""
SIZE = ROW.size
assert SIZE == 104
KEY = struct.Struct("<QQq")
"""The first fields of a row: num, frame, first_ts_ns (what ordering reads)."""
SYN, ACK = 0x02, 0x10
_ZERO6 = bytes(6)


def enabled() -> bool:
    """DSRDIAG_LONE=0 turns the lane off: every lone SYN is a Connection record like any other
    (how tests prove that the lane changes nothing, and a way out if it ever does)."""
    return os.environ.get("DSRDIAG_LONE", "1") != "0"


def _raw_ip(text: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)


def _raw_mac(text: str | None) -> bytes:
    return bytes.fromhex(text.replace(":", "")) if text else _ZERO6


def row_of(c: Connection) -> bytes | None:
    """The row of a lone SYN's record, or None when `c` is not one (the definition, above)."""
    if (c.history != "S" or c.conn_state != "S0" or c.orig_pkts != 1 or c.resp_pkts or c.orig_bytes or c.resp_bytes
            or c.missed_bytes or c.orig_forwarded or c.resp_forwarded or len(c.orig_l2) != 1 or c.resp_l2
            or c.orig_ttl is None or c.resp_ttl is not None or c.syn_seq is None or c.synack_ack is not None
            or c.smtp is not None or c.tunneled_from is not None or c.forwarded_frames
            or len(c.packets) != 1 or len(c.syn_frames) != 1):
        return None
    n = c.packets[0]
    if (n != c.syn_frames[0] or n.direction != ">" or n.payload_len or n.text is not None or n.flags & (SYN | ACK) != SYN
            or (n.src_mac, n.dst_mac) != c.orig_l2[0] or n.ttl != c.orig_ttl or n.seq != c.syn_seq):
        return None
    uid = c.uid
    prefix = f"{c.vantage}:C"
    if not uid.startswith(prefix) or not uid[len(prefix):].isdigit() or str(int(uid[len(prefix):])) != uid[len(prefix):]:
        return None
    alen = 4 if c.ip_version == 4 else 16
    ci, si = _raw_ip(c.client_ip), _raw_ip(c.server_ip)
    if len(ci) != alen or len(si) != alen:
        return None
    try:
        return ROW.pack(int(uid[len(prefix):]), n.frame, c.first_ts_ns, c.last_ts_ns, n.ts_ns, ci, si, c.client_port,
                        c.server_port, n.seq, n.ack, -1 if n.ip_id is None else n.ip_id, _raw_mac(n.src_mac),
                        _raw_mac(n.dst_mac), n.ttl, n.flags, alen, (n.src_mac is not None) | (n.dst_mac is not None) << 1)
    except struct.error:  # a value out of the row's range (a corrupt capture's timestamp): a record
        return None


def sort_rows_py(rows: bytes) -> bytes:
    """Rows in record order: (first_ts_ns, uid) with uid compared as text, as records are sorted
    (the reference; _lonerows.sort_rows is its C peer)."""
    out = [rows[i:i + SIZE] for i in range(0, len(rows), SIZE)]
    if len(out) > 1:
        out.sort(key=lambda r: (KEY.unpack_from(r)[2], str(KEY.unpack_from(r)[0])))
    return b"".join(out)


class Digest(NamedTuple):
    """What the passes over every connection need of a block of rows, with a row's repeated parts
    (its server, MACs, TTL: its group; its client address within the group: its pair) counted once.

    Everything is in order of first appearance in the block, which is what makes a pass over the
    digest give what a pass over the rows gives, bounded tables included (a table that admits new
    keys up to a bound admits the same keys whether it sees each row or each key's first row)."""

    groups: list
    """(server address bytes, server port, source MAC, destination MAC, MACs present, TTL, address length)"""
    group_n: list
    group_first: list
    """row index of each group's first row"""
    group_min: list
    group_max: list
    """row index of each group's smallest and largest (note time, frame)"""
    pairs: list
    """(group index, client address bytes)"""
    pair_n: list
    pair_first: list
    row_group: "array"
    row_pair: "array"
    """per row: its group's index, its pair's index (array('I'))"""
    secs: list
    """(group index, second of first_ts_ns, rows): per group, per second, in order of first appearance"""
    same_ts: bool
    """every row's note time is its first_ts_ns (false only where the capture clock overruled a stamp)"""
    pair_ips: list
    """each pair's client address as text (address_text of its bytes): made with the digest, in C
    when built, so that the passes over a flood's pairs take no Python step per distinct address"""


def digest_py(data) -> Digest:
    """The reference digest of a block's rows (_lonerows.digest is its C peer)."""
    groups: dict = {}
    pairs: dict = {}
    secs: dict = {}
    g_n, g_first, g_min, g_max, g_minkey, g_maxkey = [], [], [], [], [], []
    p_n, p_first = [], []
    row_group, row_pair = array("I"), array("I")
    same = True
    for i, t in enumerate(ROW.iter_unpack(data)):
        num, frame, first, _last, nts, ci, si, cport, sport, _seq, _ack, _ipid, smac, dmac, ttl, _fl, alen, has = t
        gk = (si[:alen], sport, smac, dmac, has, ttl, alen)
        g = groups.get(gk)
        k = (nts, frame)
        if g is None:
            g = groups[gk] = len(g_n)
            g_n.append(0), g_first.append(i), g_min.append(i), g_max.append(i), g_minkey.append(k), g_maxkey.append(k)
        g_n[g] += 1
        if k < g_minkey[g]:
            g_min[g], g_minkey[g] = i, k
        if k > g_maxkey[g]:
            g_max[g], g_maxkey[g] = i, k
        pk = (g, ci[:alen])
        p = pairs.get(pk)
        if p is None:
            p = pairs[pk] = len(p_n)
            p_n.append(0), p_first.append(i)
        p_n[p] += 1
        sk = (g, first // 1_000_000_000)
        secs[sk] = secs.get(sk, 0) + 1
        row_group.append(g), row_pair.append(p)
        if nts != first:
            same = False
    return Digest(list(groups), g_n, g_first, g_min, g_max, list(pairs), p_n, p_first, row_group, row_pair,
                  [(g, sec, n) for (g, sec), n in secs.items()], same, [address_text(ci) for _g, ci in pairs])


def address_text(raw: bytes) -> str | None:
    """An address's text as socket.inet_ntop spells it (core/addr.ip_text), or None for bytes that
    are neither an IPv4 nor an IPv6 address (no tracker makes such a row). The reference of the C
    digest's pair_ips; uncached (the digest makes each pair's text once)."""
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if len(raw) == 16:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return None


try:  # the C peers (track/_lonerows.c), when built
    from dsrdiag.track import _lonerows as _native
except ImportError:  # pragma: no cover - no compiler: the reference does the same
    _native = None


def sort_rows(rows) -> bytes:
    if _native is not None and os.environ.get("DSRDIAG_TRACKER", "c") != "python":
        return _native.sort_rows(rows)
    return sort_rows_py(rows)


def digest(data) -> Digest:
    if _native is not None and os.environ.get("DSRDIAG_TRACKER", "c") != "python":
        return Digest(*_native.digest(data))
    return digest_py(data)


GROUP_FIELDS = ("groups", "group_n", "group_first", "group_min", "group_max", "row_group", "secs", "same_ts")
"""The digest's fields that need no pair table (what _lonerows.digest_groups gives, in this order)."""
PAIR_FIELDS = ("pair_n", "pair_first", "row_pair", "pair_ips")
"""The digest's pair-level fields but `pairs` itself (what _lonerows.digest_pairs gives, in this order)."""


def pair_fields(data) -> tuple:
    """PAIR_FIELDS of the digest of `data`, in that order: _lonerows.digest_pairs where it is built
    (without the pairs' tuples: a tuple and a bytes per client were nearly half the digest's cost)."""
    if _split() and os.environ.get("DSRDIAG_TRACKER", "c") != "python":
        return _native.digest_pairs(data)
    d = digest(data)
    return tuple(getattr(d, name) for name in PAIR_FIELDS)


def pairs_of_py(data, row_group, pair_first) -> list:
    """The digest's pairs from its row_group and pair_first: (group, client address bytes) of each
    pair's first row (a pair's group is its first row's; its key, that row's address); the
    reference of _lonerows.pairs_of."""
    return [(row_group[f], bytes(data[f * SIZE + _CI:f * SIZE + _CI + min(data[f * SIZE + _ALEN], 16)])) for f in pair_first]


_CI, _ALEN = struct.calcsize("<QQqqq"), struct.calcsize("<QQqqq16s16sHHIIi6s6sBB")
"""Offsets in a row (ROW) of the client address and of the address length."""


def _split() -> bool:
    """The C kernels make the pair fields and the pairs apart (an extension built before them: the whole digest)."""
    return _native is not None and hasattr(_native, "digest_pairs") and hasattr(_native, "pairs_of")


class LazyDigest:
    """A block's digest whose group-level fields (GROUP_FIELDS) are made at once and the others
    only when first read: PAIR_FIELDS together (digest_pairs: a count, a first row and an address
    text per distinct client), `pairs` (a tuple and a bytes per client) apart, from those.

    Why: of the passes that take a flood's blocks, the rules' (findings/judge.py: groups, and
    row_group where a claim differs by group; pairs only where a scanner is claimed by source),
    the capture limits' (groups) and the JSON list's (groups: each row's address is written from
    the row, report/_jsonrows.c items_text) read no pair; the facts read the pair fields and, of
    the pairs, only how many there are. A spoofed flood's blocks are mostly distinct clients, so a
    pass that makes what it does not read costs as much as one that needs it. Every field has the
    value the whole digest gives (tests/test_lone_text.py)."""

    __slots__ = GROUP_FIELDS + ("_data", "_full", "_pair_fields", "_pair_list")

    def __init__(self, data, fields: tuple):
        for name, v in zip(GROUP_FIELDS, fields):
            setattr(self, name, v)
        self._data, self._full, self._pair_fields, self._pair_list = data, None, None, None

    def _whole(self) -> Digest:
        if self._full is None:
            self._full = digest(self._data)
        return self._full

    def _pair(self, i: int):
        """PAIR_FIELDS[i], made once with the others."""
        if not _split():
            return self._whole()[PAIR_FIELDS_AT[i]]
        if self._pair_fields is None:
            self._pair_fields = _native.digest_pairs(self._data)
        return self._pair_fields[i]

    @property
    def pairs(self) -> list:
        if not _split():
            return self._whole().pairs
        if self._pair_list is None:
            self._pair_list = _native.pairs_of(self._data, self.row_group, self.pair_first)
        return self._pair_list

    @property
    def pair_n(self) -> list:
        return self._pair(0)

    @property
    def pair_first(self) -> list:
        return self._pair(1)

    @property
    def row_pair(self) -> "array":
        return self._pair(2)

    @property
    def pair_ips(self) -> list:
        return self._pair(3)


PAIR_FIELDS_AT = tuple(Digest._fields.index(name) for name in PAIR_FIELDS)


def block_digest(data):
    """Block.digest's value: a LazyDigest where the C kernels run, else the whole reference digest."""
    if _native is not None and os.environ.get("DSRDIAG_TRACKER", "c") != "python":
        return LazyDigest(data, _native.digest_groups(data))
    return digest_py(data)


_ADDRESS: dict = {}
ADDRESS_CACHE = 1 << 17
"""Addresses remembered as text (IPv6's inet_ntop costs ~2 us from Python): emptied when full, like
track/intern.py's tables. The lane's own passes read the digest's pair_ips (made in C) instead;
this is for a caller that holds a pair's bytes (findings/judge.py's claim by source)."""


def address(raw: bytes) -> str:
    """A row's address as text (core/addr.ip_text's spelling: inet_ntop), in a cache of its own,
    not the intern table: a spoofed flood has as many client addresses as attempts."""
    got = _ADDRESS.get(raw)
    if got is None:
        if len(_ADDRESS) >= ADDRESS_CACHE:
            _ADDRESS.clear()
        got = _ADDRESS[raw] = socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)
    return got


def row_key(row, vantage: str, at: int = 0) -> tuple[int, str]:
    num, _frame, first = KEY.unpack_from(row, at)
    return (first, f"{vantage}:C{num}")


class Block:
    """Consecutive rows of one capture, in record order: a slice of the lane (bytes, no copy of rows
    made until asked). Iterating gives Connection records, equal to the ones the rows were made of."""

    __slots__ = ("data", "capture", "vantage", "_digest")

    def __init__(self, data, capture: str, vantage: str):
        self.data, self.capture, self.vantage = data, capture, vantage
        self._digest = None

    def digest(self) -> Digest:
        """The block's digest, made once (its pairs when first read: LazyDigest)."""
        if self._digest is None:
            self._digest = block_digest(self.data)
        return self._digest

    def row(self, i: int) -> tuple:
        return ROW.unpack_from(self.data, i * SIZE)

    def __len__(self) -> int:
        return len(self.data) // SIZE

    def __bool__(self) -> bool:
        return len(self.data) >= SIZE

    def key(self, i: int) -> tuple[int, str]:
        return row_key(self.data, self.vantage, i * SIZE)

    def bisect(self, key: tuple[int, str]) -> int:
        """How many rows sort before `key` (a record's (first_ts_ns, uid))."""
        lo, hi = 0, len(self)
        while lo < hi:
            mid = (lo + hi) // 2
            if self.key(mid) < key:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def cut(self, i: int) -> tuple["Block", "Block"]:
        d = memoryview(self.data)
        return Block(d[:i * SIZE], self.capture, self.vantage), Block(d[i * SIZE:], self.capture, self.vantage)

    def slice(self, i: int, j: int) -> "Block":
        return Block(memoryview(self.data)[i * SIZE:j * SIZE], self.capture, self.vantage)

    def rows(self):
        """The rows as tuples, in ROW's field order."""
        return ROW.iter_unpack(self.data)

    def connection(self, t: tuple) -> Connection:
        """The record of one row (a tuple from rows())."""
        (num, frame, first, last, nts, ci, si, cport, sport, seq, ack, ipid, smac, dmac, ttl, flags, alen, has) = t
        pairs = ((smac if has & 1 else None, dmac if has & 2 else None),)
        l2 = l2_text(pairs)
        s_txt, d_txt = l2[0]
        strs = tuple(x for x in (s_txt, d_txt) if x is not None)
        si_i = 0 if s_txt is not None else -1
        di_i = (1 if s_txt is not None else 0) if d_txt is not None else -1
        if s_txt is not None and d_txt == s_txt:
            strs, di_i = (s_txt,), 0
        note = NoteBlock(_NOTE.pack(frame, nts, 0, flags, 0, si_i, di_i, ttl, seq, ack, ipid, -1), strs)
        return _new_tuple(Connection, (
            f"{self.vantage}:C{num}", self.capture, self.vantage, ip_text(ci[:alen]), cport, ip_text(si[:alen]), sport,
            4 if alen == 4 else 6, first, last, "S", "S0", 1, 0, 0, 0, 0, 0, 0, l2, (), ttl, None, seq, None,
            note, note, _EMPTY, None, None,
        ))

    def __iter__(self):
        conn = self.connection
        return (conn(t) for t in ROW.iter_unpack(self.data))


_new_tuple = tuple.__new__
_EMPTY = NoteBlock()
