"""syn_flood_or_scan: a flood of connection attempts against the service, or a scan: one finding.

Why one finding: a million spoofed SYNs are one event with one fix (SYN cookies, the load
balancer's SYN protection, a rate limit), not a million unanswered connections. Like Zeek's
scan.zeek, the decision is made from counters of failed attempts (track/facts.py Attempts,
gathered as the records are made: memory follows the number of attacked services and sources
followed, not the attempts), and like a Zeek notice with an identifier the per-connection noise is
suppressed: the attempts this finding claims are judged by no other kind (findings/judge.py), are
set apart from the verdict's count, and are still listed one by one in the JSON connection list
(Zeek's conn.log keeps them too).

The rule (general, from Zeek's scan.zeek and RFC 6298):
- a failed attempt is a connection the client opened with a SYN whose handshake it never
  completed (Zeek's connection_attempt or connection_rejected: S0, REJ, RSTOS0, SH, a SYN-ACK never
  ACKed); it is *lone* when the client sent one SYN, never retransmitted it and the server did not
  refuse it: every real stack retransmits an unanswered SYN (RFC 6298: after 1 s), flood tools and
  stateless scanners never do; a server's RST is an answer real clients take at once (refused
  attempts are connection_refused's, never a flood's; a scan counts them, as Zeek's does);
- a flood of a service (address and port): at least FLOOD_MIN_ATTEMPTS lone failed attempts, at
  least FLOOD_MIN_RATE of them in one second, and lone attempts at least LONE_SHARE of the failed
  ones (a broken service fails real clients, who retransmit: that stays syn_unanswered's);
- a scan from one source: failed attempts to at least ADDR_SCAN_THRESHOLD addresses on one port, or
  to at least PORT_SCAN_THRESHOLD ports of one address (Zeek's Scan::addr_scan_threshold 25 and
  Scan::port_scan_threshold 15; Zeek counts them over 5 minutes, here over the capture).
"""

from __future__ import annotations

from typing import Iterator

from dsrdiag.core.evidence import format_ts
from dsrdiag.findings.context import Context
from dsrdiag.findings.finding import WARNING, Finding, plural
from dsrdiag.findings.kind import Entry
from dsrdiag.track.facts import DISTINCT_MAX, SCAN_SOURCES_MAX
from dsrdiag.track.history import DONE_AFTER_SYNACK, DONE_NO_SYNACK, FLAGS, OPENED, REFUSED

FLOOD_MIN_ATTEMPTS = 1000
"""Lone failed attempts to one service before they are a flood."""
FLOOD_MIN_RATE = 100
"""... of which at least this many in one second (1000 in a day is noise, not a flood)."""
LONE_SHARE = 0.9
"""Share of the failed attempts that must be lone (never retransmitted)."""
ADDR_SCAN_THRESHOLD = 25
"""Zeek's Scan::addr_scan_threshold: addresses one source failed to reach on one port."""
PORT_SCAN_THRESHOLD = 15
"""Zeek's Scan::port_scan_threshold: ports of one address one source failed to reach."""
TOP_SOURCES = 5
"""Sources named in the summary (with their counts)."""

ENTRY = Entry(
    kind="syn_flood_or_scan",
    severity=WARNING,
    title="SYN flood or scan against the service",
    explanation=(
        "A flood of connection attempts reached the service: SYNs the clients never followed with "
        "an ACK, never retransmitted, from one or many (often spoofed) sources, far faster than "
        "real clients connect; or one source tried many addresses or ports (a scan). It is not a "
        "fault of the DSR set-up, but while it lasts the back-ends' SYN backlogs and the load "
        "balancer's and the firewall's connection tables fill, and real clients' SYNs go "
        "unanswered. The attempts are counted here as one event, not reported one by one."
    ),
    decided=(
        "From counters of failed connection attempts (a client SYN whose handshake the client never "
        "completed: Zeek's connection_attempt and connection_rejected), per service (address and "
        "port) and per source, as the records are made. A flood: at least "
        f"{FLOOD_MIN_ATTEMPTS} lone attempts (one SYN, never retransmitted, not refused by a server RST: "
        f"every real stack retransmits an unanswered SYN, RFC 6298, and refused ones are "
        f"connection_refused's) to one service, at least {FLOOD_MIN_RATE} of them in one second, "
        f"and lone attempts at least {LONE_SHARE:.0%} of the failed ones (a broken service fails real "
        "clients, who retransmit: that stays syn_unanswered). A scan: one source failing to reach at "
        f"least {ADDR_SCAN_THRESHOLD} addresses on one port or {PORT_SCAN_THRESHOLD} ports of one "
        "address (Zeek's policy/misc/scan.zeek thresholds, counted over the capture instead of "
        "5 minutes). Like a Zeek notice with an identifier, the attempts it claims raise nothing "
        "else (no syn_unanswered or asymmetric_flow per connection), are left out of the "
        "verdict's count of connections judged, and stay in the JSON connection list. Unanswered "
        "retransmitted SYNs of real clients to the same service at the same vantage are its "
        "consequences."
    ),
    seen_from=(
        "Any vantage on the request path: the client side of the firewall sees everything sent; "
        "past a firewall that rate-limits or a load balancer with SYN protection, fewer attempts "
        "arrive (compare the counts per vantage to see which device absorbs it)."
    ),
    windows=(
        "Windows has SYN attack protection on by default (it cannot be turned off since Vista); "
        "check the listener's backlog and the connector's limits (`Get-ReceiveConnector | fl "
        "MaxInboundConnection*`), and block the top sources with Windows Firewall "
        "(`New-NetFirewallRule -Direction Inbound -RemoteAddress <source> -Action Block`) if they "
        "are real, not spoofed."
    ),
    linux=(
        "Turn SYN cookies on (`sysctl -w net.ipv4.tcp_syncookies=1`), raise the backlog "
        "(`net.ipv4.tcp_max_syn_backlog`, `net.core.somaxconn`), and rate-limit new connections "
        "per source at the edge: `nft add rule inet filter input tcp dport 25 ct state new meter "
        "smtp { ip saddr limit rate over 20/second } drop`. With LVS, `ipvsadm` has no SYN "
        "protection of its own: enable syncookies on the director and the defense_mode sysctls "
        "(`net.ipv4.vs.drop_entry`, `net.ipv4.vs.secure_tcp`)."
    ),
    load_balancer=(
        "Use the load balancer's SYN protection: NetScaler SYN cookies (`set ns tcpParam -synCookie "
        "ENABLED`) and its surge protection; Kemp L7 `SYN flood protection` and connection rate "
        "limits per client; F5 BIG-IP SYN Check (`tmsh modify sys db connection.syncookies.threshold`) "
        "and the DoS protection profile; or a firewall rate limit for new connections to the VIP "
        "per source. Block the top sources only if they are real: a spoofed flood has none to block."
    ),
)

KIND = ENTRY.kind


def decide(facts) -> tuple[dict, dict]:
    """(flooded services: (address, port) -> Attempts, scanners: source -> (kind, targets)) of one
    capture's facts."""
    floods = {}
    for svc, a in facts.attempts.items():
        failed = a.lone + a.retried
        if a.lone >= FLOOD_MIN_ATTEMPTS and max(a.per_second.values(), default=0) >= FLOOD_MIN_RATE \
                and a.lone >= LONE_SHARE * failed:
            floods[svc] = a
    scanners = {}
    for src, (targets, ev) in facts.targets.items():
        by_port: dict[int, int] = {}
        by_addr: dict[str, int] = {}
        for ip, port in targets:
            by_port[port] = by_port.get(port, 0) + 1
            by_addr[ip] = by_addr.get(ip, 0) + 1
        port, n_addr = max(by_port.items(), key=lambda kv: (kv[1], -kv[0]))
        addr, n_port = max(by_addr.items(), key=lambda kv: (kv[1], kv[0]))
        if n_addr >= ADDR_SCAN_THRESHOLD:
            scanners[src] = ("address", port, n_addr, ev)
        elif n_port >= PORT_SCAN_THRESHOLD:
            scanners[src] = ("port", addr, n_port, ev)
    return floods, scanners


def _decided(ctx: Context) -> tuple[dict, dict]:
    """decide() of the capture's facts, once per judge's pass: claims() and check() both ask, and a
    flood's facts hold thousands of sources to go through."""
    got = getattr(ctx, "_flood_decided", None)  # a Context is one capture's: its facts do not change
    if got is None:
        got = ctx._flood_decided = decide(ctx.records.facts)
    return got


def claims(ctx: Context):
    """`claim(c)`: is this connection an attempt of a flood or scan this kind reports? None when
    there is none (the usual case: nothing to test per connection). Claimed connections are judged
    by no other kind and are set apart from the verdict's count (jobs/analyze.py)."""
    floods, scanners = _decided(ctx)
    if not floods and not scanners:
        return None
    victims = frozenset(floods)
    sources = frozenset(scanners)

    last = [None, False]  # judge's pass and its riders ask about the same record in turn

    def claim(c) -> bool:
        if c is last[0]:
            return last[1]
        last[0] = c
        scan = c.client_ip in sources
        if not scan and (c.server_ip, c.server_port) not in victims:
            last[1] = False
            return False
        f = FLAGS[c.history]  # its bits (track/history.py): opened by the client's SYN, handshake_done()
        if not f & OPENED or f & DONE_AFTER_SYNACK or (f & DONE_NO_SYNACK and not c.resp_pkts):
            last[1] = False
            return False
        last[1] = got = scan or (len(c.syn_frames) == 1 and not f & REFUSED)
        return got

    def lone(server_ip: str, server_port: int, client_ip: str) -> bool:
        """claim() of a lone SYN (track/lone.py): one SYN, never refused, so claimed exactly when
        its source scans or its service is flooded."""
        return client_ip in sources or (server_ip, server_port) in victims
    claim.lone = lone
    claim.any_source = bool(sources)
    """False: no scanner, so a lone SYN's claim depends on its service only (judge asks once per group)"""
    return claim


def _rate(n: float) -> str:
    return f"{n:.0f}/s" if n >= 10 else f"{n:.1f}/s"


def check(ctx: Context) -> Iterator[Finding]:
    """From the capture's facts only: no pass over the records."""
    floods, scanners = _decided(ctx)
    for (ip, port), a in sorted(floods.items()):
        first, last = a.first, a.last
        span = max((last[0] - first[0]) / 1e9, 1e-9)
        peak_sec, peak = max(a.per_second.items(), key=lambda kv: (kv[1], -kv[0]))
        mean = (a.lone - 1) / span if a.lone > 1 and span >= 1e-3 else float(a.lone)  # intervals between attempts
        top = sorted(a.sources.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_SOURCES]
        distinct = len(a.distinct)
        sources = (f"at least {distinct}" if distinct >= DISTINCT_MAX else str(distinct))
        summary = (
            f"{plural(a.lone, 'connection attempt')} to {ip}:{port} in {span:.1f} s from {sources} "
            f"source{'' if distinct == 1 else 's'}: one SYN each, never retransmitted, the handshake never "
            f"completed; peak {_rate(peak)} (the second from {format_ts(peak_sec * 1_000_000_000)}), mean {_rate(mean)}; the server answered "
            f"{a.answered / a.lone:.0%} of them"
            + (f"; {plural(a.retried, 'other failed attempt')} retransmitted" if a.retried else "")
            + f". {a.syns - a.lone - a.retried} other connections to it were judged as usual. Top sources: "
            + ", ".join(f"{s} ({n})" for s, n in top)
            + (f", others {a.other_sources}" if a.other_sources else "")
            + ". These attempts are this one finding, not one per connection (each is in the connection list)."
        )
        evidence = (
            ctx.frame(first[1], first[0], f"first attempt: SYN {first[3]}:{first[4]} -> {ip}:{port}"),
            ctx.frame(last[1], last[0], f"last attempt: SYN {last[3]}:{last[4]} -> {ip}:{port}"),
        ) if first != last else (ctx.frame(first[1], first[0], f"SYN {first[3]}:{first[4]} -> {ip}:{port}"),)
        yield Finding(kind=KIND, severity=WARNING, vantages=(ctx.vantage,), summary=summary,
                      evidence=evidence, subject=f"{ip}:{port}")
    for src, (how, where, n, ev) in sorted(scanners.items()):
        if how == "address":
            summary = (f"{src} failed to connect to {n} addresses on port {where}"
                       + (" (or more)" if n >= 64 else "") + f": an address scan (Zeek's threshold: {ADDR_SCAN_THRESHOLD}).")
        else:
            summary = (f"{src} failed to connect to {n} ports of {where}"
                       + (" (or more)" if n >= 64 else "") + f": a port scan (Zeek's threshold: {PORT_SCAN_THRESHOLD}).")
        if len(ctx.records.facts.targets) >= SCAN_SOURCES_MAX:
            summary += f" (Sources followed: the first {SCAN_SOURCES_MAX}.)"
        yield Finding(kind=KIND, severity=WARNING, vantages=(ctx.vantage,), summary=summary,
                      evidence=(ctx.frame(ev[1], ev[0], f"first failed attempt: SYN {src}:{ev[4]} -> {ev[6]}:{ev[5]}"),)
                      if ev else (), subject=f"scan from {src}")
