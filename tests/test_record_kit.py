"""The C tracker makes Connection records itself (track/_conntrack.c conn_record, given
conn.record_kit()), the peer of connection_record: the records must be the ones connection_record
makes from the tracker's tuples (DSRDIAG_RECORD_KIT=0), field for field, on every sample capture
(PROXY headers, XCLIENT, tunnels, hostile banners and text among them) and on the shared real
captures; texts come from the same intern tables (one shared object per repeated value); a wrong
kit is refused with an error, never a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import CAPTURES, REAL

_native = pytest.importorskip("dsrdiag.track._conntrack", reason="the C extension was not built (no compiler)")

SAMPLES = sorted(p for p in CAPTURES.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz"))
REAL_CAPTURES = sorted(p for p in REAL.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz")) if REAL.is_dir() else []


def _records(path: Path, kit: str, monkeypatch, vantage: str = "v") -> list:
    from dsrdiag.track.pipeline import track_capture

    monkeypatch.delenv("DSRDIAG_TRACKER", raising=False)
    monkeypatch.setenv("DSRDIAG_RECORD_KIT", kit)
    return list(track_capture(str(path), vantage, (25, 587, 465, 80, 443, 22)).connections)


def _assert_same_records(path, monkeypatch, vantage: str = "v"):
    made_in_c, made_in_python = _records(path, "1", monkeypatch, vantage), _records(path, "0", monkeypatch, vantage)
    assert len(made_in_c) == len(made_in_python)
    for a, b in zip(made_in_c, made_in_python):
        assert type(a) is type(b)
        assert tuple(a) == tuple(b), f"{a.uid}: conn_record and connection_record disagree"
        assert type(a.smtp) is type(b.smtp) and type(a.packets) is type(b.packets)
    return made_in_c


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: str(p.relative_to(CAPTURES)))
def test_records_made_in_c_are_the_records_connection_record_makes_on_every_sample(path, monkeypatch):
    _assert_same_records(path, monkeypatch)


@pytest.mark.skipif(not REAL_CAPTURES, reason="../shared/captures-real is absent")
def test_records_made_in_c_are_the_records_connection_record_makes_on_real_captures(monkeypatch):
    total = 0
    for path in REAL_CAPTURES:
        total += len(_assert_same_records(path, monkeypatch))
    assert total > 100  # the comparison saw connections, not only empty captures


@pytest.mark.parametrize("vantage", ["fw", "client:eth0", "pare-feu côté LB", "\u05e9\u05e8\u05ea-\U0001f4e7", ""])
def test_uids_made_in_c_are_connection_records_uids_for_any_vantage_name(vantage, monkeypatch):
    """conn_record builds "<vantage>:C<n>" by hand when the vantage is ASCII and through
    PyUnicode_FromFormat otherwise: both give connection_record's uids."""
    made = _assert_same_records(CAPTURES / "healthy.pcap", monkeypatch, vantage)
    assert made and all(c.uid == f"{vantage}:C{c.uid.rsplit(':C', 1)[1]}" for c in made)


def test_texts_remembered_for_one_capture_are_never_given_to_another(monkeypatch):
    """The C record maker remembers the texts of addresses, histories and MAC pairs by their raw
    bytes across captures (a table shared by every tracker of the process): captures with other
    addresses and MACs, read in turn and again, each still get connection_record's records."""
    order = [CAPTURES / "healthy.pcap", CAPTURES / "arp_leak6.pcapng", CAPTURES / "snat.pcap", CAPTURES / "healthy.pcap",
             CAPTURES / "wrong_source.pcap", CAPTURES / "arp_leak6.pcapng"]
    seen = set()
    for path in order:
        for c in _assert_same_records(path, monkeypatch):
            seen.add((c.client_ip, c.orig_l2, c.resp_l2, c.history))
    assert len(seen) > 10  # the captures differ in what the table remembers


def test_the_samples_reach_every_branch_of_the_c_record_maker(monkeypatch):
    """PROXY headers (made by smtp.dialogue), XCLIENT, banners, tunnels: each seen at least once,
    so the comparisons above cover every path of conn_record."""
    seen = {"proxy": 0, "xclient": 0, "banner": 0, "no dialogue": 0, "tunnel": 0, "not 220": 0}
    for path in SAMPLES:
        for c in _records(path, "1", monkeypatch):
            s = c.smtp
            seen["no dialogue"] += s is None
            seen["tunnel"] += c.tunneled_from is not None
            if s is not None:
                seen["proxy"] += s.proxy is not None
                seen["xclient"] += s.xclient is not None
                seen["banner"] += s.banner_code == 220
                seen["not 220"] += s.banner_code not in (None, 220)
    missing = [k for k, n in seen.items() if not n and k != "not 220"]
    assert not missing, f"no sample record exercises: {missing}"


def test_repeated_texts_are_one_shared_object_per_value(monkeypatch):
    recs = _records(CAPTURES / "healthy.pcap", "1", monkeypatch)
    by_server: dict = {}
    for c in recs:
        first = by_server.setdefault(c.server_ip, c)
        assert c.server_ip is first.server_ip
        if c.history == first.history:
            assert c.history is first.history
        if c.orig_l2 == first.orig_l2:
            assert c.orig_l2 is first.orig_l2
    assert len(recs) > len(by_server)  # several connections to one server: sharing was tested


@pytest.mark.parametrize("kit", ["1", "0"])
def test_last_replies_stay_out_of_the_shared_table_both_ways_and_the_dialogues_texts_go_in(kit, monkeypatch):
    """smtp.dialogue shares a dialogue's HELO and its tuples through intern's table but not its last
    reply (often one of a kind: a queue id); the C record maker, which memoises all of them, fills
    the table the same way."""
    from dsrdiag.track import intern

    # a new table: the C memo's entries belong to the table they were made for, so none of them
    # (from tests before this one) answers for this one and every text is made afresh
    monkeypatch.setattr(intern, "_SHARED", {})
    recs = [c for p in SAMPLES for c in _records(p, kit, monkeypatch) if c.smtp is not None]
    lasts = {c.smtp.last_reply for c in recs if c.smtp.last_reply}
    helos = {c.smtp.helo for c in recs if c.smtp.helo}
    assert lasts and helos  # the samples have both: the test can fail
    shared = {v for v in intern._SHARED if type(v) is str}
    assert not lasts & shared - helos
    assert helos <= shared


def test_a_banner_longer_than_200_characters_is_cut_and_names_its_host_the_same_both_ways():
    from dsrdiag.track.smtp import banner_parts, dialogue

    long = "mx9.example.net ESMTP " + "x" * 300
    text, host = banner_parts(long)
    assert (len(text), host) == (200, "mx9.example.net")
    d = dialogue((220, long, 4, 5), None, (220,), (), False, False, False, None, None, None, None)
    assert (d.banner_text, d.banner_host) == (long[:200], "mx9.example.net")
    not_greeting = dialogue((554, long, 4, 5), None, (554,), (), False, False, False, None, None, None, None)
    assert not_greeting.banner_host is None  # only a 220 names the server's host


@pytest.mark.parametrize("kit", [(), ("a",) * 15, (1,) * 15, "not a tuple"])
def test_a_wrong_kit_is_refused_with_an_error_not_a_crash(kit):
    from dsrdiag.decode.proxyproto import parse_proxy

    t = _native.Tracker(frozenset({25}), parse_proxy)
    with pytest.raises(TypeError):
        t.kit = kit
    assert t.kit is None  # the tracker still hands over tuples


def test_a_kit_from_record_kit_is_taken_and_can_be_removed():
    from dsrdiag.decode.proxyproto import parse_proxy
    from dsrdiag.track.conn import record_kit

    t = _native.Tracker(frozenset({25}), parse_proxy)
    kit = record_kit("cap", "v")
    t.kit = kit
    assert t.kit is kit
    t.kit = None
    assert t.kit is None


def _all_sample_records(monkeypatch) -> list:
    out = []
    for path in SAMPLES:
        out += _records(path, "1", monkeypatch)
    for path in REAL_CAPTURES[:40]:
        out += _records(path, "1", monkeypatch)
    return out


def test_flatten_and_unflatten_in_c_give_what_the_references_give_on_real_records(monkeypatch):
    from dsrdiag.track import records

    recs = _all_sample_records(monkeypatch)
    assert any(c.smtp is not None for c in recs) and any(c.smtp is None for c in recs)
    flat_c, flat_py = _native.flatten_all(recs, records._TYPES), records.flatten_all_py(recs)
    assert flat_c == flat_py
    assert all(type(f) is tuple and (f[31] is None or type(f[31]) is tuple) for f in flat_c)  # plain values only
    back_c, back_py = _native.unflatten_all(flat_py, records._TYPES), records.unflatten_all_py(flat_py)
    assert back_c == back_py == recs
    for a, b in zip(back_c, back_py):
        assert type(a) is type(b) and type(a.packets) is type(b.packets) and type(a.smtp) is type(b.smtp)
        assert list(a.packets) == list(b.packets) and list(a.forwarded_frames) == list(b.forwarded_frames)


def test_flatten_keeps_notes_that_could_not_be_packed_as_they_are():
    """A corrupt capture's absurd timestamp leaves a NoteBlock unpacked (data None, the notes as
    objects): both ways keep it so."""
    from dsrdiag.track import records
    from dsrdiag.track.records import NoteBlock, PacketNote

    note = PacketNote(1, 2**70, records.ORIG, 2, 0, None, None, 64, 1, 0, None, None)
    unpacked = NoteBlock.pack_raw([(1, 2**70, records.ORIG, 2, 0, None, None, 64, 1, 0, None, b"")], lambda m: m, lambda p: None)
    assert unpacked._data is None and list(unpacked) == [note]
    rec = records.Connection(*(["u", "c", "v", "192.0.2.1", 1, "192.0.2.2", 25, 4, 0, 0, "S", "S0"] + [0] * 7
                              + [(), (), None, None, None, None, unpacked, NoteBlock(), NoteBlock(), None, None]))
    flat = _native.flatten_all([rec], records._TYPES)
    assert flat == records.flatten_all_py([rec])
    back = _native.unflatten_all(flat, records._TYPES)[0]
    assert back == rec and back.packets._data is None


@pytest.mark.parametrize("batch,error", [
    ([("not", "a", "record")], TypeError),
    ([None], TypeError),
])
def test_flatten_all_refuses_anything_but_connection_records(batch, error):
    from dsrdiag.track import records

    with pytest.raises(error):
        _native.flatten_all(batch, records._TYPES)


@pytest.mark.parametrize("batch", [[(1, 2, 3)], [None], [tuple(range(34))]])
def test_unflatten_all_refuses_what_is_not_a_flattened_record(batch):
    from dsrdiag.track import records

    with pytest.raises(ValueError):
        _native.unflatten_all(batch, records._TYPES)


def test_the_python_tracker_setting_runs_the_reference_flatten(monkeypatch):
    from dsrdiag.track import records

    monkeypatch.setenv("DSRDIAG_TRACKER", "python")
    assert records._record_native() is None
    monkeypatch.setenv("DSRDIAG_TRACKER", "c")
    assert records._record_native() is _native


# ---- what the C record maker must survive (review of the change; each was a crash before) ----------
_SESSION = '''
from dsrdiag.decode.proxyproto import parse_proxy
from dsrdiag.track import _conntrack
from dsrdiag.track.conn import record_kit

CL, SV = bytes([192, 0, 2, 1]), bytes([192, 0, 2, 25])
M1, M2 = bytes([2, 0, 0, 0, 0, 1]), bytes([2, 0, 0, 0, 0, 2])


def session(t, sport, base, tunnel=None):
    """one SMTP session fed to the C tracker packet by packet (Tracker.packet)"""
    frame = [base]

    def pk(src, dst, sp, dp, seq, ack, fl, pl=b""):
        frame[0] += 1
        t.packet(frame[0], 10**9 + frame[0] * 1000, M1 if src == CL else M2, M2 if src == CL else M1, src, dst, sp, dp,
                 seq, ack, fl, 1000, 64, 1, pl, tunnel if src == CL else None)
    c, s = 1000, 5000
    pk(CL, SV, sport, 25, c, 0, 2); c += 1
    pk(SV, CL, 25, sport, s, c, 18); s += 1
    pk(CL, SV, sport, 25, c, s, 16)
    for data, frm in ((b"220 mx.example.net ESMTP\\r\\n", SV), (b"EHLO me\\r\\n", CL), (b"250 ok\\r\\n", SV)):
        if frm == SV:
            pk(SV, CL, 25, sport, s, c, 24, data); s += len(data)
        else:
            pk(CL, SV, sport, 25, c, s, 24, data); c += len(data)
    pk(CL, SV, sport, 25, c, s, 17); c += 1
    pk(SV, CL, 25, sport, s, c, 17); s += 1
    pk(CL, SV, sport, 25, c, s, 16)


def tracker(kit):
    t = _conntrack.Tracker(frozenset({25}), parse_proxy)
    t.kit = kit
    return t
'''


def _run_isolated(code: str):
    """`code` after _SESSION in a separate interpreter: a crash fails the test, not the test run."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    return subprocess.run([sys.executable, "-c", _SESSION + code], capture_output=True, text=True, timeout=120, cwd=str(ROOT))


def test_a_gc_callback_that_reads_young_records_while_they_are_made_sees_only_whole_records():
    p = _run_isolated('''
import gc
from dsrdiag.track.records import Connection, SmtpDialogue
def look(phase, info):
    if phase == "start":
        for o in gc.get_objects(generation=0):
            if type(o) in (Connection, SmtpDialogue):
                hash(o)
gc.callbacks.append(look)
gc.set_threshold(1)
t = tracker(record_kit("cap", "v"))
for i in range(30):
    session(t, 40000 + i, 100 * i)
print(len(t.finish_all()))
''')
    assert p.returncode == 0 and p.stdout.split() == ["30"], p.stderr[-2000:]


def test_a_kit_callback_that_re_enters_the_tracker_gets_an_error_not_a_crash():
    p = _run_isolated('''
kit = list(record_kit("cap", "v"))
box = {}
def shared(v):
    box["t"].more()
    return v
kit[7], kit[8] = {}, shared
t = tracker(tuple(kit))
box["t"] = t
session(t, 40000, 0)
try:
    t.finish_all()
except RuntimeError as e:
    print("refused:", e)
''')
    assert p.returncode == 0 and "refused: Tracker re-entered" in p.stdout, p.stderr[-2000:]


def test_a_kit_with_its_own_address_table_gets_that_tables_texts_not_another_kits():
    """The C record maker's memo of texts by raw bytes (conn_record's ip_of) answers for one table
    and filler: a kit whose table holds another text for an address gets that text, and a tracker
    with record_kit() read after it still gets connection_record's, in either order."""
    p = _run_isolated('''
def client_ip(kit, n):
    t = tracker(kit)
    session(t, 40000 + n, 100 * n)
    return t.finish_all()[0].client_ip
own = list(record_kit("cap", "v"))
own[5] = {CL: "this-kit"}
print(client_ip(record_kit("cap", "v"), 0), client_ip(tuple(own), 1), client_ip(record_kit("cap", "v"), 2))
''')
    assert p.returncode == 0 and p.stdout.split() == ["192.0.2.1", "this-kit", "192.0.2.1"], (p.stdout, p.stderr[-2000:])


def test_a_failing_kit_callback_raises_its_own_exception():
    p = _run_isolated('''
kit = list(record_kit("cap", "v"))
def ip_text(raw):
    raise KeyError("no text")
kit[5], kit[6] = {}, ip_text
t = tracker(tuple(kit))
session(t, 40000, 0, tunnel=bytes([192, 0, 2, 9]))
try:
    t.finish_all()
except KeyError as e:
    print("raised:", e)
''')
    assert p.returncode == 0 and "raised: 'no text'" in p.stdout, (p.stdout, p.stderr[-2000:])


def test_record_types_that_are_not_plain_classes_are_refused():
    import os

    from dsrdiag.decode.proxyproto import parse_proxy
    from dsrdiag.track import records
    from dsrdiag.track.conn import record_kit

    flat = [tuple(["u", "c", "v", "1", 1, "2", 25, 4, 0, 0, "S", "S0"] + [0] * 7
                  + [(), (), None, None, None, None, b"", (), b"", (), b"", (), None, None])]
    for types in ((records.Connection, records.NoteBlock, os.stat_result), (os.stat_result, records.NoteBlock, records.SmtpDialogue),
                  (records.Connection, type(os.stat(".")), records.SmtpDialogue)):
        with pytest.raises(TypeError):
            _native.unflatten_all(flat, types)
    kit = list(record_kit("cap", "v"))
    kit[2] = os.stat_result
    t = _native.Tracker(frozenset({25}), parse_proxy)
    with pytest.raises(TypeError):
        t.kit = tuple(kit)
    assert _native.unflatten_all(flat, records._TYPES)[0].uid == "u"  # the real types still work


def test_a_flattened_record_or_dialogue_of_the_wrong_length_is_refused_by_both_unflattens():
    """Record fields are read by member descriptors that do not check the tuple's length
    (records._fields_as_members): neither unflatten may make a record or dialogue that is short."""
    from dsrdiag.track import records

    good = tuple(["u", "c", "v", "1", 1, "2", 25, 4, 0, 0, "S", "S0"] + [0] * 7
                 + [(), (), None, None, None, None, b"", (), b"", (), b"", (), tuple(records.SmtpDialogue()), None])
    assert records.unflatten(good) == _native.unflatten_all([good], records._TYPES)[0]
    for bad in (good[:32], good + (None,), good[:31] + ((1,),) + good[32:], good[:31] + (tuple(range(17)),) + good[32:]):
        with pytest.raises(ValueError):
            records.unflatten(bad)
        with pytest.raises(ValueError):
            _native.unflatten_all([bad], records._TYPES)


def test_record_fields_read_as_members_give_each_item_and_cannot_be_set():
    from dsrdiag.track import records

    assert type(records.Connection.uid).__name__ == "member_descriptor"
    assert type(records.SmtpDialogue.helo).__name__ == "member_descriptor"
    d = records.SmtpDialogue(banner_code=220, helo="c.example.org", reply_codes=(220, 250))
    assert [getattr(d, f) for f in d._fields] == list(d)
    with pytest.raises(AttributeError):
        d.helo = "x"
    assert d._replace(helo="y").helo == "y" and records.SmtpDialogue._make(list(d)) == d


def test_record_maker_and_flatten_under_the_sanitizer_pass_this_module_cleanly(tmp_path):
    """_conntrack rebuilt with -fsanitize=address,undefined (tests/_asan.py), every allocation of the
    interpreter through ASan's malloc (an overrun of a Python object is seen too): this module's
    tests all pass on that build, with no sanitizer report."""
    from tests import _asan

    sanitized = _asan.build(tmp_path, {"dsrdiag.capture._fastpcap": ["dsrdiag/capture/_fastpcap.c"],
                                       "dsrdiag.track._conntrack": _asan.CONNTRACK})
    _asan.run_module_tests(sanitized, str(Path(__file__)), tmp_path / "t", timeout=900, malloc=True)
