"""Read pcap and pcapng files (plain or gzip) into raw frames with Wireshark frame numbers.

Reads: a capture path, `-` (standard input) or any stream a path names (a FIFO, /dev/stdin,
`<(zcat x.gz)`), opened once. Produces: (frame, ts_ns, linktype, data, wirelen) tuples for the frames
that pass the BPF filter, then a CaptureEnd saying how reading ended.
Never: modifies or copies the input; raises for damage found after the file header (damage is
recorded in CaptureEnd and the frames before it are still delivered).

Why these readers:
- The C walker (capture/_fastpcap.c) reads classic pcap (either byte order, micro- or nanoseconds)
  and pcapng (several sections and interfaces, each with its link type and timestamp resolution),
  from a descriptor (a file or a pipe) or from a gzip stream (_Inflate: ISA-L's inflater where
  python-isal is installed, else zlib's), in C, and hands TCP frames to the C tracker through a
  sink (capture/_sink.h) without a Python object per packet. pcapng and gzip cost 6-9x the CPU of
  classic pcap through Python (issue 14); in C they cost about what classic pcap does.
- libpcap (pcapy-ng) and a small Python reader are the references the tests compare the walker
  with, and the readers where it was not built (DSRDIAG_READER=python or libpcap selects them):
  libpcap for classic microsecond pcap files; Python for the rest (pcapy-ng's bundled libpcap
  1.9.1 cannot read gzip, would round nanoseconds, and refuses pcapng with several link types).
All apply the same compiled BPF program (libpcap's `bpf_filter` semantics) to every frame. We do
not use `setfilter`: libpcap then skips non-matching frames silently and the frame numbers, which
every finding cites and users look up in Wireshark, would be lost.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

import pcapy

from dsrdiag.capture.bpf import dlt_for, filter_for
from dsrdiag.capture.frame import (
    LINKTYPE_RAW,
    SUPPORTED_LINKTYPES,
    CaptureEnd,
    linktype_name,
)
from dsrdiag.core.errors import CaptureError

try:  # the C walker (setup.py builds it; optional: without it libpcap reads classic pcap)
    from dsrdiag.capture import _fastpcap
except ImportError:  # pragma: no cover - exercised where no compiler was available
    _fastpcap = None

try:  # ISA-L's inflater, faster than zlib's (docs/performance.md); optional: zlib reads the same data
    from isal import isal_zlib as _inflater
except ImportError:  # pragma: no cover - exercised where python-isal is not installed
    _inflater = zlib


PCAP_MAGIC_US = (0xA1B2C3D4, 0xD4C3B2A1)
PCAP_MAGIC_NS = (0xA1B23C4D, 0x4D3CB2A1)
PCAPNG_SHB = 0x0A0D0D0A
MAX_CAPLEN = 262144
"""libpcap's largest snapshot length; a bigger record length means the file is corrupt."""
MAX_BLOCK = 16 * 1024 * 1024
"""Wireshark's limit for one pcapng block."""
# libpcap's DLT numbers that differ from LINKTYPE numbers (DLT_RAW is 12 on Linux, 14 on OpenBSD)
_DLT_TO_LINKTYPE = {12: LINKTYPE_RAW, 14: LINKTYPE_RAW}


_COMPILED: dict[tuple, object] = {}
"""Compiled BPF programs by (link type, ports): libpcap's compiler costs ~6 ms a call, more than
reading a small capture; a folder of captures (or a test suite) compiles each once per process."""

STDIN = "-"
"""The path that means standard input (`tcpdump -w - | dsrdiag analyze -`)."""


class Capture:
    """One capture, opened once and read once: iterate `frames()`, then look at `end`.

    Any input that can be read in order works as a file does (the same frame numbers, the same
    damage report): a file, `-` (standard input), a FIFO, /dev/stdin, a process substitution
    (`<(zcat x.gz)`). It is opened once, its format is sniffed from the first bytes read (never
    by opening it again: a pipe would hang or lose them), and those bytes are handed on to the
    reader. A stream that ends inside a record is damage, reported as for a cut file."""

    def __init__(self, path: str | os.PathLike, ports: tuple[int, ...] = (25,)):
        self.path = os.fsdecode(path) if not isinstance(path, str) else path
        self.ports = ports
        self.end = CaptureEnd()
        self.size = 0
        self._file = None
        self._head = b""
        self._kind = self._sniff()
        self._programs: dict[int, object] = {}
        self.position = 0
        """Bytes of the file read so far (updated every 65,536 frames), for progress bars."""
        self.walker = None
        """The C walker (capture/_fastpcap.c) once reading started with it."""

    def tell(self) -> int:
        """Bytes of the file read so far, for progress bars (out of `size`: for gzip, compressed
        bytes, not the walker's offset in the inflated stream)."""
        if self._kind == "gzip":
            f = self._file
            try:
                return min(f.tell(), self.size) if f is not None and self._regular else self.size
            except (OSError, ValueError):
                return self.size
        return self.walker.position if self.walker is not None else self.position

    def close(self) -> None:
        f = getattr(self, "_file", None)  # an instance whose __init__ never ran (unpickled, or failed early)
        if f is not None:
            f.close()
            self._file = None

    def __del__(self):
        self.close()

    # ---- opening and format detection -------------------------------------------------------
    def _sniff(self) -> str:
        try:
            if self.path == STDIN:
                if os.isatty(0):  # it would wait for the keyboard
                    raise CaptureError("- reads a capture from standard input, which is a terminal here: "
                                       "pipe one in (tcpdump -w - | dsrdiag analyze -)")
                self._file = io.FileIO(os.dup(0), "rb")  # ours to close; fd 0 stays as it is
            else:
                self._file = io.FileIO(self.path, "rb")
            st = os.fstat(self._file.fileno())
            self._regular = stat.S_ISREG(st.st_mode)
            self.size = st.st_size if self._regular else 0
            self._head = head = _read_fd(self._file, 24)
        except FileNotFoundError:
            raise CaptureError(f"{self.path}: no such file") from None
        except IsADirectoryError:
            raise CaptureError(f"{self.path}: is a directory, not a capture file") from None
        except PermissionError:
            raise CaptureError(f"{self.path}: permission denied") from None
        except OSError as e:
            what = "standard input" if self.path == STDIN else self.path
            raise CaptureError(f"{what}: cannot be read ({e.strerror or e})") from None
        if not head:
            what = "standard input is empty" if self.path == STDIN else f"{self.path}: empty file"
            raise CaptureError(f"{what}, not a capture")
        if head[:2] == b"\x1f\x8b":
            return "gzip"
        kind = _kind_of_magic(head[:4])
        if kind is None:
            raise CaptureError(
                f"{self.path}: not a pcap or pcapng capture (starts with {head[:4].hex(' ')})"
            )
        return kind

    def _stream(self) -> BinaryIO:
        """The input from its first byte: the sniffed bytes, then the rest of the descriptor."""
        return io.BufferedReader(_Prefixed(self._head, self._file), buffer_size=1 << 20)

    # ---- the one entry point ------------------------------------------------------------
    def frames(self, sink=None, sweep_at: int | None = None) -> Iterator[tuple]:
        """Frames that passed the filter, for Python to decode. With the C walker and a `sink` (a
        capsule of capture/_sink.h: the C tracker's), TCP frames it can decode go to the sink
        instead, until frame number `sweep_at` (then every frame comes here until walker.next_sweep
        is moved on). DSRDIAG_READER=python (or libpcap) reads without the C walker: the reference
        readers the tests compare it with."""
        use_c = _fastpcap is not None and os.environ.get("DSRDIAG_READER") not in ("libpcap", "python")
        if use_c:
            self.end.reader = "c"
            if self._kind == "gzip":
                return self._c_gzip_frames(sink, sweep_at)
            return self._c_frames(self._head, self._file.fileno(), sink, sweep_at)
        if self._kind == "pcap-us" and self._regular and os.path.isdir("/proc/self/fd"):
            self.end.reader = "libpcap"
            return self._libpcap_frames()
        self.end.reader = "python"
        return self._python_frames()

    def _program(self, linktype: int):
        prog = self._programs.get(linktype)
        if prog is None:
            if linktype not in SUPPORTED_LINKTYPES:
                raise CaptureError(
                    f"{self.path}: {linktype_name(linktype)} is not a supported link type "
                    "(supported: Ethernet with 802.1Q/QinQ, Linux cooked SLL/SLL2, raw IP, BSD/OpenBSD loopback)"
                )
            key = (linktype, tuple(self.ports))
            prog = _COMPILED.get(key)
            if prog is None:
                try:
                    prog = pcapy.compile(dlt_for(linktype), MAX_CAPLEN, filter_for(linktype, self.ports), 1, 0)
                except pcapy.PcapError as e:
                    raise CaptureError(f"{self.path}: cannot build the BPF filter for {linktype_name(linktype)}: {e}") from None
                _COMPILED[key] = prog
            self._programs[linktype] = prog
            self.end.linktypes.add(linktype)
        return prog

    def _program_for(self, linktype: int):
        """For the C walker's pcapng interfaces: the compiled program, or None for a link type that
        is not analysed (its frames are counted as skipped, as the Python reader does)."""
        return self._program(linktype).get_bpf() if linktype in SUPPORTED_LINKTYPES else None

    # ---- the C walker: classic pcap (any byte order, micro- or nanoseconds) and pcapng ------
    def _c_frames(self, head: bytes, source, sink, sweep_at) -> Iterator[tuple]:
        """`source`: a descriptor, or a readable object (a gzip stream), positioned after `head`
        (the bytes read to sniff the format: handed to the walker first)."""
        end = self.end
        try:
            pcapng = _kind_of_magic(head[:4]) == "pcapng"
            if pcapng:
                r = _fastpcap.Reader(source, 0, False, False, 0, (), prefix=head, program_for=self._program_for)
            else:
                if len(head) < 24:
                    raise CaptureError(f"{self.path}: truncated pcap file header")
                magic = struct.unpack("<I", head[:4])[0]
                big = magic in (PCAP_MAGIC_US[1], PCAP_MAGIC_NS[1])
                nanos = magic in PCAP_MAGIC_NS
                linktype = struct.unpack((">" if big else "<") + "I", head[20:24])[0] & 0x0FFFFFFF
                linktype = _DLT_TO_LINKTYPE.get(linktype, linktype)
                program = self._program(linktype).get_bpf()
                r = _fastpcap.Reader(source, 24, big, nanos, linktype, program, prefix=head[24:])
            self.walker = r
            if sink is not None:
                r.track(sink)
                if sweep_at is not None:
                    r.next_sweep = sweep_at
            try:
                yield from r  # what Python decodes, one frame at a time (the sink took the rest in the walk)
            except OSError as e:  # a read error mid-stream (EIO): damage, the frames before it stand
                r_damage = f"read error ({e.strerror or e})"
            else:
                r_damage = r.damage
            finally:
                self.position = r.position
                end.frames = r.frames
                end.passed = r.passed
                if pcapng:
                    end.skipped.update(r.skipped)
            if r_damage:
                end.damage = f"stopped after frame {r.frames}: {r_damage}"
            elif pcapng:
                self._some_interface_supported()
        finally:
            self.close()

    def _c_gzip_frames(self, sink, sweep_at) -> Iterator[tuple]:
        """gzip: decompressed by the fastest inflater installed (_gunzip), walked in C by blocks."""
        try:
            f = _Inflate(self._stream())
            head = _read(f, 24)
            if _kind_of_magic(head[:4]) is None:
                raise CaptureError(f"{self.path}: gzip data that is not a pcap or pcapng capture")
        except _Damage as d:
            self.end.damage = f"stopped after frame 0: {d}"
            self.close()
            return
        except BaseException:
            self.close()
            raise
        yield from self._c_frames(head, f, sink, sweep_at)

    def _some_interface_supported(self) -> None:
        end = self.end
        if end.frames and not end.linktypes:
            lts = ", ".join(linktype_name(lt) for lt in sorted(end.skipped))
            raise CaptureError(f"{self.path}: no interface has a supported link type ({lts})")

    # ---- libpcap --------------------------------------------------------------------------
    def _libpcap_frames(self) -> Iterator[tuple]:
        end = self.end
        try:  # the file already open (and sniffed), by its descriptor: any name, and opened once
            reader = pcapy.open_offline(f"/proc/self/fd/{self._file.fileno()}")
        except pcapy.PcapError as e:
            self.close()
            raise CaptureError(f"{self.path}: libpcap cannot open it: {e}") from None
        dlt = reader.datalink()
        linktype = _DLT_TO_LINKTYPE.get(dlt, dlt)
        flt = self._program(linktype).filter
        nxt = reader.next
        n = 0
        passed = 0
        consumed = 24
        try:
            while True:
                try:
                    hdr, data = nxt()
                except pcapy.PcapError as e:
                    end.damage = f"stopped after frame {n}: {e}"
                    break
                if hdr is None:
                    break
                n += 1
                consumed += 16 + len(data)
                if not n & 0xFFFF:
                    self.position = consumed
                if flt(data):
                    passed += 1
                    sec, usec = hdr.getts()
                    yield (n, sec * 1_000_000_000 + usec * 1000, linktype, data, hdr.getlen())
        finally:
            end.frames = n
            end.passed = passed
            reader.close()
            self.close()

    # ---- pure Python: the reference reader, and where the C walker was not built ------------
    def _python_frames(self) -> Iterator[tuple]:
        end = self.end
        raw = self._stream()
        if self._kind == "gzip":
            import gzip  # here: only this reference reader needs it (~2.5 ms at every start otherwise)

            f: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb")
        else:
            f = raw
        try:
            head = _read(f, 4)
            kind = _kind_of_magic(head) if len(head) == 4 else None
            if kind is None:
                what = "gzip data that is not a pcap or pcapng capture" if self._kind == "gzip" else "not a capture"
                raise CaptureError(f"{self.path}: {what}")
            if kind == "pcapng":
                yield from self._pcapng(f, head)
            else:
                yield from self._pcap(f, head, nanos=(kind == "pcap-ns"))
        except _Damage as d:
            end.damage = f"stopped after frame {end.frames}: {d}"
        finally:
            self.close()

    def _pcap(self, f: BinaryIO, magic: bytes, nanos: bool) -> Iterator[tuple]:
        end = self.end
        bo = "<" if struct.unpack("<I", magic)[0] in (PCAP_MAGIC_US[0], PCAP_MAGIC_NS[0]) else ">"
        rest = _read(f, 20)
        if len(rest) < 20:
            raise CaptureError(f"{self.path}: truncated pcap file header")
        _vmaj, _vmin, _zone, _sig, _snap, linktype = struct.unpack(bo + "HHiIII", rest)
        linktype &= 0x0FFFFFFF  # the upper bits carry FCS information
        flt = self._program(linktype).filter
        rec = struct.Struct(bo + "IIII")
        scale = 1 if nanos else 1000
        offset = 24
        n = 0
        while True:
            h = _read(f, 16)
            if not h:
                break
            if len(h) < 16:
                raise _Damage(f"truncated record header at byte offset {offset}")
            sec, frac, incl, orig = rec.unpack(h)
            if incl > MAX_CAPLEN:
                raise _Damage(f"record at byte offset {offset} claims {incl} captured bytes (more than {MAX_CAPLEN}): corrupt")
            data = _read(f, incl)
            if len(data) < incl:
                raise _Damage(f"frame {n + 1} truncated at byte offset {offset}: {len(data)} of {incl} bytes present")
            offset += 16 + incl
            n += 1
            end.frames = n
            if not n & 0xFFFF:
                self.position = offset
            if flt(data):
                end.passed += 1
                yield (n, sec * 1_000_000_000 + frac * scale, linktype, data, orig)

    def _pcapng(self, f: BinaryIO, first: bytes) -> Iterator[tuple]:
        end = self.end
        offset = 0
        n = 0
        bo = "<"
        ifaces: list[tuple[int, int, int, object]] = []  # (linktype, ts_num, ts_den, filter)
        btype_raw = first
        while True:
            if btype_raw is None:
                btype_raw = _read(f, 4)
            if not btype_raw:
                break
            if len(btype_raw) < 4:
                raise _Damage(f"truncated block header at byte offset {offset}")
            lenraw = _read(f, 4)
            if len(lenraw) < 4:
                raise _Damage(f"truncated block header at byte offset {offset}")
            if btype_raw == b"\x0a\x0d\x0d\x0a":
                bom = _read(f, 4)
                if len(bom) < 4:
                    raise _Damage(f"truncated section header at byte offset {offset}")
                if bom == b"\x4d\x3c\x2b\x1a":
                    bo = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    bo = ">"
                else:
                    raise _Damage(f"bad byte-order magic in section header at byte offset {offset}")
                blen = struct.unpack(bo + "I", lenraw)[0]
                if blen < 28 or blen % 4 or blen > MAX_BLOCK:
                    raise _Damage(f"section header at byte offset {offset} has a corrupt length ({blen})")
                body = bom + _read(f, blen - 16)
                ifaces = []  # a new section starts a new interface list
            else:
                btype = struct.unpack(bo + "I", btype_raw)[0]
                blen = struct.unpack(bo + "I", lenraw)[0]
                if blen < 12 or blen % 4 or blen > MAX_BLOCK:
                    raise _Damage(f"block at byte offset {offset} has a corrupt length ({blen})")
                body = _read(f, blen - 12)
            if len(body) < blen - 12:
                raise _Damage(f"block at byte offset {offset} truncated: {len(body) + 8} of {blen} bytes present")
            trailer = _read(f, 4)
            if len(trailer) < 4:
                raise _Damage(f"block at byte offset {offset} truncated (no trailing length)")
            if struct.unpack(bo + "I", trailer)[0] != blen:
                raise _Damage(f"block at byte offset {offset}: trailing length differs from leading length")
            if btype_raw != b"\x0a\x0d\x0d\x0a":
                if btype == 1:  # Interface Description Block
                    if len(body) < 8:
                        raise _Damage(f"interface block at byte offset {offset} too short")
                    linktype = struct.unpack_from(bo + "H", body, 0)[0]
                    linktype = _DLT_TO_LINKTYPE.get(linktype, linktype)
                    num, den = _if_tsresol(body, bo)
                    # an interface of an unsupported type is not fatal in a file that has others:
                    # its frames are counted and reported as skipped
                    flt = self._program(linktype).filter if linktype in SUPPORTED_LINKTYPES else None
                    ifaces.append((linktype, num, den, flt))
                elif btype in (6, 2):  # Enhanced / obsolete Packet Block
                    if len(body) < 20:
                        raise _Damage(f"packet block at byte offset {offset} too short")
                    if btype == 6:
                        ifid, tsh, tsl, caplen, wirelen = struct.unpack_from(bo + "IIIII", body, 0)
                    else:
                        ifid, _drops, tsh, tsl, caplen, wirelen = struct.unpack_from(bo + "HHIIII", body, 0)
                    if ifid >= len(ifaces):
                        raise _Damage(f"packet block at byte offset {offset} names interface {ifid}, which was never described")
                    if caplen > len(body) - 20:
                        raise _Damage(f"packet block at byte offset {offset} claims {caplen} bytes but holds {len(body) - 20}")
                    n += 1
                    end.frames = n
                    linktype, num, den, flt = ifaces[ifid]
                    if flt is None:
                        end.skipped[linktype] = end.skipped.get(linktype, 0) + 1
                        offset += blen
                        btype_raw = None
                        continue
                    data = body[20 : 20 + caplen]
                    if flt(data):
                        end.passed += 1
                        ts = ((tsh << 32) | tsl) * num // den
                        yield (n, ts if ts <= _TS_MAX else _TS_MAX, linktype, data, wirelen)
                elif btype == 3:  # Simple Packet Block: no timestamp, interface 0
                    if not ifaces or len(body) < 4:
                        raise _Damage(f"simple packet block at byte offset {offset} without an interface")
                    wirelen = struct.unpack_from(bo + "I", body, 0)[0]
                    n += 1
                    end.frames = n
                    linktype, _num, _den, flt = ifaces[0]
                    data = body[4 : 4 + min(wirelen, len(body) - 4)]
                    if flt is None:
                        end.skipped[linktype] = end.skipped.get(linktype, 0) + 1
                    elif flt(data):
                        end.passed += 1
                        yield (n, 0, linktype, data, wirelen)
                # every other block type (name resolution, statistics, secrets, custom) is skipped
            offset += blen
            btype_raw = None
        self._some_interface_supported()


class _Damage(Exception):
    """Internal: damage found; becomes CaptureEnd.damage."""


def _kind_of_magic(head: bytes) -> str | None:
    if len(head) < 4:
        return None
    if head == b"\x0a\x0d\x0d\x0a":
        return "pcapng"
    m = struct.unpack("<I", head)[0]
    if m in PCAP_MAGIC_US:
        return "pcap-us"
    if m in PCAP_MAGIC_NS:
        return "pcap-ns"
    return None


def _read_fd(f, n: int) -> bytes:
    """Up to n bytes from an unbuffered file, fewer only at its end (a pipe gives what it has)."""
    out = b""
    while len(out) < n:
        got = f.read(n - len(out))
        if not got:
            break
        out += got
    return out


class _Prefixed(io.RawIOBase):
    """A raw stream: `head` (bytes already read to sniff the format), then the rest of `f`."""

    def __init__(self, head: bytes, f):
        self._head, self._f = head, f

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        return self._f.readinto(b)


class _Inflate(io.RawIOBase):
    """A gzip stream (RFC 1952: members one after another, zero padding after one as gzip(1)
    allows) inflated by `lib`'s decompressobj: python-isal's (ISA-L) when installed, else zlib's.

    Why not gzip.GzipFile or isal's IGzipFile: each read hands on what it could inflate so far,
    at most OUT_MAX bytes (a small compressed input never becomes a huge buffer), and a stream cut
    short or corrupt raises only after every byte inflated before the damage was handed on, so the
    walker analyses up to the damage; IGzipFile raises first and loses them. The C walker calls
    readinto1 once per window fill."""

    CHUNK = 1 << 18
    OUT_MAX = 1 << 20

    def __init__(self, raw: BinaryIO, lib=None):
        if lib is None:  # DSRDIAG_INFLATER=zlib: the standard library's, to measure the difference (docs/performance.md)
            lib = zlib if os.environ.get("DSRDIAG_INFLATER") == "zlib" else _inflater
        self._raw, self._lib = raw, lib
        self._d = self._lib.decompressobj(31)
        self._in = b""
        self._out = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._out:
            if self._done:
                return 0
            self._out = memoryview(self._more())
        n = min(len(b), len(self._out))
        b[:n] = self._out[:n]
        self._out = self._out[n:]
        return n

    readinto1 = readinto

    def _more(self) -> bytes:
        d = self._d
        if d.eof:  # a member ended: another may follow, after zero padding
            rest = d.unused_data + self._in
            while not rest.strip(b"\0"):
                rest = self._raw.read(self.CHUNK)
                if not rest:
                    self._done = True
                    return b""
            self._in = rest.lstrip(b"\0")
            self._d = d = self._lib.decompressobj(31)
        elif not self._in:
            self._in = self._raw.read(self.CHUNK)
            if not self._in:
                raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        out = d.decompress(self._in, self.OUT_MAX)
        self._in = d.unconsumed_tail
        return out


def _read(f: BinaryIO, n: int) -> bytes:
    """Read up to n bytes; a corrupt gzip stream counts as the end of readable data."""
    try:
        if isinstance(f, _Inflate):  # a raw stream: one read may give fewer bytes than it has
            return _read_fd(f, n)
        return f.read(n)
    except (EOFError, zlib.error, _inflater.error, OSError) as e:  # OSError: gzip.BadGzipFile among them
        raise _Damage(f"compressed data is corrupt ({e})") from None


_TS_MAX = (1 << 63) - 1
"""Nanoseconds fit in a signed 64-bit integer until the year 2262: a pcapng timestamp beyond (a
corrupt block, or a resolution in seconds with a wild value) is held there, as every later stage
(the C tracker, packed notes) counts in 64 bits."""


def _if_tsresol(body: bytes, bo: str) -> tuple[int, int]:
    """Nanoseconds per tick as a fraction (num, den) from the IDB's if_tsresol option (default µs)."""
    num, den = 1000, 1  # microseconds
    pos = 8
    while pos + 4 <= len(body):
        code, olen = struct.unpack_from(bo + "HH", body, pos)
        if code == 0:
            break
        val = body[pos + 4 : pos + 4 + olen]
        if code == 9 and val:  # (an option cut by the block's end has no value: the default stands)
            r = val[0]
            if r & 0x80:
                num, den = 1_000_000_000, 1 << (r & 0x7F)
            else:
                exp = r & 0x7F
                num, den = (10 ** (9 - exp), 1) if exp <= 9 else (1, 10 ** (exp - 9))
        pos += 4 + ((olen + 3) & ~3)
    return num, den
