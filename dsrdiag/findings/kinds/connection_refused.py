"""connection_refused: SYNs to the VIP answered with a RST (Zeek's REJ).

A host that holds the VIP answered, but nothing accepts connections on the VIP and port: the MTA
listens on the back-end's real address only, or was not restarted after the VIP was added.
Grouped by the back-end that refused (the RST's source MAC, or where the SYN was delivered).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from dsrdiag.decode.tcp import RST
from dsrdiag.findings.context import Context, first
from dsrdiag.findings.finding import ERROR, MAX_EVIDENCE, Finding, plural
from dsrdiag.findings.kind import Entry
from dsrdiag.track.records import RESP

ENTRY = Entry(
    kind="connection_refused",
    severity=ERROR,
    title="The back-end refuses connections to the VIP",
    explanation=(
        "The client's SYN to the VIP was answered with a RST: a host holds the VIP (it answered for it) "
        "but nothing accepts connections on the VIP and port. Typically the MTA listens on the "
        "back-end's real address only (Postfix `inet_interfaces` naming one address, an Exchange receive "
        "connector bound to the LAN adapter's address), or the VIP is on the host but the service was "
        "never restarted after it was added. In DSR the back-end receives the client's packets addressed "
        "to the VIP, so the service must listen on the VIP (or on every address)."
    ),
    decided=(
        "A connection to VIP:P whose SYN was answered by a RST from the VIP (Zeek's REJ), grouped by "
        "the back-end that answered (the RST's source MAC, or the MAC the SYN was delivered to)."
    ),
    seen_from=(
        "Any vantage that sees the RST: the client (unless a firewall drops it), the firewall, the server "
        "LAN, the back-end itself. Not the load balancer's own interface in DSR (replies do not pass it)."
    ),
    windows=(
        "Bind the receive connector to all addresses or to the VIP: `Get-ReceiveConnector | ft Name,Bindings`, "
        "then `Set-ReceiveConnector \"<server>\\Default Frontend <server>\" -Bindings 0.0.0.0:25`; "
        "check with `netstat -ano | findstr :25` that something listens on the VIP (or 0.0.0.0)."
    ),
    linux=(
        "Make the MTA listen on every address or on the VIP too: Postfix `inet_interfaces = all` (or list the "
        "VIP) and `postfix reload`; Exim `local_interfaces`; check with `ss -ltnp 'sport = :25'`."
    ),
    load_balancer=(
        "Not on the load balancer; but its health monitor should probe the VIP on the back-end (NetScaler "
        "monitor with `-destIP` the VIP and `-transparent YES`, F5 monitor alias address, keepalived "
        "`TCP_CHECK` with `connect_ip` the VIP) so that a back-end refusing the VIP is taken out of service."
    ),
)

KIND = ENTRY.kind


class Collector:
    """Fed every service connection in judge's one pass. Idle (judge does not feed it) without a
    VIP: it judges connections to one."""

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.refused: dict = defaultdict(list)
        vips, backend_of, refused = ctx.vips, ctx.backend_of, self.refused
        self.idle = not vips

        def observe(c) -> None:
            if c.conn_state != "REJ" or c.server_ip not in vips:
                return
            refused[backend_of(c)].append(c)
        self.observe = observe

    def findings(self) -> Iterator[Finding]:
        ctx = self.ctx
        for backend, conns in sorted(self.refused.items(), key=lambda kv: kv[0].name if kv[0] else ""):
            evidence = []
            for c in conns:
                rst = first(c.packets, lambda n: n.direction == RESP and n.flags & RST)
                if c.syn_frames and len(evidence) < MAX_EVIDENCE:
                    evidence.append(ctx.ref(c.syn_frames[0], c, f"SYN {c.client_ip}:{c.client_port} -> VIP {c.server_ip}:{c.server_port}"))
                if rst and len(evidence) < MAX_EVIDENCE:
                    evidence.append(ctx.ref(rst, c, f"RST from {c.server_ip}:{c.server_port} (MAC {rst.src_mac or '?'}): nothing listens on the VIP"))
            vip, port = conns[0].server_ip, conns[0].server_port
            tries = sum(len(c.syn_frames) for c in conns)
            summary = (f"{plural(len(conns), 'connection')} to VIP {vip}:{port} refused with a RST"
                       + (f" by {backend.name}" if backend else "")
                       + (f" ({plural(tries, 'SYN')} in all)" if tries > len(conns) else "")
                       + ": the host answers for the VIP but nothing listens on it.")
            yield Finding(kind=KIND, severity=ERROR, vantages=(ctx.vantage,), summary=summary,
                          evidence=tuple(sorted(evidence)), connections=tuple(c.uid for c in conns),
                          backend=backend, subject=f"{vip}:{port}")
