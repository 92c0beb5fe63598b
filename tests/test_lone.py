"""The lone-SYN lane (track/lone.py) changes no answer: a row is its record, packed; the store gives
the same records in the same order; facts, rules, the back-end table and the JSON list read rows
as they read the records they stand for.

How: the same captures analysed with the lane on and off (DSRDIAG_LONE=0) give byte-identical
reports (JSON, text, conn.log), on both trackers (the `tracker` fixture), on the bundled samples,
the path sets, Zeek's real traces, and generated floods, scans and sessions mixed with them. And
the definition itself, case by case: each property of a lone SYN, changed, makes a record that is
not one (a row there would be wrong).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CAPTURES, ROOT
from floodgen import VIP, Pcap, flood, scan, mixed

pytestmark = pytest.mark.usefixtures("tracker")

T0 = 1700000000.0
ZEEK = ROOT.parent / "shared" / "captures-zeek"
PATH_SETS = ["healthy", "wrong_source", "asym", "proxy", "mixed"]
VANTAGES = ("client", "fw-out", "fw-in", "lb", "be1", "be2")


def _run(args, lane: bool, tmp: Path | None = None, spill_at: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, DSRDIAG_LONE="1" if lane else "0")
    if spill_at:
        env["DSRDIAG_SPILL_AT"] = str(spill_at)
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    return subprocess.run([sys.executable, "-m", "dsrdiag", "analyze", *args], capture_output=True, timeout=300, env=env)


def _same_both_ways(args, tmp_path, **kw) -> bytes:
    on, off = _run(args, True, **kw), _run(args, False, **kw)
    assert on.returncode == off.returncode and on.returncode in (0, 1, 3, 4), on.stderr
    assert on.stdout == off.stdout
    assert on.stderr == off.stderr
    return on.stdout


def _mixed(path: Path, n_flood: int = 3000, n_sessions: int = 40) -> Path:
    """A flood with real sessions and retrying clients in the middle of it: records between rows."""
    return mixed(path, 11, start=T0, n_sessions=n_sessions, n_flood=n_flood)


@pytest.mark.parametrize("name", ["healthy.pcap", "syn_unanswered.pcap", "vip_missing.pcap", "wrong_source.pcap",
                                  "arp_leak6.pcapng", "snat_proxy.pcap", "damaged.pcap", "healthy.pcap.gz"])
def test_a_sample_gives_the_same_report_with_the_lane_on_and_off(name, tmp_path):
    out = _same_both_ways([str(CAPTURES / name), "--format", "json"], tmp_path)
    assert b'"connections":[' in out


@pytest.mark.parametrize("folder", PATH_SETS)
def test_a_path_set_gives_the_same_correlated_report_with_the_lane_on_and_off(folder, tmp_path):
    caps = [f"{v}={CAPTURES / 'paths' / folder / (v + '.pcap')}" for v in VANTAGES
            if (CAPTURES / "paths" / folder / (v + ".pcap")).exists()]
    _same_both_ways([*caps, "--format", "json", "--jobs", "1"], tmp_path)


def test_a_flood_mixed_with_sessions_gives_the_same_json_text_and_conn_log_with_the_lane_on_and_off(tmp_path):
    cap = _mixed(tmp_path / "mixed.pcap")
    out = _same_both_ways([str(cap), "--format", "json"], tmp_path)
    assert out.count(b'"conn_state":"S0"') >= 3000 and b"syn_flood_or_scan" in out
    _same_both_ways([str(cap), "-v"], tmp_path)
    logs = []
    for lane in (True, False):
        log = tmp_path / f"conn-{lane}.log"
        _run([str(cap), "--format", "json", "--conn-log", str(log)], lane)
        logs.append([ln for ln in log.read_text().splitlines() if not ln.startswith(("#open", "#close"))])
    assert logs[0] == logs[1] and len(logs[0]) > 3000


def test_every_attempt_of_a_flood_larger_than_a_drain_is_listed_once(tmp_path):
    """More rows than the C tracker hands over in one drain (4 MiB: ~40k rows): none lost or doubled."""
    p, rng = Pcap(tmp_path / "big.pcap"), random.Random(2)
    flood(p, rng, 50_000, T0, 20_000.0, n_sources=300)
    p.close()
    out = _same_both_ways([str(tmp_path / "big.pcap"), "--format", "json"], tmp_path)
    import json

    doc = json.loads(out)
    assert len(doc["connections"]) == 50_000 == len({c["uid"] for c in doc["connections"]})
    assert "(50000 attempts, set apart)" in doc["verdict"]["text"]


def test_a_flood_spilled_to_files_gives_the_same_report_with_the_lane_on_and_off(tmp_path):
    cap = _mixed(tmp_path / "mixed.pcap", n_flood=6000)
    spill = tmp_path / "spill"
    spill.mkdir()
    _same_both_ways([str(cap), "--format", "json"], tmp_path, tmp=spill, spill_at=50)
    assert not list(spill.iterdir())  # the store's files and the lane's are gone


def test_a_flood_read_by_parallel_workers_gives_the_same_report_with_the_lane_on_and_off(tmp_path):
    a = _mixed(tmp_path / "a.pcap")
    b = _mixed(tmp_path / "b.pcap", n_flood=2000)
    _same_both_ways([f"x={a}", f"y={b}", "--format", "json", "--jobs", "2"], tmp_path)


@pytest.mark.skipif(not ZEEK.is_dir(), reason="../shared/captures-zeek is not present")
def test_zeeks_real_traces_give_the_same_records_with_the_lane_on_and_off(monkeypatch):
    from dsrdiag.track.pipeline import track_capture

    from test_zeek_traces import zeek_rows, BASELINES

    assert BASELINES
    for b in BASELINES:
        t = ZEEK / b.trace
        ports = tuple(sorted({int(r["id.resp_p"]) for r in zeek_rows(b)}))
        got = {}
        for lane in ("1", "0"):
            monkeypatch.setenv("DSRDIAG_LONE", lane)
            r = track_capture(str(t), "v", ports)
            got[lane] = (list(r.connections), _facts(r.facts))
        assert got["1"] == got["0"], t.name


def _facts(facts) -> tuple:
    """A capture's Facts as plain values (Attempts compared by their fields)."""
    state = list(facts.__getstate__())
    i = facts.__slots__.index("attempts")
    state[i] = {k: a.__getstate__() for k, a in state[i].items()}
    return tuple(state)


def test_store_parts_are_the_records_in_order_with_lone_syns_as_blocks(tmp_path, monkeypatch):
    from dsrdiag.track import spill
    from dsrdiag.track.lone import Block
    from dsrdiag.track.pipeline import track_capture

    monkeypatch.setattr(spill, "LANE_MEMORY", 104 * 100)  # the lane goes to its file in pieces
    monkeypatch.setattr(spill, "LANE_READ", 64)
    cap = _mixed(tmp_path / "mixed.pcap")
    r = track_capture(str(cap), "v", (25,))
    parts = list(r.connections.parts())
    blocks = [p for p in parts if type(p) is Block]
    flat = [c for p in parts for c in (p if type(p) is Block else (p,))]
    assert flat == list(r.connections) and len(flat) == len(r.connections)
    assert len(blocks) >= 2 and sum(len(b) for b in blocks) >= 3000  # rows, with records between them
    keys = [(c.first_ts_ns, c.uid) for c in flat]
    assert keys == sorted(keys)
    monkeypatch.setenv("DSRDIAG_LONE", "0")
    assert list(track_capture(str(cap), "v", (25,)).connections) == flat
    chunks = list(r.connections.chunks())  # a run at a time: the same blocks, the records between them in runs
    assert [c for ch in chunks for c in ch] == flat
    assert [len(ch) for ch in chunks if type(ch) is Block] == [len(b) for b in blocks]
    assert all(type(ch) is Block or (isinstance(ch, list) and all(type(c) is not Block for c in ch)) for ch in chunks)


def test_a_row_that_sorts_before_the_lane_becomes_a_record_in_its_place():
    from dsrdiag.track import lone
    from dsrdiag.track.pipeline import track_capture
    from dsrdiag.track.spill import RecordSink

    r = track_capture(str(CAPTURES / "syn_unanswered.pcap"), "v", (25,))
    recs = list(r.connections)
    rows = [(c, lone.row_of(c)) for c in recs]
    lonely = [(c, row) for c, row in rows if row is not None]
    if len(lonely) < 2:  # this sample's SYNs are retried: make lone ones from a generated flood
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            p, rng = Pcap(Path(d) / "f.pcap"), random.Random(3)
            flood(p, rng, 50, T0, 100.0)
            p.close()
            recs = list(track_capture(str(Path(d) / "f.pcap"), "v", (25,)).connections)
        lonely = [(c, lone.row_of(c)) for c in recs]
    sink = RecordSink(capture=lonely[0][0].capture, vantage="v")
    late, early = lonely[len(lonely) // 2:], lonely[:len(lonely) // 2]
    sink.add_rows(b"".join(row for _, row in late))
    sink.add_rows(b"".join(row for _, row in reversed(early)))  # after the lane's last: records
    seq = sink.records()
    assert list(seq) == [c for c, _ in lonely]
    assert sum(len(p) for p in seq.parts() if type(p) is lone.Block) == len(late)


def _lone_record():
    import tempfile

    from dsrdiag.track import lone
    from dsrdiag.track.pipeline import track_capture

    with tempfile.TemporaryDirectory() as d:
        p, rng = Pcap(Path(d) / "f.pcap"), random.Random(5)
        flood(p, rng, 3, T0, 100.0)
        p.close()
        c = list(track_capture(str(Path(d) / "f.pcap"), "v", (25,)).connections)[0]
    assert lone.row_of(c) is not None
    return c


def test_a_lone_syns_row_gives_back_the_record_it_was_made_of():
    from dsrdiag.track import lone

    c = _lone_record()
    row = lone.row_of(c)
    back = list(lone.Block(row, c.capture, c.vantage))
    assert back == [c] and lone.row_of(back[0]) == row
    v6 = c._replace(client_ip="2001:db8::7", server_ip="2001:db8::25", ip_version=6)
    assert list(lone.Block(lone.row_of(v6), c.capture, c.vantage)) == [v6]
    nomac = c._replace(orig_l2=((None, None),), packets=_note(c, src_mac=None, dst_mac=None),
                       syn_frames=_note(c, src_mac=None, dst_mac=None))
    assert list(lone.Block(lone.row_of(nomac), c.capture, c.vantage)) == [nomac]


def _note(c, **changes):
    from dsrdiag.track.records import NoteBlock

    n = c.packets[0]._replace(**changes)
    return NoteBlock(None, (n,))


@pytest.mark.parametrize("change", [
    dict(history="Sh"), dict(history="SR"), dict(conn_state="REJ"), dict(orig_pkts=2), dict(resp_pkts=1),
    dict(orig_bytes=10), dict(missed_bytes=5), dict(orig_forwarded=1), dict(resp_ttl=64), dict(synack_ack=7),
    dict(tunneled_from="198.51.100.9"), dict(syn_seq=None), dict(orig_ttl=None), "two_l2", "reply_l2",
    "payload", "synack_flags", "two_syns", "mac_differs", "ttl_differs", "seq_differs", "reply_direction",
    "smtp", "uid", "forwarded_note",
])
def test_a_record_that_is_not_a_lone_syn_has_no_row(change):
    from dsrdiag.track import lone
    from dsrdiag.track.records import NoteBlock, SmtpDialogue

    c = _lone_record()
    n = c.packets[0]
    if isinstance(change, dict):
        bad = c._replace(**change)
    elif change == "two_l2":
        bad = c._replace(orig_l2=c.orig_l2 + (("02:00:00:00:00:09", "02:00:00:00:00:0a"),))
    elif change == "reply_l2":
        bad = c._replace(resp_l2=(("02:00:00:00:00:0a", "02:00:00:00:00:02"),))
    elif change == "payload":
        bad = c._replace(packets=_note(c, payload_len=5), syn_frames=_note(c, payload_len=5))
    elif change == "synack_flags":
        bad = c._replace(packets=_note(c, flags=0x12), syn_frames=_note(c, flags=0x12))
    elif change == "two_syns":
        bad = c._replace(syn_frames=NoteBlock(None, (n, n._replace(frame=n.frame + 1))))
    elif change == "mac_differs":
        bad = c._replace(packets=_note(c, src_mac="02:00:00:00:00:77"), syn_frames=_note(c, src_mac="02:00:00:00:00:77"))
    elif change == "ttl_differs":
        bad = c._replace(orig_ttl=n.ttl - 1)
    elif change == "seq_differs":
        bad = c._replace(syn_seq=(n.seq + 1) & 0xFFFFFFFF)
    elif change == "reply_direction":
        bad = c._replace(packets=_note(c, direction="<"), syn_frames=_note(c, direction="<"))
    elif change == "smtp":
        bad = c._replace(smtp=SmtpDialogue(banner_code=220))
    elif change == "uid":
        bad = c._replace(uid="v:X1")
    else:
        bad = c._replace(forwarded_frames=NoteBlock(None, (n,)))
    assert bad != c
    assert lone.row_of(bad) is None


@pytest.mark.parametrize("skew", [False, True])
def test_facts_from_blocks_are_the_facts_of_their_records_in_any_block_order(tmp_path, skew):
    """Facts.observe_rows (a step per group and pair of a block's digest, or row by row where the
    digest cannot say) notes what observe() notes of the same records, whatever order blocks come in:
    a scanning source seen first in a later block, and (skew) note times the capture clock overruled."""
    from dsrdiag.track import lone
    from dsrdiag.track.facts import Facts
    from dsrdiag.track.pipeline import track_capture

    p, rng = Pcap(tmp_path / "f.pcap"), random.Random(9)
    flood(p, rng, 3000, T0, 3000.0, n_sources=40)
    scan(p, rng, 30, T0 + 0.2)
    p.close()
    rows = [lone.row_of(c) for c in track_capture(str(tmp_path / "f.pcap"), "v", (25,)).connections]
    rows = [r for r in rows if r is not None]
    assert len(rows) > 3000
    if skew:  # every 7th row's packet stamped 1 us after the time the clock gave the connection
        rows = [r[:32] + (lone.ROW.unpack(r)[4] + 1000 * (i % 7 == 0)).to_bytes(8, "little", signed=True) + r[40:]
                for i, r in enumerate(rows)]
    third = len(rows) // 3
    blocks = [lone.Block(b"".join(rows[i:j]), "f.pcap", "v") for i, j in ((0, third), (third, 2 * third), (2 * third, len(rows)))]
    by_rows, by_records = Facts(), Facts()
    for b in (blocks[2], blocks[0], blocks[1]):
        by_rows.observe_rows(b)
        for c in b:
            by_records.observe(c)
    assert _facts(by_rows) == _facts(by_records)
    assert by_rows.targets and by_rows.attempts


def test_a_flood_whose_names_hold_unsafe_characters_is_listed_as_its_records_would_be(tmp_path):
    """The rows' JSON items escape what the records' items escape (a bidi override in the capture's
    name, a zero-width space in the vantage's): the same bytes with the lane on and off."""
    cap = tmp_path / "fl\u202eood.pcap"
    p, rng = Pcap(cap), random.Random(4)
    flood(p, rng, 1500, T0, 2000.0, n_sources=20)
    p.close()
    out = _same_both_ways([f"v\u200bx={cap}", "--format", "json"], tmp_path)
    assert b"\\u202e" in out and b"\\u200b" in out and "\u202e".encode() not in out
