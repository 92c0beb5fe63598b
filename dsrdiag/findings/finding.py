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
    vantage: str
    summary: str
    """One or two sentences specific to this occurrence (addresses, counts, timings)."""
    evidence: tuple[FrameRef | HostRef, ...]
    """Packets (FrameRef) for capture findings; settings and lines read (HostRef) for host findings."""
    connections: tuple[str, ...] = ()
    """uids of the connections concerned."""
    backend: BackendRef | None = None
    subject: str = ""
    """What the finding is about when it is not a back-end (a VIP, a MAC)."""

    @property
    def rank(self) -> int:
        return SEVERITY_RANK[self.severity]

    def sort_key(self):
        first = self.evidence[0] if self.evidence else None
        return (-self.rank, self.kind, self.vantage, getattr(first, "ts_ns", 0), self.summary)
