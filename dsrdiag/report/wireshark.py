"""Wireshark display filters for what a report cites: frames, and connections.

Why: every investigation ends in Wireshark or tshark. A finding that cites frames 36, 38 and 39
of a capture is worth most when the admin can paste one filter and see exactly those frames;
a connection is worth most as Wireshark's own conversation filter. The filters are made here,
once, from frame numbers and addresses, and every presenter (text, JSON, HTML, `--tshark`) uses
these functions, so they are the same everywhere.

Syntax: Wireshark 4.0 and later (set members separated by commas, ranges as `a..b`; 4.0 no
longer accepts the space-separated sets of 3.x). Frame numbers are Wireshark's own (1-based,
every frame of the file), so the filter selects the same frames in Wireshark, in
`tshark -r CAPTURE -Y FILTER`, and in `editcap -r`'s numbering.
"""

from __future__ import annotations

from collections.abc import Iterable


def frames_filter(frames: Iterable[int]) -> str:
    """`frame.number == 36`, or `frame.number in {36, 38..40}` for several frames.

    Consecutive frame numbers become one range, so a filter stays short however many frames a
    finding cites. Empty input gives an empty string (no frames, no filter).
    """
    nums = sorted({int(f) for f in frames})
    if not nums:
        return ""
    if len(nums) == 1:
        return f"frame.number == {nums[0]}"
    parts: list[str] = []
    start = prev = nums[0]
    for n in nums[1:] + [None]:  # type: ignore[list-item]
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}..{prev}")
        if n is not None:
            start = prev = n
    return "frame.number in {" + ", ".join(parts) + "}"


def _addr_field(ip: str) -> str:
    return "ipv6.addr" if ":" in ip else "ip.addr"


def conn_filter(orig_h: str, orig_p: int, resp_h: str, resp_p: int, proto: str = "tcp") -> str:
    """Wireshark's conversation filter for one connection (Conversation Filter > TCP).

    `ip.addr==198.51.100.8 && tcp.port==41001 && ip.addr==192.0.2.25 && tcp.port==25`: both
    directions of the 4-tuple, as Wireshark writes it. IPv6 addresses use `ipv6.addr`.
    """
    a, b = _addr_field(orig_h), _addr_field(resp_h)
    return f"{a}=={orig_h} && {proto}.port=={orig_p} && {b}=={resp_h} && {proto}.port=={resp_p}"


def per_capture(evidence: Iterable) -> list[tuple[str, str, str]]:
    """(capture, vantage, filter) for each capture a finding's evidence cites, in the order first cited.

    Why per capture: frame numbers belong to one file; a finding that cites frames of the lb and
    be2 captures needs one filter for each, never one filter with both files' numbers in it.
    Host evidence (hostcheck's settings, which carry no frame) is skipped.
    """
    frames: dict[tuple[str, str], list[int]] = {}
    for e in evidence:
        frame = getattr(e, "frame", None)
        if frame is None:
            continue
        frames.setdefault((e.capture, e.vantage), []).append(frame)
    return [(cap, van, frames_filter(nums)) for (cap, van), nums in frames.items()]


def _shell_word(s: str) -> str:
    """`s` as one shell word on one line: POSIX quoting, or, when it holds a control character or
    an undecodable byte (a file name can), ANSI-C quoting `$'...'` (bash, zsh, ksh, dash >= 0.5.12)
    with those bytes as `\\xNN`, so a pasted line is still exactly the file's name."""
    import shlex

    if s.isprintable() and not any(0xDC80 <= ord(c) <= 0xDCFF for c in s):
        return shlex.quote(s)
    out = []
    for b in s.encode("utf-8", "surrogateescape"):
        c = chr(b)
        out.append(f"\\x{b:02x}" if b < 0x20 or b == 0x7F or b >= 0x80 or c in "\\'" else c)
    return "$'" + "".join(out) + "'"


def tshark_command(capture: str, display_filter: str) -> str:
    """The command line that shows a filter's frames: `tshark -r CAPTURE -Y 'FILTER'`.

    The capture path and the filter are quoted for a POSIX shell, so the line can be pasted as
    it is whatever the path holds (a path with control characters in `$'...'`: one line still).
    """
    return f"tshark -r {_shell_word(capture)} -Y {_shell_word(display_filter)}"


def tshark_script(findings, verdict_text: str | None = None) -> str:
    """`dsrdiag analyze --tshark`: per finding, a comment line (id, severity, kind, summary) and
    one `tshark -r CAPTURE -Y FILTER` line per capture its evidence cites. Every other line is a
    comment, so the whole output is a shell script: paste a line, or pipe it all to `sh`.
    Untrusted text (a banner in a summary) is escaped to one visible line."""
    from dsrdiag.core.safetext import terminal

    lines = [] if verdict_text is None else [f"# {terminal(verdict_text)}"]
    for f in findings:
        lines.append(f"# {f.id} {f.severity} {f.kind}: {terminal(f.summary)}")
        cmds = per_capture(f.evidence)
        if not cmds:
            lines.append("#   (no frames: this finding's evidence is a host's settings)")
        for cap, _van, flt in cmds:
            lines.append(tshark_command(cap, flt))
    return "\n".join(lines) + "\n"
