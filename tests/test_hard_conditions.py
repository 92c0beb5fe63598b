"""Hard conditions give their documented one-line error and exit code (docs/exit-codes.md), never
"internal error, please report": a file name that is not UTF-8, no usable temporary folder, a
folder or file that cannot be read, standard output on a full disk, standard output closed early.

Real conditions: /dev/full, a pipe whose reader closed, TMPDIR pointing at a missing path or a
file, and (as root, who bypasses permissions) a process without CAP_DAC_OVERRIDE via setpriv."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CAPTURES, ROOT

pytestmark = pytest.mark.usefixtures("tracker")  # every test on the C tracker and on the Python reference


ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def _run(*args, stdout=subprocess.PIPE, env=None, prefix=()) -> tuple[int, bytes, str]:
    p = subprocess.run([*prefix, sys.executable, "-m", "dsrdiag", *map(os.fsdecode, args)], stdout=stdout,
                       stderr=subprocess.PIPE, timeout=120, env=env or ENV, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout or b"", p.stderr.decode("utf-8", "replace")


def _one_line(err: str, *words: str) -> None:
    assert err.count("\n") == 1 and err.startswith("dsrdiag: error: "), err
    assert "internal error" not in err and "Traceback" not in err
    for w in words:
        assert w in err, err


# ---- file names that are not UTF-8 ------------------------------------------------------------

@pytest.mark.parametrize("sample", ["healthy.pcap", "healthy-client.pcapng", "healthy.pcap.gz"])
def test_a_file_name_that_is_not_utf8_is_read_and_reported_in_valid_utf8(tmp_path, sample):
    suffix = sample[sample.index("."):]
    name = os.fsencode(tmp_path) + b"/caf\xe9\xff" + suffix.encode()
    shutil.copyfile(CAPTURES / sample, name)
    code_ref, ref, _ = _run("analyze", CAPTURES / sample, "-f", "json")
    code, out, err = _run("analyze", name, "-f", "json")
    assert code == code_ref, err
    doc = json.loads(out.decode("utf-8"))  # strict: the document is valid UTF-8
    assert doc["captures"][0]["path"].endswith("caf\\xe9\\xff" + suffix)
    assert doc["captures"][0]["packets"] == json.loads(ref)["captures"][0]["packets"]
    code, out, err = _run("analyze", name)
    text = out.decode("utf-8")
    assert code == code_ref and "caf\\xe9\\xff" in text and err == ""
    html = tmp_path / "r.html"
    code, _, err = _run("analyze", name, "--html", html)
    assert code == code_ref and "caf\\xe9\\xff" in html.read_bytes().decode("utf-8")


# ---- no usable temporary folder ---------------------------------------------------------------

def _tmpdirs(tmp_path: Path) -> list[Path]:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x")
    return [tmp_path / "missing", a_file]


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_no_temporary_folder_is_not_needed_by_a_run_that_does_not_spill(tmp_path, kind):
    tmpdir = _tmpdirs(tmp_path)[0 if kind == "missing" else 1]
    env = dict(ENV, TMPDIR=str(tmpdir))
    code_ref, ref, _ = _run("analyze", CAPTURES / "wrong_source.pcap", "-f", "json")
    code, out, err = _run("analyze", CAPTURES / "wrong_source.pcap", "-f", "json", env=env)
    assert (code, out) == (code_ref, ref), err
    code, out, err = _run("analyze", CAPTURES / "wrong_source.pcap", CAPTURES / "healthy.pcap", "-f", "json",
                          "--jobs", "2", env=env)
    assert code == code_ref and json.loads(out)["findings"], err


@pytest.mark.parametrize("kind", ["missing", "a file"])
def test_a_run_that_must_spill_without_a_temporary_folder_says_so_in_one_line(tmp_path, kind):
    tmpdir = _tmpdirs(tmp_path)[0 if kind == "missing" else 1]
    env = dict(ENV, TMPDIR=str(tmpdir), DSRDIAG_SPILL_AT="2")
    code, out, err = _run("analyze", CAPTURES / "healthy.pcap", "-f", "json", env=env)
    assert code == 2
    _one_line(err, "no usable temporary folder", str(tmpdir))
    assert not (tmp_path / "missing").exists()  # nothing made elsewhere instead: no silent fallback


def _no_temp_anywhere(*dsrdiag_args: str, spill_at: str = "") -> subprocess.CompletedProcess:
    """A hardened container: /tmp and /var/tmp read-only, TMPDIR unset, the working folder /proc
    (Python's tempfile tries all of them): a private mount namespace, as root."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare (util-linux) for a private mount namespace")
    args = " ".join(f"'{a}'" for a in dsrdiag_args)
    script = ("mount -t tmpfs -o ro tmpfs /tmp && mount -t tmpfs -o ro tmpfs /var/tmp && cd /proc && "
              f"exec env -u TMPDIR DSRDIAG_SPILL_AT={spill_at} PYTHONPATH='{ROOT}' '{sys.executable}' -m dsrdiag {args}")
    p = subprocess.run([unshare, "-m", "bash", "-c", script], capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
    if b"mount:" in p.stderr or b"unshare:" in p.stderr:
        pytest.skip(f"no private mount namespace here: {p.stderr.decode()[:200]}")
    return p


def test_a_container_with_no_writable_temporary_folder_still_analyses_a_capture_that_does_not_spill():
    code_ref, ref, _ = _run("analyze", CAPTURES / "wrong_source.pcap", "-f", "json")
    p = _no_temp_anywhere("analyze", str(CAPTURES / "wrong_source.pcap"), "-f", "json")
    assert (p.returncode, p.stdout) == (code_ref, ref), p.stderr.decode()


def test_a_container_with_no_writable_temporary_folder_says_so_when_records_must_spill():
    p = _no_temp_anywhere("analyze", str(CAPTURES / "wrong_source.pcap"), "-f", "json", spill_at="2")
    assert p.returncode == 2
    _one_line(p.stderr.decode(), "no usable temporary folder", "set TMPDIR")


def _without_dac_override() -> tuple[str, ...]:
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("root bypasses permissions and setpriv (util-linux) is not installed to drop that")
    return (setpriv, "--bounding-set", "-dac_override,-dac_read_search")


def test_a_read_only_temporary_folder_is_reported_when_records_must_spill(tmp_path):
    prefix = _without_dac_override()
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    env = dict(ENV, TMPDIR=str(ro), DSRDIAG_SPILL_AT="2")
    code, _, err = _run("analyze", CAPTURES / "healthy.pcap", "-f", "json", env=env, prefix=prefix)
    assert code == 2
    _one_line(err, "no usable temporary folder", "Permission denied")
    env = dict(ENV, TMPDIR=str(ro))  # and a run that does not spill does not need it
    code, out, err = _run("analyze", CAPTURES / "healthy.pcap", "-f", "json", env=env, prefix=prefix)
    assert code == 0 and json.loads(out)["verdict"]["state"] == "healthy", err


# ---- folders and files that cannot be read ----------------------------------------------------

def test_a_folder_that_cannot_be_listed_is_a_one_line_error(tmp_path):
    prefix = _without_dac_override()
    d = tmp_path / "locked"
    d.mkdir()
    shutil.copy(CAPTURES / "healthy.pcap", d)
    d.chmod(0)
    try:
        code, _, err = _run("analyze", d, prefix=prefix)
        assert code == 2
        _one_line(err, "folder cannot be read", "Permission denied")
        code, _, err = _run("analyze", d / "healthy.pcap", prefix=prefix)  # under a folder we cannot search
        assert code == 2
        _one_line(err, "permission denied")
    finally:
        d.chmod(0o755)


# ---- standard output --------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["text", "json"])
def test_standard_output_on_a_full_disk_is_a_one_line_error(fmt):
    with open("/dev/full", "wb") as full:
        code, _, err = _run("analyze", CAPTURES / "healthy.pcap", "-f", fmt, stdout=full)
    assert code == 2
    _one_line(err, "cannot write the report to standard output", "No space left on device")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_standard_output_closed_early_is_not_read_as_findings(fmt):
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first byte: every write is EPIPE
    try:
        code, _, err = _run("analyze", CAPTURES / "healthy.pcap", "-f", fmt, stdout=w)
    finally:
        os.close(w)
    assert code == 141
    _one_line(err, "standard output was closed")


def test_head_of_a_long_report_exits_141_not_1(tmp_path):
    # the real pipeline: `dsrdiag analyze ... -v | head -1`, a report far longer than a pipe holds
    from tests.test_signals import _many_connections

    cap = tmp_path / "many.pcap"
    _many_connections(cap, 3000)
    shell = f"{sys.executable} -m dsrdiag analyze '{cap}' -v | head -1; echo ${{PIPESTATUS[0]}} >&2"
    p = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120, env=ENV)
    *lines, status = p.stderr.splitlines()
    assert p.stdout.startswith("VERDICT:") and status == "141"
    _one_line("\n".join(lines) + "\n", "standard output was closed")


def test_a_healthy_capture_to_a_working_stdout_still_exits_0():
    # the counterpart: none of the above fires when output is fine
    code, out, err = _run("analyze", CAPTURES / "healthy.pcap")
    assert code == 0 and err == "" and out.startswith(b"VERDICT: HEALTHY")
