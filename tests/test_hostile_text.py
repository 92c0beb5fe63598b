"""No raw control character from a packet or a file name reaches any output (core/safetext.py).

Two angles: the hostile_text.pcap sample (captures/build.py: OSC window title, cursor up, erase
line, conceal, NUL, C1 CSI, invalid UTF-8, a right-to-left override in the PROXY v1 source, the
XCLIENT arguments, the banner, EHLO and replies) and a hostile file name through the real CLI in
every output (text, -v, --ladder, JSON, HTML); and, for the rule rather than the sample, a real
report of a path set (findings, back-end table, connections, clock offsets, ladders) in which
every string is made hostile before it is rendered by each presenter."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import CAPTURES, ROOT

pytestmark = pytest.mark.usefixtures("tracker")  # every test on the C tracker and on the Python reference


ENV = dict(os.environ, PYTHONPATH=str(ROOT))
SAMPLE = CAPTURES / "hostile_text.pcap"

# what a terminal would obey: any C0 control but the newline, DEL, C1 controls, and what is not
# Unicode at all (an undecodable file-name byte); plus bidi/format controls
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ud800-\udfff]")
SHOWN = "\\x1b]0;pwned\\x07\\x1b[1A\\x1b[2K\\x1b[8m\\x00\\x9b"
"""How the sample's hostile text reads once escaped (the start of captures/build.py HOSTILE)."""


def _cli(*args, env=None) -> tuple[int, bytes, bytes]:
    p = subprocess.run([sys.executable, "-m", "dsrdiag", *map(os.fsdecode, args)], capture_output=True,
                       timeout=120, env=env or ENV, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout, p.stderr


def _clean(data: bytes, what: str) -> str:
    text = data.decode("utf-8")  # strict: an output is valid UTF-8
    bad = RAW.search(text)
    assert bad is None, f"{what}: raw {bad.group()!r} at {bad.start()}: {text[max(0, bad.start() - 60):bad.start() + 20]!r}"
    return text


# ---- the sample through the CLI --------------------------------------------------------------

@pytest.mark.parametrize("extra", [[], ["-v"]], ids=["text", "verbose"])
def test_hostile_packet_text_is_shown_escaped_in_the_terminal_report(extra):
    code, out, err = _cli("analyze", SAMPLE, "--vip", "192.0.2.25", *extra)
    text = " ".join(_clean(out, "stdout").split())  # a long line is wrapped: words, not layout
    assert code == 0, err
    # the XCLIENT argument and the PROXY v1 source field are shown (escaped) in summary and evidence
    assert f"ADDR={SHOWN}" in text and f"client {SHOWN}" in text
    assert text.count(SHOWN) >= 4


def test_hostile_packet_text_is_shown_escaped_in_a_ladder():
    code, out, err = _cli("analyze", f"client={SAMPLE}", f"lb={SAMPLE}", "--vip", "192.0.2.25", "--ladder", "192.0.2.10", "-v")
    text = _clean(out, "stdout")
    assert code == 0 and "Ladder: 192.0.2.10" in text and SHOWN in text, err


def test_hostile_packet_text_is_exact_in_json_and_the_document_is_valid_utf8():
    code, out, err = _cli("analyze", SAMPLE, "--vip", "192.0.2.25", "-f", "json")
    doc = json.loads(out.decode("utf-8"))
    assert code == 0, err
    raw = "\x1b]0;pwned\x07\x1b[1A\x1b[2K\x1b[8m\x00\x9b2J"  # JSON is data: the packet's text, latin-1
    xclient = [c["smtp"]["xclient"] for c in doc["connections"] if c["smtp"]["xclient"]]
    assert xclient and xclient[0].startswith("ADDR=" + raw)
    assert b"\x1b" not in out and b"\x00" not in out  # escaped by the JSON encoder (\u001b)


def test_hostile_packet_text_is_escaped_in_the_html_page(tmp_path):
    page = tmp_path / "r.html"
    code, _, err = _cli("analyze", f"client={SAMPLE}", f"lb={SAMPLE}", "--vip", "192.0.2.25", "--html", page)
    html = _clean(page.read_bytes(), "html")
    assert code == 0 and SHOWN.replace("\\x1b]", "\\x1b]") in html, err


@pytest.mark.parametrize("sample", ["hostile_text.pcap", "healthy-client.pcapng"])
def test_a_hostile_file_name_is_shown_escaped_everywhere(tmp_path, sample):
    suffix = sample[sample.index("."):]
    name = os.fsencode(tmp_path) + b"/x\x1b]0;pwned\x07\x1b[2K\x9b\xff\n" + suffix.encode()
    shutil.copyfile(CAPTURES / sample, name)
    code, out, err = _cli("analyze", name, "-v")
    text = _clean(out, "stdout")
    assert code in (0, 1) and "x\\x1b]0;pwned\\x07\\x1b[2K\\xc2\\x9b" not in text  # bytes, not UTF-8 pairs
    assert "x\\x1b]0;pwned\\x07\\x1b[2K\\x9b\\xff\\n" in text, text[:2000]
    _clean(err, "stderr")
    code, out, _ = _cli("analyze", name, "-f", "json")
    doc = json.loads(_clean(out, "json"))
    assert doc["captures"][0]["path"].endswith("x\x1b]0;pwned\x07\x1b[2K\\x9b\\xff\n" + suffix)
    page = tmp_path / "r.html"
    _cli("analyze", name, "--html", page)
    assert "x\\x1b]0;pwned" in _clean(page.read_bytes(), "html")
    code, _, err = _cli("analyze", name + b".missing")  # the error line too
    assert code == 2 and "x\\x1b]0;pwned" in _clean(err, "stderr")


def test_a_plain_report_is_unchanged_by_escaping():
    # the counterpart: ordinary text (names, dashes, box drawing, accents in a file name) is shown as it is
    code, out, _ = _cli("analyze", f"café-lan={CAPTURES / 'healthy.pcap'}", "-v")
    text = _clean(out, "stdout")
    assert code == 0 and "\\x" not in text and "\\u" not in text and "\\n" not in text
    assert "café-lan: " in text and "mx1.example" in text


# ---- every string of a real report, made hostile ---------------------------------------------

HOSTILE = "\x1b]0;pwned\x07\x1b[1A\x1b[2K\x1b[8m\x00\x01\x7f\x85\x9b2J\udcff\u202e\n|"
KEEP = {"kind", "severity", "source", "direction", "conn_state", "basis", "reader", "version", "history"}
"""Enumerations the presenters look up (a catalog entry, a style): not text from a packet."""


def _poison(x, name: str | None = None):
    from dsrdiag.jobs.analyze import ConnectionsView

    if name in KEEP or x is None or isinstance(x, (bool, int, float, bytes)):
        return x
    if isinstance(x, str):
        return HOSTILE + x
    if isinstance(x, ConnectionsView):
        return tuple((_poison(c), _poison(b)) for c, b in x)
    if hasattr(x, "_fields"):  # NamedTuple records
        return type(x)._make(_poison(getattr(x, f), f) for f in x._fields)
    if dataclasses.is_dataclass(x):
        return dataclasses.replace(x, **{f.name: _poison(getattr(x, f.name), f.name) for f in dataclasses.fields(x) if f.init})
    if isinstance(x, (tuple, list, set, frozenset)):
        return type(x)(_poison(i, name) for i in x)
    if isinstance(x, dict):
        return {_poison(k, name): _poison(v, name) for k, v in x.items()}
    return x  # packet notes (NoteBlock): numbers; presenters do not print them


@pytest.fixture(scope="module")
def poisoned(tracker):
    from dsrdiag.core import topology as topo
    from dsrdiag.jobs.analyze import analyze

    files = [(v, str(CAPTURES / "paths" / "mixed" / f"{v}.pcap")) for v in ("client", "fw-out", "fw-in", "lb", "be1", "be2")]
    report = analyze(files, topo.build(vips=[], ports=[], backends=[], lb_macs=[], lb_ips=[], topology_file=None), jobs=1)
    assert report.findings and report.correlation is not None and report.correlation.flows and report.backends
    return _poison(report)


def test_every_string_of_a_report_is_escaped_in_the_terminal(poisoned):
    from rich.console import Console

    from dsrdiag.report import terminal

    for colour in (False, True):
        buf = io.StringIO()
        console = Console(file=buf, width=160, force_terminal=colour, color_system="standard" if colour else None,
                          highlight=False, soft_wrap=False, emoji=False)
        terminal.render(poisoned, console, verbose=True, ladder=poisoned.correlation.flows[0].client)
        out = buf.getvalue()
        if colour:  # rich's own styles are SGR sequences; none of the hostile ones may be there
            assert "\x1b]" not in out and "\x1b[1A" not in out and "\x1b[2K" not in out and "\x1b[8m" not in out
            out = re.sub("\x1b\\[[0-9;]*m", "", out)
        bad = RAW.search(out)
        assert bad is None, out[max(0, bad.start() - 80):bad.start() + 20]
        assert out.count("\\x1b]0;pwned") > 20 and "Ladder: \\x1b]0;pwned" in out
        assert "\\udcff" not in out and "\\xff" in out and "\\u202e" in out and "\\n|" in out


def test_every_string_of_a_report_is_escaped_in_the_html_page(poisoned):
    from dsrdiag.report import html

    page = html.render(poisoned)
    page.encode("utf-8")  # strict
    bad = RAW.search(page)
    assert bad is None, page[max(0, bad.start() - 80):bad.start() + 20]
    assert page.count("\\x1b]0;pwned") > 20 and "<svg" in page


def test_every_string_of_a_report_is_valid_utf8_json_that_keeps_the_text(poisoned):
    from dsrdiag.report import jsondoc

    for pretty in (False, True):
        out = io.BytesIO()
        stream = io.TextIOWrapper(out, encoding="utf-8", errors="strict")
        jsondoc.write(poisoned, stream, pretty=pretty)
        stream.flush()
        doc = json.loads(out.getvalue().decode("utf-8"))
        summary = doc["findings"][0]["summary"]
        assert summary.startswith("\x1b]0;pwned\x07\x1b[1A\x1b[2K\x1b[8m\x00\x01\x7f\x85\x9b2J\\xff\u202e\n|")
