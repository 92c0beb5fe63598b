"""Report -> one self-contained HTML page that reads at a glance: the verdict and its root cause
on top, a table of contents, findings linked to their ladders, connections and Wireshark filters,
back-ends with a health bar, captures, and a ladder (sequence) diagram per connection as inline
SVG with the decisive fact drawn on it.

Why one file with no script and no external resource: it is attached to tickets and opened on
machines with no network; a Content-Security-Policy forbids scripts, fetches and frames, so even
a mistake in escaping could not run anything. Filters are copied by selecting them (CSS
`user-select: all`), not by a button. Everything that came from packets (banners, EHLO names,
SMTP lines, and any finding text that quotes them) goes through `e()`: a capture is untrusted
input; the catalogue's fix texts go through report/markup.py (backticks -> `<code>`, all else
escaped). The page shows the same facts as the JSON document (it is built from jsondoc.to_dict)
plus the ladders, which need the packet times. What a ladder marks (a reply's real source
address, a bypass's gateway, a drop) is read from the findings, the connection records and the
correlation's facts, never from names. The built page then goes through core/safetext.html_page
once: control characters (ESC, NUL, C1...) and undecodable bytes of file names are shown as
`\\x1b`-style escapes, whatever value carried them.
"""

from __future__ import annotations

import heapq
import html
from collections import defaultdict
from datetime import datetime, timezone

from dsrdiag.core.safetext import html_page
from dsrdiag.jobs.report_model import Report
from dsrdiag.report import jsondoc
from dsrdiag.report.markup import to_html as markup
from dsrdiag.report.wireshark import conn_filter, frames_filter, tshark_command
from dsrdiag.track.records import flow_key

MAX_LADDERS = 60
"""Ladders drawn; those of connections a finding names come first, then those with a lost
packet. The JSON document has them all."""
MAX_CONNECTIONS = 300
"""Connections listed in the page (those a finding names first, then unfinished ones); the JSON
document has them all."""
MAX_LINKS = 12
"""Links to connections or ladders listed under one finding; the rest are counted."""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
WRONG_SOURCE = "return_source_not_vip"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:1200px;color:#1b1f23;padding:0 1em}
h1{font-size:1.5em;margin:0 0 .2em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.8em}
h3{margin:.3em 0}a{color:#0969da}
.top{border-radius:6px;padding:.8em 1em;margin:.6em 0}
.verdict{font-weight:600;font-size:1.15em;margin:0 0 .4em}
.ok{background:#dafbe1;border:1px solid #4ac26b}.unsure{background:#fff8c5;border:1px solid #d4a72c}.bad{background:#ffebe9;border:1px solid #ff8182}
.cause{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:.5em .8em;margin:.5em 0}
.cause h3{font-size:1.05em}
nav.toc{border:1px solid #d0d7de;border-radius:6px;padding:.4em 1em;background:#f6f8fa}
nav.toc ol{margin:.2em 0;padding-left:1.2em;columns:2 14em}
.finding{border:1px solid #d0d7de;border-radius:6px;padding:.6em 1em;margin:1em 0}
.sev{display:inline-block;border-radius:3px;padding:0 .4em;color:#fff;font-size:.85em;margin-right:.5em;vertical-align:middle}
.sev-error{background:#cf222e}.sev-warning{background:#9a6700}.sev-info{background:#0969da}
.links{margin:.3em 0}.links a{margin-right:.5em;white-space:nowrap}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}td,th{border:1px solid #d0d7de;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa}code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
.fix code,.expl code{background:#eff1f3;border-radius:3px;padding:0 .25em;overflow-wrap:anywhere}
code.filter{user-select:all;-webkit-user-select:all;background:#eef6ff;border:1px solid #b6d4fe;border-radius:3px;padding:0 .3em;overflow-wrap:break-word}
table.connections code.filter{font-size:.85em}table.connections td{min-width:4em}
code.cmd{user-select:all;-webkit-user-select:all;background:#f6f8fa;border:1px solid #d0d7de;border-radius:3px;padding:0 .3em;overflow-wrap:anywhere}
tr.filters td{background:#f6f8fa}tr.notes td{border-top:0;color:#57606a;font-size:.95em}tr.notes ul{margin:0;padding-left:1.2em}
td.path{min-width:10em}tr.cap th{background:#eaeef2;font-weight:600}
.dim{color:#57606a}.nowrap{white-space:nowrap}
.bar{display:inline-block;vertical-align:middle;margin-right:.4em}
.fix{margin:.3em 0 .6em}.fix p,.fix ul,.fix ol{margin:.3em 0}
svg.ladder text{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11px}
details{margin:.6em 0}summary{cursor:pointer;font-weight:600}
:target{outline:2px solid #0969da;outline-offset:2px}
"""


def e(value) -> str:
    """Escape for HTML text and quoted attributes (also valid inside inline SVG)."""
    return html.escape("" if value is None else str(value), quote=True)


class _Page:
    """What the sections link to: the anchors of findings, connections and ladders, and the
    facts a ladder marks (read once from findings, connection records and the correlation)."""

    def __init__(self, report: Report, doc: dict):
        self.report, self.doc = report, doc
        self.findings = {f["id"]: f for f in doc["findings"]}
        self.cited: dict[str, list[str]] = defaultdict(list)  # connection uid -> finding ids
        for f in doc["findings"]:
            for uid in f["connections"]:
                self.cited[uid].append(f["id"])
        self.vips = {v["ip"] for v in doc["topology"]["vips"]}
        wrong = {uid for f in report.findings if f.kind == WRONG_SOURCE for uid in f.connections}
        self.records: dict = {}
        self.conns = self._pick(wrong)
        self.conn_anchor = {c.uid: f"conn-{i}" for i, (c, _) in enumerate(self.conns)}
        corr = report.correlation
        self.flows: list = []
        if corr is not None:
            order = sorted(enumerate(corr.flows),
                           key=lambda x: (not any(u in self.cited for u in x[1].uids), x[1].died is None, x[0]))
            self.flows = order[:MAX_LADDERS]
        self.ladder_of: dict[str, list[str]] = defaultdict(list)  # connection uid -> ladder anchors
        for i, f in self.flows:
            for uid in f.uids:
                self.ladder_of[uid].append(f"ladder-{i}")
        self.frame_finding: dict[tuple, list[str]] = defaultdict(list)  # (vantage, frame) -> finding ids
        for f in report.findings:
            for x in f.evidence:
                if hasattr(x, "frame"):
                    self.frame_finding[(x.vantage, x.frame)].append(f.id)
        self.wrong_flows: dict[tuple, tuple[int, int, str, str]] = {}
        self.real_source = self._real_sources(report)
        self.bypass = self._bypasses(report)

    def _pick(self, wanted: set) -> list:
        """The connections listed: those a finding names first, then the unfinished ones; the
        records of wrong-source replies are kept on the way (one pass over the list)."""
        ok = ("SF", "S1", "S2", "S3")

        def stream():
            for cb in self.report.connections:
                if cb[0].uid in wanted:
                    self.records[cb[0].uid] = cb[0]
                yield cb

        return heapq.nsmallest(MAX_CONNECTIONS, stream(),
                               key=lambda cb: (cb[0].uid not in self.cited, cb[0].conn_state in ok, cb[0].first_ts_ns, cb[0].uid))

    def _real_sources(self, report: Report) -> dict[tuple, tuple[str, str]]:
        """(vantage, frame) -> (source address, finding id) for every packet of a wrong-source
        finding's records whose server address is not a VIP: the reply as it really came."""
        out: dict[tuple, tuple[str, str]] = {}
        for f in report.findings:
            if f.kind != WRONG_SOURCE:
                continue
            for uid in f.connections:
                c = self.records.get(uid)
                if c is None or c.server_ip in self.vips:
                    continue
                for n in c.packets:
                    out.setdefault((c.vantage, n.frame), (c.server_ip, f.id))
                # the packets past the record's kept notes: its flow's replies at that vantage in its time
                self.wrong_flows[(c.vantage, flow_key(c))] = (c.first_ts_ns, c.last_ts_ns, c.server_ip, f.id)
        return out

    def wrong_source_of(self, flow, hops) -> tuple[str, str] | None:
        """(real source address, finding id) when this reply is a wrong-source finding's packet."""
        for h in hops:
            hit = self.real_source.get((h.vantage, h.frame))
            if hit:
                return hit
        for h in hops:
            w = self.wrong_flows.get((h.vantage, flow.key))
            if w and w[0] <= h.ts_ns <= w[1]:
                return w[2], w[3]
        return None

    def _bypasses(self, report: Report) -> dict[tuple, tuple[tuple[str, ...], str | None, str | None]]:
        """(vantage, frame) of a bypassing reply's first hop -> (the firewall vantages it skipped,
        the gateway MAC it left towards, the finding about that segment)."""
        corr = report.correlation
        out: dict = {}
        if corr is None or not corr.bypasses:
            return out
        for fw_vs, items in corr.bypasses.items():
            fid = next((f.id for f in report.findings if f.between and set(f.between) == {fw_vs[0], fw_vs[-1]}
                        and f.kind == "asymmetric_flow"), None)
            for _fk, pp in items:
                if pp.hops:
                    h = pp.hops[0]
                    out[(h.vantage, h.frame)] = (tuple(fw_vs), h.dst_mac, fid)
        return out

    def ladders_of(self, uids) -> list[tuple[str, str]]:
        """(anchor, client address) of the drawn ladders of these connections, in drawing order."""
        want = {a for u in uids for a in self.ladder_of.get(u, ())}
        return [(f"ladder-{i}", fl.client) for i, fl in self.flows if f"ladder-{i}" in want]

    def finding_link(self, fid: str) -> str:
        f = self.findings.get(fid)
        if f is None:
            return e(fid)
        return f'<a href="#{e(fid)}" title="{e(fid)}">{e(f["title"])}</a> <span class="dim">({e(_where(f))})</span>'


def render(report: Report) -> str:
    doc = jsondoc.to_dict(report, connections=False)
    page = _Page(report, doc)
    v = doc["verdict"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{e(CSP)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>dsrdiag report: {e(v['text'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>dsrdiag report</h1><p class=\"dim\">dsrdiag {e(doc['tool']['version'])}, "
        f"{len(doc['captures'])} capture(s), report format {e(doc['version'])}</p>",
    ]
    parts += _top(page, v)
    parts += _toc(report)
    parts += _findings(page, doc["findings"])
    parts += _backends(doc["backends"])
    parts += _topology(doc["topology"])
    parts += _captures(report, doc["captures"])
    parts += _connections(page)
    parts += _ladders(page)
    if report.correlation is not None:
        parts += _correlation(page, doc["correlation"])
    parts.append("</body></html>\n")
    return html_page("\n".join(parts))


def _state_class(state: str) -> str:
    return {"healthy": "ok", "broken": "bad"}.get(state, "unsure")


def _backend_text(b: dict | None) -> str:
    if not b:
        return ""
    extra = ", ".join(x for x in (b.get("ip"), b.get("mac")) if x)
    return f"{e(b['name'])}" + (f" <span class=mono>({e(extra)})</span>" if extra else "")


def _where(f: dict) -> str:
    if f.get("between"):
        return f"between {f['between']['from']} and {f['between']['to']}"
    return "at " + ", ".join(f["vantages"])


def _top(page: _Page, v: dict) -> list[str]:
    """The verdict and its root cause(s): state, title, back-end, what each explains."""
    out = [f'<section class="top {_state_class(v["state"])}" id="verdict">',
           f'<p class="verdict">{e(v["text"])}</p>']
    if v["connections"]:
        out.append(f"<p>{e(v['completed'])} of {e(v['connections'])} connections completed, "
                   f"<b>{e(v['failed'])} failed</b>.</p>" if v["failed"] else
                   f"<p>{e(v['completed'])} of {e(v['connections'])} connections completed.</p>")
    out.append('<div id="causes">')
    if v["causes"]:
        out.append(f"<h2 style=\"margin-top:.4em\">Root cause{'s' if len(v['causes']) > 1 else ''}</h2>")
    for cid in v["causes"]:
        f = page.findings.get(cid)
        if f is None:
            continue
        explains = [page.finding_link(x) for x in f["consequences"]]
        out.append(
            f'<div class="cause"><h3><span class="sev sev-{e(f["severity"])}">{e(f["severity"])}</span>'
            f'<a href="#{e(cid)}">{e(f["title"])}</a></h3>'
            + (f"<p><b>Back-end:</b> {_backend_text(f['backend'])}</p>" if f["backend"] else "")
            + (f"<p><b>Subject:</b> {e(f['subject'])}</p>" if f.get("subject") and not f["backend"] else "")
            + f"<p><b>Where:</b> {e(_where(f))}. {e(f['summary'])}</p>"
            + (f"<p><b>Explains:</b> {' &middot; '.join(explains)}</p>" if explains else "")
            + _links(page.ladders_of(f["connections"]), "Seen on the ladder of")
            + "</div>")
    if not v["causes"]:
        out.append("<p>No root cause: " + ("nothing in these captures shows a DSR fault." if v["state"] == "healthy"
                                            else "nothing was found that explains the outcome.") + "</p>")
    for h in v["hints"]:
        out.append(f'<p class="dim">{e(h)}</p>')
    out.append("</div></section>")
    return out


def _toc(report: Report) -> list[str]:
    items = [("verdict", "Verdict"), ("causes", "Root causes"), ("findings", "Findings"), ("backends", "Back-ends"),
             ("topology", "Topology"), ("captures", "Captures"), ("connections", "Connections"), ("ladders", "Ladders")]
    if report.correlation is not None:
        items += [("offsets", "Clock offsets"), ("flows", "Connections across vantages")]
    lis = "".join(f'<li><a href="#{a}">{e(t)}</a></li>' for a, t in items)
    return [f'<nav class="toc" id="toc" aria-label="Contents"><b>Contents</b><ol>{lis}</ol></nav>']


def _evidence(f: dict) -> str:
    """Evidence grouped by capture: a heading row (vantage, file), its display filter and tshark
    command, then its frames."""
    frames, host = defaultdict(list), []
    for x in f["evidence"]:
        if "frame" in x:
            frames[x["capture"]].append(x)
        else:
            host.append(x)
    rows = []
    for cap, xs in frames.items():
        flt = frames_filter(x["frame"] for x in xs)
        rows.append(f'<tr class="cap"><th colspan=3>{e(xs[0].get("vantage"))} &middot; <span class=mono>{e(cap)}</span></th></tr>'
                    f'<tr class="filters"><td colspan=3>Wireshark filter: '
                    f'<code class="filter" data-capture="{e(cap)}">{e(flt)}</code><br>'
                    f'<span class=dim>tshark:</span> <code class="cmd">{e(tshark_command(cap, flt))}</code></td></tr>')
        rows += [f"<tr><td class=mono>{e(x.get('frame'))}</td><td class=\"mono nowrap\">{e(x.get('time'))}</td>"
                 f"<td>{e(x.get('what'))}</td></tr>" for x in xs]
    if host:
        rows.append('<tr class="cap"><th colspan=3>read from the host</th></tr>')
        rows += [f"<tr><td colspan=2 class=mono>{e(x.get('source'))}:{e(x.get('line'))}</td><td>{e(x.get('text'))}</td></tr>"
                 for x in host]
    if not rows:
        return ""
    return ('<div class="scroll"><table class="evidence"><tr><th>frame</th><th>time (UTC)</th><th>what</th></tr>'
            f"{''.join(rows)}</table></div>")


def _links(anchors: list[tuple[str, str]], what: str) -> str:
    if not anchors:
        return ""
    shown = "".join(f'<a href="#{e(a)}">{e(t)}</a>' for a, t in anchors[:MAX_LINKS])
    more = f' <span class=dim>and {len(anchors) - MAX_LINKS} more</span>' if len(anchors) > MAX_LINKS else ""
    return f'<p class="links"><b>{e(what)}:</b> {shown}{more}</p>'


def _findings(page: _Page, findings: list[dict]) -> list[str]:
    out = [f'<h2 id="findings">Findings ({len(findings)})</h2>']
    if not findings:
        out.append("<p>No finding: nothing in these captures shows a DSR fault.</p>")
    causes = page.doc["verdict"]["causes"]
    rank = {c: i for i, c in enumerate(causes)}
    for f in sorted(findings, key=lambda f: rank.get(f["id"], len(rank))):  # the root causes first
        conns = [(page.conn_anchor[u], u) for u in f["connections"] if u in page.conn_anchor]
        unlisted = len(f["connections"]) - len(conns)
        cause = (f" &middot; <b>explained by:</b> {page.finding_link(f['explained_by'])}" if f.get("explained_by")
                 else " &middot; <b>root cause</b>")
        conseq = [page.finding_link(x) for x in f["consequences"]]
        out.append(
            f'<div class="finding" id="{e(f["id"])}">'
            f'<h3><span class="sev sev-{e(f["severity"])}">{e(f["severity"])}</span>{e(f["title"])} '
            f'<span class="dim mono">{e(f["kind"])} {e(f["id"])}</span></h3>'
            f"<p><b>Where:</b> {e(_where(f))}{cause}"
            + (f" &middot; <b>back-end:</b> {_backend_text(f['backend'])} <span class=dim>({e(f['backend']['source'])})</span>" if f["backend"] else "")
            + (f" &middot; <b>subject:</b> {e(f['subject'])}" if f.get("subject") else "")
            + "</p>"
            + (f"<p><b>Explains:</b> {' &middot; '.join(conseq)}</p>" if conseq else "")
            + f"<p>{e(f['summary'])}</p>"
            + _links(page.ladders_of(f["connections"]), "Ladders")
            + _links(conns, "Connections")
            + (f'<p class=dim>{unlisted} more connection(s) in the JSON document.</p>' if unlisted else "")
            + _evidence(f)
            + f'<div class="expl">{markup(f["explanation"])}</div>'
            + f'<details open><summary>Fix on Windows</summary><div class="fix">{markup(f["fix"]["windows"])}</div></details>'
            + f'<details open><summary>Fix on Linux</summary><div class="fix">{markup(f["fix"]["linux"])}</div></details>'
            + (f'<details open><summary>Fix on the load balancer</summary><div class="fix">{markup(f["fix"]["load_balancer"])}</div></details>'
               if f["fix"].get("load_balancer") else "")
            + "</div>")
    return out


def _table(head: list[str], rows: list[list], cls: str = "", row_ids: list[str] | None = None) -> str:
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join((f'<tr id="{e(row_ids[i])}">' if row_ids else "<tr>") + "".join(f"<td>{c}</td>" for c in r) + "</tr>"
                   for i, r in enumerate(rows))
    return f'<div class="scroll"><table class="{e(cls)}"><tr>{th}</tr>{body}</table></div>'


def health_bar(completed: int, failed: int, width: int = 120) -> str:
    """Completed (green) and failed (red) as an inline SVG bar, with the numbers as text beside it
    (the bar is a picture of the text, not a replacement: screen readers read the text)."""
    total = completed + failed
    ok_w = round(width * completed / total) if total else 0
    bar = (f'<svg class="bar" width="{width}" height="10" viewBox="0 0 {width} 10" aria-hidden="true">'
           f'<rect width="{width}" height="10" fill="#eaeef2"/>'
           + (f'<rect width="{ok_w}" height="10" fill="#2da44e"/>' if ok_w else "")
           + (f'<rect x="{ok_w}" width="{width - ok_w}" height="10" fill="#cf222e"/>' if total and failed else "")
           + "</svg>")
    return f'<span class="nowrap">{bar}{e(completed)} completed, {e(failed)} failed</span>'


def _backends(rows: list[dict]) -> list[str]:
    out = ['<h2 id="backends">Back-ends</h2>']
    if not rows:
        return out + ["<p>No back-end was seen or given.</p>"]
    body = []
    for r in rows:
        b = r["backend"]
        fails = "<br>".join(f"{e(x['connections'])} &times; {e(x['text'])}"
                            + (f" <span class=dim>({e(x['conn_state'] or x['kind'])})</span>" if x["kind"] != "lost_on_path" else "")
                            for x in r["failures"])
        banner = r["median_syn_to_banner_ms"]
        body.append([e(b["name"]), f"<span class=mono>{e(b['ip'] or '-')}</span>", f"<span class=mono>{e(b['mac'] or '-')}</span>",
                     e(b["source"]), e(r["connections"]), health_bar(r["completed"], r["failed"]) + (f"<br>{fails}" if fails else ""),
                     e(", ".join(r["banner_hosts"]) or "-"), e(f"{banner:.1f} ms" if banner is not None else "-")])
    return out + [_table(["back-end", "IP", "MAC", "source", "connections", "health (where failed)",
                          "banner host", "median SYN->banner"], body, "backends")]


def _topology(t: dict) -> list[str]:
    rows = [[e("VIP"), f"<span class=mono>{e(v['ip'])}</span> {'port' if len(v['ports']) == 1 else 'ports'} {e(', '.join(map(str, v['ports'])))}", e(v["source"])] for v in t["vips"]]
    rows += [[e("load balancer MAC"), f"<span class=mono>{e(m['mac'])}</span>", e(m["source"])] for m in t["load_balancer"]["macs"]]
    rows += [[e("load balancer address"), f"<span class=mono>{e(i['ip'])}</span>", e(i["source"])] for i in t["load_balancer"]["ips"]]
    rows += [[e("back-end"), f"{e(b['name'])} <span class=mono>{e(b['ip'] or '-')} {e(b['mac'] or '-')}</span>", e(b["source"])] for b in t["backends"]]
    notes = "".join(f"<li>{e(n)}</li>" for n in t["notes"])
    return ['<h2 id="topology">Topology as dsrdiag understood it</h2>', _table(["what", "value", "given or inferred"], rows),
            f"<ul class=dim>{notes}</ul>" if notes else ""]


def time_span(first_ns: int | None, last_ns: int | None) -> str:
    """`2024-05-01 10:00:00.000 - 10:00:12.345 (12.3 s)`: the date once when both ends share it."""
    if first_ns is None or last_ns is None:
        return "-"
    a = datetime.fromtimestamp(first_ns // 1_000_000_000, tz=timezone.utc)
    b = datetime.fromtimestamp(last_ns // 1_000_000_000, tz=timezone.utc)
    fa = f"{a:%H:%M:%S}.{first_ns % 1_000_000_000 // 1_000_000:03d}"
    fb = f"{b:%H:%M:%S}.{last_ns % 1_000_000_000 // 1_000_000:03d}"
    secs = (last_ns - first_ns) / 1e9
    length = f"{secs:.1f} s" if secs < 120 else f"{secs / 60:.1f} min" if secs < 7200 else f"{secs / 3600:.1f} h"
    if a.date() == b.date():
        return f"{a:%Y-%m-%d} {fa} \u2013 {fb} ({length})"
    return f"{a:%Y-%m-%d} {fa} \u2013 {b:%Y-%m-%d} {fb} ({length})"


def _captures(report: Report, caps: list[dict]) -> list[str]:
    """A row per capture, and under it (across the table) what the capture could not show: the
    notes are sentences, too long for a column at a laptop's width."""
    body = []
    for s, c in zip(report.captures, caps):
        frames = e(c["packets"]) + (f' <span class=dim>({e(c["analysed_packets"])} analysed)</span>'
                                     if c["analysed_packets"] != c["packets"] else "")
        span = (f'<span class="nowrap" title="{e(c["first_ts"] or "-")} .. {e(c["last_ts"] or "-")}">'
                f'{e(time_span(s.first_ts_ns, s.last_ts_ns))}</span>')
        body.append(f'<tr><td>{e(c["vantage"])}</td><td class="mono path">{e(c["path"]).replace("/", "/<wbr>")}</td><td>{frames}</td>'
                    f'<td>{e(c["connections"])}</td><td>{span}</td></tr>')
        notes = ([f"<li><b>damaged:</b> {e(c['damage'])}</li>"] if c["damage"] else []) + [f"<li>{e(x)}</li>" for x in c["cannot_show"]]
        if notes:
            body.append(f'<tr class="notes"><td></td><td colspan=4><ul>{"".join(notes)}</ul></td></tr>')
    head = "".join(f"<th>{h}</th>" for h in ("vantage", "file", "frames", "connections", "time span (UTC)"))
    return ['<h2 id="captures">Captures</h2>',
            f'<div class="scroll"><table class="captures"><tr>{head}</tr>{"".join(body)}</table></div>']


def _connections(page: _Page) -> list[str]:
    total = len(page.report.connections)
    if not total:
        return ['<h2 id="connections">Connections</h2>', "<p>No connection to the service was seen.</p>"]
    rows, ids = [], []
    for c, b in page.conns:
        d = jsondoc.connection_dict(c, b)
        smtp = d["smtp"] or {}
        back = " ".join(f'<a href="#{e(fid)}" title="{e(page.findings[fid]["title"])}">{e(fid)}</a>'
                        for fid in page.cited.get(c.uid, ()))
        ladders = " ".join(f'<a href="#{e(a)}">ladder</a>' for a in page.ladder_of.get(c.uid, ()))
        flt = conn_filter(c.client_ip, c.client_port, c.server_ip, c.server_port)
        said = "<br>".join(f"<span class=\"mono banner\">{e(x)}</span>" for x in (smtp.get("banner"), smtp.get("helo") and f"EHLO {smtp['helo']}") if x)
        rows.append([e(d["vantage"]) + f'<br><span class="dim mono">{e(c.uid)}</span>',
                     f'<span class="mono nowrap">{e(d["ts"])}</span>',
                     f"<span class=\"mono nowrap\">{e(d['client']['ip'])}:{e(d['client']['port'])} &rarr; "
                     f"{e(d['server']['ip'])}:{e(d['server']['port'])}</span><br>"
                     f'<code class="filter">{e(flt)}</code>',
                     f"<span class=mono>{e(d['history'])}</span><br>{e(d['conn_state'])}", e(b.name if b else "-"),
                     (back + ("<br>" if back and ladders else "") + ladders) or "-", said])
        ids.append(page.conn_anchor[c.uid])
    return [f'<h2 id="connections">Connections ({len(rows)} of {total}, those in findings first, then unfinished)</h2>',
            _table(["vantage", "first packet (UTC)", "client \u2192 server, Wireshark filter", "history, state", "back-end",
                    "findings, ladder", "SMTP banner, EHLO"], rows, "connections", ids)]


def _ladders(page: _Page) -> list[str]:
    corr = page.report.correlation
    out = ['<h2 id="ladders">Ladders</h2>']
    if corr is None:
        return out + ["<p class=dim>Ladders need captures of the same connections at two vantages or more "
                      "(VANTAGE=CAPTURE ...); this report has one.</p>"]
    out.append(f"<p class=dim>{len(page.flows)} of {len(corr.flows)} connections; those a finding names first, then those "
               "with a lost packet. Times are each capture's own clock minus its offset; a red cross marks where a packet "
               "was expected and not seen.</p>")
    for i, f in page.flows:
        fids = sorted({fid for u in f.uids for fid in page.cited.get(u, ())})
        conns = [f'<a href="#{e(page.conn_anchor[u])}">{e(u)}</a>' for u in f.uids if u in page.conn_anchor]
        out.append(f'<h3 id="ladder-{i}">{e(f.client)} &rarr; port {e(f.server_port)}'
                   f' <span class=dim>{e(f.mode or "")} {e(f.leg or "")}</span></h3>')
        if f.died:
            out.append(f"<p><b>Died:</b> {e(f.died)}</p>")
        if fids:
            rank = {c: i for i, c in enumerate(page.doc["verdict"]["causes"])}
            fids.sort(key=lambda x: (rank.get(x, len(rank)), x))
            out.append('<p class="links"><b>Findings:</b> ' + " &middot; ".join(page.finding_link(x) for x in fids) + "</p>")
        if conns:
            out.append('<p class="links"><b>Connections:</b> ' + " ".join(conns) + "</p>")
        out.append('<div class="scroll">' + ladder_svg(f, corr.offsets, page, str(i)) + "</div>")
    return out


def _correlation(page: _Page, c: dict) -> list[str]:
    corr = page.report.correlation
    drawn = {i for i, _ in page.flows}
    out = ['<h2 id="offsets">Clock offsets</h2>',
           f"<p>Against <b>{e(c['reference'])}</b>, from the same packets seen at both captures. Two-way: requests "
           "and replies bound the transit time; one-way: the offset includes it.</p>"]
    rows = [[e(o["vantage"]), e(f"{o['offset_s'] * 1e3:+.3f} ms"), e(f"± {o['uncertainty_s'] * 1e3:.3f} ms"),
             e(o["matched_packets"]), e(o["basis"] + (f" via {' -> '.join(o['via'])}" if o["via"] else ""))]
            for o in c["clock_offsets"]]
    out.append(_table(["vantage", "offset", "uncertainty", "packets", "basis"], rows))
    rows = [[f"<a href=\"#ladder-{i}\">{e(f.client)}</a>" if i in drawn else e(f.client), e(f.server_port), e(f.mode or "-"),
             e(f.leg or ""), e(", ".join(f.vantages)), e(", ".join(f.matched_by)), e(f.linked or ""), e(f.died or "")]
            for i, f in enumerate(corr.flows)]
    out += ['<h2 id="flows">Connections across vantages</h2>',
            _table(["client", "port", "mode", "leg", "seen at", "matched by", "other side", "died"], rows)]
    return out


def ladder_svg(flow, offsets: dict, page: _Page | None = None, key: str = "0") -> str:
    """One connection as a sequence diagram: a column per vantage, a row per packet, and on it the
    decisive facts: a wrong-source reply named by its real source address, a bypass labelled with
    the gateway MAC at the vantages it skipped, a lost packet crossed where it was expected and
    named where it was last seen. `key` makes the diagram's own ids unique in the page."""
    cols = list(flow.vantages)
    left, colw, top, rowh = 110, 130, 40, 24
    label_x = left + colw * max(len(cols) - 1, 1) + 16
    x = {v: left + i * colw for i, v in enumerate(cols)}
    bypass = page.bypass if page else {}
    frame_finding = page.frame_finding if page else {}
    arr, red = f"arr-{key}", f"arr-red-{key}"

    def t(h) -> int:
        o = offsets.get(h.vantage)
        return h.ts_ns - (int(o.offset_s * 1e9) if o else 0)

    packets = sorted(flow.packets, key=lambda p: min(t(h) for h in p.hops))
    t0 = min((t(h) for p in packets for h in p.hops), default=0)
    height = top + rowh * (len(packets) + 1)
    body: list[str] = []
    longest = 20
    for v in cols:
        body.append(f'<text x="{x[v]}" y="16" text-anchor="middle" font-weight="bold">{e(v)}</text>'
                    f'<line x1="{x[v]}" y1="24" x2="{x[v]}" y2="{height - 8}" stroke="#8c959f" stroke-dasharray="3,3"/>')
    for i, p in enumerate(packets):
        y = top + rowh * i + 8
        seen = [h for h in p.hops if h.vantage in x]
        if not seen:
            continue
        ms = (min(t(h) for h in seen) - t0) / 1e6
        body.append(f'<text x="4" y="{y + 4}" fill="#57606a">{e(f"{ms:10.3f} ms")}</text>')
        xs = [x[h.vantage] for h in seen]
        x1, x2 = (min(xs), max(xs)) if p.direction == ">" else (max(xs), min(xs))
        lost = p.lost_before if p.lost_before in x else None
        if lost:
            x2 = x[lost] + (8 if x[lost] < x1 else -8)  # the arrow stops short of the cross
        src = page.wrong_source_of(flow, seen) if page and p.direction == "<" else None
        byp = next((bypass[(h.vantage, h.frame)] for h in seen if (h.vantage, h.frame) in bypass), None)
        bad = bool(lost or src or byp)
        color = "#cf222e" if bad else "#24292f"
        if x1 != x2:
            body.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{color}" stroke-width="1.5" '
                        f'marker-end="url(#{red if bad else arr})"/>')
        for h in seen:
            body.append(f'<circle cx="{x[h.vantage]}" cy="{y}" r="3" fill="{color}"><title>{e(h.vantage)} frame {e(h.frame)}</title></circle>')
        if lost:
            cx = x[lost]
            body.append(f'<path class="lost" d="M{cx - 6},{y - 6} L{cx + 6},{y + 6} M{cx - 6},{y + 6} L{cx + 6},{y - 6}" '
                        f'stroke="#cf222e" stroke-width="2.5"><title>not seen at {e(lost)}</title></path>')
        label = p.label + (f" from {src[0]} (not the VIP)" if src else "")
        notes = []
        if byp:
            skipped, gw, _fid = byp
            text = f"via {gw or 'another gateway'} (bypass)"
            where = [x[v] for v in skipped if v in x]
            for wx in where:
                body.append(f'<circle cx="{wx}" cy="{y}" r="4" fill="#fff" stroke="#cf222e" stroke-width="1.5">'
                            f'<title>not seen at this vantage: the reply went around it</title></circle>')
            if where:
                body.append(f'<text class="bypass" x="{sum(where) / len(where):.0f}" y="{y - 6}" text-anchor="middle" fill="#cf222e" '
                            f'paint-order="stroke" stroke="#fff" stroke-width="3">{e(text)}</text>')
            notes.append(text + (f" around {', '.join(skipped)}" if skipped else ""))
        if lost:
            notes.append(f"last seen at {p.last_seen}, not at {lost}")
        if p.text:
            notes.append(p.text[:60])
        full = label + (" \u2014 " + "; ".join(notes) if notes else "")
        longest = max(longest, len(full))
        fids = sorted({fid for h in seen for fid in frame_finding.get((h.vantage, h.frame), ())})
        link = src[1] if src else byp[2] if byp and byp[2] else fids[0] if fids else None
        frames = " ".join(f"{h.vantage}#{h.frame}" for h in seen)
        cls = ' class="decisive" font-weight="bold"' if bad else ""
        txt = f'<text x="{label_x}" y="{y + 4}" fill="{color}"{cls}>{e(full)}<title>{e(frames)}</title></text>'
        body.append(f'<a href="#{e(link)}">{txt}</a>' if link else txt)
    width = label_x + 8 + round(longest * 7.2)  # 11px monospace: ~6.6px a character (bold a little more)
    head = [f'<svg xmlns="http://www.w3.org/2000/svg" class="ladder" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="ladder diagram of {e(flow.client)}'
            f'{e(": " + flow.died) if flow.died else ""}">',
            f'<defs><marker id="{arr}" markerWidth="8" markerHeight="8" refX="7" refY="3" orient="auto">'
            '<path d="M0,0 L7,3 L0,6 z" fill="#24292f"/></marker>'
            f'<marker id="{red}" markerWidth="8" markerHeight="8" refX="7" refY="3" orient="auto">'
            '<path d="M0,0 L7,3 L0,6 z" fill="#cf222e"/></marker></defs>']
    return "".join(head + body) + "</svg>"
