"""Report -> the terminal: verdict first, then findings by kind (evidence per capture with its
Wireshark filter), the per-back-end table, the topology, the captures and what they cannot show;
a conn.log-like listing with -v, the long texts with --explain, a ticket-sized form with --brief.

Why laid out by hand (docs/terminal.md): every line is made for the console's width. Prose
(summaries, notes) wraps at word boundaries with an indent; a table or an evidence line never
wraps: a table drops optional columns and shortens headers until it fits, an evidence line
(`frame  time  what`) cuts only its description, with an ellipsis. What is meant to be copied
whole is printed whole, past the width if it must: a capture path (once, in the header of its
evidence), a display filter, and the -v listing (like zeek-cut output).

Never: interpolates packet text into rich markup (a banner such as `[bold]` would be markup, a
classic injection); every such string goes in as rich.text.Text built by `_t` (a `_Shown`, which
escapes whatever string is appended to it: core/safetext.py), so that no packet or file name can
drive the admin's terminal. Widths are measured on the escaped text, so a cut never splits an
escape.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import groupby

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from dsrdiag.capture.frame import linktype_name
from dsrdiag.core.evidence import HostRef, format_ts
from dsrdiag.core.safetext import terminal as _visible
from dsrdiag.findings.catalog import entry
from dsrdiag.findings.finding import plural
from dsrdiag.jobs.report_model import Report
from dsrdiag.report.wireshark import frames_filter

SEV_STYLE = {"error": "bold red", "warning": "bold yellow", "info": "cyan"}
COMPACT = 100
"""At this width or less the back-end table takes its compact form (docs/terminal.md)."""
ELLIPSIS = "…"
DOCS = "docs/findings.md#"


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
    if not f.vantages:
        return ""
    return "at " + ", ".join(f.vantages)


def _cut(s: str, width: int) -> str:
    """`s` (already escaped) in at most `width` cells, ending with an ellipsis when cut."""
    if cell_len(s) <= width:
        return s
    if width <= 1:
        return ELLIPSIS[:width]
    out, used = [], 0
    for ch in s:
        w = cell_len(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + ELLIPSIS


class _Out:
    """The console and its width, with the three ways a line is printed: `line` never wraps (it
    was made to fit, or is meant to be copied whole), `para` wraps prose with an indent."""

    def __init__(self, console: Console):
        self.console = console
        self.width = max(20, console.width)

    def line(self, text: Text | str = "") -> None:
        self.console.print(text if isinstance(text, Text) else _t(text), soft_wrap=True)

    def blank(self) -> None:
        self.console.print(soft_wrap=True)

    def para(self, text: Text, indent: int = 0, hang: int = 2) -> None:
        """Prose: wrapped at word boundaries; the first line at `indent`, the rest at indent+hang."""
        first = max(10, self.width - indent)
        if cell_len(text.plain) <= first:
            self.line(Text(" " * indent) + text)
            return
        lines = text.wrap(self.console, first, overflow="fold")
        head = lines[0]
        rest = text[len(head.plain):]
        skip = len(rest.plain) - len(rest.plain.lstrip(" "))
        rest = rest[skip:]
        head.rstrip()
        self.line(Text(" " * indent) + head)
        if rest.plain:
            for ln in rest.wrap(self.console, max(10, self.width - indent - hang), overflow="fold"):
                ln.rstrip()
                self.line(Text(" " * (indent + hang)) + ln)


# ---- tables that fit -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Col:
    heads: tuple[str, ...]
    """The header, longest form first; shorter forms are tried before a column is dropped."""
    right: bool = False
    drop: int = 0
    """0: always shown; otherwise dropped when the table does not fit, highest first."""
    cut: bool = False
    """The column whose cells may be cut (with an ellipsis) when nothing else makes it fit."""


SOFT_CUT = 16
"""A cut column is cut down to this many cells before optional columns are dropped."""


def _fit(cols: list[Col], rows: list[list[str]], width: int, indent: int):
    """Choose headers and columns so that every line fits `width`: shorter headers first, then
    optional columns dropped, then the cut column's cells shortened. None: it cannot fit."""
    heads = [c.heads[0] for c in cols]
    keep = list(range(len(cols)))
    cutw = None

    def widths():
        out = {}
        for i in keep:
            w = max([cell_len(heads[i])] + [cell_len(r[i]) for r in rows])
            if cutw is not None and cols[i].cut:
                w = max(cell_len(heads[i]), min(w, cutw))
            out[i] = w
        return out

    while True:
        ws = widths()
        total = indent + sum(ws.values()) + 2 * (len(keep) - 1)
        if total <= width:
            return heads, keep, ws
        longer = [i for i in keep if cell_len(heads[i]) >= ws[i] and cols[i].heads.index(heads[i]) + 1 < len(cols[i].heads)]
        if longer:  # a header wider than its cells: its next shorter form
            i = longer[0]
            heads[i] = cols[i].heads[cols[i].heads.index(heads[i]) + 1]
            continue
        cut = [i for i in keep if cols[i].cut]
        room = width - (total - ws[cut[0]]) if cut else 0
        if cut and (cutw is None or room < cutw) and room >= max(SOFT_CUT, cell_len(heads[cut[0]])):
            cutw = room  # the cut column first gives up what it has beyond SOFT_CUT cells
            continue
        droppable = [i for i in keep if cols[i].drop]
        if droppable:
            keep.remove(max(droppable, key=lambda i: (cols[i].drop, i)))
            continue
        if cut and (cutw is None or room < cutw) and room >= max(8, cell_len(heads[cut[0]])):
            cutw = room
            continue
        return None


def _table(out: _Out, title: str, cols: list[Col], rows: list[list[str]], indent: int = 2) -> bool:
    """Print a plain aligned table (header, rule, one line a row) that fits the width. False when
    it cannot fit even in its smallest form (the caller chooses another layout)."""
    rows = [[_visible(c) for c in r] for r in rows]
    fit = _fit(cols, rows, out.width, indent)
    if fit is None:
        return False
    heads, keep, ws = fit
    if title:
        out.para(_t((title, "bold")))

    def cells(values, style=None):
        line = _t(" " * indent)
        for n, i in enumerate(keep):
            v = _cut(values[i], ws[i]) if cols[i].cut else values[i]
            pad = " " * (ws[i] - cell_len(v))
            line.append((pad + v) if cols[i].right else (v + (pad if n < len(keep) - 1 else "")), style=style)
            if n < len(keep) - 1:
                line.append("  ")
        return line

    out.line(cells(heads, "bold"))
    out.line(_t(" " * indent, ("─" * (sum(ws.values()) + 2 * (len(keep) - 1)), "dim")))
    for r in rows:
        out.line(cells(r))
    return True


def _records(out: _Out, title: str, cols: list[Col], rows: list[list[str]]) -> None:
    """The layout of last resort for a table too wide for the width: one block per row."""
    out.para(_t((title, "bold")))
    for r in rows:
        out.para(_t((r[0], "bold")), indent=2)
        for c, v in zip(cols[1:], r[1:]):
            out.para(_t(f"{c.heads[0]}: ", v or "-"), indent=4)


def _listing(out: _Out, title: str, heads: list[str], rows) -> None:
    """Columns aligned and never cut (zeek-cut style): a line is as wide as its values. `rows` is
    iterated twice (widths, then lines), so a streamed view is never held whole."""
    ws = [cell_len(h) for h in heads]
    n = 0
    for r in rows():
        n += 1
        for i, v in enumerate(r):
            ws[i] = max(ws[i], cell_len(_visible(v)))
    out.line(_t((title, "bold"), (f"  ({plural(n, 'connection')}; lines are never cut)", "dim")))

    def fmt(values, style=None):
        return _t(("  " + "  ".join(_visible(v).ljust(ws[i] + len(_visible(v)) - cell_len(_visible(v))) for i, v in enumerate(values)).rstrip(), style))

    out.line(fmt(heads, "bold"))
    for r in rows():
        out.line(fmt(r))


# ---- the report ----------------------------------------------------------------------------------

def render(report: Report, console: Console, verbose: bool = False, ladder: str | None = None,
           explain: bool = False, brief: bool = False) -> None:
    out = _Out(console)
    if brief:
        _brief(report, out)
        return
    by_id = {f.id: f for f in report.findings}
    _verdict(report, out, by_id)
    for kind, group in groupby(report.findings, key=lambda f: f.kind):
        _kind(list(group), out, by_id, explain)
    if report.backends:
        _backends(report, out)
    if report.host is not None:
        _host(report, out)
        return
    if report.probe is not None:
        _probe(report, out)
    _topology(report, out)
    _captures(report, out)
    corr = report.correlation
    if corr is not None and corr.offsets:
        out.blank()
        out.para(_t(("Clock offsets", "bold"), f" against {corr.reference} (from the same packets seen at both)"))
        for v, o in sorted(corr.offsets.items()):
            how = "both directions" if o.basis == "two-way" else "one direction only: includes the transit time"
            via = f", via {' -> '.join(o.via)}" if o.via else ""
            out.para(_t(f"{v}: {o.offset_s * 1e3:+.3f} ms ± {o.uncertainty_s * 1e3:.3f} ms ({plural(o.matched, 'packet')}, {how}{via})"), indent=2)
    if ladder:
        _ladder(report, out, ladder)
    if verbose:
        out.blank()
        _connections(report, out)


def _verdict(report: Report, out: _Out, by_id: dict) -> None:
    v = report.verdict
    style = {"healthy": "bold green", "broken": "bold red"}.get(v.state, "bold yellow")
    out.para(_t(("VERDICT: ", "bold"), (v.text, style)))
    for cid in v.causes:  # the causes first, each with what it explains
        f = by_id.get(cid)
        if f is None:
            continue
        cons = [by_id[c] for c in f.consequences if c in by_id]
        line = _t(("cause: ", "bold"), (f.kind, SEV_STYLE[f.severity]), f" [{f.id}] {_where(f)}")
        if cons:
            line.append("; explains " + ", ".join(f"{c.kind} {_where(c)}" for c in cons))
        out.para(line, indent=2, hang=4)
    if report.findings:
        counts = {s: sum(1 for f in report.findings if f.severity == s) for s in ("error", "warning", "info")}
        out.line(_t(("  findings by severity: ", "dim"), ", ".join(f"{s} {n}" for s, n in counts.items() if n)))
    for c in report.captures:
        if c.damage:
            out.line(_t(("DAMAGED: ", "bold yellow"), c.path))
            out.para(_t(c.damage), indent=2)
    out.blank()


def _kind(group: list, out: _Out, by_id: dict, explain: bool) -> None:
    kind = group[0].kind
    e = entry(kind)
    head = f"── {kind} ({len(group)}): {e.title} "
    if cell_len(_visible(head)) + 2 <= out.width:
        out.line(_t(("── ", "dim"), (kind, "bold"), f" ({len(group)}): {e.title} ", ("─" * (out.width - cell_len(_visible(head))), "dim")))
    else:
        short = f"── {kind} ({len(group)}) "
        out.line(_t(("── ", "dim"), (kind, "bold"), f" ({len(group)}) ", ("─" * max(2, out.width - cell_len(short)), "dim")))
        out.para(_t(e.title), indent=3)
    for f in group:
        _finding(f, out, by_id)
    if explain:
        out.para(_t(("What it means: ", "bold"), e.explanation), indent=2)
        out.para(_t(("Fix on Windows: ", "bold"), e.windows), indent=2)
        out.para(_t(("Fix on Linux: ", "bold"), e.linux), indent=2)
        if e.load_balancer:
            out.para(_t(("Fix on the load balancer: ", "bold"), e.load_balancer), indent=2)
    else:
        fix = _t(("  fix: ", "bold"), f"see --explain or {DOCS}{kind}")
        if cell_len(fix.plain) <= out.width:
            out.line(fix)
        else:  # the link whole on a line of its own: it is copied
            out.line(_t(("  fix: ", "bold"), "see --explain or"))
            out.line(_t(f"    {DOCS}{kind}"))
    out.blank()


def _finding(f, out: _Out, by_id: dict) -> None:
    head = _t((f.severity, SEV_STYLE[f.severity]), "  ", (f.id, "dim"))
    if _where(f):
        head.append("  ")
        head.append(_where(f), style="bold")
    if f.backend:
        b = f.backend
        head.append(f"  back-end {b.name}")
        extra = [x for x in (b.ip, b.mac) if x and x != b.name] + (["inferred"] if b.source == "inferred" else [])
        if extra:
            head.append(f" ({', '.join(extra)})")
    elif f.subject:
        head.append(f"  {f.subject}")
    out.para(head, indent=0, hang=4)
    out.para(_t(f.summary), indent=2)
    if f.explained_by:
        c = by_id.get(f.explained_by)
        out.para(_t(("explained by: ", "bold"), f"{f.explained_by}" + (f" ({c.kind} {_where(c)})" if c else "")), indent=2)
    cons = [by_id[c] for c in f.consequences if c in by_id]
    if cons:
        out.para(_t(("explains: ", "bold"), ", ".join(f"{c.id} ({c.kind} {_where(c)})" for c in cons)), indent=2)
    if f.connections:
        shown = ", ".join(sorted(f.connections, key=_uid_order)[:8]) + (f" (+{len(f.connections) - 8} more)" if len(f.connections) > 8 else "")
        out.para(_t(("connections: ", "dim"), shown), indent=2)
    _evidence(f.evidence, out)


def _evidence(evidence, out: _Out) -> None:
    """Evidence grouped by capture: a header with the capture's path (whole, once), then one
    `frame  time  what` line per frame cut to the width, then the group's display filter."""
    groups: dict[tuple, list] = {}
    for ev in evidence:
        key = ("host", ev.source) if isinstance(ev, HostRef) else ("frame", ev.vantage, ev.capture)
        groups.setdefault(key, []).append(ev)
    for key, evs in groups.items():
        if key[0] == "host":
            out.line(_t("  ", (key[1], "bold")))
            lw = max(len(str(e.line)) for e in evs)
            for e in evs:
                lead = f"    {str(e.line).rjust(lw)}  " if any(x.line for x in evs) else "    "
                out.line(_t(lead, _cut(_visible(e.text), out.width - cell_len(lead))))
            continue
        _, vantage, capture = key
        days = {format_ts(e.ts_ns)[:10] for e in evs}
        one_day = len(days) == 1
        out.line(_t("  ", (f"{vantage}:", "bold"), " ", capture, (f"  ({days.pop()}, UTC)" if one_day else "  (UTC)", "dim")))
        fw = max(len(str(e.frame)) for e in evs)
        for e in evs:
            ts = format_ts(e.ts_ns)
            ts = ts[11:-1] if one_day else ts
            lead = f"    {str(e.frame).rjust(fw)}  {ts}  "
            out.line(_t(lead, _cut(_visible(e.what), out.width - cell_len(lead))))
        out.line(_t(("    filter: ", "dim"), frames_filter(e.frame for e in evs)))


def _backends(report: Report, out: _Out) -> None:
    rows, failures = [], []
    compact = out.width <= COMPACT
    for row in report.backends:
        b = row.backend
        med = f"{row.median_banner_ms:.1f} ms" if row.median_banner_ms is not None else "-"
        if compact:
            rows.append([b.name, b.ip or b.mac or "-", f"{row.completed} of {row.connections}", str(row.failed), med])
        else:
            rows.append([b.name, b.ip or "-", b.mac or "-", b.source, str(row.connections), str(row.completed),
                         str(row.failed), ", ".join(row.banner_hosts) or "-", med])
        if row.failures:
            failures.append((b.name, "; ".join(f"{x.connections} x {_failure_text(x)}" for x in row.failures)))
    if compact:
        cols = [Col(("back-end",)), Col(("address",), drop=1), Col(("completed", "done"), right=True),
                Col(("failed",), right=True), Col(("median SYN->banner", "SYN->banner", "banner"), right=True, drop=2)]
    else:
        cols = [Col(("back-end",)), Col(("IP",), drop=3), Col(("MAC",), drop=2), Col(("source",), drop=5),
                Col(("connections", "conns"), right=True), Col(("completed", "done"), right=True),
                Col(("failed",), right=True), Col(("banner host", "banner"), drop=4),
                Col(("median SYN->banner", "SYN->banner"), right=True, drop=1)]
    if not _table(out, "Back-ends", cols, rows):
        _records(out, "Back-ends", cols, rows)
    for name, text in failures:
        out.para(_t((f"{name} failed: ", "bold"), text), indent=2, hang=4)
    out.blank()


def _topology(report: Report, out: _Out) -> None:
    topo = report.topology
    out.line(_t(("Topology", "bold")))
    for vip in topo.vips:
        out.para(_t(f"VIP {vip.ip} {'port' if len(vip.ports) == 1 else 'ports'} {', '.join(map(str, vip.ports))} ", (f"[{vip.source}]", "dim")), indent=2)
    for mac, src in topo.lb_macs:
        out.para(_t(f"load balancer MAC {mac} ", (f"[{src}]", "dim")), indent=2)
    for ip, src in topo.lb_ips:
        out.para(_t(f"load balancer address {ip} ", (f"[{src}]", "dim")), indent=2)
    for note in topo.notes:
        out.para(_t(("note: ", "dim"), note), indent=2, hang=6)
    out.blank()


def _captures(report: Report, out: _Out) -> None:
    out.line(_t(("Captures", "bold")))
    limits: dict[str, list[str]] = {}
    for c in report.captures:
        span = f"{format_ts(c.first_ts_ns)} .. {format_ts(c.last_ts_ns)}" if c.first_ts_ns else "no analysed packet"
        lts = ", ".join(linktype_name(lt) for lt in c.linktypes)
        out.line(_t("  ", (f"{c.vantage}:", "bold"), " ", c.path))
        out.para(_t(f"{plural(c.frames, 'packet')}, {c.analysed} analysed, {plural(c.connections, 'connection')}"
                    + (f", {lts}" if lts else "") + f", {span}"), indent=4)
        for a, n in sorted(c.anomalies.items()):
            out.para(_t(("anomaly: ", "yellow"), f"{a} x{n} (first at frame {c.anomaly_frames.get(a)})"), indent=4)
        for lim in c.limits:
            limits.setdefault(lim, []).append(c.vantage)
    if limits:  # a limit several captures share is said once, with their vantages
        out.blank()
        out.line(_t(("What the captures cannot show", "bold")))
        for lim, vantages in limits.items():
            out.para(_t((f"{', '.join(vantages)}: ", "bold"), lim), indent=2, hang=4)


def _connections(report: Report, out: _Out) -> None:
    heads = ["uid", "ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "history", "conn_state",
             "orig_pkts", "resp_pkts", "backend", "banner_host", "replies"]

    def rows():
        for c, b in report.connections:
            yield [c.uid, format_ts(c.first_ts_ns), c.client_ip, str(c.client_port), c.server_ip, str(c.server_port),
                   c.history or "-", c.conn_state, str(c.orig_pkts), str(c.resp_pkts), b.name if b else "-",
                   (c.smtp.banner_host or "-") if c.smtp else "-",
                   ",".join(map(str, c.smtp.reply_codes)) if c.smtp and c.smtp.reply_codes else "-"]

    _listing(out, "Connections", heads, rows)


# ---- --brief: a ticket ---------------------------------------------------------------------------

def _first_sentence(s: str) -> str:
    """The text up to its first full stop outside parentheses and `code` (a fix's first step)."""
    s = s.strip()
    depth, code = 0, False
    for i, ch in enumerate(s):
        if ch == "`":
            code = not code
        elif not code and ch in "([":
            depth += 1
        elif not code and ch in ")]":
            depth = max(0, depth - 1)
        elif ch == "." and not code and depth == 0 and (i + 1 == len(s) or s[i + 1] == " "):
            return s[:i + 1]
    return s


def _frames_list(f) -> str:
    groups: dict[str, list[str]] = {}
    for ev in f.evidence:
        if isinstance(ev, HostRef):
            groups.setdefault(ev.source, []).append(str(ev.line) if ev.line else "")
        else:
            groups.setdefault(ev.capture, []).append(str(ev.frame))
    return " ".join(f"{k}:{','.join(x for x in v if x)}".rstrip(":") for k, v in groups.items())


def _brief(report: Report, out: _Out) -> None:
    """At most 8 lines, none wrapped: the verdict, the cause, its back-end, its frames, the fix."""
    v = report.verdict
    by_id = {f.id: f for f in report.findings}
    lines = [_t(("VERDICT: ", "bold"), v.text)]
    causes = [by_id[c] for c in v.causes if c in by_id]
    if causes:
        f = causes[0]
        lines.append(_t(("cause: ", "bold"), f"{f.kind} [{f.id}] {_where(f)}".rstrip()
                        + (f"; explains {plural(len(f.consequences), 'other finding')}" if f.consequences else "")
                        + f" ({DOCS}{f.kind})"))
        if f.backend:
            b = f.backend
            lines.append(_t(("back-end: ", "bold"), " ".join(dict.fromkeys(x for x in (b.name, b.ip, b.mac) if x))
                            + f" ({b.source})"))
        if f.evidence:
            lines.append(_t(("frames: " if not isinstance(f.evidence[0], HostRef) else "read: ", "bold"), _frames_list(f)))
        e = entry(f.kind)
        for where, text in (("Windows", e.windows), ("Linux", e.linux), ("load balancer", e.load_balancer)):
            if text and not text.startswith(("Not applicable", "Not on the")):
                lines.append(_t((f"fix ({where}): ", "bold"), _first_sentence(text)))
        lines = lines[:7]
        if len(causes) > 1:
            lines.append(_t(("also: ", "bold"), ", ".join(f"{c.kind} [{c.id}] {_where(c)}".rstrip() for c in causes[1:])))
    else:
        if report.backends:
            lines.append(_t(("back-ends: ", "bold"), ", ".join(f"{r.backend.name} {r.completed} of {plural(r.connections, 'connection')} completed" for r in report.backends)))
        lines.append(_t(("captures: ", "bold"), ", ".join(f"{c.vantage} ({plural(c.frames, 'packet')})" for c in report.captures)
                        or "none"))
        notes = [f for f in report.findings if f.id not in v.causes]
        if notes:
            lines.append(_t(("findings: ", "bold"), ", ".join(f"{f.kind} ({f.severity}) {_where(f)}".rstrip() for f in notes[:6])
                            + (f", and {len(notes) - 6} more" if len(notes) > 6 else "")))
            frames = [f"{_frames_list(f)}" for f in notes[:3] if f.evidence]
            if frames:
                lines.append(_t(("frames: ", "bold"), " ".join(frames)))
        if v.state != "healthy":
            lines.append(_t(("next: ", "bold"), "check --vip and --port, and where the captures were taken (docs/exit-codes.md, code 4)"))
    damaged = [_t(("DAMAGED: ", "bold"), f"{c.path}: {c.damage}") for c in report.captures if c.damage]
    if damaged:  # exit 3 says a capture was cut short: the ticket says which, right after the verdict
        more = len(damaged) - 1
        lines = lines[:1] + [damaged[0] + (_t(f" (and {plural(more, 'other damaged capture')})") if more else _t())] + lines[1:7]
    for line in lines[:8]:
        out.line(line)


# ---- host and probe --------------------------------------------------------------------------------

def _host(report: Report, out: _Out) -> None:
    h = report.host
    out.para(_t(("Host ", "bold"), f"{h.hostname or '?'} ({h.os}), read from {', '.join(h.sources)}"))
    for i in h.interfaces:
        settings = ", ".join(f"{k}={v}" for k, v in i["settings"].items())
        out.para(_t(f"{i['name']}", (" [loopback]" if i["loopback"] else "", "dim"),
                    f"  {' '.join(i['addresses']) or '-'}", (f"  {settings}" if settings else "", "dim")), indent=2, hang=4)
    for r in h.default_routes:
        out.para(_t(f"{r}"), indent=2)
    for note in h.cannot_show:
        out.para(_t(("not checked: ", "dim"), note), indent=2, hang=4)


def _probe(report: Report, out: _Out) -> None:
    p = report.probe
    out.para(_t(("Probe ", "bold"), f"{p.mode}: {plural(len(p.sessions), 'session')} to {p.vip}:{p.port} from {p.source} on {p.iface}"
                + (" (the VIP is on this segment)" if p.on_link else " (the VIP is routed)")))
    if p.arp_answers is not None:
        out.para(_t("ARP/NDP who-has the VIP answered by: ", ", ".join(p.arp_answers) or "nobody"), indent=2)
    rows, failures = [], []
    for row in p.backends:
        how = ", ".join(f"{k} {v}" for k, v in sorted(row["failed_how"].items()))
        if how:
            failures.append((row["backend"], how))
        rows.append([row["backend"], str(row["sessions"]), str(row["completed"]), str(row["failed"]),
                     f"{row['median_connect_ms']:.1f} ms" if row["median_connect_ms"] is not None else "-",
                     f"{row['median_banner_ms']:.1f} ms" if row["median_banner_ms"] is not None else "-"])
    cols = [Col(("back-end",)), Col(("sessions",), right=True), Col(("completed", "done"), right=True),
            Col(("failed",), right=True), Col(("median connect", "connect"), right=True, drop=2),
            Col(("median banner", "banner"), right=True, drop=1)]
    if not _table(out, "Back-ends as the probe saw them", cols, rows):
        _records(out, "Back-ends as the probe saw them", cols, rows)
    for name, how in failures:
        out.para(_t((f"{name} failed: ", "bold"), how), indent=2, hang=4)
    for s in p.skipped:
        out.para(_t(("skipped: ", "yellow"), s), indent=2, hang=4)
    if p.pcap:
        out.line(_t(("  capture kept: ", "dim"), p.pcap))
    out.blank()


def _ladder(report: Report, out: _Out, which: str) -> None:
    """The packets of one connection, vantage by vantage: vantages as columns, one line a packet.
    Each vantage's cell is its frame number and time; when that is too wide, the frame number only
    (the time at the first vantage in a column of its own), and the packet's text cut to fit."""
    corr = report.correlation
    flows = [f for f in (corr.flows if corr else ()) if f.client == which or f.client.startswith(which + ":")]
    out.blank()
    if not flows:
        out.para(_t(("ladder: ", "bold"), f"no connection of client {which} was seen at two vantages or more"))
        return
    for f in flows:
        title = f"Ladder: {f.client} -> port {f.server_port}" + (f" ({f.mode}{', ' + f.leg + ' leg' if f.leg else ''})" if f.mode else "")
        full, short = [], []
        for p in f.packets:
            arrow = "->" if p.direction == ">" else "<-"
            label = f"{arrow} {p.label}" + (f"  {p.text}" if p.text else "")
            at = {h.vantage: h for h in p.hops}
            last = p.last_seen + (f" (lost before {p.lost_before})" if p.lost_before else "")
            first = p.hops[0] if p.hops else None
            full.append([label] + [f"#{at[v].frame} {format_ts(at[v].ts_ns)[11:-1]}" if v in at else ("X" if v == p.lost_before else "")
                                   for v in f.vantages] + [last])
            short.append([label, format_ts(first.ts_ns)[11:-1] if first else "-"]
                         + [f"#{at[v].frame}" if v in at else ("X" if v == p.lost_before else "") for v in f.vantages] + [p.last_seen])
        cols = [Col(("packet",), cut=True)] + [Col((v,)) for v in f.vantages] + [Col(("last seen",))]
        shown = _table(out, title, cols, full)
        if not shown:
            cols = ([Col(("packet",), cut=True), Col(("time",), drop=1)] + [Col((v,)) for v in f.vantages]
                    + [Col(("last seen", "last"), drop=2)])
            shown = _table(out, title, cols, short)
            if shown:
                out.para(_t(("time: at the first vantage that saw the packet, UTC; cells: frame numbers (X: lost before it)", "dim")), indent=2)
        if not shown:
            _records(out, title, cols, short)
        out.para(_t((f"matched by {', '.join(f.matched_by)}" + (f"; other side: {f.linked}" if f.linked else ""), "dim")), indent=2)
        out.blank()
