"""What a run loads: each command imports what it needs and nothing else (the fixed cost of a run).

Why: on small and medium captures, the modules a run imports are most of its time (docs/performance.md);
`analyze --format json` must not pay for the text report (rich), the HTML page, the conn.log
writer, the lab, the probe or the host audit, and `dsrdiag --help` not for the analysis. Each test
runs the real CLI in a fresh interpreter and reads its sys.modules afterwards: which modules, not
how fast (speed is measured by bench/)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import CAPTURES, ROOT

_LOADED = """
import json, sys
from dsrdiag.cli.main import run
code = run(sys.argv[2:])
with open(sys.argv[1], "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""

NEVER_FOR_JSON = ("rich", "dsrdiag.report.terminal", "dsrdiag.report.html", "dsrdiag.report.markup",
                  "dsrdiag.report.connlog", "dsrdiag.report.junit", "dsrdiag.report.progress", "dsrdiag.cli.console",
                  "scapy", "lxml", "dsrdiag.lab", "dsrdiag.probe", "dsrdiag.audit", "dsrdiag.jobs.probe", "dsrdiag.jobs.audit")
"""Packages and modules `analyze --format json` has no use for (a name covers its submodules)."""


def _loaded(tmp_path, *args: str) -> tuple[int, set[str]]:
    out = tmp_path / "loaded.json"
    p = subprocess.run([sys.executable, "-c", _LOADED, str(out), *args], capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert out.exists(), p.stderr[-2000:]
    doc = json.loads(out.read_text())
    return doc["code"], set(doc["modules"])


def _under(modules: set[str], names) -> list[str]:
    return sorted(m for m in modules for n in names if m == n or m.startswith(n + "."))


def test_analyze_json_loads_neither_the_text_report_nor_the_other_commands_nor_the_writers_not_asked_for(tmp_path):
    code, modules = _loaded(tmp_path, "analyze", str(CAPTURES / "healthy.pcap"), "--format", "json", "--jobs", "1")
    assert code == 0
    assert "dsrdiag.jobs.analyze" in modules and "dsrdiag.report.jsondoc" in modules  # it did analyse and write
    assert _under(modules, NEVER_FOR_JSON) == []


def test_a_report_that_names_no_finding_loads_no_hashing_and_one_that_does_names_it_as_before(tmp_path):
    """hashlib (OpenSSL's loading: most of its import) is loaded when a finding is given its id
    (findings/causes.identify), not at every start; the ids are what they were (sha1 of the basis)."""
    code, modules = _loaded(tmp_path, "analyze", str(CAPTURES / "healthy.pcap"), "--format", "json", "--jobs", "1")
    assert code == 0 and _under(modules, ("hashlib", "_hashlib")) == []
    code, modules = _loaded(tmp_path, "analyze", str(CAPTURES / "snat.pcap"), "--format", "json", "--jobs", "1")
    assert "hashlib" in modules
    from hashlib import sha1

    from dsrdiag.findings.causes import identify
    from dsrdiag.findings.finding import Finding
    f = Finding(kind="snat_client_ip_lost", severity="error", vantages=("fw-in", "be1"), summary="s", evidence=(),
                subject="192.0.2.10")
    assert identify(f) == "F" + sha1(b"snat_client_ip_lost|be1,fw-in|||192.0.2.10").hexdigest()[:10]


@pytest.mark.parametrize("extra,wanted", [
    (["--conn-log", "{tmp}/conn.log"], "dsrdiag.report.connlog"),
    (["--junit", "{tmp}/junit.xml"], "dsrdiag.report.junit"),
    (["--html", "{tmp}/report.html"], "dsrdiag.report.html"),
])
def test_analyze_json_loads_each_writer_when_its_file_is_asked_for(tmp_path, extra, wanted):
    """The other side of the rule: the writer not loaded above is loaded when its output is wanted,
    and the file is written."""
    extra = [a.format(tmp=tmp_path) for a in extra]
    code, modules = _loaded(tmp_path, "analyze", str(CAPTURES / "healthy.pcap"), "--format", "json", "--jobs", "1", *extra)
    assert code == 0 and wanted in modules
    assert (tmp_path / extra[1].rpartition("/")[2]).stat().st_size > 0


def test_the_text_report_loads_rich(tmp_path):
    code, modules = _loaded(tmp_path, "analyze", str(CAPTURES / "healthy.pcap"), "--jobs", "1")
    assert code == 0 and "rich" in modules and "dsrdiag.report.terminal" in modules


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["lab", "list"], ["hostcheck", "--help"]])
def test_commands_that_analyse_no_capture_load_no_part_of_the_analysis(tmp_path, args):
    code, modules = _loaded(tmp_path, *args)
    assert code == 0
    assert _under(modules, ("dsrdiag.capture", "dsrdiag.decode", "dsrdiag.track", "dsrdiag.findings", "dsrdiag.jobs",
                            "rich")) == []
