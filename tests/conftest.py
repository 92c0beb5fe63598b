"""Shared fixtures: the project's sample captures, the shared real captures (skipped cleanly when
../shared is absent), a way to run the real CLI in-process with its exit code and output, and the
`--lab` option.

The lab tests (marked `lab`: they build network namespaces, as root) run only when the test command
says so, `python3 -m pytest --lab`; without it they are skipped with that reason. Whether this host
can run the lab is checked lazily, by the `lab_host` fixture, when the first lab test starts: nothing
happens at import or collection time (`pytest --co` as root creates nothing)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
REAL = Path(os.environ.get("DSRDIAG_SHARED_CAPTURES", ROOT.parent / "shared" / "captures-real"))


def pytest_addoption(parser):
    parser.addoption("--lab", action="store_true", default=False,
                     help="also run the lab tests: real DSR sites in network namespaces (root, iproute2, nftables, tcpdump)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--lab"):
        return
    skip = pytest.mark.skip(reason="lab test (root, network namespaces): run with `python3 -m pytest --lab`")
    for item in items:
        if item.get_closest_marker("lab") is not None:
            item.add_marker(skip)


def _lab_unavailable() -> str | None:
    """Why this host cannot run the lab, or None. Creates and removes one namespace to find out."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nft", "tcpdump", "openssl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = "dsrdiag-probe-skipcheck"
    p = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        return f"cannot create network namespaces: {p.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return None


@pytest.fixture(scope="session")
def lab_host() -> None:
    """Every lab test asks for this (directly or through another fixture): it skips, with the reason,
    where the lab cannot run although --lab was given."""
    reason = _lab_unavailable()
    if reason:
        pytest.skip(f"lab: {reason}")


@pytest.fixture(scope="module", params=["c", "python"])
def tracker(request):
    """Run the tests of a module once on each tracker: the C one (track/_conntrack.c, fed by the C
    walker) and the Python reference (track/conn.py), through DSRDIAG_TRACKER, which track_capture,
    the CLI and the crew's worker processes all read. A behaviour module says `pytestmark =
    pytest.mark.usefixtures("tracker")`, and its module-scoped fixtures that analyse ask for
    `tracker` too (so they are computed once per tracker). Where the C extension was not built,
    "c" skips."""
    if request.param == "c":
        try:
            from dsrdiag.track import _conntrack  # noqa: F401
        except ImportError:
            pytest.skip("the C tracker was not built (no compiler)")
    mp = pytest.MonkeyPatch()
    mp.setenv("DSRDIAG_TRACKER", request.param)
    yield request.param
    mp.undo()


@pytest.fixture(scope="session")
def captures() -> Path:
    return CAPTURES


@pytest.fixture(scope="session")
def real() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"shared real captures not present at {REAL}")
    return REAL


@pytest.fixture(scope="session")
def tshark() -> str:
    path = shutil.which("tshark")
    if path is None:
        pytest.skip("tshark is not installed (CI installs it: .ci/run)")
    return path


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def json(self) -> dict:
        return json.loads(self.out)


def run_cli(*args: str, check_code: int | None = None) -> CliResult:
    """Run the installed console entry point as a user would: a separate process."""
    p = subprocess.run([sys.executable, "-m", "dsrdiag", *args], capture_output=True, text=True, timeout=120)
    r = CliResult(p.returncode, p.stdout, p.stderr)
    if check_code is not None:
        assert r.code == check_code, f"exit {r.code} != {check_code}\nstdout:\n{r.out}\nstderr:\n{r.err}"
    return r


@pytest.fixture
def cli():
    return run_cli


def tshark_fields(tshark: str, path: Path, display_filter: str, *fields: str) -> list[list[str]]:
    args = [tshark, "-n", "-r", str(path), "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    if display_filter:
        args += ["-Y", display_filter]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    return [line.split("\t") for line in p.stdout.splitlines() if line.strip()]


@pytest.fixture
def lab_down(lab_host):
    """Whatever a lab test built is removed afterwards, even when it fails."""
    from dsrdiag.lab import netns

    yield
    netns.teardown()


# ---- format converters (tests of the readers; bench/ uses them for the issue-14 shapes) -----------
def rewrite_as_sll(src: Path, dst: Path, version: int = 1) -> int:
    """Rewrite a classic Ethernet pcap as Linux cooked SLL (`tcpdump -i any`, version 1) or SLL2
    (version 2): each frame's Ethernet header becomes the cooked header (the sender's MAC as its
    address, the ethertype as its protocol), timestamps and everything above it unchanged, as the
    kernel would have captured the same packets on the `any` device. editcap cannot do this. Returns
    the frames written. Streaming, bounded by the file: 1M frames take a few seconds."""
    import struct

    with open(src, "rb") as f, open(dst, "wb") as out:
        head = f.read(24)
        if len(head) < 24:
            raise ValueError(f"{src}: truncated pcap file header")
        bo = "<" if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        if struct.unpack(bo + "I", head[20:24])[0] != 1:
            raise ValueError(f"{src}: not an Ethernet capture")
        out.write(head[:20] + struct.pack(bo + "I", 113 if version == 1 else 276))
        rec = struct.Struct(bo + "IIII")
        n = 0
        while True:
            h = f.read(16)
            if len(h) < 16:
                break
            sec, frac, incl, orig = rec.unpack(h)
            data = f.read(incl)
            if len(data) < incl or incl < 14:
                break
            smac, etype, rest = data[6:12], data[12:14], data[14:]
            if version == 1:
                cooked = b"\x00\x00\x00\x01\x00\x06" + smac + b"\x00\x00" + etype
            else:
                cooked = etype + b"\x00\x00" + struct.pack(">I", 2) + b"\x00\x01\x00\x06" + smac + b"\x00\x00"
            data = cooked + rest
            grow = len(cooked) - 14
            out.write(rec.pack(sec, frac, len(data), orig + grow))
            out.write(data)
            n += 1
    return n


def drain_pty(master: int, proc, limit: float = 60) -> tuple[int, bytes]:
    """Read what a child writes to a pty until it closes its end or exits (at most `limit` s);
    close `master` and return the child's exit code and the bytes read."""
    import select
    import time

    out = b""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    code = proc.wait(timeout=30)
    os.close(master)
    return code, out
