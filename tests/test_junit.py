"""--junit writes a JUnit XML report that Jenkins' schema accepts (tests/data/junit/junit-10.xsd,
lxml), with one test case per check and back-end that keeps its name from run to run, failures
exactly when the run exits 1 (each with the finding's summary and display filter), inconclusive
runs as skipped with the reason, damaged captures as errors; for analyze, probe and hostcheck.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import CAPTURES, ROOT, run_cli

lxml_etree = pytest.importorskip("lxml.etree", reason="lxml (the test extras) validates against the schema")
SCHEMA = lxml_etree.XMLSchema(lxml_etree.parse(str(ROOT / "tests" / "data" / "junit" / "junit-10.xsd")))
WINDOWS_GOOD = ROOT / "tests" / "data" / "windows" / "exch1-good.txt"
SET = [f"{v}={CAPTURES / 'paths' / 'wrong_source' / (v + '.pcap')}" for v in ("client", "fw-out", "fw-in", "lb", "be1", "be2")]


def junit(tmp_path, *args) -> tuple[int, ET.Element, str]:
    out = tmp_path / "junit.xml"
    r = run_cli(*args, "--junit", str(out))
    assert "Traceback" not in r.err, r.err
    text = out.read_text(encoding="utf-8")
    doc = lxml_etree.fromstring(text.encode("utf-8"))
    assert SCHEMA.validate(doc), SCHEMA.error_log
    return r.code, ET.fromstring(text), text


def cases(root: ET.Element) -> dict[tuple[str, str], ET.Element]:
    return {(c.get("classname"), c.get("name")): c for c in root.iter("testcase")}


def test_a_broken_site_fails_the_checks_that_found_it_and_passes_the_others(tmp_path):
    code, root, _ = junit(tmp_path, "analyze", *SET)
    assert code == 1
    cs = cases(root)
    failed = {k for k, c in cs.items() if c.find("failure") is not None}
    assert ("dsrdiag.analyze.return_source_not_vip", "mx2.example.net") in failed
    assert ("dsrdiag.analyze.firewall_drop", "site") in failed
    assert ("dsrdiag.analyze.verdict", "verdict") in failed
    # must NOT fire: the healthy back-end's checks of the same kind pass
    assert ("dsrdiag.analyze.return_source_not_vip", "mx1.example.net") in cs
    assert ("dsrdiag.analyze.return_source_not_vip", "mx1.example.net") not in failed
    f = cs[("dsrdiag.analyze.return_source_not_vip", "mx2.example.net")].find("failure")
    assert "answered from 192.0.2.12" in f.get("message")
    assert "display filter (be2): frame.number" in f.text and "tshark -r " in f.text
    suite = root.find("testsuite")
    assert int(suite.get("failures")) == len(failed) and int(suite.get("tests")) == len(cs)
    assert float(suite.get("time")) > 0 and suite.get("timestamp") and suite.get("hostname")


def test_a_healthy_site_has_no_failure_and_the_path_checks_of_one_capture_are_skipped(tmp_path):
    code, root, _ = junit(tmp_path, "analyze", str(CAPTURES / "healthy.pcap"))
    assert code == 0
    cs = cases(root)
    assert not [k for k, c in cs.items() if c.find("failure") is not None or c.find("error") is not None]
    skipped = {k[0] for k, c in cs.items() if c.find("skipped") is not None}
    assert skipped == {"dsrdiag.analyze.firewall_drop", "dsrdiag.analyze.lb_mode_mixed"}
    assert ("dsrdiag.analyze.capture", "healthy") in cs


def test_the_test_cases_are_the_same_for_a_healthy_and_a_broken_capture_of_the_same_site(tmp_path):
    _, a, _ = junit(tmp_path, "analyze", str(CAPTURES / "paths" / "healthy" / "be2.pcap"))
    _, b, _ = junit(tmp_path, "analyze", str(CAPTURES / "paths" / "wrong_source" / "be2.pcap"))
    assert {k[0] for k in cases(a)} == {k[0] for k in cases(b)}


def test_failures_follow_fail_on_as_the_exit_code_does(tmp_path):
    code, root, _ = junit(tmp_path, "analyze", *SET, "--fail-on", "never")
    assert code == 0 and not [c for c in root.iter("testcase") if c.find("failure") is not None]
    code, root, _ = junit(tmp_path, "analyze", str(CAPTURES / "snat_proxy.pcap"))
    failures = [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert (code == 1) == bool(failures)


def test_an_inconclusive_run_skips_every_check_with_the_reason(tmp_path):
    code, root, _ = junit(tmp_path, "analyze", str(CAPTURES / "healthy.pcap"), "--vip", "203.0.113.99")
    assert code == 4
    cs = list(root.iter("testcase"))
    judged = [c for c in cs if c.get("classname") != "dsrdiag.analyze.capture"]
    assert judged and all(c.find("skipped") is not None for c in judged)
    assert all("INCONCLUSIVE" in c.find("skipped").get("message") for c in judged)
    assert not [c for c in cs if c.find("failure") is not None]


def test_a_damaged_capture_is_an_error_of_its_capture_check(tmp_path):
    code, root, _ = junit(tmp_path, "analyze", str(CAPTURES / "damaged.pcap"))
    assert code == 3
    c = cases(root)[("dsrdiag.analyze.capture", "damaged")]
    assert c.find("error") is not None and c.find("error").get("type") == "damaged"
    assert root.find("testsuite").get("errors") == "1"


def test_hostile_packet_text_stays_well_formed_xml(tmp_path):
    _, _, text = junit(tmp_path, "analyze", str(CAPTURES / "hostile_banner.pcap"), "--fail-on", "info")
    assert "\x1b" not in text and "\x07" not in text


def test_hostcheck_writes_one_case_per_host_setting_check(tmp_path):
    text = WINDOWS_GOOD.read_text()
    bad = tmp_path / "bad.txt"
    bad.write_text(text.replace("Weak Host Sends                    : enabled", "Weak Host Sends                    : disabled"))
    code, root, _ = junit(tmp_path, "hostcheck", "--vip", "192.0.2.25", "--from", str(bad))
    assert code == 1
    failed = {c.get("classname") for c in root.iter("testcase") if c.find("failure") is not None}
    assert "dsrdiag.hostcheck.weakhost_send_disabled" in failed
    assert "dsrdiag.hostcheck.weakhost_receive_disabled" not in failed
    code, root, _ = junit(tmp_path, "hostcheck", "--vip", "192.0.2.25", "--from", str(WINDOWS_GOOD))
    assert code == 0 and not [c for c in root.iter("testcase") if c.find("failure") is not None]
    assert all(c.get("classname").startswith("dsrdiag.hostcheck.") for c in root.iter("testcase"))
    names = {c.get("name") for c in root.iter("testcase") if c.get("classname") != "dsrdiag.hostcheck.verdict"}
    host = run_cli("hostcheck", "--vip", "192.0.2.25", "--from", str(WINDOWS_GOOD), "--format", "json").json()["host"]["hostname"]
    assert host and names == {host}, "one back-end, the host read (the saved output's host name); no 'site' beside it"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="the probe captures on lo (root)")
def test_probe_of_a_closed_loopback_port_writes_a_valid_report(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    out = tmp_path / "probe.xml"
    p = subprocess.run([sys.executable, "-m", "dsrdiag", "probe", "127.0.0.1", "--port", str(port), "--count", "1",
                        "--timeout", "1", "--junit", str(out)], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in p.stderr and p.returncode != 2, p.stderr
    doc = lxml_etree.parse(str(out))
    assert SCHEMA.validate(doc), SCHEMA.error_log
    names = {c.get("classname") for c in doc.iter("testcase")}
    assert "dsrdiag.probe.sessions_failed" in names and "dsrdiag.probe.verdict" in names
    failures = [c for c in doc.iter("testcase") if c.find("failure") is not None]
    assert (p.returncode == 1) == bool(failures)


def test_the_schema_rejects_a_report_without_what_jenkins_requires():
    """The schema is strict enough to fail: a testsuite without its counts is not JUnit."""
    bad = lxml_etree.fromstring(b'<testsuites><testsuite name="x"><testcase name="a"/></testsuite></testsuites>')
    assert not SCHEMA.validate(bad)


def test_a_junit_path_that_names_a_hostcheck_input_is_refused_and_the_input_is_unchanged(tmp_path):
    saved = tmp_path / "host.txt"
    saved.write_text(WINDOWS_GOOD.read_text())
    before = saved.read_bytes()
    r = run_cli("hostcheck", "--vip", "192.0.2.25", "--from", str(saved), "--junit", str(saved))
    assert r.code == 2 and "input files" in r.err and "Traceback" not in r.err
    assert saved.read_bytes() == before


def test_an_unwritable_junit_path_is_a_one_line_usage_error(tmp_path):
    r = run_cli("analyze", str(CAPTURES / "healthy.pcap"), "--junit", str(tmp_path / "missing" / "j.xml"))
    assert r.code == 2 and "--junit" in r.err and r.err.strip().count("\n") == 0
