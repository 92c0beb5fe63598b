"""Finding: one fault (or noteworthy fact), with the frames that prove it.

Why: every finding proves itself (evidence frames: capture, frame number, time), says what it
means and how to fix it on Windows and Linux. The texts live in catalog.py, keyed by `kind`;
a Finding carries only what is specific to this occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsrdiag.core.evidence import FrameRef, HostRef

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITY_RANK = {INFO: 0, WARNING: 1, ERROR: 2}
MAX_EVIDENCE = 12
"""Frames cited per finding; the connections list is complete, the frames are the clearest few."""


def times(n: int) -> str:
    """`once`, `twice`, `3 times`."""
    return "once" if n == 1 else "twice" if n == 2 else f"{n} times"


def plural(n: int, word: str) -> str:
    """`3 connections`, `1 connection`: every summary counts things."""
    return f"{n} {word}{'' if n == 1 else 's'}"


@dataclass(frozen=True)
class BackendRef:
    name: str
    ip: str | None
    mac: str | None
    source: str
    """given | inferred"""


@dataclass(frozen=True)
class Finding:
    kind: str
    severity: str
    vantages: tuple[str, ...]
    """Every vantage (capture name) the fault was seen at, in path order once grouped."""
    summary: str
    """One or two sentences specific to this occurrence (addresses, counts, timings)."""
    evidence: tuple[FrameRef | HostRef, ...]
    """Packets (FrameRef) for capture findings; settings and lines read (HostRef) for host findings."""
    connections: tuple[str, ...] = ()
    """uids of the connections concerned."""
    backend: BackendRef | None = None
    subject: str = ""
    """What the finding is about when it is not a back-end (a VIP, a MAC)."""
    between: tuple[str, str] | None = None
    """(from, to) vantages for a finding about a segment of the path (firewall_drop, a bypass)."""
    id: str = ""
    """Stable identifier: the same fault in the same captures gets the same id in every run
    (findings/causes.py assigns it from kind, vantages, segment, back-end address and subject)."""
    explained_by: str | None = None
    """id of the finding that causes this one (None: a root cause, or nothing explains it)."""
    consequences: tuple[str, ...] = ()
    """ids of the findings this one causes."""

    @property
    def rank(self) -> int:
        return SEVERITY_RANK[self.severity]

    @property
    def vantage(self) -> str:
        """The first vantage: where a single-capture finding was seen (presenters join the list)."""
        return self.vantages[0] if self.vantages else ""

    def sort_key(self):
        first = self.evidence[0] if self.evidence else None
        return (-self.rank, self.kind, self.vantages, self.between or (), getattr(first, "ts_ns", 0), self.summary)
