"""A file appended to by a thread: the run's big sequential writes overlap its work.

Why: a capture's record store (track/spill.py) is written once, ~750 bytes a connection: 150 MB for
200k short SMTP sessions. Copying that into the page cache is kernel time (~0.3 s, 8% of such a
run) that the writing process otherwise spends waiting, although nothing it does next depends on
it until the file is read back. Zeek writes its logs from threads of their own for the same
reason. Here the caller hands over immutable bytes; they are gathered into chunks of CHUNK bytes
and a thread writes each chunk with one writev(2), which runs without the GIL. At most DEPTH
chunks wait, so the memory this holds is bounded whatever the file's size: DEPTH + 2 chunks at
most (one being written, DEPTH queued, one the caller is handing over), 16 MiB.

Large chunks, not one write per piece: a thread that wakes needs the GIL back, and CPython hands
it over only at its switch interval (5 ms); a few dozen wake-ups per 150 MB cost nothing, thousands
would make the writer fall behind.

Errors (a full disk) are the writer's OSError, raised in the caller at its next write, flush or
close, and at every call after it (nothing more is written): the same error, a little later, as a
plain write would have raised. Writing to a closed writer is a ValueError, as for a closed file.

A fork copies the writer but not its thread (jobs/crew.py forks workers before any store exists, but
a finalizer may still run in a copy): in the copy, discard() only closes the descriptor, and
anything else is an error, never a wait for a thread that is not there.
"""

import errno
import os
import queue
import threading

CHUNK = 4 << 20
"""Bytes gathered before a chunk goes to the thread (one writev)."""
DEPTH = 2
"""Chunks waiting for the thread at most: the caller waits (for the disk) beyond."""
_IOV_MAX = 1024
"""Pieces per writev (Linux's IOV_MAX)."""


class AheadWriter:
    """Appends to the open file descriptor `fd` (it owns it and closes it). `pos` is the file's
    length once everything handed over is written: what tell() would say."""

    def __init__(self, fd: int):
        self._fd = fd
        self.pos = 0
        self._pending: list = []
        self._pending_n = 0
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None  # the thread's, sticky: raised at every later call
        self._dropping = False  # nothing more is written (an error, or discard)
        self._stop_sent = False
        self._thread_closes = False  # stopped from the writer thread itself: it closes the fd last
        self._pid = os.getpid()  # the process whose thread this is (see the module's docstring)
        self.closed = False

    def write(self, data) -> None:
        """`data`: bytes (not to be changed afterwards: it is written later, as it is)."""
        self._check()
        n = len(data)
        if not n:
            return
        self._pending.append(data)
        self._pending_n += n
        self.pos += n
        if self._pending_n >= CHUNK:
            self._send()

    def _check(self) -> None:
        if self.closed:
            raise ValueError("write to a closed record store file")
        if self._pid != os.getpid():
            raise OSError(errno.EBADF, "a record store's writer does not cross a fork")
        if self._error is not None:
            raise self._error  # again and again, as a file that failed keeps failing

    def _send(self) -> None:
        if not self._pending:
            return
        if self._thread is None:
            self._queue = queue.Queue(DEPTH)
            self._thread = threading.Thread(target=self._run, name="dsrdiag-aheadwrite", daemon=True)
            self._thread.start()
        pieces, self._pending, self._pending_n = self._pending, [], 0
        try:
            self._queue.put(pieces)
        except BaseException:  # interrupted while waiting for room: the chunk is still the caller's
            self._pending[:0] = pieces
            self._pending_n += sum(len(p) for p in pieces)
            raise

    def _run(self) -> None:
        q = self._queue
        while True:
            pieces = q.get()
            try:
                if pieces is None:
                    if self._thread_closes:
                        os.close(self._fd)
                    return
                if self._error is None and not self._dropping:
                    _write_all(self._fd, pieces)
            except BaseException as e:  # any error, not only OSError: the caller gets it, nothing hangs
                self._error = e
                self._dropping = True
            finally:
                q.task_done()

    def flush(self) -> None:
        """Wait until everything handed over is in the file (before it is read back)."""
        self._check()
        self._send()
        if self._queue is not None:
            self._queue.join()
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Flush, stop the thread, close the file (the file is closed even when flushing fails)."""
        if self.closed:
            return
        try:
            self.flush()
        finally:
            self._stop()

    def discard(self) -> None:
        """Stop without writing what still waits (the file is being removed): never raises."""
        if self.closed:
            return
        self._dropping = True
        self._pending, self._pending_n = [], 0
        try:
            self._stop()
        except Exception:
            pass

    def _stop(self) -> None:
        t = self._thread
        if t is not None and self._pid == os.getpid():  # in a forked copy there is no thread to stop
            if t is threading.current_thread():  # a finalizer that the writer thread's GC ran
                self._stop_from_writer()
                return
            if not self._stop_sent:
                self._queue.put(None)
                self._stop_sent = True
            t.join()
        self._thread = None
        self.closed = True
        os.close(self._fd)

    def _stop_from_writer(self) -> None:
        """The writer thread cannot join itself, and the chunk it is writing still needs the fd:
        what waits is dropped, and the thread closes the fd when it comes to the end mark."""
        self._dropping = True
        q = self._queue
        while True:
            try:
                q.get_nowait()
            except queue.Empty:
                break
            q.task_done()
        self._thread_closes = True
        q.put_nowait(None)  # there is room now: this thread is the only one that takes
        self._stop_sent = True
        self.closed = True


def _write_all(fd: int, pieces: list) -> None:
    """writev until every byte of `pieces` is written (a write may be partial)."""
    i = 0
    while i < len(pieces):
        group = pieces[i:i + _IOV_MAX]
        want = sum(len(p) for p in group)
        done = os.writev(fd, group)
        if done <= 0:  # a regular file never takes nothing without an error: do not spin
            raise OSError(errno.EIO, "write made no progress")
        if done == want:
            i += len(group)
            continue
        # partial: skip the pieces written whole, keep the rest of the one cut
        for j, p in enumerate(group):
            if done < len(p):
                pieces = [memoryview(p)[done:], *group[j + 1:], *pieces[i + len(group):]]
                i = 0
                break
            done -= len(p)
