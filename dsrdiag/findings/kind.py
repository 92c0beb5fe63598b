"""Entry: what a finding kind declares about itself (name, severity, texts, fixes, scope).

Why a type of its own: every kind, whatever it judges (one capture, captures correlated along the
path, a probe, a host's settings), declares the same things in the same shape, beside its
decision, in its own module (findings/kinds/<kind>.py), like a Zeek notice type declared by the
script that raises it. findings/catalog.py only collects them (reports and docs/findings.md read
the catalogue).
"""

from __future__ import annotations

from dataclasses import dataclass

CAPTURE, PATH, PROBE, HOST = "capture", "path", "probe", "host"
"""What a kind judges: one capture's records; several captures correlated along the path; the
probe's own sessions; a host's settings."""


@dataclass(frozen=True)
class Entry:
    kind: str
    severity: str
    title: str
    explanation: str
    decided: str
    """How dsrdiag decides it, from which packets."""
    seen_from: str
    """Which vantage can show it, and what a capture elsewhere cannot."""
    windows: str
    linux: str
    load_balancer: str = ""
    """The fix on the load balancer, where the fault can be there (NetScaler, Kemp, F5, HAProxy, LVS)."""
    scope: str = CAPTURE
    severities: tuple[str, ...] = ()
    """Severities an occurrence may have (empty: only `severity`)."""
