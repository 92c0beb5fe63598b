"""dsrdiag probe against the lab: from the client (routed) and from the server LAN (on-link, where
ARP is visible), every scenario gives its expected findings and exit code; on an ARP-leak LAN it
names the leaking MAC without being told which MAC is the load balancer's; without capture rights
it still runs the sessions and says what it skipped; bad input is a one-line error.

The lab tests here are marked `lab` and run with `python3 -m pytest --lab` only (conftest.py)."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys

import jsonschema
import pytest

from tests.conftest import ROOT, run_cli



@functools.cache
def schema() -> dict:
    return json.loads((ROOT / "docs" / "report.schema.json").read_text())

LB_MAC = "02:00:00:00:00:0a"

# scenario -> (from the client, from the server LAN): expected error/warning finding kinds
EXPECTED = {
    "healthy": (set(), set()),
    # the client cannot see ARP; the LAN can: the leaking back-ends are the cause, the several MACs
    # answering the probe's own who-has at once their consequence
    "arp_leak": (set(), {"arp_reply_for_vip_from_backend", "vip_claimed_by_several_macs"}),
    "wrong_source": ({"syn_unanswered"}, {"return_source_not_vip"}),  # the firewall drops the real-IP SYN-ACKs
    # the client's capture shows the SYN-ACKs come back from another router's MAC than its requests go
    # to (the bypass), which explains the failed sessions; from the LAN the path is fine
    "asym_bypass": ({"asymmetric_flow"}, set()),
    "vip_missing": ({"syn_unanswered"}, {"syn_unanswered"}),
    "snat": (set(), set()),                                       # the client address is lost behind the LB, not visible here
    "mixed": ({"syn_unanswered"}, {"syn_unanswered"}),
    "connection_refused": ({"connection_refused"}, {"connection_refused"}),  # be2's RSTs reach either
    "vip_claimed_twice": (set(), {"vip_claimed_by_several_macs"}),  # lb2's claim: neither LB nor back-end
    "healthy-6": (set(), set()),
    "arp_leak-6": (set(), {"arp_reply_for_vip_from_backend", "vip_claimed_by_several_macs"}),
}


def probe_in(ns: str, *args: str, prefix: tuple = ()) -> tuple[int, dict, str]:
    p = subprocess.run(["ip", "netns", "exec", ns, *prefix, sys.executable, "-m", "dsrdiag", "probe", *args, "--format", "json"],
                       capture_output=True, text=True, timeout=180)
    assert "Traceback" not in p.stderr, p.stderr
    doc = json.loads(p.stdout)
    jsonschema.validate(doc, schema())
    return p.returncode, doc, p.stderr


def kinds(doc) -> set[str]:
    return {f["kind"] for f in doc["findings"] if f["severity"] != "info"}


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


@pytest.mark.lab
def test_syn_only_mode_sees_the_wrong_source_syn_ack(lab_down):
    from dsrdiag.lab.runner import up
    from dsrdiag.lab.scenarios import get
    up(get("wrong_source"))
    code, doc, _ = probe_in("dsrdiag-fw", "192.0.2.25", "--iface", "fwin", "--syn-only", "--count", "4", "--rate", "10", "--timeout", "3")
    assert kinds(doc) == {"return_source_not_vip"} and code == 1
    assert all(s["outcome"] == "synack" for s in doc["probe"]["sessions"])
    assert {s["responder"]["server_ip"] for s in doc["probe"]["sessions"]} <= {"192.0.2.11", "192.0.2.12"}


def _tcpdump_lines(pcap, bpf: str) -> list[str]:
    p = subprocess.run(["tcpdump", "-n", "-e", "-r", str(pcap), bpf], capture_output=True, text=True, timeout=60)
    return [line for line in p.stdout.splitlines() if line.strip()]


@pytest.mark.lab
def test_probe_on_an_arp_leak_lan_names_the_leaking_mac_without_being_told_the_lbs(lab_down, tmp_path):
    from dsrdiag.lab.runner import up
    from dsrdiag.lab.scenarios import get
    up(get("arp_leak"))
    pcap = tmp_path / "lan.pcap"
    code, doc, _ = probe_in("dsrdiag-fw", "192.0.2.25", "--iface", "fwin", "--count", "6", "--timeout", "3.5",
                            "--rate", "10", "--pcap", str(pcap))
    # which MAC leaks, from the probe's own capture and tcpdump alone: it answers ARP for the VIP and
    # sends the SYN-ACKs from the VIP (so it is a back-end); the LB's MAC answers but sends none
    claims = {m for line in _tcpdump_lines(pcap, "arp and arp[6:2] == 2 and arp[14:4] == 0xc0000219")
              for m in re.findall(r"is-at ([0-9a-f:]{17})", line)}
    answering = {line.split()[1] for line in _tcpdump_lines(
        pcap, "src host 192.0.2.25 and tcp[tcpflags] & (tcp-syn|tcp-ack) == (tcp-syn|tcp-ack)")}
    leaking = claims & answering
    assert LB_MAC in claims and len(claims) == 3 and leaking and LB_MAC not in leaking, (claims, answering)
    assert code == 1, json.dumps(doc["findings"], indent=1)[:2000]
    named = [f for f in doc["findings"] if f["kind"] == "arp_reply_for_vip_from_backend" and f["severity"] == "error"]
    assert named, json.dumps(doc["findings"], indent=1)[:2000]
    for mac in leaking:
        assert any((f["backend"] or {}).get("mac") == mac for f in named), (mac, [f["summary"] for f in named])
    assert not any((f["backend"] or {}).get("mac") == LB_MAC for f in doc["findings"])


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
