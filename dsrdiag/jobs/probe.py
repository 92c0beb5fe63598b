"""The probe job: plan -> live capture + ARP/NDP + SMTP sessions (or SYNs) -> the analyser -> Report.

Why the capture goes through the analyser: a wrong-source SYN-ACK is reset by the kernel and the
socket only sees a timeout; only the packets show it. Analysed as a capture, the probe's findings
are the same kinds, with the same evidence, as `dsrdiag analyze` would give on that file.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from dsrdiag.capture.live import CaptureUnavailable, LiveCapture
from dsrdiag.core.errors import DsrdiagError
from dsrdiag.core.topology import Topology
from dsrdiag.findings.catalog import title
from dsrdiag.findings.causes import link
from dsrdiag.findings.finding import Finding
from dsrdiag.findings.kinds import sessions_failed
from dsrdiag.findings.verdict import verdict
from dsrdiag.jobs.analyze import conclude
from dsrdiag.jobs.report_model import ProbeSummary, Report
from dsrdiag.probe import route
from dsrdiag.probe.neighbour import who_has
from dsrdiag.probe.plan import ProbePlan
from dsrdiag.probe.sessions import Session, run_sessions, send_syns
from dsrdiag.track.pipeline import track_capture

VANTAGE = sessions_failed.VANTAGE


def probe(plan: ProbePlan, given: Topology, pcap: Path | None = None) -> Report:
    path = route.resolve(plan.vip, plan.iface)
    skipped: list[str] = []
    deadline = time.monotonic() + plan.max_seconds
    tmpdir = None
    out = str(pcap) if pcap else None
    if out is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="dsrdiag-probe-")
        out = os.path.join(tmpdir.name, "probe.pcap")
    bpf = f"(tcp and port {plan.port}) or arp or icmp or (icmp6 and not ip6[40] == 143)"
    cap = None
    try:
        cap = LiveCapture(path.iface, bpf, out, max_seconds=plan.max_seconds).start()
    except CaptureUnavailable as e:
        skipped.append(f"live capture: {e}; wrong-source SYN-ACKs, ARP/NDP answers, resets and ICMP were not seen")
    try:
        time.sleep(0.2)
        arp = None
        if not path.on_link:
            skipped.append(f"ARP/NDP for the VIP: {plan.vip} is routed (via {path.gateway}); who answers for it can only be seen from its own segment")
        elif path.iface == "lo" or not path.mac or path.mac == "00:00:00:00:00:00":
            skipped.append(f"ARP/NDP for the VIP: {path.iface} has no link layer to ask on")
        elif cap is None:
            skipped.append("ARP/NDP for the VIP: needs root (raw sockets) like the capture")
        else:
            try:
                arp = tuple(who_has(plan.vip, path.iface, path.source, path.mac))
            except (PermissionError, OSError) as e:
                skipped.append(f"ARP/NDP for the VIP: {e}")
        if plan.syn_only:
            if cap is None:
                raise DsrdiagError("--syn-only needs root: it sends raw SYNs and reads the answers from a capture")
            sessions = send_syns(plan, path.source, deadline)
        else:
            sessions = run_sessions(plan, path.source, deadline)
    finally:
        if cap is not None:
            cap.stop(linger=min(plan.timeout, 3.0) if plan.syn_only else 0.5)
    report = _conclude(plan, given, path, sessions, arp, skipped, out if cap is not None else None, keep=pcap is not None)
    if tmpdir is not None:
        tmpdir.cleanup()
    return report


def _conclude(plan, given, path, sessions, arp, skipped, pcap_path, keep) -> Report:
    if pcap_path:
        records = [track_capture(pcap_path, VANTAGE, given.ports)]
        base = conclude(records, given)
        by_port = {c.client_port: c for c in records[0].connections}
        for s in sessions:
            c = by_port.get(s.source_port)
            if c is not None:
                s.responder = {
                    "server_ip": c.server_ip, "mac": c.resp_l2[0][0] if c.resp_l2 else None, "ttl": c.resp_ttl,
                    "history": c.history, "conn_state": c.conn_state, "uid": c.uid,
                }
            if plan.syn_only and c is not None:
                s.outcome = ("synack" if "h" in c.history else "reset" if "r" in c.history else "timeout")
    else:
        records = []
        base = conclude([], given)
    findings = list(base.findings) + list(sessions_failed.decide(sessions, plan.vip, plan.port, bool(pcap_path)))
    keys = {c.uid: (c.client_ip, c.client_port, c.server_port) for r in records for c in r.connections} if pcap_path else {}
    findings = link(sorted(findings, key=Finding.sort_key), keys)
    summary = ProbeSummary(
        vip=plan.vip, port=plan.port, iface=path.iface, source=path.source, on_link=path.on_link,
        mode="syn-only" if plan.syn_only else "smtp",
        sessions=tuple(asdict(s) for s in sessions), backends=tuple(_backend_table(sessions)),
        arp_answers=arp, skipped=tuple(skipped), pcap=pcap_path if keep else None,
    )
    # the probe's own sessions are the connections it judged (a capture may not have been possible)
    ok = sum(1 for s in sessions if s.outcome in ("ok", "synack"))
    judged = replace(base.judged, vips=(plan.vip,), ports=(plan.port,), service=len(sessions), completed=ok,
                     packets=max(base.judged.packets, len(sessions)))
    report = replace(base, findings=tuple(findings), verdict=verdict(findings, judged, titles=title), probe=summary,
                     judged=judged)
    return report if keep or not pcap_path else _relabel(report, pcap_path)


NOT_KEPT = "probe capture (not kept: --pcap FILE keeps it)"


def _relabel(report: Report, path: str) -> Report:
    """The temporary capture is deleted: say so instead of citing a file that will not exist."""
    caps = tuple(replace(c, path=NOT_KEPT) if c.path == path else c for c in report.captures)
    fs = tuple(replace(f, evidence=tuple(replace(e, capture=NOT_KEPT) if getattr(e, "capture", None) == path else e
                                         for e in f.evidence)) for f in report.findings)
    return replace(report, captures=caps, findings=fs)


def _backend_table(sessions: list[Session]) -> list[dict]:
    """Per back-end, told apart by banner host, else by the responder's address/MAC seen in the capture."""
    groups: dict[str, list[Session]] = {}
    for s in sessions:
        key = s.banner_host or (f"{s.responder.get('server_ip')} ({s.responder.get('mac')})" if s.responder.get("mac") else None) \
            or "no answer (back-end unknown)"
        groups.setdefault(key, []).append(s)
    rows = []
    for key, ss in sorted(groups.items()):
        ok = [s for s in ss if s.outcome in ("ok", "synack")]
        how: dict[str, int] = {}
        for s in ss:
            if s not in ok:
                how[s.outcome] = how.get(s.outcome, 0) + 1
        conn = [s.connect_ms for s in ss if s.connect_ms is not None]
        ban = [s.banner_ms for s in ss if s.banner_ms is not None]
        rows.append({
            "backend": key, "sessions": len(ss), "completed": len(ok), "failed": len(ss) - len(ok), "failed_how": how,
            "median_connect_ms": round(statistics.median(conn), 3) if conn else None,
            "median_banner_ms": round(statistics.median(ban), 3) if ban else None,
        })
    return rows
