"""Reading captures: frame numbers, timestamps, formats, link types and damage, against tshark."""

from __future__ import annotations

import gzip
import hashlib
import shutil

import pytest

from dsrdiag.capture.pcapfile import Capture
from dsrdiag.core.errors import CaptureError
from tests.conftest import tshark_fields

REAL_CAPTURES = [
    "zeek-smtp.pcap", "zeek-smtp-starttls.pcap", "chrissanders-mail_sender_attachment.pcapng",
    "pcpp-sll.pcap", "pcpp-sll2.pcap", "zeek-linux_dlt_sll2.pcap", "tcpdump-tcp-handshake-nano.pcap",
    "pcpp-many_interfaces-1.pcapng", "zeek-pcapng-multi-interface.pcapng", "zeek-http-vlan-0.pcap",
    "tcpdump-802.1ad_QinQ.pcap", "zeek-q-in-q.pcap", "chrissanders-synscan.pcapng", "zeek-icmp6-nd-options.pcap",
    "zeek-ssh-server-side-half-duplex.pcap", "pcpp-example.pcap", "zeek-linuxsll-arp.pcap",
]
PORTS = (25, 80, 443, 22, 53)


def read(path, ports=PORTS):
    cap = Capture(path, ports)
    frames = list(cap.frames())
    return cap, frames


@pytest.mark.parametrize("name", REAL_CAPTURES)
def test_every_frame_is_counted_like_tshark(real, tshark, name):
    cap, _ = read(real / name)
    n = len(tshark_fields(tshark, real / name, "", "frame.number"))
    assert cap.end.frames == n
    assert cap.end.damage is None


@pytest.mark.parametrize("name", [n for n in REAL_CAPTURES if "icmp6" not in n and "arp" not in n])
def test_frame_numbers_of_service_port_packets_match_tshark(real, tshark, name):
    _, frames = read(real / name)
    ours = [f[0] for f in frames]
    theirs = [int(r[0]) for r in tshark_fields(
        tshark, real / name, " or ".join(f"tcp.port=={p}" for p in PORTS) + " or (arp and arp.opcode <= 2) or icmpv6.type==135 or icmpv6.type==136",
        "frame.number")]
    # tshark also matches TCP inside ICMP errors and IPv4 fragments; our BPF keeps first fragments only
    assert set(theirs) - set(ours) <= set(_frames_tshark_only(tshark, real / name))
    assert set(ours) <= set(theirs)


def _frames_tshark_only(tshark, path):
    return [int(r[0]) for r in tshark_fields(tshark, path, "icmp or icmpv6 or ip.frag_offset > 0", "frame.number")]


def test_nanosecond_pcap_keeps_nanoseconds(real):
    # tcpdump -tt --nano on this file prints 1418145369.924505488 for the first packet
    expected = (real / "tcpdump-tcp-handshake-nano.pcap.tcpdump.expected").read_text()
    _, frames = read(real / "tcpdump-tcp-handshake-nano.pcap", (80,))
    first = frames[0][1]
    assert f"{first // 10**9}.{first % 10**9:09d}" in expected


def test_pcapng_with_interfaces_of_different_link_types_is_read_whole(real, tshark):
    cap, frames = read(real / "pcpp-many_interfaces-1.pcapng", (443, 80))
    linktypes = {f[2] for f in frames}
    assert len(cap.end.linktypes) >= 2  # libpcap 1.9 refuses this file; our reader does not
    assert cap.end.frames == 64 and cap.end.damage is None
    assert linktypes  # TCP frames decoded from more than one interface type
    theirs = {int(r[0]) for r in tshark_fields(tshark, real / "pcpp-many_interfaces-1.pcapng", "tcp.port==443 or tcp.port==80", "frame.number")}
    assert {f[0] for f in frames} == theirs


def test_gzip_capture_reads_the_same_frames_as_the_plain_file(captures):
    _, plain = read(captures / "healthy.pcap")
    _, gz = read(captures / "healthy.pcap.gz")
    assert [(f[0], f[1], f[3]) for f in plain] == [(f[0], f[1], f[3]) for f in gz]


def test_truncated_pcap_is_read_up_to_the_damage_and_says_where(tmp_path, captures):
    data = (captures / "healthy.pcap").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[:5000])
    cap, frames = read(cut)
    assert frames and cap.end.damage and "stopped after frame" in cap.end.damage
    assert cap.end.frames == frames[-1][0] or cap.end.frames >= frames[-1][0]


def test_truncated_gzip_pcapng_reports_damage_with_byte_offset(tmp_path, captures):
    data = gzip.compress((captures / "arp_leak6.pcapng").read_bytes(), mtime=0)
    p = tmp_path / "x.pcapng.gz"
    p.write_bytes(data[: len(data) // 2])
    cap, frames = read(p)
    assert cap.end.damage is not None
    assert cap.end.frames > 0


def test_pcapng_block_with_corrupt_length_stops_there(tmp_path, captures):
    data = bytearray((captures / "healthy-client.pcapng").read_bytes())
    # find the 5th enhanced packet block and break its length field
    pos, seen = 0, 0
    import struct
    while pos < len(data):
        btype, blen = struct.unpack_from("<II", data, pos)
        if btype == 6:
            seen += 1
            if seen == 5:
                struct.pack_into("<I", data, pos + 4, 7)
                break
        pos += blen
    p = tmp_path / "bad.pcapng"
    p.write_bytes(bytes(data))
    cap, frames = read(p)
    assert cap.end.frames == 4
    assert "corrupt length" in cap.end.damage and f"byte offset {pos}" in cap.end.damage


def test_a_file_that_is_not_a_capture_is_refused(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello world, this is not a capture\n")
    with pytest.raises(CaptureError, match="not a pcap or pcapng capture"):
        Capture(p)


def test_an_unsupported_link_type_is_refused_with_its_name(tmp_path, captures):
    data = bytearray((captures / "healthy.pcap").read_bytes())
    data[20:24] = (105).to_bytes(4, "little")  # LINKTYPE_IEEE802_11
    p = tmp_path / "wifi.pcap"
    p.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match="link type 105 is not a supported link type"):
        list(Capture(p).frames())


def test_reading_never_modifies_the_input(tmp_path, captures):
    for name in ("healthy.pcap", "healthy.pcap.gz", "arp_leak6.pcapng", "damaged.pcap"):
        p = tmp_path / name
        shutil.copy(captures / name, p)
        before = hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns
        list(Capture(p).frames())
        assert (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) == before


# ---- the C walker against libpcap ------------------------------------------------------------

def _read_with(monkeypatch, reader: str, path):
    monkeypatch.setenv("DSRDIAG_READER", reader)
    cap = Capture(path, PORTS)
    frames = list(cap.frames())
    return cap, frames


CLASSIC = [n for n in REAL_CAPTURES if n.endswith(".pcap") and "nano" not in n] + ["tcpdump-tcp-handshake-nano.pcap"]


@pytest.mark.parametrize("name", CLASSIC)
def test_c_walker_delivers_exactly_what_libpcap_delivers(real, monkeypatch, name):
    from dsrdiag.capture import pcapfile

    if pcapfile._fastpcap is None:
        pytest.skip("the C walker was not built (no compiler)")
    c_cap, c_frames = _read_with(monkeypatch, "c", real / name)
    assert c_cap.end.reader == "c"
    if "nano" in name:  # libpcap 1.9 rounds nanoseconds: compare with the Python reader
        monkeypatch.setattr(pcapfile, "_fastpcap", None)
    other_cap, other = _read_with(monkeypatch, "libpcap", real / name)
    assert other_cap.end.reader in ("libpcap", "python")
    assert c_frames == other
    assert (c_cap.end.frames, c_cap.end.passed, c_cap.end.damage) == (other_cap.end.frames, other_cap.end.passed, None)


def test_c_walker_reports_damage_at_the_same_frame_and_offset_as_the_python_reader(captures, tmp_path, monkeypatch):
    from dsrdiag.capture import pcapfile

    if pcapfile._fastpcap is None:
        pytest.skip("the C walker was not built (no compiler)")
    data = (captures / "healthy.pcap").read_bytes()
    for cut, tail in ((len(data) * 2 // 3, b""), (len(data) - 7, b""), (200, b"\x00\x00\x00\x00" * 2 + b"\xff\xff\xff\x7f" * 2)):
        p = tmp_path / f"cut{cut}.pcap"
        p.write_bytes(data[:cut] + tail)
        c_cap, c_frames = _read_with(monkeypatch, "c", p)
        monkeypatch.setattr(pcapfile, "_fastpcap", None)
        monkeypatch.setattr(pcapfile.Capture, "_libpcap_frames", pcapfile.Capture._python_frames)
        py_cap, py_frames = _read_with(monkeypatch, "python", p)
        monkeypatch.undo()
        assert c_frames == py_frames and c_cap.end.frames == py_cap.end.frames
        assert c_cap.end.damage == py_cap.end.damage and "byte offset" in c_cap.end.damage


def test_c_bpf_interpreter_agrees_with_libpcap_on_random_and_real_frames(real):
    import random

    import pcapy

    from dsrdiag.capture import _fastpcap
    from dsrdiag.capture.bpf import dlt_for, filter_for

    rng = random.Random(7)
    frames = [f[3] for n in ("zeek-smtp.pcap", "zeek-http-vlan-0.pcap", "tcpdump-802.1ad_QinQ.pcap") for f in read(real / n)[1]]
    base = frames[:50]
    for _ in range(3000):  # mutate real frames: wrong ethertypes, short frames, odd header lengths
        f = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 6)):
            if f:
                f[rng.randrange(len(f))] = rng.randrange(256)
        frames.append(bytes(f[: rng.randint(0, len(f))]))
    for linktype in (1, 113, 101):
        prog = pcapy.compile(dlt_for(linktype), 262144, filter_for(linktype, PORTS), 1, 0)
        ours = _fastpcap.Reader(str(real / "zeek-smtp.pcap"), 24, False, False, linktype, prog.get_bpf())
        disagree = [f for f in frames if bool(ours.filter(f)) != bool(prog.filter(f))]
        assert not disagree, disagree[:3]
