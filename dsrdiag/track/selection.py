"""Replacement selection (Knuth, TAOCP 5.4.1): which finished records leave memory, in what order,
and where a sorted run of the record store (track/spill.py) ends.

Why its own module: the record store's sink (spill.RecordSink) does I/O and the tiered merge; the
selection is pure (records in, records out) and runs once for every record a capture has, so it has
a C peer (track/_selection.c, `_conntrack.Selection`) behind this one interface, tested against this
reference on the same inputs (tests/test_selection.py); DSRDIAG_TRACKER=python runs this one.

The interface: `Selection(size)`; `add_all(records)` returns the records that leave memory, in the
order they are written, with `RUN_END` (None) where a run ends; `held()` every record still in
memory (in no particular order); `len()` how many that is. A record's key is (first_ts_ns, uid).

The rule: up to `size` records are held. Once full, each new record pushes the smallest held one
out to the current run, and a record that sorts before the last one written waits for the next run;
when nothing is held for the current run, the run ends and the waiting records are held for the
next. Records finish roughly in the order they started (Zeek's timers end each one a bounded time
after its last packet), so a capture of any size is one run; only a connection that outlives `size`
later ones starts another. Records of equal key leave in the order they came.
"""

from __future__ import annotations

import os
from heapq import heapify, heappop, heappush, heappushpop

RUN_END = None
"""In add_all()'s output: the run written so far ends here."""


class SelectionPy:
    """The reference. The heap holds first packet times (ints: an int compares in a step, a (time,
    uid) tuple in three), `_held` maps each to its record; records of one time (rare) wait in
    `_ties` and leave in uid order (of equal uids, the first come)."""

    __slots__ = ("size", "heap", "_held", "_ties", "later", "_full", "_last")

    def __init__(self, size: int):
        if size < 1:
            raise ValueError("a selection holds at least one record")
        self.size = size
        self.heap: list[int] = []  # first packet times of the records held for the current run
        self._held: dict = {}  # first packet time -> record (of the current run)
        self._ties: dict = {}  # first packet time -> its records, when more than one is held
        self.later: list = []  # records for the next run (they sort before the last one written)
        self._full = False  # size records held (in the heap and in `later`): it stays full, one in, one out
        self._last = None  # the record last written to the current run

    def __len__(self) -> int:
        return len(self.heap) + len(self.later)

    def add_all(self, records) -> list:
        out: list = []
        put = out.append
        heap, held = self.heap, self._held
        for rec in records:
            ts = rec.first_ts_ns
            if not self._full:
                self._hold(rec)
                heappush(heap, ts)
                self._full = len(heap) >= self.size
                continue
            last = self._last
            if last is not None and (ts < last.first_ts_ns or ts == last.first_ts_ns and rec.uid < last.uid):
                self.later.append(rec)  # after the current run: it sorts before what it holds
                gone = heappop(heap)
            else:
                if ts in held:  # self._hold(rec), inline: once per record
                    self._tie(ts, rec)
                else:
                    held[ts] = rec
                gone = heappushpop(heap, ts)
            ties = self._ties
            rec = held.pop(gone) if not ties or gone not in ties else self._untie(gone)
            self._last = rec
            put(rec)
            if not heap:  # everything in memory waits for the next run
                put(RUN_END)
                self._last = None
                later, self.later = self.later, []
                for r in later:
                    self._hold(r)
                heap[:] = [r.first_ts_ns for r in later]
                heapify(heap)
        return out

    def held(self) -> list:
        """Every record not written: held (ties once each) and waiting for the next run."""
        ties = self._ties
        out = [r for ts, r in self._held.items() if ts not in ties]
        for same in ties.values():
            out += same
        return out + self.later

    def _hold(self, rec) -> None:
        ts = rec.first_ts_ns
        if ts in self._held:
            self._tie(ts, rec)
        else:
            self._held[ts] = rec

    def _tie(self, ts: int, rec) -> None:
        """A second record of a held time: the time's records wait in a list (`_held` keeps the
        first one, a mark that the time is held, until the list is down to one)."""
        same = self._ties.get(ts)
        if same is None:
            self._ties[ts] = [self._held[ts], rec]
        else:
            same.append(rec)

    def _untie(self, ts: int):
        """The record of time `ts` that sorts first by uid (the heap gives `ts` once per record)."""
        same = self._ties[ts]
        i = min(range(len(same)), key=lambda j: same[j].uid)
        rec = same.pop(i)
        if len(same) == 1:
            del self._ties[ts]
            self._held[ts] = same[0]
        return rec


def selection(size: int):
    """A Selection of `size`: the C peer when built (unless DSRDIAG_TRACKER=python), else the reference."""
    if os.environ.get("DSRDIAG_TRACKER", "c") != "python":
        try:
            from dsrdiag.track._conntrack import Selection
        except ImportError:  # not built
            pass
        else:
            return Selection(size)
    return SelectionPy(size)
