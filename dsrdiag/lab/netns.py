"""Run ip / nft / sysctl / processes inside the lab's namespaces, and keep a ledger of what was made.

Why a ledger: `dsrdiag lab down` must remove everything the lab started, by name and PID, even
after a crash; the state file under /run/dsrdiag-lab lists the PIDs, and the namespaces are
found by their `dsrdiag-` prefix.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from dsrdiag.core.errors import DsrdiagError
from dsrdiag.lab.site import PREFIX

STATE_DIR = Path(os.environ.get("DSRDIAG_LAB_STATE", "/run/dsrdiag-lab"))
TOOLS = {
    "ip": "iproute2",
    "nft": "nftables",
    "tcpdump": "tcpdump",
    "sysctl": "procps",
    "openssl": "openssl",
}


class LabError(DsrdiagError):
    """The lab cannot run here (no root, a missing tool) or a step failed."""


def preflight() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (it creates network namespaces): run it as root or with sudo")
    missing = [f"{t} (apt-get install {pkg})" for t, pkg in TOOLS.items() if shutil.which(t) is None]
    if missing:
        raise LabError("missing tool(s): " + ", ".join(missing))
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        raise LabError("missing Python package aiosmtpd (pip install aiosmtpd)") from None


def sh(args: list[str], ns: str | None = None, input: str | None = None, check: bool = True,
       timeout: float = 30) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(args)
    try:
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"timed out: {' '.join(cmd)}") from None
    if check and p.returncode != 0:
        msg = (p.stderr or p.stdout).strip().splitlines()
        raise LabError(f"{' '.join(cmd)}: {msg[-1] if msg else 'failed'}")
    return p


def nft(ns: str, ruleset: str) -> None:
    sh(["nft", "-f", "-"], ns, input=ruleset)


def sysctl(ns: str, *settings: str) -> None:
    sh(["sysctl", "-qw", *settings], ns)


def existing_namespaces() -> list[str]:
    out = sh(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    try:
        names = [n["name"] for n in json.loads(out or "[]")]
    except (ValueError, KeyError, TypeError):
        names = [line.split()[0] for line in out.splitlines() if line.strip()]
    return [n for n in names if n.startswith(PREFIX)]


# ---- the ledger ----------------------------------------------------------------------------
def _state_file() -> Path:
    return STATE_DIR / "state.json"


def load_state() -> dict:
    try:
        return json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return {}


def save_state(state: dict) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    _state_file().write_text(json.dumps(state, indent=2))


def spawn(ns: str, args: list[str], log: Path, role: str) -> subprocess.Popen:
    """Start a long-running process in a namespace, in its own session, and record its PID."""
    logf = open(log, "w")
    p = subprocess.Popen(["ip", "netns", "exec", ns, *args], stdout=logf, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    state = load_state()
    state.setdefault("pids", []).append({"pid": p.pid, "role": role, "ns": ns, "cmd": args[0]})
    save_state(state)
    return p


def _kill(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def stop(p: subprocess.Popen, sig: int = signal.SIGINT, wait: float = 5.0) -> None:
    if p.poll() is None:
        _kill(p.pid, sig)
        try:
            p.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            _kill(p.pid, signal.SIGKILL)
            p.wait(timeout=wait)


def teardown() -> list[str]:
    """Remove every process and namespace of the lab; return what was removed (for `down`)."""
    removed = []
    for entry in load_state().get("pids", []):
        _kill(int(entry["pid"]), signal.SIGTERM)
    for ns in existing_namespaces():
        pids = sh(["ip", "netns", "pids", ns], check=False).stdout.split()
        for pid in pids:
            _kill(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = sh(["ip", "netns", "pids", ns], check=False).stdout.split()
            time.sleep(0.05)
        sh(["ip", "netns", "del", ns], check=False)
        removed.append(ns)
    for entry in load_state().get("pids", []):
        _kill(int(entry["pid"]), signal.SIGKILL)
    try:
        _state_file().unlink()
    except OSError:
        pass
    return removed
