"""sessions_failed: SMTP sessions (or SYNs) the probe itself sent to the VIP failed.

The probe's own truth: it knows each session's outcome (connect timeout, reset, no banner). A
failure that a finding from the probe's capture explains (a wrong-source reply, an ARP leak...)
is that finding's consequence (findings/causes.py links them by connection); failures the capture
does not explain, or sessions without a capture, are this finding's own.
"""

from __future__ import annotations

from typing import Iterator

from dsrdiag.core.evidence import HostRef
from dsrdiag.findings.finding import ERROR, Finding, plural
from dsrdiag.findings.kind import PROBE, Entry

ENTRY = Entry(
    kind="sessions_failed",
    severity=ERROR,
    title="SMTP sessions to the VIP failed",
    explanation=(
        "Some of the probe's real SMTP sessions to the VIP did not complete (timeout, reset, "
        "refused, no banner). When the probe's own capture explains why, that finding is "
        "reported instead; this one stands when nothing in the capture does, or when there was "
        "no capture (no root or libpcap): then the failure is certain, its cause is not."
    ),
    decided="Sessions whose outcome is not ok and that no packet-level finding of the same run explains.",
    seen_from="dsrdiag probe, from wherever it runs.",
    windows="Run the probe again as administrator/root for a capture, and capture on the load balancer and the back-ends (see syn_unanswered).",
    linux="Run the probe as root (or with CAP_NET_RAW) so that it captures what came back, and probe from the server LAN to see ARP.",
    scope=PROBE
)

KIND = ENTRY.kind
VANTAGE = "probe"


def decide(sessions, vip: str, port: int, captured: bool) -> Iterator[Finding]:
    """`sessions`: the probe's Session objects (outcome, source_port, error, responder)."""
    failed = [s for s in sessions if s.outcome not in ("ok", "synack")]
    if not failed:
        return
    yield Finding(
        kind=KIND, severity=ERROR, vantages=(VANTAGE,),
        summary=(f"{plural(len(failed), 'session')} of {len(sessions)} to {vip}:{port} failed "
                 f"({', '.join(sorted({s.outcome for s in failed}))})"
                 + ("." if captured else "; no capture was possible to say why.")),
        evidence=tuple(HostRef("probe session", i + 1, f"source port {s.source_port}: {s.outcome}" + (f" ({s.error})" if s.error else ""))
                       for i, s in enumerate(sessions) if s in failed[:12]),
        connections=tuple(dict.fromkeys(s.responder["uid"] for s in failed if s.responder.get("uid"))),
        subject=f"{vip}:{port}",
    )
