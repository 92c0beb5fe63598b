"""The progress bar: drawn on a terminal (stderr) for text output, never for JSON or when stderr is
not a terminal; per capture bytes and packets, and a capture read before the bar appeared shows as
read. Runs the real CLI under a real pseudo-terminal (pty)."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import time

from tests.conftest import CAPTURES, drain_pty

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def _run_on_pty(*args: str, delay: str = "0") -> tuple[int, bytes]:
    """Run dsrdiag with stderr on a pty (stdout discarded); return its exit code and what the pty got."""
    master, slave = pty.openpty()
    env = dict(os.environ, DSRDIAG_PROGRESS_DELAY=delay, COLUMNS="160")
    p = subprocess.Popen([sys.executable, "-m", "dsrdiag", *args], stdout=subprocess.DEVNULL, stderr=slave, env=env)
    os.close(slave)
    code, out = drain_pty(master, p)
    return code, ANSI.sub(b"", out.replace(b"\r", b"\n"))


def test_progress_bar_shows_each_capture_bytes_and_packets_on_a_terminal():
    a, b = CAPTURES / "healthy.pcap", CAPTURES / "vip_missing.pcap"
    code, tty = _run_on_pty("analyze", str(a), str(b), "--jobs", "2")
    assert code in (0, 1)
    text = tty.decode("utf-8", "replace")
    for cap in (a, b):
        size_kb = f"{cap.stat().st_size / 1000:.1f}"
        assert re.search(rf"{cap.stem}\s.*{re.escape(size_kb)}/{re.escape(size_kb)} kB", text), text[-2000:]
    assert "packets" in text


def test_no_progress_bar_for_json_output_even_on_a_terminal():
    code, tty = _run_on_pty("analyze", str(CAPTURES / "healthy.pcap"), "--format", "json")
    assert code in (0, 1)
    assert b"packets" not in tty and b"kB" not in tty


def test_no_progress_bar_when_stderr_is_not_a_terminal():
    env = dict(os.environ, DSRDIAG_PROGRESS_DELAY="0")
    p = subprocess.run([sys.executable, "-m", "dsrdiag", "analyze", str(CAPTURES / "healthy.pcap")],
                       capture_output=True, env=env, timeout=60)
    assert p.returncode in (0, 1)
    assert b"kB" not in p.stderr and b"\x1b[" not in p.stderr


def test_a_capture_read_before_the_bar_appeared_is_shown_as_read(monkeypatch):
    """Two captures: one finishes within the delay, the other brings the bar up later; the first
    must not be drawn as unread (its updates came while nothing was shown)."""
    from rich.console import Console

    from dsrdiag.report import progress as prog

    monkeypatch.setattr(prog, "DELAY_S", 0.05)
    fast, slow = str(CAPTURES / "healthy.pcap"), str(CAPTURES / "vip_missing.pcap")
    bar = prog.CaptureProgress([("a", fast), ("b", slow)], Console(file=io.StringIO(), force_terminal=True))
    bar.update(fast, os.path.getsize(fast), 42)  # before the delay: nothing drawn yet
    assert bar.progress is None
    time.sleep(0.06)
    bar.update(slow, 100, 3)
    try:
        tasks = {t.description: t for t in bar.progress.tasks}
        assert tasks["a"].completed == os.path.getsize(fast) and tasks["a"].fields["frames"] == 42
        assert tasks["b"].completed == 100 and tasks["b"].fields["frames"] == 3
    finally:
        bar.close()
