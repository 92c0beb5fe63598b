"""Report -> one JSON document matching docs/report.schema.json.

Why fixed and versioned: other tools and pipelines read it; `version` changes on any incompatible
change. Times are UTC ISO-8601 strings plus epoch seconds; packet text is plain JSON strings.
"""

from __future__ import annotations

import codecs
import json
import os

try:
    import orjson  # the connection list of a day of mail: ~2x the stdlib encoder's speed, same bytes
except ImportError:  # pragma: no cover - a dependency; the stdlib encoder gives the same document
    orjson = None

from dsrdiag import __version__
from dsrdiag.capture.frame import linktype_name
from dsrdiag.core.evidence import HostRef, format_ts
from dsrdiag.core.safetext import json_bytes, json_text
from dsrdiag.decode.tcp import flag_letters
from dsrdiag.findings.catalog import entry
from dsrdiag.jobs.report_model import Report
from dsrdiag.track.lone import Block
from dsrdiag.track.records import Connection, SmtpDialogue

try:  # the C peer of the lone-SYN item writer (report/_jsonrows.c), when built
    from dsrdiag.report import _jsonrows
except ImportError:  # pragma: no cover - no compiler: the loop does the same
    _jsonrows = None
from dsrdiag.report.wireshark import conn_filter, frames_filter, per_capture


def _record_writer():
    """_jsonrows.connection, the C peer of _encode(_conn(c, b)) for one record (before json_bytes),
    where it is built and reads the record types as they are (it reads their fields by position);
    None under DSRDIAG_TRACKER=python (the reference all the way, as lone_items)."""
    if _jsonrows is None or orjson is None or not hasattr(_jsonrows, "connection"):
        return None
    if _jsonrows.CONNECTION_FIELDS != Connection._fields or _jsonrows.SMTP_FIELDS != SmtpDialogue._fields:
        return None
    if os.environ.get("DSRDIAG_TRACKER", "c") == "python":
        return None
    return _jsonrows.connection


def _ts(ns):
    return None if ns is None else format_ts(ns)


def _epoch(ns):
    """Epoch seconds, the nearest double to the ISO time's decimal (ns / 1e9 is not, one time in four)."""
    return None if ns is None else float(f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}")


def _backend(b):
    return None if b is None else {"name": b.name, "ip": b.ip, "mac": b.mac, "source": b.source}


def _conn(c, b):
    s = c.smtp
    return {
        "uid": c.uid,
        "vantage": c.vantage,
        "capture": c.capture,
        "ts": _ts(c.first_ts_ns),
        "ts_epoch": _epoch(c.first_ts_ns),
        "duration": round((c.last_ts_ns - c.first_ts_ns) / 1e9, 6),
        "ip_version": c.ip_version,
        "client": {
            "ip": c.client_ip, "port": c.client_port,
            "mac": c.orig_l2[0][0] if c.orig_l2 else None,
            "packets": c.orig_pkts, "bytes": c.orig_bytes, "ttl": c.orig_ttl,
        },
        "server": {
            "ip": c.server_ip, "port": c.server_port,
            "mac": c.resp_l2[0][0] if c.resp_l2 else None,
            "packets": c.resp_pkts, "bytes": c.resp_bytes, "ttl": c.resp_ttl,
        },
        "l2_path": {
            "client_to_server": [{"src": s_, "dst": d} for s_, d in c.orig_l2],
            "server_to_client": [{"src": s_, "dst": d} for s_, d in c.resp_l2],
            "forwarded_copies": c.orig_forwarded,
        },
        "history": c.history,
        "conn_state": c.conn_state,
        "tunneled_from": c.tunneled_from,
        "missed_bytes": c.missed_bytes,
        "display_filter": conn_filter(c.client_ip, c.client_port, c.server_ip, c.server_port),
        "backend": _backend(b),
        "smtp": None if s is None else {
            "banner_code": s.banner_code,
            "banner": s.banner_text,
            "banner_host": s.banner_host,
            "banner_frame": s.banner_frame,
            "syn_to_banner_ms": round((s.banner_ts_ns - c.first_ts_ns) / 1e6, 3) if s.banner_ts_ns and c.saw_syn else None,
            "helo": s.helo,
            "reply_codes": list(s.reply_codes),
            "starttls_offered": s.starttls_offered,
            "starttls_started": s.starttls_started,
            "xclient": s.xclient,
            "proxy_protocol": None if s.proxy is None else {
                "version": s.proxy.version, "client_ip": s.proxy.client_ip, "client_port": s.proxy.client_port,
            },
        },
    }


connection_dict = _conn
"""One connection as the document lists it (for presenters that pick a few)."""


def _evidence(e, offsets=None) -> dict:
    if isinstance(e, HostRef):
        return {"source": e.source, "line": e.line or None, "text": e.text}
    d = {"capture": e.capture, "vantage": e.vantage, "frame": e.frame, "time": e.iso_time,
         "epoch": _epoch(e.ts_ns), "what": e.what, "display_filter": frames_filter((e.frame,))}
    o = (offsets or {}).get(e.vantage)
    if o is not None:  # this capture's clock, set against the reference capture's
        ns = e.ts_ns - round(o.offset_s * 1e9)
        d["corrected"] = {"time": format_ts(ns), "epoch": _epoch(ns), "uncertainty_s": o.uncertainty_s}
    return d


def _records(view):
    """The connection records alone, without the back-end lookup the view does per record (a tenth
    of the cost of a pass): the per-capture record lists when the view has them (jobs/analyze.py
    ConnectionsView.records), else the (record, back-end) pairs. The one place this module reads
    the view's storage."""
    per_capture = getattr(view, "records", None)
    if per_capture is None:
        for c, _ in view:
            yield c
        return
    for rec in per_capture:
        yield from rec.connections


def connection_filters(r: Report) -> dict[str, tuple[str, str, str]]:
    """uid -> (capture, vantage, conversation filter) for every connection a finding names.

    Why a lookup of its own: a finding names its connections by uid; their 4-tuples are in the
    connection records, which may be many and stored on disk. One pass over the records, only
    when some finding names connections, and it stops as soon as every named uid is found."""
    wanted = {u for f in r.findings for u in f.connections}
    found: dict[str, tuple[str, str, str]] = {}
    if not wanted:
        return found
    for c in _records(r.connections):
        if c.uid in wanted and c.uid not in found:
            found[c.uid] = (c.capture, c.vantage, conn_filter(c.client_ip, c.client_port, c.server_ip, c.server_port))
            if len(found) == len(wanted):
                break
    return found


def _finding(f, offsets, conns=None) -> dict:
    e = entry(f.kind)
    conns = conns or {}
    return {
        "id": f.id,
        "kind": f.kind,
        "severity": f.severity,
        "title": e.title,
        "vantages": list(f.vantages),
        "between": {"from": f.between[0], "to": f.between[1]} if f.between else None,
        "backend": _backend(f.backend),
        "subject": f.subject or None,
        "summary": f.summary,
        "explained_by": f.explained_by,
        "consequences": list(f.consequences),
        "connections": list(f.connections),
        "evidence": [_evidence(x, offsets) for x in f.evidence],
        "display_filter": [{"capture": c, "vantage": v, "display_filter": flt} for c, v, flt in per_capture(f.evidence)],
        "connection_filters": [{"uid": u, "capture": conns[u][0], "vantage": conns[u][1], "display_filter": conns[u][2]}
                               for u in f.connections if u in conns],
        "explanation": e.explanation,
        "fix": {"windows": e.windows, "linux": e.linux, "load_balancer": e.load_balancer or None},
    }


def _verdict(r: Report) -> dict:
    v = r.verdict
    return {
        "state": v.state, "causes": list(v.causes), "text": v.text,
        "errors": v.errors, "warnings": v.warnings, "infos": v.infos,
        "connections": v.connections, "completed": v.completed, "failed": v.failed,
        "hints": list(v.hints),
    }


def _host(h) -> dict | None:
    if h is None:
        return None
    return {"os": h.os, "hostname": h.hostname, "sources": list(h.sources), "interfaces": list(h.interfaces),
            "default_routes": list(h.default_routes), "listeners": list(h.listeners), "cannot_show": list(h.cannot_show)}


def _failure(x) -> dict:
    """A back-end's failures as data: what caused them (a finding kind, `lost_on_path` or
    `conn_state`), where, and how many connections."""
    return {"kind": x.kind, "conn_state": x.conn_state, "vantage": x.vantage, "text": x.text, "connections": x.connections}


def to_dict(r: Report, connections: bool = True) -> dict:
    t = r.topology
    offsets = r.correlation.offsets if r.correlation is not None else {}
    conns = connection_filters(r)
    doc = {
        "version": r.version,
        "tool": {"name": "dsrdiag", "version": __version__},
        "verdict": _verdict(r),
        "captures": [
            {
                "path": c.path, "vantage": c.vantage, "packets": c.frames, "analysed_packets": c.analysed,
                "link_types": [{"linktype": lt, "name": linktype_name(lt)} for lt in c.linktypes],
                "reader": c.reader, "first_ts": _ts(c.first_ts_ns), "last_ts": _ts(c.last_ts_ns),
                "first_ts_epoch": _epoch(c.first_ts_ns), "last_ts_epoch": _epoch(c.last_ts_ns),
                "damage": c.damage,
                "anomalies": [{"name": k, "count": v, "first_frame": c.anomaly_frames.get(k)} for k, v in sorted(c.anomalies.items())],
                "cannot_show": list(c.limits),
                "connections": c.connections,
            }
            for c in r.captures
        ],
        "topology": {
            "vips": [{"ip": v.ip, "ports": list(v.ports), "source": v.source} for v in t.vips],
            "ports": list(t.ports),
            "load_balancer": {
                "macs": [{"mac": m, "source": s} for m, s in t.lb_macs],
                "ips": [{"ip": i, "source": s} for i, s in t.lb_ips],
            },
            "backends": [{"name": b.name, "ip": b.ip, "mac": b.mac, "source": b.source} for b in t.backends],
            "notes": list(t.notes),
        },
        "backends": [
            {
                "backend": _backend(row.backend), "connections": row.connections, "completed": row.completed,
                "failed": row.failed, "banner_hosts": list(row.banner_hosts), "median_syn_to_banner_ms": row.median_banner_ms,
                "failures": [_failure(x) for x in row.failures],
            }
            for row in r.backends
        ],
        "connections": [_conn(c, b) for c, b in r.connections] if connections else [],
        "findings": [_finding(f, offsets, conns) for f in r.findings],
    }
    if r.host is not None:
        doc["host"] = _host(r.host)
    if r.correlation is not None:
        c = r.correlation
        doc["correlation"] = {
            "reference": c.reference,
            "clock_offsets": [{"vantage": v, "offset_s": o.offset_s, "uncertainty_s": o.uncertainty_s,
                               "matched_packets": o.matched, "basis": o.basis, "via": list(o.via)}
                              for v, o in sorted(c.offsets.items())],
            "flows": [{
                "client": f.client, "server_port": f.server_port, "vantages": list(f.vantages),
                "mode": f.mode, "linked": f.linked, "matched_by": list(f.matched_by), "leg": f.leg, "died": f.died,
                "connections": list(f.uids),
                "packets": [{"direction": "client_to_server" if p.direction == ">" else "server_to_client",
                             "flags": flag_letters(p.flags), "seq": p.seq, "ack": p.ack, "payload_len": p.payload_len,
                             "last_seen": p.last_seen, "lost_before": p.lost_before,
                             "text": p.text,
                             "hops": [{"vantage": h.vantage, "frame": h.frame, "time": format_ts(h.ts_ns), "epoch": _epoch(h.ts_ns),
                                       "src_mac": h.src_mac, "dst_mac": h.dst_mac, "ip_id": h.ip_id} for h in p.hops]}
                            for p in f.packets],
            } for f in c.flows],
        }
    if r.probe is not None:
        p = r.probe
        doc["probe"] = {
            "vip": p.vip, "port": p.port, "iface": p.iface, "source": p.source, "on_link": p.on_link, "mode": p.mode,
            "sessions": list(p.sessions), "backends": list(p.backends),
            "arp_answers": None if p.arp_answers is None else list(p.arp_answers),
            "skipped": list(p.skipped), "pcap": p.pcap,
        }
    return doc


def render(r: Report, pretty: bool = False) -> str:
    """The whole document as one string (indented for a human at a terminal)."""
    if pretty:
        return json_text(json.dumps(to_dict(r), indent=2, ensure_ascii=False)) + "\n"
    return json_text(json.dumps(to_dict(r), ensure_ascii=False, separators=(",", ":"))) + "\n"


def _encode(d: dict) -> bytes:
    if orjson is not None:
        try:
            return json_bytes(orjson.dumps(d))
        except TypeError:  # orjson.JSONEncodeError: a lone surrogate (an undecodable file name)
            pass
    return json_text(_SLOW(d)).encode("utf-8")  # valid UTF-8: core/safetext.py


_SLOW = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _num(x: float) -> bytes:
    """A float as _encode writes it (orjson's shortest form; the stdlib's repr without orjson)."""
    return orjson.dumps(x) if orjson is not None else _SLOW(x).encode()


def _str(x: str) -> bytes:
    """A JSON string as _encode writes it."""
    return orjson.dumps(x) if orjson is not None else _SLOW(x).encode("utf-8", "surrogateescape")


LONE_PIECE = 256
"""Lone-SYN rows whose items are made at once (lone_pieces): ~190 KB of JSON, a piece that malloc
hands out again from memory already touched, and that the caches hold while it is written. A
block's items at once (16k rows: 12 MB) were fresh pages each time, faulted in and cleared by the
kernel, then given back: writing 100k lone SYNs took 47 ms (9000 page faults), in pieces 23 ms (none)."""


def lone_items(block, backend_of) -> bytes:
    """The list items of a block of lone SYNs (track/lone.py), comma-separated: the bytes
    `_encode(_conn(c, backend_of(c)))` gives for each of its records, made from the rows without the
    records (a SYN flood's list is millions of them). What is the same for every row of a group (its
    server, L2 path, TTL, back-end) is encoded once per group, a client's address once per pair
    (lone.Digest); a row adds its numbers. _jsonrows.items is the C peer of the loop below.
    The pieces of lone_pieces, joined."""
    return b"".join(lone_pieces(block, backend_of))


def lone_pieces(block, backend_of):
    """lone_items' bytes in pieces of LONE_PIECE rows (the last may be shorter), each after a comma
    but the first: concatenated, they are lone_items (ConnectionItems.add_rows writes them as they come)."""
    n = len(block)
    try:
        vantage = _str(block.vantage)[:-1]  # without its closing quote: the uid goes on from there
        capture = _str(block.capture)
    except (TypeError, UnicodeEncodeError):  # a name orjson refuses (lone surrogates): per record
        for a in range(0, n, LONE_PIECE):
            yield (b"," if a else b"") + b",".join(_encode(_conn(c, backend_of(c))) for c in block.slice(a, a + LONE_PIECE))
        return
    d = block.digest()  # groups only, unless the Python loop runs (lone.LazyDigest)
    head = (b'{"uid":' + vantage + b":C", b'","vantage":' + vantage + b'","capture":' + capture + b',"ts":"')
    templates = [_template(block, d, g, backend_of) for g in range(len(d.groups))]
    # a row adds only numbers and addresses (ASCII) to these pieces: when json_bytes leaves every
    # piece as it is, it leaves the items as they are (it escapes character by character), and the
    # scans of a flood's hundreds of megabytes for bytes that cannot be there are skipped
    clean = all(json_bytes(x) is x for x in head) and all(json_bytes(x) is x for t in templates for x in t)
    native = _jsonrows is not None and orjson is not None and os.environ.get("DSRDIAG_TRACKER", "c") != "python"
    # DSRDIAG_TRACKER=python: the reference all the way (the tests' tracker fixture)
    # each row's client address written from the row: no pair table (items_text, its text is pair_ips');
    # an extension built before items_text: items() with the digest's texts, the same bytes; one built
    # before row ranges: the block in one piece
    items_text = getattr(_jsonrows, "items_text", None) if native else None
    ranged = native and getattr(_jsonrows, "ITEM_RANGES", 0)
    step = LONE_PIECE if ranged else max(n, 1)
    ips = None
    for a in range(0, n, step):
        b = min(a + step, n)
        span = (a, b) if ranged else ()
        out = None
        if native:
            out = (items_text(block.data, head, templates, d.row_group, *span) if items_text is not None
                   else _jsonrows.items(block.data, head, templates, d.pair_ips, d.row_group, d.row_pair, *span))
        if out is None:  # a row the C writer does not format as orjson would (see there), or no C writer
            if ips is None:
                ips = [x.encode() for x in d.pair_ips]
            out = (b"," if a else b"") + b",".join(_lone_items_py(block, head, templates, ips, d, a, b))
        yield out if clean else json_bytes(out)


def _template(block, d, g: int, backend_of) -> tuple[bytes, ...]:
    """The six pieces of a group's items between a row's own values (ip, port, ttl, ip, port)."""
    c = block.connection(block.row(d.group_first[g]))
    src, dst = c.orig_l2[0]
    sip = c.server_ip.encode()
    sport = str(c.server_port).encode()
    return (
        b',"ip_version":' + (b"4" if c.ip_version == 4 else b"6") + b',"client":{"ip":"',
        b'","port":',
        b',"mac":' + _str_or_null(src) + b',"packets":1,"bytes":0,"ttl":',
        b'},"server":{"ip":"' + sip + b'","port":' + sport + b',"mac":null,"packets":0,"bytes":0,"ttl":null},'
        b'"l2_path":{"client_to_server":[{"src":' + _str_or_null(src) + b',"dst":' + _str_or_null(dst)
        + b'}],"server_to_client":[],"forwarded_copies":0},"history":"S","conn_state":"S0","tunneled_from":null,'
        b'"missed_bytes":0,"display_filter":"' + (b"ipv6.addr==" if ":" in c.client_ip else b"ip.addr=="),
        b" && tcp.port==",
        b" && " + (b"ipv6.addr==" if ":" in c.server_ip else b"ip.addr==") + sip + b" && tcp.port==" + sport
        + b'","backend":' + _encode(_backend(backend_of(c))) + b',"smtp":null}',
    )


def _lone_items_py(block, head, templates, ips, d, start: int = 0, stop: int | None = None) -> list[bytes]:
    """The items of rows start..stop-1 of the block (all of them by default)."""
    out = []
    append = out.append
    last_sec = None
    h0, h1 = head
    row_group, row_pair = d.row_group, d.row_pair
    rows = block.rows() if (start, stop) == (0, None) else block.slice(start, len(block) if stop is None else stop).rows()
    for i, t in enumerate(rows, start):
        num, first, last, cport, ttl = t[0], t[2], t[3], t[7], t[14]
        p0, p1, p2, p3, p4, p5 = templates[row_group[i]]
        ip = ips[row_pair[i]]
        sec, ns = divmod(first, 1_000_000_000)
        if sec != last_sec:
            last_sec = sec
            base = format_ts(sec * 1_000_000_000)[:-7].encode()  # "YYYY-mm-ddTHH:MM:SS."
        frac = b"%09d" % ns
        if frac.endswith(b"000"):
            frac = frac[:6]
        dur = last - first
        p = str(cport).encode()
        append(h0 + str(num).encode() + h1 + base + frac + b'Z","ts_epoch":' + _num(_epoch(first)) + b',"duration":'
               + (b"0.0" if dur == 0 else _num(round(dur / 1e9, 6))) + p0 + ip + p1 + p + p2 + str(ttl).encode()
               + p3 + ip + p4 + p + p5)
    return out


def _str_or_null(x) -> bytes:
    return b"null" if x is None else _str(x)


class ConnectionItems:
    """The connection list's items as bytes, comma-separated, written as they come (add).

    Why a class of its own: write() streams the list through it, an item at a time, as the record
    stores give the connections: nothing of the list is held whole."""

    def __init__(self, emit):
        self.emit = emit
        self.first = True
        self.writer = _record_writer()
        self.many = None if self.writer is None else getattr(_jsonrows, "connections", None)
        self.keyed = None if self.writer is None else getattr(_jsonrows, "connections_by", None)
        self.backends: dict[int, tuple] = {}  # id(back-end) -> (it, orjson's bytes of its item or None)

    def _backend_item(self, b) -> bytes | None:
        """The back-end's item, encoded once per back-end object (records share a few)."""
        hit = self.backends.get(id(b))
        if hit is None or hit[0] is not b:
            try:
                item = orjson.dumps(_backend(b))
            except TypeError:  # a name orjson refuses (lone surrogates): such records take the Python path
                item = None
            if len(self.backends) >= 4096:  # bounded, whatever the back-end lookup hands out
                self.backends.clear()
            hit = self.backends[id(b)] = (b, item)
        return hit[1]

    def add_rows(self, block, backend_of) -> None:
        """A block of lone SYNs (track/lone.py), as add() of each of its records would: its items in
        pieces (lone_pieces), each written as it is made."""
        if not block:
            return
        if self.first:
            self.first = False
        else:
            self.emit(b",")  # apart: a piece is a few hundred KB, not copied to add one byte
        for piece in lone_pieces(block, backend_of):
            self.emit(piece)

    def add_many(self, recs: list, backends: list) -> None:
        """add() of each pair, in one call to the C writer (_jsonrows.connections) when it takes them
        all; where it declines one (a record the Python path writes), one at a time."""
        many = self.many
        if many is not None:
            items = [self._backend_item(b) for b in backends]
            if None not in items:
                data = many(recs, items)
                if data is not None:
                    self._put(json_bytes(data))  # equal to each item's json_bytes, joined (they split at ASCII)
                    return
        for c, b in zip(recs, backends):
            self.add(c, b)

    def add_chunk(self, recs, backend_of) -> None:
        """add(c, backend_of(c)) of each record of a run (a list or tuple), RUN_ITEMS at a time in
        one call to the C writer (_jsonrows.connections_by), which asks for a back-end's item only
        once per distinct back-end key (what backend_of reads) in the call; where it declines (a
        record, or a back-end's item, that only the Python path writes), one record at a time."""
        keyed = self.keyed
        item = self._backend_item

        def item_of(c):
            return item(backend_of(c))
        for i in range(0, len(recs), RUN_ITEMS):  # a run may be the part in memory: its items in bounded pieces
            part = recs if len(recs) <= RUN_ITEMS else recs[i:i + RUN_ITEMS]
            data = None if keyed is None else keyed(part, item_of)
            if data is not None:
                self._put(json_bytes(data))
                continue
            for c in part:
                self.add(c, backend_of(c))

    def add(self, c, b) -> None:
        data = None
        if self.writer is not None:
            item = self._backend_item(b)
            if item is not None:
                data = self.writer(c, item)  # None: a record the C writer leaves to Python (see there)
        self._put(_encode(_conn(c, b)) if data is None else json_bytes(data))

    def _put(self, data: bytes) -> None:
        """One item or a comma-joined run of items, after a comma unless it is the list's first."""
        if self.first:
            self.first = False
        else:
            self.emit(b",")  # apart: a run's items are a few hundred KB, not copied to add one byte
        self.emit(data)

ITEMS_BATCH = 256
"""Records written by one call of the C writer (ConnectionItems.add_many): ~280 KiB of JSON."""
RUN_ITEMS = 1024
"""Records of a run written by one call of connections_by (ConnectionItems.add_chunk): ~1.1 MiB of
JSON at most, whatever a run holds (the store's part in memory is one run of up to SPILL_AT)."""


def write(r: Report, out, pretty: bool = False) -> None:
    """Write the document to `out`, the connections one at a time (compact, in C), read in record
    order from each capture's record store.

    Why: the connection list is the conn.log of a day of mail; building it whole would make memory
    grow with the file. Everything else in the document is small. orjson writes the same bytes as
    json.dumps(ensure_ascii=False, separators=(",", ":")) (tests/test_samples.py checks it);
    json.dumps remains for what orjson refuses (a file name with undecodable bytes)."""
    if pretty:
        out.write(render(r, pretty=True))
        return
    head = json_text(json.dumps(to_dict(r, connections=False), ensure_ascii=False, separators=(",", ":")))
    cut = head.index('"connections":[]') + len('"connections":[')
    out.write(head[:cut])
    buf = getattr(out, "buffer", None)
    if buf is not None:
        out.flush()  # text written so far goes first; the connections go to the byte stream below
        emit = buf.write
    else:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")

        def emit(data: bytes) -> None:
            out.write(decoder.decode(data))
    items = ConnectionItems(emit)
    chunks = getattr(r.connections, "chunks", None)
    if chunks is not None:  # streamed from each capture's record store, a run of records at a time
        for run, backend_of in chunks():
            if type(run) is Block:  # lone SYNs (track/lone.py)
                items.add_rows(run, backend_of)
            else:
                items.add_chunk(run, backend_of)
    else:
        recs: list = []
        backends: list = []
        for c, b in r.connections:
            recs.append(c)
            backends.append(b)
            if len(recs) == ITEMS_BATCH:
                items.add_many(recs, backends)
                recs, backends = [], []
        if recs:
            items.add_many(recs, backends)
    if buf is not None:
        buf.flush()
    out.write(head[cut:])
    out.write("\n")
