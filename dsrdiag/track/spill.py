"""Finished connection records, kept in memory up to a bound and spilled to temporary files beyond.

Why: a day of mail has hundreds of thousands of connections; their records are only read again
by passes over all of them (inference, rules, the report's connection list), a batch at a
time. Keeping at most SPILL_AT in memory and writing the rest to sorted chunk files (pickled
in batches of BATCH) makes memory follow the connections open at once, not the size of the file.
Iteration merges the chunks with the in-memory part by (first packet time, uid): the same order
whether or not anything was spilled.

Files live in one temporary folder per run: the process that makes it (the parent: a Crew makes it
before its workers fork, so that they share it) removes it with everything in it at exit, however
the run ends (an error, Ctrl-C, SIGTERM/SIGHUP/SIGQUIT: the CLI turns those into an exception that
unwinds, then exits through atexit). Within a run, files are removed as soon as their records are
garbage; a worker removes the files it did not hand over before it ends. Only SIGKILL (or a crash)
can leave the folder behind: nothing can run then.

The folder is made under $TMPDIR when it is set (and only there: a TMPDIR that is missing or not a
folder is an error, not a silent fallback to /tmp or the working directory), else where Python's
tempfile finds one. None usable: TempDirError, one line (docs/exit-codes.md), raised only when a
file is really needed (a capture with more than SPILL_AT connections).
"""

from __future__ import annotations

import atexit
import heapq
import os
import pickle
import shutil
import tempfile
import weakref

from dsrdiag.core.errors import DsrdiagError

SPILL_AT = 5000
"""Records held in memory per capture before chunks go to disk (about 3 KB each)."""

BATCH = 100
"""Records per pickle in a chunk file: what one reader of that chunk holds at a time."""
MAX_CHUNKS = 8
"""Chunk files per capture; beyond, they are merged into one (an external merge sort's step), so
that iterating holds at most SPILL_AT + MAX_CHUNKS * BATCH records whatever the file's size."""

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
    """Where a tracker puts finished records; `records()` ends it and returns a RecordSeq."""

    def __init__(self, spill_at: int | None = None, observe=None):
        """`observe(record)`, if given, sees each record as it is added (track/facts.py)."""
        # DSRDIAG_SPILL_AT: a tuning knob (and how the tests make small captures spill)
        self.observe = observe
        self.spill_at = spill_at or int(os.environ.get("DSRDIAG_SPILL_AT", "0") or 0) or SPILL_AT
        self.memory: list = []
        self.chunks: list[str] = []
        self.count = 0
        self._owned = [True]
        # a sink abandoned halfway (an interrupt, a stopped worker) removes its chunk files too;
        # records() hands them to the RecordSeq
        self._finalizer = weakref.finalize(self, _remove, self.chunks, self._owned)

    def add(self, rec) -> None:
        if self.observe is not None:
            self.observe(rec)
        self.memory.append(rec)
        self.count += 1
        if len(self.memory) >= self.spill_at:
            self._spill()

    def _spill(self) -> None:
        self.memory.sort(key=_order)
        fd, path = temp_file(".records")
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            _write_batches(f, self.memory)
        self.chunks.append(path)
        self.memory = []
        if len(self.chunks) >= MAX_CHUNKS:
            sources = list(self.chunks)
            fd, merged = temp_file(".records")
            self.chunks.append(merged)  # owned (removed if abandoned) from the start
            with os.fdopen(fd, "wb", buffering=1 << 20) as f:
                _write_batches(f, heapq.merge(*(_read(p) for p in sources), key=_order))
            for p in sources:
                os.unlink(p)
            self.chunks[:] = [merged]  # the same list: the finalizer holds it

    def records(self) -> "RecordSeq":
        self.memory.sort(key=_order)
        seq = RecordSeq(tuple(self.memory), tuple(self.chunks), self.count)
        self._owned[0] = False  # the chunk files are the RecordSeq's now
        self._finalizer.detach()
        return seq


class RecordSeq:
    """The records, read only: iterate them (as often as needed, in first-packet order), take len()."""

    def __init__(self, memory: tuple = (), chunks: tuple[str, ...] = (), count: int | None = None):
        self._memory = memory
        self._chunks = chunks
        self._count = len(memory) if count is None else count
        self._owned = [True]
        self._finalizer = weakref.finalize(self, _remove, list(chunks), self._owned) if chunks else None

    def __len__(self) -> int:
        return self._count

    def discard(self) -> None:
        """Remove the spill files now, if they are still this object's (not handed to another
        process): a worker that is done with its records ends without freeing them one by one."""
        if self._finalizer is not None:
            self._finalizer()

    def __bool__(self) -> bool:
        return self._count > 0

    def __iter__(self):
        if not self._chunks:
            return iter(self._memory)
        return heapq.merge(self._memory, *(_read(p) for p in self._chunks), key=_order)

    def __eq__(self, other):
        if isinstance(other, (RecordSeq, tuple, list)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None

    def __reduce__(self):
        # sent to another process: that process now owns (and will remove) the chunk files
        self._owned[0] = False
        return (_rebuild, (self._memory, self._chunks, self._count))


def _rebuild(memory, chunks, count) -> RecordSeq:
    return RecordSeq(memory, chunks, count)


def _write_batches(f, records) -> None:
    # pickles of BATCH records: each loads alone (nothing remembered between them), and a list
    # loads at ~10 us a record where one pickle per record costs ~25 us
    batch = []
    for r in records:
        batch.append(r)
        if len(batch) == BATCH:
            pickle.dump(batch, f, pickle.HIGHEST_PROTOCOL)
            batch = []
    if batch:
        pickle.dump(batch, f, pickle.HIGHEST_PROTOCOL)


def _read(path: str):
    with open(path, "rb", buffering=1 << 20) as f:
        load = pickle.load
        while True:
            try:
                yield from load(f)
            except EOFError:
                return
