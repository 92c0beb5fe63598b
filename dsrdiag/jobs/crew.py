"""Worker processes that keep the captures they read: they track them, then conclude their parts.

Why: with several captures, handing every worker's records to the parent (pickling them, a pipe,
unpickling them: ~0.1 s for a million-packet capture's, all of it while the parent waits) cost
more than a worker's whole share of the judging. A worker that keeps its records sends the parent
only what the merge needs: each capture's counters and Facts once it is read, and each capture's
CapturePart (rules, back-end tally) once the parent has inferred the
topology from every capture's facts. Records cross to the parent only when something there needs
them (fetch(): every presenter lists connections from them; a record store is handed over by
naming its file, track/spill.py, so nothing is copied but the in-memory part).

Scheduling: captures are claimed in list order from one shared counter, by the parent and the
workers alike, so a large capture does not hold the others up. Errors: a capture the parent
cannot read fails the run at once and stops the workers (close(abort)); what workers raise is
raised by the parent once they have reported, the first capture's first. With one bad capture
that is --jobs 1's message and exit code (tests/test_parallel_crew.py); with several, which one
is named can differ.

Stopping: a worker unwinds on SIGTERM, SIGHUP, SIGQUIT and SIGINT, and when its parent ends (the
pipe closes: a worker holds only its own end of it; on Linux the kernel also signals it), removing
the files it did not hand over; close(abort) stops the workers at once, escalating to SIGKILL.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
from multiprocessing.connection import wait


class HeldRecords:
    """Stands for the records a worker keeps: their number, and a loud error if iterated here."""

    def __init__(self, count: int):
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def __iter__(self):
        raise RuntimeError("these records are held by a worker process: Crew.fetch() them first")


def _claim(counter, n: int) -> int | None:
    with counter.get_lock():
        i = counter.value
        if i >= n:
            return None
        counter.value = i + 1
        return i


def _portable(e: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a RuntimeError saying what it was."""
    import pickle

    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")


class _Stopped(BaseException):
    """Raised in a worker by SIGTERM (Crew.close after an error): it unwinds, files removed."""


_cleaning = False
"""Set as the first step of a worker's cleaning up: a stop signal that comes before _ignore() has
replaced the handlers (the parent's SIGTERM right after a job failed) must not raise inside it."""


def _stop(signum, frame) -> None:
    _ignore()  # the first signal stops the worker; later ones (Crew.close's SIGTERM after a
    if not _cleaning:  # Ctrl-C to the process group) must not cut its cleaning up short
        raise _Stopped()


def _nothing(signum, frame) -> None:
    pass


def _ignore() -> None:
    for name in STOP_SIGNALS + ("SIGINT",):  # a handler that does nothing, not SIG_IGN: a signal
        signal.signal(getattr(signal, name), _nothing)  # already pending would raise OSError then


STOP_SIGNALS = ("SIGTERM", "SIGHUP", "SIGQUIT")
"""What `timeout`, systemd, `docker stop`, a closed terminal and CI cancellation send: a worker
unwinds on each (as on Ctrl-C's SIGINT), removing its files."""


def _signals() -> set:
    return {getattr(signal, name) for name in STOP_SIGNALS + ("SIGINT",)}


def _die_with_parent(parent: int) -> None:
    """Linux: SIGTERM this worker when the parent ends, however it ends (even SIGKILL)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the closed pipe still ends the worker
        return
    if os.getppid() != parent:  # the parent ended before the call above
        raise _Stopped()


def _worker(conn, counter, sources, ports, shared, parent_ends=(), parent: int = 0, steps=None) -> None:
    kept: dict = {}
    try:
        for name in STOP_SIGNALS + ("SIGINT",):
            signal.signal(getattr(signal, name), _stop)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _signals())  # blocked by Crew() from before the fork
        for c in parent_ends:  # the parent's ends of every pipe: with them open here, the
            c.close()          # parent's death would never reach recv() as end-of-file
        if parent:
            _die_with_parent(parent)
        _work(conn, counter, sources, ports, shared, kept, steps)
    except (_Stopped, KeyboardInterrupt, EOFError, BrokenPipeError, ConnectionResetError):  # stopped, interrupted, or the parent is gone
        pass
    finally:
        global _cleaning
        _cleaning = True  # no call before it: a signal's handler runs at calls and loops, not here
        _ignore()  # cleaning up: a late signal must not cut it short
        # records not handed over remove their spill files (a capture abandoned halfway: its
        # RecordSink does); the records themselves are not freed one by one (the process ends:
        # multiprocessing exits it with os._exit), which took ~25 ms of a million-packet capture
        # while the parent waited to join
        for r in kept.values():
            discard = getattr(r.connections, "discard", None)
            if discard is not None:
                discard()
        conn.close()


def _work(conn, counter, sources, ports, shared, kept: dict, steps) -> None:
    track_one, conclude_part = steps
    got: dict = {}
    n = len(sources)
    while (i := _claim(counter, n)) is not None:
        v, p = sources[i]
        report = None
        if shared is not None:
            def report(pos: int, frames: int, p=p) -> None:
                shared[p] = (pos, frames)
        try:
            r = kept[i] = track_one(v, p, ports, report)
            got[i] = (True, dataclasses.replace(r, connections=HeldRecords(len(r.connections))))
        except Exception as e:  # raised again by the parent, in capture order
            got[i] = (False, _portable(e))
    conn.send(("tracked", got))
    while True:
        msg = conn.recv()
        if msg[0] == "parts":  # the last thing asked of a worker: it ends once they are sent
            _, topology, several = msg
            try:
                conn.send(("parts", {i: (True, conclude_part(r, topology, several)) for i, r in kept.items()}))
            except Exception as e:
                conn.send(("parts", {min(kept): (False, _portable(e))}))
            return
        if msg[0] == "records":
            conn.send(("records", {i: r.connections for i, r in kept.items()}))  # spill files go with them
        else:
            return


class Crew:
    """`workers` processes plus this one reading `sources`; use as a context manager.

    The executor of the analysis' two map steps, given as `steps`: (track(vantage, path, ports,
    progress) -> records, part(records, topology, several) -> part), jobs/analyze.py's track_one
    and conclude_part: this module runs them and knows nothing of what they do (it imports no
    analysis), so another executor (other machines) can stand in its place."""

    def __init__(self, sources: list[tuple[str, str]], ports: tuple[int, ...], workers: int, shared=None, steps=None):
        if steps is None:
            raise ValueError("Crew needs steps=(track, part): the map steps it runs")
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
        self.n = len(sources)
        self.counter = ctx.Value("i", 0)
        self.conns, self.procs = [], []
        self.owner: dict[int, int] = {}
        if workers and self.n > 1:
            from dsrdiag.track import spill

            spill.prepare()  # one temporary folder for the run, made before the workers fork
        for _ in range(min(workers, self.n - 1)):
            here, there = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(there, self.counter, sources, ports, shared,
                                                  (here, *self.conns), os.getpid(), steps), daemon=True)
            # stop signals wait until the worker has its own handlers (not this process's, which
            # a fork copies): here they are delivered right after the start
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, _signals())
            try:
                p.start()
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            there.close()
            self.conns.append(here)
            self.procs.append(p)

    def __enter__(self) -> "Crew":
        return self

    def __exit__(self, kind, value, tb) -> None:
        self.close(abort=kind is not None)

    def claim(self) -> int | None:
        """The next capture nobody has started, for this process to read."""
        return _claim(self.counter, self.n)

    def _recv(self, k: int, what: str):
        try:
            tag, payload = self.conns[k].recv()
        except (EOFError, OSError):
            raise RuntimeError(f"worker process {self.procs[k].pid} ended unexpectedly (exit code "
                               f"{self.procs[k].exitcode})") from None
        if tag != what:
            raise RuntimeError(f"worker process sent {tag!r}, expected {what!r}")
        return payload

    def tracked(self, out: list, poll=None) -> None:
        """Fill `out[i]` with the workers' captures (their records held: HeldRecords); `poll()` a few
        times a second meanwhile. Raises what a worker raised, the first capture's first."""
        pending = set(range(len(self.conns)))
        errors: dict[int, BaseException] = {}
        while pending:
            ready = wait([self.conns[k] for k in pending], timeout=0.2 if poll else None)
            for conn in ready:
                k = self.conns.index(conn)
                pending.discard(k)
                for i, (ok, value) in self._recv(k, "tracked").items():
                    self.owner[i] = k
                    if ok:
                        out[i] = value
                    else:
                        errors[i] = value
            if poll:
                poll()
        if errors:
            raise errors[min(errors)]

    def send_parts(self, topology, several: bool) -> None:
        for conn in self.conns:
            conn.send(("parts", topology, several))

    def parts(self, out: list) -> None:
        """Fill `out[i]` with the CapturePart of every worker's capture (after send_parts)."""
        errors = {}
        for k in range(len(self.conns)):
            for i, (ok, value) in self._recv(k, "parts").items():
                if ok:
                    out[i] = value
                else:
                    errors[i] = value
        if errors:
            raise errors[min(errors)]

    def fetch(self, records: list) -> list:
        """`records` with every worker's records handed over (the spill files become ours)."""
        out = list(records)
        for k, conn in enumerate(self.conns):
            conn.send(("records",))
        for k in range(len(self.conns)):
            for i, seq in self._recv(k, "records").items():
                out[i] = dataclasses.replace(out[i], connections=seq)
        return out

    def close(self, abort: bool = False) -> None:
        """Stop the workers; `abort` (this process failed): at once, not after the capture they are
        reading (SIGTERM unwinds a worker, which removes its spill files)."""
        for conn in self.conns:
            try:
                conn.send(("stop",))
            except OSError:
                pass
        if abort:
            for p in self.procs:
                if p.is_alive():
                    p.terminate()
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
            if p.is_alive():  # a worker stuck where no signal handler runs: no process outlives the run
                p.kill()
                p.join(timeout=5)
        for conn in self.conns:
            conn.close()
        self.conns, self.procs = [], []
