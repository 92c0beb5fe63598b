"""The C tracker's sweep by timers (track/_conntrack.c: a dirty list and a min-heap of removal
times instead of a scan of the whole table) and its lean frozen form of a lone SYN change no record,
no row, no fact and no hand-over order.

Differential, C against the Python reference (track/conn.py ConnTracker.sweep: every connection
whose removal_time() <= clock, by a scan): generated floods (bench/gen.py syn and hash-random,
tests/floodgen.py floods with retrying clients, scans and sessions mixed), short sessions, sessions
with long idle gaps (Zeek's inactivity timeouts), close, reset and partial-close timers, 4-tuple
reuse, timestamps that step back and jump ahead; each with sweeps every N frames for small N
(track.pipeline.SWEEP_EVERY), so that connections are frozen, thawed by their next packet, ended by
the heap and by a packet, across many sweeps. Each input also asserts what it must contain (so a
comparison of two empty or trivial lists cannot pass). Then the C side alone: one sweep, and
finish_all(), hand their ended connections over in the order they began (by number, as the
reference's table does: the record store sorts by first packet, and the table's random order would
split it into runs), and a lone SYN attempt is frozen small while anything else is not frozen in
that form."""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import ROOT
from tests.floodgen import ACK, FIN, PSH, SYN, VIP, Pcap, flood, retrying, mixed

_native = pytest.importorskip("dsrdiag.track._conntrack", reason="the C extension was not built (no compiler)")

T0 = 1_700_000_000.0
RST = 0x04


def _facts(facts) -> tuple:
    """A capture's Facts as plain values (Attempts compared by their fields), as tests/test_lone.py,
    but `replies` as a sorted list: it is appended in hand-over order, which within one sweep is the
    table's order (the C table's slots, random per run by its SipHash key; the Python dict's
    insertion order), and every reader is order-free (findings/infer.py sorts it by `first`, the
    finding kinds and context take any() and a frozenset of it)."""
    state = list(facts.__getstate__())
    i = facts.__slots__.index("attempts")
    state[i] = {k: a.__getstate__() for k, a in state[i].items()}
    j = facts.__slots__.index("replies")
    state[j] = sorted(state[j])
    return tuple(state)


def _both(path: Path, every: int, monkeypatch, ports=(25,), lane: str = "1") -> list:
    """The records of `path` from both trackers, swept every `every` frames: asserted equal, record
    for record and fact for fact; the C tracker's records are returned."""
    from dsrdiag.track import pipeline

    monkeypatch.setattr(pipeline, "SWEEP_EVERY", every)
    monkeypatch.setenv("DSRDIAG_LONE", lane)
    c = pipeline.track_capture(str(path), "v", ports, tracker="c")
    py = pipeline.track_capture(str(path), "v", ports, tracker="python")
    cr, pr = list(c.connections), list(py.connections)
    assert len(cr) == len(pr)
    for a, b in zip(cr, pr):
        assert a == b, f"{a.uid}: the C tracker and the Python tracker disagree"
    assert _facts(c.facts) == _facts(py.facts)
    assert (c.frames, c.passed, c.time_steps) == (py.frames, py.passed, py.time_steps)
    return cr


def _states(records) -> Counter:
    return Counter(r.conn_state for r in records)


def _mixed(path: Path) -> Path:
    """A 10 s flood slow enough for its attempts' 5 s timers to end mid-capture, with complete
    sessions, clients retrying their SYNs (1 s, 3 s) and an address scan in the middle of it."""
    return mixed(path, 5, start=T0, n_sessions=120, session_rate=12.0, flood_rate=300.0, n_sources=40, n_retrying=60,
                 retry_at=1.0, n_scan=60, scan_at=2.0)


def _gen(tmp_path: Path, shape: str, count: int) -> Path:
    out = tmp_path / f"{shape}.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen.py"), str(out), "--shape", shape, "--count", str(count)],
                   check=True, capture_output=True, timeout=300)
    return out


# ---- generated floods and sessions ---------------------------------------------------------------
@pytest.mark.parametrize("every", [1, 3, 17, 256])
def test_a_flood_mixed_with_sessions_retries_and_a_scan_gives_the_python_records_at_any_sweep_interval(every, tmp_path, monkeypatch):
    recs = _both(_mixed(tmp_path / "mixed.pcap"), every, monkeypatch)
    st = _states(recs)
    assert st["S0"] >= 3000 + 60 + 60 and st["SF"] == 120, st
    assert sum(1 for r in recs if r.history == "S") >= 3000  # the lone SYNs (rows with the lane on)


def test_the_mixed_flood_gives_the_python_records_with_the_lone_lane_off(tmp_path, monkeypatch):
    recs = _both(_mixed(tmp_path / "mixed.pcap"), 7, monkeypatch, lane="0")
    assert _states(recs)["SF"] == 120


@pytest.mark.parametrize("shape,count,every", [("syn", 20000, 1000), ("syn", 3000, 5), ("hash-random", 6000, 97)])
def test_bench_floods_give_the_python_records(shape, count, every, tmp_path, monkeypatch):
    recs = _both(_gen(tmp_path, shape, count), every, monkeypatch)
    assert len(recs) >= count and _states(recs)["S0"] >= count


def test_bench_sessions_give_the_python_records_when_swept_often(tmp_path, monkeypatch):
    recs = _both(_gen(tmp_path, "sessions", 1500), 31, monkeypatch)
    assert _states(recs)["SF"] == 1500


# ---- timers: inactivity, close, reset, partial close; reuse; the clock ---------------------------
class _Conv:
    """One TCP conversation on a fixed 4-tuple: packets at chosen times, sequence numbers kept."""

    def __init__(self, p: Pcap, client: str, port: int, isn: int = 1000, sisn: int = 9000):
        self.p, self.c, self.port, self.a, self.b = p, client, port, isn, sisn

    def up(self, t, flags, data=b""):
        self.p.tcp(t, self.c, self.port, VIP, 25, flags, self.a, self.b if flags & ACK else 0, data)
        self.a += len(data) + (1 if flags & (SYN | FIN) else 0)

    def down(self, t, flags, data=b""):
        self.p.tcp(t, VIP, 25, self.c, self.port, flags, self.b, self.a if flags & ACK else 0, data, to_server=False)
        self.b += len(data) + (1 if flags & (SYN | FIN) else 0)

    def open(self, t):
        self.up(t, SYN); self.down(t + 0.01, SYN | ACK); self.up(t + 0.02, ACK)
        self.down(t + 0.03, PSH | ACK, b"220 mx ESMTP\r\n")


def _filler(p: Pcap, start: float, end: float, step: float, base_port: int = 30000) -> int:
    """A lone SYN every `step` seconds from distinct ports: frames, so that sweeps fall inside gaps."""
    n = 0
    t = start
    while t < end:
        p.tcp(t, "203.0.113.200", base_port + n % 30000, VIP, 25, SYN, n * 7919)
        t += step
        n += 1
    return n


def test_idle_gaps_around_the_inactivity_timeouts_give_the_python_records(tmp_path, monkeypatch):
    p = Pcap(tmp_path / "idle.pcap")
    a = _Conv(p, "198.51.100.10", 41000)  # established: 300 s inactivity
    a.open(T0)
    a.up(T0 + 1, PSH | ACK, b"EHLO x\r\n")
    a.up(T0 + 1 + 299.5, PSH | ACK, b"NOOP\r\n")        # just inside: the same connection
    a.up(T0 + 1 + 299.5 + 300.5, PSH | ACK, b"NOOP\r\n")  # just past: a new one
    b = _Conv(p, "198.51.100.11", 41001)  # in the handshake: 60 s
    b.up(T0, SYN); b.down(T0 + 59.5, SYN | ACK)
    c = _Conv(p, "198.51.100.12", 41002)
    c.up(T0, SYN); c.down(T0 + 5.0, SYN | ACK); c.up(T0 + 65.5, ACK)
    d = _Conv(p, "198.51.100.13", 41003)  # a lone SYN retried after its attempt timer and after 60 s
    d.up(T0, SYN); d.a -= 1; d.up(T0 + 5.5, SYN); d.a -= 1; d.up(T0 + 70, SYN)
    n = _filler(p, T0, T0 + 610, 2.0)
    p.close()
    for every in (1, 4, 50):
        recs = _both(tmp_path / "idle.pcap", every, monkeypatch)
        assert len([r for r in recs if r.client_port == 41000]) == 2
        assert len(recs) >= n + 5


def test_close_reset_and_partial_close_timers_give_the_python_records(tmp_path, monkeypatch):
    p = Pcap(tmp_path / "close.pcap")
    t = T0
    convs = []
    for i, shape in enumerate(["both-fin", "client-fin", "server-fin", "client-rst", "server-rst", "rej", "fin-rst", "late"] * 3):
        c = _Conv(p, f"198.51.100.{20 + i}", 42000 + i)
        convs.append(shape)
        if shape == "rej":
            c.up(t, SYN); c.down(t + 0.01, RST | ACK)
        else:
            c.open(t)
            if shape == "both-fin":
                c.up(t + 1, FIN | ACK); c.down(t + 1.01, FIN | ACK); c.up(t + 1.02, ACK)
            elif shape == "client-fin":   # half closed: Zeek's session timer ticks every 6 s
                c.up(t + 1, FIN | ACK); c.down(t + 1.01, ACK); c.down(t + 14, PSH | ACK, b"250 late\r\n")
            elif shape == "server-fin":
                c.down(t + 1, FIN | ACK)
            elif shape == "client-rst":
                c.up(t + 1, RST)
            elif shape == "server-rst":
                c.down(t + 1, RST | ACK)
            elif shape == "fin-rst":
                c.up(t + 1, FIN | ACK); c.down(t + 2, RST)
            elif shape == "late":           # both closed, then packets within and past the 5 s linger
                c.up(t + 1, FIN | ACK); c.down(t + 1.01, FIN | ACK); c.up(t + 4, ACK); c.up(t + 12, ACK)
        t += 3.3
    _filler(p, T0, t + 40, 0.25)
    p.close()
    for every in (1, 5, 64):
        recs = _both(tmp_path / "close.pcap", every, monkeypatch)
        st = _states(recs)
        assert st["SF"] >= 3 and st["REJ"] == 3 and st["RSTO"] >= 3 and st["RSTR"] >= 3, st


def test_4_tuple_reuse_gives_the_python_records(tmp_path, monkeypatch):
    p = Pcap(tmp_path / "reuse.pcap")
    c = _Conv(p, "198.51.100.40", 43000)
    c.open(T0)
    c.up(T0 + 1, FIN | ACK); c.down(T0 + 1.01, FIN | ACK); c.up(T0 + 1.02, ACK)
    c.a = 555_000; c.up(T0 + 2, SYN)        # reused after the close: a new connection
    c.a -= 1; c.up(T0 + 3, SYN)             # its retransmission (same ISN): the same one
    c.a = 777_000; c.up(T0 + 3.5, SYN)      # a new ISN while the attempt is open: reused again
    c.down(T0 + 3.51, SYN | ACK); c.up(T0 + 3.52, ACK)
    c.a = 999_000; c.up(T0 + 30, SYN)       # long after, nothing in between
    _filler(p, T0, T0 + 40, 0.1)
    p.close()
    for every in (1, 2, 33):
        recs = _both(tmp_path / "reuse.pcap", every, monkeypatch)
        assert len([r for r in recs if r.client_port == 43000]) == 4


def _close_unsorted(p: Pcap) -> None:
    """Write the frames in the order given (Pcap sorts mixed-up stamps on close)."""
    p.mixed = False
    p.close()


def test_timestamps_stepping_back_and_jumping_ahead_give_the_python_records(tmp_path, monkeypatch):
    p = Pcap(tmp_path / "clock.pcap")
    a = _Conv(p, "198.51.100.50", 44000)
    a.open(T0)
    _filler(p, T0 + 0.1, T0 + 8, 0.5, 30000)
    a.up(T0 + 3, PSH | ACK, b"EHLO back\r\n")                    # 5 s behind the clock
    _filler(p, T0 + 8, T0 + 12, 0.5, 31000)
    p.tcp(T0 + 7200, "203.0.113.201", 45000, VIP, 25, SYN, 1)     # one outlier, 2 h ahead
    _filler(p, T0 + 12, T0 + 20, 0.5, 32000)
    p.tcp(T0 + 800, "203.0.113.202", 45001, VIP, 25, SYN, 2)      # a real jump past MAX_CLOCK_STEP
    _filler(p, T0 + 800.5, T0 + 815, 0.5, 33000)
    a.up(T0 + 801, PSH | ACK, b"NOOP\r\n")
    _close_unsorted(p)
    for every in (1, 3, 40):
        recs = _both(tmp_path / "clock.pcap", every, monkeypatch)
        assert len([r for r in recs if r.client_port == 44000]) == 2
    from dsrdiag.track.pipeline import track_capture

    steps = track_capture(str(tmp_path / "clock.pcap"), "v", (25,), tracker="c").time_steps
    assert steps[0] >= 1 and steps[2] == 1  # stepped back, and one outlier


# ---- the C side: hand-over order, the lean frozen form -------------------------------------------
def _drive(path: Path, every: int, lane: int, at_sweep, tracker: str = "c"):
    """A tracker fed as track/pipeline.py's _loop feeds it; at the sweep frames, at_sweep(native)
    (the C Tracker, which at_sweep sweeps: lane 0 hands every ended connection over as a tuple, in
    order: no record kit) or, with tracker "python", at_sweep(conns) (the ConnTracker)."""
    from dsrdiag.capture.pcapfile import Capture
    from dsrdiag.decode.packet import KIND_TCP, Anomaly, decode
    from dsrdiag.track.conn import ConnTracker

    cap = Capture(str(path), (25,))
    conns = ConnTracker(str(path), "v", frozenset((25,)), tracker)
    native = conns.native if tracker == "c" else conns
    if tracker == "c":
        native.lane = lane
        native.kit = None  # tuples: (num, ...) as the tests read them
    nxt = every
    for fr in cap.frames(conns.sink, nxt):
        p = decode(fr, conns.ports)
        if p is None or type(p) is Anomaly:
            continue
        if p.kind == KIND_TCP:
            conns.packet(p)
        if fr[0] >= nxt:
            nxt = fr[0] + every
            at_sweep(native)
            if cap.walker is not None:
                cap.walker.next_sweep = nxt
    return native


def test_one_sweep_hands_its_ended_connections_over_in_the_order_they_began(tmp_path):
    path = _mixed(tmp_path / "mixed.pcap")
    seen = SimpleNamespace(ended=0, multi=0, sweeps=0, unsorted=0)

    def at_sweep(native):
        order = native.slots()
        ended = []
        batch = native.sweep(50)
        while batch:
            ended += [t[0] for t in batch]
            batch = native.more(50)
        assert len(set(ended)) == len(ended)
        table = set(order)
        k = 0
        while k < len(ended) and ended[k] not in table:
            k += 1  # first those a packet ended since the last sweep (its timer, or a reused 4-tuple)
        swept = ended[k:]
        got = set(swept)
        assert got <= table
        assert swept == sorted(got)  # then the sweep's: by number, not in the table's order
        seen.unsorted += [n for n in order if n in got] != swept
        assert not got & set(native.slots())
        seen.ended += len(swept)
        seen.multi += len(swept) >= 2
        seen.sweeps += 1

    _drive(path, 40, 0, at_sweep)
    assert seen.ended >= 1000 and seen.multi >= 20 and seen.unsorted >= 5, seen  # the table's order would differ


def test_finish_all_hands_the_connections_still_open_over_in_the_order_they_began(tmp_path):
    """At the capture's end the connections Zeek's timers still hold (a flood's attempts, the last
    5 s of sessions under the close timer, frozen or not) are handed over by number, the order
    they began, as the reference's table hands them: the store sorts by first packet, and a random
    table order would split it into runs interleaved record by record."""
    path = _mixed(tmp_path / "mixed.pcap")
    native = _drive(path, 400, 0, lambda n: _drain(n.sweep(TAKE_N), n))
    held = native.slots()
    assert len(held) >= 500 and held != sorted(held)  # the table's order is not the numbers' (random key)
    assert native.frozen >= 100  # frozen entries are numbered and sorted like the others
    ended = _drain(native.finish_all(TAKE_N), native)
    assert ended == sorted(held)


def _drain(batch, native) -> list[int]:
    out = []
    while batch:
        out += [t[0] for t in batch]
        batch = native.more(TAKE_N)
    return out


TAKE_N = 64


@pytest.mark.parametrize("every", [1, 9, 100])
def test_each_sweep_ends_exactly_the_connections_the_python_sweep_ends(every, tmp_path):
    """Records alone cannot show it (a packet of a connection whose timer has passed ends it anyway,
    and finish_all() ends the rest): the open connections after every sweep, both trackers."""
    path = _mixed(tmp_path / "mixed.pcap")
    c_open: list = []
    py_open: list = []

    def c_sweep(native):
        native.sweep(0)
        native.lone()
        c_open.append(frozenset(native.slots()))

    def py_sweep(conns):
        conns.sweep()
        py_open.append(frozenset(int(c.uid.rsplit("C", 1)[1]) for c in conns.table.values()))

    _drive(path, every, 1, c_sweep)
    _drive(path, every, 1, py_sweep, tracker="python")
    assert len(c_open) == len(py_open) >= 10
    assert c_open == py_open
    assert max(len(o) for o in c_open) >= 1000                        # a flood's attempts, open
    assert sum(len(a - b) for a, b in zip(c_open, c_open[1:])) >= 1000  # and ended by sweeps


def _lone_flood(path: Path, n: int = 4000) -> Path:
    p = Pcap(path)
    flood(p, random.Random(3), n, T0, 10000.0, n_sources=200)
    p.close()
    return path


def test_a_lone_syn_attempt_is_frozen_in_little_more_than_its_row(tmp_path):
    peak = SimpleNamespace(frozen=0, nbytes=0)

    def at_sweep(native):
        native.sweep(0)
        native.lone()
        if native.frozen > peak.frozen:
            peak.frozen, peak.nbytes = native.frozen, native.frozen_bytes

    _drive(_lone_flood(tmp_path / "flood.pcap"), 1000, 1, at_sweep)
    assert peak.frozen >= 3000
    assert peak.nbytes / peak.frozen <= 160, peak  # the key, the removal time, the row's fields


def test_a_retrying_client_and_an_open_session_are_not_frozen_as_lone_syns(tmp_path):
    p = Pcap(tmp_path / "retry.pcap")
    retrying(p, random.Random(4), 1000, T0, 1000.0)       # three SYNs each by 3 s
    p.close()
    peak = SimpleNamespace(frozen=0, nbytes=0)

    def at_sweep(native):
        native.sweep(0)
        native.lone()
        if native.frozen >= peak.frozen:
            peak.frozen, peak.nbytes = native.frozen, native.frozen_bytes

    _drive(tmp_path / "retry.pcap", 2900, 1, at_sweep)
    assert peak.frozen >= 500
    assert peak.nbytes / peak.frozen > 160, peak  # three SYN notes: the general form

    p = Pcap(tmp_path / "open.pcap")
    convs = [_Conv(p, "198.51.100.60", 46000 + i) for i in range(200)]
    for c in convs:
        c.up(T0, SYN)
    for c in convs:
        c.down(T0 + 0.1, SYN | ACK)
    for c in convs:
        c.up(T0 + 0.2, ACK)
    for c in convs:
        c.down(T0 + 0.3, PSH | ACK, b"220 mx ESMTP\r\n")  # an SMTP follower each: never frozen
    for c in convs:
        c.up(T0 + 0.4, PSH | ACK, b"EHLO x\r\n")
    p.close()
    frozen = []
    _drive(tmp_path / "open.pcap", 800, 1, lambda native: (native.sweep(0), frozen.append(native.frozen)))
    assert len(frozen) == 1 and frozen[0] == 0
    frozen = []
    _drive(tmp_path / "open.pcap", 200, 1, lambda native: (native.sweep(0), frozen.append(native.frozen)))
    assert frozen[0] == 200  # the control: at their SYNs, the same connections were frozen


def _forwarded_v6_syns(path: Path, n: int) -> Path:
    """n IPv6 SYNs (no IP ID: the packet signature holds the window), each also seen forwarded
    20 us later (the load balancer's copy to a back-end, as a DSR capture at the LB holds it),
    windows of every size; then a few ordinary ones without a copy."""
    from scapy.layers.inet import TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import PcapWriter

    client, lb, backend = "02:00:00:00:00:01", "02:00:00:00:00:0a", "02:00:00:00:00:11"
    w = PcapWriter(str(path), linktype=1, sync=False)
    for i in range(n):
        ip = IPv6(src=f"2001:db8:1::{i + 1:x}", dst="2001:db8::25", hlim=60)
        seg = TCP(sport=30000 + i, dport=25, flags="S", seq=1000 + i, window=(i * 977) % 65536)
        for k, (src, dst) in enumerate(((client, lb), (lb, backend))):
            if k and i >= n - 5:
                continue
            f = Ether(src=src, dst=dst) / ip / seg
            f.time = T0 + i * 0.001 + k * 0.00002
            w.write(f)
    w.close()
    return path


def test_an_ipv6_syn_frozen_between_it_and_its_forwarded_copy_still_knows_the_copy(tmp_path, monkeypatch):
    """A lone IPv6 SYN frozen by a sweep keeps its packet signature's window (IPv6 has no IP ID
    to sign with, and the note does not hold the window: the frozen form carries it), so the load
    balancer's copy that comes after the sweep is counted as a forwarded copy, as the Python
    tracker counts it, at every sweep interval."""
    path = _forwarded_v6_syns(tmp_path / "fwd6.pcap", 200)
    for every in (1, 2, 7):
        recs = _both(path, every, monkeypatch)
        assert len(recs) == 200
        assert sum(r.orig_forwarded == 1 for r in recs) == 195, every
        assert all(r.ip_version == 6 and r.history in ("S", "SW") for r in recs)
