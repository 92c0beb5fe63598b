"""Finished connection records: one store per capture, written once, read as one sorted stream.

Why: a day of mail (or a SYN flood) has millions of connections; their records are only read
again by passes over all of them (inference, rules, the report's connection list, a conn.log), a
batch at a time. Each capture's records go to one store: up to SPILL_AT in memory, the rest to one
file of sorted runs made by replacement selection (RecordSink). The same store is the spill, what a
worker process hands the parent (it names the file: nothing is copied), and what the JSON
connection list and a conn.log are written from: records are written once. Iteration merges the
runs with the in-memory part by (first packet time, uid): the same order whether or not anything
was spilled. Batches of records are packed bytes (track/packed.py; docs/architecture.md, "The
record store", says why).

Files live in one temporary folder per run: the process that makes it (the parent: a Crew makes it
before its workers fork, so that they share it) removes it with everything in it at exit, however
the run ends (an error, Ctrl-C, SIGTERM/SIGHUP/SIGQUIT: the CLI turns those into an exception that
unwinds, then exits through atexit). Within a run, a store is removed as soon as its records are
garbage; a worker removes the stores it did not hand over before it ends. Only SIGKILL (or a crash)
can leave the folder behind: nothing can run then.

The folder is made under $TMPDIR when it is set (and only there: a TMPDIR that is missing or not a
folder is an error, not a silent fallback to /tmp or the working directory), else where Python's
tempfile finds one. None usable: TempDirError, one line (docs/exit-codes.md), raised only when a
file is really needed (a capture with more than SPILL_AT connections).
"""

from __future__ import annotations

import atexit
from array import array
from bisect import bisect_left, bisect_right
import heapq
from heapq import heapify, heappop, heapreplace
import os
import pickle
import shutil
import tempfile
import weakref

from dsrdiag.core.errors import DsrdiagError
from dsrdiag.track import lone, packed
from dsrdiag.track.aheadwrite import AheadWriter
from dsrdiag.track.packed import pack_batch, unpack_batch
from dsrdiag.track.records import Connection, flatten_all, unflatten_all
from dsrdiag.track.selection import RUN_END, selection

LANE_MEMORY = 1 << 22
"""Bytes of lone-SYN rows (track/lone.py, 104 bytes each: ~40k rows) held in memory per capture
before they go to the lane's file."""
LANE_READ = 16384
"""Rows per block read back from a lane file (1.7 MB): a block costs a step per group and per client
address in it (its digest), so fewer, larger blocks cost less per row."""

SPILL_AT = 5000
"""Records held in memory per capture (replacement selection's, track/selection.py: about 1-3 KB
each) before sorted runs go to the capture's store file."""

BATCH = 256
"""Records per batch in a run (track/packed.py): what one reader of that run holds at a time."""
FAN_IN = 16
"""Runs merged at once: beyond, FAN_IN runs of the same size class are merged into one (a tiered
external merge: each record is rewritten log_FAN_IN(runs) times at most, never once per run), so
that iterating holds at most SPILL_AT + FAN_IN * BATCH records whatever the file's size."""

_DIR: str | None = None
_DIR_OWNER: int | None = None
"""The pid of the process that made _DIR (and removes it at exit); forked workers use it too."""


class TempDirError(DsrdiagError):
    """No usable folder for temporary files (a read-only container, a TMPDIR that does not exist)."""


def _base() -> str:
    env = os.environ.get("TMPDIR")
    if env:
        if not os.path.isdir(env):
            raise TempDirError(f"no usable temporary folder: TMPDIR={env} is not a folder "
                               "(set TMPDIR to a writable folder)")
        return env
    try:
        return tempfile.gettempdir()
    except (FileNotFoundError, OSError):
        raise TempDirError("no usable temporary folder (none of TMPDIR, /tmp, /var/tmp is writable): "
                           "set TMPDIR to a writable folder") from None


def usable() -> bool:
    """Could temporary files be made here (without making any)?"""
    try:
        base = _base()
    except TempDirError:
        return False
    return os.access(base, os.W_OK | os.X_OK)


def _spill_dir() -> str:
    global _DIR, _DIR_OWNER
    if _DIR is None or not os.path.isdir(_DIR):
        base = _base()
        try:
            _DIR = tempfile.mkdtemp(prefix="dsrdiag-spill-", dir=base)
        except OSError as e:
            raise TempDirError(f"no usable temporary folder: {base}: {e.strerror or e} "
                               "(set TMPDIR to a writable folder)") from None
        _DIR_OWNER = os.getpid()
        atexit.register(_remove_dir, _DIR, _DIR_OWNER)
    return _DIR


def prepare() -> None:
    """Make the run's folder now, if it can be made (a Crew, before its workers fork: they share
    it, and this process removes it at exit with whatever a stopped worker left in it)."""
    try:
        _spill_dir()
    except TempDirError:
        pass  # raised again where a file is really needed


def _remove_dir(path: str, owner: int) -> None:
    if os.getpid() == owner:  # not in a forked worker: the parent removes it
        shutil.rmtree(path, ignore_errors=True)


def cleanup() -> None:
    """Remove this run's folder and every file in it now (the process that made it; at exit)."""
    global _DIR
    if _DIR is not None and _DIR_OWNER == os.getpid():
        _remove_dir(_DIR, _DIR_OWNER)
        _DIR = None


def _order(c):
    return (c.first_ts_ns, c.uid)


def temp_file(suffix: str) -> tuple[int, str]:
    """(fd, path) of a new file in this process's spill folder (also used for a report's
    pre-written JSON connection lists: jobs/analyze.py)."""
    return tempfile.mkstemp(suffix=suffix, dir=_spill_dir())


def remove_files(paths: list[str]) -> None:
    """Remove files made with temp_file(), and their folder once it is empty."""
    _remove(paths, [True])


def _remove(paths: list[str], owned: list[bool]) -> None:
    if owned[0]:
        for p in paths:
            try:
                os.unlink(p)
            except OSError:
                pass
        for d in {os.path.dirname(p) for p in paths}:
            if d != _DIR:  # the run's folder goes at exit (a forked worker may still need it)
                try:
                    os.rmdir(d)  # only when empty: another capture's chunks may still be there
                except OSError:
                    pass


class RecordSink:
    """Where a tracker puts finished records; `records()` ends it and returns a RecordSeq.

    Which records leave memory, in what order and in which run, is replacement selection's
    (track/selection.py, with its C peer): a capture of any size is one run, written once; only a
    connection that outlives `spill_at` later ones starts another. Here: the writing of what leaves,
    BATCH records at a time, to the capture's one store file, and the tiered merge of the runs."""

    def __init__(self, spill_at: int | None = None, observe_all=None, observe_rows=None, capture: str = "", vantage: str = ""):
        """`observe_all(records)`, if given, sees each batch of records as it is added, before they
        are (track/facts.py Facts.observe_all); `observe_rows(block)` each block of lone-SYN rows
        (track/lone.py) added to the lane."""
        # DSRDIAG_SPILL_AT: a tuning knob (and how the tests make small captures spill)
        self.observe_all = observe_all
        self.spill_at = spill_at or int(os.environ.get("DSRDIAG_SPILL_AT", "0") or 0) or SPILL_AT
        self.selection = selection(self.spill_at)
        self.count = 0
        self.files: list[str] = []  # the store: [] until a record is written, then its one path
        self.runs: list[tuple[int, int, int]] = []  # (size class, start offset, end offset)
        self._file = None
        self._batch: list = []
        self._run_start = 0
        self._in_run = False  # a record was written to the current run
        self._owned = [True]
        # a sink abandoned halfway (an interrupt, a stopped worker) removes its store file too;
        # records() hands it to the RecordSeq
        self._handle: list = [None]  # the open store file, closed by the finalizer too
        self._finalizer = weakref.finalize(self, _close_remove, self.files, self._owned, self._handle)
        self.lane = Lane(capture, vantage)
        self.observe_rows = observe_rows

    def add_rows(self, rows: bytes) -> None:
        """Lone-SYN rows (track/lone.py), in any order: sorted, they join the lane, which is one
        sorted run; a row that sorts before what the lane holds already (a connection that ended
        out of turn: Zeek's timers end lone SYNs in the order they came, so this is rare) becomes a
        record like any other. Either way iteration gives the same records in the same order."""
        if not rows:
            return
        lane = self.lane
        block = lone.Block(lone.sort_rows(rows), lane.capture, lane.vantage)
        if lane.last is not None and block.key(0) < lane.last:
            late = block.bisect(lane.last)
            head, block = block.cut(late)
            for rec in head:
                self.add(rec)
            if not block:
                return
        n = len(block)
        self.count += n
        if self.observe_rows is not None:
            self.observe_rows(block)
        lane.append(block.data, block.key(n - 1))

    def add_all(self, records) -> None:
        """Records, in the order they finished: observed as a batch (one call into C), then selected;
        what leaves memory is written."""
        if self.observe_all is not None:
            self.observe_all(records)
        self.count += len(records)
        out = self.selection.add_all(records)
        if out:
            self._write(out)

    def add(self, rec) -> None:
        self.add_all((rec,))

    def _write(self, out: list) -> None:
        """Records leaving memory, in order, RUN_END where a run ends: BATCH at a time to the file."""
        f = self._file
        if f is None:
            f = self._open()
        batch = self._batch
        start = 0
        n = len(out)
        while start < n:
            try:
                end = out.index(RUN_END, start)
            except ValueError:
                end = n
            i = start
            while i < end:
                take = min(BATCH - len(batch), end - i)
                batch += out[i:i + take]
                i += take
                if len(batch) >= BATCH:
                    _dump(batch, f)
                    batch.clear()
            if end > start:
                self._in_run = True
            if end < n:
                self._end_run()
                batch = self._batch
            start = end + 1

    def _open(self):
        fd, path = temp_file(".records")
        self.files.append(path)  # owned (removed if abandoned) from the start
        self._file = self._handle[0] = AheadWriter(fd)  # written by a thread (track/aheadwrite.py says why)
        return self._file

    def _end_run(self) -> None:
        f = self._file
        if f is None or not self._in_run:
            return
        if self._batch:
            _dump(self._batch, f)
            self._batch = []
        end = f.pos
        self.runs.append((0, self._run_start, end))
        self._run_start, self._in_run = end, False
        # tiered merge: FAN_IN runs of one size class become one run of the next class
        while len(self.runs) >= FAN_IN and len({k for k, _, _ in self.runs[-FAN_IN:]}) == 1:
            level = self.runs[-1][0]
            tail = self.runs[-FAN_IN:]
            f.flush()  # the runs are read back from the file
            start = f.pos
            _write_batches(f, _merge([_read_batches(self.files[0], a, b) for _, a, b in tail]))
            end = f.pos
            self.runs[-FAN_IN:] = [(level + 1, start, end)]
            self._run_start = end

    def records(self) -> "RecordSeq":
        self._end_run()
        memory = tuple(sorted(self.selection.held(), key=_order))
        if self._file is not None:
            self._file.close()
            self._file = self._handle[0] = None
        seq = RecordSeq(memory, self.files[0] if self.files else None, tuple((a, b) for _, a, b in self.runs), self.count,
                        self.lane.close())
        self._owned[0] = False  # the store file is the RecordSeq's now
        self._finalizer.detach()
        return seq


def _close_remove(paths: list[str], owned: list[bool], handle: list) -> None:
    if handle[0] is not None:
        handle[0].discard()  # abandoned: what still waits is not written
    _remove(paths, owned)


class Lane:
    """A capture's lone-SYN rows (track/lone.py): one sorted run, in memory up to LANE_MEMORY bytes,
    then appended to a file of its own, raw (rows are fixed-size bytes: nothing to pickle)."""

    def __init__(self, capture: str, vantage: str):
        self.capture, self.vantage = capture, vantage
        self.last = None  # the key of the last row
        self.tail = bytearray()
        self.path: str | None = None
        self.on_file = 0  # bytes
        self.rows = 0
        self._owned = [True]
        self._finalizer = None

    def append(self, data, last_key) -> None:
        """`data`: sorted rows (bytes-like), after every row held. Beyond LANE_MEMORY they go to the
        file as they are (a flood's last sweep hands half a million rows at once: not copied again)."""
        self.rows += len(data) // lone.SIZE
        self.last = last_key
        if len(self.tail) + len(data) < LANE_MEMORY:
            self.tail += data
            return
        if self.path is None:
            fd, self.path = temp_file(".lane")
            os.close(fd)
            self._finalizer = weakref.finalize(self, _remove, [self.path], self._owned)
        with open(self.path, "ab") as f:
            f.write(self.tail)
            f.write(data)
        self.on_file += len(self.tail) + len(data)
        self.tail = bytearray()

    def close(self) -> "LaneRows | None":
        if not self.rows:
            return None
        self._owned[0] = False  # the file is the LaneRows' now
        if self._finalizer is not None:
            self._finalizer.detach()
        return LaneRows(self.capture, self.vantage, bytes(self.tail), self.path, self.on_file, self.rows)


class LaneRows:
    """A closed lane, read only: its rows as blocks (lone.Block) in record order."""

    def __init__(self, capture, vantage, tail: bytes, path: str | None, on_file: int, rows: int):
        self.capture, self.vantage, self.tail, self.path, self.on_file, self.rows = capture, vantage, tail, path, on_file, rows
        self._owned = [True]
        self._finalizer = weakref.finalize(self, _remove, [path], self._owned) if path else None

    def blocks(self):
        if self.path is not None:
            step = LANE_READ * lone.SIZE
            with open(self.path, "rb", buffering=0) as f:
                left = self.on_file
                while left > 0:
                    data = f.read(min(step, left))
                    if not data:
                        break
                    left -= len(data)
                    yield lone.Block(data, self.capture, self.vantage)
        if self.tail:
            yield lone.Block(self.tail, self.capture, self.vantage)

    def connections(self):
        for b in self.blocks():
            yield from b

    def discard(self) -> None:
        if self._finalizer is not None:
            self._finalizer()

    def __reduce__(self):
        self._owned[0] = False  # sent to another process: that one removes the file
        return (LaneRows, (self.capture, self.vantage, self.tail, self.path, self.on_file, self.rows))


class RecordSeq:
    """The records, read only: iterate them (as often as needed, in first-packet order), take len().

    The in-memory part and the sorted runs of the capture's store file, merged as they are read
    (_merge: by batch, a heap step where runs interleave); `path` and `runs` describe the store for another process (a
    worker hands its records over by naming them: nothing is copied)."""

    def __init__(self, memory: tuple = (), path: str | None = None, runs: tuple = (), count: int | None = None,
                 lane: LaneRows | None = None):
        self._lane = lane
        self._memory = memory
        self._path = path
        self._runs = runs if path else ()
        self._count = len(memory) if count is None else count
        self._owned = [True]
        self._finalizer = weakref.finalize(self, _remove, [path], self._owned) if path else None

    def __len__(self) -> int:
        return self._count

    def discard(self) -> None:
        """Remove the store file now, if it is still this object's (not handed to another
        process): a worker that is done with its records ends without freeing them one by one."""
        if self._finalizer is not None:
            self._finalizer()
        if self._lane is not None:
            self._lane.discard()

    def __bool__(self) -> bool:
        return self._count > 0

    def _records(self):
        """The records that are not lone-SYN rows, in order."""
        if not self._runs:
            return iter(self._memory)
        return (c for chunk in self._record_chunks() for c in chunk)

    def _record_chunks(self):
        """The same records as _records(), as consecutive sequences (a store batch, or the part of
        one that comes before another run's next record)."""
        if not self._runs:
            return iter((self._memory,) if self._memory else ())
        streams = [_read_batches(self._path, a, b) for a, b in self._runs]
        if len(streams) == 1 and not self._memory:
            return (b for b in streams[0] if len(b))
        return _merge_chunks([(self._memory,), *streams])

    def __iter__(self):
        if self._lane is None:
            return self._records()
        return heapq.merge(self._records(), self._lane.connections(), key=_order)

    def parts(self):
        """The same records in the same order as iterating, but runs of consecutive lone SYNs come as
        lone.Block objects (their rows): passes that see every connection take a block at once
        (track/lone.py). Every other item is a Connection."""
        records = self._records()
        if self._lane is None:
            yield from records
            return
        nxt = next(records, None)
        for block in self._lane.blocks():
            while block:
                if nxt is None:
                    yield block
                    break
                i = block.bisect((nxt.first_ts_ns, nxt.uid))
                if i == len(block):
                    yield block
                    break
                if i:
                    head, block = block.cut(i)
                    yield head
                yield nxt
                nxt = next(records, None)
        if nxt is not None:
            yield nxt
            yield from records

    def chunks(self):
        """parts(), a sequence at a time: consecutive Connection records as one sequence (a list or
        tuple of them: a store batch or a piece of one), a run of lone SYNs as its lone.Block.

        Why: a pass that hands records on a batch at a time (the JSON list's C writer) pays no
        Python step per record to iterate them."""
        if self._lane is None:
            yield from self._record_chunks()
            return
        run: list = []
        for c in self.parts():
            if type(c) is lone.Block:
                if run:
                    yield run
                    run = []
                yield c
                continue
            run.append(c)
            if len(run) >= BATCH:
                yield run
                run = []
        if run:
            yield run

    @property
    def runs(self) -> int:
        """Sorted runs in the store file (1 when records finished in the order they started)."""
        return len(self._runs)

    def __eq__(self, other):
        if isinstance(other, (RecordSeq, tuple, list)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None

    def __reduce__(self):
        # sent to another process: that process now owns (and will remove) the store file
        self._owned[0] = False
        return (_rebuild, (self._memory, self._path, self._runs, self._count, self._lane))


def _rebuild(memory, path, runs, count, lane=None) -> RecordSeq:
    return RecordSeq(memory, path, runs, count, lane)


def _dump(batch: list, f) -> None:
    """One batch (track/packed.py's frame): Connection records packed (pack_batch), or, where a
    value is not of its plain type (a PROXY header in a dialogue, notes that could not be packed),
    pickled flattened (records.flatten says why); anything else (the tests' records) pickled as it is."""
    data = pack_batch(batch)
    if data is None:
        flat = all(type(r) is Connection for r in batch)
        body = pickle.dumps(flatten_all(batch) if flat else batch, pickle.HIGHEST_PROTOCOL)
        f.write(packed.HEADER.pack(packed.MAGIC, packed.VERSION, packed.FORM_FLAT if flat else packed.FORM_OBJECTS, 0,
                                   len(batch), len(body)))
        data = body
    f.write(data)


def _write_batches(f, records) -> None:
    # batches of BATCH records: each reads alone (nothing is shared between them)
    batch = []
    for r in records:
        batch.append(r)
        if len(batch) == BATCH:
            _dump(batch, f)
            batch = []
    if batch:
        _dump(batch, f)


class StoreError(DsrdiagError):
    """A store file that does not read back as it was written (changed or cut while the run used it)."""


def _read_batches(path: str, start: int, end: int):
    """The batches (lists of records) of one sorted run, in order."""
    size = packed.HEADER.size
    buf = memoryview(bytearray(size))  # one batch at a time, read into the same buffer (grown to the largest)
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        pos = start
        while pos < end:
            try:
                if f.readinto(buf[:size]) != size:
                    raise packed.BatchError("record store: a batch is cut short (in its header)")
                form, _, n = packed.header(buf[:size])
                if pos + size + n > end:  # before the buffer is sized from it: a damaged length is no allocation
                    raise packed.BatchError("record store: a batch is cut short")
                if size + n > len(buf):
                    head = bytes(buf[:size])
                    buf = memoryview(bytearray(size + n))
                    buf[:size] = head
                frame = buf[:size + n]
                if f.readinto(frame[size:]) != n:
                    raise packed.BatchError("record store: a batch is cut short")
                pos += size + n
                if form == packed.FORM_PACKED:
                    batch = unpack_batch(frame)
                else:
                    try:
                        batch = pickle.loads(frame[size:])
                        if form == packed.FORM_FLAT:
                            batch = unflatten_all(batch)
                    except Exception:  # noqa: BLE001 - a damaged pickle raises any of a dozen types
                        raise packed.BatchError("record store: a damaged pickled batch") from None
            except ValueError as e:  # BatchError, or the C unpacker's ValueError
                raise StoreError(f"{path}: {e}") from None
            del frame
            yield batch


def _merge(streams):
    """The records of sorted streams of batches (sequences of records), merged: the same records in
    the same order as heapq.merge(*records, key=_order) (on equal keys, the earlier stream's first)."""
    for chunk in _merge_chunks(streams):
        yield from chunk


def _merge_chunks(streams):
    """_merge's records as consecutive sequences: whole batches, or slices of one (what comes before
    another stream's next record).

    Why by batch: a capture's runs overlap only where records ended out of turn (connections of
    very different lengths; the part still in memory at the end), so most batches sort whole
    before every other stream's next record and are handed on for one compare, not a key and a
    heap step per record (~1 us a record, on each of the passes)."""
    heap = []
    for i, stream in enumerate(streams):
        it = iter(stream)
        for batch in it:
            if len(batch):
                heap.append([_order(batch[0]), i, batch, 0, it])
                break
    heapify(heap)
    while len(heap) > 1:
        top = heap[0]
        _, i, batch, pos, it = top
        other = heap[1] if len(heap) == 2 or heap[1] < heap[2] else heap[2]  # the second smallest
        (bts, buid), j = other[0], other[1]
        last = batch[-1]
        t = last.first_ts_ns
        n = len(batch)
        if t < bts or t == bts and (last.uid < buid or last.uid == buid and i < j):
            end = n  # the whole rest of the batch comes before the other streams' next record
        else:  # gallop: probe 1, 2, 4... ahead of pos (what comes before `other`), then bisect
            lo, step = pos + 1, 1  # batch[pos] comes first: it is the smallest head
            while True:
                hi = pos + step
                if hi >= n - 1:
                    hi = n - 1  # batch[-1] does not come first (above)
                    break
                r = batch[hi]
                t = r.first_ts_ns
                if not (t < bts or t == bts and (r.uid < buid or r.uid == buid and i < j)):
                    break
                lo, step = hi + 1, step * 2
            end = (bisect_right if i < j else bisect_left)(batch, (bts, buid), lo, hi, key=_order) if lo < hi else lo
        yield batch if pos == 0 and end == n else batch[pos:end]
        if end < n:
            top[0], top[3] = _order(batch[end]), end
            heapreplace(heap, top)
            continue
        for batch in it:
            if len(batch):
                top[0], top[2], top[3] = _order(batch[0]), batch, 0
                heapreplace(heap, top)
                break
        else:
            heappop(heap)
    if heap:
        _, _, batch, pos, it = heap[0]
        yield batch[pos:] if pos else batch
        yield from (b for b in it if len(b))


BAG_CHUNK = 1 << 15
"""Values per chunk of an IntBag (256 KiB): what one bag holds in memory, and reads at a time."""
BAG_GRID = 1024
"""Cells a selection pass splits the remaining range of values into: each pass reads the bag once
and divides that range by this much, so 64-bit values need at most 7 passes."""


class IntBag:
    """A multiset of 64-bit integers with bounded memory: add values, take len(), select the k-th.

    Why: a statistic over every connection (the back-end table's median SYN->banner time,
    jobs/analyze.py) must be exact, and an exact median needs every value; held in a list, they
    grew memory by 32 bytes a connection (64 MiB on 2M sessions). Here at most BAG_CHUNK values are
    in memory; each full chunk is sorted and appended to a file in the run's folder (8 bytes a
    value, removed with the bag or at exit like a record store). select(k) finds the exact k-th
    smallest by narrowing a range of values: each pass reads the chunks once and counts, by
    bisection in each sorted chunk, the values below BAG_GRID evenly spaced pivots; the cell that
    holds rank k is the next range (a pass costs chunks x BAG_GRID bisections, not a step per value).
    Pickling hands the file to the process that unpickles the bag (a worker's CapturePart)."""

    def __init__(self, tail=(), path: str | None = None, chunks: int = 0, low=None, high=None):
        self._tail = array("q", tail)
        self._path, self._chunks = path, chunks
        self._low, self._high = low, high  # the smallest and largest value on file (None: none)
        self._owned = [True]
        self._finalizer = weakref.finalize(self, _remove, [path], self._owned) if path else None

    def __len__(self) -> int:
        return self._chunks * BAG_CHUNK + len(self._tail)

    def add(self, v: int) -> None:
        tail = self._tail
        tail.append(v)
        if len(tail) >= BAG_CHUNK:
            self._flush()

    def update(self, other: "IntBag") -> None:
        """Add every value of another bag (a later capture's tally)."""
        for chunk in other._sorted_chunks():
            tail = self._tail
            tail.extend(chunk)
            while len(tail) >= BAG_CHUNK:
                rest = tail[BAG_CHUNK:]
                del tail[BAG_CHUNK:]
                self._flush()
                tail = self._tail = rest

    def _flush(self) -> None:
        if self._path is None:
            fd, self._path = temp_file(".ints")
            os.close(fd)
            self._finalizer = weakref.finalize(self, _remove, [self._path], self._owned)
        chunk = array("q", sorted(self._tail))
        with open(self._path, "ab") as f:
            chunk.tofile(f)
        self._chunks += 1
        low, high = chunk[0], chunk[-1]
        self._low = low if self._low is None or low < self._low else self._low
        self._high = high if self._high is None or high > self._high else self._high
        self._tail = array("q")

    def _sorted_chunks(self):
        """Every value, as sorted arrays: the file's chunks, then the values in memory."""
        if self._path is not None:
            with open(self._path, "rb") as f:
                for _ in range(self._chunks):
                    chunk = array("q")
                    chunk.fromfile(f, BAG_CHUNK)
                    yield chunk
        if self._tail:
            self._tail = array("q", sorted(self._tail))  # a multiset: its order is not kept
            yield self._tail

    def select(self, k: int) -> int:
        """The k-th smallest value (0-based; the same as sorted(values)[k])."""
        if not 0 <= k < len(self):
            raise IndexError("IntBag.select: rank out of range")
        if self._path is None:
            return next(self._sorted_chunks())[k]
        tail = self._tail
        lo, hi = min(self._low, min(tail, default=self._low)), max(self._high, max(tail, default=self._high))
        # invariant: fewer than k+1 values are below lo, at least k+1 are at most hi
        for _ in range(8):  # bounded: 2**64 / BAG_GRID**7 < 1, so lo == hi by the 7th pass
            if lo == hi:
                return lo
            step = -(-(hi - lo + 1) // BAG_GRID)  # cells of `step` values: BAG_GRID of them cover lo..hi
            pivots = range(lo + step, hi + 1, step)
            below = [0] * len(pivots)  # values below each pivot
            for chunk in self._sorted_chunks():
                for i, p in enumerate(pivots):
                    below[i] += bisect_left(chunk, p)
            i = next((i for i, n in enumerate(below) if n > k), len(pivots))  # the cell that holds rank k
            lo, hi = lo + i * step, min(hi, lo + (i + 1) * step - 1)
        raise AssertionError("IntBag.select did not converge")  # pragma: no cover - see the bound above

    def after(self, v: int) -> tuple[int, int | None]:
        """(how many values are at most v, the smallest value above v or None): one pass."""
        n, nxt = 0, None
        for chunk in self._sorted_chunks():
            i = bisect_left(chunk, v + 1)
            n += i
            if i < len(chunk) and (nxt is None or chunk[i] < nxt):
                nxt = chunk[i]
        return n, nxt

    def discard(self) -> None:
        if self._finalizer is not None:
            self._finalizer()

    def __reduce__(self):
        self._owned[0] = False  # sent to another process: that one removes the file
        return (IntBag, (self._tail, self._path, self._chunks, self._low, self._high))
