"""The C tracker (track/_conntrack.c) concludes exactly what the Python tracker (track/conn.py, the
reference: DSRDIAG_TRACKER=python) concludes: same records, field for field, on every sample capture,
on the shared real captures, and on dialogues whose segments arrive reordered, duplicated,
overlapping or lost (the stream reassembly and gap rules). Frames reach the C tracker two ways,
from the C walker through its sink (plain TCP on Ethernet or Linux cooked SLL/SLL2, in pcap,
pcapng or gzip) and from Python's decoder (other link types, tunnels, VLAN stacks); the captures
below take both."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.conftest import CAPTURES, REAL

_native = pytest.importorskip("dsrdiag.track._conntrack", reason="the C extension was not built (no compiler)")


def _both(path: Path, ports: tuple[int, ...], monkeypatch):
    from dsrdiag.track.pipeline import track_capture

    monkeypatch.delenv("DSRDIAG_TRACKER", raising=False)
    c = track_capture(str(path), "v", ports)
    monkeypatch.setenv("DSRDIAG_TRACKER", "python")
    py = track_capture(str(path), "v", ports)
    monkeypatch.delenv("DSRDIAG_TRACKER")
    return c, py


def _assert_same(c, py):
    cr, pr = list(c.connections), list(py.connections)
    assert len(cr) == len(pr)
    for a, b in zip(cr, pr):
        assert a == b, f"{a.uid}: C tracker and Python tracker disagree"
    assert (c.first_ts_ns, c.last_ts_ns, c.frames, c.passed, c.damage, c.anomalies) == (
        py.first_ts_ns, py.last_ts_ns, py.frames, py.passed, py.damage, py.anomalies)


SAMPLES = sorted(p for p in CAPTURES.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz"))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: str(p.relative_to(CAPTURES)))
def test_c_tracker_gives_the_records_of_the_python_tracker_on_every_sample_capture(path, monkeypatch):
    c, py = _both(path, (25,), monkeypatch)
    _assert_same(c, py)
    if path.name != "damaged.pcap":
        assert len(c.connections) > 0 or "arp" in path.name


def _service_ports(path: Path) -> tuple[int, ...]:
    """The lower port of every TCP conversation (a service port, mostly), at most 40 of them."""
    from scapy.all import TCP, PcapReader  # test-only: a second, independent decoder

    ports: set[int] = set()
    with PcapReader(str(path)) as r:
        for i, pkt in enumerate(r):
            if i > 20_000 or len(ports) >= 40:
                break
            if TCP in pkt:
                ports.add(min(pkt[TCP].sport, pkt[TCP].dport))
    return tuple(sorted(ports)) or (25,)


REALS = sorted(p for p in REAL.glob("*") if p.suffix in (".pcap", ".pcapng")) if REAL.is_dir() else []


@pytest.mark.parametrize("path", REALS, ids=lambda p: p.name)
def test_c_tracker_gives_the_records_of_the_python_tracker_on_real_captures(path, monkeypatch):
    ports = _service_ports(path)
    c, py = _both(path, ports, monkeypatch)
    _assert_same(c, py)


def _dialogue_packets(rng: random.Random, client_port: int, v6: bool):
    """One SMTP dialogue to the VIP, its segments shuffled, duplicated, re-cut and lost at random."""
    from scapy.all import IP, TCP, Ether, IPv6

    cmac, smac = "02:00:00:00:00:01", "02:00:00:00:00:02"
    if v6:
        c_ip, s_ip, L3 = "2001:db8::10", "2001:db8::25", IPv6
    else:
        c_ip, s_ip, L3 = "192.0.2.10", "198.51.100.25", IP
    cseq, sseq = rng.randrange(1 << 32), rng.randrange(1 << 32)
    lines = [(False, b"220 mx.example.net ESMTP\r\n"), (True, b"EHLO client.example\r\n"),
             (False, b"250-mx.example.net\r\n250-PIPELINING\r\n250 STARTTLS\r\n"), (True, b"MAIL FROM:<a@example.org>\r\n"),
             (False, b"250 ok\r\n"), (True, b"RCPT TO:<b@example.net>\r\n"), (False, b"250 ok\r\n"), (True, b"DATA\r\n"),
             (False, b"354 go\r\n"), (True, b"Subject: x\r\n\r\n" + b"y" * rng.randrange(0, 3000) + b"\r\n.\r\n"),
             (False, b"250 queued\r\n"), (True, b"QUIT\r\n"), (False, b"221 bye\r\n")]

    def seg(from_client, seq, ack, flags, payload=b""):
        if from_client:
            e, l3, t = Ether(src=cmac, dst=smac), L3(src=c_ip, dst=s_ip), TCP(sport=client_port, dport=25)
        else:
            e, l3, t = Ether(src=smac, dst=cmac), L3(src=s_ip, dst=c_ip), TCP(sport=25, dport=client_port)
        t.seq, t.ack, t.flags, t.window = seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, flags, rng.choice((65535, 65535, 65535, 0))
        return e / l3 / t / payload

    out = [seg(True, cseq, 0, "S"), seg(False, sseq, cseq + 1, "SA"), seg(True, cseq + 1, sseq + 1, "A")]
    cseq, sseq = cseq + 1, sseq + 1
    for from_client, data in lines:
        pieces, pos = [], 0
        while pos < len(data):  # cut into segments of random size
            n = rng.randint(1, 1460)
            pieces.append((pos, data[pos:pos + n]))
            pos += n
        base, ack = (cseq, sseq) if from_client else (sseq, cseq)
        segs = [seg(from_client, base + off, ack, "PA", chunk) for off, chunk in pieces]
        roll = rng.random()
        if roll < 0.2:
            rng.shuffle(segs)  # out of order
        elif roll < 0.3 and segs:
            segs.insert(rng.randrange(len(segs) + 1), segs[rng.randrange(len(segs))])  # a retransmission
        elif roll < 0.4 and len(data) > 4:
            o = rng.randrange(1, len(data) - 2)  # an overlapping re-cut of the same bytes
            segs.append(seg(from_client, base + o, ack, "PA", data[o:]))
        elif roll < 0.47 and segs:
            segs.pop(rng.randrange(len(segs)))  # lost
        out.extend(segs)
        if from_client:
            cseq += len(data)
        else:
            sseq += len(data)
        out.append(seg(not from_client, ack, (cseq if from_client else sseq), "A"))
    end = rng.random()
    if end < 0.6:
        out += [seg(True, cseq, sseq, "FA"), seg(False, sseq, cseq + 1, "FA"), seg(True, cseq + 1, sseq + 1, "A")]
    elif end < 0.8:
        out.append(seg(rng.random() < 0.5, cseq, sseq, "R"))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_c_tracker_reassembles_reordered_duplicated_overlapping_and_lost_segments_like_python(seed, tmp_path, monkeypatch):
    from scapy.all import wrpcap
    from scapy.utils import PcapNgWriter

    rng = random.Random(seed)
    packets = []
    for i in range(40):
        packets += _dialogue_packets(rng, 40000 + i, v6=i % 4 == 0)
    ts = 1_700_000_000.0
    for p in packets:
        ts += rng.choice((0.0001, 0.002, 0.03))
        p.time = ts
    path = tmp_path / "reordered.pcap"
    wrpcap(str(path), packets)
    c, py = _both(path, (25,), monkeypatch)
    _assert_same(c, py)
    recs = list(c.connections)
    assert len(recs) == 40
    assert any(r.missed_bytes for r in recs) and any("T" in r.history or "t" in r.history for r in recs)
    assert sum(1 for r in recs if r.smtp and r.smtp.helo == "client.example") > 20
    # the same packets through Python's decoder (pcapng): the C tracker fed from Python agrees too
    ng = tmp_path / "reordered.pcapng"
    with PcapNgWriter(str(ng)) as w:
        for p in packets:
            w.write(p)
    c2, py2 = _both(ng, (25,), monkeypatch)
    _assert_same(c2, py2)
    assert [r.history for r in c2.connections] == [r.history for r in recs]


def _hostile_stream(rng: random.Random) -> list:
    """One dialogue's chunks: (is_orig, bytes or None for a gap, frame, ts), cut at random places,
    with what trips parsers: latin-1 whitespace and letters, bare CR/LF, long lines, DATA terminators
    split across chunks, pipelining, PROXY v1/v2 headers whole, partial or malformed."""
    import struct as _struct

    ws = [b" ", b"\t", b"\r", b"\x1c", b"\x1f", b"\x85", b"\xa0", b"\x0b"]
    verbs = [b"EHLO", b"HELO", b"ehlo", b"STARTTLS", b"StartTLS", b"XCLIENT", b"DATA", b"MAIL", b"X-FOO",
             b"-", b"E\xdfLO", b"TOOLONGVERBXXXXXX", b"QUIT", b"RSET"]
    words = [b"STARTTLS", b"starttls", b"XCLIENT", b"STARTTL\xdf", b"PIPELINING", b"", b"SIZE 1000"]

    def junk(n):
        return bytes(rng.choice((rng.randrange(256), 0x20, 0x41 + rng.randrange(26), 0xa0, 0x85, 0x0d)) for _ in range(n))

    client, server = [], []
    first = rng.random()
    if first < 0.15:
        client.append(b"PROXY TCP4 203.0.113.7 198.51.100.25 " + rng.choice((b"40000", b"+12", b" 7", b"1_0", b"x")) + b" 25\r\n")
    elif first < 0.25:
        body = bytes([203, 0, 113, 9, 198, 51, 100, 25]) + _struct.pack(">HH", 41000, 25)
        hdr = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + _struct.pack(">H", len(body)) + body
        client.append(hdr[: rng.randrange(len(hdr) + 1)] if rng.random() < 0.2 else hdr)
    elif first < 0.3:
        client.append(b"PROXY UNKNOWN\r\n" if rng.random() < 0.5 else b"PRO" + junk(5))
    server.append(b"220" + rng.choice((b" ", b"-", b"")) + rng.choice(ws) + b"mx\xe9.example ESMTP" + rng.choice(ws) + b"\r\n")
    for _ in range(rng.randrange(1, 12)):
        v = rng.choice(verbs)
        arg = rng.choice((b"", b" " + junk(rng.randrange(0, 40)), b" client.example", b" " + junk(300), b" " + junk(600)))
        client.append(rng.choice((b"", rng.choice(ws))) + v + arg + rng.choice((b"\r\n", b"\n", b"\r\r\n")))
        code = rng.choice((b"250", b"354", b"220", b"221", b"199", b"600", b"25", b"abc", b"250"))
        sep = rng.choice((b" ", b"-", b"x", b""))
        server.append(code + sep + rng.choice(words) + rng.choice((b"", b" " + junk(rng.randrange(0, 30)), b" " + junk(rng.randrange(190, 260))))
                      + b"\r\n")
        if v == b"DATA" and rng.random() < 0.7:
            client.append(junk(rng.randrange(0, 200)) + rng.choice((b"\r\n.\r\n", b"\r\n.\r", b".\r\n", b"")))
        if rng.random() < 0.05:
            client.append(junk(MAX_LINE_TEST + rng.randrange(10)))  # a line too long for SMTP
    stream, frame, ts = [], 0, 1_000_000
    pending = [(False, b) for b in server[:1]] + [x for pair in zip(((True, b) for b in client), ((False, b) for b in server[1:])) for x in pair]
    if client[:1] and first < 0.3:
        pending.insert(0, (True, client[0]))
    for is_orig, data in pending:
        while data:  # cut at random, sometimes one byte at a time
            n = rng.choice((1, 2, 3, 7, 64, len(data)))
            frame += 1
            ts += 1000
            stream.append((is_orig, data[:n], frame, ts))
            data = data[n:]
        if rng.random() < 0.03:
            stream.append((is_orig, None, frame, ts))  # a gap: the partial line is dropped
    return stream


MAX_LINE_TEST = 4097


@pytest.mark.parametrize("seed", range(8))
def test_c_smtp_follower_learns_what_the_python_follower_learns_from_hostile_streams(seed):
    from dsrdiag.decode.proxyproto import parse_proxy
    from dsrdiag.track.smtp import SmtpFollower, dialogue

    rng = random.Random(1000 + seed)
    learnt = 0
    for _ in range(400):
        stream = _hostile_stream(rng)
        py = SmtpFollower()
        for is_orig, data, frame, ts in stream:
            if data is None:
                py.gap(is_orig)
            else:
                py.data(is_orig, data, frame, ts)
        want = py.record(0)
        got = dialogue(*_native.follow(stream, parse_proxy))
        assert got == want, stream
        learnt += bool(want and (want.commands or want.proxy))
    assert learnt > 200  # the streams were SMTP enough to teach both something


# ---- hostile sequence numbers: the C tracker against the Python reference ----------------------
def _smtp_2_31_packets():
    """Handshake, one client line, then a client segment exactly 2^31 past the next expected byte:
    seq_delta() is -2^31 there, whose negation overflows 32 bits."""
    from scapy.all import IP, TCP, Ether

    c, s, isn, sisn = "192.0.2.10", "198.51.100.25", 0x10000000, 0x20000000
    e1, e2 = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02"), Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    line = b"EHLO client.example\r\n"
    pkts = [
        e1 / IP(src=c, dst=s) / TCP(sport=40000, dport=25, flags="S", seq=isn),
        e2 / IP(src=s, dst=c) / TCP(sport=25, dport=40000, flags="SA", seq=sisn, ack=isn + 1),
        e1 / IP(src=c, dst=s) / TCP(sport=40000, dport=25, flags="A", seq=isn + 1, ack=sisn + 1),
        e1 / IP(src=c, dst=s) / TCP(sport=40000, dport=25, flags="PA", seq=isn + 1, ack=sisn + 1) / line,
        e1 / IP(src=c, dst=s) / TCP(sport=40000, dport=25, flags="PA", seq=(isn + 1 + len(line) + (1 << 31)) & 0xFFFFFFFF,
                                    ack=sisn + 1) / (b"MAIL FROM:<a@example.org>\r\n" * 4),
    ]
    for i, p in enumerate(pkts):
        p.time = 1_700_000_000 + i / 1000
    return pkts


_RUN_BOTH = """
import sys
from dsrdiag.track.pipeline import track_capture
for tracker in ("c", "python"):
    recs = track_capture(sys.argv[1], "v", (25,), tracker=tracker)
    print(tracker, [tuple(c[:25]) for c in recs.connections])
"""


def test_segment_exactly_2_31_past_the_expected_byte_finishes_and_both_trackers_agree(tmp_path):
    import subprocess
    import sys

    from scapy.all import wrpcap

    path = tmp_path / "seq-2-31.pcap"
    wrpcap(str(path), _smtp_2_31_packets())
    # a separate process with a timeout: the bug this guards against was an endless loop (or a crash)
    env = {"PYTHONPATH": str(Path(__file__).resolve().parent.parent), "PATH": "/usr/bin:/bin"}
    p = subprocess.run([sys.executable, "-c", _RUN_BOTH, str(path)], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    lines = dict(line.split(" ", 1) for line in p.stdout.splitlines())
    assert lines["c"] == lines["python"]
    assert "ShAD" in lines["c"]


def test_segment_exactly_2_31_past_is_not_delivered_to_the_smtp_follower():
    from dsrdiag.track.conn import ConnTracker
    from tests.test_conn_zeek import pkt
    from dsrdiag.decode.tcp import ACK, PSH, SYN

    for tracker in ("c", "python"):
        t = ConnTracker("x", "v", frozenset((25,)), tracker)
        a, b = 0xFFFFFFF0, 0x7FFFFFF0  # the client's stream wraps at 2^32
        t.packet(pkt(1, ">", SYN, a))
        t.packet(pkt(2, "<", SYN | ACK, b, a + 1))
        t.packet(pkt(3, ">", ACK, a + 1, b + 1))
        t.packet(pkt(4, ">", PSH | ACK, (a + 1) & 0xFFFFFFFF, b + 1, b"EHLO one\r\n"))
        t.packet(pkt(5, ">", PSH | ACK, (a + 11 + (1 << 31)) & 0xFFFFFFFF, b + 1, b"EHLO two\r\n"))
        (c,) = t.finish_all()
        assert c.smtp.helo == "one", tracker


def _edge_packet(frame, direction, flags, seq, ack, data, win):
    from tests.test_conn_zeek import pkt

    return pkt(frame, direction, flags, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, data, win)


_EDGES = (0, 1, 2, 5, 8, 1460, 65535, 1048575, 1048576, 1048577, (1 << 31) - 1, 1 << 31, (1 << 31) + 1,
          (1 << 32) - 1, (1 << 32) - 8, -1, -8)


def test_c_and_python_trackers_agree_on_sequence_arithmetic_edges():
    """Differential fuzz (bounded, derandomised): ISNs near the 2^32 wrap, segments and ACKs at
    offsets exactly 2^31, 2^31 +- 1, the 1 MiB 'too large' edge and the window edge, in any order,
    with SYN/FIN/RST mixed in: the two trackers give the same records and both finish."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from dsrdiag.decode.tcp import ACK, FIN, PSH, RST, SYN
    from dsrdiag.track.conn import ConnTracker

    flag_sets = (SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST, RST | ACK, SYN | FIN, FIN | RST | ACK)
    step = st.tuples(st.sampled_from(">><"), st.sampled_from(flag_sets), st.sampled_from(_EDGES), st.sampled_from(_EDGES),
                     st.sampled_from((b"", b"", b"EHLO x\r\n", b"y" * 300)), st.sampled_from((65535, 0, 1)))

    @settings(max_examples=300, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.sampled_from((0, 0xFFFFFFFF, 0xFFFFFF00, 0x7FFFFFFF, 0x80000000)),
           st.sampled_from((0, 0xFFFFFFFE, 0x7FFFFFFF)), st.lists(step, min_size=1, max_size=14))
    def check(isn_c, isn_s, steps):
        out = {}
        for tracker in ("c", "python"):
            t = ConnTracker("x", "v", frozenset((25,)), tracker)
            for i, (d, flags, so, ao, data, win) in enumerate(steps, 1):
                seq, ack = (isn_c + so, isn_s + ao) if d == ">" else (isn_s + so, isn_c + ao)
                t.packet(_edge_packet(i, d, flags, seq, ack, data, win))
            out[tracker] = list(t.finish_all())
        assert out["c"] == out["python"]

    check()


# ---- neighbour state: exact counts, bounded memory ------------------------------------------------
def _arp_reply(frame, ip: bytes, mac: bytes):
    from dsrdiag.decode.arp import REPLY
    from dsrdiag.decode.packet import KIND_ARP, Packet

    p = Packet()
    p.frame, p.ts_ns, p.kind, p.src_mac, p.dst_mac, p.vlans = frame, frame * 1000, KIND_ARP, mac, b"\xff" * 6, ()
    p.op, p.sha, p.src, p.tha, p.dst = REPLY, mac, ip, b"\x00" * 6, bytes([192, 0, 2, 1])
    return p


def test_a_flapping_vip_mac_is_counted_exactly_and_sampled_boundedly():
    from dsrdiag.track.neighbours import MAX_CLAIMS_PER_IP, NeighbourWatch

    w = NeighbourWatch()
    vip, a, b = bytes([192, 0, 2, 25]), b"\x02\x00\x00\x00\x00\x0a", b"\x02\x00\x00\x00\x00\x0b"
    for i in range(10_000):
        w.packet(_arp_reply(i + 1, vip, a if i % 2 == 0 else b))
    t = w.table()
    assert t.mac_changes["192.0.2.25"] == 9_999
    assert t.claim_counts[("192.0.2.25", "02:00:00:00:00:0a")] == 5_000
    claims = t.claims["192.0.2.25"]
    assert len(claims) == MAX_CLAIMS_PER_IP
    assert claims[0].frame == 1 and claims[-1].frame == 10_000  # the start of the flap and its end


def test_a_steady_mac_is_not_counted_as_a_change():
    from dsrdiag.track.neighbours import NeighbourWatch

    w = NeighbourWatch()
    for i in range(100):
        w.packet(_arp_reply(i + 1, bytes([192, 0, 2, 25]), b"\x02\x00\x00\x00\x00\x0a"))
    t = w.table()
    assert t.mac_changes == {} and len(t.claims["192.0.2.25"]) == 1 and t.overflow == 0


def test_a_million_forged_replies_for_distinct_addresses_keep_memory_bounded():
    from dsrdiag.track.neighbours import MAX_IPS, NeighbourWatch

    w = NeighbourWatch()
    n = 1_000_000
    for i in range(n):
        w.packet(_arp_reply(i + 1, (0x0A000000 + i).to_bytes(4, "big"), (0x020000000000 + i).to_bytes(6, "big")))
    t = w.table()
    assert len(t.claims) == MAX_IPS and len(t.claim_counts) == MAX_IPS
    assert t.overflow == n - MAX_IPS  # every reply is counted, kept or not


# ---- timestamps that go wrong, headers-only captures: both trackers ------------------------------
def _conv(cport, isn, t0, lines=4):
    """One short SMTP-ish conversation: (time, scapy packet) in order."""
    from scapy.all import IP, TCP, Ether

    c, s, e1, e2 = "192.0.2.10", "198.51.100.25", Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02"), \
        Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    up = lambda f, seq, ack, d=b"": e1 / IP(src=c, dst=s) / TCP(sport=cport, dport=25, flags=f, seq=seq, ack=ack) / d
    down = lambda f, seq, ack, d=b"": e2 / IP(src=s, dst=c) / TCP(sport=25, dport=cport, flags=f, seq=seq, ack=ack) / d
    a, b = isn, 7000
    out = [up("S", a, 0), down("SA", b, a + 1), up("A", a + 1, b + 1)]
    a, b = a + 1, b + 1
    for i in range(lines):
        d = b"NOOP %d\r\n" % i
        out += [up("PA", a, b, d), down("PA", b, a + len(d), b"250 ok\r\n")]
        a, b = a + len(d), b + 8
    out += [up("FA", a, b), down("FA", b, a + 1), up("A", a + 1, b + 1)]
    return [(t0 + i * 0.5, p) for i, p in enumerate(out)]


def _write(path, timed, snaplen=65535):
    """A classic pcap written by hand: frames cut at `snaplen` keep their original length."""
    import struct

    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, 1))
        for t, p in timed:
            raw = bytes(p)
            f.write(struct.pack("<IIII", int(t), int(round((t % 1) * 1e6)), min(len(raw), snaplen), len(raw)) + raw[:snaplen])


def _both_trackers(path):
    from dsrdiag.track.pipeline import track_capture

    c, py = (track_capture(str(path), "v", (25,), tracker=t) for t in ("c", "python"))
    _assert_same(c, py)
    assert (c.time_steps, c.snaplen_cut) == (py.time_steps, py.snaplen_cut)
    return c


def test_one_packet_stamped_two_hours_ahead_splits_no_connection_and_is_counted(tmp_path):
    a, b = _conv(40001, 1000, 1_700_000_000.0), _conv(40002, 5000, 1_700_000_000.2)
    timed = sorted(a + b, key=lambda x: x[0])
    k = len(timed) // 2
    timed[k] = (timed[k][0] + 7200, timed[k][1])
    _write(tmp_path / "ahead.pcap", timed)
    r = _both_trackers(tmp_path / "ahead.pcap")
    conns = list(r.connections)
    assert [(c.client_port, c.history, c.conn_state) for c in sorted(conns, key=lambda c: c.client_port)] == [
        (40001, "ShADdFf", "SF"), (40002, "ShADdFf", "SF")]
    assert all(0 <= c.last_ts_ns - c.first_ts_ns < 60 * 10**9 for c in conns)
    assert (r.time_steps.outliers, r.time_steps.backwards) == (1, 0)
    assert abs(r.time_steps.largest_outlier_ns - 7200 * 10**9) < 10**9


def test_a_real_pause_moves_the_clock_and_is_not_counted(tmp_path):
    a, b = _conv(40001, 1000, 1_700_000_000.0), _conv(40002, 5000, 1_700_007_200.0)  # two hours apart, both whole
    _write(tmp_path / "pause.pcap", a + b)
    r = _both_trackers(tmp_path / "pause.pcap")
    assert [c.conn_state for c in r.connections] == ["SF", "SF"] and not r.time_steps


def test_reversed_timestamps_give_no_negative_duration_and_are_counted(tmp_path):
    timed = _conv(40001, 1000, 1_700_000_000.0)
    stamps = [t for t, _ in timed][::-1]
    _write(tmp_path / "reversed.pcap", [(t, p) for t, (_, p) in zip(stamps, timed)])
    r = _both_trackers(tmp_path / "reversed.pcap")
    (c,) = r.connections
    assert c.last_ts_ns >= c.first_ts_ns and c.history == "ShADdFf"
    assert r.time_steps.backwards == len(timed) - 1


def test_headers_only_capture_takes_payload_length_from_the_ip_length(tmp_path):
    timed = _conv(40001, 1000, 1_700_000_000.0)
    _write(tmp_path / "full.pcap", timed)
    _write(tmp_path / "cut.pcap", timed, snaplen=54)  # Ethernet + IPv4 + TCP headers, no payload
    full_r, cut_r = _both_trackers(tmp_path / "full.pcap"), _both_trackers(tmp_path / "cut.pcap")
    (full,), (cut,) = full_r.connections, cut_r.connections
    assert (full_r.snaplen_cut, cut_r.snaplen_cut) == (0, 8)  # the 8 segments with payload: the capture says it was cut
    assert (cut.orig_bytes, cut.resp_bytes, cut.orig_pkts, cut.resp_pkts) == (full.orig_bytes, full.resp_bytes, full.orig_pkts,
                                                                             full.resp_pkts)
    assert "D" in cut.history and "d" in cut.history and full.missed_bytes == 0
    # Zeek's reassembler takes no cut segment: every payload byte the ACKs cover is missed (G/g)
    assert cut.missed_bytes == full.orig_bytes + full.resp_bytes and "G" in cut.history and "g" in cut.history


# ---- the C extension under AddressSanitizer and UndefinedBehaviorSanitizer -------------------------
_SANITIZED_RUN = """
from dsrdiag.track import records
from dsrdiag.track import _conntrack
from dsrdiag.track.pipeline import track_capture
for path in sys.argv[1:]:  # the records are made in C (conn_record), then flattened and rebuilt in C
    recs = list(track_capture(path, "v", (25, 22, 80, 110, 143, 389), tracker="c").connections)
    flat = _conntrack.flatten_all(recs, records._TYPES)
    assert flat == records.flatten_all_py(recs) and _conntrack.unflatten_all(flat, records._TYPES) == recs
from tests.test_native_tracker import (test_c_and_python_trackers_agree_on_sequence_arithmetic_edges,
                                      test_c_and_python_trackers_agree_on_timer_and_clock_edges)
test_c_and_python_trackers_agree_on_sequence_arithmetic_edges()
test_c_and_python_trackers_agree_on_timer_and_clock_edges()
print("clean")
"""


def test_c_tracker_built_with_asan_and_ubsan_runs_hostile_and_real_captures_cleanly(tmp_path):
    """The extension rebuilt with -fsanitize=address,undefined into a temporary directory, loaded by
    a separate interpreter (LD_PRELOAD of the sanitizer runtimes), on the 2^31 capture, reordered and
    lost segments, the sample captures, Zeek's traces and the sequence-edge fuzz (the records made,
flattened and rebuilt in C, record_kit and flatten_all): no report. (This
    build reports the original 2^31 bug as 'negation of -2147483648 cannot be represented'.)"""
    from scapy.all import wrpcap

    from tests import _asan

    sanitized = _asan.build(tmp_path, {"dsrdiag.capture._fastpcap": ["dsrdiag/capture/_fastpcap.c"],
                                       "dsrdiag.track._conntrack": _asan.CONNTRACK})
    root = _asan.ROOT
    wrpcap(str(tmp_path / "seq-2-31.pcap"), _smtp_2_31_packets())
    rng = random.Random(7)
    packets = [p for i in range(20) for p in _dialogue_packets(rng, 41000 + i, v6=i % 3 == 0)]
    for i, p in enumerate(packets):
        p.time = 1_700_000_000 + i / 100
    wrpcap(str(tmp_path / "reordered.pcap"), packets)
    zeek = root.parent / "shared" / "captures-zeek"
    from tests.conftest import rewrite_as_sll
    from tests.test_capture_reading import _mixed_pcapng

    rewrite_as_sll(CAPTURES / "healthy.pcap", tmp_path / "sll.pcap", 1)
    rewrite_as_sll(CAPTURES / "healthy.pcap", tmp_path / "sll2.pcap", 2)
    mixed = _mixed_pcapng(CAPTURES)
    (tmp_path / "mixed.pcapng").write_bytes(mixed)
    (tmp_path / "cut.pcapng").write_bytes(mixed[: len(mixed) * 2 // 3 + 1])
    files = [tmp_path / n for n in ("seq-2-31.pcap", "reordered.pcap", "sll.pcap", "sll2.pcap", "mixed.pcapng", "cut.pcapng")] + SAMPLES
    files += sorted(p for p in zeek.glob("*") if p.suffix in (".pcap", ".pcapng")) if zeek.is_dir() else []
    p = _asan.run(sanitized, _SANITIZED_RUN, *map(str, files), timeout=900)
    _asan.assert_clean(sanitized, p)
    assert "clean" in p.stdout, p.stdout[-2000:]


def test_c_and_python_trackers_agree_on_timer_and_clock_edges():
    """Differential fuzz of the timers and the capture clock (bounded, derandomised): packets of two
    4-tuples spaced at Zeek's timer edges (5 s, 6 s, 60 s, 300 s, just before and after), steps back
    and jumps ahead beyond MAX_CLOCK_STEP: the same records and the same time_steps from both."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from dsrdiag.decode.tcp import ACK, FIN, PSH, RST, SYN
    from dsrdiag.track.conn import ConnTracker

    S = 1_000_000_000
    gaps = (0, 1, S // 1000, 5 * S - 1, 5 * S, 5 * S + 1, 6 * S, 11 * S + 1, 60 * S, 300 * S, 300 * S + 1, 601 * S, 7200 * S,
            -S, -7200 * S)
    flag_sets = (SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST, RST | ACK)
    step = st.tuples(st.sampled_from(gaps), st.booleans(), st.sampled_from("><"), st.sampled_from(flag_sets),
                     st.sampled_from((0, 1, 9)), st.sampled_from((b"", b"EHLO x\r\n")))

    @settings(max_examples=300, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from((1_700_000_000 * S, (1 << 63) - 8000 * S)), st.lists(step, min_size=1, max_size=16))
    def check(start, steps):  # the second start: timers that would pass the end of int64 time
        out = {}
        for tracker in ("c", "python"):
            t = ConnTracker("x", "v", frozenset((25,)), tracker)
            ts = start
            for i, (gap, second, d, flags, so, data) in enumerate(steps, 1):
                ts = min(max(ts + gap, 0), (1 << 63) - 1)
                p = _edge_packet(i, d, flags, 1000 + so if d == ">" else 5000 + so, 5001 if d == ">" else 1001, data, 65535)
                p.ts_ns = ts
                if second:
                    p.sport, p.dport = (p.sport + 1, p.dport) if d == ">" else (p.sport, p.dport + 1)
                t.packet(p)
                if i % 5 == 0:
                    t.sweep()
            out[tracker] = (list(t.finish_all()), t.time_steps())
        assert out["c"] == out["python"]

    check()


# ---- one engine, two peers: the walker feeds the C tracker through a sink, never by name ---------------
def _walked(path: Path, ports=(25,)):
    """(TCP packets the C walker handed to the C tracker without Python, frames Python saw)."""
    from dsrdiag.capture.pcapfile import Capture
    from dsrdiag.track.conn import ConnTracker

    cap = Capture(path, ports)
    t = ConnTracker(str(path), "v", frozenset(ports), "c")
    to_python = sum(1 for _ in cap.frames(t.sink))
    return cap.walker.tracked, to_python


def _raw_ip(src: Path, dst: Path) -> None:
    """The Ethernet capture as LINKTYPE_RAW (101): each frame's IP packet only."""
    import struct

    data = src.read_bytes()
    out, pos = [data[:20] + struct.pack("<I", 101)], 24
    while pos + 16 <= len(data):
        sec, frac, incl, orig = struct.unpack_from("<IIII", data, pos)
        frame = data[pos + 16 : pos + 16 + incl]
        out.append(struct.pack("<IIII", sec, frac, incl - 14, orig - 14) + frame[14:])
        pos += 16 + incl
    dst.write_bytes(b"".join(out))


@pytest.mark.parametrize("version", [1, 2])
def test_c_walker_hands_linux_cooked_tcp_to_the_c_tracker_with_the_records_of_python(tmp_path, monkeypatch, version):
    """`tcpdump -i any` captures (SLL, SLL2): TCP frames go from the walker to the C tracker in C
    (none of them through Python), and the records are the Python reader's and tracker's."""
    from tests.conftest import rewrite_as_sll

    p = tmp_path / f"any{version}.pcap"
    rewrite_as_sll(CAPTURES / "healthy.pcap", p, version)
    tracked, to_python = _walked(p)
    assert tracked > 0 and tracked > 5 * to_python
    c, py = _both(p, (25,), monkeypatch)
    monkeypatch.setenv("DSRDIAG_READER", "python")
    _, py_reader = _both(p, (25,), monkeypatch)
    _assert_same(c, py)
    _assert_same(c, py_reader)
    assert c.linktypes == (113 if version == 1 else 276,) and len(c.connections) > 0


def test_c_walker_leaves_raw_ip_to_python_decoding_and_the_records_are_the_same(tmp_path, monkeypatch):
    """The must-not-fire side: raw IP (no link header the walker decodes) never goes to the
    tracker from the walker; Python decodes it, and both trackers still agree."""
    p = tmp_path / "raw.pcap"
    _raw_ip(CAPTURES / "healthy.pcap", p)
    tracked, to_python = _walked(p)
    assert tracked == 0 and to_python > 0
    c, py = _both(p, (25,), monkeypatch)
    _assert_same(c, py)
    assert len(c.connections) > 0


def test_c_walker_refuses_anything_but_a_packet_sink():
    from dsrdiag.capture import _fastpcap

    r = _fastpcap.Reader(str(CAPTURES / "healthy.pcap"), 24, False, False, 1, [])
    for wrong in (object(), _native.Tracker((25,), None), "dsrdiag.capture.sink"):
        with pytest.raises(TypeError, match="packet sink"):
            r.track(wrong)
    r.track(_native.Tracker((25,), None).sink)  # the tracker's own capsule is accepted (and kept alive by the walker)
    assert _fastpcap.SINK_CAPSULE == "dsrdiag.capture.sink" and _fastpcap.SINK_VERSION == _native.CONSTANTS["SINK_VERSION"]


def test_capture_c_sources_name_nothing_of_track():
    """The layer contract in C: capture/ includes no header of track/ and calls nothing of it (the
    import-linter contract cannot see C)."""
    import re

    root = Path(__file__).resolve().parent.parent / "dsrdiag" / "capture"
    for src in list(root.glob("*.c")) + list(root.glob("*.h")):
        text = src.read_text()
        code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)  # comments may say what feeds what
        assert not re.search(r'#include\s+"[^"]*track/', code), src.name
        assert not re.search(r"\b(ct_\w+|Tracker\w*|conn_t|smtp_\w+)\b", code), src.name


def test_c_constants_are_the_python_references():
    """Every constant both trackers define, and the packed note's size, from one place each: the
    Python module is the reference and the C side (_conntrack.CONSTANTS) must agree."""
    from dsrdiag.decode import smtp as dsmtp
    from dsrdiag.track import conn, records
    from dsrdiag.track import smtp as tsmtp

    k = dict(_native.CONSTANTS)
    ref = {"TOO_LARGE": conn._TOO_LARGE, "NOTE_SIZE": records._NOTE.size, "MAX_LINE": dsmtp.MAX_LINE,
           "MAX_CODES": tsmtp.MAX_CODES}
    for name in ("MAX_NOTES", "PEEK", "MAX_SYNS", "MAX_L2", "FORWARD_WINDOW_NS", "MAX_OOO", "TCP_SYN_TIMEOUT",
                 "TCP_SESSION_TIMER", "TCP_CONNECTION_LINGER", "TCP_ATTEMPT_DELAY", "TCP_CLOSE_DELAY",
                 "TCP_INACTIVITY_TIMEOUT", "UDP_INACTIVITY_TIMEOUT"):
        ref[name] = getattr(conn, name)
    k.pop("SINK_VERSION")
    assert k == ref
