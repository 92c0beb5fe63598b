"""Replacement selection (track/selection.py): the C peer (`_conntrack.Selection`, track/_selection.c)
and the reference (SelectionPy) given the same records give the same records out, in the same order,
with a run's end at the same places, and hold the same ones; every test runs on both."""

from __future__ import annotations

import random
from typing import NamedTuple

import pytest

from dsrdiag.track import selection as sel
from dsrdiag.track.selection import RUN_END, SelectionPy


class Rec(NamedTuple):
    first_ts_ns: object
    uid: object
    n: int = 0


def _c(size):
    native = pytest.importorskip("dsrdiag.track._conntrack", reason="the C tracker was not built (no compiler)")
    return native.Selection(size)


PEERS = {"c": _c, "python": SelectionPy}


@pytest.fixture(params=sorted(PEERS))
def make(request):
    return PEERS[request.param]


def _run(make, size, recs, chunks=(1, 3, 50)):
    """Feed recs in chunks of random sizes; (output with None marks, records held, len)."""
    s = make(size)
    rnd = random.Random(size)
    out, i = [], 0
    while i < len(recs):
        k = rnd.choice(chunks)
        out += s.add_all(recs[i:i + k])
        i += k
    return out, s.held(), len(s)


def _key(r):
    return (r.first_ts_ns, r.uid)


def _runs(out):
    runs, cur = [], []
    for r in out:
        if r is RUN_END:
            runs.append(cur)
            cur = []
        else:
            cur.append(r)
    return runs + [cur]


@pytest.mark.parametrize("seed", range(16))
def test_both_peers_give_the_same_records_in_the_same_order_and_runs(seed):
    pytest.importorskip("dsrdiag.track._conntrack")
    rng = random.Random(seed)
    n = rng.choice([10, 300, 2000])
    span = rng.choice([3, 50, 10**9])  # 3: ties in time everywhere
    recs = [Rec(rng.randrange(span), f"v:C{rng.randrange(50)}", i) for i in range(n)]  # equal (time, uid) keys too
    order = rng.choice(["random", "near", "reversed"])
    if order == "near":
        recs.sort(key=lambda r: r.first_ts_ns + rng.randrange(span // 4 + 1))
    elif order == "reversed":
        recs.sort(key=_key, reverse=True)
    for size in (1, 2, 7, 64, n + 1):
        want = _run(SelectionPy, size, recs)
        got = _run(_c, size, recs)
        assert [id(r) for r in got[0]] == [id(r) for r in want[0]], (size, order)
        assert sorted(map(id, got[1])) == sorted(map(id, want[1])) and got[2] == want[2] == len(want[1])


def test_each_run_is_sorted_and_every_record_comes_out_once(make):
    rng = random.Random(3)
    recs = [Rec(rng.randrange(1000), f"v:C{i}", i) for i in range(3000)]
    out, held, n = _run(make, 40, recs)
    for run in _runs(out):
        assert run == sorted(run, key=_key)
    assert sorted(map(id, [r for r in out if r is not RUN_END] + held)) == sorted(map(id, recs))
    assert n == len(held) == 40


def test_records_of_equal_key_leave_in_the_order_they_came(make):
    recs = [Rec(5, "v:C1", i) for i in range(6)] + [Rec(9, "v:C9", 9)]
    out, held, _ = _run(make, 2, recs, chunks=(1,))
    assert [r.n for r in out] == [0, 1, 2, 3, 4] and [r.n for r in held] in ([5, 9], [9, 5])


def test_records_that_finish_in_the_order_they_started_are_one_run(make):
    recs = [Rec(i * 1000, f"v:C{i}") for i in range(5000)]
    out, held, _ = _run(make, 100, recs)
    assert RUN_END not in out and out == recs[:4900] and sorted(held, key=_key) == recs[4900:]


def test_a_record_sorting_before_the_last_written_by_uid_alone_waits_for_the_next_run(make):
    recs = [Rec(5, "v:C2"), Rec(7, "v:C7"), Rec(5, "v:C1"), Rec(8, "v:C8")]
    out, held, _ = _run(make, 1, recs, chunks=(1,))
    assert out == [recs[0], recs[1], RUN_END, recs[2]] and held == [recs[3]]


def test_a_full_selection_keeps_its_size_and_a_run_ends_only_when_the_current_one_has_nothing_left(make):
    s = make(3)
    assert s.add_all([Rec(10, "a"), Rec(20, "b"), Rec(30, "c")]) == [] and len(s) == 3
    assert [r.uid for r in s.add_all([Rec(40, "d")])] == ["a"]
    out = s.add_all([Rec(1, "x"), Rec(2, "y")])  # both sort before "a", written: they wait
    assert [r.uid for r in out] == ["b", "c"] and len(s) == 3
    out = s.add_all([Rec(3, "z")])  # the current run's last record leaves: the run ends
    assert [None if r is None else r.uid for r in out] == ["d", None] and len(s) == 3
    assert [r.uid for r in s.add_all([Rec(50, "w")])] == ["x"]  # a new run: nothing written to compare with


def test_times_beyond_64_bits_and_below_zero_compare_as_python_compares_them(make):
    big = 1 << 70
    recs = [Rec(big, "v:C1"), Rec(-big, "v:C2"), Rec(5, "v:C3"), Rec(big + 1, "v:C4"), Rec(-1, "v:C5"), Rec(big, "v:C0")]
    out, held, _ = _run(make, 2, recs, chunks=(1,))
    want, _, _ = _run(SelectionPy, 2, recs, chunks=(1,))
    assert out == want


def test_keys_that_do_not_compare_raise_the_comparisons_error(make):
    s = make(1)
    s.add_all([Rec(5, "v:C1")])
    with pytest.raises(TypeError):
        s.add_all([Rec(5, 7)])


def test_a_selection_of_no_records_is_refused(make):
    with pytest.raises(ValueError):
        make(0)


def test_the_reference_is_chosen_when_the_python_tracker_is_asked_for(monkeypatch):
    monkeypatch.setenv("DSRDIAG_TRACKER", "python")
    assert type(sel.selection(4)) is SelectionPy
    monkeypatch.setenv("DSRDIAG_TRACKER", "c")
    native = pytest.importorskip("dsrdiag.track._conntrack")
    assert type(sel.selection(4)) is native.Selection


def test_records_held_are_freed_with_the_selection(make):
    import gc
    import weakref

    class Box:
        def __init__(self, t, u):
            self.first_ts_ns, self.uid = t, u

    boxes = [Box(i, f"v:C{i}") for i in range(5)]
    refs = [weakref.ref(b) for b in boxes]
    s = make(3)
    s.add_all(boxes)
    del boxes, s
    gc.collect()
    assert all(r() is None for r in refs)


def test_selection_under_the_sanitizer_passes_this_module_cleanly(tmp_path):
    """_conntrack rebuilt with -fsanitize=address,undefined (tests/_asan.py), every allocation
    through ASan's malloc: this module's tests all pass on that build, with no report."""
    pytest.importorskip("dsrdiag.track._conntrack")
    from pathlib import Path

    from tests import _asan

    sanitized = _asan.build(tmp_path, {"dsrdiag.capture._fastpcap": ["dsrdiag/capture/_fastpcap.c"],
                                       "dsrdiag.track._conntrack": _asan.CONNTRACK})
    _asan.run_module_tests(sanitized, str(Path(__file__)), tmp_path / "t", timeout=900, malloc=True)
