"""Run one capture through decode and the trackers: frames in, CaptureRecords out.

Reads: a capture/ reader. Produces: CaptureRecords for one vantage.
Never: judges; never holds more than the open connections (those Zeek's timers have ended are
swept every SWEEP_EVERY packets into finished records).
Why one function per capture: captures are independent until findings/, so several can be read
in parallel processes and merged by connection key (docs/architecture.md, the seam for scale).
"""

from __future__ import annotations

import gc

from dsrdiag.capture.pcapfile import Capture
from dsrdiag.decode.packet import KIND_TCP, Anomaly, decode
from dsrdiag.track.conn import ConnTracker
from dsrdiag.track.neighbours import NeighbourWatch
from dsrdiag.track.records import CaptureRecords

SWEEP_EVERY = 16384
"""Frames between sweeps. A sweep hands ended connections over and freezes the ones still open
with little state (track/_conntrack.c): between two sweeps a flood's new attempts are full-sized
(~1.2 KB each), so the interval bounds that part of memory (16k frames: ~20 MB; a sweep costs a
scan of the table, ~1 ms per 100k open connections)."""
COLLECT_EVERY = 16
"""Sweeps between collections of the young generations. A collection traverses every container
made since the last one that is still alive; records that went to the store meanwhile are already
freed (reference counts), so collecting less often traverses fewer (measured: ~1.5 s of a 200k
session capture when collecting at every sweep). The loop makes no reference cycles; any that
appear are freed at the next collection, at most COLLECT_EVERY * SWEEP_EVERY frames later."""
MAX_LABELS = 32
"""Distinct wrapper labels (MPLS labels, VNIs) counted one by one for the capture note."""


def _malloc_trim():
    """glibc's malloc_trim: give freed heap back to the system every COLLECT_EVERY sweeps. Without
    it, payload buffers freed between long-lived records fragment the heap and the peak creeps up
    with the file's size (measured: 66 MiB against 52-61 MiB over 5M packets), although nothing
    leaks. Not at every sweep: what a trim gives back, the next sweep's records fault in again
    (kernel time: 0.4-1.0 s of a 200k-session run against 0.4 s trimming every COLLECT_EVERY sweeps)."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_TRIM = _malloc_trim()


def track_capture(path: str, vantage: str, ports: tuple[int, ...], progress=None, tracker: str | None = None) -> CaptureRecords:
    """`progress(bytes_read, frames)` is called every SWEEP_EVERY frames, if given. `tracker`: "c" or
    "python" for this capture (else DSRDIAG_TRACKER, else C when built): tests compare the two."""
    cap = Capture(path, ports)
    conns = ConnTracker(path, vantage, frozenset(ports), tracker)
    neigh = NeighbourWatch()
    # The loop allocates many short-lived containers (frame tuples, packets, notes) and makes no
    # reference cycles; automatic collection would re-scan every open connection's state again and
    # again. Collect the young generations at each sweep instead: any cycle is still freed, and the
    # automatic collector is restored afterwards.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _loop(path, vantage, cap, conns, neigh, progress)
    finally:
        if gc_was_enabled:
            gc.enable()


def _loop(path, vantage, cap, conns, neigh, progress) -> CaptureRecords:
    portset = conns.ports
    conn_packet, neigh_packet = conns.packet, neigh.packet
    anomalies: dict[str, int] = {}
    anomaly_frames: dict[str, int] = {}
    unwrapped: dict[str, int] = {}
    first_ts = last_ts = first_frame = last_frame = None
    next_sweep = SWEEP_EVERY
    sweeps = 0
    # with the C walker and tracker, most TCP frames never come here; from frame next_sweep on,
    # every frame does, until the sweep below moves the mark: sweeps fall on the same frames
    # whichever tracker runs. A sweep only frees memory: which connection a packet belongs to is
    # decided by Zeek's timers when the packet comes (track/conn.py), not by when sweeps happen
    for fr in cap.frames(conns.sink, next_sweep):
        p = decode(fr, portset)
        if p is None:
            continue
        if first_ts is None:
            first_frame, first_ts = fr[0], fr[1]
        last_frame, last_ts = fr[0], fr[1]
        if type(p) is Anomaly:
            anomalies[p.name] = anomalies.get(p.name, 0) + 1
            anomaly_frames.setdefault(p.name, p.frame)
            continue
        if p.wrap is not None:  # bounded: at most MAX_LABELS labels, the rest counted together
            w = p.wrap if p.wrap in unwrapped or len(unwrapped) < MAX_LABELS else "other wrappers"
            unwrapped[w] = unwrapped.get(w, 0) + 1
        if p.kind == KIND_TCP:
            conn_packet(p)
        else:
            neigh_packet(p)
        if fr[0] >= next_sweep:
            next_sweep = fr[0] + SWEEP_EVERY
            conns.sweep()
            if cap.walker is not None:
                cap.walker.next_sweep = next_sweep
            sweeps += 1
            if sweeps % COLLECT_EVERY == 0:
                gc.collect(1)
                if _TRIM is not None:
                    _TRIM(0)
            if progress is not None:
                progress(cap.tell(), fr[0])
    end = cap.end
    in_c = conns.first_last()  # the first and last decoded frames may be ones Python never saw
    if in_c is not None:
        (f_frame, f_ts), (l_frame, l_ts) = in_c
        if first_frame is None or f_frame < first_frame:
            first_ts = f_ts
        if last_frame is None or l_frame > last_frame:
            last_ts = l_ts
    if progress is not None:
        progress(cap.size, end.frames)
    return CaptureRecords(
        capture=path,
        vantage=vantage,
        connections=conns.finish_all(),
        neighbours=neigh.table(),
        anomalies=anomalies,
        anomaly_frames=anomaly_frames,
        frames=end.frames,
        passed=end.passed,
        linktypes=tuple(sorted(end.linktypes)),
        damage=end.damage,
        skipped=dict(end.skipped),
        reader=end.reader,
        first_ts_ns=first_ts,
        last_ts_ns=last_ts,
        facts=conns.facts,
        time_steps=conns.time_steps(),
        snaplen_cut=conns.snaplen_cut(),
        unwrapped=unwrapped,
    )
