"""A tiny markdown subset -> HTML, for the catalogue's fix texts and explanations.

Why a subset of our own and not a markdown library: the texts are ours (findings/catalog.py) and
use only three things: `code` in backticks, paragraphs (a blank line between them) and lists
(lines starting with `- `, `* ` or `1. `). Everything else is text, escaped, so that even if a
text one day quotes a packet's bytes nothing in it can become markup: no HTML passes through,
no links, no emphasis. A lone backtick (an odd one out) stays a literal backtick.
"""

from __future__ import annotations

import html
import re

_BULLET = re.compile(r"^\s*[-*]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d{1,3}[.)]\s+(.*)$")


def _e(s: str) -> str:
    return html.escape(s, quote=True)


def inline(text: str) -> str:
    """Backtick spans become `<code>`; everything else is escaped text."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unmatched backtick: the last one is a literal
        parts[-2:] = [parts[-2] + "`" + parts[-1]]
    out = []
    for i, p in enumerate(parts):
        if i % 2:
            out.append(f"<code>{_e(p)}</code>" if p else "``")
        else:
            out.append(_e(p))
    return "".join(out)


def to_html(text: str | None) -> str:
    """Paragraphs, bullet and numbered lists, inline code; nothing else is markup."""
    if not text:
        return ""
    blocks = re.split(r"\n[ \t]*\n", text.strip())
    out: list[str] = []
    for block in blocks:
        para: list[str] = []
        items: list[str] = []
        kind = ""

        def flush_para() -> None:
            if para:
                out.append("<p>" + inline(" ".join(s.strip() for s in para)) + "</p>")
                para.clear()

        def flush_list() -> None:
            nonlocal kind
            if items:
                out.append(f"<{kind}>" + "".join(f"<li>{inline(i)}</li>" for i in items) + f"</{kind}>")
                items.clear()
            kind = ""

        for line in block.split("\n"):
            m, tag = _BULLET.match(line), "ul"
            if m is None:
                m, tag = _NUMBERED.match(line), "ol"
            if m is not None:
                flush_para()
                if kind and kind != tag:
                    flush_list()
                kind = tag
                items.append(m.group(1).strip())
            elif items and line.startswith((" ", "\t")) and line.strip():  # a list item's continuation
                items[-1] += " " + line.strip()
            else:
                flush_list()
                if line.strip():
                    para.append(line)
        flush_para()
        flush_list()
    return "".join(out)
