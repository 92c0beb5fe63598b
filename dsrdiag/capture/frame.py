"""The raw frame and end-of-capture records handed from capture/ to decode/.

Why plain tuples: the reader yields one per packet that passes the BPF filter, on the hot path;
a tuple costs a fraction of a dataclass. RawFrame documents the layout and is used in tests.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

# Link types (LINKTYPE_* values of pcap/pcapng files, https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

LINKTYPE_NAMES = {
    LINKTYPE_NULL: "NULL (BSD loopback)",
    LINKTYPE_ETHERNET: "EN10MB (Ethernet)",
    LINKTYPE_RAW: "RAW (raw IP)",
    LINKTYPE_LOOP: "LOOP (OpenBSD loopback)",
    LINKTYPE_LINUX_SLL: "LINUX_SLL (Linux cooked v1)",
    LINKTYPE_IPV4: "IPV4 (raw IPv4)",
    LINKTYPE_IPV6: "IPV6 (raw IPv6)",
    LINKTYPE_LINUX_SLL2: "LINUX_SLL2 (Linux cooked v2)",
}
SUPPORTED_LINKTYPES = frozenset(LINKTYPE_NAMES)


def linktype_name(lt: int) -> str:
    return LINKTYPE_NAMES.get(lt, f"link type {lt}")


class RawFrame(NamedTuple):
    """Layout of the tuples readers yield: (frame, ts_ns, linktype, data, wirelen)."""

    frame: int
    ts_ns: int
    linktype: int
    data: bytes
    wirelen: int


@dataclass
class CaptureEnd:
    """How reading one capture ended: cleanly, or stopped by damage (and where).

    Damage flows up as data, not as an exception, so the frames before it are still analysed.
    """

    frames: int = 0
    """Frames read (all of them, filtered or not): the last good frame number."""
    passed: int = 0
    """Frames that passed the BPF filter and were decoded."""
    linktypes: set[int] = field(default_factory=set)
    damage: str | None = None
    """One line: what was wrong and where reading stopped; None when the file was read to its end."""
    skipped: dict[int, int] = field(default_factory=dict)
    """Frames on pcapng interfaces of an unsupported link type, per link type (not analysed)."""
    reader: str = ""
    """Which reader did the work (c, libpcap or python), for the report."""
