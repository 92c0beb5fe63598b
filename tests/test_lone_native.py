"""The C tracker's lone-SYN lane (track/_conntrack.c `lane`, `lone()`) packs exactly the rows
track/lone.py's `row_of` packs from the records the same tracker makes without the lane, and
nothing else changes: differential, C against the reference, on every sample capture and path set,
Zeek's and the shared real captures, generated floods, relays and sessions (bench/gen.py), and
hand-made captures of the edges (each also asserts how many rows and non-rows it must give, so that
the comparison can fail both ways: a lane that packs nothing, or packs too much, is caught).

The harness mirrors track/pipeline.py's _loop: the C walker feeds the tracker through its sink,
Python decodes the frames the walker hands back, and the tracker is swept at the same frames; each
drain's tuples become records through ConnTracker._take_batch, the code the pipeline uses."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import CAPTURES, REAL, ROOT

_native = pytest.importorskip("dsrdiag.track._conntrack", reason="the C extension was not built (no compiler)")

from dsrdiag.track import lone  # noqa: E402

ZEEK = ROOT.parent / "shared" / "captures-zeek"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".gz")
T0 = 1_700_000_000
VIP, VIP6 = "192.0.2.25", "2001:db8::25"
CMAC, LBMAC, BEMAC = "02:00:00:00:00:01", "02:00:00:00:00:0a", "02:00:00:00:00:11"


def _run(path: Path, ports: tuple[int, ...], lane: int, sweep_every: int | None = None):
    """(records, rows, peak frozen entries, rows per drain) of one capture through the C tracker
    with `lane`, fed as track/pipeline.py's _loop feeds it."""
    from dsrdiag.capture.pcapfile import Capture
    from dsrdiag.decode.packet import KIND_TCP, Anomaly, decode
    from dsrdiag.track.conn import TAKE, ConnTracker
    from dsrdiag.track.pipeline import SWEEP_EVERY

    every = sweep_every or SWEEP_EVERY
    cap = Capture(str(path), ports)
    conns = ConnTracker(str(path), "v", frozenset(ports), "c")
    native = conns.native
    native.lane = lane
    records: list = []
    rows: list[bytes] = []
    shim = SimpleNamespace(capture=str(path), vantage="v", native=native, done=SimpleNamespace(add_all=records.extend))
    peak = [0]

    def take(batch):
        while True:  # the lane's rule: more() again while the batch or the rows were not empty
            ConnTracker._take_batch(shim, batch)
            got = native.lone()
            assert len(got) % lone.SIZE == 0 and len(got) <= 4 * 1024 * 1024 + lone.SIZE
            if got:
                rows.append(got)
            if not batch and not got:
                break
            batch = native.more(TAKE)
        assert native.pending == 0

    portset = conns.ports
    next_sweep = every
    try:
        for fr in cap.frames(conns.sink, next_sweep):
            p = decode(fr, portset)
            if p is None or type(p) is Anomaly:
                continue
            if p.kind == KIND_TCP:
                conns.packet(p)
            if fr[0] >= next_sweep:
                next_sweep = fr[0] + every
                peak[0] = max(peak[0], native.frozen)
                take(native.sweep(TAKE))
                peak[0] = max(peak[0], native.frozen)
                if cap.walker is not None:
                    cap.walker.next_sweep = next_sweep
        peak[0] = max(peak[0], native.frozen)
        take(native.finish_all(TAKE))
    finally:
        cap.close()
    return records, b"".join(rows), peak[0], rows


def _num(c) -> int:
    return int(c.uid.rsplit(":C", 1)[1])


def _differential(path: Path, ports: tuple[int, ...] = (25,), sweep_every: int | None = None, ordered: bool = False):
    """Run both lanes; assert the lane's contract; return (rows, non-rows, peak frozen).

    The order a sweep() or finish_all() hands connections over is the order of the tracker's hash
    table, whose key is random per tracker: two runs over the same frames differ in it. So each run's
    output is compared in uid order (the uid's number is given by packet order: the same in both
    runs) unless `ordered` (a capture whose drains do not depend on the table: exact order)."""
    ref, none, _, _ = _run(path, ports, 0, sweep_every)
    assert none == b"", "lane 0 must write no row"
    got, rows, peak, _ = _run(path, ports, 1, sweep_every)
    split = [rows[i:i + lone.SIZE] for i in range(0, len(rows), lone.SIZE)]
    if not ordered:
        ref, got = sorted(ref, key=_num), sorted(got, key=_num)
        split.sort(key=lambda r: lone.KEY.unpack_from(r)[0])
    want = [r for r in map(lone.row_of, ref) if r is not None]
    assert split == want, "rows differ from row_of(records)"
    assert got == [c for c in ref if lone.row_of(c) is None], "the records left as tuples differ"
    blocked = list(lone.Block(b"".join(split), str(path), "v"))
    assert blocked == [c for c in ref if lone.row_of(c) is not None], "a row does not give its record back"
    return len(want), len(got), peak


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES)) if root.is_dir() else []


SAMPLES = _files(CAPTURES)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: str(p.relative_to(CAPTURES)))
def test_the_lane_packs_exactly_the_lone_syns_of_every_sample_capture(path):
    _differential(path)


def test_the_sample_captures_have_both_lone_syns_and_other_connections():
    """The samples above are not all one kind: some of their connections are rows, most are not."""
    rows = others = 0
    for name in ("syn_unanswered.pcap", "healthy.pcap", "paths/fw_drop_syn/client.pcap"):
        r, o, _ = _differential(CAPTURES / name)
        rows, others = rows + r, others + o
    assert rows > 0 and others > 0


def _service_ports(path: Path) -> tuple[int, ...]:
    from tests.test_native_tracker import _service_ports

    return _service_ports(path)


SHARED = _files(ZEEK) + _files(REAL)


@pytest.mark.parametrize("path", SHARED, ids=lambda p: p.name)
def test_the_lane_packs_exactly_the_lone_syns_of_zeek_and_real_captures(path):
    _differential(path, _service_ports(path))


@pytest.mark.skipif(not (REAL / "chrissanders-synscan.pcapng").exists(), reason="the shared real captures are absent")
def test_a_real_syn_scan_gives_rows_and_its_answered_probes_stay_records():
    rows, others, _ = _differential(REAL / "chrissanders-synscan.pcapng", _service_ports(REAL / "chrissanders-synscan.pcapng"))
    assert rows > 50 and others > 0  # unanswered probes are rows; the ports that answered (RST, SYN-ACK) are not


def _generate(tmp_path: Path, shape: str, count: int, fmt: str = "pcap") -> Path:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from gen import file_name, generate
    finally:
        sys.path.pop(0)
    path = tmp_path / file_name(shape, count, fmt)
    generate(path, shape, count, fmt)
    return path


@pytest.mark.parametrize("shape,count,fmt,rows_expected,others_expected", [
    ("syn", 3000, "pcap", True, False),
    ("syn", 1500, "sll", True, False),
    ("syn", 1500, "pcapng", True, False),
    ("hash-random", 1500, "pcap", True, False),
    ("sessions", 150, "pcap", False, True),
    ("relay", 6000, "pcap", None, True),
])
def test_the_lane_packs_exactly_the_lone_syns_of_generated_floods_relays_and_sessions(tmp_path, shape, count, fmt,
                                                                                        rows_expected, others_expected):
    path = _generate(tmp_path, shape, count, fmt)
    for every in (None, 300):  # the pipeline's sweeps, and sweeps every 300 frames (attempts frozen between them)
        rows, others, peak = _differential(path, (25,), every)
        if rows_expected is not None:
            assert (rows > 0) == rows_expected
        assert (others > 0) == others_expected
        if shape == "syn" and every:
            assert peak > 0, "no attempt was frozen: the frozen path was not exercised"
    if shape == "syn":
        assert rows == count


def test_a_flood_larger_than_the_row_bound_comes_out_whole_in_bounded_drains(tmp_path):
    """50k lone SYNs finished at once (5.2 MB of rows): one drain stops at the bound (4 MiB), the
    rest comes with more(); every attempt is one row, none lost or repeated."""
    path = _generate(tmp_path, "syn", 50_000)
    records, rows, _, drains = _run(path, (25,), 1)
    assert records == []
    assert len(rows) == 50_000 * lone.SIZE
    assert len(drains) >= 2 and max(map(len, drains)) <= 4 * 1024 * 1024 + lone.SIZE
    nums = sorted(t[0] for t in lone.ROW.iter_unpack(rows))
    assert nums == list(range(1, 50_001))


# ---- hand-made edges ------------------------------------------------------------------------

def _syn(sport, t, flags="S", seq=1000, payload=b"", v6=False, dst=None, src=None, ttl=57, **ip):
    from scapy.all import IP, TCP, Ether, IPv6, Raw

    l3 = (IPv6(src=src or "2001:db8::c1", dst=dst or VIP6, hlim=ttl) if v6
          else IP(src=src or "198.51.100.7", dst=dst or VIP, ttl=ttl, **ip))
    p = Ether(src=CMAC, dst=LBMAC) / l3 / TCP(sport=sport, dport=25, flags=flags, seq=seq, window=1024)
    if payload:
        p = p / Raw(payload)
    p.time = T0 + t
    return p


def _answer(sport, t, flags, seq=5000, ack=1001, v6=False):
    from scapy.all import IP, TCP, Ether, IPv6

    l3 = IPv6(src=VIP6, dst="2001:db8::c1") if v6 else IP(src=VIP, dst="198.51.100.7", ttl=64)
    p = Ether(src=LBMAC, dst=CMAC) / l3 / TCP(sport=25, dport=sport, flags=flags, seq=seq, ack=ack, window=1024)
    p.time = T0 + t
    return p


def _edge_packets(name):
    """(packets, rows, non-rows): every capture also holds one plain lone SYN (port 40000), a row."""
    from scapy.all import IP, TCP, Dot1Q, Ether

    plain = [_syn(40000, 0.0)]
    if name == "syn_with_payload":
        return plain + [_syn(40001, 0.1, payload=b"EHLO early\r\n")], 1, 1
    if name == "syn_ece_cwr":
        return plain + [_syn(40001, 0.1, flags="SEC")], 2, 0
    if name == "synack_first":
        return plain + [_answer(40001, 0.1, "SA")], 1, 1
    if name == "syn_retransmitted":  # the same SYN again: one attempt of two packets (history still "S")
        return plain + [_syn(40001, 0.1), _syn(40001, 1.1)], 1, 1
    if name == "syn_retried_new_seq":  # a new sequence number: the 4-tuple reused, two lone attempts
        return plain + [_syn(40001, 0.1, seq=7), _syn(40001, 1.1, seq=9)], 3, 0
    if name == "syn_then_rst":
        return plain + [_syn(40001, 0.1), _answer(40001, 0.2, "RA", seq=0)], 1, 1
    if name == "syn_answered":
        return plain + [_syn(40001, 0.1), _answer(40001, 0.2, "SA")], 1, 1
    if name == "ipv6_syns":
        return plain + [_syn(40001 + i, 0.1 * i, v6=True) for i in range(3)], 4, 0
    if name == "ipv6_syn_answered":
        return plain + [_syn(40001, 0.1, v6=True), _answer(40001, 0.2, "SA", v6=True)], 1, 1
    if name == "syn_forwarded_by_the_lb":  # the LB re-sends the same SYN to a back-end: a forwarded copy
        p = _syn(40001, 0.1)
        q = p.copy()
        q[Ether].src, q[Ether].dst = LBMAC, BEMAC
        q.time = p.time + 0.0001
        return plain + [p, q], 1, 1
    if name == "syn_in_a_vlan":
        p = _syn(40001, 0.1)
        v = Ether(src=CMAC, dst=LBMAC) / Dot1Q(vlan=7) / p[IP]
        v.time = p.time
        return plain + [v], 2, 0
    if name == "timestamp_steps_back":  # timed at the capture clock, its note keeps its own stamp
        return plain + [_syn(40001, 3.0), _syn(40002, 1.0)], 3, 0
    if name == "stamped_far_ahead_last":  # held, then released by finish_all
        return plain + [_syn(40001, 0.1), _syn(40002, 7200.0)], 3, 0
    if name == "ends_right_after_a_syn":
        return plain + [_syn(40001, 0.1), _answer(40001, 0.2, "SA"), _syn(40002, 0.3)], 2, 1
    if name == "syn_then_client_ack":
        ack = _syn(40001, 0.2, flags="A", seq=1001)
        return plain + [_syn(40001, 0.1), ack], 1, 1
    if name == "syn_with_ack_flag_only_to_port":  # a bare ACK first: not a SYN attempt at all
        return plain + [_syn(40001, 0.1, flags="A")], 1, 1
    if name == "syn_then_fin":
        return plain + [_syn(40001, 0.1), _syn(40001, 0.2, flags="F", seq=1001)], 1, 1
    if name == "syn_no_ip_id":  # IPv4 id 0 is an id, not an absence
        return plain + [_syn(40001, 0.1, id=0)], 2, 0
    raise AssertionError(name)


EDGES = ["syn_with_payload", "syn_ece_cwr", "synack_first", "syn_retransmitted", "syn_retried_new_seq", "syn_then_rst",
         "syn_answered", "ipv6_syns", "ipv6_syn_answered", "syn_forwarded_by_the_lb", "syn_in_a_vlan",
         "timestamp_steps_back", "stamped_far_ahead_last", "ends_right_after_a_syn", "syn_then_client_ack",
         "syn_with_ack_flag_only_to_port", "syn_then_fin", "syn_no_ip_id"]


@pytest.mark.parametrize("name", EDGES)
def test_edge_captures_give_rows_for_lone_syns_and_records_for_the_rest(tmp_path, name):
    from scapy.all import wrpcap

    packets, rows_want, others_want = _edge_packets(name)
    path = tmp_path / f"{name}.pcap"
    wrpcap(str(path), packets)
    rows, others, _ = _differential(path)
    assert (rows, others) == (rows_want, others_want)


def test_a_syn_whose_stamp_steps_back_keeps_the_clock_as_first_time_and_its_own_stamp_in_the_row(tmp_path):
    from scapy.all import wrpcap

    packets, _, _ = _edge_packets("timestamp_steps_back")
    path = tmp_path / "back.pcap"
    wrpcap(str(path), packets)
    _, rows, _, _ = _run(path, (25,), 1)
    by_port = {t[7]: t for t in lone.ROW.iter_unpack(rows)}
    back = by_port[40002]
    assert back[2] == (T0 + 3) * 10**9 and back[4] == (T0 + 1) * 10**9  # first_ts: the clock; note: its stamp


def test_rows_come_in_the_order_the_tuples_would_have_had(tmp_path):
    """One 4-tuple reused by SYN after SYN (a new sequence number each time: Zeek's IsReuse ends the
    previous attempt at the packet, so the finished queue's order is the packets', whatever the
    hash key): lone attempts and ones that carried data alternate, and the rows, in order, are
    row_of of the lone ones among the lane-0 records in the order those came."""
    from scapy.all import wrpcap

    packets = [_syn(40000, 0.1 * i, seq=1000 * (i + 1), payload=b"x" if i % 3 == 1 else b"") for i in range(12)]
    path = tmp_path / "reuse.pcap"
    wrpcap(str(path), packets)
    for every in (None, 2):  # sweeps every 2 frames: the open attempt frozen and thawed between packets
        rows, others, _ = _differential(path, sweep_every=every, ordered=True)
        assert (rows, others) == (8, 4)
    _, data, _, _ = _run(path, (25,), 1)
    assert [t[9] for t in lone.ROW.iter_unpack(data)] == [1000 * (i + 1) for i in range(12) if i % 3 != 1]


@pytest.mark.parametrize("link", ["raw", "sll", "sll2"])
def test_captures_without_macs_or_with_only_the_source_mac_give_rows_with_the_presence_bits(tmp_path, link):
    """DLT_RAW: no MAC at all (bits 0); Linux cooked SLL/SLL2: the sender's MAC only (bit 0)."""
    from scapy.all import wrpcap

    from tests.conftest import rewrite_as_sll

    packets, rows_want, others_want = _edge_packets("syn_answered")
    packets = packets + [_syn(40100, 0.5), _syn(40101, 0.6, v6=True)]
    eth = tmp_path / "eth.pcap"
    path = tmp_path / f"{link}.pcap"
    if link == "raw":
        raw = []
        for p in packets:
            q = p.payload.copy()
            q.time = p.time
            raw.append(q)
        wrpcap(str(path), raw, linktype=101)
    else:
        wrpcap(str(eth), packets)
        rewrite_as_sll(eth, path, 1 if link == "sll" else 2)
    rows, others, _ = _differential(path)
    assert (rows, others) == (rows_want + 2, others_want)
    _, data, _, _ = _run(path, (25,), 1)
    has = {t[-1] for t in lone.ROW.iter_unpack(data)}
    assert has == ({0} if link == "raw" else {1})


def test_a_row_holds_the_syns_fields_in_rows_order(tmp_path):
    """One hand-made SYN's row, field by field (not only equal to row_of: equal to the packet)."""
    from scapy.all import wrpcap

    path = tmp_path / "one.pcap"
    wrpcap(str(path), [_syn(40000, 0.25, seq=123456789, flags="SEC", id=4321, ttl=51)])
    recs, rows, _, _ = _run(path, (25,), 1)
    assert recs == [] and len(rows) == lone.SIZE
    (num, frame, first, last, nts, ci, si, cport, sport, seq, ack, ipid, smac, dmac, ttl, flags, alen,
     has) = lone.ROW.unpack(rows)
    ts = (T0 * 10**9) + 250_000_000
    assert (num, frame, first, last, nts) == (1, 1, ts, ts, ts)
    assert ci == bytes([198, 51, 100, 7]) + bytes(12) and si == bytes([192, 0, 2, 25]) + bytes(12)
    assert (cport, sport, seq, ack, ipid, ttl, flags, alen, has) == (40000, 25, 123456789, 0, 4321, 51, 0xC2, 4, 3)
    assert smac == bytes.fromhex(CMAC.replace(":", "")) and dmac == bytes.fromhex(LBMAC.replace(":", ""))


def test_the_lane_is_off_by_default_and_takes_only_0_or_1():
    t = _native.Tracker(frozenset((25,)), lambda b: None)
    assert t.lane == 0 and t.lone() == b"" and t.pending == 0
    t.lane = 1
    assert t.lane == 1
    for bad in (2, -1):
        with pytest.raises(ValueError):
            t.lane = bad
    with pytest.raises(TypeError):
        t.lane = "1"
    with pytest.raises(TypeError):
        del t.lane
    assert t.lane == 1


def test_lane_0_writes_no_row_for_a_flood(tmp_path):
    """Lane 0 is today's tracker: every attempt a tuple, lone() always empty."""
    path = _generate(tmp_path, "syn", 500)
    records, rows, _, drains = _run(path, (25,), 0)
    assert len(records) == 500 and rows == b"" and drains == []
    assert all(lone.row_of(c) is not None for c in records)

