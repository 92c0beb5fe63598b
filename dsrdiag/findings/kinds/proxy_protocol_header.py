"""proxy_protocol_header: a connection starts with a PROXY protocol header (v1 or v2).

Information, not a fault: a full proxy (HAProxy `send-proxy`, NetScaler, F5 iRule) passes the
client address to an MTA that accepts it (Postfix `smtpd_upstream_proxy_protocol`).
"""

from __future__ import annotations

from dsrdiag.findings.finding import ERROR, INFO, WARNING  # noqa: F401 (the entry's severity)
from dsrdiag.findings.kind import Entry
from dsrdiag.findings.kinds.carried import CarriedCollector

ENTRY = Entry(
    kind="proxy_protocol_header",
    severity=INFO,
    title="PROXY protocol header carries the client address",
    explanation=(
        "The stream starts with a PROXY protocol header: a full-proxy load balancer passes the "
        "original client address in-band. The server must expect it on this port (or it rejects "
        "the header as a bad command), and relay decisions then use the address in the header."
    ),
    decided="A PROXY v1 line or v2 binary header as the first bytes the client sends.",
    seen_from="A capture between the load balancer and the back-end.",
    windows="Exchange does not accept PROXY protocol: use DSR for Exchange back-ends.",
    linux=(
        "Nothing to fix if intended. Accept PROXY only on a port that only the load balancer can "
        "reach (anyone speaking PROXY could claim any address): Postfix "
        "`smtpd_upstream_proxy_protocol = haproxy` on that port alone."
    ),
)

KIND = ENTRY.kind


class Collector(CarriedCollector):
    kind, carrier = KIND, "PROXY protocol"

    def carried(self, c):
        h = c.smtp.proxy
        if h is None:
            return None
        client = f"{h.client_ip}:{h.client_port}" if h.client_ip else "unknown"
        return client, h.frame, h.ts_ns, f"PROXY v{h.version} header: client {client}"
