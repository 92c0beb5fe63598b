"""Shared fixtures: the project's sample captures, the shared real captures (skipped cleanly when
../shared is absent), and a way to run the real CLI in-process with its exit code and output."""

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
def lab_down():
    """Whatever a lab test built is removed afterwards, even when it fails."""
    from dsrdiag.lab import netns

    yield
    netns.teardown()
