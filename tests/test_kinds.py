"""Every packet kind from one capture: where it must fire, where it must not, and each guard.

The captures are made here with the samples' own builder (captures/build.py: scapy, seeded), one
per case, so that each case differs from its neighbour in exactly the fact the rule turns on
(a retransmission, the ISN+1 match, the capture's length after a SYN, who else claims the VIP).
Analysed as a user would, with no --vip, --lb-mac or --backend unless the case says so.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys

import pytest

from tests.conftest import CAPTURES, run_cli

pytestmark = pytest.mark.usefixtures("tracker")  # every test on the C tracker and on the Python reference


def _builder():
    spec = importlib.util.spec_from_file_location("capture_build_kinds", CAPTURES / "build.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up while being made
    spec.loader.exec_module(mod)
    return mod


B = _builder()


def _analyze(tmp_path, frames, *args, name="cap.pcap"):
    path = tmp_path / name
    B.write(path, frames)
    r = run_cli("analyze", str(path), "--format", "json", *args)
    assert r.code in (0, 1, 3, 4), r.err
    return r.code, json.loads(r.out)


def _kinds(doc, *, severity=None, roots=False):
    return sorted(f["kind"] for f in doc["findings"]
                  if (severity is None or f["severity"] == severity) and (not roots or f["explained_by"] is None))


def _rng():
    return random.Random(7)


def _keep_alive(t):
    """An ARP exchange at time t: the capture goes on until then (and sees both directions)."""
    return B.arp_reply(t, B.ROUTER_IP4, B.ROUTER, asker_ip="192.0.2.99", asker_mac="02:00:00:00:00:99")


# ---- syn_unanswered and its guards -------------------------------------------------------------

def test_retransmitted_syns_without_any_reply_are_syn_unanswered(tmp_path):
    r = B.Renderer("client")
    frames = r.frames(B.tcp_session(_rng(), B.CLIENTS4[0], 46000, B.VIP4, B.BE1, B.T0, answer=False, syn_tries=3))
    code, doc = _analyze(tmp_path, frames)
    assert _kinds(doc) == ["syn_unanswered"] and code == 1
    f = doc["findings"][0]
    assert "up to 3 SYNs" in f["summary"] and len(f["evidence"]) == 3


def test_a_lone_syn_never_retried_while_the_capture_went_on_was_answered_elsewhere(tmp_path):
    rng = _rng()
    r = B.Renderer("client")
    frames = r.frames(B.tcp_session(rng, B.CLIENTS4[0], 46001, B.VIP4, B.BE1, B.T0, answer=False, syn_tries=1))
    frames += r.frames(B.tcp_session(rng, B.CLIENTS4[1], 46002, B.VIP4, B.BE1, B.T0 + 0.5))  # one that works
    frames += _keep_alive(B.T0 + 4.0)
    code, doc = _analyze(tmp_path, frames)
    assert _kinds(doc) == ["asymmetric_flow"], doc["findings"]
    assert "never retransmitted" in doc["findings"][0]["summary"]


def test_a_lone_syn_at_the_end_of_the_capture_is_not_judged(tmp_path):
    """The guard: under 3.5 s of capture after a single SYN, a retry could still have come."""
    rng = _rng()
    r = B.Renderer("client")
    frames = r.frames(B.tcp_session(rng, B.CLIENTS4[1], 46002, B.VIP4, B.BE1, B.T0))
    frames += r.frames(B.tcp_session(rng, B.CLIENTS4[0], 46001, B.VIP4, B.BE1, B.T0 + 1.0, answer=False, syn_tries=1))
    frames += _keep_alive(B.T0 + 3.0)  # 2 s after the SYN
    code, doc = _analyze(tmp_path, frames)
    assert _kinds(doc) == [] and code == 0, doc["findings"]


def test_retransmitted_syns_at_the_lbs_own_interface_are_unanswered_but_lone_ones_are_the_design(tmp_path):
    rng = _rng()
    r = B.Renderer("lb")
    frames = r.frames(B.tcp_session(rng, B.CLIENTS4[0], 46100, B.VIP4, B.BE1, B.T0))
    frames += r.frames(B.tcp_session(rng, B.CLIENTS4[1], 46101, B.VIP4, B.BE2, B.T0 + 0.5))
    frames += _keep_alive(B.T0 + 10)
    _, doc = _analyze(tmp_path, frames, name="lb.pcap")
    assert _kinds(doc) == [], "a healthy DSR site seen at the LB's own interface has no finding"
    frames += r.frames(B.tcp_session(rng, B.CLIENTS4[2], 46102, B.VIP4, B.BE2, B.T0 + 1, answer=False, syn_tries=3))
    _, doc = _analyze(tmp_path, frames, name="lb2.pcap")
    assert _kinds(doc) == ["syn_unanswered"]
    assert "load balancer's own interface" in doc["findings"][0]["summary"]


# ---- return_source_not_vip and the ISN+1 match -------------------------------------------------

def _wrong_source(rng, *, ack_offset=1):
    conn = B.tcp_session(rng, B.CLIENTS4[1], 41001, B.VIP4, B.BE2, B.T0 + 1.0, wrong_source=B.BE2.ip4, syn_tries=3)
    for s in conn.segs:
        if s.flags == "SA":
            s.ack = s.seq * 0 + (conn.segs[0].seq + ack_offset)
    return conn


def test_a_real_address_synack_acking_isn_plus_one_is_return_source_not_vip(tmp_path):
    rng = _rng()
    r = B.Renderer("lan")
    frames = B.arp_reply(B.T0, B.VIP4, B.LB) + r.frames(B.tcp_session(rng, B.CLIENTS4[0], 41000, B.VIP4, B.BE1, B.T0 + 0.5))
    frames += r.frames(_wrong_source(rng))
    code, doc = _analyze(tmp_path, frames)
    assert _kinds(doc) == ["return_source_not_vip"] and code == 1
    assert doc["findings"][0]["backend"]["mac"] == B.BE2.mac
    assert doc["verdict"]["causes"] == [doc["findings"][0]["id"]]


def test_a_real_address_synack_that_acks_another_isn_is_not_matched(tmp_path):
    rng = _rng()
    r = B.Renderer("lan")
    frames = B.arp_reply(B.T0, B.VIP4, B.LB) + r.frames(B.tcp_session(rng, B.CLIENTS4[0], 41000, B.VIP4, B.BE1, B.T0 + 0.5))
    frames += r.frames(_wrong_source(rng, ack_offset=2))
    _, doc = _analyze(tmp_path, frames)
    assert "return_source_not_vip" not in _kinds(doc)


def test_a_wrong_source_reply_repeated_after_its_record_ended_is_still_one_connection(tmp_path):
    rng = _rng()
    r = B.Renderer("lan")
    conn = _wrong_source(rng)
    sa = next(s for s in conn.segs if s.flags == "SA")
    late = B.Seg(sa.t + 20.0, sa.d, sa.flags, sa.seq, sa.ack, src=sa.src)  # after Zeek's timers ended the reply's record
    conn.segs.append(late)
    frames = B.arp_reply(B.T0, B.VIP4, B.LB) + r.frames(B.tcp_session(rng, B.CLIENTS4[0], 41000, B.VIP4, B.BE1, B.T0 + 0.5))
    frames += r.frames(conn) + _keep_alive(sa.t + 30.0)
    _, doc = _analyze(tmp_path, frames)
    f = next(f for f in doc["findings"] if f["kind"] == "return_source_not_vip")
    replies = [c for c in doc["connections"] if c["server"]["ip"] == B.BE2.ip4 and c["client"]["port"] == 41001]
    assert len(replies) >= 2  # the late SYN-ACK is a record of its own ...
    assert f["summary"].startswith("1 connection to VIP 192.0.2.25 answered from 192.0.2.12")  # ... of the one connection
    assert "1 matched to the client's SYN" in f["summary"]


# ---- ARP/NDP ------------------------------------------------------------------------------------

def test_a_backend_claiming_the_vip_is_named_without_lb_mac(tmp_path):
    code, doc = _analyze(tmp_path, B.arp_leak(_rng()))
    assert _kinds(doc, roots=True) == ["arp_reply_for_vip_from_backend"] and code == 1
    f = next(f for f in doc["findings"] if f["kind"] == "arp_reply_for_vip_from_backend")
    assert f["severity"] == "error" and f["backend"]["mac"] == B.BE2.mac


def test_a_backends_own_capture_shows_its_own_answer_for_the_vip_as_the_leak(tmp_path):
    rng = _rng()
    r = B.Renderer("backend")
    frames = r.frames(B.tcp_session(rng, B.CLIENTS4[0], 42000, B.VIP4, B.BE2, B.T0 + 0.5))
    frames += B.arp_reply(B.T0 + 1.0, B.VIP4, B.BE2.mac)
    code, doc = _analyze(tmp_path, frames, name="be2.pcap")
    assert _kinds(doc) == ["arp_reply_for_vip_from_backend"] and code == 1, doc["findings"]
    assert doc["findings"][0]["backend"]["mac"] == B.BE2.mac


def _claimed(rng, *claims):
    r = B.Renderer("client")  # no back-end behaviour visible
    frames = r.frames(B.tcp_session(rng, B.CLIENTS4[0], 42100, B.VIP4, B.BE1, B.T0 + 0.5))
    for t, mac in claims:
        frames += B.arp_reply(B.T0 + t, B.VIP4, mac)
    return frames


def test_two_macs_claiming_the_vip_back_and_forth_is_an_error_even_when_neither_is_a_backend(tmp_path):
    frames = _claimed(_rng(), (0, B.LB), (2, "02:00:00:00:00:0b"), (4, B.LB))
    code, doc = _analyze(tmp_path, frames)
    assert _kinds(doc, roots=True) == ["vip_claimed_by_several_macs"] and code == 1
    assert "02:00:00:00:00:0b" in doc["findings"][0]["summary"]


def test_two_macs_answering_within_a_second_is_a_conflict(tmp_path):
    _, doc = _analyze(tmp_path, _claimed(_rng(), (0, B.LB), (0.3, "02:00:00:00:00:0b")))
    assert _kinds(doc) == ["vip_claimed_by_several_macs"]


def test_one_mac_taking_over_from_another_once_is_a_move_not_a_conflict(tmp_path):
    """An HA pair that failed over and announced it from its new MAC, a laptop docked."""
    code, doc = _analyze(tmp_path, _claimed(_rng(), (0, B.LB), (2, "02:00:00:00:00:0b")))
    assert _kinds(doc) == [] and code == 0


def test_a_single_claimant_of_the_vip_is_no_finding(tmp_path):
    code, doc = _analyze(tmp_path, B.healthy(_rng()))
    assert _kinds(doc) == [] and code == 0


def test_a_backend_leak_beside_the_lb_is_the_cause_and_the_several_claims_its_consequence(tmp_path):
    code, doc = _analyze(tmp_path, B.arp_leak(_rng()))
    by_kind = {f["kind"]: f for f in doc["findings"]}
    assert sorted(by_kind) == ["arp_reply_for_vip_from_backend", "vip_claimed_by_several_macs"]
    leak, claims = by_kind["arp_reply_for_vip_from_backend"], by_kind["vip_claimed_by_several_macs"]
    assert claims["explained_by"] == leak["id"] and leak["consequences"] == [claims["id"]]
    assert doc["verdict"]["causes"] == [leak["id"]]
    assert f"{B.LB} is the load balancer" in claims["summary"]


# ---- connection_refused -------------------------------------------------------------------------

def test_syns_to_the_vip_answered_by_rst_are_connection_refused(tmp_path):
    rng = _rng()
    r = B.Renderer("lan")
    frames = B.arp_reply(B.T0, B.VIP4, B.LB) + r.frames(B.tcp_session(rng, B.CLIENTS4[0], 47000, B.VIP4, B.BE1, B.T0 + 0.5))
    refused = B.Conn(B.CLIENTS4[1], 47001, B.VIP4, B.BE2)
    refused.segs = [B.Seg(B.T0 + 1.0, ">", "S", 1000, 0), B.Seg(B.T0 + 1.0102, "<", "RA", 0, 1001)]
    frames += r.frames(refused)
    code, doc = _analyze(tmp_path, frames)
    assert _kinds(doc) == ["connection_refused"] and code == 1
    f = doc["findings"][0]
    assert f["backend"]["mac"] == B.BE2.mac and "nothing listens" in f["summary"]
    assert doc["verdict"]["state"] == "broken"


def test_a_refused_only_capture_is_never_healthy(tmp_path):
    r = B.Renderer("client")
    refused = B.Conn(B.CLIENTS4[1], 47001, B.VIP4, B.BE2)
    refused.segs = [B.Seg(B.T0, ">", "S", 1000, 0), B.Seg(B.T0 + 0.0102, "<", "RA", 0, 1001)]
    code, doc = _analyze(tmp_path, r.frames(refused))
    assert code != 0 and doc["verdict"]["state"] != "healthy"


# ---- vip_not_on_backend ------------------------------------------------------------------------

def test_syns_delivered_to_a_backend_that_never_answers_are_vip_not_on_backend(tmp_path):
    code, doc = _analyze(tmp_path, B.vip_missing(_rng()))
    assert _kinds(doc) == ["vip_not_on_backend"] and code == 1
    assert doc["findings"][0]["backend"]["mac"] == B.BE2.mac


def test_a_backend_that_answered_some_of_its_connections_is_not_missing_the_vip(tmp_path):
    rng = _rng()
    r = B.Renderer("lan")
    frames = B.arp_reply(B.T0, B.VIP4, B.LB)
    frames += r.frames(B.tcp_session(rng, B.CLIENTS4[0], 45000, B.VIP4, B.BE2, B.T0 + 0.5))
    frames += r.frames(B.tcp_session(rng, B.CLIENTS4[1], 45001, B.VIP4, B.BE2, B.T0 + 1.0, answer=False))
    _, doc = _analyze(tmp_path, frames)
    assert "vip_not_on_backend" not in _kinds(doc)
    assert _kinds(doc) == ["syn_unanswered"]


# ---- capture_one_sided ---------------------------------------------------------------------------

def _one_way(rng):
    r = B.Renderer("client")
    frames = []
    for i in range(3):
        c = B.tcp_session(rng, B.CLIENTS4[i], 48000 + i, B.VIP4, B.BE1, B.T0 + i)
        c.segs = [s for s in c.segs if s.d == ">"]
        frames += r.frames(c)
    return frames


def test_a_capture_of_one_direction_only_is_one_capture_warning(tmp_path):
    code, doc = _analyze(tmp_path, _one_way(_rng()))
    assert [f["kind"] for f in doc["findings"]] == ["capture_one_sided"]
    assert doc["findings"][0]["severity"] == "warning"
    assert doc["verdict"]["state"] != "healthy"


def test_one_sided_connections_beside_two_way_traffic_are_a_bypass_not_the_capture(tmp_path):
    frames = _one_way(_rng()) + _keep_alive(B.T0 + 1)
    _, doc = _analyze(tmp_path, frames)
    assert _kinds(doc) == ["asymmetric_flow"]


# ---- the verdict: nothing to judge is never healthy ----------------------------------------------

@pytest.mark.parametrize("args,hint", [
    (("--vip", "192.0.2.99"), "--vip 192.0.2.25"),
    (("-p", "587"), "--port 25"),
    (("--vip", "2001:db8:25::25"), "--vip 192.0.2.25"),
])
def test_a_question_that_misses_the_traffic_is_inconclusive_with_a_hint(captures, args, hint):
    r = run_cli("analyze", str(captures / "healthy.pcap"), *args)
    assert r.code == 4, r.out
    assert r.out.startswith("VERDICT: INCONCLUSIVE") and hint in " ".join(r.out.split())


def test_an_empty_capture_is_inconclusive(tmp_path):
    path = tmp_path / "empty.pcap"
    B.write(path, [])
    r = run_cli("analyze", str(path))
    assert r.code == 4 and "no packets" in r.out


def test_a_capture_with_no_mail_traffic_is_inconclusive(real):
    r = run_cli("analyze", str(real / "zeek-arp-leak.pcap"))
    assert r.code == 4 and r.out.startswith("VERDICT: INCONCLUSIVE")


# ---- the cause first ----------------------------------------------------------------------------

def test_one_wrong_source_backend_is_one_cause_with_its_consequences_at_every_vantage(captures):
    paths = sorted(str(p) for p in (captures / "paths" / "wrong_source").glob("*.pcap"))
    r = run_cli("analyze", *paths, "--format", "json")
    doc = r.json()
    causes = [f for f in doc["findings"] if f["id"] in doc["verdict"]["causes"]]
    assert [f["kind"] for f in causes] == ["return_source_not_vip"]
    cause = causes[0]
    assert cause["backend"]["ip"] == "192.0.2.12"
    others = [f for f in doc["findings"] if f is not cause]
    assert others and all(f["explained_by"] == cause["id"] for f in others)
    assert sorted(cause["consequences"]) == sorted(f["id"] for f in others)
    drop = next(f for f in others if f["kind"] == "firewall_drop")
    assert drop["between"] == {"from": "fw-in", "to": "fw-out"}
    assert doc["verdict"]["text"].startswith("BROKEN - mx2.example.net (192.0.2.12)")
    again = run_cli("analyze", *paths, "--format", "json").json()
    assert [f["id"] for f in again["findings"]] == [f["id"] for f in doc["findings"]]


def test_captures_named_after_their_devices_are_correlated_by_their_traffic(captures, tmp_path):
    names = {"client": "edge", "fw-out": "asa-o", "fw-in": "asa-i", "lb": "f5", "be1": "exch1", "be2": "exch2"}
    args = [f"{names[p.stem]}={p}" for p in sorted((captures / "paths" / "wrong_source").glob("*.pcap"))]
    doc = run_cli("analyze", *args, "--format", "json").json()
    kinds = {f["kind"] for f in doc["findings"]}
    assert "firewall_drop" in kinds, "device names switched the path checks off"
    notes = " ".join(doc["topology"]["notes"])
    assert "capture f5: taken at the load balancer's own interface" in notes
    assert "capture exch2: taken at the back-end" in notes


# ---- wrong input says so ------------------------------------------------------------------------

def test_a_malformed_mac_is_a_usage_error_not_another_mac(captures):
    r = run_cli("analyze", str(captures / "healthy.pcap"), "--lb-mac", "02:00:00:00:00:0")
    assert r.code == 2 and "is not a MAC address" in r.err and len(r.err.strip().splitlines()) == 1


def test_a_mac_in_cisco_form_is_accepted(captures):
    r = run_cli("analyze", str(captures / "healthy.pcap"), "--lb-mac", "0200.0000.000a")
    assert r.code == 0


def test_an_unknown_topology_key_is_a_usage_error_naming_it(captures, tmp_path):
    t = tmp_path / "site.toml"
    t.write_text('[lb]\nmac = ["02:00:00:00:00:0a"]\n')
    r = run_cli("analyze", str(captures / "healthy.pcap"), "--topology", str(t))
    assert r.code == 2 and "'mac'" in r.err


def test_hostcheck_from_a_file_with_nothing_recognisable_is_a_usage_error(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello\nthis is not netsh output\n")
    r = run_cli("hostcheck", "--vip", "192.0.2.25", "--from", str(f))
    assert r.code == 2 and "nothing recognisable" in r.err


# ---- firewall_drop and the "next capture was running" guard -------------------------------------

@pytest.mark.parametrize("start,dropped", [(1_700_000_001.0, True), (1_700_000_005.6, False)])
def test_a_drop_is_inferred_only_while_the_next_capture_was_running(captures, tmp_path, start, dropped):
    """be2's real-address SYN-ACKs pass fw-in at 2.03, 3.03 and 5.03 s and never reach fw-out. With
    fw-out's capture started before them they were dropped; started after the last one (plus the
    0.5 s margin) fw-out's silence about them proves nothing."""
    from scapy.utils import rdpcap, wrpcap

    src = captures / "paths" / "wrong_source"
    cut = tmp_path / "fw-out.pcap"
    wrpcap(str(cut), [p for p in rdpcap(str(src / "fw-out.pcap")) if float(p.time) >= start])
    args = [f"{v}={src / (v + '.pcap')}" for v in ("client", "fw-in", "lb", "be1", "be2")] + [f"fw-out={cut}"]
    doc = run_cli("analyze", *args, "--format", "json").json()
    drops = [f for f in doc["findings"] if f["kind"] == "firewall_drop"]
    assert bool(drops) == dropped, drops
    if dropped:
        assert drops[0]["between"] == {"from": "fw-in", "to": "fw-out"}
