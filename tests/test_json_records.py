"""The C item writer of ordinary records (report/_jsonrows.c connection()) against its specification,
orjson.dumps(jsondoc._conn(c, b)): byte for byte on every record of real and generated captures, on
crafted records that take every branch, and None (the Python path) exactly where it cannot be sure.

Why so many kinds of input: the writer re-does by hand what orjson, format_ts, _epoch, round() and
conn_filter do; a difference anywhere (an escape, a float's layout, a None mistaken for 0) would put
other bytes in the JSON document than the Python path writes, silently. Skipped where the extension
or orjson is absent (then jsondoc never calls it)."""

from __future__ import annotations

import enum
import io
import math
import random
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CAPTURES, ROOT
from floodgen import mixed

from dsrdiag.core.safetext import json_bytes
from dsrdiag.core.topology import Backend, Topology
from dsrdiag.jobs.analyze import analyze
from dsrdiag.report import jsondoc
from dsrdiag.track.records import Connection, ProxyHeader, SmtpDialogue

orjson = pytest.importorskip("orjson", reason="connection() writes what orjson writes")
NS = 1_000_000_000
T0 = 1_700_000_000.0
ZEEK = ROOT.parent / "shared" / "captures-zeek"
REAL = ROOT.parent / "shared" / "captures-real"
BACKENDS = [None, Backend(name="mx1.example.net", ip="192.0.2.11", mac="02:00:00:00:00:11", source="inferred"),
            Backend(name="m\u00e9l \"x\"\u2028", ip=None, mac=None, source="given")]


@pytest.fixture(scope="module")
def jr():
    m = pytest.importorskip("dsrdiag.report._jsonrows", reason="the C item writer was not built (no compiler)")
    if not hasattr(m, "connection"):
        pytest.skip("this build of _jsonrows has no connection()")
    return m


def _backend_bytes(b) -> bytes:
    return orjson.dumps(jsondoc._backend(b))


def _reference(c, b):
    """orjson's bytes for the record, or None where orjson (or _conn) refuses it."""
    try:
        return orjson.dumps(jsondoc._conn(c, b))
    except (TypeError, ValueError, AttributeError, OverflowError):
        return None


def _check(jr, c, b=None) -> bytes | None:
    """connection()'s answer, which is orjson's bytes (and json_bytes of it _encode's) when not None."""
    got = jr.connection(c, _backend_bytes(b))
    if got is not None:
        ref = _reference(c, b)
        assert got == ref, (c, got, ref)
        assert json_bytes(got) == jsondoc._encode(jsondoc._conn(c, b))
    return got


def _check_all(jr, pairs) -> tuple[int, int]:
    """Every (record, back-end) pair checked; (records, declined). Real records are never declined."""
    n = declined = 0
    for c, b in pairs:
        n += 1
        if _check(jr, c, b) is None:
            declined += 1
    return n, declined


def _records(sources, ports=(25,)):
    r = analyze(sources, Topology(ports=ports), jobs=1)
    return [(c, b) for c, b in r.connections]


# ---- the record types it reads by position -----------------------------------------------------

def test_the_fields_it_reads_by_position_are_the_records_fields_in_order(jr):
    assert jr.CONNECTION_FIELDS == Connection._fields
    assert jr.SMTP_FIELDS == SmtpDialogue._fields


# ---- real and generated captures ----------------------------------------------------------------

SAMPLES = sorted(p.name for p in CAPTURES.iterdir() if p.suffix in (".pcap", ".pcapng", ".gz"))
PATHS = sorted(p.name for p in (CAPTURES / "paths").iterdir() if p.is_dir())


@pytest.mark.parametrize("name", SAMPLES)
def test_every_record_of_a_sample_capture_is_orjsons_bytes(jr, name):
    pairs = _records([("lan", str(CAPTURES / name))])
    n, declined = _check_all(jr, pairs)
    if name != "damaged.pcap":
        assert n > 0
    assert declined == 0


@pytest.mark.parametrize("name", PATHS)
def test_every_record_of_a_path_set_is_orjsons_bytes(jr, name):
    d = CAPTURES / "paths" / name
    pairs = _records([(p.stem, str(p)) for p in sorted(d.glob("*.pcap"))])
    n, declined = _check_all(jr, pairs)
    assert n > 0 and declined == 0
    assert any(b is not None for _c, b in pairs) or name in ("fw_drop_syn",)


ZEEK_PORTS = (21, 22, 25, 80, 110, 143, 389, 443, 587, 993, 995, 6669, 8000)


def _shared(folder: Path):
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    return sorted(p for p in folder.iterdir() if p.suffix in (".pcap", ".pcapng"))


@pytest.mark.parametrize("folder", [ZEEK, REAL], ids=["zeek", "real"])
def test_every_record_of_the_shared_traces_is_orjsons_bytes(jr, folder):
    total = 0
    for p in _shared(folder):
        try:
            pairs = _records([("z", str(p))], ZEEK_PORTS)
        except Exception as e:  # a trace the analysis refuses is not this writer's business
            pytest.fail(f"{p.name}: {e}")
        n, declined = _check_all(jr, pairs)
        # and with each kind of back-end item (its bytes are the caller's, copied as given)
        for b in BACKENDS:
            _check_all(jr, ((c, b) for c, _ in pairs))
        assert declined == 0, p.name
        total += n
    assert total > 20


def _gen(out: Path, shape: str, count: int, fmt: str = "pcap") -> Path:
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen.py"), str(out), "--shape", shape, "--count", str(count),
                    "--format", fmt], check=True, capture_output=True, timeout=120)
    return out


@pytest.mark.parametrize("shape,count,fmt,least", [("sessions", 400, "pcap", 400), ("sessions", 200, "pcap-ns", 200),
                                                    ("relay", 10_000, "pcap", 40), ("hash-random", 300, "pcap", 300)])
def test_every_record_of_a_generated_capture_is_orjsons_bytes(jr, tmp_path, shape, count, fmt, least):
    pairs = _records([("be1", str(_gen(tmp_path / "g.pcap", shape, count, fmt)))])
    n, declined = _check_all(jr, pairs)
    assert n >= least and declined == 0
    if fmt == "pcap-ns":  # nanosecond stamps: nine fractional digits in ts
        assert any(len(orjson.loads(jr.connection(c, b"null"))["ts"]) == 30 for c, _ in pairs)


def test_every_record_of_the_flood_generators_shapes_is_orjsons_bytes(jr, tmp_path):
    out = mixed(tmp_path / "mixed.pcap", 5, start=T0, n_flood=500, n_sources=30, n_scan=40)
    pairs = _records([("fw-in", str(out))])
    n, declined = _check_all(jr, pairs)
    assert n > 500 and declined == 0
    assert {c.conn_state for c, _ in pairs} >= {"S0", "SF"}


def _document(r) -> bytes:
    buf = io.BytesIO()
    out = io.TextIOWrapper(buf, encoding="utf-8", newline="")
    jsondoc.write(r, out)
    out.flush()
    return buf.getvalue()


def test_the_document_written_through_the_c_writer_is_the_python_paths(jr, tmp_path, monkeypatch):
    """Once jsondoc.ConnectionItems calls connection() (its `writer`): the whole JSON document of
    real and hostile captures is the same bytes with it and without it (jsondoc._record_writer
    giving None: every record through _encode(_conn(c, b)))."""
    if getattr(jsondoc.ConnectionItems(lambda data: None), "writer", None) is not jr.connection:
        pytest.skip("jsondoc does not call _jsonrows.connection (not wired in this tree)")
    sources = [("be1", str(_gen(tmp_path / "s.pcap", "sessions", 300))), ("lan", str(CAPTURES / "hostile_text.pcap")),
               ("lan2", str(CAPTURES / "hostile_banner.pcap")), ("snat", str(CAPTURES / "snat_proxy.pcap"))]
    r = analyze(sources, Topology(), jobs=1)
    with_c = _document(r)
    monkeypatch.setattr(jsondoc, "_record_writer", lambda: None)
    assert _document(r) == with_c
    assert with_c.count(b'"uid":') >= 300


# ---- connections(): a batch in one call ---------------------------------------------------------

def test_a_batch_is_each_records_item_joined_by_commas(jr, tmp_path):
    """connections() of real records and crafted back-ends is b",".join of connection() of each, for
    batches of every size from 0 (an empty batch: no bytes) up."""
    pairs = _records([("lan", str(CAPTURES / "healthy.pcap")), ("be1", str(_gen(tmp_path / "s.pcap", "sessions", 40)))])
    recs = [c for c, _ in pairs]
    items = [_backend_bytes(BACKENDS[i % len(BACKENDS)]) for i in range(len(recs))]
    assert len(recs) >= 40
    for n in (0, 1, 2, 7, len(recs)):
        want = b",".join(jr.connection(c, b) for c, b in zip(recs[:n], items[:n]))
        assert jr.connections(recs[:n], items[:n]) == want


def test_a_batch_holding_a_record_the_c_writer_declines_is_declined_whole(jr, base):
    """Every record connection() leaves to Python (NONE, below) makes its batch None, wherever it
    stands in it; the same batch without it is written."""
    c, b = base
    for case, make in _none_cases():
        odd = make(c)
        assert jr.connections([c, odd, c], [b"null"] * 3) is None, case
        assert jr.connections([odd], [b"null"]) is None, case
    assert jr.connections([c, c], [b"null"] * 2) is not None


def test_a_batch_whose_lists_differ_or_whose_backend_is_not_bytes_is_an_error(jr, base):
    c, _ = base
    with pytest.raises(ValueError):
        jr.connections([c, c], [b"null"])
    with pytest.raises(TypeError):
        jr.connections([c], ["null"])
    with pytest.raises(TypeError):
        jr.connections((c,), [b"null"])


def test_the_document_writes_a_declined_record_in_its_place_among_batched_ones(jr, base, tmp_path):
    """ConnectionItems.add_many: a batch the C writer declines (one record the Python path writes) is
    written record by record, in order, as add() of each would: the list is the same bytes."""
    c, b = base
    odd = c._replace(missed_bytes=2 ** 63)
    recs = [c._replace(uid=f"lan:C{i}") for i in range(5)] + [odd] + [c._replace(uid=f"lan:C{i}") for i in range(6, 9)]
    backs = [b] * len(recs)

    def written(batched: bool) -> bytes:
        out = []
        items = jsondoc.ConnectionItems(out.append)
        if batched:
            items.add_many(recs[:4], backs[:4])
            items.add_many(recs[4:], backs[4:])
        else:
            for r, k in zip(recs, backs):
                items.add(r, k)
        return b"".join(out)
    assert jsondoc.ConnectionItems(lambda d: None).many is jr.connections
    assert written(True) == written(False)
    assert orjson.loads(b"[" + written(True) + b"]")[5]["missed_bytes"] == 2 ** 63

    run = []  # add_chunk: the run the C writer declines goes one record at a time, in its place
    items = jsondoc.ConnectionItems(run.append)
    items.add_chunk(recs[:4], lambda r: b)
    items.add_chunk(tuple(recs[4:]), lambda r: b)
    assert b"".join(run) == written(False)


# ---- connections_by(): the back-ends looked up in the writer -----------------------------------

def _key_of(c):
    """What Context.backend_of reads of a record (the key connections_by caches by identity)."""
    return (id(c.orig_l2), id(c.resp_l2), c.orig_forwarded > 0, id(c.server_ip), id(c.smtp.banner_host if c.smtp else None))


def test_a_run_with_its_backends_looked_up_in_the_writer_is_connections_of_each_lookup(jr, tmp_path):
    """connections_by(run, item_of) is connections(run, [item_of(c) for c in run]) on real records of
    several back-ends and vantages, for runs of every size from 0 up; item_of is asked once per
    distinct key in the run (records of one store batch share their L2 paths and texts as objects),
    never once per record."""
    pairs = _records([("lan", str(CAPTURES / "healthy.pcap")), ("be1", str(_gen(tmp_path / "s.pcap", "sessions", 300)))])
    recs = [c for c, _ in pairs]
    assert len(recs) >= 300
    names = {}

    def item_of(c):
        asked.append(c)
        return _backend_bytes(BACKENDS[names.setdefault(_key_of(c), len(names)) % len(BACKENDS)])
    for n in (0, 1, 2, 7, len(recs)):
        asked = []
        got = jr.connections_by(recs[:n], item_of)
        assert len(asked) == len({_key_of(c) for c in recs[:n]})
        assert got == jr.connections(recs[:n], [item_of(c) for c in recs[:n]])
    assert len({_key_of(c) for c in recs}) < len(recs) // 10  # the shapes share keys: the case the cache is for
    assert jr.connections_by(tuple(recs[:7]), item_of) == jr.connections(recs[:7], [item_of(c) for c in recs[:7]])


def test_more_distinct_backends_in_a_run_than_the_writer_caches_still_get_each_their_own(jr, base):
    """A run whose records alternate between more back-end keys than the cache holds (8): every record
    is written with its own back-end's item (an evicted key is asked again, never mixed up)."""
    c, _ = base
    kinds = [c._replace(orig_l2=((f"02:00:00:00:01:{i:02x}", "02:00:00:00:00:11"),), uid=f"lan:C{i}") for i in range(11)]
    run = [kinds[(i * 7) % 11] for i in range(60)]
    item = {id(k.orig_l2): orjson.dumps({"name": k.orig_l2[0][0]}) for k in kinds}
    got = jr.connections_by(run, lambda r: item[id(r.orig_l2)])
    assert got == jr.connections(run, [item[id(r.orig_l2)] for r in run])
    assert [o["backend"]["name"] for o in orjson.loads(b"[" + got + b"]")] == [r.orig_l2[0][0] for r in run]


def test_a_run_is_declined_when_a_record_is_or_its_backend_has_no_item(jr, base):
    """None (the caller writes the run one record at a time) when item_of returns None for any record,
    or when a record is one the C writer leaves to Python; an item that is not bytes, or an error
    item_of raises, is an error; a run that is neither a list nor a tuple is a TypeError."""
    c, _ = base
    other = c._replace(server_ip="192.0.2.99")
    assert jr.connections_by([c, c, other], lambda r: None if r.server_ip == "192.0.2.99" else b"null") is None
    assert jr.connections_by([c, other], lambda r: b"null") is not None
    for case, make in _none_cases():
        assert jr.connections_by([c, make(c), c], lambda r: b"null") is None, case
    with pytest.raises(TypeError):
        jr.connections_by([c], lambda r: "null")
    with pytest.raises(ZeroDivisionError):
        jr.connections_by([c], lambda r: 1 / 0)
    with pytest.raises(TypeError):
        jr.connections_by(iter([c]), lambda r: b"null")


def test_the_document_written_a_run_at_a_time_is_the_document_written_a_record_at_a_time(jr, tmp_path, monkeypatch):
    """ConnectionItems.add_chunk (the runs the record stores give, back-ends looked up in C) writes
    the bytes add() of each record writes, on a capture that spills (a sorted run and a part in
    memory, merged: whole batches and pieces of them)."""
    path = _gen(tmp_path / "s.pcap", "sessions", 700)
    monkeypatch.setenv("DSRDIAG_SPILL_AT", "60")  # a store on file and a part in memory
    r = analyze([("lan", str(path))], Topology(ports=(25,)), jobs=1)
    assert r.connections.records[0].connections.runs >= 1 and len(list(r.connections.chunks())) > 3

    written_by_c = []

    def written(by_run: bool) -> bytes:
        out = []
        items = jsondoc.ConnectionItems(out.append)
        if by_run:
            keyed = items.keyed
            items.keyed = lambda recs, item_of: written_by_c.append(keyed(recs, item_of)) or written_by_c[-1]
            for run, backend_of in r.connections.chunks():
                items.add_chunk(run, backend_of)
        else:
            for c, b in r.connections:
                items.add(c, b)
        return b"".join(out)
    assert jsondoc.ConnectionItems(lambda d: None).keyed is jr.connections_by
    assert written(True) == written(False)
    assert written(True).count(b'"uid":') == 700
    assert written_by_c and None not in written_by_c  # the C writer wrote every run (no fallback hid it)
    monkeypatch.setattr(jsondoc, "RUN_ITEMS", 7)  # a run longer than one call writes: in pieces, the same bytes
    written_by_c.clear()
    assert written(True) == written(False)
    assert len(written_by_c) > 700 // 7


# ---- crafted records: every branch -------------------------------------------------------------

@pytest.fixture(scope="module")
def base():
    """A real record with its SMTP dialogue (healthy.pcap's first), and its back-end."""
    for c, b in _records([("lan", str(CAPTURES / "healthy.pcap"))]):
        if c.smtp is not None and c.smtp.banner_ts_ns:
            return c, b
    raise AssertionError("healthy.pcap has no record with a banner")


WILD = "".join(chr(i) for i in range(0x80)) + "\u0080\u00e9\u00ff\u07ff\u0800\u2028\u2029\ufeff\uffff\U00010000\U0001f600\U0010ffff"


class Port(enum.IntEnum):
    SMTP = 25


class Text(str):
    pass


def _smtp(c, **kw):
    return c._replace(smtp=c.smtp._replace(**kw))


def _set(**kw):
    return lambda c: c._replace(**kw)


def _dialogue(**kw):
    return lambda c: _smtp(c, **kw)


def _proxy(version, ip, port):
    return lambda c: _smtp(c, proxy=ProxyHeader(version=version, client_ip=ip, client_port=port, frame=3, ts_ns=c.first_ts_ns))


def _exact_cases():
    """(name, record from the base record) for each branch the writer must write exactly."""
    yield "smtp None", _set(smtp=None)
    for field in ("uid", "capture", "vantage", "history", "conn_state", "tunneled_from"):
        yield f"{field} wild text", _set(**{field: WILD})
        yield f"{field} empty", _set(**{field: ""})
    for field in ("banner_text", "banner_host", "helo", "xclient"):
        yield f"{field} wild text", _dialogue(**{field: WILD})
        yield f"{field} quotes and controls", _dialogue(**{field: '"\\\b\f\n\r\t\x00\x1f\x7f"'})
        yield f"{field} None", _dialogue(**{field: None})
    yield "texts past the stack buffer", _dialogue(banner_text="x" * 9000 + "\n\"" + "\u00e9" * 3000, helo="\U0001f600" * 2000,
                                                   xclient="a" * 20_000)
    yield "client ipv6", _set(client_ip="2001:db8:51::7", ip_version=6)
    yield "server ipv6", _set(server_ip="2001:db8:25::25")
    yield "both ipv6", _set(client_ip="2001:db8:51::7", server_ip="2001:db8:25::25", ip_version=6)
    yield "ipv6 from its first character", _set(client_ip="::1", server_ip="::ffff:192.0.2.25", ip_version=6)
    yield "an address with a quote", _set(client_ip='198.51.100."7\n', server_ip="\u00e9:x")
    yield "ports None and str", _set(client_port=None, server_port="smtp")
    yield "ports bool", _set(client_port=True, server_port=False)
    yield "ttl None, counts zero", _set(orig_ttl=None, resp_ttl=None, orig_pkts=0, resp_bytes=0, missed_bytes=0)
    yield "int64 bounds", _set(orig_bytes=2**63 - 1, resp_bytes=-2**63, missed_bytes=-1)
    yield "ip_version None", _set(ip_version=None)
    yield "no l2 pairs", _set(orig_l2=(), resp_l2=())
    yield "many l2 pairs with None", _set(orig_l2=((None, "02:00:00:00:00:0a"), ("a", None), (None, None)),
                                          resp_l2=(("02:00:00:00:00:11", "02:00:00:00:00:01"),) * 4)
    yield "l2 as lists", _set(orig_l2=[["x", "y"]], resp_l2=[("p", "q")])
    yield "l2 wild mac", _set(orig_l2=((WILD, WILD),))
    yield "proxy v1", _proxy(1, "203.0.113.7", 4242)
    yield "proxy v2 unknown", _proxy(2, None, None)
    yield "proxy wild ip", _proxy(2, WILD, 0)
    for off in (False, True):
        for on in (False, True):
            yield f"starttls {off} {on}", _dialogue(starttls_offered=off, starttls_started=on)
    yield "starttls None and int", _dialogue(starttls_offered=None, starttls_started=1)
    yield "no reply codes", _dialogue(reply_codes=())
    yield "reply codes list with None", _dialogue(reply_codes=[220, None, -1, 2**63 - 1])
    yield "banner code None", _dialogue(banner_code=None, banner_frame=None)
    # durations: zero, negative (and -0.0), a microsecond's half (ties), past 2^53 ns, below 1e-5 s
    for d in (0, 1, 499, 500, 501, 999, 1000, 1500, 2500, 10_000, 9_000, 123_456_789, 2**53 + 1, 2**62,
              -1, -500, -1500, -1_000_000, -(2**53) - 7, 7_812_500):
        yield f"duration {d}", lambda c, d=d: c._replace(last_ts_ns=c.first_ts_ns + d)
    # the banner's delay: none, zero (no time), before the SYN, a tie, far
    yield "banner time None", _dialogue(banner_ts_ns=None)
    yield "banner time 0", _dialogue(banner_ts_ns=0)
    for d in (0, 1, 500, 1500, -2_500, 21_750_000, 2**53 + 3, -(2**60)):
        yield f"banner delay {d}", lambda c, d=d: _smtp(c, banner_ts_ns=c.first_ts_ns + d)
    yield "no SYN seen", lambda c: _smtp(c._replace(history="hAdDFf"), banner_ts_ns=c.first_ts_ns + 5_000_000)
    yield "banner time, empty history", lambda c: _smtp(c._replace(history=""), banner_ts_ns=c.first_ts_ns + 5)
    yield "no banner time, history not str", lambda c: _smtp(c._replace(history=None), banner_ts_ns=None)
    # stamps: nanoseconds, 1970's first second, far future, the last int64 nanosecond
    for d in (1, 100, 500, 999, 1000, 10_000, 123_456_789):
        yield f"first +{d} ns", lambda c, d=d: c._replace(first_ts_ns=c.first_ts_ns + d, last_ts_ns=c.first_ts_ns + d)
    for first in (NS, NS + 1, 2 * NS - 1, 4_102_444_800 * NS + 5, 2**62, 2**63 - 1):
        yield f"first {first}", _set(first_ts_ns=first, last_ts_ns=first)
    yield "last int64 ns", _set(last_ts_ns=2**63 - 1)


def _none_cases():
    """(name, record from the base record) for each kind of record the writer must leave to Python."""
    lone = "ok\udc80"
    for field in ("uid", "capture", "vantage", "client_ip", "server_ip", "history", "conn_state", "tunneled_from"):
        yield f"{field} lone surrogate", _set(**{field: lone})
    for field in ("banner_text", "banner_host", "helo", "xclient"):
        yield f"{field} lone surrogate", _dialogue(**{field: "\ud800"})
    yield "mac lone surrogate", _set(orig_l2=((lone, None),))
    yield "proxy ip lone surrogate", _proxy(2, lone, 1)
    yield "port lone surrogate", _set(client_port=lone)
    for v in (2**63, -2**63 - 1, 2**64, 10**30):
        yield f"packets {v}", _set(orig_pkts=v)
        yield f"banner code {v}", _dialogue(banner_code=v)
        yield f"port {v}", _set(server_port=v)
    yield "first beyond int64", _set(first_ts_ns=2**63, last_ts_ns=2**63)
    yield "duration beyond int64", _set(first_ts_ns=NS, last_ts_ns=-(2**63))
    for first in (0, 1, NS - 1, -1, -NS):
        yield f"first {first}", _set(first_ts_ns=first, last_ts_ns=first)
    yield "first None", _set(first_ts_ns=None)
    yield "first bool", _set(first_ts_ns=True, last_ts_ns=True)
    yield "first float", lambda c: c._replace(first_ts_ns=float(c.first_ts_ns))
    yield "a float count", _set(orig_pkts=1.5)
    yield "an IntEnum port", _set(server_port=Port.SMTP)
    yield "a str subclass", _set(uid=Text("x"))
    yield "a list value", _set(orig_ttl=[64])
    yield "a plain tuple", tuple
    yield "a dialogue as a plain tuple", lambda c: c._replace(smtp=tuple(c.smtp))
    yield "a dialogue of another length", lambda c: c._replace(smtp=c.smtp[:5])
    yield "an l2 triple", _set(orig_l2=(("a", "b", "c"),))
    yield "an l2 path as text", _set(resp_l2="ab")
    yield "reply codes as a generator", _dialogue(reply_codes=(x for x in (220,)))
    yield "reply codes as text", _dialogue(reply_codes="250")
    yield "a banner time as a float", lambda c: _smtp(c, banner_ts_ns=float(c.first_ts_ns + 5))
    yield "a banner time beyond int64", _dialogue(banner_ts_ns=2**64)
    yield "a banner delay beyond int64", lambda c: _smtp(c._replace(first_ts_ns=2**63 - 1, last_ts_ns=2**63 - 1),
                                                       banner_ts_ns=-(2**63))
    yield "history not str, asked for the banner delay", _set(history=b"S")
    yield "a proxy without fields", _dialogue(proxy=object())
    yield "a client address not str", _set(client_ip=None)


EXACT = dict(_exact_cases())
NONE = dict(_none_cases())


@pytest.mark.parametrize("case", EXACT)
def test_a_crafted_record_is_written_as_orjson_writes_it(jr, base, case):
    c, b = base
    rec = EXACT[case](c)
    for backend in (b, *BACKENDS):
        got = jr.connection(rec, _backend_bytes(backend))
        assert got is not None, case
        assert got == orjson.dumps(jsondoc._conn(rec, backend)), case
        assert json_bytes(got) == jsondoc._encode(jsondoc._conn(rec, backend))


def test_a_character_to_escape_is_escaped_at_every_place_in_a_text_as_orjson_escapes_it(jr, base):
    """The writer passes plain ASCII 8 bytes a step and escapes what it must byte by byte from the
    step that holds it: a quote, a backslash or a control at every offset of texts 0-40 long (so at
    every place of a step, and in the tail after the last whole step), alone and beside another."""
    c, b = base
    backend = _backend_bytes(b)
    seen = 0
    for special in ('"', "\\", "\x00", "\x1f", "\n", "\x7f", " "):
        for n in range(41):
            for at in range(n):
                for text in ("a" * at + special + "b" * (n - at - 1), "a" * at + special + special + "b" * (n - at)):
                    rec = _dialogue(helo=text, banner_text=text[::-1])(c)
                    got = jr.connection(rec, backend)
                    assert got == orjson.dumps(jsondoc._conn(rec, b)), (special, n, at)
                    seen += 1
    assert seen > 5000


@pytest.mark.parametrize("case", NONE)
def test_a_record_it_cannot_be_sure_of_is_left_to_python(jr, base, case):
    c, b = base
    rec = NONE[case](c)
    assert jr.connection(rec, _backend_bytes(b)) is None, case


def test_a_lone_surrogate_is_declined_where_orjson_refuses_it_and_no_other_character_is(jr, base):
    c, _ = base
    for ch in ("\ud800", "\udbff", "\udc00", "\udfff"):
        rec = _smtp(c, helo="a" + ch)
        assert _reference(rec, None) is None and jr.connection(rec, b"null") is None
    for cp in (0xD7FF, 0xE000, 0x10000, 0x10FFFF, 0x7F, 0x00, 0xFFFE):  # around the surrogates: written
        rec = _smtp(c, helo="a" + chr(cp))
        assert jr.connection(rec, b"null") == orjson.dumps(jsondoc._conn(rec, None))


def test_the_first_second_of_1970_is_the_edge_of_what_it_writes(jr, base):
    c, _ = base
    assert jr.connection(c._replace(first_ts_ns=NS - 1, last_ts_ns=NS - 1), b"null") is None
    rec = c._replace(first_ts_ns=NS, last_ts_ns=NS, smtp=None)
    got = jr.connection(rec, b"null")
    assert got == orjson.dumps(jsondoc._conn(rec, None))
    assert b'"ts":"1970-01-01T00:00:01.000000Z","ts_epoch":1.0,' in got


def test_ints_are_written_up_to_int64_and_declined_past_it(jr, base):
    c, _ = base
    for v in (2**63 - 1, -2**63):
        assert jr.connection(c._replace(missed_bytes=v), b"null") == orjson.dumps(jsondoc._conn(c._replace(missed_bytes=v), None))
    for v in (2**63, -2**63 - 1):
        assert jr.connection(c._replace(missed_bytes=v), b"null") is None


def test_none_true_and_ints_keep_their_json_types(jr, base):
    c, _ = base
    rec = _smtp(c._replace(orig_ttl=None, resp_ttl=0, orig_forwarded=1),
                starttls_offered=True, starttls_started=False, banner_code=0)
    doc = orjson.loads(jr.connection(rec, b"null"))
    assert doc["client"]["ttl"] is None and doc["server"]["ttl"] == 0 and doc["l2_path"]["forwarded_copies"] == 1
    assert doc["smtp"]["starttls_offered"] is True and doc["smtp"]["starttls_started"] is False
    assert doc["smtp"]["banner_code"] == 0 and type(doc["smtp"]["banner_code"]) is int
    assert doc["backend"] is None


def test_the_backend_is_copied_as_given_and_must_be_bytes(jr, base):
    c, b = base
    got = jr.connection(c, b'{"any":"bytes"}')
    assert b',"backend":{"any":"bytes"},"smtp":' in got
    with pytest.raises(TypeError):
        jr.connection(c, "null")
    with pytest.raises(TypeError):
        jr.connection(c)


def test_the_display_filter_is_wiresharks_conversation_filter(jr, base):
    c, _ = base
    for cip, sip, a, b in (("198.51.100.7", "192.0.2.25", "ip.addr", "ip.addr"),
                           ("2001:db8::7", "192.0.2.25", "ipv6.addr", "ip.addr"),
                           ("198.51.100.7", "2001:db8::25", "ip.addr", "ipv6.addr")):
        doc = orjson.loads(jr.connection(c._replace(client_ip=cip, server_ip=sip, client_port=41001), b"null"))
        assert doc["display_filter"] == f"{a}=={cip} && tcp.port==41001 && {b}=={sip} && tcp.port=={c.server_port}"


# ---- the numbers: round() and orjson's float layout --------------------------------------------

def _random_doubles(rng, n):
    for _ in range(n):
        x = struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
        if math.isfinite(x):
            yield x


def test_a_float_is_laid_out_as_orjson_lays_it_out(jr):
    rng = random.Random(3)
    xs = list(_random_doubles(rng, 100_000))
    for e in range(-325, 309):  # every decade's edges: where the layout changes (1e-5, 1e16)
        for m in ("1", "1.5", "9.999999999999999", "2.2250738585072014", "4.9406564584124654"):
            x = float(f"{m}e{e}")
            xs += [x, -x, math.nextafter(x, 0.0), math.nextafter(x, math.inf)]
    xs += [0.0, -0.0, 5e-324, 1.7976931348623157e308, 1e-5, 1e-6, 9.99999e-6, 1e16, 1e15, 0.1, 2.0**53]
    for x in xs:
        if math.isfinite(x):
            assert jr._double(x) == orjson.dumps(x), x
    for x in (math.inf, -math.inf, math.nan):
        assert jr._double(x) is None


@pytest.mark.parametrize("ms", [False, True])
def test_a_rounded_duration_is_pythons_round_as_orjson_writes_it(jr, ms):
    rng = random.Random(4 + ms)
    div, nd = (1e6, 3) if ms else (1e9, 6)
    ds = [0, 1, -1, 499, 500, 501, 1500, 2500, -500, -1500, 7_812_500, 2**53 - 1, 2**53, 2**53 + 500, 2**63 - 1, -2**63]
    for _ in range(60_000):
        k = rng.choice([3, 5, 7, 9, 12, 15, 16, 18])
        d = rng.randrange(-10**k, 10**k)
        ds.append(d - d % 1000 + 500 if rng.random() < 0.3 else d)  # a third on a microsecond's half: ties
    for d in ds:
        assert jr._rounded(d, ms) == orjson.dumps(round(d / div, nd)), d


# ---- the writer under AddressSanitizer and UndefinedBehaviorSanitizer ---------------------------
def test_the_writer_built_with_asan_and_ubsan_passes_these_tests_under_the_sanitizer(tmp_path, jr):
    """_jsonrows.c rebuilt with -fsanitize=address,undefined into a temporary directory and loaded by a
    separate interpreter (LD_PRELOAD of the sanitizer runtimes), which runs every other test of this
    module against it: all pass, and no sanitizer report. Every PyMem and object allocation goes
    through ASan's malloc (PYTHONMALLOC=malloc): overruns of the objects the writer fills are seen."""
    from tests import _asan

    sanitized = _asan.build(tmp_path, {"dsrdiag.report._jsonrows": ["dsrdiag/report/_jsonrows.c"]})
    _asan.run_module_tests(sanitized, str(Path(__file__)), tmp_path / "t", timeout=1200, malloc=True)
