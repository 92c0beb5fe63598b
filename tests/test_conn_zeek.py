"""Connection history and conn_state agree with Zeek: on real captures with Zeek's own baselines
beside them, and on scripted packet sequences (playbooks) for the states those captures lack."""

from __future__ import annotations

import pytest

from dsrdiag.decode.packet import KIND_TCP, Packet
from dsrdiag.decode.tcp import ACK, FIN, PSH, RST, SYN
from dsrdiag.track.conn import ConnTracker
from dsrdiag.track.pipeline import track_capture

pytestmark = pytest.mark.usefixtures("tracker")  # every test on the C tracker and on the Python reference


def zeek_conn_rows(path):
    """Parse a Zeek conn.log baseline (TSV with #fields) into dicts."""
    fields, rows = None, []
    for line in path.read_text().splitlines():
        if line.startswith("#fields"):
            fields = line.split("\t")[1:]
        elif fields and line and not line.startswith("#"):
            rows.append(dict(zip(fields, line.split("\t"))))
    return rows


@pytest.mark.parametrize("name,ports", [
    ("zeek-ssh-server-side-half-duplex.pcap", (22,)),
    ("zeek-tcp-missing-syn.pcap", (80,)),
])
def test_history_and_state_match_zeek_conn_log(real, name, ports):
    rows = zeek_conn_rows(real / f"{name}.zeek-conn.expected")
    ours = {(c.client_ip, c.client_port, c.server_ip, c.server_port): c for c in track_capture(str(real / name), "t", ports).connections}
    assert rows and len(ours) == len(rows)
    for row in rows:
        key = (row["id.orig_h"], int(row["id.orig_p"]), row["id.resp_h"], int(row["id.resp_p"]))
        c = ours[key]
        assert (c.history, c.conn_state) == (row["history"], row["conn_state"]), key
        assert (c.orig_pkts, c.resp_pkts) == (int(row["orig_pkts"]), int(row["resp_pkts"]))


def test_one_sided_syn_ack_connections_are_flipped_like_zeek(real):
    text = (real / "zeek-tcp-one-sided-2745.pcap.zeek-conn.expected").read_text().splitlines()
    want = sorted(line.split("\t")[6] for line in text if line and line[0] not in "#t")
    got = sorted(c.history for c in track_capture(str(real / "zeek-tcp-one-sided-2745.pcap"), "t", (1433, 281)).connections)
    assert got == want == ["^haf", "^haf"]


def test_smtp_connections_histories_match_zeek(real):
    lines = [line.split("\t") for line in (real / "zeek-smtp.pcap.zeek-conn.expected").read_text().splitlines() if line.startswith("C")]
    got = [c.history for c in track_capture(str(real / "zeek-smtp.pcap"), "t", (25,)).connections]
    assert got == [row[1] for row in lines]  # ShAdDaTFf (with a retransmission) and ShAdDa


@pytest.mark.parametrize("name,port", [
    ("zeek-tcp-single-rst.pcap", 80),
    ("zeek-tcp-syn-then-rst.pcap", 31313),
    ("zeek-tcp-syn-then-ack-then-rst.pcap", 31313),
    ("zeek-tcp-syn-then-stuff-then-rst.pcap", 31313),
])
def test_reset_behaviour_matches_zeek_baseline(real, name, port):
    want = (real / f"{name}.zeek-conn.expected").read_text().splitlines()[-1].split(", ")
    (c,) = track_capture(str(real / name), "t", (port,)).connections
    assert [c.history, c.conn_state] == want


# ---- playbooks: scripted packets, Zeek's expected (history, conn_state) -------------------------
C, S = bytes([198, 51, 100, 7]), bytes([192, 0, 2, 25])


def pkt(frame, direction, flags, seq=0, ack=0, data=b"", win=502):
    p = Packet()
    p.frame, p.ts_ns, p.kind = frame, frame * 1_000_000, KIND_TCP
    p.src_mac = p.dst_mac = None
    p.vlans, p.ttl, p.ip_id = (), 64, frame
    if direction == ">":
        p.src, p.dst, p.sport, p.dport = C, S, 40000, 25
    else:
        p.src, p.dst, p.sport, p.dport = S, C, 25, 40000
    p.seq, p.ack, p.flags, p.win, p.payload = seq, ack, flags, win, data
    p.tunnel = None
    p.cut = 0
    return p


def play(*steps):
    t = ConnTracker("x", "v", frozenset((25,)))
    for i, step in enumerate(steps, 1):
        t.packet(pkt(i, *step))
    (c,) = t.finish_all()
    return c.history, c.conn_state


A0, B0 = 1000, 5000


def test_playbook_normal_smtp_session_is_SF():
    assert play((">", SYN, A0), ("<", SYN | ACK, B0, A0 + 1), (">", ACK, A0 + 1, B0 + 1),
                ("<", PSH | ACK, B0 + 1, A0 + 1, b"220 mx\r\n"), (">", PSH | ACK, A0 + 1, B0 + 9, b"QUIT\r\n"),
                (">", FIN | ACK, A0 + 7, B0 + 9), ("<", FIN | ACK, B0 + 9, A0 + 8), (">", ACK, A0 + 8, B0 + 10)) == ("ShAdDFf", "SF")


def test_playbook_syn_retransmissions_alone_are_S0_with_one_S():
    assert play((">", SYN, A0), (">", SYN, A0), (">", SYN, A0)) == ("S", "S0")


def play_all(*steps):
    t = ConnTracker("x", "v", frozenset((25,)))
    for i, step in enumerate(steps, 1):
        t.packet(pkt(i, *step))
    return [(c.history, c.conn_state) for c in t.finish_all()]


def test_playbook_syn_with_new_isn_is_a_new_connection():
    # Zeek's IsReuse: a SYN whose sequence number is not the originator's ISN starts a new connection
    assert play_all((">", SYN, A0), (">", SYN, A0 + 77)) == [("S", "S0"), ("S", "S0")]


def test_playbook_syn_retried_after_rst_with_the_same_isn_is_a_new_connection():
    # Zeek's IsReuse: once a side has closed (the RST), any SYN starts a new connection (pop3.pcap)
    assert play_all((">", SYN, A0), ("<", RST | ACK, 0, A0 + 1), (">", SYN, A0), ("<", RST | ACK, 0, A0 + 1)) == [
        ("Sr", "REJ"), ("Sr", "REJ")]


def test_playbook_retransmitted_syn_with_the_same_isn_is_not_a_new_connection():
    assert [h for h, _ in play_all((">", SYN, A0), (">", SYN, A0), ("<", SYN | ACK, B0, A0 + 1))] == ["Sh"]


def _at(ts_s, *step):
    p = pkt(1, *step)
    p.ts_ns = int(ts_s * 1e9)
    return p


def test_unanswered_syn_ends_after_tcp_attempt_delay_and_later_packets_start_a_new_connection():
    # half-duplex SSH in Zeek: SAD S0 then DAF SH (the attempt timer removes the first after 5 s)
    t = ConnTracker("x", "v", frozenset((25,)))
    for ts, step in [(0, (">", SYN, A0)), (0.1, (">", ACK, A0 + 1, B0 + 1)), (0.2, (">", PSH | ACK, A0 + 1, B0 + 1, b"x")),
                     (6, (">", PSH | ACK, A0 + 2, B0 + 1, b"y")), (6.5, (">", ACK, A0 + 3, B0 + 1)),
                     (7, (">", FIN | ACK, A0 + 3, B0 + 1))]:
        t.packet(_at(ts, *step))
    assert [(c.history, c.conn_state) for c in t.finish_all()] == [("SAD", "S0"), ("DAF", "SH")]


def test_unanswered_syn_retried_within_the_attempt_delay_stays_one_connection():
    t = ConnTracker("x", "v", frozenset((25,)))
    for ts in (0, 1, 3):
        t.packet(_at(ts, ">", SYN, A0))
    assert [(c.history, c.conn_state, c.orig_pkts) for c in t.finish_all()] == [("S", "S0", 3)]


def test_closed_connection_is_removed_after_tcp_close_delay_not_before():
    steps = [(">", SYN, A0), ("<", SYN | ACK, B0, A0 + 1), (">", ACK, A0 + 1, B0 + 1), (">", FIN | ACK, A0 + 1, B0 + 1),
             ("<", FIN | ACK, B0 + 1, A0 + 2)]
    for late, n in ((4.0, 1), (6.0, 2)):
        t = ConnTracker("x", "v", frozenset((25,)))
        for i, s in enumerate(steps):
            t.packet(_at(i * 0.01, *s))
        t.packet(_at(0.05 + late, ">", ACK, A0 + 2, B0 + 2))  # the last ACK, late
        assert len(t.finish_all()) == n, late


def test_playbook_rst_at_a_new_sequence_number_adds_another_R():
    assert play((">", SYN, A0), ("<", SYN | ACK, B0, A0 + 1), (">", ACK, A0 + 1, B0 + 1),
                ("<", RST, B0 + 1), ("<", RST, B0 + 50)) == ("ShArr", "RSTR")


def test_playbook_syn_answered_by_rst_is_REJ():
    assert play((">", SYN, A0), ("<", RST | ACK, 0, A0 + 1)) == ("Sr", "REJ")


def test_playbook_client_acks_without_seen_syn_ack_is_split_routing():
    # the client got its SYN-ACK another way: Zeek's possible_split_routing shape
    assert play((">", SYN, A0), (">", ACK, A0 + 1, B0 + 1), (">", PSH | ACK, A0 + 1, B0 + 1, b"EHLO x\r\n")) == ("SAD", "S0")


def test_playbook_syn_then_fin_without_answer_is_SH():
    assert play((">", SYN, A0), (">", FIN | ACK, A0 + 1, 0)) == ("SF", "SH")


def test_playbook_established_then_originator_reset_is_RSTO():
    assert play((">", SYN, A0), ("<", SYN | ACK, B0, A0 + 1), (">", ACK, A0 + 1, B0 + 1), (">", RST, A0 + 1)) == ("ShAR", "RSTO")


def test_playbook_established_then_responder_reset_is_RSTR():
    assert play((">", SYN, A0), ("<", SYN | ACK, B0, A0 + 1), (">", ACK, A0 + 1, B0 + 1), ("<", RST, B0 + 1)) == ("ShAr", "RSTR")


def test_playbook_established_not_closed_is_S1():
    assert play((">", SYN, A0), ("<", SYN | ACK, B0, A0 + 1), (">", ACK, A0 + 1, B0 + 1)) == ("ShA", "S1")


def test_playbook_originator_close_without_reply_is_S2():
    assert play((">", SYN, A0), ("<", SYN | ACK, B0, A0 + 1), (">", ACK, A0 + 1, B0 + 1), (">", FIN | ACK, A0 + 1, B0 + 1)) == ("ShAF", "S2")


def test_playbook_responder_close_without_reply_is_S3():
    assert play((">", SYN, A0), ("<", SYN | ACK, B0, A0 + 1), (">", ACK, A0 + 1, B0 + 1), ("<", FIN | ACK, B0 + 1, A0 + 1)) == ("ShAf", "S3")


def test_playbook_retransmitted_data_adds_T_once_then_at_ten():
    steps = [(">", SYN, A0), ("<", SYN | ACK, B0, A0 + 1), (">", ACK, A0 + 1, B0 + 1)]
    steps += [(">", PSH | ACK, A0 + 1, B0 + 1, b"x" * 10)] * 11  # 1 original + 10 retransmissions
    h, _ = play(*steps)
    assert h == "ShADTT"


def test_playbook_zero_window_is_W():
    h, _ = play((">", SYN, A0), ("<", SYN | ACK, B0, A0 + 1), (">", ACK, A0 + 1, B0 + 1, b"", 0))
    assert h == "ShAW"


def test_playbook_forwarded_copy_is_not_a_retransmission():
    t = ConnTracker("x", "v", frozenset((25,)))
    a = pkt(1, ">", SYN, A0)
    a.src_mac, a.dst_mac = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x0a"
    b = pkt(2, ">", SYN, A0)
    b.src_mac, b.dst_mac = b"\x02\x00\x00\x00\x00\x0a", b"\x02\x00\x00\x00\x00\x11"
    b.ts_ns, b.ip_id = a.ts_ns + 30_000, a.ip_id
    t.packet(a)
    t.packet(b)
    (c,) = t.finish_all()
    assert (c.history, c.orig_pkts, c.orig_forwarded) == ("S", 1, 1)
    assert c.orig_l2 == (("02:00:00:00:00:01", "02:00:00:00:00:0a"), ("02:00:00:00:00:0a", "02:00:00:00:00:11"))


def _records(*steps, tracker=None):
    t = ConnTracker("x", "v", frozenset((25,)), tracker)
    for i, step in enumerate(steps, 1):
        t.packet(pkt(i, *step))
    return t.finish_all()


HANDSHAKE = [(">", SYN, A0), ("<", SYN | ACK, B0, A0 + 1), (">", ACK, A0 + 1, B0 + 1)]


def test_gap_larger_than_a_mebibyte_counts_in_full(tracker):
    big = 3 * 1048576
    (c,) = _records(*HANDSHAKE, ("<", PSH | ACK, B0 + 1, A0 + 1, b"220 x\r\n"), (">", ACK, A0 + 1, B0 + 8 + big), tracker=tracker)
    assert (c.history, c.missed_bytes) == ("ShAdg", big)


def test_data_never_captured_shows_as_a_gap_when_its_fin_is_acked(tracker):
    # Zeek's miss_end_data: the server's 2902 bytes were never captured, its FIN's number shows them
    (c,) = _records(*HANDSHAKE, (">", PSH | ACK, A0 + 1, B0 + 1, b"QUIT\r\n"), ("<", FIN | ACK, B0 + 1 + 2902, A0 + 7),
                    (">", FIN | ACK, A0 + 7, B0 + 2904), ("<", ACK, B0 + 2904, A0 + 8), tracker=tracker)
    assert (c.history, c.conn_state, c.missed_bytes) == ("ShADfFga", "SF", 2902)  # F, then the gap its ACK shows


def test_gap_is_not_counted_in_a_partial_connection(tracker):
    # Zeek counts gaps only while both sides are established (or closed from established)
    (c,) = _records(("<", PSH | ACK, B0 + 1, A0 + 1, b"250 ok\r\n"), (">", ACK, A0 + 1, B0 + 9 + 5000), tracker=tracker)
    assert (c.missed_bytes, "g" in c.history) == (0, False)


def test_out_of_order_segments_below_the_ack_are_not_missed(tracker):
    (c,) = _records(*HANDSHAKE, ("<", PSH | ACK, B0 + 11, A0 + 1, b"y" * 10), (">", ACK, A0 + 1, B0 + 31), tracker=tracker)
    assert c.missed_bytes == 20  # bytes 1-10 and 21-30 were holes; 11-20 were seen
