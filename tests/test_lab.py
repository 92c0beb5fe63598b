"""End to end against the real Linux kernel: for every lab scenario, build the site in network
namespaces, send real SMTP sessions, capture at every vantage, prove the fault with tcpdump alone,
and check that `dsrdiag analyze` concludes what the packets physically allow (dsrdiag/lab/scenarios.py
says what and why; docs/lab.md shows it as a table):

- each capture alone, with no option at all (no topology, no --vip, --lb-mac or --backend): the
  finding kinds at error/warning severity, the root causes among them (explained_by null), and the
  verdict state with its exit code (0 healthy, 1 broken, 4 inconclusive);
- all captures together, with the run's topology.toml and without it: the same three;
- every finding's links (explained_by, consequences, verdict.causes) point at findings that exist;
- the analyser never blames a healthy back-end; a wrong port or VIP, or a capture of one direction
  only, is inconclusive (exit 4), never healthy.

Marked `lab`: run with `python3 -m pytest --lab` (root, network namespaces, nftables, tcpdump); the
other tests here need neither root nor the lab. Nothing runs at import time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from dsrdiag.lab import netns
from dsrdiag.lab.scenarios import EXIT, HEALTHY, INCONCLUSIVE, SCENARIOS, expectations_markdown
from dsrdiag.lab.site import BACKENDS, BYP_IN, BYP_OUT, NAMESPACES, VANTAGES, VIP4
from tests.conftest import ROOT, run_cli

ALL = [v for v, _ in VANTAGES]
JUDGED = ("error", "warning")
STATE_OF_EXIT = {code: state for state, code in EXIT.items()}


@pytest.fixture(scope="module")
def lab_runs(lab_host, tmp_path_factory):
    """Run every scenario once (the runs are what the tests below examine)."""
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


class Analysis:
    def __init__(self, label: str, code: int, doc: dict, vantages: list[str]):
        self.label, self.code, self.doc, self.vantages = label, code, doc, vantages

    @property
    def findings(self) -> list[dict]:
        return self.doc["findings"]

    @property
    def judged(self) -> list[dict]:
        return [f for f in self.findings if f["severity"] in JUDGED]

    def kinds(self) -> set[str]:
        return {f["kind"] for f in self.judged}

    def causes(self) -> set[str]:
        return {f["kind"] for f in self.judged if field(f, "explained_by") is None}

    def state(self):
        v = self.doc["verdict"]
        return v.get("state") if isinstance(v, dict) else v

    def show(self) -> str:
        """The findings in one line each, for a failure message."""
        rows = [f"{self.label}: exit {self.code}, verdict {json.dumps(self.doc['verdict'])[:300]}"]
        for f in self.findings:
            rows.append(f"  {f['severity']:7} {f['kind']} at {f.get('vantages', f.get('vantage'))} id={f.get('id')} "
                        f"explained_by={f.get('explained_by', '<absent>')}: {f['summary'][:140]}")
        return "\n".join(rows)


def field(f: dict, name: str):
    """A report-2.0 field of a finding; its absence is a failure that says so."""
    assert name in f, f"{f.get('kind', 'the verdict')} has no {name!r} (report version 2.0): {sorted(f)}"
    return f[name]


def _analyze(label: str, args: list[str], vantages: list[str]) -> Analysis:
    r = run_cli("analyze", *args, "--format", "json")
    assert r.code in (0, 1, 4), f"{label}: exit {r.code}: {r.err.strip()[-500:]}"
    assert "Traceback" not in r.err, r.err
    return Analysis(label, r.code, r.json(), vantages)


@pytest.fixture(scope="module")
def analysed(lab_runs):
    """analysed(name, vantage) = that capture alone, no option; analysed(name, "all") / (name, "bare") =
    all captures together with / without topology.toml. Each is run once per session."""
    cache: dict[tuple, Analysis] = {}

    def get(name: str, what: str) -> Analysis:
        if (name, what) not in cache:
            d = lab_runs[name]
            if what in ALL:
                cache[name, what] = _analyze(f"{name}: {what} alone", [str(d / f"{what}.pcap")], [what])
            else:
                topo = ["--topology", str(d / "topology.toml")] if what == "all" else []
                cache[name, what] = _analyze(f"{name}: all captures{' + topology' if topo else ', no options'}",
                                             [str(d / f"{v}.pcap") for v in ALL] + topo, ALL)
        return cache[name, what]

    return get


ALONE = [pytest.param(n, v, id=f"{n}@{v}") for n in SCENARIOS for v in ALL]
TOGETHER = [pytest.param(n, w, id=f"{n}@{w}") for n in SCENARIOS for w in ("all", "bare")]


def _want(name: str, what: str):
    sc = SCENARIOS[name]
    return sc.alone[what] if what in ALL else (sc.together if what == "all" else sc.without_topology)


# ---- each capture alone, no options ---------------------------------------------------------
@pytest.mark.lab
@pytest.mark.parametrize("name,vantage", ALONE)
def test_each_capture_alone_reports_exactly_the_kinds_its_packets_show(analysed, name, vantage):
    a, want = analysed(name, vantage), _want(name, vantage)
    assert a.kinds() == set(want.kinds), f"want {sorted(want.kinds)} ({want.why})\n{a.show()}"


@pytest.mark.lab
@pytest.mark.parametrize("name,vantage", ALONE)
def test_each_capture_alone_names_the_root_causes_it_can_see(analysed, name, vantage):
    a, want = analysed(name, vantage), _want(name, vantage)
    assert a.causes() == set(want.causes), f"want causes {sorted(want.causes)} ({want.why})\n{a.show()}"


@pytest.mark.lab
@pytest.mark.parametrize("name,vantage", ALONE)
def test_each_capture_alone_gives_the_verdict_and_exit_code_its_packets_allow(analysed, name, vantage):
    a, want = analysed(name, vantage), _want(name, vantage)
    assert (a.state(), a.code) == (want.state, want.exit_code), f"want {want.state} ({want.why})\n{a.show()}"


# ---- all captures together, with and without the topology -------------------------------------
@pytest.mark.lab
@pytest.mark.parametrize("name,what", TOGETHER)
def test_all_captures_together_report_exactly_the_expected_kinds(analysed, name, what):
    a, want = analysed(name, what), _want(name, what)
    assert a.kinds() == set(want.kinds), f"want {sorted(want.kinds)} ({want.why})\n{a.show()}"


@pytest.mark.lab
@pytest.mark.parametrize("name,what", TOGETHER)
def test_all_captures_together_name_only_the_root_causes(analysed, name, what):
    a, want = analysed(name, what), _want(name, what)
    assert a.causes() == set(want.causes), f"want causes {sorted(want.causes)} ({want.why})\n{a.show()}"
    causes = field(a.doc["verdict"], "causes") if isinstance(a.doc["verdict"], dict) else None
    by_id = {field(f, "id"): f for f in a.findings}
    assert causes is not None and {by_id[c]["kind"] for c in causes if c in by_id} == set(want.causes), a.show()


@pytest.mark.lab
@pytest.mark.parametrize("name,what", TOGETHER)
def test_all_captures_together_give_the_expected_verdict_and_exit_code(analysed, name, what):
    a, want = analysed(name, what), _want(name, what)
    assert (a.state(), a.code) == (want.state, want.exit_code), f"want {want.state} ({want.why})\n{a.show()}"


# ---- the report's links, places and blame -------------------------------------------------
@pytest.mark.lab
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_finding_links_only_to_findings_that_exist(analysed, name):
    for what in ALL + ["all", "bare"]:
        a = analysed(name, what)
        ids = [field(f, "id") for f in a.findings]
        assert len(set(ids)) == len(ids), f"finding ids repeat\n{a.show()}"
        by_id = dict(zip(ids, a.findings))
        for f in a.findings:
            cause = field(f, "explained_by")
            assert cause is None or (cause in by_id and cause != f["id"]), f"{f['id']} explained_by {cause!r}\n{a.show()}"
            if cause is not None:
                assert f["id"] in field(by_id[cause], "consequences"), f"{cause} does not list {f['id']}\n{a.show()}"
            for c in field(f, "consequences"):
                assert c in by_id and by_id[c]["explained_by"] == f["id"], f"{f['id']} consequence {c!r}\n{a.show()}"
            vs = field(f, "vantages")
            assert vs and set(vs) <= set(a.vantages) and len(set(vs)) == len(vs), f"{f['id']} vantages {vs}\n{a.show()}"
            between = field(f, "between")
            assert between is None or (set(between) == {"from", "to"} and set(between.values()) <= set(a.vantages)), between
        verdict = a.doc["verdict"]
        assert isinstance(verdict, dict) and set(field(verdict, "causes")) == {
            f["id"] for f in a.judged if f["explained_by"] is None}, f"verdict.causes are not the root causes\n{a.show()}"


@pytest.mark.lab
@pytest.mark.parametrize("name", [n for n in SCENARIOS if SCENARIOS[n].between])
def test_path_findings_lie_between_the_expected_vantages(analysed, name):
    for what in ("all", "bare"):
        a = analysed(name, what)
        for kind, (frm, to) in SCENARIOS[name].between.items():
            found = [f for f in a.findings if f["kind"] == kind]
            assert found, f"no {kind}\n{a.show()}"
            assert all(field(f, "between") == {"from": frm, "to": to} for f in found), a.show()


@pytest.mark.lab
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_findings_name_only_broken_backends(analysed, name):
    sc = SCENARIOS[name]
    healthy = {x for b in BACKENDS if b.role not in sc.broken for x in (b.mac, b.ip4, b.ip6)}
    for what in ALL + ["all", "bare"]:
        a = analysed(name, what)
        for f in a.findings:
            if f["backend"] and f["kind"] != "snat_client_ip_lost":
                named = {f["backend"].get("mac"), f["backend"].get("ip")} - {None}
                assert named and not named & healthy, f"{a.label} blames a healthy back-end: {f['summary']}"


@pytest.mark.lab
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_fault_seen_at_several_vantages_is_one_finding_with_evidence_from_each(analysed, name):
    a = analysed(name, "all")
    for f in a.findings:
        vs = field(f, "vantages")
        seen = {e["vantage"] for e in f["evidence"] if "vantage" in e}
        if f.get("between"):  # about a segment: the packets were last seen at its start, never at its end
            assert f["between"]["from"] in seen or f["kind"] == "asymmetric_flow", f
        elif len(vs) > 1:
            assert seen == set(vs), f


# ---- what cannot be judged is inconclusive, never healthy -----------------------------------
@pytest.mark.lab
@pytest.mark.parametrize("option", [["-p", "587"], ["--vip", "192.0.2.99"]], ids=["port-587", "vip-192.0.2.99"])
def test_a_port_or_vip_that_no_connection_uses_is_inconclusive(lab_runs, option):
    d = lab_runs["healthy"]
    for label, paths in (("client alone", [d / "client.pcap"]), ("all captures", [d / f"{v}.pcap" for v in ALL])):
        a = _analyze(f"healthy, {label}, {' '.join(option)}", [str(p) for p in paths] + option, ALL)
        assert (a.code, a.state()) == (4, INCONCLUSIVE), a.show()
        assert not [f for f in a.findings if f["severity"] == "error"], a.show()


@pytest.mark.lab
def test_a_capture_of_one_direction_only_is_inconclusive(lab_runs, tmp_path):
    """A SPAN that mirrors one direction: the healthy firewall inside leg, only the frames the firewall
    sends (the clients' side of every connection, which goes on as if answered: acks advance)."""
    one_way = tmp_path / "fw-in.pcap"
    subprocess.run(["tcpdump", "-r", str(lab_runs["healthy"] / "fw-in.pcap"), "-w", str(one_way),
                    "ether src 02:00:00:00:00:01"], check=True, capture_output=True, timeout=60)
    a = _analyze("healthy fw-in, one direction", [str(one_way)], ["fw-in"])
    assert (a.code, a.state()) == (4, INCONCLUSIVE), a.show()
    assert "capture_one_sided" in {f["kind"] for f in a.findings}, a.show()
    assert not [f for f in a.findings if f["severity"] == "error"], a.show()


# ---- the correlated view and the site itself ------------------------------------------------
@pytest.mark.lab
def test_correlated_paths_place_the_drop_and_estimate_clock_offsets(analysed):
    doc = analysed("asym_bypass", "all").doc
    corr = doc["correlation"]
    assert corr["reference"] == "client"
    assert {o["vantage"] for o in corr["clock_offsets"]} >= {"fw-out", "fw-in", "lb"}
    assert all(abs(o["offset_s"]) < 0.01 for o in corr["clock_offsets"])  # one machine, one clock
    acks = [p for f in corr["flows"] for p in f["packets"] if p["direction"] == "client_to_server" and p["lost_before"]]
    assert acks and all(p["last_seen"] == "fw-out" and p["lost_before"] == "fw-in" for p in acks)
    roots = [f for f in doc["findings"] if f["kind"] == "asymmetric_flow" and field(f, "explained_by") is None]
    assert roots and any(m in f["summary"] for f in roots for m in (BYP_IN.mac, BYP_OUT.mac))  # the bypass router named
    healthy = analysed("healthy", "all").doc
    assert not any(p["lost_before"] for f in healthy["correlation"]["flows"] for p in f["packets"])


@pytest.mark.lab
def test_lb_mode_is_judged_from_the_packets_and_mixed_modes_are_a_finding(analysed, lab_runs):
    modes = lambda doc: {f["mode"] for f in doc["correlation"]["flows"] if f["mode"]}  # noqa: E731
    assert modes(analysed("healthy", "all").doc) == {"dsr"}
    snat = analysed("snat", "all").doc
    assert modes(snat) == {"full-nat"}
    full_nat = [f for f in snat["correlation"]["flows"] if f["mode"] == "full-nat"]
    assert full_nat and all(f["linked"] and " -> 192.0.2.1" in f["linked"] for f in full_nat)  # seen behind the NAT
    # one site where be1 is reached by DSR and be2 through full NAT: the front captures of both runs
    h, n = lab_runs["healthy"], lab_runs["snat"]
    r = run_cli("analyze", f"client={h / 'client.pcap'}", f"be1={h / 'be1.pcap'}", f"fw-out={n / 'fw-out.pcap'}",
                f"be2={n / 'be2.pcap'}", "--vip", VIP4, "--format", "json")
    doc = r.json()
    assert modes(doc) == {"dsr", "full-nat"}
    (mixed,) = [f for f in doc["findings"] if f["kind"] == "lb_mode_mixed"]
    assert "by dsr" in mixed["summary"] and "by full-nat" in mixed["summary"] and mixed["evidence"]


@pytest.mark.lab
def test_healthy_site_completes_every_session_through_both_backends(lab_runs):
    for name in ("healthy", "healthy-6"):
        sessions = json.loads((lab_runs[name] / "sessions.json").read_text())
        assert all(s["outcome"] == "ok" and s["starttls"] for s in sessions)
        assert {s["banner_host"] for s in sessions} == {"mx1.lab.example", "mx2.lab.example"}


@pytest.mark.lab
def test_refused_sessions_are_the_ones_hashed_to_be2(lab_runs):
    for name in ("connection_refused", "connection_refused-6"):
        sessions = json.loads((lab_runs[name] / "sessions.json").read_text())
        assert {s["outcome"] for s in sessions} == {"ok", "refused"}
        assert {s["banner_host"] for s in sessions if s["outcome"] == "ok"} == {"mx1.lab.example"}


@pytest.mark.lab
def test_every_scenario_proved_its_fault_without_dsrdiag(lab_runs):
    for name, d in lab_runs.items():
        proofs = json.loads((d / "scenario.json").read_text())["proofs"]
        assert proofs and all(p["ok"] for p in proofs), name


@pytest.mark.lab
def test_two_ups_in_a_row_leave_no_debris_and_down_removes_everything(lab_host):
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


# ---- without root ---------------------------------------------------------------------------
def test_every_scenario_judges_every_vantage_alone_and_together():
    for name, sc in SCENARIOS.items():
        assert set(sc.alone) == set(ALL) and sc.together is not None, name
        for what, j in list(sc.alone.items()) + [("all", sc.together), ("bare", sc.without_topology)]:
            assert j.causes <= j.kinds and j.why, (name, what)
            assert (j.state == "broken") == bool(j.kinds), (name, what)  # every kind the lab expects is an error
        if name.startswith("healthy"):
            assert all(j.state != "broken" for j in sc.alone.values()) and sc.together.state == HEALTHY
        else:
            assert sc.together.state == "broken", name  # every fault is visible to the captures together


def test_docs_show_the_scenarios_judgements_as_they_are():
    assert expectations_markdown() in (ROOT / "docs" / "lab.md").read_text(), \
        "docs/lab.md is out of date: paste dsrdiag.lab.scenarios.expectations_markdown() into it"


def test_collecting_the_lab_tests_runs_nothing_even_as_root(tmp_path):
    """`pytest --co --lab` as root: no `ip`, `nft` or `tcpdump` is started. The collecting process is
    made to believe it is root (sitecustomize), and those tools are shims that log their calls."""
    shims, log = tmp_path / "bin", tmp_path / "calls.log"
    shims.mkdir()
    for tool in ("ip", "nft", "tcpdump", "openssl"):
        (shims / tool).write_text(f"#!/bin/sh\necho {tool} \"$@\" >> {log}\nexit 1\n")
        (shims / tool).chmod(0o755)
    (tmp_path / "sitecustomize.py").write_text("import os\nos.geteuid = lambda: 0\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    p = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--co", "-q", "--lab",
                        "tests/test_lab.py", "tests/test_probe.py"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env=env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert "test_each_capture_alone" in p.stdout
    assert not log.exists(), log.read_text()


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
