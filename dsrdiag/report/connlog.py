"""Connection records -> a Zeek conn.log (TSV, as Zeek's ASCII writer) or Zeek's JSON log form.

Why: dsrdiag's connection records are Zeek's conn.log in all but format (the same orientation,
history letters and conn_state); written in Zeek's own format they go where conn.logs go:
`zeek-cut`, a SIEM's Zeek parser, or a `diff` against the conn.log `zeek -r` writes for the same
capture. docs/connlog.md says every column and where a value differs from Zeek's.

The columns: Zeek's conn.log fields in Zeek's order with Zeek's types (Zeek 6/7, as the baselines
of Zeek's own test suite have them, ip_proto last), then the two of Zeek's mac-logging policy
(orig_l2_addr, resp_l2_addr), then dsrdiag's own (vantage, capture, back-end ...). One file for
every capture, a `vantage` column to tell them apart: a connection seen at six vantages is one
flow, and one file keeps each of its records a grep away from the others (`uid` carries the
vantage too). Rows come in the order the records come (capture by capture), as they are
streamed: nothing is held.

A value Zeek would know and dsrdiag does not record is unset (`-`, left out of JSON), never
guessed: orig_ip_bytes/resp_ip_bytes (the tracker counts payload, not IP bytes), local_orig/
local_resp (no Site::local_nets), tunnel_parents (Zeek's tunnel uid; the encapsulator's
address is in `tunneled_from`).

Coupling: `write` takes an iterable of records and a back-end lookup, nothing of the report, so
the caller alone decides where the records come from.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable

from dsrdiag.report.wireshark import conn_filter

SEPARATOR = "\t"
SET_SEPARATOR = ","
EMPTY = "(empty)"
UNSET = "-"

ZEEK_FIELDS: tuple[tuple[str, str], ...] = (
    ("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"), ("id.resp_h", "addr"),
    ("id.resp_p", "port"), ("proto", "enum"), ("service", "string"), ("duration", "interval"),
    ("orig_bytes", "count"), ("resp_bytes", "count"), ("conn_state", "string"), ("local_orig", "bool"),
    ("local_resp", "bool"), ("missed_bytes", "count"), ("history", "string"), ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"), ("resp_pkts", "count"), ("resp_ip_bytes", "count"),
    ("tunnel_parents", "set[string]"), ("ip_proto", "count"),
)
"""Zeek's conn.log, in Zeek's order (`service` is a string: Zeek joins the connection's set of
recognised protocols with commas, `smtp,ssl`)."""

MAC_FIELDS: tuple[tuple[str, str], ...] = (("orig_l2_addr", "string"), ("resp_l2_addr", "string"))
"""Zeek's policy/protocols/conn/mac-logging: each side's source MAC (the first one seen)."""

OWN_FIELDS: tuple[tuple[str, str], ...] = (
    ("vantage", "string"), ("capture", "string"), ("ip_version", "count"), ("backend", "string"),
    ("backend_ip", "addr"), ("backend_mac", "string"), ("orig_forwarded", "count"), ("resp_forwarded", "count"),
    ("orig_ttl", "count"), ("resp_ttl", "count"), ("tunneled_from", "addr"), ("smtp_banner_host", "string"),
    ("display_filter", "string"),
)
"""dsrdiag's own, after Zeek's: a reader that knows only Zeek's columns ignores them."""

FIELDS = ZEEK_FIELDS + MAC_FIELDS + OWN_FIELDS
TYPES = dict(FIELDS)
SETS = {n for n, t in FIELDS if t.startswith("set[")}


def _service(c) -> str | None:
    """Zeek's service set: `smtp` when the SMTP dialogue was seen (a reply code: Zeek's analyzer
    confirms on the server's greeting and the client's command), `ssl` beside it once STARTTLS was
    accepted; unset when no protocol was recognised."""
    s = c.smtp
    if s is None or s.banner_code is None:
        return None
    return "smtp,ssl" if s.starttls_started else "smtp"


def _us(ns: int) -> tuple[int, int]:
    """Whole seconds and microseconds, rounded to the nearest microsecond (Zeek's 6 decimals)."""
    sec, us = divmod((ns + 500) // 1000, 1_000_000)
    return sec, us


def row(c, b) -> dict:
    """One connection as conn.log values, by field name (None: unset). Types are Python's: ints,
    strings, bools, lists for sets; `ts` and `duration` as (seconds, microseconds)."""
    span = c.last_ts_ns - c.first_ts_ns
    has_span = span > 0  # Zeek sets duration and the byte counts only for a connection that lasted
    return {
        "ts": _us(c.first_ts_ns), "uid": c.uid, "id.orig_h": c.client_ip, "id.orig_p": c.client_port,
        "id.resp_h": c.server_ip, "id.resp_p": c.server_port, "proto": "tcp", "service": _service(c),
        "duration": _us(span) if has_span else None,
        "orig_bytes": c.orig_bytes if has_span else None, "resp_bytes": c.resp_bytes if has_span else None,
        "conn_state": c.conn_state, "local_orig": None, "local_resp": None, "missed_bytes": c.missed_bytes,
        "history": c.history, "orig_pkts": c.orig_pkts, "orig_ip_bytes": None, "resp_pkts": c.resp_pkts,
        "resp_ip_bytes": None, "tunnel_parents": None, "ip_proto": 6,
        "orig_l2_addr": c.orig_l2[0][0] if c.orig_l2 else None,
        "resp_l2_addr": c.resp_l2[0][0] if c.resp_l2 else None,
        "vantage": c.vantage, "capture": c.capture, "ip_version": c.ip_version,
        "backend": None if b is None else b.name, "backend_ip": None if b is None else b.ip,
        "backend_mac": None if b is None else b.mac,
        "orig_forwarded": c.orig_forwarded, "resp_forwarded": c.resp_forwarded,
        "orig_ttl": c.orig_ttl, "resp_ttl": c.resp_ttl, "tunneled_from": c.tunneled_from,
        "smtp_banner_host": None if c.smtp is None else c.smtp.banner_host,
        "display_filter": conn_filter(c.client_ip, c.client_port, c.server_ip, c.server_port),
    }


# ---- TSV ------------------------------------------------------------------------------------------

def _escape_char(ch: str, specials: str) -> str:
    o = ord(ch)
    if 0xDC80 <= o <= 0xDCFF:  # an undecodable byte of a file name (surrogateescape): that byte
        return f"\\x{o - 0xDC00:02x}"
    if ch == "\\" or ch in specials or o < 0x20 or o == 0x7F or 0x80 <= o < 0xA0:
        return "".join(f"\\x{x:02x}" for x in ch.encode("utf-8"))
    return ch


def escape(s: str, in_set: bool = False) -> str:
    """A string as Zeek's ASCII writer writes it: `(empty)` for an empty string; the separator,
    (in a set) the set separator, control bytes and the backslash as `\\xNN`; a value that would
    read as the unset or empty marker has its first character escaped (`\\x2d`)."""
    if s == "":
        return EMPTY
    if s == UNSET or s == EMPTY:
        return f"\\x{ord(s[0]):02x}" + s[1:]
    specials = SEPARATOR + (SET_SEPARATOR if in_set else "")
    if s.isprintable() and "\\" not in s and not any(ch in specials for ch in s):
        return s
    return "".join(_escape_char(ch, specials) for ch in s)


def _tsv_value(name: str, v) -> str:
    if v is None:
        return UNSET
    if name in ("ts", "duration"):
        return f"{v[0]}.{v[1]:06d}"
    if name in SETS:
        return SET_SEPARATOR.join(escape(x, in_set=True) for x in v) if v else EMPTY
    if isinstance(v, bool):
        return "T" if v else "F"
    if isinstance(v, int):
        return str(v)
    return escape(v)


def _stamp(t: float) -> str:
    return time.strftime("%Y-%m-%d-%H-%M-%S", time.gmtime(t))


def header(opened: float) -> str:
    names = [n for n, _ in FIELDS]
    return "".join((
        "#separator \\x09\n", f"#set_separator{SEPARATOR}{SET_SEPARATOR}\n", f"#empty_field{SEPARATOR}{EMPTY}\n",
        f"#unset_field{SEPARATOR}{UNSET}\n", f"#path{SEPARATOR}conn\n", f"#open{SEPARATOR}{_stamp(opened)}\n",
        "#fields" + SEPARATOR + SEPARATOR.join(names) + "\n",
        "#types" + SEPARATOR + SEPARATOR.join(TYPES[n] for n in names) + "\n",
    ))


def tsv_line(c, b) -> str:
    r = row(c, b)
    return SEPARATOR.join(_tsv_value(n, r[n]) for n, _ in FIELDS) + "\n"


# ---- JSON -----------------------------------------------------------------------------------------

def json_object(c, b) -> dict:
    """Zeek's JSON log form (LogAscii::use_json): the same names, ts and intervals as numbers of
    seconds, ports and counts as numbers, sets as arrays; unset fields are left out."""
    out = {}
    for n, v in row(c, b).items():
        if v is None:
            continue
        if n in ("ts", "duration"):
            v = float(f"{v[0]}.{v[1]:06d}")
        out[n] = v
    return out


# ---- writing --------------------------------------------------------------------------------------

def _pairs(records: Iterable, backend_of: Callable | None):
    if backend_of is None:  # (record, back-end) pairs, as the report's connection list yields them
        yield from records
    else:
        for c in records:
            yield c, backend_of(c)


def write(out, records: Iterable, backend_of: Callable | None = None, form: str = "tsv",
          opened: float | None = None) -> int:
    """Write the records to the text stream `out` as a conn.log (`form` "tsv") or Zeek JSON lines
    ("json"); returns how many. `records`: Connection records, with `backend_of(record)` giving
    each one's back-end (BackendRef or None); or, with backend_of None, (record, back-end) pairs.
    One pass, one line at a time: memory does not grow with the records."""
    from dsrdiag.core.safetext import json_text

    n = 0
    if form == "tsv":
        out.write(header(time.time() if opened is None else opened))
        for c, b in _pairs(records, backend_of):
            out.write(tsv_line(c, b))
            n += 1
        out.write(f"#close{SEPARATOR}{_stamp(time.time())}\n")
    elif form == "json":
        dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
        for c, b in _pairs(records, backend_of):
            out.write(json_text(dumps(json_object(c, b))) + "\n")
            n += 1
    else:
        raise ValueError(f"conn.log form {form!r}: tsv or json")
    return n


def write_file(path: str, records: Iterable, backend_of: Callable | None = None, form: str = "tsv") -> int:
    """write() to a file (UTF-8; an undecodable byte of a file name written escaped)."""
    with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        return write(f, records, backend_of, form)
