"""The text report fits the width it is made for (docs/terminal.md): the real CLI, in a pipe with
COLUMNS=80 and 120 and --width, and on a real pseudo-terminal, over every bundled capture and path
set of captures/MANIFEST.toml. What it proves: no table line or evidence line passes the width, no
table header is split, plurals are words (no `(s)`, no `1 packets`), each capture's display filter
is printed whole on one line, `--brief` is at most 8 lines, `-v` shows every history whole (the
JSON document's); and where a rule must not fire: a capture path longer than the width is printed
whole, a description that fits is not cut, a wide terminal gets the wide table."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import tomllib

import pytest

from dsrdiag.report.wireshark import frames_filter
from tests.conftest import CAPTURES, ROOT, drain_pty

MANIFEST = tomllib.loads((CAPTURES / "MANIFEST.toml").read_text())
CASES = [pytest.param([str(CAPTURES / c["file"]), *c["args"]], id=c["file"]) for c in MANIFEST["capture"]]
CASES += [pytest.param(sorted(str(p) for p in (CAPTURES / "paths" / s["name"]).glob("*.pcap")), id="paths/" + s["name"])
          for s in MANIFEST["set"]]

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
EVIDENCE = re.compile(r"^    +(\d+)  (\d\d:\d\d:\d\d\.\d{6,9}|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6,9}Z)  (.*)$")
BAD_PLURAL = re.compile(r"(?<![\d.,])1 (packets|connections|frames|back-ends|sessions|findings|SYNs|records|captures|vantages)\b|\(s\)")
TABLE_HEADS = {
    "Back-ends": {"back-end", "IP", "MAC", "source", "connections", "conns", "completed", "done", "failed",
                  "banner host", "banner", "median SYN->banner", "SYN->banner", "address"},
}


def _env(columns: int | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("COLUMNS", None)
    env.pop("NO_COLOR", None)
    if columns is not None:
        env["COLUMNS"] = str(columns)
    return env


def _run(*args: str, columns: int | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dsrdiag", *args], capture_output=True, text=True,
                          timeout=120, env=_env(columns), stdin=subprocess.DEVNULL)


_json_cache: dict[tuple, dict] = {}


def _json(args) -> dict:
    key = tuple(args)
    if key not in _json_cache:
        _json_cache[key] = json.loads(_run("analyze", *args, "-f", "json").stdout)
    return _json_cache[key]


def _sections(text: str) -> dict[str, list[str]]:
    """The report's lines by section: its titles start in column 0 (`Back-ends`, `Connections`...)."""
    out: dict[str, list[str]] = {"": []}
    name = ""
    for line in text.splitlines():
        if line and not line[0].isspace() and not line.startswith("──"):
            name = line.split("  (")[0].split(":")[0] if not line.startswith("VERDICT") else "VERDICT"
            out.setdefault(name, [])
        out[name].append(line)
    return out


def _check_width(text: str, width: int, paths: list[str]) -> None:
    """Every line fits, but those printed whole on purpose: a filter, the -v listing, a capture path."""
    listing = False
    for line in text.splitlines():
        if line.startswith("Connections  ("):
            listing = True
        elif line and not line[0].isspace():
            listing = False
        if len(line) <= width or listing or line.startswith("    filter: "):
            continue
        assert any(p in line for p in paths), f"line of {len(line)} > {width} columns: {line!r}"


def _check_tables(text: str) -> None:
    secs = _sections(text)
    for title, vocab in TABLE_HEADS.items():
        lines = secs.get(title)
        if not lines:
            continue
        head = lines[1]
        fields = re.split(r"\s{2,}", head.strip())
        assert set(fields) <= vocab, f"{title}: a header split or unknown: {fields} in {head!r}"
        assert set(lines[2].strip()) == {"─"}, lines[2]
        for row in lines[3:]:
            if not row.strip() or " failed: " in row:
                break
            assert len(re.split(r"\s{2,}", row.strip())) == len(fields), f"{title}: a cell split: {row!r}"


def _check_filters_and_evidence(text: str, doc: dict, width: int) -> None:
    """Per finding and capture, its frames' display filter on one line, exactly; every evidence
    line keeps its frame number and time whole."""
    lines = text.splitlines()
    filters = [ln[len("    filter: "):] for ln in lines if ln.startswith("    filter: ")]
    for f in doc["findings"]:
        groups: dict[str, list[int]] = {}
        for ev in f["evidence"]:
            if "frame" in ev:
                groups.setdefault(ev["capture"], []).append(ev["frame"])
        for cap, frames in groups.items():
            assert frames_filter(frames) in filters, (f["id"], cap, frames_filter(frames))
    times = {(ev["frame"], ev["time"]) for f in doc["findings"] for ev in f["evidence"] if "frame" in ev}
    for ln in lines:
        m = EVIDENCE.match(ln)
        if m:
            frame, ts = int(m.group(1)), m.group(2)
            assert any(fr == frame and t.endswith(ts if "T" in ts else ts + "Z") for fr, t in times), ln
            assert len(ln) <= width, ln


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("args", CASES)
def test_every_line_fits_the_width_in_a_pipe(args, columns):
    r = _run("analyze", *args, "-v", columns=columns)
    assert r.returncode in (0, 1, 3, 4) and "Traceback" not in r.stderr, r.stderr
    paths = [a for a in args if not a.startswith("-")]
    _check_width(r.stdout, columns, paths)
    _check_tables(r.stdout)
    doc = _json(args)
    _check_filters_and_evidence(r.stdout, doc, columns)
    bad = BAD_PLURAL.search(r.stdout)
    assert bad is None, r.stdout[max(0, bad.start() - 80):bad.end() + 20]
    # -v: every history whole, as the JSON document has it
    listed = {}
    for ln in _sections(r.stdout).get("Connections", [])[2:]:
        cells = ln.split()
        listed[cells[0]] = cells[6]
    assert listed == {c["uid"]: c["history"] or "-" for c in doc["connections"]}


@pytest.mark.parametrize("args", CASES)
def test_brief_is_at_most_eight_lines_with_the_cause_and_its_frames(args):
    r = _run("analyze", *args, "--brief", columns=80)
    doc = _json(args)
    lines = r.stdout.splitlines()
    assert r.returncode in (0, 1, 3, 4) and 2 <= len(lines) <= 8, r.stdout
    assert lines[0] == "VERDICT: " + doc["verdict"]["text"]
    if doc["verdict"]["causes"]:
        cause = next(f for f in doc["findings"] if f["id"] == doc["verdict"]["causes"][0])
        line = next(ln for ln in lines if ln.startswith("cause: "))
        assert line.startswith(f"cause: {cause['kind']} [{cause['id']}]") and f"docs/findings.md#{cause['kind']}" in line
        frames = next(ln for ln in lines if ln.startswith("frames: "))
        for ev in cause["evidence"]:
            assert re.search(rf"{re.escape(ev['capture'])}:[\d,]*\b{ev['frame']}\b", frames), (ev, frames)
        assert any(ln.startswith("fix (") for ln in lines)
    else:
        assert not any(ln.startswith("cause: ") for ln in lines)
    damaged = [c for c in doc["captures"] if c.get("damage")]
    assert (lines[1].startswith(f"DAMAGED: {damaged[0]['path']}: ") if damaged else not any("DAMAGED" in ln for ln in lines)), lines


def test_width_option_wins_over_columns_and_brings_the_compact_table():
    args = sorted(str(p) for p in (CAPTURES / "paths" / "wrong_source").glob("*.pcap"))
    narrow = _run("analyze", *args, "--width", "100", columns=200).stdout
    wide = _run("analyze", *args, "--width", "101", columns=80).stdout
    _check_width(narrow, 100, args)
    assert re.search(r"^  back-end\s+address\s+completed", narrow, re.M) and not re.search(r"^  back-end\s+IP\s+MAC", narrow, re.M)
    # the rule that must not fire: above 100 columns the wide table, with IP and MAC
    assert re.search(r"^  back-end\s+IP\s+MAC", wide, re.M) and "02:00:00:00:00:12" in _sections(wide)["Back-ends"][4]
    assert max(len(ln) for ln in wide.splitlines() if not ln.startswith("    filter: ")) > 100


def test_a_description_is_cut_only_when_it_must_be():
    args = [str(CAPTURES / "wrong_source.pcap")]
    cut = [ln for ln in _run("analyze", *args, columns=80).stdout.splitlines() if EVIDENCE.match(ln)]
    whole = [ln for ln in _run("analyze", *args, columns=200).stdout.splitlines() if EVIDENCE.match(ln)]
    assert any(ln.endswith("…") for ln in cut) and not any(ln.endswith("…") for ln in whole)
    doc = _json(args)
    whats = {ev["what"] for f in doc["findings"] for ev in f["evidence"]}
    assert {EVIDENCE.match(ln).group(3) for ln in whole} == whats


def test_a_capture_path_longer_than_the_width_is_printed_once_whole_in_its_header(tmp_path):
    deep = tmp_path / ("a-folder-name-long-enough-to-pass-any-terminal-width-" * 2) / "wrong_source.pcap"
    deep.parent.mkdir(parents=True)
    shutil.copyfile(CAPTURES / "wrong_source.pcap", deep)
    assert len(str(deep)) > 100
    out = _run("analyze", str(deep), columns=80).stdout
    lines = out.splitlines()
    holding = [ln for ln in lines if "wrong_source.pcap" in ln]
    assert holding and all(str(deep) in ln for ln in holding), holding  # never split across lines
    groups = {(ev["vantage"], ev["capture"]) for f in _json([str(deep)])["findings"] for ev in f["evidence"]}
    assert len(holding) == sum(1 for f in _json([str(deep)])["findings"]
                               for _ in {ev["capture"] for ev in f["evidence"]}) + 1  # once per evidence group, once in Captures
    assert groups and not any(str(deep) in ln for ln in lines if EVIDENCE.match(ln))
    _check_width(out, 80, [str(deep)])


def test_explanations_once_per_kind_with_explain_and_a_pointer_without():
    args = sorted(str(p) for p in (CAPTURES / "paths" / "wrong_source").glob("*.pcap"))
    kinds = {f["kind"] for f in _json(args)["findings"]}
    assert len(kinds) < len(_json(args)["findings"])  # a kind with several findings: the case
    plain = _run("analyze", *args, columns=120).stdout
    long = _run("analyze", *args, "--explain", columns=120).stdout
    assert plain.count("What it means:") == 0 and plain.count("Fix on Linux:") == 0
    assert sorted(re.findall(r"^  fix: see --explain or docs/findings.md#(\w+)$", plain, re.M)) == sorted(kinds)
    assert long.count("What it means:") == len(kinds) and long.count("Fix on Windows:") == len(kinds)
    assert "fix: see --explain" not in long


def test_a_limit_shared_by_every_capture_is_said_once_with_its_vantages():
    args = sorted(str(p) for p in (CAPTURES / "paths" / "wrong_source").glob("*.pcap"))
    out = _run("analyze", *args, columns=200).stdout
    assert out.count("no ARP/NDP for the VIP in this capture") == 1
    assert re.search(r"^  be1, be2, client, fw-in, fw-out, lb: no ARP/NDP for the VIP", out, re.M)
    # and one that only the LB's capture has is said for lb alone
    assert re.search(r"^  lb: no SMTP banner in this capture", out, re.M)


def _on_pty(args: list[str], cols: int) -> tuple[int, str]:
    """Run dsrdiag with stdout on a real pseudo-terminal `cols` wide (no COLUMNS in its environment)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    p = subprocess.Popen([sys.executable, "-m", "dsrdiag", *args], stdout=slave, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL, env=_env(None))
    os.close(slave)
    code, out = drain_pty(master, p)
    return code, ANSI.sub("", out.decode("utf-8").replace("\r\n", "\n"))


@pytest.mark.parametrize("cols", [80, 120])
def test_on_a_terminal_the_terminal_width_is_used(cols):
    args = sorted(str(p) for p in (CAPTURES / "paths" / "asym").glob("*.pcap"))
    code, text = _on_pty(["analyze", *args, "--ladder", "198.51.100.8"], cols)
    assert code == 1 and text.startswith("VERDICT: BROKEN")
    _check_width(text, cols, args)
    _check_tables(text)
    wrapped = [ln for ln in text.splitlines() if len(ln) > cols and not ln.startswith("    filter: ")]
    assert all(any(a in ln for a in args) for ln in wrapped)
    assert bool(re.search(r"^  back-end\s+address", text, re.M)) == (cols <= 100)
    # the ladders: a header of whole column names, then one line a packet
    lines = text.splitlines()
    ladders = [i for i, ln in enumerate(lines) if ln.startswith("Ladder: 198.51.100.8:")]
    assert ladders
    vocab = {"packet", "time", "last seen", "last", "client", "fw-out", "fw-in", "lb", "be1", "be2"}
    for i in ladders:
        assert set(re.split(r"\s{2,}", lines[i + 1].strip())) <= vocab, lines[i + 1]
        assert set(lines[i + 2].strip()) == {"─"} and lines[i + 3].startswith("  -> SYN")


def test_help_shows_the_backend_syntax_and_is_printed_once():
    r = _run("analyze", "--help")
    assert r.returncode == 0 and "NAME=IP[@MAC]" in r.stdout and "--width" in r.stdout and "--brief" in r.stdout
    bare = _run()
    assert bare.returncode == 2 and (bare.stdout + bare.stderr).count("Usage: dsrdiag") == 1
    assert "analyze" in bare.stderr and "Traceback" not in bare.stderr


def test_version_short_and_long():
    from dsrdiag import __version__

    for flag in ("-V", "--version"):
        r = _run(flag)
        assert r.returncode == 0 and r.stdout == f"dsrdiag {__version__}\n"


def test_show_completion_prints_a_bash_script_that_completes_the_commands():
    r = _run("--show-completion", "bash")
    assert r.returncode == 0 and "complete " in r.stdout and "_DSRDIAG_COMPLETE" in r.stdout
    # the script works: the shell's request is answered with the commands
    env = dict(_env(None), _DSRDIAG_COMPLETE="complete_bash", COMP_WORDS="dsrdiag an", COMP_CWORD="1")
    p = subprocess.run([sys.executable, "-m", "dsrdiag"], capture_output=True, text=True, env=env, timeout=60)
    assert "analyze" in p.stdout.split(), (p.stdout, p.stderr)
    bad = _run("--show-completion", "tcsh")
    assert bad.returncode == 2 and bad.stderr.startswith("dsrdiag: error: --show-completion 'tcsh'")
