"""The report options (--format, --fail-on, --width, --explain, --brief, --junit): one definition,
the same on every command that prints a report (cli/commands.py's Output), and --width lays out every
line of text the run shows, the progress bar's too (docs/terminal.md)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import CAPTURES, ROOT, run_cli
from tests.test_progress import _run_on_pty

REPORT_OPTIONS = ("--format", "--fail-on", "--width", "--explain", "--brief", "--junit")
WINDOWS_GOOD = ROOT / "tests" / "data" / "windows" / "exch1-good.txt"


def _options(help_text: str) -> dict[str, str]:
    """Each option of a --help (its long name) -> its whole help entry, whitespace made single."""
    entries, current = {}, None
    for line in help_text.splitlines():
        m = re.match(r"^\s{2}(?:-\w, )?(--[\w-]+)", line)
        if m:
            current = m.group(1)
            entries[current] = line.strip()
        elif current and line.startswith(" " * 10) and line.strip():
            entries[current] += " " + line.strip()
        else:
            current = None
    return {k: " ".join(v.split()) for k, v in entries.items()}


def test_every_command_that_prints_a_report_has_the_same_report_options_and_the_lab_has_none():
    helps = {}
    for command in ("analyze", "probe", "hostcheck"):
        r = run_cli(command, "--help", check_code=0)
        helps[command] = _options(r.out)
    for option in REPORT_OPTIONS:
        said = {c: helps[c].get(option) for c in helps}
        assert None not in said.values(), (option, said)
        assert len(set(said.values())) == 1, (option, said)  # the same words: one definition
    lab = _options(run_cli("lab", "run", "--help", check_code=0).out)
    assert not set(REPORT_OPTIONS) & set(lab)  # the lab prints no report: none of them


@pytest.mark.parametrize("command", [["probe", "192.0.2.25"], ["hostcheck", "--vip", "192.0.2.25", "--from", str(WINDOWS_GOOD)]])
def test_width_and_format_are_checked_alike_on_every_command_before_it_does_anything(command):
    """A bad --width or --brief with JSON is a one-line usage error on probe (before a packet is
    sent) and hostcheck, as on analyze."""
    for args, text in ((["--width", "10"], "--width 10: use 40 columns or more"),
                       (["--brief", "-f", "json"], "--brief is a form of the text report: not with --format json")):
        r = run_cli(*command, *args)
        assert r.code == 2 and r.err.strip() == f"dsrdiag: error: {text}", r.err


def test_hostcheck_brief_at_a_given_width_is_the_brief_report():
    r = run_cli("hostcheck", "--vip", "192.0.2.25", "--from", str(WINDOWS_GOOD), "--brief", "--width", "60")
    assert r.code == 0 and r.out.startswith("VERDICT: ") and len(r.out.splitlines()) <= 8, r.out


def _bar_lines(*extra: str) -> list[str]:
    """The progress bar's lines for two sample captures, on a 160-column pseudo-terminal."""
    code, tty = _run_on_pty("analyze", str(CAPTURES / "healthy.pcap"), str(CAPTURES / "vip_missing.pcap"), "--jobs", "2", *extra)
    assert code in (0, 1)
    lines = [line for line in tty.decode("utf-8", "replace").splitlines() if "packets" in line and "kB" in line]
    assert any(line.startswith("vip_missing ") for line in lines), lines  # the bar was drawn, each capture named
    return lines


def test_the_progress_bar_is_laid_out_for_the_width_asked_for():
    lines = _bar_lines("--width", "60")
    assert max(len(line) for line in lines) <= 60, lines


def test_without_width_the_progress_bar_takes_the_terminals_columns_not_less():
    """Where the rule must not cut: COLUMNS=160 and no --width, the bar keeps its full length (wider
    than the 60 columns above)."""
    lines = _bar_lines()
    assert max(len(line) for line in lines) > 60, lines
