"""The per-capture record store (track/spill.py): written once, read as one sorted stream.

Records given in the order they finish come back in (first packet time, uid) order whether or not
they were spilled; records that finish in the order they started (what Zeek's timers give a
flood) make one run, written once; records in the worst order (each one sorting before all
earlier ones) merge in tiers, each record rewritten a bounded number of times, never once per run.
"""

from __future__ import annotations

import gc
import os
import pickle
import random
import tempfile
from typing import NamedTuple

import pytest

from conftest import CAPTURES
from dsrdiag.track import spill


class Rec(NamedTuple):
    first_ts_ns: int
    uid: str
    pad: bytes = b""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(spill, "_DIR", None)
    monkeypatch.delenv("DSRDIAG_SPILL_AT", raising=False)
    return tmp_path


def _store(records, spill_at):
    sink = spill.RecordSink(spill_at=spill_at)
    for r in records:
        sink.add(r)
    return sink.records()


def _files(folder):
    return list(folder.rglob("*.records"))


def test_records_that_finish_in_the_order_they_started_are_one_run_written_once(folder):
    recs = [Rec(i * 1000, f"v:C{i}", b"x" * 100) for i in range(5000)]
    seq = _store(recs, 100)
    assert seq.runs == 1
    assert list(seq) == recs and len(seq) == 5000
    (path,) = _files(folder)
    one_copy = sum(len(pickle.dumps(recs[i:i + spill.BATCH], pickle.HIGHEST_PROTOCOL))
                   for i in range(0, 4900, spill.BATCH))
    assert os.path.getsize(path) <= one_copy * 1.05  # the 4900 written once, not rewritten by merges


def test_records_a_bounded_time_out_of_order_come_back_sorted_from_one_run(folder):
    rng = random.Random(5)
    # each record finishes up to 50 places after it started: Zeek's timers, a connection's length
    recs = sorted((Rec(i * 1000, f"v:C{i}") for i in range(3000)), key=lambda r: r.first_ts_ns + rng.randrange(50_000))
    seq = _store(recs, 200)
    assert seq.runs == 1
    assert list(seq) == sorted(recs)


def test_records_in_the_worst_order_merge_in_tiers_each_rewritten_a_bounded_number_of_times(folder):
    n, spill_at = 6000, 20
    recs = [Rec(n - i, f"v:C{i}", b"y" * 50) for i in range(n)]  # each sorts before every earlier one
    seq = _store(recs, spill_at)
    assert list(seq) == sorted(recs)
    assert seq.runs < 2 * spill.FAN_IN  # tiers merged: never one open reader per run
    one_copy = len(pickle.dumps(recs, pickle.HIGHEST_PROTOCOL))
    (path,) = _files(folder)
    # ~300 runs: a merge of all runs at each MAX would rewrite ~150 copies; tiers rewrite log16(300) ~ 2
    assert os.path.getsize(path) <= one_copy * 4


def test_ties_in_time_come_back_in_uid_order_spilled_or_not(folder):
    recs = [Rec(7, f"v:C{i}") for i in (5, 3, 9, 1, 8, 2, 7, 4, 6, 10, 11, 12)]
    assert list(_store(recs, 3)) == list(_store(recs, 1000)) == sorted(recs, key=lambda r: (r.first_ts_ns, r.uid))


def test_a_store_is_removed_with_its_records_and_handed_over_by_pickling(folder):
    seq = _store([Rec(i, f"v:C{i}") for i in range(100)], 10)
    assert _files(folder)
    there = pickle.loads(pickle.dumps(seq))  # another process's copy: it owns the file now
    del seq
    gc.collect()
    assert _files(folder), "the receiver's store was removed by the sender"
    assert [r.first_ts_ns for r in there] == list(range(100))
    del there
    gc.collect()
    assert not _files(folder)


def test_an_abandoned_sink_removes_its_store(folder):
    sink = spill.RecordSink(spill_at=5)
    for i in range(50):
        sink.add(Rec(i, f"v:C{i}"))
    assert _files(folder)
    del sink
    gc.collect()
    assert not _files(folder)


def test_a_real_capture_spilled_gives_the_records_it_gives_in_memory(folder, monkeypatch):
    from dsrdiag.track.pipeline import track_capture

    whole = list(track_capture(str(CAPTURES / "vip_missing.pcap"), "lan", (25,)).connections)
    monkeypatch.setenv("DSRDIAG_SPILL_AT", "2")
    r = track_capture(str(CAPTURES / "vip_missing.pcap"), "lan", (25,))
    assert _files(folder)
    assert list(r.connections) == whole and len(whole) > 2
