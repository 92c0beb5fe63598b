"""Report -> the terminal: verdict first, then findings by kind (evidence, meaning, fix), then the
per-back-end table, the captures and what they cannot show; per-connection detail with -v.

Never: interpolates packet text into rich markup (a banner such as `[bold]` would be markup, a
classic injection); every such string goes in as rich.text.Text or a table cell built from Text.
Every string handed to rich, titles and column headers included, is a Text built by `_t` (a
`_Shown`, which escapes whatever string is appended to it: core/safetext.py), so that no packet
or file name can drive the admin's terminal.
"""

from __future__ import annotations

from itertools import groupby

from rich.console import Console
from rich.table import Table
from rich.text import Text

from dsrdiag.capture.frame import linktype_name
from dsrdiag.core.evidence import HostRef, format_ts
from dsrdiag.core.safetext import terminal as _visible
from dsrdiag.findings.catalog import entry
from dsrdiag.jobs.report_model import Report

SEV_STYLE = {"error": "bold red", "warning": "bold yellow", "info": "cyan"}


class _Shown(Text):
    """A Text that shows every string appended to it with its control characters escaped
    (core/safetext.py): what `_t` makes, so that `head.append(...)` on one is safe too."""

    def append(self, text, style=None):
        return super().append(_visible(text) if isinstance(text, str) else text, style)


def _t(*parts) -> Text:
    """Build a Text from (string, style) pairs or plain strings, never parsing markup."""
    out = _Shown()
    for p in parts:
        if isinstance(p, tuple):
            out.append(str(p[0]), style=p[1])
        else:
            out.append(str(p))
    return out


def _lines(*lines) -> Text:
    """Lines of one table cell: each escaped, then joined by the presenter's own line breaks."""
    return Text("\n").join(_t(x) for x in lines)


def _uid_order(uid: str):
    vantage, _, n = uid.rpartition(":C")
    return (vantage, int(n) if n.isdigit() else 0)


def _failure_text(x) -> str:
    """A back-end failure in words: its cause, where it was lost, or its conn_state."""
    if x.kind == "conn_state":
        return f"{x.conn_state}: {x.text}"
    if x.kind == "lost_on_path":
        return x.text
    return x.kind  # the finding that explains them says the rest


def _where(f) -> str:
    """Where a finding was seen, in words: `between fw-in and fw-out`, `at client, fw-out`."""
    if f.between:
        return f"between {f.between[0]} and {f.between[1]}"
    return "at " + ", ".join(f.vantages)


def render(report: Report, console: Console, verbose: bool = False, ladder: str | None = None) -> None:
    v = report.verdict
    style = {"healthy": "bold green", "broken": "bold red"}.get(v.state, "bold yellow")
    console.print(_t(("VERDICT: ", "bold"), (v.text, style)))
    by_id = {f.id: f for f in report.findings}
    for cid in v.causes:  # the causes first, each with what it explains
        f = by_id.get(cid)
        if f is None:
            continue
        cons = [by_id[c] for c in f.consequences if c in by_id]
        line = _t(("  cause: ", "bold"), (f.kind, SEV_STYLE[f.severity]), f" [{f.id}] {_where(f)}")
        if cons:
            line.append("; explains " + ", ".join(f"{c.kind} {_where(c)}" for c in cons))
        console.print(line)
    if v.infos:
        console.print(_t(f"{v.infos} informational finding{'s' if v.infos != 1 else ''}"))
    damaged = [c for c in report.captures if c.damage]
    for c in damaged:
        console.print(_t(("DAMAGED: ", "bold yellow"), f"{c.path}: {c.damage}"))
    console.print()

    for kind, group in groupby(report.findings, key=lambda f: f.kind):
        group = list(group)
        e = entry(kind)
        console.rule(_t((f"{kind}", "bold"), f"  {e.title}  ({len(group)})"), align="left")
        for f in group:
            head = _t((f"[{f.severity.upper()}] ", SEV_STYLE[f.severity]), (f"{f.id} ", "dim"), (_where(f), "bold"))
            if f.backend:
                b = f.backend
                head.append(f"  back-end {b.name}")
                extra = ", ".join(x for x in (b.ip, b.mac) if x and x != b.name)
                if extra:
                    head.append(f" ({extra})")
                if b.source == "inferred":
                    head.append(" [inferred]", style="dim")
            elif f.subject:
                head.append(f"  {f.subject}")
            console.print(head)
            console.print(_t("  ", f.summary))
            if f.explained_by:
                c = by_id.get(f.explained_by)
                console.print(_t(("  explained by: ", "bold"), f"{f.explained_by}" + (f" ({c.kind} {_where(c)})" if c else "")))
            if f.connections:
                shown = ", ".join(sorted(f.connections, key=_uid_order)[:8]) + (f" (+{len(f.connections) - 8} more)" if len(f.connections) > 8 else "")
                console.print(_t(("  connections: ", "dim"), shown))
            console.print(_t(("  evidence:", "bold")))
            for ev in f.evidence:
                if isinstance(ev, HostRef):
                    where = f"{ev.source}:{ev.line}" if ev.line else ev.source
                    console.print(_t("    ", (where, "bold"), "  ", ev.text))
                else:
                    console.print(_t("    ", (f"{ev.vantage} frame {ev.frame}", "bold"), f"  {ev.iso_time}  ", ev.what, ("  " + ev.capture, "dim")))
        console.print(_t(("  What it means: ", "bold"), e.explanation))
        console.print(_t(("  Fix on Windows: ", "bold"), e.windows))
        console.print(_t(("  Fix on Linux: ", "bold"), e.linux))
        if e.load_balancer:
            console.print(_t(("  Fix on the load balancer: ", "bold"), e.load_balancer))
        console.print()

    if report.backends:
        t = Table(title=_t("Back-ends"), title_justify="left")
        for col in ("back-end", "IP", "MAC", "source", "connections", "completed", "failed", "banner host", "median SYN->banner"):
            t.add_column(_t(col), no_wrap=col in ("IP", "MAC"), overflow="fold")
        for row in report.backends:
            b = row.backend
            t.add_row(
                _t(b.name), _t(b.ip or "-"), _t(b.mac or "-"), _t(b.source),
                str(row.connections), str(row.completed),
                _lines(str(row.failed), *(f"{x.connections} x {_failure_text(x)}" for x in row.failures)),
                _t(", ".join(row.banner_hosts) or "-"),
                f"{row.median_banner_ms:.1f} ms" if row.median_banner_ms is not None else "-",
            )
        console.print(t)

    if report.host is not None:
        _host(report, console)
        return
    if report.probe is not None:
        _probe(report, console)
    topo = report.topology
    console.print(_t(("Topology", "bold")))
    for vip in topo.vips:
        console.print(_t(f"  VIP {vip.ip} ports {', '.join(map(str, vip.ports))} ", (f"[{vip.source}]", "dim")))
    for mac, src in topo.lb_macs:
        console.print(_t(f"  load balancer MAC {mac} ", (f"[{src}]", "dim")))
    for ip, src in topo.lb_ips:
        console.print(_t(f"  load balancer address {ip} ", (f"[{src}]", "dim")))
    for note in topo.notes:
        console.print(_t(("  note: ", "dim"), note))
    console.print()
    console.print(_t(("Captures", "bold")))
    for c in report.captures:
        span = f"{format_ts(c.first_ts_ns)} .. {format_ts(c.last_ts_ns)}" if c.first_ts_ns else "no analysed packet"
        lts = ", ".join(linktype_name(lt) for lt in c.linktypes)
        console.print(_t(f"  {c.vantage}: ", c.path, f"  {c.frames} packets, {c.analysed} analysed, {c.connections} connections, {lts}, {span}"))
        for a, n in sorted(c.anomalies.items()):
            console.print(_t(("    anomaly: ", "yellow"), f"{a} x{n} (first at frame {c.anomaly_frames.get(a)})"))
        for lim in c.limits:
            console.print(_t(("    cannot show: ", "dim"), lim))

    corr = report.correlation
    if corr is not None and corr.offsets:
        console.print()
        console.print(_t(("Clock offsets", "bold"), f" against {corr.reference} (from the same packets seen at both)"))
        for v, o in sorted(corr.offsets.items()):
            how = "both directions" if o.basis == "two-way" else "one direction only: includes the transit time"
            via = f", via {' -> '.join(o.via)}" if o.via else ""
            console.print(_t(f"  {v}: {o.offset_s * 1e3:+.3f} ms ± {o.uncertainty_s * 1e3:.3f} ms ({o.matched} packets, {how}{via})"))
    if ladder:
        _ladder(report, console, ladder)

    if verbose:
        console.print()
        t = Table(title=_t("Connections"), title_justify="left")
        for col in ("uid", "ts", "client", "server", "history", "state", "back-end", "banner host", "replies"):
            t.add_column(_t(col))
        for c, b in report.connections:
            t.add_row(
                _t(c.uid), _t(format_ts(c.first_ts_ns)), _t(f"{c.client_ip}:{c.client_port}"),
                _t(f"{c.server_ip}:{c.server_port}"), _t(c.history), _t(c.conn_state),
                _t(b.name if b else "-"), _t(c.smtp.banner_host or "-" if c.smtp else "-"),
                _t(" ".join(map(str, c.smtp.reply_codes)) if c.smtp else "-"),
            )
        console.print(t)


def _host(report: Report, console: Console) -> None:
    h = report.host
    console.print(_t(("Host ", "bold"), f"{h.hostname or '?'} ({h.os}), read from {', '.join(h.sources)}"))
    for i in h.interfaces:
        settings = ", ".join(f"{k}={v}" for k, v in i["settings"].items())
        console.print(_t(f"  {i['name']}", (" [loopback]" if i["loopback"] else "", "dim"),
                         f"  {' '.join(i['addresses']) or '-'}", (f"  {settings}" if settings else "", "dim")))
    for r in h.default_routes:
        console.print(_t(f"  {r}"))
    for note in h.cannot_show:
        console.print(_t(("  not checked: ", "dim"), note))


def _probe(report: Report, console: Console) -> None:
    p = report.probe
    console.print(_t(("Probe ", "bold"), f"{p.mode}: {len(p.sessions)} session(s) to {p.vip}:{p.port} from {p.source} on {p.iface}"
                     + (" (the VIP is on this segment)" if p.on_link else " (the VIP is routed)")))
    if p.arp_answers is not None:
        console.print(_t("  ARP/NDP who-has the VIP answered by: ", ", ".join(p.arp_answers) or "nobody"))
    t = Table(title=_t("Back-ends as the probe saw them"), title_justify="left")
    for col in ("back-end", "sessions", "completed", "failed (how)", "median connect", "median banner"):
        t.add_column(_t(col))
    for row in p.backends:
        how = ", ".join(f"{k} {v}" for k, v in sorted(row["failed_how"].items()))
        t.add_row(_t(row["backend"]), str(row["sessions"]), str(row["completed"]),
                  _t(f"{row['failed']}" + (f" ({how})" if how else "")),
                  f"{row['median_connect_ms']:.1f} ms" if row["median_connect_ms"] is not None else "-",
                  f"{row['median_banner_ms']:.1f} ms" if row["median_banner_ms"] is not None else "-")
    console.print(t)
    for s in p.skipped:
        console.print(_t(("  skipped: ", "yellow"), s))
    if p.pcap:
        console.print(_t(("  capture kept: ", "dim"), p.pcap))


def _ladder(report: Report, console: Console, which: str) -> None:
    """The packets of one connection, vantage by vantage: vantages as columns, one row a packet."""
    corr = report.correlation
    flows = [f for f in (corr.flows if corr else ()) if f.client == which or f.client.startswith(which + ":")]
    if not flows:
        console.print(_t(("ladder: ", "bold"), f"no connection of client {which} was seen at two vantages or more"))
        return
    for f in flows:
        t = Table(title=_t(f"Ladder: {f.client} -> port {f.server_port}" + (f" ({f.mode}{', ' + f.leg + ' leg' if f.leg else ''})" if f.mode else "")),
                  title_justify="left", caption=_t(f"matched by {', '.join(f.matched_by)}" + (f"; other side: {f.linked}" if f.linked else "")),
                  caption_justify="left")
        t.add_column(_t("packet"))
        for v in f.vantages:
            t.add_column(_t(v))
        t.add_column(_t("last seen"))
        for p in f.packets:
            arrow = "->" if p.direction == ">" else "<-"
            label = f"{arrow} {p.label}" + (f"  {p.text[:50]}" if p.text else "")
            at = {h.vantage: h for h in p.hops}
            cells = [_t(f"#{at[v].frame} {format_ts(at[v].ts_ns)[11:]}") if v in at else _t("X" if v == p.lost_before else "") for v in f.vantages]
            t.add_row(_t(label), *cells, _t(p.last_seen + (f" (lost before {p.lost_before})" if p.lost_before else "")))
        console.print(t)
