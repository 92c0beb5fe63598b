"""Report: everything one run concluded, for the presenters in report/.

Why a model between jobs and presentation: the terminal, JSON and (later) HTML reports show the
same facts; none of them recomputes anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dsrdiag.core.topology import Topology
from dsrdiag.findings.finding import BackendRef, Finding
from dsrdiag.findings.verdict import Judged, Verdict
from dsrdiag.track.records import Connection

REPORT_VERSION = "2.1"
"""Version of the JSON document's schema (docs/report.schema.json). Bump on incompatible change."""


@dataclass(frozen=True)
class CaptureSummary:
    path: str
    vantage: str
    frames: int
    analysed: int
    linktypes: tuple[int, ...]
    reader: str
    damage: str | None
    first_ts_ns: int | None
    last_ts_ns: int | None
    anomalies: dict[str, int]
    anomaly_frames: dict[str, int]
    limits: tuple[str, ...]
    connections: int


@dataclass(frozen=True)
class Failure:
    """How some of a back-end's connections failed, as data: `kind` is the finding kind that caused
    it (return_source_not_vip...), `lost_on_path` (correlated captures saw where), or `conn_state`
    (only the connection's state at the vantage that saw most is known)."""

    kind: str
    text: str
    connections: int
    vantage: str | None = None
    conn_state: str | None = None


@dataclass(frozen=True)
class BackendRow:
    backend: BackendRef
    connections: int
    completed: int
    failed: int
    banner_hosts: tuple[str, ...]
    median_banner_ms: float | None
    failures: tuple[Failure, ...] = ()
    """Where the connections that did not complete died, and how many of each."""


@dataclass(frozen=True)
class HostSummary:
    """What hostcheck read: the host, where from, and its interfaces in brief."""

    os: str
    hostname: str | None
    sources: tuple[str, ...]
    interfaces: tuple[dict, ...]
    default_routes: tuple[str, ...]
    listeners: tuple[str, ...]
    cannot_show: tuple[str, ...]


@dataclass(frozen=True)
class ProbeSummary:
    """What the probe sent and what it learnt beyond the capture: sessions, ARP answers, skips."""

    vip: str
    port: int
    iface: str
    source: str
    on_link: bool
    mode: str
    """smtp or syn-only"""
    sessions: tuple[dict, ...]
    backends: tuple[dict, ...]
    arp_answers: tuple[str, ...] | None
    """MACs that answered ARP/NDP for the VIP; None when not asked."""
    skipped: tuple[str, ...]
    pcap: str | None


@dataclass(frozen=True)
class Report:
    captures: tuple[CaptureSummary, ...]
    topology: Topology
    connections: tuple[tuple[Connection, BackendRef | None], ...]
    findings: tuple[Finding, ...]
    verdict: Verdict
    backends: tuple[BackendRow, ...]
    version: str = REPORT_VERSION
    notes: tuple[str, ...] = field(default=())
    host: HostSummary | None = None
    probe: ProbeSummary | None = None
    correlation: object | None = None
    """correlate.paths.Correlation when several vantages were analysed together."""
    judged: Judged | None = None
    """What there was to judge (the verdict is re-decided from it for another --fail-on)."""

    @property
    def damaged(self) -> bool:
        return any(c.damage for c in self.captures)
