"""A flood's client addresses as text, made once by the digest, and the passes that take them in bulk.

What is proved here:
- the C digest's pair_ips is what socket.inet_ntop (core/addr.ip_text, lone.address: today's
  spelling) gives of each pair's address, on random addresses and on every shape inet_ntop treats
  specially (zero runs of every length and place, two runs of one length, a lone zero word,
  IPv4-mapped and -compatible addresses, the unspecified and loopback addresses), and None where the
  key holds neither 4 nor 16 bytes; the Python reference (digest_py) gives the same;
- Facts.observe_rows, which feeds its four bounded tables a run of a group's clients at a time,
  notes exactly what observe() notes of the same records, both while the tables have room (the
  bounds must not fire: every source counted one by one) and once each is full (known sources
  still counted, new ones counted together), with groups that share a service interleaved, sources
  seen again in later blocks, scanners, on both trackers' digests and at the real bounds;
- a block's digest makes the pair counts, first rows and texts the facts read without the pairs'
  tuples (digest_pairs), with the whole digest's values, and the pairs too when they are read;
- the JSON item writer takes the digest's texts (str) and writes what it writes of their bytes.

Skipped where the extensions were not built (no compiler): the references are what runs then.
"""

from __future__ import annotations

import json
import random
import socket
import struct
from array import array

import pytest

from dsrdiag.core.addr import ip_text
from dsrdiag.core.topology import Backend
from dsrdiag.report import jsondoc
from dsrdiag.track import facts as facts_mod
from dsrdiag.track import lone
from dsrdiag.track.facts import Facts

NS = 1_000_000_000
T0 = 1_700_000_000


@pytest.fixture(scope="module")
def rows_c():
    return pytest.importorskip("dsrdiag.track._lonerows", reason="the C row kernels were not built (no compiler)")


def _row(num, first, ci, si, cport=40000, sport=25, alen=None, ttl=57, smac=b"\x02" * 6, dmac=b"\x04" * 6, has=3):
    alen = len(ci) if alen is None else alen
    return lone.ROW.pack(num, num, first, first, first, ci.ljust(16, b"\0"), si.ljust(16, b"\0"), cport, sport,
                         num & 0xFFFFFFFF, 0, -1, smac, dmac, ttl, 0x02, alen, has)


# ---- address text ------------------------------------------------------------------------------

def _special_v6() -> list[bytes]:
    """IPv6 addresses of every shape inet_ntop spells differently: zero runs at the start, middle
    and end, of each length 1..8; two runs of equal length (the first is compressed); a lone zero
    word (not compressed); ::ffff:a.b.c.d and ::a.b.c.d (a dotted tail); ::, ::1, ::ffff:0:0."""
    out = [bytes(16), bytes(15) + b"\x01", bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1]),
           bytes(12) + bytes([198, 51, 100, 7]), bytes(10) + b"\xff\xff" + bytes(4), bytes(12) + b"\x00\x01\x00\x00",
           bytes(11) + b"\x01" + bytes([203, 0, 113, 9]), bytes(10) + b"\xff\xfe" + bytes([192, 0, 2, 1])]
    words = [0x2001, 0xdb8, 0x1, 0x2, 0x3, 0x4, 0x5, 0x6]
    for start in range(8):
        for length in range(1, 9 - start):
            w = list(words)
            for k in range(start, start + length):
                w[k] = 0
            out.append(struct.pack(">8H", *w))
    for a, b in ((1, 5), (0, 4), (2, 6), (0, 6)):  # two zero runs of two words
        w = list(words)
        w[a] = w[a + 1] = w[b] = w[b + 1] = 0
        out.append(struct.pack(">8H", *w))
    for mask in range(256):  # every set of zero words, the others of each digit count and ffff
        for fill in (0x1, 0xffff, 0x10, 0x100, 0xabc, 0x1000):
            out.append(struct.pack(">8H", *(0 if mask >> k & 1 else fill for k in range(8))))
    return out


def _pairs_of(clients: list[bytes]) -> bytes:
    return b"".join(_row(i, (T0 + i // 1000) * NS + i, ci, b"\xc0\x00\x02\x19" if len(ci) == 4 else
                         bytes.fromhex("20010db8000000000000000000000025")) for i, ci in enumerate(clients))


def test_the_digests_address_texts_are_inet_ntops_on_every_special_shape(rows_c):
    rng = random.Random(1)
    v6 = _special_v6() + [rng.getrandbits(128).to_bytes(16, "big") for _ in range(3000)]
    v6 += [bytes(rng.choice([0, 0, 0, rng.getrandbits(8)]) for _ in range(16)) for _ in range(3000)]  # zero-rich
    v4 = [bytes(4), b"\xff" * 4, bytes([192, 0, 2, 1]), bytes([10, 0, 0, 0])] + [rng.getrandbits(32).to_bytes(4, "big")
                                                                               for _ in range(2000)]
    clients = list(dict.fromkeys(v6 + v4))
    data = _pairs_of(clients)
    c = lone.Digest(*rows_c.digest(data))
    py = lone.digest_py(data)
    want = [socket.inet_ntop(socket.AF_INET6 if len(a) == 16 else socket.AF_INET, a) for a in clients]
    assert c.pair_ips == py.pair_ips == want
    assert [lone.address(a) for a in clients] == [ip_text(a) for a in clients] == want  # today's spelling
    assert all(type(x) is str for x in c.pair_ips)
    got = dict(zip(clients, c.pair_ips))
    assert got[bytes(16)] == "::" and got[bytes(15) + b"\x01"] == "::1"
    assert got[bytes(10) + b"\xff\xff" + bytes([192, 0, 2, 1])] == "::ffff:192.0.2.1"
    assert got[struct.pack(">8H", 0x2001, 0xdb8, 0, 2, 3, 4, 5, 6)] == "2001:db8:0:2:3:4:5:6"  # one zero word
    assert got[struct.pack(">8H", 0x2001, 0, 0, 2, 3, 0, 0, 6)] == "2001::2:3:0:0:6"  # the first of two runs


def test_an_address_length_that_is_no_address_has_no_text_in_either_digest(rows_c):
    """alen 0, 1, 7: the key holds that many bytes, no address (None); past 16 it holds 16 (IPv6)."""
    ci = bytes(range(1, 17))
    data = b"".join(_row(i, T0 * NS, ci, b"\xc0\x00\x02\x19", alen=al) for i, al in enumerate((0, 1, 7, 17, 200, 4, 16)))
    c = lone.Digest(*rows_c.digest(data))
    assert c.pair_ips == lone.digest_py(data).pair_ips
    assert c.pair_ips[:3] == [None, None, None]
    assert c.pair_ips[3] == c.pair_ips[4] == c.pair_ips[6] == socket.inet_ntop(socket.AF_INET6, ci)
    assert c.pair_ips[5] == "1.2.3.4"


# ---- the lazy digest ---------------------------------------------------------------------------

@pytest.mark.parametrize("seed,v6,wild,odd", [(0, 0.0, 0.0, False), (1, 1.0, 0.2, False), (2, 0.4, 0.3, True)])
def test_a_blocks_digest_gives_the_whole_digests_values_and_makes_pairs_only_when_read(rows_c, seed, v6, wild, odd):
    from test_lone_kernels import random_rows

    data = random_rows(seed, 3000, v6=v6, wild=wild, odd=odd)
    ref = lone.digest_py(data)
    d = lone.Block(data, "f.pcap", "v").digest()
    assert type(d) is lone.LazyDigest
    for name in lone.GROUP_FIELDS:
        assert getattr(d, name) == getattr(ref, name), name
        assert type(getattr(d, name)) is type(getattr(ref, name)), name
    assert d._full is None and d._pair_fields is None and d._pair_list is None  # group fields read: no pair table made
    for name in lone.Digest._fields:
        assert getattr(d, name) == getattr(ref, name), name
    assert d._pair_fields is not None and d._pair_list is not None and d._full is None  # the pairs apart, not the whole
    assert list(lone.Digest(*rows_c.digest(data))) == list(ref)


@pytest.mark.parametrize("seed,v6,wild,odd", [(3, 0.0, 0.0, False), (4, 1.0, 0.2, True), (5, 0.5, 0.4, False)])
def test_a_blocks_pair_counts_firsts_and_texts_are_the_whole_digests_without_its_pair_tuples(rows_c, seed, v6, wild, odd):
    """digest_pairs gives the whole digest's PAIR_FIELDS and pairs_of its pairs from them (as the
    reference pairs_of_py does); a block's digest whose pair fields are read makes no pair tuple,
    and its pairs, read later, are the whole digest's."""
    from test_lone_kernels import random_rows

    data = random_rows(seed, 3000, v6=v6, wild=wild, odd=odd)
    ref = lone.digest_py(data)
    want = tuple(getattr(ref, name) for name in lone.PAIR_FIELDS)
    got = rows_c.digest_pairs(data)
    assert got == want and [type(x) for x in got] == [type(x) for x in want]
    assert lone.pair_fields(memoryview(data)) == want
    assert rows_c.pairs_of(data, ref.row_group, ref.pair_first) == ref.pairs
    assert lone.pairs_of_py(memoryview(data), ref.row_group, ref.pair_first) == ref.pairs
    d = lone.Block(data, "f.pcap", "v").digest()
    for name in lone.PAIR_FIELDS:
        assert getattr(d, name) == getattr(ref, name), name
    assert d._pair_list is None and d._full is None
    assert d.pairs == ref.pairs and [type(g) for g, _ in d.pairs[:3]] == [int] * 3
    assert d._full is None
    assert rows_c.digest_pairs(b"") == ([], [], array("I"), []) and rows_c.pairs_of(b"", array("I"), []) == []
    with pytest.raises(ValueError):
        rows_c.digest_pairs(data[:200])
    for bad in ([3000], [-1], [0, 2**40]):  # first rows that are not rows of the block
        with pytest.raises(IndexError):
            rows_c.pairs_of(data, ref.row_group, bad)
    with pytest.raises(IndexError):  # nor of its groups
        rows_c.pairs_of(data, ref.row_group[:10], [10])
    with pytest.raises(TypeError):
        rows_c.pairs_of(data, ref.row_group, [0.5])


def test_pair_fields_under_the_reference_tracker_are_the_reference_digests(monkeypatch):
    monkeypatch.setenv("DSRDIAG_TRACKER", "python")
    data = _pairs_of([bytes([198, 51, 100, i]) for i in range(20)] + [bytes([198, 51, 100, 3])])
    ref = lone.digest_py(data)
    assert lone.pair_fields(data) == tuple(getattr(ref, name) for name in lone.PAIR_FIELDS)


def test_digest_groups_refuses_what_digest_refuses(rows_c):
    from test_lone_kernels import random_rows

    assert rows_c.digest_groups(b"")[0] == [] and rows_c.digest_groups(b"")[-1] is True
    for bad in (None, 5, "rows"):
        with pytest.raises(TypeError):
            rows_c.digest_groups(bad)
    with pytest.raises(ValueError):
        rows_c.digest_groups(random_rows(1, 3)[:200])


def test_the_reference_tracker_gives_blocks_the_whole_reference_digest(monkeypatch):
    monkeypatch.setenv("DSRDIAG_TRACKER", "python")
    data = _pairs_of([bytes([198, 51, 100, i]) for i in range(20)])
    d = lone.Block(data, "f.pcap", "v").digest()
    assert type(d) is lone.Digest and d == lone.digest_py(data)


# ---- facts in bulk -----------------------------------------------------------------------------

def _facts(f) -> tuple:
    """A capture's Facts as plain values, order included (dicts and sets as their items in order)."""
    def plain(x):
        if isinstance(x, dict):
            return [(k, plain(v)) for k, v in x.items()]
        if isinstance(x, (set, frozenset)):
            return ("set", sorted(x, key=repr), len(x))
        if isinstance(x, facts_mod.Attempts):
            return plain(x.__getstate__())
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        return x
    return tuple(plain(v) for v in f.__getstate__())


SERVERS = [b"\xc0\x00\x02\x19", b"\xc0\x00\x02\x1a"]


def _flood_rows(rng: random.Random, n: int, n_sources: int, start: int, groups: int = 1, v6: bool = False) -> list[bytes]:
    """n rows in time order from n_sources client addresses (many seen again), to `groups` groups:
    group k differs from group 0 by TTL or MACs but some share its service (one Attempts for two
    groups, interleaved), one goes to another server."""
    pool = [(bytes.fromhex("20010db8") + rng.getrandbits(96).to_bytes(12, "big")) if v6 else
            bytes([198, 51, rng.randrange(256), rng.randrange(256)]) for _ in range(n_sources)]
    vip6 = [bytes.fromhex("20010db8000000000000000000000025"), bytes.fromhex("20010db8000000000000000000000026")]
    shapes = [dict(ttl=57), dict(ttl=120), dict(ttl=57, smac=b"\x06" * 6), dict(ttl=57, has=1, dmac=bytes(6))]
    out = []
    for i in range(n):
        g = rng.randrange(groups) if groups > 1 else 0
        si = (vip6 if v6 else SERVERS)[1 if g == 4 else 0]
        out.append(_row(start + i, (T0 + (start + i) // 5000) * NS + (start + i) * 1000, rng.choice(pool), si,
                        cport=1024 + rng.randrange(60000), sport=587 if g == 5 else 25, **shapes[g % 4]))
    return out


def _both(blocks, rows_c=None, monkeypatch=None, python=False):
    by_rows, by_records = Facts(), Facts()
    for b in blocks:
        if python:
            b._digest = lone.digest_py(b.data)  # the reference digest (DSRDIAG_TRACKER=python)
        by_rows.observe_rows(b)
        for c in b:
            by_records.observe(c)
    return by_rows, by_records


@pytest.fixture
def small_bounds(monkeypatch):
    """The four bounds a few hundred: a few thousand rows fill them all (the code reads them at
    call time, so observe() and observe_rows() both see them)."""
    monkeypatch.setattr(facts_mod, "SYN_SRC_MAX", 300)
    monkeypatch.setattr(facts_mod, "ATTEMPT_SRC_MAX", 250)
    monkeypatch.setattr(facts_mod, "DISTINCT_MAX", 700)
    monkeypatch.setattr(facts_mod, "SCAN_SOURCES_MAX", 200)
    monkeypatch.setattr(facts_mod, "SCAN_TARGETS_MAX", 2)


def _blocks(rows: list[bytes], cuts: int) -> list:
    k = len(rows) // cuts
    return [lone.Block(b"".join(rows[i * k:(i + 1) * k if i < cuts - 1 else len(rows)]), "f.pcap", "v")
            for i in range(cuts)]


@pytest.mark.parametrize("python", [False, True])
@pytest.mark.parametrize("groups,v6", [(1, False), (6, False), (1, True), (6, True)])
def test_full_tables_count_known_sources_and_the_rest_together_as_records_would(small_bounds, python, groups, v6):
    rng = random.Random(groups * 10 + v6)
    rows = _flood_rows(rng, 6000, 1500, 0, groups=groups, v6=v6)
    by_rows, by_records = _both(_blocks(rows, 4), python=python)
    assert _facts(by_rows) == _facts(by_records)
    a = by_rows.attempts
    v = next(iter(a.values()))
    # every bound reached: the full-table paths ran
    assert len(by_rows.syn_src) == 300 and len(by_rows.targets) == 200
    assert len(v.sources) == 250 and v.other_sources > 0 and len(v.distinct) == 700
    assert all(len(t[0]) <= 2 for t in by_rows.targets.values())
    assert sum(n for n, _ in by_rows.syn_src.values()) < 6000  # new keys past the bound are not counted
    if groups > 1:
        assert len(a) == 3 and any(len(t[0]) == 2 for t in by_rows.targets.values())


@pytest.mark.parametrize("python", [False, True])
def test_tables_with_room_count_every_source_one_by_one(python):
    """The bounds must not fire: fewer sources than any of them, each counted exactly."""
    rng = random.Random(4)
    rows = _flood_rows(rng, 5000, 900, 0, groups=6)
    by_rows, by_records = _both(_blocks(rows, 3), python=python)
    assert _facts(by_rows) == _facts(by_records)
    for v in by_rows.attempts.values():
        assert v.other_sources == 0 and sum(v.sources.values()) == v.lone and len(v.distinct) == len(v.sources)
    assert sum(n for n, _ in by_rows.syn_src.values()) == 5000
    assert len(by_rows.targets) <= 900 and len(by_rows.targets) == len({k[2] for k in by_rows.syn_src})


def test_sources_seen_again_after_the_tables_filled_are_still_counted(small_bounds):
    """A second wave from the first wave's sources, after a wave of new ones filled every table:
    the known ones add to their counts (syn_src, sources, targets), in a later block."""
    rng = random.Random(7)
    first = _flood_rows(rng, 400, 120, 0)
    fill = _flood_rows(rng, 3000, 3000, 400)
    again = [r[:40] + first[i % len(first)][40:56] + r[56:] for i, r in enumerate(_flood_rows(rng, 600, 50, 3400))]
    blocks = [lone.Block(b"".join(x), "f.pcap", "v") for x in (first, fill, again)]
    by_rows, by_records = _both(blocks)
    assert _facts(by_rows) == _facts(by_records)
    v = next(iter(by_rows.attempts.values()))
    known = {lone.address(r[40:44]) for r in first}
    also = sum(lone.address(r[40:44]) in known for r in fill)  # random addresses the fill drew again
    assert sum(v.sources[s] for s in known) == 400 + also + 600
    assert sum(by_rows.syn_src[k][0] for k in by_rows.syn_src if k[2] in known) == 1000 + also


def test_real_bounds_on_a_flood_of_seventy_thousand_spoofed_sources(rows_c):
    """The bounds as shipped (SYN_SRC_MAX, ATTEMPT_SRC_MAX, SCAN_SOURCES_MAX 4096, DISTINCT_MAX
    65536) crossed by one block of a spoofed IPv6 flood and then a second one."""
    rng = random.Random(70)
    rows = [_row(i, (T0 + i // 100_000) * NS + i * 10_000,
                 bytes.fromhex("20010db8") + rng.getrandbits(96).to_bytes(12, "big"),
                 bytes.fromhex("20010db8000000000000000000000025"), cport=1024 + i % 60000) for i in range(70_000)]
    rows += rows[:3000]  # the first sources again, later (num and time made later)
    rows[70_000:] = [struct.pack("<QQqqq", 70_000 + i, 70_000 + i, (T0 + 1) * NS + i, (T0 + 1) * NS + i,
                                 (T0 + 1) * NS + i) + r[40:] for i, r in enumerate(rows[70_000:])]
    blocks = [lone.Block(b"".join(rows[:40_000]), "f.pcap", "v"), lone.Block(b"".join(rows[40_000:]), "f.pcap", "v")]
    by_rows, by_records = _both(blocks)
    assert _facts(by_rows) == _facts(by_records)
    v = next(iter(by_rows.attempts.values()))
    assert len(v.distinct) == facts_mod.DISTINCT_MAX and len(v.sources) == facts_mod.ATTEMPT_SRC_MAX
    assert v.lone == 73_000 and sum(v.sources.values()) + v.other_sources == 73_000
    assert sum(v.sources.values()) > facts_mod.ATTEMPT_SRC_MAX  # the sources seen again were counted again


# ---- JSON items --------------------------------------------------------------------------------

def test_the_item_writer_writes_an_address_text_as_its_bytes():
    items_c = pytest.importorskip("dsrdiag.report._jsonrows", reason="the C item writer was not built")
    pytest.importorskip("orjson")
    rng = random.Random(3)
    clients = _special_v6() + [rng.getrandbits(128).to_bytes(16, "big") for _ in range(500)]
    data = _pairs_of(list(dict.fromkeys(clients)))
    block = lone.Block(data, "f.pcap", "fw-in")
    d = block.digest()
    v, cap = jsondoc._str("fw-in")[:-1], jsondoc._str("f.pcap")
    head = (b'{"uid":' + v + b":C", b'","vantage":' + v + b'","capture":' + cap + b',"ts":"')

    def backend_of(c):
        return Backend(name="be1", ip="2001:db8::11", mac="02:00:00:00:00:11")
    templates = [jsondoc._template(block, d, g, backend_of) for g in range(len(d.groups))]
    as_text = items_c.items(data, head, templates, d.pair_ips, d.row_group, d.row_pair)
    as_bytes = items_c.items(data, head, templates, [x.encode() for x in d.pair_ips], d.row_group, d.row_pair)
    from_rows = items_c.items_text(data, head, templates, d.row_group)
    assert as_text is not None and as_text == as_bytes == from_rows
    assert as_text == b",".join(jsondoc._lone_items_py(block, head, templates, [x.encode() for x in d.pair_ips], d))
    assert as_text == jsondoc.lone_items(block, backend_of)
    objs = json.loads(b"[" + as_text + b"]")
    assert objs == [json.loads(jsondoc._encode(jsondoc._conn(c, backend_of(c)))) for c in block]


@pytest.mark.parametrize("seed,v6", [(0, 0.0), (1, 1.0), (2, 0.5)])
def test_items_written_from_the_rows_addresses_equal_the_reference_on_random_rows(seed, v6):
    items_c = pytest.importorskip("dsrdiag.report._jsonrows", reason="the C item writer was not built")
    pytest.importorskip("orjson")
    from test_lone_kernels import _backend_of, _inputs, _reference, random_rows

    data = random_rows(seed, 3000, v6=v6, clean=True)
    block, head, templates, ips, d = _inputs(data)
    out = items_c.items_text(data, head, templates, d.row_group)
    assert out is not None and out == _reference(block, head, templates, ips, d)
    assert out == jsondoc.lone_items(block, _backend_of)


def test_a_row_whose_address_length_is_no_address_is_left_to_python_by_the_row_writer():
    items_c = pytest.importorskip("dsrdiag.report._jsonrows", reason="the C item writer was not built")
    pytest.importorskip("orjson")
    data = _pairs_of([bytes([198, 51, 100, 1]), bytes([198, 51, 100, 2])])
    odd = data[:104 + 102] + bytes([7]) + data[104 + 103:]  # the second row's address length 7
    clean = lone.Block(data, "f.pcap", "v")
    cd = clean.digest()
    tpl = jsondoc._template(clean, cd, 0, lambda c: None)
    d = lone.Block(odd, "f.pcap", "v").digest()
    assert len(d.groups) == 2  # another length: another group
    assert items_c.items_text(odd, (b"", b""), [tpl, tpl], d.row_group) is None
    assert items_c.items_text(data, (b"", b""), [tpl], cd.row_group) is not None
    with pytest.raises(IndexError):
        items_c.items_text(data, (b"", b""), [], cd.row_group)


# ---- sort --------------------------------------------------------------------------------------

@pytest.mark.parametrize("spread", ["ties", "wide", "signs"])
def test_a_large_shuffled_block_sorts_as_the_reference(rows_c, spread):
    """The radix passes over the time and the runs of one time ordered by uid text: rows in the
    tracker's hash order, times shared by many rows (ties), spread over every byte (wide), and on
    both sides of zero and int64's ends (signs)."""
    rng = random.Random(len(spread))
    n = 40_000
    if spread == "ties":
        times = [T0 * NS + rng.randrange(50) for _ in range(n)]
    elif spread == "wide":
        times = [rng.randrange(-2**63, 2**63) for _ in range(n)]
    else:
        times = [rng.choice([-1, 0, 1, -2**63, 2**63 - 1, -NS, NS]) + rng.randrange(3) * (1 if rng.random() < .5 else -1)
                 for _ in range(n)]
        times = [max(-2**63, min(2**63 - 1, t)) for t in times]
    nums = [rng.choice([rng.randrange(10), rng.randrange(10**6), rng.randrange(2**64)]) for _ in range(n)]
    data = b"".join(lone.ROW.pack(nums[i], i, times[i], times[i], times[i], bytes(16), bytes(16), 1, 25, 0, 0, -1,
                                  bytes(6), bytes(6), 64, 2, 4, 0) for i in range(n))
    ref = lone.sort_rows_py(data)
    assert ref != data
    assert rows_c.sort_rows(data) == ref


def test_an_item_writer_built_before_items_text_gives_the_same_list(monkeypatch):
    """jsondoc falls back to items() with the digest's texts where the extension has no items_text."""
    items_c = pytest.importorskip("dsrdiag.report._jsonrows", reason="the C item writer was not built")
    pytest.importorskip("orjson")
    data = _pairs_of(_special_v6()[:300] + [bytes([198, 51, 100, i]) for i in range(50)])
    want = jsondoc.lone_items(lone.Block(data, "f.pcap", "v"), lambda c: None)

    class Old:
        items = staticmethod(items_c.items)
    monkeypatch.setattr(jsondoc, "_jsonrows", Old)
    assert jsondoc.lone_items(lone.Block(data, "f.pcap", "v"), lambda c: None) == want
