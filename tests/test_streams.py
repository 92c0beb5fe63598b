"""Captures through pipes: `-`, a FIFO, /dev/stdin from a pipe and a process substitution read like
the file they carry (pcap, pcapng and both gzip-compressed), with the same frames, findings and
damage; a stream that ends early is damage. Real pipes made by real processes (cat, bash)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.conftest import CAPTURES, ROOT

ENV = dict(os.environ, PYTHONPATH=str(ROOT))
FORMATS = ["healthy.pcap", "healthy-client.pcapng", "healthy.pcap.gz", "healthy-client.pcapng.gz", "arp_leak.pcap"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("streams")
    for name in FORMATS:
        src = CAPTURES / name
        if name == "healthy-client.pcapng.gz":
            (d / name).write_bytes(gzip.compress((CAPTURES / "healthy-client.pcapng").read_bytes(), mtime=0))
        else:
            (d / name).write_bytes(src.read_bytes())
    return d


def _run(args: list[str], stdin=None, shell: str | None = None) -> tuple[int, dict | None, str]:
    cmd = ["bash", "-c", shell] if shell else [sys.executable, "-m", "dsrdiag", *args]
    p = subprocess.run(cmd, stdin=stdin, capture_output=True, timeout=60, env=ENV)
    out = p.stdout.decode()
    return p.returncode, (json.loads(out) if out.strip() else None), p.stderr.decode()


def _same_as_file(doc: dict, path_shown: str) -> str:
    """The document with the capture's path replaced: everything else must equal the file's."""
    for c in doc["captures"]:
        c["path"] = "<capture>"
    text = json.dumps(doc, sort_keys=True)
    return text.replace(json.dumps(path_shown), '"<capture>"')


def _vantage(name: str) -> str:
    return name.split(".")[0]


def _reference(inputs: Path, name: str) -> tuple[int, str]:
    p = inputs / name
    code, doc, err = _run(["analyze", f"{_vantage(name)}={p}", "-f", "json"])
    assert doc is not None, err
    return code, _same_as_file(doc, str(p))


def _cat(path: Path) -> subprocess.Popen:
    """A real pipe: `cat path |`."""
    return subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE)


@pytest.mark.parametrize("name", FORMATS)
def test_dash_reads_standard_input_like_the_file(inputs, name):
    want_code, want = _reference(inputs, name)
    cat = _cat(inputs / name)
    code, doc, err = _run(["analyze", f"{_vantage(name)}=-", "-f", "json"], stdin=cat.stdout)
    cat.wait()
    assert doc is not None, err
    assert (code, _same_as_file(doc, "-")) == (want_code, want)


@pytest.mark.parametrize("name", FORMATS)
def test_dev_stdin_from_a_pipe_reads_like_the_file(inputs, name):
    want_code, want = _reference(inputs, name)
    cat = _cat(inputs / name)
    code, doc, err = _run(["analyze", f"{_vantage(name)}=/dev/stdin", "-f", "json"], stdin=cat.stdout)
    cat.wait()
    assert doc is not None, err
    assert (code, _same_as_file(doc, "/dev/stdin")) == (want_code, want)


@pytest.mark.parametrize("name", FORMATS)
def test_process_substitution_reads_like_the_file(inputs, name):
    want_code, want = _reference(inputs, name)
    shell = (f"{sys.executable} -m dsrdiag analyze {_vantage(name)}=<(cat '{inputs / name}') -f json; "
             "rc=$?; echo \"$rc\" >&2; exit $rc")
    code, doc, err = _run([], shell=shell)
    assert doc is not None, err
    shown = doc["captures"][0]["path"]
    assert shown.startswith("/dev/fd/") or shown.startswith("/proc/")
    assert (code, _same_as_file(doc, shown)) == (want_code, want)


@pytest.mark.parametrize("name", FORMATS)
def test_fifo_is_opened_once_and_reads_like_the_file(inputs, name, tmp_path):
    want_code, want = _reference(inputs, name)
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    data = (inputs / name).read_bytes()

    def writer():  # the writer writes once: a reader that opened the FIFO twice would hang
        with open(fifo, "wb") as f:
            f.write(data)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    code, doc, err = _run(["analyze", f"{_vantage(name)}={fifo}", "-f", "json"])
    t.join(timeout=10)
    assert doc is not None, err
    assert (code, _same_as_file(doc, str(fifo))) == (want_code, want)


@pytest.mark.parametrize("name", ["healthy.pcap", "healthy.pcap.gz"])
def test_classic_pcap_streams_are_read_by_the_c_walker(inputs, name):
    from dsrdiag.capture import pcapfile

    if pcapfile._fastpcap is None:
        pytest.skip("the C walker was not built (no compiler)")
    cat = _cat(inputs / name)
    code, doc, err = _run(["analyze", "-", "-f", "json"], stdin=cat.stdout)
    cat.wait()
    assert doc["captures"][0]["reader"] == "c", err


@pytest.mark.parametrize("name", FORMATS)
def test_a_stream_that_ends_early_is_damage_reported_as_for_the_cut_file(inputs, name, tmp_path):
    data = (inputs / name).read_bytes()
    cut = tmp_path / ("cut-" + name)
    cut.write_bytes(data[: len(data) * 2 // 3])
    code_f, doc_f, err_f = _run(["analyze", str(cut), "-f", "json"])
    assert doc_f is not None, err_f
    damage = doc_f["captures"][0]["damage"]
    assert damage and code_f == 3
    cat = _cat(cut)
    code, doc, err = _run(["analyze", "-", "-f", "json"], stdin=cat.stdout)
    cat.wait()
    assert code == 3 and doc["captures"][0]["damage"] == damage
    assert doc["captures"][0]["packets"] == doc_f["captures"][0]["packets"] > 0


def test_a_dash_given_twice_is_a_usage_error():
    p = subprocess.run([sys.executable, "-m", "dsrdiag", "analyze", "-", "b=-"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60, env=ENV)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "read only once" in p.stderr


def test_empty_standard_input_is_a_one_line_error():
    p = subprocess.run([sys.executable, "-m", "dsrdiag", "analyze", "-"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60, env=ENV)
    assert p.returncode == 2 and p.stderr == "dsrdiag: error: standard input is empty, not a capture\n"
