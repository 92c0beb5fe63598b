"""Text from packets and file names, made safe for each output: one escape per output, at its boundary.

Why: banners, EHLO names, XCLIENT arguments, PROXY v1 fields, SMTP lines and file names are
chosen by whoever sent the packet or named the file. Printed raw, an escape sequence in them
retitles the admin's terminal window, moves the cursor up and erases the verdict line, or hides
the rest of the report (`ESC ] 0 ; pwned BEL`, `ESC [ 1 A`, `ESC [ 2 K`, `ESC [ 8 m`); a NUL or
an undecodable byte breaks the output's encoding (UnicodeEncodeError, or JSON that is not UTF-8).

The rule (where each output applies it):
- terminal (report/terminal.py, the CLI's error line): `terminal()` on every string handed to rich,
  packet text or not (the presenter builds all its Text through one helper). Rich markup is
  never parsed from data (Text objects, as before). Line breaks the presenter wants are added
  between escaped parts, so a newline inside a value (a file name) is shown as `\\n`, never a
  new report line.
- HTML (report/html.py): `html_page()` on the whole page once it is built, after `e()` escaped
  every value for HTML: it shows controls the same way; the page's own newlines stay.
- JSON (report/jsondoc.py): JSON is data, so its escapes are exact: the encoder escapes C0
  controls itself (`\\u001b`), and `json_text()` / `json_bytes()` on the encoded document escape
  the rest the same way (DEL, C1, format and bidi controls, line separators: `\\u009b`), so that
  `cat report.json` is as safe as the text report. What is not Unicode at all (the bytes of a file
  name that are not UTF-8) becomes the text `\\xNN`: the document is always valid UTF-8.

What is escaped, and how it is shown: C0 controls and DEL as `\\t`, `\\n`, `\\r` or `\\xNN`; C1
controls (U+0080..U+009F, what latin-1 decoding makes of bytes 0x80..0x9F) as `\\xNN`; a byte a
file name could not decode (Python's surrogateescape, U+DC80..U+DCFF) as `\\xNN` of that byte;
other lone surrogates, Unicode format and bidirectional controls (U+200B..U+200F, U+202A..U+202E,
U+2060..U+206F, U+FEFF, ...: "Trojan Source" reordering) and the line/paragraph separators
as `\\uXXXX`. A backslash already in the text is left alone: the escapes are for reading, and
the JSON document (json.loads) keeps the exact text of packets.
"""

from __future__ import annotations

import re

_UNSAFE = "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]"
_UNSAFE_KEEP_LINES = "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]"
_COMPILED: dict[str, re.Pattern] = {}


def _pattern(p: str) -> re.Pattern:
    """`p` compiled at its first use: each output needs one of these patterns (a JSON report never
    the terminal's nor the page's), and compiling them all cost every start ~1 ms."""
    got = _COMPILED.get(p)
    if got is None:
        got = _COMPILED[p] = re.compile(p)
    return got


_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _show(m: re.Match) -> str:
    ch = m.group()
    named = _NAMED.get(ch)
    if named is not None:
        return named
    o = ord(ch)
    if o <= 0x9F:
        return f"\\x{o:02x}"
    if 0xDC80 <= o <= 0xDCFF:  # a byte surrogateescape kept from an undecodable file name
        return f"\\x{o - 0xDC00:02x}"
    return f"\\u{o:04x}"


def terminal(s) -> str:
    """`s` with every control, format and undecodable character shown as an escape (one line)."""
    s = "" if s is None else str(s)
    unsafe = _pattern(_UNSAFE)
    if unsafe.search(s) is None:  # the common case: nothing to do
        return s
    return unsafe.sub(_show, s)


def html_page(page: str) -> str:
    """A built HTML page with every unsafe character shown as an escape, its newlines and tabs
    kept (they are the page's own layout; a value's whitespace is only whitespace in HTML)."""
    unsafe = _pattern(_UNSAFE_KEEP_LINES)
    if unsafe.search(page) is None:
        return page
    return unsafe.sub(_show, page)


_JSON_UNSAFE = "[\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]"


def _json_escape(m: re.Match) -> str:
    o = ord(m.group())
    if 0xD800 <= o <= 0xDFFF:  # not Unicode: shown as text, \\xNN (a backslash escaped for JSON)
        return "\\" + _show(m)
    return f"\\u{o:04x}"  # an exact JSON escape: json.loads gives the character back


def json_text(doc: str) -> str:
    """An encoded JSON document (or part of one) with every unsafe character escaped. They can
    only be inside JSON strings (the document's own syntax is ASCII), where the escapes belong."""
    unsafe = _pattern(_JSON_UNSAFE)
    if unsafe.search(doc) is None:
        return doc
    return unsafe.sub(_json_escape, doc)


def json_bytes(doc: bytes) -> bytes:
    """json_text for a UTF-8 encoded document (orjson's): the bytes every unsafe character starts
    with are looked for first (memchr-fast), so plain ASCII items cost almost nothing."""
    if b"\x7f" not in doc and b"\xc2" not in doc and b"\xe2" not in doc and b"\xef" not in doc \
            and b"\xd8" not in doc and b"\xe1" not in doc:
        return doc
    return json_text(doc.decode("utf-8", "surrogateescape")).encode("utf-8")
