"""The record store's packed batches (track/packed.py, its C peer track/_storepack.c): the C and the
Python writer write the same bytes for the same batch; each reads the other's bytes back to equal
records whose every field has the same type; repeated texts come back as one object per batch;
what does not pack (a PROXY header, notes that could not be packed, a subclass, a 65-bit int) is
pickled instead, and ordinary records never are; damaged bytes give ValueError, never a crash
(the C reader once more under ASan/UBSan)."""

from __future__ import annotations

import os
import resource
import struct
import random
from pathlib import Path

import pytest

from dsrdiag.track import packed, records, spill
from dsrdiag.track.records import Connection, NoteBlock, ProxyHeader, SmtpDialogue
from tests.conftest import CAPTURES, REAL
from tests.test_store import folder  # noqa: F401 - the store tests' temporary folder fixture, shared

_native = pytest.importorskip("dsrdiag.track._conntrack", reason="the C extension was not built (no compiler)")

ZEEK = REAL.parent / "captures-zeek"
PORTS = (25, 587, 465, 80, 443, 21, 22, 389, 8000, 110, 143)
SAMPLES = sorted(p for p in CAPTURES.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz"))
SHARED = sorted(p for d in (REAL, ZEEK) if d.is_dir() for p in d.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz"))
T = records._TYPES


def _pack_c(batch):
    return _native.pack_batch(batch, T)


def _unpack_c(data):
    return _native.unpack_batch(data, T)


def _records(path: Path) -> list:
    from dsrdiag.track.pipeline import track_capture

    return list(track_capture(str(path), "v", PORTS).connections)


def _assert_same(back: list, batch: list) -> None:
    """`==`, and every field of the same type (a dialogue's and a note block's too)."""
    assert back == batch
    for a, b in zip(back, batch):
        assert type(a) is type(b)
        assert [type(x) for x in a] == [type(x) for x in b]
        if b.smtp is not None:
            assert [type(x) for x in a.smtp] == [type(x) for x in b.smtp]
            assert [type(x) for x in a.smtp.reply_codes] == [type(x) for x in b.smtp.reply_codes]
        for x, y in zip(a[25:28], b[25:28]):
            assert (type(x._data), type(x._strs)) == (type(y._data), type(y._strs))
            assert x._data == y._data and x._strs == y._strs
            assert [type(s) for s in x._strs] == [type(s) for s in y._strs]
        for x, y in ((a.orig_l2, b.orig_l2), (a.resp_l2, b.resp_l2)):
            assert [tuple(map(type, p)) for p in x] == [tuple(map(type, p)) for p in y]


def _both_ways(batch: list) -> bytes | None:
    """Both writers' bytes (asserted equal), each read back by both readers (asserted equal records)."""
    c, py = _pack_c(batch), packed.pack_batch_py(batch)
    assert c == py, "the C and the Python writer disagree"
    if c is not None:
        for read in (_unpack_c, packed.unpack_batch_py):
            _assert_same(read(c), batch)
    return c


def _batches(recs: list):
    for i in range(0, len(recs), spill.BATCH):
        yield recs[i:i + spill.BATCH]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: str(p.relative_to(CAPTURES)))
def test_c_and_python_write_the_same_bytes_and_read_each_others_back_on_every_sample(path):
    recs = _records(path)
    for batch in _batches(recs):
        _both_ways(batch)


@pytest.mark.skipif(not SHARED, reason="../shared/captures-real and captures-zeek are absent")
def test_c_and_python_write_the_same_bytes_and_read_each_others_back_on_the_shared_captures():
    packed_records = 0
    for path in SHARED:
        recs = _records(path)
        for batch in _batches(recs):
            if _both_ways(batch) is not None:
                packed_records += len(batch)
    assert packed_records > 100  # the comparison saw connections, not only empty captures


def test_the_samples_pack_except_where_a_dialogue_holds_a_proxy_header():
    packable = unpackable = 0
    for path in SAMPLES:
        for r in _records(path):
            if packed.pack_batch_py([r]) is None:
                assert r.smtp is not None and r.smtp.proxy is not None, r.uid
                assert _pack_c([r]) is None
                unpackable += 1
            else:
                packable += 1
    assert packable > 100 and unpackable  # both paths seen


# ---- random records: hostile texts, None fields, the edges of 64 bits, empty note blocks ----------
HOSTILE = ["", "a", "\x00", "\udc80", "\ud800", "x\udfffy", "\ud83d\ude00", "😀", "é", "\x1b]0;pwned\x07", "\u2028",
           "\uffff", "\U0010ffff", "caf\udce9", "220 mx.example.net ESMTP", "02:00:00:00:00:01", "v", "x" * 300]
EDGES = [0, 1, -1, 255, 256, 2**31, 2**32 - 1, 2**32, 2**62, 2**63 - 1, -2**63, 1700000000123456789]


def _text(rng):
    return rng.choice(HOSTILE) if rng.random() < 0.7 else "".join(rng.choice(HOSTILE[:14]) for _ in range(rng.randrange(4)))


def _opt(rng, make):
    return None if rng.random() < 0.3 else make(rng)


def _int(rng):
    return rng.choice(EDGES) if rng.random() < 0.6 else rng.randrange(-2**63, 2**63)


def _notes(rng) -> NoteBlock:
    if rng.random() < 0.25:
        return NoteBlock()
    raw = []
    for i in range(rng.randrange(1, 5)):
        mac = _opt(rng, lambda r: bytes(r.randrange(256) for _ in range(6)))
        raw.append((rng.randrange(2**40), rng.randrange(2**62), rng.choice(">" "<"), rng.randrange(256), rng.randrange(2**32),
                    mac, mac, rng.randrange(256), rng.randrange(2**32), rng.randrange(2**32),
                    _opt(rng, lambda r: r.randrange(2**15)), bytes([rng.randrange(256)]) if rng.random() < 0.5 else b""))
    return NoteBlock.pack_raw(raw, lambda m: m.hex(":"), lambda p: _text(rng))


def _dialogue(rng) -> SmtpDialogue:
    return SmtpDialogue(_opt(rng, _int), _opt(rng, _text), _opt(rng, _text), _opt(rng, _int), _opt(rng, _int), _opt(rng, _text),
                        tuple(rng.choice([220, 250, 354, 221, 554, _int(rng)]) for _ in range(rng.randrange(5))),
                        tuple(_text(rng) for _ in range(rng.randrange(4))), rng.random() < 0.5, rng.random() < 0.5,
                        rng.random() < 0.5, _opt(rng, _text), _opt(rng, _int), _opt(rng, _int), None, _opt(rng, _text))


def _l2(rng):
    return tuple((_opt(rng, _text), _opt(rng, _text)) for _ in range(rng.randrange(3)))


def random_record(rng, i: int) -> Connection:
    return Connection(f"v:C{i}", _text(rng), _text(rng), _text(rng), _int(rng), _text(rng), _int(rng), _int(rng), _int(rng),
                      _int(rng), _text(rng), _text(rng), *(_int(rng) for _ in range(7)), _l2(rng), _l2(rng),
                      _opt(rng, _int), _opt(rng, _int), _opt(rng, _int), _opt(rng, _int), _notes(rng), _notes(rng), _notes(rng),
                      _opt(rng, _dialogue), _opt(rng, _text))


def test_random_records_with_hostile_texts_none_fields_and_64_bit_edges_round_trip_the_same_both_ways():
    rng = random.Random(14)
    recs = [random_record(rng, i) for i in range(1500)]
    assert any(c.smtp is None for c in recs) and any(c.orig_ttl is None for c in recs)
    assert any(not c.forwarded_frames for c in recs) and any("\udc80" in c.capture for c in recs)
    for size in (1, 7, spill.BATCH):
        for batch in _batches(recs[:size * 5]) if size < spill.BATCH else _batches(recs):
            assert _both_ways(batch) is not None


def test_lone_surrogates_come_back_exactly():
    rng = random.Random(1)
    rec = random_record(rng, 0)._replace(uid="\ud83d\ude00", capture="\ud83d", vantage="\ude00", history="😀\udcff")
    back = _unpack_c(packed.pack_batch_py([rec]))[0]
    assert [back.uid, back.capture, back.vantage, back.history] == ["\ud83d\ude00", "\ud83d", "\ude00", "😀\udcff"]
    assert len(back.uid) == 2  # two lone surrogates, not joined into one character


def test_an_empty_batch_packs_and_reads_back_empty():
    data = _both_ways([])
    assert data is not None and _unpack_c(data) == [] and packed.unpack_batch_py(data) == []


def test_repeated_values_come_back_as_one_shared_object_per_batch():
    recs = _records(CAPTURES / "healthy.pcap")
    assert len(recs) > 3
    for read in (_unpack_c, packed.unpack_batch_py):
        back = read(packed.pack_batch_py(recs))
        first = back[0]
        for c in back[1:]:
            assert c.capture is first.capture and c.vantage is first.vantage
            if c.orig_l2 == first.orig_l2:
                assert c.orig_l2 is first.orig_l2
            if c.syn_frames._strs == first.syn_frames._strs:
                assert c.syn_frames._strs is first.syn_frames._strs
            if c.smtp and first.smtp and c.smtp.banner_text == first.smtp.banner_text:
                assert c.smtp.banner_text is first.smtp.banner_text


def test_a_repeated_text_is_written_once_per_batch():
    rng = random.Random(3)
    rec = random_record(rng, 0)._replace(capture="/captures/a-long-capture-name.pcap")
    one, many = packed.pack_batch_py([rec]), packed.pack_batch_py([rec._replace(uid=f"v:C{i}") for i in range(50)])
    assert one.count(b"/captures/a-long-capture-name.pcap") == many.count(b"/captures/a-long-capture-name.pcap") == 1


# ---- what does not pack is pickled; what packs never is ------------------------------------------
def _plain(rng=None):
    return random_record(rng or random.Random(7), 0)


class _Str(str):
    pass


class _Int(int):
    pass


@pytest.mark.parametrize("change", [
    lambda c: c._replace(smtp=SmtpDialogue(proxy=ProxyHeader(1, "198.51.100.7", 40000, 3, 4))),  # a PROXY header
    lambda c: c._replace(packets=NoteBlock(None, (records.PacketNote(1, 2**70, ">", 2, 0, None, None, 64, 1, 0),))),  # unpacked notes
    lambda c: c._replace(first_ts_ns=2**63),  # beyond 64 bits
    lambda c: c._replace(last_ts_ns=-2**63 - 1),
    lambda c: c._replace(client_port=True),  # a bool where an int goes
    lambda c: c._replace(capture=_Str("cap")),  # a subclass
    lambda c: c._replace(orig_pkts=_Int(3)),
    lambda c: c._replace(orig_l2=[("a", "b")]),  # a list where a tuple goes
    lambda c: c._replace(resp_l2=((1.0, "b"),)),  # a float inside a tuple
    lambda c: c._replace(smtp=SmtpDialogue(reply_codes=(220, 2**64))),
    lambda c: c._replace(smtp=SmtpDialogue(starttls_offered=1)),  # an int where a bool goes
    lambda c: c._replace(tunneled_from=b"192.0.2.1"),
])
def test_a_batch_with_a_value_not_of_its_plain_type_is_not_packed_by_either_writer(change):
    rec = change(_plain())
    batch = [_plain(random.Random(8)), rec]
    assert _pack_c(batch) is None and packed.pack_batch_py(batch) is None


def test_an_equal_value_of_another_type_is_never_taken_for_an_entry_already_in_the_table():
    good = _plain()._replace(resp_l2=((1, "b"),))
    bad = good._replace(uid="v:C1", resp_l2=((1.0, "b"),))  # == good.resp_l2, but a float
    assert good.resp_l2 == bad.resp_l2
    assert _pack_c([good, bad]) is None and packed.pack_batch_py([good, bad]) is None


def _nested(levels: int):
    t = "x"
    for _ in range(levels):
        t = (t,)
    return t


def test_tuples_nest_at_most_depth_levels_in_a_field_in_both_writers_however_often_they_are_met():
    deep, too_deep = _nested(packed.DEPTH), _nested(packed.DEPTH + 1)
    ok = _plain()._replace(orig_l2=deep)
    assert _both_ways([ok]) is not None
    for bad in (ok._replace(resp_l2=too_deep), ok._replace(resp_l2=(deep,))):  # the same tuple, met one level deeper
        assert _pack_c([bad]) is None and packed.pack_batch_py([bad]) is None


def _forms(path: str) -> list[int]:
    """The form of every batch in a store file."""
    forms = []
    with open(path, "rb") as f:
        while head := f.read(packed.HEADER.size):
            form, _, size = packed.header(head)
            forms.append(form)
            f.seek(size, os.SEEK_CUR)
    return forms


def _spilled(recs, folder, spill_at=2):
    sink = spill.RecordSink(spill_at=spill_at)
    for r in recs:
        sink.add(r)
    seq = sink.records()
    (path,) = folder.rglob("*.records")
    return seq, str(path)


@pytest.mark.parametrize("tracker", ["c", "python"])
def test_ordinary_records_are_stored_packed_never_pickled(folder, monkeypatch, tracker):
    monkeypatch.setenv("DSRDIAG_TRACKER", tracker)
    recs = sorted(_records(CAPTURES / "healthy.pcap") + _records(CAPTURES / "wrong_source.pcap"), key=spill._order)
    seq, path = _spilled(recs, folder)
    assert set(_forms(path)) == {packed.FORM_PACKED}
    assert list(seq) == recs


@pytest.mark.parametrize("tracker", ["c", "python"])
def test_records_with_a_proxy_header_are_stored_pickled_flat_and_come_back_equal(folder, monkeypatch, tracker):
    monkeypatch.setenv("DSRDIAG_TRACKER", tracker)
    recs = sorted(_records(CAPTURES / "snat_proxy.pcap") + _records(CAPTURES / "healthy.pcap"), key=spill._order)
    assert any(c.smtp and c.smtp.proxy for c in recs)
    seq, path = _spilled(recs, folder, spill_at=1)
    forms = _forms(path)
    assert packed.FORM_FLAT in forms
    back = list(seq)
    assert back == recs and [type(c.smtp.proxy) for c in back if c.smtp] == [type(c.smtp.proxy) for c in recs if c.smtp]


def test_records_of_other_types_are_stored_pickled_as_they_are(folder):
    from tests.test_store import Rec

    recs = [Rec(i, f"v:C{i}") for i in range(20)]
    seq, path = _spilled(recs, folder)
    assert set(_forms(path)) == {packed.FORM_OBJECTS}
    assert list(seq) == recs


# ---- damage ---------------------------------------------------------------------------------------
def _small_batch() -> bytes:
    rng = random.Random(5)
    return packed.pack_batch_py([random_record(rng, i) for i in range(3)])


def test_every_truncation_of_a_batch_is_a_value_error_in_both_readers():
    data = _small_batch()
    for n in range(len(data)):
        for read in (_unpack_c, packed.unpack_batch_py):
            with pytest.raises(ValueError):
                read(data[:n])


def test_damaged_bytes_give_a_value_error_or_records_never_a_crash_in_both_readers():
    data = _small_batch()
    rng = random.Random(9)
    errors = 0
    for _ in range(1500):
        b = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] = rng.choice([0, 0xFF, rng.randrange(256)])
        outcomes = []
        for read in (_unpack_c, packed.unpack_batch_py):
            try:
                outcomes.append(read(bytes(b)))
            except ValueError:
                outcomes.append(ValueError)
        errors += outcomes[0] is ValueError
        assert (outcomes[0] is ValueError) == (outcomes[1] is ValueError), "one reader refused what the other read"
    assert errors > 500  # most damage is seen (lengths, references, masks, tags)


@pytest.mark.parametrize("data", [b"", b"DSRS", b"XXXX" + bytes(16), packed.HEADER.pack(b"DSRS", 2, 2, 0, 0, 4) + bytes(4),
                                  packed.HEADER.pack(b"DSRS", 1, 0, 0, 0, 4) + bytes(4),
                                  packed.HEADER.pack(b"DSRS", 1, 2, 0, 10**9, 4) + bytes(4),
                                  packed.HEADER.pack(b"DSRS", 1, 2, 0, 0, 8) + (2**31).to_bytes(4, "little") + bytes(4)])
def test_what_is_not_a_packed_batch_of_this_version_is_refused_by_both_readers(data):
    for read in (_unpack_c, packed.unpack_batch_py):
        with pytest.raises(ValueError):
            read(data)


def test_a_store_file_cut_while_in_use_is_a_one_line_store_error(folder):
    recs = sorted(_records(CAPTURES / "healthy.pcap") * 1, key=spill._order)
    seq, path = _spilled(recs, folder)
    os.truncate(path, os.path.getsize(path) - 7)
    with pytest.raises(spill.StoreError) as e:
        list(seq)
    assert path in str(e.value) and "\n" not in str(e.value)


def test_the_python_tracker_setting_runs_the_reference_codec(monkeypatch):
    from dsrdiag.track import _conntrack

    calls = []
    monkeypatch.setattr(packed, "pack_batch_py", lambda b: calls.append(len(b)) or None)
    monkeypatch.setenv("DSRDIAG_TRACKER", "python")
    packed.pack_batch([])
    assert calls == [0]
    monkeypatch.setenv("DSRDIAG_TRACKER", "c")
    assert packed.pack_batch([]) == _conntrack.pack_batch([], T)
    assert calls == [0]


def test_record_types_that_are_not_plain_classes_are_refused_by_the_c_codec():
    data = packed.pack_batch_py([_plain()])
    for types in ((records.Connection, records.NoteBlock, os.stat_result), (os.stat_result, records.NoteBlock, records.SmtpDialogue), ()):
        with pytest.raises(TypeError):
            _native.unpack_batch(data, types)
        with pytest.raises(TypeError):
            _native.pack_batch([_plain()], types)


def test_store_codec_under_the_sanitizer_passes_this_module_cleanly(tmp_path):
    """_conntrack rebuilt with -fsanitize=address,undefined (tests/_asan.py), every allocation of the
    interpreter through ASan's malloc: this module's tests (the damaged batches among them) all pass
    on that build, with no sanitizer report."""
    from tests import _asan

    sanitized = _asan.build(tmp_path, {"dsrdiag.capture._fastpcap": ["dsrdiag/capture/_fastpcap.c"],
                                       "dsrdiag.track._conntrack": _asan.CONNTRACK})
    _asan.run_module_tests(sanitized, str(Path(__file__)), tmp_path / "t", timeout=1500, malloc=True)


# ---- damaged batches the review found (nesting, note layout, header lengths) ---------------------

def _chain_batch(levels: int, notes: bytes = b"") -> bytes:
    """A packed batch of one record whose orig_l2 is a chain of 1-tuples `levels` deep (and whose
    packet notes are `notes`), written by hand: what a damaged or crafted store file could hold."""
    ents = [struct.pack("<BI", packed.TAG_STR, 1) + b"x", struct.pack("<BI", packed.TAG_TUPLE, 0)]
    for i in range(levels):
        ents.append(struct.pack("<BII", packed.TAG_TUPLE, 1, len(ents) - 1 if i else 0))
    refs = [0, 0, 0, 0, 0, 0, 0, len(ents) - 1 if levels else 1, 0, packed.NONE]
    rec = packed.RECORD.pack(*refs, *[0] * 16, 0, 1, len(notes), 1, 0, 1, 0) + notes
    body = struct.pack("<I", len(ents)) + b"".join(ents) + rec
    return packed.HEADER.pack(packed.MAGIC, packed.VERSION, packed.FORM_PACKED, 0, 1, len(body)) + body


def _readers():
    out = [packed.unpack_batch_py]
    native = records._record_native()
    if native is not None and hasattr(native, "unpack_batch"):
        out.append(lambda data: native.unpack_batch(data, records._TYPES))
    return out


@pytest.mark.parametrize("levels", [packed.DEPTH + 1, 300_000])
def test_tuples_nested_deeper_than_the_writers_allow_are_refused_by_both_readers(levels):
    """hash() of such a record would recurse without bound in C (tuplehash has no guard): refused."""
    for read in _readers():
        with pytest.raises(ValueError):
            read(_chain_batch(levels))


def test_tuples_nested_as_deep_as_the_writers_allow_are_read_by_both_readers():
    for read in _readers():
        (c,) = read(_chain_batch(packed.DEPTH))
        depth, v = 0, c.orig_l2
        while type(v) is tuple and v:
            depth, v = depth + 1, v[0]
        assert depth == packed.DEPTH and v == "x" and hash(c) is not None


def test_a_note_block_that_is_not_whole_notes_is_refused_by_both_readers_and_never_written():
    note = records._NOTE.pack(1, 2, 0, 2, 0, -1, -1, 64, 1, 0, -1, -1)
    for read in _readers():
        with pytest.raises(ValueError):
            read(_chain_batch(2, b"\x00" * 5))
        with pytest.raises(ValueError):
            read(_chain_batch(2, note + b"\x00"))
        (c,) = read(_chain_batch(2, note))
        assert len(list(c.packets)) == 1
    (c,) = packed.unpack_batch_py(_chain_batch(2, note))
    odd = c._replace(packets=records.NoteBlock(b"\x00" * 5, ()))
    assert packed.pack_batch_py([odd]) is None
    native = records._record_native()
    if native is not None and hasattr(native, "pack_batch"):
        assert packed.pack_batch([odd]) is None


@pytest.mark.parametrize("length", [2 ** 63, 2 ** 62, 10 ** 12, 600 * 2 ** 20])
def test_a_damaged_body_length_in_a_store_file_is_a_store_error_and_no_allocation(tmp_path, length):
    path = tmp_path / "x.records"
    path.write_bytes(packed.HEADER.pack(packed.MAGIC, packed.VERSION, packed.FORM_PACKED, 0, 1, length) + bytes(16))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(spill.StoreError):
        list(spill._read_batches(str(path), 0, path.stat().st_size))
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 64 * 1024  # KiB: no buffer of the length
