"""dsrdiag probe against the lab: from the client (routed) and from the server LAN (on-link, where
ARP is visible), every scenario gives its expected findings and exit code; without capture rights
it still runs the sessions and says what it skipped; bad input is a one-line error."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest

from tests.conftest import ROOT, run_cli
from tests.test_lab import REASON

SCHEMA = json.loads((ROOT / "docs" / "report.schema.json").read_text())
lab = pytest.mark.skipif(REASON is not None, reason=f"lab: {REASON}")
LB_MAC = "02:00:00:00:00:0a"

# scenario -> (from the client, from the server LAN): expected error/warning finding kinds
EXPECTED = {
    "healthy": (set(), set()),
    "arp_leak": (set(), {"arp_reply_for_vip_from_backend"}),       # the client cannot see ARP; the LAN can
    "wrong_source": ({"syn_unanswered"}, {"return_source_not_vip"}),  # the firewall drops the real-IP SYN-ACKs
    "asym_bypass": ({"sessions_failed"}, set()),                   # handshake then silence; from the LAN the path is fine
    "vip_missing": ({"syn_unanswered"}, {"syn_unanswered"}),
    "snat": (set(), set()),                                       # the client address is lost behind the LB, not visible here
    "mixed": ({"syn_unanswered"}, {"syn_unanswered"}),
    "healthy-6": (set(), set()),
    "arp_leak-6": (set(), {"arp_reply_for_vip_from_backend"}),
}


def probe_in(ns: str, *args: str, prefix: tuple = ()) -> tuple[int, dict, str]:
    p = subprocess.run(["ip", "netns", "exec", ns, *prefix, sys.executable, "-m", "dsrdiag", "probe", *args, "--format", "json"],
                       capture_output=True, text=True, timeout=180)
    assert "Traceback" not in p.stderr, p.stderr
    doc = json.loads(p.stdout)
    jsonschema.validate(doc, SCHEMA)
    return p.returncode, doc, p.stderr


def kinds(doc) -> set[str]:
    return {f["kind"] for f in doc["findings"] if f["severity"] != "info"}


@lab
@pytest.mark.lab
@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_probe_gives_each_scenarios_verdict_from_client_and_server_lan(lab_down, scenario, tmp_path):
    from dsrdiag.lab.runner import up
    from dsrdiag.lab.scenarios import get
    sc = get(scenario)
    up(sc)
    vip = "2001:db8:25::25" if sc.ipv6 else "192.0.2.25"
    want_client, want_lan = EXPECTED[scenario]

    code, doc, _ = probe_in("dsrdiag-client", vip, "--count", "6", "--timeout", "3.5", "--rate", "10")
    assert kinds(doc) == want_client, json.dumps(doc["findings"], indent=1)[:2000]
    assert code == (1 if want_client else 0)
    assert doc["probe"]["on_link"] is False and any("routed" in s for s in doc["probe"]["skipped"])
    if scenario.startswith("healthy"):
        assert {r["backend"] for r in doc["probe"]["backends"]} <= {"mx1.lab.example", "mx2.lab.example"}
        assert all(s["outcome"] == "ok" for s in doc["probe"]["sessions"])

    pcap = tmp_path / "lan.pcap"
    code, doc, _ = probe_in("dsrdiag-fw", vip, "--iface", "fwin", "--count", "6", "--timeout", "3.5", "--rate", "10",
                            "--lb-mac", LB_MAC, "--starttls", "--pcap", str(pcap))
    assert kinds(doc) == want_lan, json.dumps(doc["findings"], indent=1)[:2000]
    assert code == (1 if want_lan else 0)
    assert doc["probe"]["on_link"] is True and LB_MAC in doc["probe"]["arp_answers"]
    assert pcap.exists() and doc["probe"]["pcap"] == str(pcap)
    for f in doc["findings"]:
        if f["kind"] in ("arp_reply_for_vip_from_backend", "return_source_not_vip"):
            assert f["backend"]["mac"] in {"02:00:00:00:00:11", "02:00:00:00:00:12"}
            assert all(e["capture"] == str(pcap) for e in f["evidence"])
    # the kept capture says the same thing to `dsrdiag analyze`
    r = run_cli("analyze", f"probe={pcap}", "--vip", vip, "--lb-mac", LB_MAC, "-f", "json")
    assert kinds(r.json()) == want_lan - {"sessions_failed"}


@lab
@pytest.mark.lab
def test_probe_without_capture_rights_still_runs_sessions_and_says_what_it_skipped(lab_down):
    from dsrdiag.lab.runner import up
    from dsrdiag.lab.scenarios import get
    up(get("vip_missing"))
    code, doc, _ = probe_in("dsrdiag-client", "192.0.2.25", "--count", "2", "--timeout", "2",
                            prefix=("setpriv", "--bounding-set", "-net_raw,-net_admin", "--"))
    assert any(s.startswith("live capture:") and "CAP_NET_RAW" in s for s in doc["probe"]["skipped"])
    assert doc["captures"] == [] and kinds(doc) == {"sessions_failed"} and code == 1
    (f,) = doc["findings"]
    assert "no capture was possible" in f["summary"] and len(f["evidence"]) == 2


@lab
@pytest.mark.lab
def test_syn_only_mode_sees_the_wrong_source_syn_ack(lab_down):
    from dsrdiag.lab.runner import up
    from dsrdiag.lab.scenarios import get
    up(get("wrong_source"))
    code, doc, _ = probe_in("dsrdiag-fw", "192.0.2.25", "--iface", "fwin", "--syn-only", "--count", "4", "--rate", "10", "--timeout", "3")
    assert kinds(doc) == {"return_source_not_vip"} and code == 1
    assert all(s["outcome"] == "synack" for s in doc["probe"]["sessions"])
    assert {s["responder"]["server_ip"] for s in doc["probe"]["sessions"]} <= {"192.0.2.11", "192.0.2.12"}


@pytest.mark.parametrize("args,text", [
    (["192.0.2.300"], "is not an IPv4 or IPv6 address"),
    (["224.0.0.25"], "is not a unicast address"),
    (["192.0.2.25", "--count", "1000"], "--count 1000: between 1 and 100"),
    (["192.0.2.25", "--rate", "500"], "--rate 500"),
    (["192.0.2.25", "--timeout", "0"], "--timeout 0"),
    (["192.0.2.25", "--iface", "nosuch0"], "interface 'nosuch0' does not exist"),
])
def test_probe_bad_input_is_a_one_line_error_and_sends_nothing(args, text):
    r = run_cli("probe", *args)
    assert r.code == 2 and r.err.strip().count("\n") == 0 and text in r.err, r.err
