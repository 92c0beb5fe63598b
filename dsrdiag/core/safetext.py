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
- JSON (report/jsondoc.py): the JSON encoder escapes control characters itself (`\\u001b`) and
  that stays exactly as it is (JSON is data); `json_text()` on the encoded document only replaces
  what is not Unicode, the bytes of a file name that are not UTF-8, so the document is valid UTF-8.

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

_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]"
)
_UNSAFE_KEEP_LINES = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]"
)
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
    if _UNSAFE.search(s) is None:  # the common case: nothing to do
        return s
    return _UNSAFE.sub(_show, s)


def html_page(page: str) -> str:
    """A built HTML page with every unsafe character shown as an escape, its newlines and tabs
    kept (they are the page's own layout; a value's whitespace is only whitespace in HTML)."""
    if _UNSAFE_KEEP_LINES.search(page) is None:
        return page
    return _UNSAFE_KEEP_LINES.sub(_show, page)


_NOT_UNICODE = re.compile("[\ud800-\udfff]")


def json_text(doc: str) -> str:
    """An encoded JSON document (or part of one) made valid UTF-8: a lone surrogate can only be
    inside a JSON string, where it becomes the text `\\xNN` (escaped for JSON: `\\\\xNN`)."""
    if _NOT_UNICODE.search(doc) is None:
        return doc
    return _NOT_UNICODE.sub(lambda m: "\\" + _show(m), doc)
