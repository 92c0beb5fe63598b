"""Wrappers Zeek decodes (MPLS, PPPoE, VXLAN, Geneve, Teredo) are unwrapped, and lookalikes are not.

Each capture is built here with scapy: one SMTP session to the VIP (handshake, banner, QUIT, FINs)
inside the wrapper, on BOTH trackers; the connection must be tracked by its inner 4-tuple as Zeek
would (ShAdDfFa, SF), and the report's capture note must say what was unwrapped. For every wrapper
a lookalike (the same port or ethertype, not the wrapper's rules) must NOT be unwrapped: no
connection. Zeek's own MPLS and PPPoE traces are compared with Zeek's conn.log in
tests/test_zeek_traces.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

scapy = pytest.importorskip("scapy")
from scapy.layers.inet import IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import IPv6  # noqa: E402
from scapy.layers.l2 import Dot1Q, Ether  # noqa: E402
from scapy.packet import Raw  # noqa: E402
from scapy.utils import wrpcap  # noqa: E402

CLIENT, VIP = "198.51.100.7", "192.0.2.25"
CLIENT6, VIP6 = "2001:db8:1::7", "2001:db8::25"
R_MAC, LB_MAC, BE_MAC = "02:00:00:00:00:01", "02:00:00:00:00:0a", "02:00:00:00:00:11"
OUTER_A, OUTER_B = "203.0.113.1", "203.0.113.2"


def session(v6: bool = False) -> list:
    """(is_client, IP packet) of one complete SMTP session to the VIP on port 25."""
    ip = (lambda s, d: IPv6(src=s, dst=d)) if v6 else (lambda s, d: IP(src=s, dst=d))
    c, s = (CLIENT6, VIP6) if v6 else (CLIENT, VIP)
    banner, quit_, bye = b"220 mx1.example.net ESMTP\r\n", b"QUIT\r\n", b"221 Bye\r\n"
    ci, si = 1000, 5000
    out = [(True, ip(c, s) / TCP(sport=40000, dport=25, flags="S", seq=ci)),
           (False, ip(s, c) / TCP(sport=25, dport=40000, flags="SA", seq=si, ack=ci + 1)),
           (True, ip(c, s) / TCP(sport=40000, dport=25, flags="A", seq=ci + 1, ack=si + 1)),
           (False, ip(s, c) / TCP(sport=25, dport=40000, flags="PA", seq=si + 1, ack=ci + 1) / banner),
           (True, ip(c, s) / TCP(sport=40000, dport=25, flags="PA", seq=ci + 1, ack=si + 1 + len(banner)) / quit_)]
    s2, c2 = si + 1 + len(banner), ci + 1 + len(quit_)
    out += [(False, ip(s, c) / TCP(sport=25, dport=40000, flags="PA", seq=s2, ack=c2) / bye),
            (False, ip(s, c) / TCP(sport=25, dport=40000, flags="FA", seq=s2 + len(bye), ack=c2)),
            (True, ip(c, s) / TCP(sport=40000, dport=25, flags="FA", seq=c2, ack=s2 + len(bye) + 1)),
            (False, ip(s, c) / TCP(sport=25, dport=40000, flags="A", seq=s2 + len(bye) + 1, ack=c2 + 1))]
    return out


def inner_ether(is_client: bool, pkt):
    return (Ether(src=LB_MAC, dst=BE_MAC) if is_client else Ether(src=BE_MAC, dst=R_MAC)) / pkt


def udp_wrapped(header_for, port: int, inner_is_ether: bool = True, v6: bool = False, outer_vlan: bool = False) -> list:
    """The session inside UDP datagrams between two tunnel endpoints: client packets to `port`,
    replies from it (Zeek's responder port either way)."""
    frames = []
    for i, (is_client, pkt) in enumerate(session(v6)):
        inner = inner_ether(is_client, pkt) if inner_is_ether else pkt
        a, b = (OUTER_A, OUTER_B) if is_client else (OUTER_B, OUTER_A)
        udp = UDP(sport=49152 + i, dport=port) if is_client else UDP(sport=port, dport=49152 + i)
        outer = Ether(src=R_MAC, dst=LB_MAC) / Dot1Q(vlan=3) if outer_vlan else Ether(src=R_MAC, dst=LB_MAC)
        frames.append(outer / IP(src=a, dst=b) / udp / Raw(header_for(is_client, bytes(inner))))
    return frames


def vxlan(vni: int = 42, flags: int = 0x08) -> bytes:
    return bytes([flags, 0, 0, 0]) + vni.to_bytes(3, "big") + b"\x00"


def geneve(vni: int, proto: int, options: bytes = b"", version: int = 0) -> bytes:
    assert len(options) % 4 == 0
    return bytes([(version << 6) | (len(options) // 4), 0]) + proto.to_bytes(2, "big") + vni.to_bytes(3, "big") + b"\x00" + options


def geneve_option(cls: int, typ: int, data: bytes) -> bytes:
    return cls.to_bytes(2, "big") + bytes([typ, len(data) // 4]) + data


def teredo_origin(port: int = 3544, addr: str = "192.0.2.99") -> bytes:
    return b"\x00\x00" + (port ^ 0xFFFF).to_bytes(2, "big") + bytes(b ^ 0xFF for b in bytes(map(int, addr.split("."))))


def teredo_auth(client_id: bytes = b"", auth: bytes = b"") -> bytes:
    return b"\x00\x01" + bytes([len(client_id), len(auth)]) + client_id + auth + bytes(8) + b"\x00"


def mpls(labels: list[int]) -> bytes:
    out = b""
    for i, label in enumerate(labels):
        bottom = 1 if i == len(labels) - 1 else 0
        out += ((label << 12) | (bottom << 8) | 64).to_bytes(4, "big")
    return out


def link_wrapped(etype: int, header_for, vlan: bool = False, v6: bool = False) -> list:
    frames = []
    for is_client, pkt in session(v6):
        e = Ether(src=LB_MAC if is_client else BE_MAC, dst=BE_MAC if is_client else R_MAC)
        if vlan:
            e = e / Dot1Q(vlan=7)
        e.lastlayer().type = etype
        frames.append(e / Raw(header_for(is_client, pkt)))
    return frames


def pppoe(proto: int = 0x0021, session_id: int = 0x1234):
    def h(_is_client, pkt):
        body = bytes(pkt)
        return bytes([0x11, 0]) + session_id.to_bytes(2, "big") + (len(body) + 2).to_bytes(2, "big") + proto.to_bytes(2, "big") + body
    return h


def track(tmp_path, frames, tracker: str, name: str = "t.pcap"):
    from dsrdiag.track.pipeline import track_capture

    path = tmp_path / name
    wrpcap(str(path), frames)
    return track_capture(str(path), "z", (25,), tracker=tracker)


def only_conn(r):
    conns = list(r.connections)
    assert len(conns) == 1, [(c.client_ip, c.client_port, c.server_ip, c.server_port) for c in conns]
    return conns[0]


TRACKERS = ["c", "python"]


def assert_inner_session(r, v6: bool = False, syn_l2: tuple[str, str] = (LB_MAC, BE_MAC)):
    """The one connection is the inner session, as Zeek would log it, its SYN seen on `syn_l2`
    (src, dst MAC: the inner frame's for VXLAN/Geneve Ethernet, else the outer frame's), and the
    banner inside was read."""
    c = only_conn(r)
    assert (c.client_ip, c.client_port, c.server_ip, c.server_port) == ((CLIENT6, 40000, VIP6, 25) if v6 else (CLIENT, 40000, VIP, 25))
    assert (c.history, c.conn_state, c.orig_pkts, c.resp_pkts) == ("ShAdDfFa", "SF", 4, 5)
    assert (c.packets[0].src_mac, c.packets[0].dst_mac) == syn_l2
    assert c.smtp is not None and c.smtp.banner_host == "mx1.example.net"
    return c


@pytest.mark.parametrize("tracker", TRACKERS)
def test_vxlan_session_is_tracked_by_its_inner_4tuple_with_the_inner_l2_path(tmp_path, tracker):
    r = track(tmp_path, udp_wrapped(lambda _c, b: vxlan(42) + b, 4789), tracker)
    assert_inner_session(r)  # the inner frame's MACs (LB to back-end), not the outer R_MAC to LB_MAC
    assert r.unwrapped == {"VXLAN VNI 42": 9}


@pytest.mark.parametrize("tracker", TRACKERS)
def test_vxlan_behind_a_vlan_tag_passes_the_capture_filter_and_is_unwrapped(tmp_path, tracker):
    r = track(tmp_path, udp_wrapped(lambda _c, b: vxlan(5000) + b, 4789, outer_vlan=True), tracker)
    assert_inner_session(r)
    assert r.unwrapped == {"VXLAN VNI 5000": 9} and r.passed == 9


@pytest.mark.parametrize("tracker", TRACKERS)
def test_udp_4789_without_the_vxlan_i_flag_is_not_unwrapped(tmp_path, tracker):
    r = track(tmp_path, udp_wrapped(lambda _c, b: vxlan(42, flags=0x00) + b, 4789), tracker)
    assert list(r.connections) == [] and r.unwrapped == {}


@pytest.mark.parametrize("tracker", TRACKERS)
def test_vxlan_rules_are_not_applied_on_other_udp_ports(tmp_path, tracker):
    r = track(tmp_path, udp_wrapped(lambda _c, b: vxlan(42) + b, 4790), tracker)
    assert list(r.connections) == [] and r.unwrapped == {}


@pytest.mark.parametrize("tracker", TRACKERS)
def test_geneve_with_options_carrying_ethernet_is_unwrapped(tmp_path, tracker):
    opts = geneve_option(0x0103, 0x80, bytes(8)) + geneve_option(0xFFFF, 1, b"")
    r = track(tmp_path, udp_wrapped(lambda _c, b: geneve(7, 0x6558, opts) + b, 6081), tracker)
    assert_inner_session(r)
    assert r.unwrapped == {"Geneve VNI 7": 9}


@pytest.mark.parametrize("tracker", TRACKERS)
def test_geneve_carrying_raw_ipv6_keeps_the_outer_l2_path(tmp_path, tracker):
    r = track(tmp_path, udp_wrapped(lambda _c, b: geneve(9, 0x86DD) + b, 6081, inner_is_ether=False, v6=True), tracker)
    assert_inner_session(r, v6=True, syn_l2=(R_MAC, LB_MAC))
    assert r.unwrapped == {"Geneve VNI 9": 9}


@pytest.mark.parametrize("tracker", TRACKERS)
@pytest.mark.parametrize("bad", ["version 1", "options past the end"])
def test_geneve_lookalikes_are_not_unwrapped(tmp_path, tracker, bad):
    if bad == "version 1":
        hdr = geneve(7, 0x6558, version=1)
    else:  # the header claims 63 words of options the datagram does not hold
        hdr = bytes([0x3F, 0]) + (0x6558).to_bytes(2, "big") + bytes(4)
    r = track(tmp_path, udp_wrapped(lambda _c, b: hdr + (b if bad == "version 1" else b[:40]), 6081), tracker)
    assert list(r.connections) == [] and r.unwrapped == {}


@pytest.mark.parametrize("tracker", TRACKERS)
@pytest.mark.parametrize("indications", ["none", "origin", "auth+origin"])
def test_teredo_with_its_origin_and_auth_indications_is_unwrapped(tmp_path, tracker, indications):
    pre = {"none": b"", "origin": teredo_origin(), "auth+origin": teredo_auth(b"id", b"secret!!") + teredo_origin()}[indications]
    r = track(tmp_path, udp_wrapped(lambda _c, b: pre + b, 3544, inner_is_ether=False, v6=True), tracker)
    assert_inner_session(r, v6=True, syn_l2=(R_MAC, LB_MAC))
    label = {"none": "Teredo", "origin": "Teredo (origin indication)", "auth+origin": "Teredo (auth, origin indication)"}[indications]
    assert r.unwrapped == {label: 9}


@pytest.mark.parametrize("tracker", TRACKERS)
@pytest.mark.parametrize("bad", ["trailing bytes", "origin before auth", "ipv4 inside"])
def test_teredo_lookalikes_are_not_unwrapped(tmp_path, tracker, bad):
    if bad == "ipv4 inside":
        r = track(tmp_path, udp_wrapped(lambda _c, b: b, 3544, inner_is_ether=False), tracker)
    else:
        pre = teredo_origin() + teredo_auth() if bad == "origin before auth" else b""
        post = b"\x00" * 4 if bad == "trailing bytes" else b""
        r = track(tmp_path, udp_wrapped(lambda _c, b: pre + b + post, 3544, inner_is_ether=False, v6=True), tracker)
    assert list(r.connections) == [] and r.unwrapped == {}


@pytest.mark.parametrize("tracker", TRACKERS)
def test_mpls_label_stack_over_ip_is_skipped_to_the_bottom_of_stack(tmp_path, tracker):
    r = track(tmp_path, link_wrapped(0x8847, lambda _c, p: mpls([16, 17, 18]) + bytes(p), vlan=True), tracker)
    assert_inner_session(r)  # the outer frame's MACs: MPLS carries none of its own
    assert r.unwrapped == {"MPLS label 16": 9}


@pytest.mark.parametrize("tracker", TRACKERS)
@pytest.mark.parametrize("cw", [True, False])
def test_mpls_pseudowire_ethernet_is_unwrapped_with_or_without_a_control_word(tmp_path, tracker, cw):
    def h(is_client, pkt):
        return mpls([100]) + (b"\x00\x00\x00\x01" if cw else b"") + bytes(inner_ether(is_client, pkt))
    r = track(tmp_path, link_wrapped(0x8847, h), tracker)
    assert_inner_session(r)
    assert r.unwrapped == {"MPLS label 100 (pseudowire)": 9}


@pytest.mark.parametrize("tracker", TRACKERS)
def test_mpls_that_carries_neither_ip_nor_ethernet_is_not_unwrapped(tmp_path, tracker):
    # a control word followed by something that is no Ethernet header with an IP/ARP/VLAN type
    r = track(tmp_path, link_wrapped(0x8847, lambda _c, p: mpls([100]) + b"\x00\x00\x00\x01" + bytes(14) + bytes(p)), tracker)
    assert list(r.connections) == [] and r.unwrapped == {}


@pytest.mark.parametrize("tracker", TRACKERS)
def test_truncated_mpls_stack_is_an_anomaly_not_a_crash(tmp_path, tracker):
    frames = [Ether(src=LB_MAC, dst=BE_MAC, type=0x8847) / Raw(mpls([16, 17])[:4] + b"\x00\x00")]
    r = track(tmp_path, frames, tracker)
    assert list(r.connections) == [] and r.anomalies == {"truncated-mpls-header": 1}


@pytest.mark.parametrize("tracker", TRACKERS)
def test_pppoe_session_carrying_ip_is_unwrapped(tmp_path, tracker):
    r = track(tmp_path, link_wrapped(0x8864, pppoe(), vlan=True), tracker)
    assert_inner_session(r)
    assert r.unwrapped == {"PPPoE session 0x1234": 9}


@pytest.mark.parametrize("tracker", TRACKERS)
def test_pppoe_and_mpls_carrying_ipv6_are_unwrapped(tmp_path, tracker):
    r = track(tmp_path, link_wrapped(0x8864, pppoe(0x0057), v6=True), tracker, "pppoe6.pcap")
    assert_inner_session(r, v6=True)
    r = track(tmp_path, link_wrapped(0x8847, lambda _c, p: mpls([3000]) + bytes(p), v6=True), tracker, "mpls6.pcap")
    assert_inner_session(r, v6=True)
    assert r.unwrapped == {"MPLS label 3000": 9}


@pytest.mark.parametrize("tracker", TRACKERS)
@pytest.mark.parametrize("etype,proto", [(0x8864, 0xC021), (0x8863, 0x0021)])
def test_pppoe_control_protocols_and_discovery_frames_are_not_unwrapped(tmp_path, tracker, etype, proto):
    r = track(tmp_path, link_wrapped(etype, pppoe(proto)), tracker)
    assert list(r.connections) == [] and r.unwrapped == {}


def test_wrappers_inside_wrappers_stop_at_a_bound(tmp_path):
    """VXLAN in VXLAN in ... 6 deep: nothing beyond MAX_WRAPS is unwrapped, and nothing recurses
    without bound (a hostile frame could nest thousands)."""
    from dsrdiag.decode.packet import decode
    from dsrdiag.decode.tunnel import MAX_WRAPS

    def wrap(depth):
        frame = bytes(inner_ether(True, session()[0][1]))
        for _ in range(depth):
            frame = bytes(Ether(src=R_MAC, dst=LB_MAC) / IP(src=OUTER_A, dst=OUTER_B) / UDP(sport=1, dport=4789) / Raw(vxlan(1) + frame))
        return decode((1, 0, 1, frame, len(frame)), frozenset((25,)))

    assert wrap(MAX_WRAPS).wrap == ", ".join(["VXLAN VNI 1"] * MAX_WRAPS)
    assert wrap(MAX_WRAPS + 2) is None

    def pseudowires(depth):
        frame = bytes(inner_ether(True, session()[0][1]))
        for _ in range(depth):
            frame = bytes(Ether(src=R_MAC, dst=LB_MAC, type=0x8847)) + mpls([5]) + b"\x00\x00\x00\x00" + frame
        return decode((1, 0, 1, frame, len(frame)), frozenset((25,)))

    assert pseudowires(MAX_WRAPS).sport == 40000
    assert pseudowires(3000) is None  # no RecursionError: the bound, not the frame's length, stops it
    long_stack = bytes(12) + b"\x88\x47" + mpls([1] * 5000) + bytes(inner_ether(True, session()[0][1]))[14:]
    assert decode((1, 0, 1, long_stack, len(long_stack)), frozenset((25,))).sport == 40000  # a loop, bounded by the frame


def test_report_capture_note_says_what_was_unwrapped(tmp_path):
    """End to end: a capture whose traffic is all inside VXLAN is judged (not 'healthy with 0
    packets') and its capture note says what was unwrapped."""
    path = tmp_path / "vxlan.pcap"
    wrpcap(str(path), udp_wrapped(lambda _c, b: vxlan(42) + b, 4789))
    p = subprocess.run([sys.executable, "-m", "dsrdiag", "analyze", str(path), "--format", "json", "--vip", VIP],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    cap = doc["captures"][0]
    notes = " ".join(cap.get("cannot_show", []))
    assert "VXLAN VNI 42: 9 frames" in notes, cap
    assert doc["verdict"]["connections"] == 1 and doc["verdict"]["completed"] == 1
