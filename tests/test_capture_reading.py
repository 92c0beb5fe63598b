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


# ---- pcapng, gzip and Linux cooked in the C walker, against the Python reader ----------------------
# The Python reader (capture/pcapfile.py: DSRDIAG_READER=python) is the reference: the C walker
# must give the same frames (number, timestamp, link type, bytes, wire length), the same count of
# frames, of frames passed and of frames skipped per link type, and the same damage words.
import random
import struct

from tests.conftest import rewrite_as_sll


def _both_readers(monkeypatch, path, ports=PORTS):
    from dsrdiag.capture import pcapfile

    if pcapfile._fastpcap is None:
        pytest.skip("the C walker was not built (no compiler)")
    out = []
    for reader in ("c", "python"):
        monkeypatch.setenv("DSRDIAG_READER", reader)
        cap = Capture(path, ports)
        try:
            frames = list(cap.frames())
        except CaptureError as e:
            out.append(("error", str(e), cap.end.reader))
            continue
        e = cap.end
        out.append((frames, e.frames, e.passed, e.damage, dict(e.skipped), sorted(e.linktypes), e.reader))
    monkeypatch.delenv("DSRDIAG_READER")
    (c, py) = out
    assert c[-1] == "c" and py[-1] in ("python", "libpcap")  # libpcap reads classic microsecond pcap files
    return c[:-1], py[:-1]


def _block(bo: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack(bo + "II", btype, n) + body + struct.pack(bo + "I", n)


def _shb(bo: str) -> bytes:
    return _block(bo, 0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(bo: str, linktype: int, tsresol: int | None = None) -> bytes:
    opts = b""
    if tsresol is not None:
        opts = struct.pack(bo + "HH", 9, 1) + bytes([tsresol]) + b"\0\0\0" + struct.pack(bo + "HH", 0, 0)
    return _block(bo, 1, struct.pack(bo + "HHI", linktype, 0, 262144) + opts)


def _epb(bo: str, ifid: int, ticks: int, data: bytes, wirelen: int | None = None) -> bytes:
    return _block(bo, 6, struct.pack(bo + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF, len(data),
                                      len(data) if wirelen is None else wirelen) + data)


def _opb(bo: str, ifid: int, ticks: int, data: bytes) -> bytes:
    return _block(bo, 2, struct.pack(bo + "HHIIII", ifid, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data)) + data)


def _spb(bo: str, data: bytes) -> bytes:
    return _block(bo, 3, struct.pack(bo + "I", len(data)) + data)


def _eth_frames(captures, n=40):
    """Real Ethernet frames (SMTP, ARP) from a sample capture."""
    data = (captures / "healthy.pcap").read_bytes()
    out, pos = [], 24
    while pos + 16 <= len(data) and len(out) < n:
        incl = struct.unpack_from("<I", data, pos + 8)[0]
        out.append(data[pos + 16 : pos + 16 + incl])
        pos += 16 + incl
    return out


def _mixed_pcapng(captures) -> bytes:
    """Two sections (little-, then big-endian), each with several interfaces: Ethernet at
    microseconds, Ethernet at nanoseconds (if_tsresol 9), Ethernet at 2^-20 s (binary resolution),
    an unsupported link type (802.11), raw IP; EPB, OPB and SPB; name-resolution, statistics and
    custom blocks between them (skipped)."""
    frames = _eth_frames(captures)
    out = b""
    t0 = 1_700_000_000
    for bo in ("<", ">"):
        out += _shb(bo) + _idb(bo, 1) + _idb(bo, 1, 9) + _idb(bo, 1, 0x80 | 20) + _idb(bo, 105) + _idb(bo, 101)
        out += _block(bo, 4, b"\x01\x00\x08\x00\xc0\x00\x02\x01mx1\0" + b"\0" * 4)  # name resolution
        for i, f in enumerate(frames):
            iface = i % 5
            ticks = [t0 * 10**6 + i, t0 * 10**9 + i * 7, (t0 << 20) + i * 3, t0 * 10**6, t0 * 10**6][iface]
            body = f[14:] if iface == 4 else f  # raw IP on interface 4
            out += _opb(bo, iface, ticks, body) if i % 7 == 3 else _epb(bo, iface, ticks, body)
            if i % 11 == 5:
                out += _block(bo, 5, struct.pack(bo + "III", 0, 0, 0))  # interface statistics
                out += _block(bo, 0xBAD, b"custom")
        out += _spb(bo, frames[0]) + _spb(bo, frames[1][:30])
    return out


def test_c_walker_reads_mixed_pcapng_sections_interfaces_and_blocks_like_the_python_reader(tmp_path, captures, monkeypatch):
    p = tmp_path / "mixed.pcapng"
    p.write_bytes(_mixed_pcapng(captures))
    c, py = _both_readers(monkeypatch, p)
    assert c == py
    frames, n, passed, damage, skipped, linktypes = c
    assert damage is None and n == 84 and skipped == {105: 16} and linktypes == [1, 101]
    stamps = {f[0]: f[1] for f in frames}
    assert 1_700_000_000 * 10**9 + 7 in stamps.values()                       # nanosecond interface, as stamped
    assert any(ts == 1_700_000_000 * 10**9 + (3 * i * 10**9 >> 20) for ts in stamps.values() for i in range(1, 84))  # 2^-20 s ticks
    assert {f[2] for f in frames} == {1, 101}


def test_c_walker_reads_real_pcapng_captures_like_the_python_reader(real, monkeypatch):
    names = [n for n in REAL_CAPTURES if n.endswith(".pcapng")]
    for name in names:
        c, py = _both_readers(monkeypatch, real / name)
        assert c == py, name
        assert c[3] is None and c[1] > 0


def test_c_walker_damage_in_pcapng_matches_the_python_reader_at_every_cut_and_corruption(tmp_path, captures, monkeypatch):
    """Cut at every byte of a small two-section file, and 300 seeded corruptions of its length,
    type, interface and byte-order fields: the same frames and the same damage words (exact byte
    offsets) from both readers; a cut inside the file is always damage, never a clean end."""
    data = _mixed_pcapng(captures)[:2600]
    data = data[: data.rfind(b"\x06\x00\x00\x00")]  # ends at a block boundary (the start of an EPB)
    p = tmp_path / "x.pcapng"
    damaged = 0
    for cut in range(28, len(data), 5):
        p.write_bytes(data[:cut])
        c, py = _both_readers(monkeypatch, p)
        assert c == py, cut
        damaged += c[3] is not None
    assert damaged > (len(data) - 28) // 5 * 0.9  # most cuts fall inside a block: damage
    rng = random.Random(14)
    for _ in range(300):
        b = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(28, len(b) - 4)
            struct.pack_into("<I", b, at, rng.choice((0, 1, 7, 12, 13, 0xFFFFFFFF, 0x0A0D0D0A, 1 << 24, rng.getrandbits(32))))
        p.write_bytes(bytes(b))
        c, py = _both_readers(monkeypatch, p)
        assert c == py


def test_c_walker_stops_at_a_clean_pcapng_end_without_damage(tmp_path, captures, monkeypatch):
    """The must-not-fire side: a file that ends exactly after a block is read whole, no damage."""
    data = _mixed_pcapng(captures)
    p = tmp_path / "whole.pcapng"
    p.write_bytes(data)
    c, _ = _both_readers(monkeypatch, p)
    assert c[3] is None and c[1] == 84


def test_pcapng_block_larger_than_the_walkers_window_is_read(tmp_path, captures, monkeypatch):
    """A 3 MiB custom block (over the 2 MiB window, under Wireshark's 16 MiB): skipped, the frames
    after it read; a block claiming more than 16 MiB is damage in both readers."""
    frames = _eth_frames(captures, 4)
    big = _shb("<") + _idb("<", 1) + _block("<", 0xBAD, b"x" * (3 << 20)) + b"".join(_epb("<", 0, i, f) for i, f in enumerate(frames))
    p = tmp_path / "big.pcapng"
    p.write_bytes(big)
    c, py = _both_readers(monkeypatch, p)
    assert c == py and c[1] == 4 and c[3] is None
    p.write_bytes(_shb("<") + _idb("<", 1) + struct.pack("<II", 0xBAD, (16 << 20) + 4))
    c, py = _both_readers(monkeypatch, p)
    assert c == py and "corrupt length" in c[3]


def test_pcapng_with_only_unsupported_interfaces_is_refused_by_both_readers(tmp_path, captures, monkeypatch):
    frames = _eth_frames(captures, 3)
    p = tmp_path / "wifi.pcapng"
    p.write_bytes(_shb("<") + _idb("<", 105) + b"".join(_epb("<", 0, i, f) for i, f in enumerate(frames)))
    c, py = _both_readers(monkeypatch, p)
    assert c[0] == py[0] == "error" and c[1] == py[1] and "no interface has a supported link type" in c[1]


def test_if_tsresol_cut_by_the_end_of_its_block_keeps_microseconds(tmp_path, captures, monkeypatch):
    """An if_tsresol option whose value lies past the block's end: microseconds, in both readers
    (the Python reader raised IndexError here)."""
    frame = _eth_frames(captures, 1)[0]
    idb = struct.pack("<HHI", 1, 0, 0) + struct.pack("<HH", 9, 1)  # the option header is the last thing in the body
    p = tmp_path / "cut-opt.pcapng"
    p.write_bytes(_shb("<") + _block("<", 1, idb) + _epb("<", 0, 5 * 10**6, frame))
    c, py = _both_readers(monkeypatch, p)
    assert c == py and c[0][0][1] == 5 * 10**9


@pytest.mark.parametrize("name", ["healthy.pcap.gz", "arp_leak6.pcapng"])
def test_c_walker_reads_gzip_and_cut_gzip_like_the_python_reader(tmp_path, captures, monkeypatch, name):
    """pcap.gz and pcapng.gz through the C walker (ISA-L's inflater where installed): the frames
    of the plain file; cut at several points, the frames up to the damage and a 'compressed data
    is corrupt' damage, never more frames than the uncut file."""
    import gzip as gz

    raw = (captures / name).read_bytes()
    data = raw if name.endswith(".gz") else gz.compress(raw, mtime=0)
    plain = tmp_path / "plain"
    plain.write_bytes(gz.decompress(data))
    p = tmp_path / "x.gz"
    p.write_bytes(data)
    c, py = _both_readers(monkeypatch, p)
    ref, _ = _both_readers(monkeypatch, plain)
    assert c == py and c[0] == ref[0] and c[3] is None
    for frac in (0.3, 0.5, 0.8, 0.99):
        p.write_bytes(data[: int(len(data) * frac)])
        c, py = _both_readers(monkeypatch, p)
        assert c[3] and "compressed data is corrupt" in c[3] and py[3] and "compressed data is corrupt" in py[3]
        assert c[0] == ref[0][: len(c[0])] and py[0] == ref[0][: len(py[0])]  # a prefix of the real frames
        assert len(c[0]) >= len(py[0])  # the C walker analyses up to the damage at least as far
    corrupt = bytearray(data)
    corrupt[len(data) // 2] ^= 0xFF
    p.write_bytes(bytes(corrupt))
    c, py = _both_readers(monkeypatch, p)
    assert c[3] and "compressed data is corrupt" in c[3] and c[0] == ref[0][: len(c[0])]


def test_gzip_of_several_members_and_zero_padding_reads_whole(tmp_path, captures, monkeypatch):
    """gzip(1) allows members one after another and zero padding (a tape block): both read it
    whole; garbage after the last member is damage."""
    import gzip as gz

    raw = (captures / "healthy.pcap").read_bytes()
    half = len(raw) // 2
    p = tmp_path / "multi.pcap.gz"
    p.write_bytes(gz.compress(raw[:half], mtime=0) + gz.compress(raw[half:], mtime=0) + b"\0" * 512)
    c, py = _both_readers(monkeypatch, p)
    ref, _ = _both_readers(monkeypatch, captures / "healthy.pcap")
    assert c == py and c[0] == ref[0] and c[3] is None
    p.write_bytes(gz.compress(raw, mtime=0) + b"garbage!")
    c, py = _both_readers(monkeypatch, p)
    assert c[0] == ref[0] and c[3] and "compressed data is corrupt" in c[3] and py[3]


@pytest.mark.parametrize("version", [1, 2])
def test_linux_cooked_capture_is_walked_in_c_with_the_frames_of_the_python_reader(tmp_path, captures, monkeypatch, version):
    p = tmp_path / f"sll{version}.pcap"
    assert rewrite_as_sll(captures / "healthy.pcap", p, version) > 0
    c, py = _both_readers(monkeypatch, p)
    assert c == py and c[3] is None and c[5] == [113 if version == 1 else 276]


def test_progress_of_a_gzip_capture_counts_compressed_bytes_up_to_its_size(tmp_path, captures):
    """A progress bar is out of the file's size: for gzip, the bytes read are the compressed
    ones (the walker's offset is in the inflated stream, larger than the file)."""
    import gzip as gz

    raw = (captures / "healthy.pcap").read_bytes() * 40
    p = tmp_path / "big.pcap.gz"
    p.write_bytes(gz.compress(raw[:24] + b"".join(raw[24:len(raw) // 40] for _ in range(40)), mtime=0))
    cap = Capture(p, PORTS)
    seen = []
    for _ in cap.frames():
        seen.append(cap.tell())
    assert seen and all(0 <= s <= cap.size for s in seen) and cap.walker.position > cap.size
