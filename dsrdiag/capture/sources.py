"""`label=path` arguments -> (vantage, path) pairs; a bare path is named after its file.

Why: a post-mortem has captures from several places; each finding says which vantage it was seen
at. A folder expands to the capture files in it, sorted, so `dsrdiag analyze captures/` works.
`-` is standard input (vantage `stdin`, or `VANTAGE=-`), at most once: it can be read only once.
"""

from __future__ import annotations

import os
from pathlib import Path

from dsrdiag.capture.pcapfile import STDIN
from dsrdiag.core.errors import CaptureError, UsageError

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".pcap.gz", ".pcapng.gz", ".cap.gz", ".gz")


def vantage_of(path: str) -> str:
    if path == STDIN:
        return "stdin"
    name = Path(path).name
    for suf in (".gz", ".pcapng", ".pcap", ".cap", ".dmp"):
        if name.lower().endswith(suf):
            name = name[: -len(suf)]
    return name or path


def parse_sources(args: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for arg in args:
        label, sep, path = arg.partition("=")
        if not sep or not label or "/" in label or (arg != STDIN and os.path.exists(arg)):
            label, path = "", arg
        if path == STDIN:
            if any(p == STDIN for _, p in out):
                raise UsageError("- (standard input) is given twice: it can be read only once")
            out.append((label.strip() or vantage_of(path), path))
            continue
        p = Path(path)
        if os.path.isdir(path):  # os.path: False, not PermissionError, under a folder we cannot search
            try:
                names = sorted(p.iterdir())
            except OSError as e:
                raise CaptureError(f"{path}: folder cannot be read ({e.strerror or e})") from None
            files = [f for f in names if f.is_file() and f.name.lower().endswith(CAPTURE_SUFFIXES)]
            if not files:
                raise CaptureError(f"{path}: folder holds no .pcap, .pcapng or .gz capture")
            out += [(vantage_of(str(f)), str(f)) for f in files]
        else:
            out.append((label.strip() or vantage_of(path), path))
    if not out:
        raise UsageError("no capture given")
    seen: dict[str, int] = {}
    named = []
    for vantage, path in out:
        n = seen.get(vantage, 0) + 1
        seen[vantage] = n
        named.append((vantage if n == 1 else f"{vantage}-{n}", path))
    return named
