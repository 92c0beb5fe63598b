"""End to end against the real Linux kernel: for every lab scenario, build the site in network
namespaces, send real SMTP sessions, capture at every vantage, and check that `dsrdiag analyze`
reports exactly the expected findings at each vantage (alone and all captures together), naming
only broken back-ends, and nothing on the healthy site.

Marked `lab`: needs root, network namespaces, nftables and tcpdump. Elsewhere it skips with the
reason. Deselect with `-m "not lab"`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from dsrdiag.lab import netns
from dsrdiag.lab.scenarios import SCENARIOS
from dsrdiag.lab.site import BACKENDS, NAMESPACES, VANTAGES
from tests.conftest import run_cli

pytestmark = pytest.mark.lab


def _lab_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "nft", "tcpdump", "openssl"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    probe = "dsrdiag-probe-skipcheck"
    p = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if p.returncode != 0:
        return f"cannot create network namespaces: {p.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


REASON = _lab_unavailable()
needs_lab = pytest.mark.skipif(REASON is not None, reason=f"lab: {REASON}")


@pytest.fixture(scope="module")
def lab_runs(tmp_path_factory):
    """Run every scenario once (the runs are what the tests below examine)."""
    if REASON:
        pytest.skip(f"lab: {REASON}")
    base = tmp_path_factory.mktemp("lab")
    out = {}
    try:
        for name in SCENARIOS:
            d = base / name
            r = run_cli("lab", "run", name, "--out", str(d), "--count", "6", "--timeout", "3.5")
            assert r.code == 0, f"lab run {name}: {r.err}"
            out[name] = d
    finally:
        netns.teardown()
    return out


def analyze(d, *vantages):
    args = [f"{v}={d / (v + '.pcap')}" for v in vantages]
    r = run_cli("analyze", *args, "--topology", str(d / "topology.toml"), "--format", "json")
    assert r.code in (0, 1), r.err
    return r.json()


def kinds_by_vantage(doc):
    """vantage -> kinds; a finding grouped across vantages ("fw-in, be1") counts at each of them."""
    got: dict[str, set[str]] = {}
    for f in doc["findings"]:
        if f["severity"] != "info":
            vs = f["vantage"].split(", ")
            assert len(set(vs)) == len(vs), f["vantage"]
            for v in vs:
                got.setdefault(v, set()).add(f["kind"])
    return got


@needs_lab
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_capture_alone_gives_exactly_the_expected_findings(lab_runs, name):
    d = lab_runs[name]
    sc = SCENARIOS[name]
    broken_macs = {b.mac for b in BACKENDS if b.role in sc.broken}
    for vantage, _ in VANTAGES:
        doc = analyze(d, vantage)
        got = kinds_by_vantage(doc).get(vantage, set())
        assert got == set(sc.expected.get(vantage, ())), f"{name} at {vantage}: {json.dumps(doc['findings'], indent=1)[:2500]}"
        for f in doc["findings"]:
            if f["backend"] and f["kind"] != "snat_client_ip_lost":
                assert f["backend"]["mac"] in broken_macs, f"{name} at {vantage} blames a healthy back-end: {f['summary']}"


@needs_lab
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_all_captures_together_keep_each_finding_at_its_vantage(lab_runs, name):
    d = lab_runs[name]
    sc = SCENARIOS[name]
    doc = analyze(d, *[v for v, _ in VANTAGES])
    want = {v: set(k) for v, k in sc.expected.items() if k}
    want.update({v: set(k) for v, k in sc.path_expected.items()})  # what only the captures together show
    assert kinds_by_vantage(doc) == want
    if not sc.expected:
        assert doc["verdict"]["healthy"]
    # the same fault seen at several vantages is one finding, with frames from each of them
    for f in doc["findings"]:
        if ", " in f["vantage"]:
            assert {e["vantage"] for e in f["evidence"]} == set(f["vantage"].split(", ")), f


@needs_lab
def test_correlated_paths_place_the_drop_and_estimate_clock_offsets(lab_runs):
    d = lab_runs["asym_bypass"]
    doc = analyze(d, *[v for v, _ in VANTAGES])
    corr = doc["correlation"]
    assert corr["reference"] == "client"
    assert {o["vantage"] for o in corr["clock_offsets"]} >= {"fw-out", "fw-in", "lb"}
    assert all(abs(o["offset_s"]) < 0.01 for o in corr["clock_offsets"])  # one machine, one clock
    acks = [p for f in corr["flows"] for p in f["packets"] if p["direction"] == "client_to_server" and p["lost_before"]]
    assert acks and all(p["last_seen"] == "fw-out" and p["lost_before"] == "fw-in" for p in acks)
    bypass = next(f for f in doc["findings"] if f["vantage"] == "fw-in/fw-out")
    assert "02:00:00:00:00:fe" in bypass["summary"]  # the bypass router's MAC is named
    healthy = analyze(lab_runs["healthy"], *[v for v, _ in VANTAGES])
    assert not any(p["lost_before"] for f in healthy["correlation"]["flows"] for p in f["packets"])


@needs_lab
def test_lb_mode_is_judged_from_the_packets_and_mixed_modes_are_a_finding(lab_runs):
    modes = lambda doc: {f["mode"] for f in doc["correlation"]["flows"] if f["mode"]}  # noqa: E731
    assert modes(analyze(lab_runs["healthy"], *[v for v, _ in VANTAGES])) == {"dsr"}
    snat = analyze(lab_runs["snat"], *[v for v, _ in VANTAGES])
    assert modes(snat) == {"full-nat"}
    full_nat = [f for f in snat["correlation"]["flows"] if f["mode"] == "full-nat"]
    assert full_nat and all(f["linked"] and " -> 192.0.2.1" in f["linked"] for f in full_nat)  # seen behind the NAT
    # one site where be1 is reached by DSR and be2 through full NAT: the front captures of both runs
    h, n = lab_runs["healthy"], lab_runs["snat"]
    r = run_cli("analyze", f"client={h / 'client.pcap'}", f"be1={h / 'be1.pcap'}", f"fw-out={n / 'fw-out.pcap'}",
                f"be2={n / 'be2.pcap'}", "--vip", "192.0.2.25", "--format", "json")
    doc = r.json()
    assert modes(doc) == {"dsr", "full-nat"}
    (mixed,) = [f for f in doc["findings"] if f["kind"] == "lb_mode_mixed"]
    assert "by dsr" in mixed["summary"] and "by full-nat" in mixed["summary"] and mixed["evidence"]


@needs_lab
def test_healthy_site_completes_every_session_through_both_backends(lab_runs):
    for name in ("healthy", "healthy-6"):
        sessions = json.loads((lab_runs[name] / "sessions.json").read_text())
        assert all(s["outcome"] == "ok" and s["starttls"] for s in sessions)
        assert {s["banner_host"] for s in sessions} == {"mx1.lab.example", "mx2.lab.example"}


@needs_lab
def test_every_scenario_proved_its_fault_without_dsrdiag(lab_runs):
    for name, d in lab_runs.items():
        proofs = json.loads((d / "scenario.json").read_text())["proofs"]
        assert proofs and all(p["ok"] for p in proofs), name


@needs_lab
def test_two_ups_in_a_row_leave_no_debris_and_down_removes_everything():
    try:
        assert run_cli("lab", "up", "healthy").code == 0
        assert run_cli("lab", "up", "mixed").code == 0
        st = json.loads(run_cli("lab", "status").out)
        assert st["scenario"] == "mixed" and sorted(st["namespaces"]) == sorted(NAMESPACES)
        assert len([p for p in st["processes"] if p["role"].startswith("smtpd")]) == len(BACKENDS)
        pids = [p["pid"] for p in st["processes"]]
    finally:
        r = run_cli("lab", "down")
    assert r.code == 0
    st = json.loads(run_cli("lab", "status").out)
    assert st["namespaces"] == [] and st["processes"] == []
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_unknown_scenario_is_a_one_line_error():
    r = run_cli("lab", "run", "nosuch", "--out", "/tmp/x")
    assert r.code == 2 and r.err.strip().startswith("dsrdiag: error: unknown scenario 'nosuch'")


def test_lab_without_root_says_so(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(netns.LabError, match="needs root"):
        netns.preflight()


def test_lab_with_a_missing_tool_names_the_package(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda t: None if t == "nft" else real_which(t))
    with pytest.raises(netns.LabError, match=r"nft \(apt-get install nftables\)"):
        netns.preflight()
