"""How a full proxy passes the client address on (PROXY protocol, XCLIENT): one shape for both kinds.

Why shared: proxy_protocol_header and smtp_xclient are the same judgement (information: the
address travels in the stream) about two carriers; each kind module declares its own texts and
says how to read its carrier; this groups the connections by the back-end that received each one.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from dsrdiag.findings.context import Context
from dsrdiag.findings.finding import INFO, MAX_EVIDENCE, Finding, plural


class CarriedCollector:
    """Connections whose stream carries the client address, grouped by the back-end that got them."""

    kind = ""
    carrier = ""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.by_backend: dict = defaultdict(list)
        self.idle = not getattr(ctx.records.facts, "carried", True)
        """No record of the capture carried a PROXY header or XCLIENT (its Facts saw every record as
        it was made: track/facts.py): judge does not feed this collector."""

    def carried(self, c) -> tuple[str, int | None, int | None, str] | None:
        """(client address as carried, frame, time, evidence text), or None."""
        raise NotImplementedError

    def observe(self, c) -> None:
        if c.smtp is not None and self.carried(c) is not None:
            self.by_backend[self.ctx.backend_of(c)].append(c)

    def findings(self) -> Iterator[Finding]:
        ctx = self.ctx
        for backend, cs in sorted(self.by_backend.items(), key=lambda kv: kv[0].name if kv[0] else ""):
            evidence, clients = [], []
            for c in cs:
                client, frame, ts, what = self.carried(c)
                clients.append(client)
                if frame and len(evidence) < MAX_EVIDENCE:
                    evidence.append(ctx.frame(frame, ts, what))
            shown = ", ".join(sorted(set(clients))[:5])
            summary = (
                f"{plural(len(cs), 'connection')} from {', '.join(sorted({c.client_ip for c in cs}))}"
                + (f" to {backend.name}" if backend else "")
                + (" carries" if len(cs) == 1 else " carry") + f" the original client ({self.carrier}): {shown}."
            )
            yield Finding(kind=self.kind, severity=INFO, vantages=(ctx.vantage,), summary=summary,
                          evidence=tuple(sorted(evidence)), connections=tuple(c.uid for c in cs), backend=backend)


