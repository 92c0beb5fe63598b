"""The C peers of the lone-SYN row kernels give exactly what their Python references give.

track/_lonerows.c: sort_rows = lone.sort_rows_py, digest = lone.digest_py (every field, its Python
type and value), digest_pairs and pairs_of = its pair fields and pairs; report/_jsonrows.c: items = b",".join(jsondoc._lone_items_py(...)), or None for
exactly the blocks it documents as left to Python. Compared on random rows (seeded: IPv4 and IPv6,
every MACs-present value, every TTL, numbers of many digit counts so that their text order is not
their numeric order, many rows of one time, note times that differ from first_ts_ns, bytes past the
address length, seconds on and across their boundaries, huge and tiny times) and on real rows (the
reference tracker on generated floods, scans and sessions), plus the edges: no rows, one row, a
buffer that is not whole rows, indexes out of range; and items of row ranges (jsondoc writes a
block in pieces): consecutive ranges' bytes joined are the block's, a range declined by its own
rows only, ranges outside the block refused.

Skipped where the extensions were not built (no compiler): then the references run anyway.
"""

from __future__ import annotations

import json
import random
import struct
import subprocess
import sys
from array import array
from pathlib import Path

import pytest

from conftest import ROOT
from floodgen import mixed

from dsrdiag.core.topology import Backend
from dsrdiag.report import jsondoc
from dsrdiag.track import lone
from dsrdiag.track.intern import ip_text

NS = 1_000_000_000
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def rows_c():
    return pytest.importorskip("dsrdiag.track._lonerows", reason="the C row kernels were not built (no compiler)")


@pytest.fixture(scope="module")
def items_c():
    pytest.importorskip("orjson", reason="items() writes what orjson writes")
    return pytest.importorskip("dsrdiag.report._jsonrows", reason="the C item writer was not built (no compiler)")


# ---- rows --------------------------------------------------------------------------------------

_DIGITS = [(0, 9), (10, 99), (100, 999), (1000, 99999), (10**5, 10**9), (10**9, 10**15), (10**18, 2**64 - 1)]


def _num(rng: random.Random) -> int:
    lo, hi = rng.choice(_DIGITS)
    return rng.randint(lo, hi)


def _first(rng: random.Random, kind: str) -> int:
    """A first_ts_ns: a capture's times (microseconds or nanoseconds, around a second's boundary)
    or, for `wild`, the edges of int64 and of 1970."""
    sec = rng.choice([1_700_000_000, 1_700_000_001, 1_700_000_002, 1_234_567_890, 2**31 - 1, 2**31, 2**32 + 5])
    if kind == "wild":
        return rng.choice([0, 1, -1, NS - 1, NS, NS + 1, -NS, -NS - 1, -NS + 1, 2**63 - 1, -2**63, 2**62 + 3,
                           rng.randrange(-2**63, 2**63), rng.randrange(-10 * NS, 10 * NS), sec * NS - 1, sec * NS])
    ns = rng.choice([0, 1, 999_999_999, 999_999_000, rng.randrange(NS), rng.randrange(10**6) * 1000,
                     rng.randrange(1000) * 10**6, rng.randrange(1000)])
    return sec * NS + ns


def random_rows(seed: int, n: int, v6: float = 0.3, wild: float = 0.0, odd: bool = False, clean: bool = False) -> bytes:
    """n rows: a few servers, MAC pairs, ports and TTLs (groups that repeat, often in runs, as a
    flood's rows do), a few hundred clients (pairs that repeat), times mostly shared by many rows.
    `wild`: the share of times at int64's and 1970's edges; `odd`: some rows with bytes past the
    address length and address lengths other than 4 and 16 (the reference reads si[:alen]: so must
    the peer); `clean`: rows as trackers make them (last == first, note time == first, a time after
    1970), for items()."""
    rng = random.Random(seed)

    def pool(alen, k):
        return [bytes(rng.getrandbits(8) for _ in range(alen)) for _ in range(k)]
    servers = {4: pool(4, 6), 16: pool(16, 6)}
    clients = {4: pool(4, 60), 16: pool(16, 60)}
    macs = [bytes(rng.getrandbits(8) for _ in range(6)) for _ in range(3)] + [bytes(6)]
    times = [_first(rng, "cap") for _ in range(max(1, n // 20))]
    out = []
    prev = None
    known: list = []  # groups seen: most rows are of one of them
    for i in range(n):
        if prev is not None and rng.random() < 0.5:
            alen, si, sport, smac, dmac, has, ttl = prev  # a run of one group
        elif len(known) >= 8 and rng.random() < 0.9:
            prev = rng.choice(known)
            alen, si, sport, smac, dmac, has, ttl = prev
        else:
            alen = 16 if rng.random() < v6 else 4
            if odd and rng.random() < 0.05:
                alen = rng.choice([0, 1, 7, 17, 200, 255])
            si = rng.choice(servers[16 if alen > 4 else 4])[:alen].ljust(16, b"\0")
            if odd and rng.random() < 0.1:  # junk past the address: not part of the key
                si = si[:min(alen, 16)] + bytes(rng.getrandbits(8) for _ in range(16 - min(alen, 16)))
            has = rng.randrange(4)
            smac = rng.choice(macs) if has & 1 else bytes(6)
            dmac = rng.choice(macs) if has & 2 else bytes(6)
            if odd and not has and rng.random() < 0.3:
                smac = rng.choice(macs)  # MAC bytes without the present bit: still the key's bytes
            ttl = rng.choice([64, 128, 255, 0, 64, 128, rng.randrange(256)])
            sport = rng.choice([25, 25, 25, 587, rng.randrange(65536)])
            prev = (alen, si, sport, smac, dmac, has, ttl)
            known.append(prev)
        al = min(alen, 16)
        ci = rng.choice(clients[16 if alen > 4 else 4])[:al].ljust(16, b"\0")
        if odd and rng.random() < 0.1:
            ci = ci[:al] + bytes(rng.getrandbits(8) for _ in range(16 - al))
        first = rng.choice(times) if rng.random() < 0.7 else _first(rng, "cap")
        if not clean and rng.random() < wild:
            first = _first(rng, "wild")
        last = first if clean or rng.random() < 0.9 else max(first, min(2**63 - 1, first + rng.randrange(1, 10 * NS)))
        nts = first if clean or rng.random() < 0.8 else max(-2**63, min(2**63 - 1, first + rng.randrange(-NS, NS)))
        out.append(lone.ROW.pack(_num(rng) if not clean else i * 7 + rng.choice([0, 1, 10**6, 10**12]),
                                 rng.getrandbits(64), first, last, nts, ci, si, rng.randrange(65536), sport,
                                 rng.getrandbits(32), 0, rng.choice([-1, rng.randrange(65536)]), smac, dmac, ttl,
                                 0x02, alen, has))
    return b"".join(out)


def _same_digest(c: tuple, ref: lone.Digest) -> None:
    """Equal fields, equal types, element by element (a bool is not an int, a list not a tuple)."""
    got = lone.Digest(*c)
    assert len(c) == len(lone.Digest._fields)
    for name in lone.Digest._fields:
        a, b = getattr(got, name), getattr(ref, name)
        assert type(a) is type(b), name
        if isinstance(b, array):
            assert a.typecode == b.typecode == "I" and a == b, name
            continue
        assert a == b, name
        if isinstance(b, list):
            for x, y in zip(a, b):
                assert type(x) is type(y), name
                if isinstance(y, tuple):
                    assert [type(e) for e in x] == [type(e) for e in y], name


# ---- sort_rows ---------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
def test_sort_rows_orders_random_rows_as_the_reference(rows_c, seed):
    data = random_rows(seed, 3000, wild=0.2, odd=True)
    ref = lone.sort_rows_py(data)
    assert ref != data  # the rows were out of order: the test can see a sort
    assert rows_c.sort_rows(data) == ref
    assert rows_c.sort_rows(bytearray(data)) == ref and rows_c.sort_rows(memoryview(data)) == ref
    assert rows_c.sort_rows(ref) == ref  # rows in order stay so


def test_sort_rows_compares_numbers_as_decimal_text_not_as_numbers(rows_c):
    nums = [9, 10, 100, 1, 0, 99, 2**64 - 1, 18446744073709551610, 1844674407370955161, 1844674407370955162,
            10**19, 10**19 - 1, 999_999_999_999_999_999, 1000000000000000000, 12, 120, 1200, 11, 2]
    data = b"".join(lone.ROW.pack(n, i, 5 * NS, 5 * NS, 5 * NS, bytes(16), bytes(16), 1, 25, 0, 0, -1, bytes(6),
                                  bytes(6), 64, 2, 4, 0) for i, n in enumerate(nums))
    out = rows_c.sort_rows(data)
    got = [t[0] for t in lone.ROW.iter_unpack(out)]
    assert got == sorted(nums, key=str) and got != sorted(nums)
    assert out == lone.sort_rows_py(data)


def test_sort_rows_orders_by_time_first_with_negative_and_extreme_times(rows_c):
    times = [2**63 - 1, -2**63, -1, 0, 1, NS, -NS, 2**62]
    data = b"".join(lone.ROW.pack(1, 0, t, t, t, bytes(16), bytes(16), 1, 25, 0, 0, -1, bytes(6), bytes(6), 64, 2, 4, 0)
                    for t in times)
    got = [t[2] for t in lone.ROW.iter_unpack(rows_c.sort_rows(data))]
    assert got == sorted(times)


def test_sort_rows_keeps_rows_of_equal_keys_in_their_order(rows_c):
    """num is unique in a capture, but the sort is stable anyway (as Python's): rows equal in
    (first_ts_ns, num) keep their input order (their frames tell them apart)."""
    rng = random.Random(3)
    rows = [lone.ROW.pack(rng.choice([5, 50, 7]), frame, rng.choice([NS, 2 * NS]), 0, 0, bytes(16), bytes(16), 1, 25,
                          0, 0, -1, bytes(6), bytes(6), 64, 2, 4, 0) for frame in range(500)]
    data = b"".join(rows)
    out = rows_c.sort_rows(data)
    assert out == lone.sort_rows_py(data)
    key = [(t[2], str(t[0])) for t in lone.ROW.iter_unpack(out)]
    frames = [t[1] for t in lone.ROW.iter_unpack(out)]
    for i in range(1, len(key)):
        assert key[i - 1] < key[i] or (key[i - 1] == key[i] and frames[i - 1] < frames[i])


# ---- digest ------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed,v6,wild,odd", [(0, 0.0, 0.0, False), (1, 1.0, 0.0, False), (2, 0.3, 0.3, False),
                                              (3, 0.5, 0.1, True), (4, 0.3, 0.0, True), (5, 0.1, 0.5, True)])
def test_digest_equals_the_reference_on_random_rows(rows_c, seed, v6, wild, odd):
    data = random_rows(seed, 4000, v6=v6, wild=wild, odd=odd)
    ref = lone.digest_py(data)
    # keys seen again and new ones, more than the tables' first sizes: every table path runs
    assert 16 < len(ref.groups) < len(data) // 104 // 4 and 16 < len(ref.pairs) < len(data) // 104 * 9 // 10
    assert 16 < len(ref.secs) and sum(ref.group_n) == sum(ref.pair_n) == len(data) // 104
    _same_digest(rows_c.digest(data), ref)
    _same_digest(rows_c.digest(memoryview(data)[104 * 7:]), lone.digest_py(memoryview(data)[104 * 7:]))


@pytest.mark.parametrize("seed,v6,wild,odd", [(0, 0.3, 0.3, True), (1, 1.0, 0.0, False)])
def test_digest_pairs_and_pairs_of_equal_the_reference_on_random_rows(rows_c, seed, v6, wild, odd):
    """The pair fields without the pairs' tuples, and the pairs made from them (lone.LazyDigest's two
    steps), are the reference digest's; a first row outside the block is an IndexError (here too:
    the sanitizer run below takes this module's tests)."""
    data = random_rows(seed + 20, 1500, v6=v6, wild=wild, odd=odd)
    ref = lone.digest_py(data)
    assert rows_c.digest_pairs(data) == tuple(getattr(ref, name) for name in lone.PAIR_FIELDS)
    assert rows_c.pairs_of(data, ref.row_group, ref.pair_first) == ref.pairs == \
        lone.pairs_of_py(data, ref.row_group, ref.pair_first)
    with pytest.raises(IndexError):
        rows_c.pairs_of(data, ref.row_group, [len(data) // 104])


def test_digest_reads_the_address_only_up_to_its_length(rows_c):
    """Two rows whose server and client fields differ only past the address length are one group
    and one pair; the same bytes with another length are another group."""
    base = dict(si=b"\xc0\x00\x02\x19" + bytes(12), ci=b"\xcb\x00\x71\x07" + bytes(12))
    junk = dict(si=b"\xc0\x00\x02\x19" + b"\xff" * 12, ci=b"\xcb\x00\x71\x07" + b"\xee" * 12)

    def row(num, a, alen=4):
        return lone.ROW.pack(num, num, NS * 2, NS * 2, NS * 2, a["ci"], a["si"], 1000, 25, 0, 0, -1, bytes(6), bytes(6),
                             64, 2, alen, 0)
    data = row(1, base) + row(2, junk) + row(3, junk, alen=16)
    d = lone.Digest(*rows_c.digest(data))
    assert list(d.row_group) == [0, 0, 1] and list(d.row_pair) == [0, 0, 1]
    assert d.groups[0][0] == b"\xc0\x00\x02\x19" and d.groups[1][0] == junk["si"]
    _same_digest(rows_c.digest(data), lone.digest_py(data))


def test_digest_min_and_max_break_ties_by_frame_and_keep_the_first(rows_c):
    def row(num, nts, frame):
        return lone.ROW.pack(num, frame, NS * 3, NS * 3, nts, bytes(16), bytes(16), 1, 25, 0, 0, -1, bytes(6), bytes(6),
                             64, 2, 4, 0)
    data = row(1, 50, 9) + row(2, 40, 9) + row(3, 40, 8) + row(4, 40, 8) + row(5, 60, 1) + row(6, 60, 1) + row(7, 60, 2)
    d = lone.Digest(*rows_c.digest(data))
    assert (d.group_min, d.group_max) == ([2], [6]) and d.same_ts is False
    _same_digest(rows_c.digest(data), lone.digest_py(data))


def test_digest_seconds_floor_negative_times_as_python_does(rows_c):
    times = [-1, -NS, -NS - 1, 0, NS - 1, NS, -2**63, 2**63 - 1]
    data = b"".join(lone.ROW.pack(i, i, t, t, t, bytes(16), bytes(16), 1, 25, 0, 0, -1, bytes(6), bytes(6), 64, 2, 4, 0)
                    for i, t in enumerate(times))
    d = lone.Digest(*rows_c.digest(data))
    assert d.secs == [(0, -1, 2), (0, -2, 1), (0, 0, 2), (0, 1, 1), (0, -2**63 // NS, 1), (0, (2**63 - 1) // NS, 1)]
    assert d.same_ts is True
    _same_digest(rows_c.digest(data), lone.digest_py(data))


def test_digest_of_one_group_of_many_clients_counts_each_pair(rows_c):
    """A flood's shape: one server, MACs and TTL (the peer's same-group shortcut), every client new."""
    data = b"".join(lone.ROW.pack(i, i, NS * 4 + i, NS * 4 + i, NS * 4 + i, struct.pack(">I", i) + bytes(12),
                                  b"\xc0\x00\x02\x19" + bytes(12), 1024 + i % 60000, 25, 0, 0, -1, b"\x02" * 6,
                                  b"\x04" * 6, 64, 2, 4, 3) for i in range(20000))
    d = lone.Digest(*rows_c.digest(data))
    assert len(d.groups) == 1 and len(d.pairs) == 20000 and d.group_n == [20000] and d.secs == [(0, 4, 20000)]
    _same_digest(rows_c.digest(data), lone.digest_py(data))


# ---- the edges ---------------------------------------------------------------------------------

def test_no_rows_and_one_row_give_what_the_references_give(rows_c, items_c):
    assert rows_c.sort_rows(b"") == lone.sort_rows_py(b"") == b""
    _same_digest(rows_c.digest(b""), lone.digest_py(b""))
    one = random_rows(9, 1, clean=True)
    assert rows_c.sort_rows(one) == lone.sort_rows_py(one) == one
    _same_digest(rows_c.digest(one), lone.digest_py(one))
    assert items_c.items(b"", (b"", b""), [], [], array("I"), array("I")) == b""
    block, head, templates, ips, d = _inputs(one)
    assert items_c.items(one, head, templates, ips, d.row_group, d.row_pair) == _reference(block, head, templates, ips, d)


@pytest.mark.parametrize("length", [1, 103, 105, 208 + 1, 104 * 50 - 1])
def test_a_buffer_that_is_not_whole_rows_is_a_value_error(rows_c, items_c, length):
    data = random_rows(1, 60)[:length]
    with pytest.raises(ValueError):
        rows_c.sort_rows(data)
    with pytest.raises(ValueError):
        rows_c.digest(data)
    with pytest.raises(ValueError):
        items_c.items(data, (b"", b""), [(b"",) * 6], [b""], array("I", [0] * 60), array("I", [0] * 60))


def test_a_non_buffer_is_a_type_error(rows_c, items_c):
    for bad in (None, 5, "rows"):
        with pytest.raises(TypeError):
            rows_c.sort_rows(bad)
        with pytest.raises(TypeError):
            rows_c.digest(bad)
    one = random_rows(2, 1, clean=True)
    g = array("I", [0])
    with pytest.raises(TypeError):
        items_c.items(one, (b"", "text"), [(b"",) * 6], [b""], g, g)
    with pytest.raises(TypeError):
        items_c.items(one, (b"", b""), [(b"",) * 5 + ("x",)], [b""], g, g)
    with pytest.raises(ValueError):
        items_c.items(one, (b"", b""), [(b"",) * 5], [b""], g, g)
    with pytest.raises(TypeError):
        items_c.items(one, (b"", b""), [(b"",) * 6], [None], g, g)


# ---- items -------------------------------------------------------------------------------------

def _backend_of(c):
    """Some groups have a back-end (its JSON is in the group's template), some not."""
    return Backend(name="be1", ip="192.0.2.11", mac="02:00:00:00:00:11") if c.server_port == 25 else None


def _inputs(data, capture="cap.pcap", vantage="fw-in"):
    """head, templates and ips built as jsondoc.lone_items builds them."""
    block = lone.Block(data, capture, vantage)
    d = lone.digest_py(data)
    v, cap = jsondoc._str(vantage)[:-1], jsondoc._str(capture)
    head = (b'{"uid":' + v + b":C", b'","vantage":' + v + b'","capture":' + cap + b',"ts":"')
    templates = [jsondoc._template(block, d, g, _backend_of) for g in range(len(d.groups))]
    ips = [ip_text(ci).encode() for _g, ci in d.pairs]
    return block, head, templates, ips, d


def _reference(block, head, templates, ips, d) -> bytes:
    return b",".join(jsondoc._lone_items_py(block, head, templates, ips, d))


def _check_items(items_c, data, **kw) -> bytes:
    block, head, templates, ips, d = _inputs(data, **kw)
    out = items_c.items(data, head, templates, ips, d.row_group, d.row_pair)
    assert out is not None
    assert out == _reference(block, head, templates, ips, d)
    objs = json.loads(b"[" + out + b"]")  # and it is the list of the records' own JSON objects
    assert objs == [json.loads(jsondoc._encode(jsondoc._conn(c, _backend_of(c)))) for c in block]
    return out


@pytest.mark.parametrize("seed,v6", [(0, 0.0), (1, 1.0), (2, 0.4), (3, 0.1)])
def test_items_equal_the_reference_on_random_rows(items_c, seed, v6):
    data = random_rows(seed, 2500, v6=v6, clean=True)
    out = _check_items(items_c, data)
    assert out.count(b'"uid":') == 2500


def test_items_equal_the_reference_for_odd_capture_and_vantage_names(items_c):
    data = random_rows(4, 300, clean=True)
    _check_items(items_c, data, capture='dir/"quoted" \\ näme.pcap', vantage="be\t1")


def test_items_decline_exactly_the_rows_left_to_python(items_c):
    """None: a time before 1970-01-01T00:00:01 (second <= 0) or a row with a duration; a row at
    second 1 exactly, or any later time, is written."""
    good = random_rows(5, 200, clean=True)
    rows = [bytearray(good[i:i + 104]) for i in range(0, len(good), 104)]

    def with_times(first, last):
        r = bytearray(rows[57])
        struct.pack_into("<qqq", r, 16, first, last, first)
        return b"".join(bytes(x) for x in rows[:57]) + bytes(r) + b"".join(bytes(x) for x in rows[58:])
    for first, last in [(0, 0), (NS - 1, NS - 1), (-1, -1), (-5 * NS, -5 * NS), (-2**63, -2**63),
                        (1_700_000_000 * NS, 1_700_000_000 * NS + 1), (2 * NS, 3 * NS)]:
        data = with_times(first, last)
        block, head, templates, ips, d = _inputs(data)
        assert items_c.items(data, head, templates, ips, d.row_group, d.row_pair) is None, (first, last)
    for first in [NS, NS + 1, 2**31 * NS, 2**33 * NS - 1, 2**33 * NS, 2**63 - 1]:
        _check_items(items_c, with_times(first, first))


def test_items_index_out_of_range_is_an_index_error(items_c):
    data = random_rows(6, 100, clean=True)
    block, head, templates, ips, d = _inputs(data)
    g, p = array("I", d.row_group), array("I", d.row_pair)
    g[40] = len(templates)
    with pytest.raises(IndexError):
        items_c.items(data, head, templates, ips, g, d.row_pair)
    p[99] = len(ips)
    with pytest.raises(IndexError):
        items_c.items(data, head, templates, ips, d.row_group, p)
    with pytest.raises(IndexError):  # fewer indexes than rows
        items_c.items(data, head, templates, ips, d.row_group[:99], d.row_pair)
    p[99] = 2**32 - 1
    with pytest.raises(IndexError):
        items_c.items(data, head, templates, ips, d.row_group, p)
    # an index error is one even where the block would be declined (a caller's bug comes first)
    late = bytearray(data)
    struct.pack_into("<q", late, 24, 2**62)
    with pytest.raises(IndexError):
        items_c.items(bytes(late), head, templates, ips, g, d.row_pair)
    assert items_c.items(bytes(late), head, templates, ips, d.row_group, d.row_pair) is None


def _cuts(rng: random.Random, n: int) -> list[int]:
    """0 = c0 < c1 < ... = n (n > 1): ranges of many sizes, single rows at both ends among them."""
    return sorted({0, 1, n - 1, n, *(rng.randrange(n + 1) for _ in range(12))})


@pytest.mark.parametrize("seed", range(3))
def test_items_of_consecutive_row_ranges_concatenated_are_the_whole_list(items_c, seed):
    """items() and items_text() of rows start..stop-1: a comma before each row but the block's
    first, so that the ranges' bytes joined with nothing are the block's; the Python reference of
    a range (its items, after a comma unless it starts at row 0) gives the same bytes."""
    rng = random.Random(seed)
    data = random_rows(seed + 40, 700, v6=0.5, clean=True)
    block, head, templates, ips, d = _inputs(data)
    whole = _reference(block, head, templates, ips, d)
    cuts = _cuts(rng, len(block))
    text, paired, ref = [], [], []
    for a, b in zip(cuts, cuts[1:]):
        text.append(items_c.items_text(data, head, templates, d.row_group, a, b))
        paired.append(items_c.items(data, head, templates, ips, d.row_group, d.row_pair, a, b))
        ref.append((b"," if a and b > a else b"") + b",".join(jsondoc._lone_items_py(block, head, templates, ips, d, a, b)))
        assert text[-1] == paired[-1] == ref[-1], (a, b)
        assert text[-1].startswith(b",") == (0 < a < b)
    assert b"".join(text) == whole
    assert items_c.items_text(data, head, templates, d.row_group, 0, -1) == whole  # -1: to the end


def test_a_row_range_is_declined_by_its_own_rows_only(items_c):
    """A row the C writer leaves to Python (a duration) declines the ranges that hold it, not the
    others; jsondoc writes a block of several pieces with such a row as the reference does."""
    good = random_rows(8, 3 * jsondoc.LONE_PIECE + 17, clean=True)
    at = jsondoc.LONE_PIECE + 5
    r = bytearray(good)
    first = struct.unpack_from("<q", r, at * 104 + 16)[0]
    struct.pack_into("<q", r, at * 104 + 24, first + 1_500)  # last_ts_ns: a duration
    data = bytes(r)
    block, head, templates, ips, d = _inputs(data)
    assert items_c.items_text(data, head, templates, d.row_group, at, at + 1) is None
    assert items_c.items_text(data, head, templates, d.row_group, 0, at) is not None
    assert items_c.items_text(data, head, templates, d.row_group, at + 1, len(block)) is not None
    assert items_c.items_text(data, head, templates, d.row_group) is None
    pieces = list(jsondoc.lone_pieces(lone.Block(data, "cap.pcap", "fw-in"), _backend_of))
    assert len(pieces) == 4
    assert b"".join(pieces) == _reference(block, head, templates, ips, d)
    assert json.loads(b"[" + b"".join(pieces) + b"]") == [
        json.loads(jsondoc._encode(jsondoc._conn(c, _backend_of(c)))) for c in block]


def test_a_row_range_outside_the_block_is_an_index_error(items_c):
    data = random_rows(9, 50, clean=True)
    block, head, templates, ips, d = _inputs(data)
    for a, b in [(-1, 10), (10, 5), (0, 51), (51, 51)]:
        with pytest.raises(IndexError):
            items_c.items_text(data, head, templates, d.row_group, a, b)
        with pytest.raises(IndexError):
            items_c.items(data, head, templates, ips, d.row_group, d.row_pair, a, b)
    with pytest.raises(IndexError):  # the group indexes must reach the range's end, no further
        items_c.items_text(data, head, templates, d.row_group[:30], 20, 31)
    assert items_c.items_text(data, head, templates, d.row_group[:30], 20, 30) is not None
    assert items_c.items_text(data, head, templates, d.row_group, 50, 50) == b""


def test_a_block_whose_names_orjson_refuses_is_written_per_record_in_pieces_of_the_same_bytes():
    """A capture name with a byte that is not UTF-8 (a lone surrogate: orjson refuses it) takes the
    per-record path: its pieces, joined, are each record's item, comma-separated."""
    data = random_rows(11, 2 * jsondoc.LONE_PIECE + 9, clean=True)
    block = lone.Block(data, "bad\udcff.pcap", "fw-in")
    pieces = list(jsondoc.lone_pieces(block, _backend_of))
    assert len(pieces) == 3 and pieces[1].startswith(b",") and not pieces[0].startswith(b",")
    assert b"".join(pieces) == b",".join(jsondoc._encode(jsondoc._conn(c, _backend_of(c))) for c in block)


def test_the_connection_list_writes_a_large_block_in_pieces_of_the_whole_lists_bytes(items_c):
    """ConnectionItems.add_rows emits a block's items a piece of at most LONE_PIECE rows at a time
    (never the block's list whole), and what it emits is the list add() of each record writes."""
    data = random_rows(10, 5 * jsondoc.LONE_PIECE + 3, clean=True)
    block = lone.Block(data, "cap.pcap", "fw-in")
    out = []
    items = jsondoc.ConnectionItems(out.append)
    items.add_rows(block, _backend_of)
    items.add_rows(lone.Block(data[:104 * 3], "cap.pcap", "fw-in"), _backend_of)  # a second block: after a comma
    assert max(x.count(b'"uid":') for x in out) == jsondoc.LONE_PIECE
    by_record = []
    ref = jsondoc.ConnectionItems(by_record.append)
    for c in list(block) + list(lone.Block(data[:104 * 3], "cap.pcap", "fw-in")):
        ref.add(c, _backend_of(c))
    assert b"".join(out) == b"".join(by_record)


# ---- ts_epoch ----------------------------------------------------------------------------------

def _orjson_epoch(first: int) -> bytes:
    import orjson
    return orjson.dumps(float(f"{first // NS}.{first % NS:09d}"))


def test_repr_and_orjson_agree_on_doubles_from_1_to_1e16_and_not_beyond(items_c):
    """Why items() may write Python's repr for orjson's bytes, and why it declines outside."""
    import orjson
    rng = random.Random(8)
    for _ in range(50000):
        x = rng.uniform(1.0, 10.0) * 10.0 ** rng.randrange(16)
        if x < 1e16:
            assert orjson.dumps(x) == repr(x).encode()
    assert orjson.dumps(1e16) != repr(1e16).encode()  # 1e16 vs 1e+16
    assert orjson.dumps(1.5e-7) != repr(1.5e-7).encode()  # 1.5e-7 vs 1.5e-07


def _epoch_times(rng: random.Random, n: int):
    secs = [1, 2, 3, 7, 10, 999, 1_234_567_890, 1_700_000_000, 2**30, 2**31, 2**32, 2**33 - 1, 2**33, 9_223_372_035]
    for _ in range(n):
        sec = rng.choice(secs) + rng.choice([0, 0, 1, -1, rng.randrange(1000)]) if rng.random() < 0.5 \
            else rng.randrange(1, 2**33 + 10)
        ns = rng.choice([0, 1, 5 * 10**8, 999_999_999, rng.randrange(NS), rng.randrange(10**6) * 1000,
                         rng.randrange(1000) * 10**6, rng.randrange(1000)])
        first = sec * NS + ns
        if NS <= first < 2**63:  # (before second 1: declined, below)
            yield first


def test_ts_epoch_is_what_orjson_writes_on_both_paths(items_c):
    """The exact integer path (items()' own) and the general path (Python's float() and repr),
    each compared with orjson on random times and on the edges (powers of two, second boundaries,
    int64's last second); the exact path answers for almost every time."""
    rng = random.Random(9)
    exact = total = 0
    for first in _epoch_times(rng, 60000):
        want = _orjson_epoch(first)
        fast = items_c._ts_epoch(first, 2)
        assert items_c._ts_epoch(first) == want, first
        assert items_c._ts_epoch(first, 1) == want, first
        if fast is not None:
            assert fast == want, first
            exact += 1
        total += 1
    assert exact > 0.8 * total
    typical = [1_700_000_000 * NS + rng.randrange(10**6) * 1000 for _ in range(5000)]
    assert sum(items_c._ts_epoch(t, 2) is not None for t in typical) > 0.99 * len(typical)


def test_ts_epoch_hands_a_halfway_time_to_the_general_path(items_c):
    """Times whose double lies exactly halfway between its two nearest shortest decimals (about one
    time in 10^5): the exact path does not choose, Python's repr does."""
    for first in [1700000006128906184, 1700000093589843643, 3100541377246093985, 1700000033902343738,
                  1700000029191406257]:
        assert items_c._ts_epoch(first, 2) is None
        assert items_c._ts_epoch(first) == items_c._ts_epoch(first, 1) == _orjson_epoch(first)


def test_ts_epoch_declines_before_second_one(items_c):
    for first in [0, 1, NS - 1, -1, -NS, -2**63]:
        assert items_c._ts_epoch(first) is None and items_c._ts_epoch(first, 2) is None
    assert items_c._ts_epoch(NS) == b"1.0" and items_c._ts_epoch(NS + 1) == _orjson_epoch(NS + 1)


# ---- real rows ---------------------------------------------------------------------------------

def _gen(out, shape: str, count: int, fmt: str = "pcap"):
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen.py"), str(out), "--shape", shape, "--count", str(count),
                    "--format", fmt], check=True, capture_output=True, timeout=120)
    return out


def _floodgen(out):
    return mixed(out, 11, start=T0, n_sessions=30, n_scan=40)


@pytest.fixture(scope="module")
def real_blocks(tmp_path_factory):
    """Blocks of rows as the reference tracker stores them (and the lane's parts() gives them)."""
    from dsrdiag.track.pipeline import track_capture
    tmp = tmp_path_factory.mktemp("lone-kernels")
    caps = [_gen(tmp / "syn.pcap", "syn", 5000), _gen(tmp / "syn-ns.pcap", "syn", 3000, "pcap-ns"),
            _gen(tmp / "v6.pcap", "hash-random", 2000), _floodgen(tmp / "mixed.pcap")]
    out = []
    for cap in caps:
        r = track_capture(str(cap), "fw-in", (25,), tracker="python")
        blocks = [p for p in r.connections.parts() if type(p) is lone.Block]
        assert sum(len(b) for b in blocks) >= 1000, cap
        out.append((cap.name, blocks))
    return out


def test_the_kernels_equal_the_references_on_real_rows(rows_c, real_blocks):
    for name, blocks in real_blocks:
        for b in blocks:
            data = bytes(b.data)
            _same_digest(rows_c.digest(b.data), lone.digest_py(b.data))
            assert rows_c.sort_rows(data) == lone.sort_rows_py(data) == data  # the lane's rows are in order
            shuffled = [data[i:i + 104] for i in range(0, len(data), 104)]
            random.Random(len(shuffled)).shuffle(shuffled)
            shuffled = b"".join(shuffled)
            assert rows_c.sort_rows(shuffled) == lone.sort_rows_py(shuffled) == data, name


def test_items_equal_the_reference_on_real_rows(items_c, rows_c, real_blocks):
    seen_v6 = seen_ns = False
    for name, blocks in real_blocks:
        for b in blocks:
            out = _check_items(items_c, bytes(b.data), capture=b.capture, vantage=b.vantage)
            seen_v6 |= b'"ip_version":6' in out
            seen_ns |= name == "syn-ns.pcap"
            # as jsondoc.lone_items calls it: the block's own buffer (a memoryview of a cut block
            # too) and the C digest's indexes
            head = _inputs(bytes(b.data), capture=b.capture, vantage=b.vantage)[1]
            half = b.slice(len(b) // 3, len(b))
            for blk in (b, half):
                d = lone.Digest(*rows_c.digest(blk.data))
                tpl = [jsondoc._template(blk, d, g, _backend_of) for g in range(len(d.groups))]
                ips = [ip_text(ci).encode() for _g, ci in d.pairs]
                assert items_c.items(blk.data, head, tpl, ips, d.row_group, d.row_pair) == \
                    b",".join(jsondoc._lone_items_py(blk, head, tpl, ips, d))
    assert seen_v6 and seen_ns


# ---- the kernels under AddressSanitizer and UndefinedBehaviorSanitizer ----------------------------
def test_the_kernels_built_with_asan_and_ubsan_pass_these_tests_under_the_sanitizer(tmp_path, rows_c, items_c):
    """Both files rebuilt with -fsanitize=address,undefined into a temporary directory and loaded by
    a separate interpreter (LD_PRELOAD of the sanitizer runtimes), which runs every other test of
    this module against them: all pass, and no sanitizer report."""
    from tests import _asan

    sanitized = _asan.build(tmp_path, {"dsrdiag.track._lonerows": ["dsrdiag/track/_lonerows.c"],
                                       "dsrdiag.report._jsonrows": ["dsrdiag/report/_jsonrows.c"]})
    _asan.run_module_tests(sanitized, str(Path(__file__)), tmp_path / "t", timeout=900)
