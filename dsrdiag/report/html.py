"""Report -> one self-contained HTML page: verdict, findings with their fixes, back-ends, topology,
captures, clock offsets, and a ladder (sequence) diagram per connection as inline SVG.

Why one file with no script and no external resource: it is attached to tickets and opened on
machines with no network; a Content-Security-Policy forbids scripts, fetches and frames, so even
a mistake in escaping could not run anything. Everything that came from packets (banners, EHLO
names, SMTP lines, and any finding text that quotes them) goes through `e()`: a capture is
untrusted input. The page shows the same facts as the JSON document (it is built from
jsondoc.to_dict) plus the ladders, which need the packet times. The built page then goes through
core/safetext.html_page once: control characters (ESC, NUL, C1...) and undecodable bytes of file
names are shown as `\x1b`-style escapes, whatever value carried them.
"""

from __future__ import annotations

import heapq
import html

from dsrdiag.core.safetext import html_page
from dsrdiag.jobs.report_model import Report
from dsrdiag.report import jsondoc

MAX_LADDERS = 60
"""Ladders drawn; connections with a lost packet come first. The JSON document has them all."""
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#1b1f23;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.8em}
.verdict{padding:.8em 1em;border-radius:6px;font-weight:600;font-size:1.1em}
.ok{background:#dafbe1;border:1px solid #4ac26b}.unsure{background:#fff8c5;border:1px solid #d4a72c}.bad{background:#ffebe9;border:1px solid #ff8182}
.finding{border:1px solid #d0d7de;border-radius:6px;padding:.6em 1em;margin:1em 0}
.sev{display:inline-block;border-radius:3px;padding:0 .4em;color:#fff;font-size:.85em;margin-right:.5em}
.sev-error{background:#cf222e}.sev-warning{background:#bf8700}.sev-info{background:#0969da}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}td,th{border:1px solid #d0d7de;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa}code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em}
pre{white-space:pre-wrap;background:#f6f8fa;padding:.5em;border-radius:4px}.dim{color:#57606a}
svg text{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:11px}
details{margin:.6em 0}summary{cursor:pointer;font-weight:600}
"""


def e(value) -> str:
    """Escape for HTML text and quoted attributes (also valid inside inline SVG)."""
    return html.escape("" if value is None else str(value), quote=True)


def render(report: Report) -> str:
    doc = jsondoc.to_dict(report, connections=False)
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
        f'<div class="verdict {"ok" if v["state"] == "healthy" else "bad" if v["state"] == "broken" else "unsure"}" id="verdict">{e(v["text"])}</div>',
    ]
    parts += _findings(doc["findings"])
    parts += _backends(doc["backends"])
    parts += _topology(doc["topology"])
    parts += _captures(doc["captures"])
    parts += _connections(report)
    if report.correlation is not None:
        parts += _correlation(report, doc["correlation"])
    parts.append("</body></html>\n")
    return html_page("\n".join(parts))


def _where(f: dict) -> str:
    if f.get("between"):
        return f"between {f['between']['from']} and {f['between']['to']}"
    return "at " + ", ".join(f["vantages"])


def _findings(findings: list[dict]) -> list[str]:
    out = [f"<h2>Findings ({len(findings)})</h2>"]
    if not findings:
        out.append("<p>No finding: nothing in these captures shows a DSR fault.</p>")
    for f in findings:
        ev = "".join(
            f"<tr><td>{e(x.get('vantage'))}</td><td class=mono>{e(x.get('capture'))}</td>"
            f"<td class=mono>{e(x.get('frame'))}</td><td class=mono>{e(x.get('time'))}</td><td>{e(x.get('what'))}</td></tr>"
            if "frame" in x else
            f"<tr><td colspan=3 class=mono>{e(x.get('source'))}:{e(x.get('line'))}</td><td colspan=2>{e(x.get('text'))}</td></tr>"
            for x in f["evidence"])
        backend = f["backend"]
        out.append(
            f'<div class="finding" id="{e(f["id"])}">'
            f'<h3><span class="sev sev-{e(f["severity"])}">{e(f["severity"])}</span>{e(f["title"])} '
            f'<span class="dim mono">{e(f["kind"])}</span></h3>'
            f"<p><b>Where:</b> {e(_where(f))}"
            + (f" &middot; <b>explained by:</b> <a href=\"#{e(f['explained_by'])}\">{e(f['explained_by'])}</a>" if f.get("explained_by") else " &middot; <b>root cause</b>")
            + (f" &middot; <b>back-end:</b> {e(backend['name'])} ({e(backend['ip'] or '-')}, {e(backend['mac'] or '-')}, {e(backend['source'])})" if backend else "")
            + (f" &middot; <b>subject:</b> {e(f['subject'])}" if f.get("subject") else "")
            + f"</p><p>{e(f['summary'])}</p>"
            f"<table><tr><th>vantage</th><th>capture</th><th>frame</th><th>time (UTC)</th><th>what</th></tr>{ev}</table>"
            f"<p>{e(f['explanation'])}</p>"
            f"<details open><summary>Fix on Windows</summary><pre>{e(f['fix']['windows'])}</pre></details>"
            f"<details open><summary>Fix on Linux</summary><pre>{e(f['fix']['linux'])}</pre></details>"
            + (f"<details open><summary>Fix on the load balancer</summary><pre>{e(f['fix']['load_balancer'])}</pre></details>"
               if f["fix"].get("load_balancer") else "")
            + "</div>")
    return out


def _table(head: list[str], rows: list[list], cls: str = "") -> str:
    th = "".join(f"<th>{e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{e(cls)}"><tr>{th}</tr>{body}</table>'


def _backends(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    body = []
    for r in rows:
        b = r["backend"]
        fails = "<br>".join(f"{e(x['connections'])} &times; {e(x['text'])}"
                            + (f" <span class=dim>({e(x['conn_state'] or x['kind'])})</span>" if x["kind"] != "lost_on_path" else "")
                            for x in r["failures"])
        banner = r["median_syn_to_banner_ms"]
        body.append([e(b["name"]), f"<span class=mono>{e(b['ip'] or '-')}</span>", f"<span class=mono>{e(b['mac'] or '-')}</span>",
                     e(b["source"]), e(r["connections"]), e(r["completed"]), e(r["failed"]) + (f"<br>{fails}" if fails else ""),
                     e(", ".join(r["banner_hosts"]) or "-"), e(f"{banner:.1f} ms" if banner is not None else "-")])
    return ["<h2>Back-ends</h2>", _table(["back-end", "IP", "MAC", "source", "connections", "completed", "failed (where)",
                                          "banner host", "median SYN->banner"], body, "backends")]


def _topology(t: dict) -> list[str]:
    rows = [[e("VIP"), f"<span class=mono>{e(v['ip'])}</span> ports {e(', '.join(map(str, v['ports'])))}", e(v["source"])] for v in t["vips"]]
    rows += [[e("load balancer MAC"), f"<span class=mono>{e(m['mac'])}</span>", e(m["source"])] for m in t["load_balancer"]["macs"]]
    rows += [[e("load balancer address"), f"<span class=mono>{e(i['ip'])}</span>", e(i["source"])] for i in t["load_balancer"]["ips"]]
    rows += [[e("back-end"), f"{e(b['name'])} <span class=mono>{e(b['ip'] or '-')} {e(b['mac'] or '-')}</span>", e(b["source"])] for b in t["backends"]]
    notes = "".join(f"<li>{e(n)}</li>" for n in t["notes"])
    return ["<h2>Topology as dsrdiag understood it</h2>", _table(["what", "value", "given or inferred"], rows),
            f"<ul class=dim>{notes}</ul>" if notes else ""]


def _captures(caps: list[dict]) -> list[str]:
    rows = []
    for c in caps:
        limits = "<br>".join(e(x) for x in c["cannot_show"])
        rows.append([e(c["vantage"]), f"<span class=mono>{e(c['path'])}</span>", e(c["packets"]), e(c["analysed_packets"]),
                     e(c["connections"]), e(f"{c['first_ts'] or '-'} .. {c['last_ts'] or '-'}"),
                     (f"<b>damaged:</b> {e(c['damage'])}<br>" if c["damage"] else "") + limits])
    return ["<h2>Captures</h2>", _table(["vantage", "file", "frames", "analysed", "connections", "time span (UTC)", "notes"], rows)]


MAX_CONNECTIONS = 300
"""Connections listed in the page (failed ones first); the JSON document has them all."""


def _connections(report: Report) -> list[str]:
    """The first MAX_CONNECTIONS connections, unfinished first, chosen while streaming them."""
    ok = ("SF", "S1", "S2", "S3")
    total = len(report.connections)
    if not total:
        return []
    picked = heapq.nsmallest(MAX_CONNECTIONS, report.connections,
                             key=lambda cb: (cb[0].conn_state in ok, cb[0].first_ts_ns, cb[0].uid))
    rows = []
    for c in (jsondoc.connection_dict(c, b) for c, b in picked):
        smtp = c["smtp"] or {}
        b = c["backend"]
        rows.append([e(c["vantage"]), f"<span class=mono>{e(c['ts'])}</span>",
                     f"<span class=mono>{e(c['client']['ip'])}:{e(c['client']['port'])}</span>",
                     f"<span class=mono>{e(c['server']['ip'])}:{e(c['server']['port'])}</span>",
                     f"<span class=mono>{e(c['history'])}</span>", e(c["conn_state"]), e(b["name"] if b else "-"),
                     f"<span class=\"mono banner\">{e(smtp.get('banner') or '')}</span>", f"<span class=mono>{e(smtp.get('helo') or '')}</span>"])
    return [f"<h2>Connections ({len(rows)} of {total}, unfinished first)</h2>",
            _table(["vantage", "first packet (UTC)", "client", "server", "history", "state", "back-end", "SMTP banner", "EHLO"], rows, "connections")]


def _correlation(report: Report, c: dict) -> list[str]:
    corr = report.correlation
    out = ["<h2>Clock offsets</h2>",
           f"<p>Against <b>{e(c['reference'])}</b>, from the same packets seen at both captures. Two-way: requests "
           "and replies bound the transit time; one-way: the offset includes it.</p>"]
    rows = [[e(o["vantage"]), e(f"{o['offset_s'] * 1e3:+.3f} ms"), e(f"± {o['uncertainty_s'] * 1e3:.3f} ms"),
             e(o["matched_packets"]), e(o["basis"] + (f" via {' -> '.join(o['via'])}" if o["via"] else ""))]
            for o in c["clock_offsets"]]
    out.append(_table(["vantage", "offset", "uncertainty", "packets", "basis"], rows))
    rows = [[f"<a href=\"#ladder-{i}\">{e(f.client)}</a>", e(f.server_port), e(f.mode or "-"), e(f.leg or ""), e(", ".join(f.vantages)),
             e(", ".join(f.matched_by)), e(f.linked or ""), e(f.died or "")]
            for i, f in enumerate(corr.flows)]
    out += ["<h2>Connections across vantages</h2>",
            _table(["client", "port", "mode", "leg", "seen at", "matched by", "other side", "died"], rows)]
    flows = sorted(enumerate(corr.flows), key=lambda x: (x[1].died is None, x[0]))[:MAX_LADDERS]
    out.append(f"<h2>Ladders</h2><p class=dim>{len(flows)} of {len(corr.flows)} connections; those with a lost packet first. "
               "Times are each capture's own clock minus its offset; a red cross marks where a packet was expected and not seen.</p>")
    for i, f in flows:
        out.append(f'<h3 id="ladder-{i}">{e(f.client)} &rarr; port {e(f.server_port)}'
                   f' <span class=dim>{e(f.mode or "")} {e(f.leg or "")}</span></h3>')
        out.append(ladder_svg(f, corr.offsets))
    return out


def ladder_svg(flow, offsets: dict) -> str:
    """One connection as a sequence diagram: a column per vantage, a row per packet."""
    cols = list(flow.vantages)
    left, colw, top, rowh = 120, 150, 40, 22
    width = left + colw * max(len(cols) - 1, 1) + 460
    x = {v: left + i * colw for i, v in enumerate(cols)}

    def t(h) -> int:
        o = offsets.get(h.vantage)
        return h.ts_ns - (int(o.offset_s * 1e9) if o else 0)

    packets = sorted(flow.packets, key=lambda p: min(t(h) for h in p.hops))
    t0 = min((t(h) for p in packets for h in p.hops), default=0)
    height = top + rowh * (len(packets) + 1)
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" class="ladder" width="{width}" height="{height}" '
         f'viewBox="0 0 {width} {height}" role="img" aria-label="ladder diagram of {e(flow.client)}">',
         '<defs><marker id="arr" markerWidth="8" markerHeight="8" refX="7" refY="3" orient="auto">'
         '<path d="M0,0 L7,3 L0,6 z" fill="#24292f"/></marker></defs>']
    for v in cols:
        s.append(f'<text x="{x[v]}" y="16" text-anchor="middle" font-weight="bold">{e(v)}</text>'
                 f'<line x1="{x[v]}" y1="24" x2="{x[v]}" y2="{height - 8}" stroke="#8c959f" stroke-dasharray="3,3"/>')
    for i, p in enumerate(packets):
        y = top + rowh * i + 8
        seen = [h for h in p.hops if h.vantage in x]
        if not seen:
            continue
        ms = (min(t(h) for h in seen) - t0) / 1e6
        s.append(f'<text x="4" y="{y + 4}" fill="#57606a">{e(f"{ms:10.3f} ms")}</text>')
        xs = [x[h.vantage] for h in seen]
        x1, x2 = (min(xs), max(xs)) if p.direction == ">" else (max(xs), min(xs))
        if p.lost_before and p.lost_before in x:
            x2 = x[p.lost_before]
        color = "#cf222e" if p.lost_before else "#24292f"
        if x1 != x2:
            s.append(f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" stroke="{color}" stroke-width="1.5" marker-end="url(#arr)"/>')
        for h in seen:
            s.append(f'<circle cx="{x[h.vantage]}" cy="{y}" r="3" fill="{color}"><title>{e(h.vantage)} frame {e(h.frame)}</title></circle>')
        if p.lost_before and p.lost_before in x:
            cx = x[p.lost_before]
            s.append(f'<path d="M{cx - 6},{y - 6} L{cx + 6},{y + 6} M{cx - 6},{y + 6} L{cx + 6},{y - 6}" stroke="#cf222e" stroke-width="2.5">'
                     f'<title>not seen at {e(p.lost_before)}</title></path>')
        label = p.label
        text = p.text
        if text:
            label += f"  {text[:60]}"
        frames = " ".join(f"{h.vantage}#{h.frame}" for h in seen)
        s.append(f'<text x="{left + colw * max(len(cols) - 1, 1) + 16}" y="{y + 4}">{e(label)}'
                 f'<title>{e(frames)}</title></text>')
    s.append("</svg>")
    return "".join(s)
