"""smtp_xclient: the SMTP client sends XCLIENT (the original client's address) to the MTA.

Information, not a fault: a proxy or a front MTA passes the client on (Postfix
`smtpd_authorized_xclient_hosts`). Whether the server accepted it is in the reply codes.
"""

from __future__ import annotations

from dsrdiag.findings.finding import ERROR, INFO, WARNING  # noqa: F401 (the entry's severity)
from dsrdiag.findings.kind import Entry
from dsrdiag.findings.kinds.carried import CarriedCollector

ENTRY = Entry(
    kind="smtp_xclient",
    severity=INFO,
    title="SMTP XCLIENT forwards the client identity",
    explanation=(
        "The client side issued XCLIENT: an SMTP proxy (the load balancer or a filter) hands the "
        "original client's address and name to the server, which uses them for access control "
        "and logging. It is how Postfix lets a trusted proxy restore the client's identity."
    ),
    decided="An XCLIENT command in the client's SMTP dialogue (and the server offering it in EHLO).",
    seen_from="A capture between the proxy and the server.",
    windows="Exchange does not implement XCLIENT; an XCLIENT proxy needs a Postfix (or similar) back-end.",
    linux="Restrict `smtpd_authorized_xclient_hosts` to the proxy's address only.",
)

KIND = ENTRY.kind


class Collector(CarriedCollector):
    kind, carrier = KIND, "XCLIENT"

    def carried(self, c):
        x = c.smtp.xclient
        if not x:
            return None
        return x, c.smtp.xclient_frame, c.smtp.xclient_ts_ns, f"XCLIENT {x}"
