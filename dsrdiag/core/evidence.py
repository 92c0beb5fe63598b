"""FrameRef: what every finding cites.

Why: a finding must prove itself; a user opens the capture in Wireshark and goes to the frame
number. Frame numbers here are Wireshark's: 1-based, counting every frame in the file, including
the ones the BPF filter skipped.
"""

from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True, slots=True, order=True)
class FrameRef:
    ts_ns: int
    """Capture timestamp in nanoseconds since the epoch (first for ordering)."""
    capture: str
    """Path of the capture as given on the command line."""
    vantage: str
    """Vantage name of that capture (label=path, or the file stem)."""
    frame: int
    """1-based frame number, as Wireshark and `tcpdump -#` number it."""
    what: str = ""
    """A short description of the frame (`SYN`, `SYN-ACK from 192.0.2.11`)."""

    @property
    def iso_time(self) -> str:
        return format_ts(self.ts_ns)


_last_second: tuple = (None, "")


def format_ts(ts_ns: int) -> str:
    """UTC ISO-8601 with nanoseconds trimmed to what the capture carries (at least microseconds)."""
    sec, ns = divmod(ts_ns, 1_000_000_000)
    global _last_second
    last_sec, base = _last_second  # one tuple: read and replaced whole (threads)
    if sec != last_sec:  # a report's times come in order, many in the same second: strftime once a second
        base = datetime.fromtimestamp(sec, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _last_second = (sec, base)
    frac = f"{ns:09d}"
    if frac.endswith("000"):
        frac = frac[:6]
    return f"{base}.{frac}Z"


@dataclass(frozen=True, slots=True, order=True)
class HostRef:
    """What a host check read: a kernel setting, an address, a line of saved Windows output.

    Why beside FrameRef: a host finding proves itself the same way a packet finding does, by
    pointing at exactly what was read (a /proc path and its value, or file:line of netsh output).
    """

    source: str
    """Where it was read: `/proc/sys/net/ipv4/conf/all/arp_ignore`, `netlink`, `host.txt`."""
    line: int
    """Line number in a saved file (1-based), 0 when not a file."""
    text: str
    """What was read, verbatim or as `key = value`."""
