"""One SMTP line -> a command (verb, argument) or a reply (code, continued, text).

Why separate from the follower: parsing a line is pure and testable; following a dialogue is state.
Text from packets is untrusted: it is decoded as latin-1 (never fails) and kept as data; the report
layer escapes it.
"""

from __future__ import annotations

MAX_LINE = 4096
"""RFC 5321 allows 512-octet command lines and 1000-octet text lines; anything much longer is not SMTP."""


def parse_reply(line: bytes):
    """`250-STARTTLS` -> (250, True, 'STARTTLS'); None if the line is not a reply."""
    if len(line) < 3 or not line[:3].isdigit():
        return None
    if len(line) > 3 and line[3:4] not in (b" ", b"-"):
        return None
    code = int(line[:3])
    if not 200 <= code <= 599:
        return None
    return code, line[3:4] == b"-", line[4:].decode("latin-1").strip()


def parse_command(line: bytes):
    """`EHLO client.example` -> ('EHLO', 'client.example'); verbs upper-cased."""
    text = line.decode("latin-1").strip()
    if not text:
        return None
    verb, _, arg = text.partition(" ")
    if not verb.isascii() or not verb.replace("-", "").isalpha() or len(verb) > 16:
        return None
    return verb.upper(), arg.strip()


def banner_host(text: str) -> str | None:
    """The host a 220 banner names (`mx1.example.org ESMTP Postfix` -> `mx1.example.org`)."""
    first = text.split(" ", 1)[0].strip()
    if not first or len(first) > 255 or not first.isprintable():
        return None
    return first
