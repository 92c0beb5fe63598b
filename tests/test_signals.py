"""Every way of stopping a run removes its temporary files and ends its workers, and the exit status
says how it ended: SIGTERM (143), SIGHUP (129), SIGQUIT (131) sent to dsrdiag alone, as `timeout`,
systemd, `docker stop` and CI cancellation do, and SIGINT (130) to its process group, as Ctrl-C
does; alone and with --jobs 2; before, while and after records spill to disk.

A real run in its own session (so its process group holds it and its workers only), on a generated
capture of many short connections that spills every few records (DSRDIAG_SPILL_AT), with its own
TMPDIR: after it ends, that folder must be empty and the process group gone."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

VIP = bytes([192, 0, 2, 25])


def _many_connections(path: Path, n: int) -> None:
    """n refused connections (SYN, then RST-ACK from the VIP): 2n frames of 54 bytes, each a record."""
    eth_c = bytes.fromhex("02000000000a" "020000000107" "0800")
    eth_s = bytes.fromhex("020000000107" "02000000000a" "0800")
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    t = 1_700_000_000_000_000
    for i in range(n):
        client = bytes([198, 51, 100, 1 + i % 250])
        port = 1024 + (i // 250) % 60000
        for eth, src, dst, sp, dp, flags, seq, ack in ((eth_c, client, VIP, port, 25, 0x02, i, 0),
                                                       (eth_s, VIP, client, 25, port, 0x14, 0, i + 1)):
            ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0, 64, 6, 0, src, dst)
            tcp = struct.pack(">HHIIBBHHH", sp, dp, seq, ack, 0x50, flags, 64240, 0, 0)
            frame = eth + ip + tcp
            t += 50
            out.append(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("signals") / "many.pcap"
    _many_connections(p, 50_000)
    return p


def _start(args: list[str], tmp: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(tmp), DSRDIAG_SPILL_AT="500")
    return subprocess.Popen([sys.executable, "-m", "dsrdiag", "analyze", *args, "-f", "json"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _files(tmp: Path) -> list[Path]:
    return sorted(tmp.rglob("*"))


def _wait_for_spill(p: subprocess.Popen, tmp: Path, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None:
        if any(f.is_file() for f in _files(tmp)):
            return True
        time.sleep(0.005)
    return False


def _wait_for_open(p: subprocess.Popen, capture: Path, timeout: float = 60) -> bool:
    """The run has opened its capture (Linux /proc): it is reading, its handlers are in place."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and p.poll() is None:
        try:
            if any(os.readlink(f"/proc/{p.pid}/fd/{fd}") == str(capture) for fd in os.listdir(f"/proc/{p.pid}/fd")):
                return True
        except OSError:
            pass
        time.sleep(0.002)
    return False


def _group_gone(pgid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


CASES = [  # (signal, sent to the group as a terminal does, exit status)
    ("SIGTERM", False, 143),
    ("SIGHUP", False, 129),
    ("SIGQUIT", False, 131),
    ("SIGINT", True, 130),
]
WHEN = ["reading", "first spill", "spilling"]


@pytest.mark.parametrize("jobs", [1, 2], ids=["one job", "two jobs"])
@pytest.mark.parametrize("when", WHEN)
@pytest.mark.parametrize("sig,to_group,status", CASES, ids=[c[0] for c in CASES])
def test_a_stopped_run_leaves_no_file_and_no_process(capture, tmp_path, sig, to_group, status, when, jobs):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    args = [str(capture)] if jobs == 1 else [f"a={capture}", f"b={capture}", "--jobs", "2"]
    p = _start(args, tmp)
    try:
        if when == "reading":
            assert _wait_for_open(p, capture), "the run never opened its capture"
        else:
            assert _wait_for_spill(p, tmp), "the run never spilled: the test would prove nothing"
            if when == "spilling":
                time.sleep(0.4)
        assert p.poll() is None, "the run ended before the signal: make the capture bigger"
        signum = getattr(signal, sig)
        if to_group:
            os.killpg(p.pid, signum)
        else:
            os.kill(p.pid, signum)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert p.returncode == status, err.decode()
    assert _group_gone(p.pid), "a worker outlived the run"
    assert _files(tmp) == []
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0] in ("dsrdiag: interrupted", f"dsrdiag: stopped by {sig}"), lines


def test_a_run_not_stopped_spills_and_leaves_nothing(capture, tmp_path):
    # the counterpart: the same run to its end exits as its findings say, files gone as well
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    p = _start([str(capture)], tmp)
    assert _wait_for_spill(p, tmp)
    _, err = p.communicate(timeout=120)
    assert p.returncode in (0, 1), err.decode()
    assert _files(tmp) == [] and _group_gone(p.pid)


def test_a_worker_whose_parent_is_killed_ends_and_removes_its_files(capture, tmp_path):
    # SIGKILL cannot be handled by the parent: the worker must still end (no orphan blocked for
    # ever) and remove its own files; only the parent's empty folder may remain
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    p = _start([f"a={capture}", f"b={capture}", "--jobs", "2"], tmp)
    try:
        assert _wait_for_spill(p, tmp)
        os.kill(p.pid, signal.SIGKILL)
        p.wait(timeout=30)
        assert _group_gone(p.pid, timeout=20), "the worker outlived its killed parent"
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
