"""A SYN flood or a scan is one finding, not one per connection (findings/kinds/syn_flood_or_scan.py).

Captures are written here (tests/floodgen.py: raw frames, documentation addresses) and analysed
with the real CLI. Each rule has a case where it must not fire: a handful of unanswered SYNs on a
healthy site, real clients retransmitting to a dead service, a slow trickle, a small scan.
"""

from __future__ import annotations

import random

import pytest

from conftest import run_cli
from floodgen import VIP, Pcap, flood, retrying, scan, sessions

T0 = 1700000000.0


def _analyze(tmp_path, build, *args):
    path = tmp_path / "cap.pcap"
    p, rng = Pcap(path), random.Random(7)
    build(p, rng)
    p.close()
    r = run_cli("analyze", str(path), "--format", "json", *args)
    assert r.code in (0, 1, 4), r.err
    return r.code, r.json()


def _kinds(doc):
    return sorted(f["kind"] for f in doc["findings"])


def test_a_syn_flood_is_one_finding_with_its_counts_rate_sources_and_first_and_last_frames(tmp_path):
    code, doc = _analyze(tmp_path, lambda p, rng: flood(p, rng, 3000, T0, 2000.0, n_sources=40))
    assert _kinds(doc) == ["syn_flood_or_scan"]  # no asymmetric_flow or syn_unanswered per connection
    f = doc["findings"][0]
    assert f["severity"] == "warning" and f["subject"] == f"{VIP}:25"
    assert f["summary"].startswith(f"3000 connection attempts to {VIP}:25 in 1.5 s from 40 sources")
    assert "peak 2000/s" in f["summary"] and "mean 2000/s" in f["summary"] and "answered 0%" in f["summary"]
    assert [e["frame"] for e in f["evidence"]] == [1, 3000]
    assert f["connections"] == []  # counted, not listed ...
    assert len(doc["connections"]) == 3000  # ... while the connection list keeps every attempt
    assert doc["verdict"]["state"] == "inconclusive" and code == 4
    assert "only a SYN flood or scan reached 192.0.2.25 on port 25 (3000 attempts, set apart)" in doc["verdict"]["text"]


def test_a_flood_beside_healthy_sessions_leaves_the_sessions_judged_healthy(tmp_path):
    def build(p, rng):
        sessions(p, rng, 50, T0, 100.0)
        flood(p, rng, 2000, T0 + 1, 4000.0)
    code, doc = _analyze(tmp_path, build)
    assert _kinds(doc) == ["syn_flood_or_scan"]
    v = doc["verdict"]
    assert code == 0 and v["state"] == "healthy" and v["connections"] == 50 and v["completed"] == 50
    assert "2000 attempts of a SYN flood or scan set apart" in v["text"]
    assert "50 other connections to it were judged as usual" in doc["findings"][0]["summary"]


def test_a_real_client_unanswered_during_a_flood_is_a_consequence_of_it(tmp_path):
    def build(p, rng):
        flood(p, rng, 2000, T0, 2000.0)
        retrying(p, rng, 2, T0 + 0.2, 10.0)
    code, doc = _analyze(tmp_path, build)
    by_kind = {f["kind"]: f for f in doc["findings"]}
    assert sorted(by_kind) == ["syn_flood_or_scan", "syn_unanswered"]
    assert by_kind["syn_unanswered"]["explained_by"] == by_kind["syn_flood_or_scan"]["id"]
    assert by_kind["syn_flood_or_scan"]["consequences"] == [by_kind["syn_unanswered"]["id"]]
    assert len(by_kind["syn_unanswered"]["connections"]) == 2


def test_a_handful_of_unanswered_syns_on_a_healthy_site_stay_syn_unanswered(tmp_path):
    def build(p, rng):
        sessions(p, rng, 40, T0, 50.0)
        retrying(p, rng, 3, T0 + 0.1, 5.0)
    code, doc = _analyze(tmp_path, build)
    assert _kinds(doc) == ["syn_unanswered"]
    assert doc["verdict"]["state"] == "broken" and "set apart" not in doc["verdict"]["text"]


def test_many_real_clients_retrying_a_dead_service_are_syn_unanswered_not_a_flood(tmp_path):
    # the rate and count of a flood, but every client retransmits: a broken service, not an attack
    code, doc = _analyze(tmp_path, lambda p, rng: retrying(p, rng, 1500, T0, 1000.0))
    assert _kinds(doc) == ["syn_unanswered"]
    assert len(doc["findings"][0]["connections"]) == 1500


def test_a_slow_trickle_of_lone_syns_is_not_a_flood(tmp_path):
    # 1200 lone SYNs, but one a second: below the flood's rate (they are judged as usual)
    code, doc = _analyze(tmp_path, lambda p, rng: flood(p, rng, 1200, T0, 1.0))
    assert "syn_flood_or_scan" not in _kinds(doc)
    assert "set apart" not in doc["verdict"]["text"]


def test_one_source_failing_to_reach_25_addresses_is_an_address_scan(tmp_path):
    code, doc = _analyze(tmp_path, lambda p, rng: (sessions(p, rng, 10, T0, 50.0), scan(p, rng, 30, T0 + 1)), "--vip", VIP)
    scans = [f for f in doc["findings"] if f["kind"] == "syn_flood_or_scan"]
    assert len(scans) == 1 and scans[0]["subject"] == "scan from 203.0.113.66"
    assert "30 addresses on port 25" in scans[0]["summary"]
    assert scans[0]["evidence"][0]["frame"] == 91  # its first SYN, after the 10 sessions' 90 frames


def test_a_source_failing_to_reach_fewer_addresses_than_zeeks_threshold_is_no_scan(tmp_path):
    code, doc = _analyze(tmp_path, lambda p, rng: (sessions(p, rng, 10, T0, 50.0), scan(p, rng, 20, T0 + 1)), "--vip", VIP)
    assert "syn_flood_or_scan" not in _kinds(doc)


def test_the_flood_finding_is_the_same_with_jobs_and_with_the_store_spilled(tmp_path):
    path = tmp_path / "cap.pcap"
    p, rng = Pcap(path), random.Random(3)
    flood(p, rng, 2500, T0, 5000.0)
    p.close()
    other = tmp_path / "other.pcap"
    p = Pcap(other)
    sessions(p, rng, 20, T0, 50.0)
    p.close()
    one = run_cli("analyze", str(path), str(other), "--format", "json", "--jobs", "1").json()
    import os
    os.environ["DSRDIAG_SPILL_AT"] = "100"
    try:
        two = run_cli("analyze", str(path), str(other), "--format", "json", "--jobs", "2").json()
    finally:
        del os.environ["DSRDIAG_SPILL_AT"]
    assert one == two
    assert [f["kind"] for f in one["findings"]] == ["syn_flood_or_scan"]


def test_attempts_kept_small_across_sweeps_give_the_records_of_the_python_tracker(tmp_path, monkeypatch):
    # the C tracker freezes connections still open at a sweep (a flood's attempts, clients retrying
    # their SYN, handshakes half done) and thaws them on their next packet or timer: the records
    # must be the reference tracker's, byte for byte, with sweeps every 500 frames
    from dsrdiag.track import conn, pipeline

    if conn._native is None:
        pytest.skip("the C tracker is not built (python3 setup.py build_ext --inplace)")
    path = tmp_path / "mix.pcap"
    p, rng = Pcap(path), random.Random(11)
    flood(p, rng, 3000, T0, 500.0)           # 6 s: attempts time out while later ones arrive
    retrying(p, rng, 200, T0 + 0.5, 50.0)    # SYNs again 1 s and 3 s later: thawed by their retries
    sessions(p, rng, 300, T0 + 1, 60.0)      # complete sessions, some open across a sweep
    p.close()
    monkeypatch.setattr(pipeline, "SWEEP_EVERY", 500)
    frozen = []
    real = conn.ConnTracker.sweep

    def sweep(self):
        real(self)
        if self.native is not None:
            frozen.append(self.native.frozen)
    monkeypatch.setattr(conn.ConnTracker, "sweep", sweep)
    c = list(pipeline.track_capture(str(path), "v", (25,), tracker="c").connections)
    assert max(frozen) > 1000  # the attempts waiting out their timers were frozen
    py = list(pipeline.track_capture(str(path), "v", (25,), tracker="python").connections)
    assert len(c) == 3000 + 200 + 300
    assert c == py


def test_clients_refused_at_a_floods_rate_are_connection_refused_not_a_flood(tmp_path):
    # a RST from the server is an answer real clients take at once (they never retry it): however
    # fast they come, refused attempts are the service's fault, not an attack
    def build(p, rng):
        for i in range(3000):
            t, c, port, isn = T0 + i / 5000.0, f"198.51.100.{1 + i % 200}", 1024 + i, rng.getrandbits(32)
            p.tcp(t, c, port, VIP, 25, 0x02, isn)
            p.tcp(t + 0.0001, VIP, 25, c, port, 0x14, 0, isn + 1, to_server=False)
    code, doc = _analyze(tmp_path, build)
    assert _kinds(doc) == ["connection_refused"] and code == 1
