"""Several captures of the same sessions (captures/paths/<set>/, one per vantage), analysed together:
each injected fault is placed at the right vantage with the right kind, the LB mode is recognised,
clock offsets are found, and nothing is reported on the healthy set (captures/MANIFEST.toml [[set]])."""

from __future__ import annotations

import importlib.util
import json
import sys
import tomllib

import jsonschema
import pytest

from tests.conftest import CAPTURES, ROOT, run_cli

pytestmark = pytest.mark.usefixtures("tracker")  # every test on the C tracker and on the Python reference


SETS = tomllib.loads((CAPTURES / "MANIFEST.toml").read_text())["set"]
VANTAGES = ("client", "fw-out", "fw-in", "lb", "be1", "be2")
SCHEMA = json.loads((ROOT / "docs" / "report.schema.json").read_text())


def _build_module():
    spec = importlib.util.spec_from_file_location("capture_build", CAPTURES / "build.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def analyse_set(name: str, *extra: str, names=VANTAGES) -> tuple[int, dict]:
    folder = CAPTURES / "paths" / name
    args = [f"{n}={folder / (v + '.pcap')}" for n, v in zip(names, VANTAGES)]
    r = run_cli("analyze", *args, "--format", "json", *extra)
    return r.code, r.json()


@pytest.fixture(scope="module")
def results(tracker):
    return {s["name"]: analyse_set(s["name"]) for s in SETS}


def where(f) -> str:
    """A finding's place as MANIFEST.toml writes it: `from->to` for a segment of the path
    (`between`), else its vantages in path order."""
    if f["between"]:
        return f"{f['between']['from']}->{f['between']['to']}"
    return ", ".join(f["vantages"])


def lost_packets(doc) -> list[str]:
    out = []
    for f in doc["correlation"]["flows"]:
        for p in f["packets"]:
            if p["lost_before"]:
                d = ">" if p["direction"] == "client_to_server" else "<"
                out.append(f"{d} {p['flags']} {p['last_seen']}>{p['lost_before']}")
    return sorted(set(out))


@pytest.mark.parametrize("entry", SETS, ids=[s["name"] for s in SETS])
def test_path_set_reports_exactly_its_faults_at_their_vantages(results, entry):
    code, doc = results[entry["name"]]
    got = sorted([f["kind"], where(f)] for f in doc["findings"])
    assert got == sorted(entry["findings"]), json.dumps(doc["findings"], indent=1)[:3000]
    assert code == entry["exit"]
    jsonschema.validate(doc, SCHEMA)


@pytest.mark.parametrize("entry", SETS, ids=[s["name"] for s in SETS])
def test_path_set_places_every_lost_packet_where_it_died(results, entry):
    assert lost_packets(results[entry["name"]][1]) == sorted(entry["lost"])


@pytest.mark.parametrize("entry", SETS, ids=[s["name"] for s in SETS])
def test_path_set_recognises_the_load_balancing_mode(results, entry):
    flows = [f for f in results[entry["name"]][1]["correlation"]["flows"] if f["mode"] and f["leg"] != "back"]
    modes: dict[str, int] = {}
    for f in flows:
        modes[f["mode"]] = modes.get(f["mode"], 0) + 1
    assert modes == entry["modes"]
    for f in flows:
        assert f["matched_by"], f


def test_clock_offsets_bracket_each_captures_injected_clock_error(results):
    clock = _build_module().CLOCK
    for name in ("healthy", "nat", "proxy"):
        offsets = {o["vantage"]: o for o in results[name][1]["correlation"]["clock_offsets"]}
        assert set(offsets) == set(VANTAGES) - {"client"}, name
        for v, o in offsets.items():
            true = clock[v] - clock["client"]
            if o["basis"] == "two-way":
                assert abs(o["offset_s"] - true) <= o["uncertainty_s"] + 1e-6, (name, v, o, true)
                assert o["uncertainty_s"] < 0.011  # at most half the 20 ms round trip, plus spread
            else:  # one direction: the offset includes the transit time (under 10 ms here)
                assert 0 <= o["offset_s"] - true <= 0.0101, (name, v, o, true)
    # the proxy's back-ends share no packet with the client: chained through the LB
    proxy = {o["vantage"]: o for o in results["proxy"][1]["correlation"]["clock_offsets"]}
    assert proxy["be1"]["via"] == ["lb"] and proxy["be2"]["via"] == ["lb"]


def test_full_proxy_legs_are_linked_by_smtp_payload_and_timing(results):
    doc = results["proxy"][1]
    fronts = [f for f in doc["correlation"]["flows"] if f["leg"] == "front"]
    backs = [f for f in doc["correlation"]["flows"] if f["leg"] == "back"]
    assert len(fronts) == len(backs) == 3
    for f in fronts:
        assert f["linked"].startswith("192.0.2.10:") and " at be" in f["linked"]
        assert any("SMTP payload" in m for m in f["matched_by"]) and any("timing" in m for m in f["matched_by"])
    # each back leg points back at its own client
    assert sorted(b["linked"].split(" ->")[0] for b in backs) == sorted(f["client"] for f in fronts)


def test_nat_views_are_joined_by_the_clients_isn(results):
    for f in results["nat"][1]["correlation"]["flows"]:
        assert f["mode"] == "nat" and "client ISN (addresses rewritten)" in f["matched_by"]
        assert " -> 192.0.2.1" in f["linked"]  # the back-end's own address, as the back-end saw it
        assert set(f["vantages"]) >= {"client", "lb"}


def test_dsr_views_are_matched_by_addresses_sequence_numbers_and_ip_id(results):
    for f in results["healthy"][1]["correlation"]["flows"]:
        assert f["matched_by"] == ["addresses and ports", "TCP sequence numbers, flags and lengths", "IP ID"]
        assert f["died"] is None


def test_bypass_names_the_router_the_replies_went_to(results):
    entry = next(s for s in SETS if s["name"] == "asym")
    (f,) = [f for f in results["asym"][1]["findings"] if f["kind"] == "asymmetric_flow" and f["between"]]
    assert entry["bypass_via"] in f["summary"]
    assert {e["vantage"] for e in f["evidence"]} == {"be2", "client"}


def test_same_fault_at_several_vantages_is_one_finding_with_every_vantages_frames(results):
    doc = results["wrong_source"][1]
    (f,) = [f for f in doc["findings"] if f["kind"] == "return_source_not_vip"]
    assert {e["vantage"] for e in f["evidence"]} == {"fw-in", "be2"}
    assert f["vantages"] == ["fw-in", "be2"] and f["between"] is None
    assert "The same fault is seen" not in f["summary"]  # the first vantage's own sentence, unchanged by grouping


def test_firewall_drop_cites_the_last_frame_before_and_says_it_is_inferred(results):
    doc = results["fw_drop_syn"][1]
    (f,) = [f for f in doc["findings"] if f["kind"] == "firewall_drop"]
    assert "inferred" in f["summary"]
    assert {e["vantage"] for e in f["evidence"]} == {"client", "fw-out"}


def test_per_backend_table_says_why_and_where_failed_connections_died(results):
    rows = {r["backend"]["mac"]: r for r in results["wrong_source"][1]["backends"]}
    be2 = rows["02:00:00:00:00:12"]
    assert be2["failed"] == 1 and be2["failures"] == [
        {"kind": "return_source_not_vip", "conn_state": None, "vantage": "fw-in",
         "text": "Back-end answers from its real IP, not the VIP: SYN, ACK (server->client) last seen at fw-in, not at fw-out",
         "connections": 1}]
    assert rows["02:00:00:00:00:11"]["failed"] == 0


def test_topology_file_gives_roles_and_order_to_arbitrarily_named_captures(tmp_path, results):
    names = ("edge", "asa-outside", "asa-inside", "f5", "exch1", "exch2")
    topo = tmp_path / "site.toml"
    topo.write_text("".join(f'[[vantage]]\nname = "{n}"\nrole = "{r}"\n\n'
                            for n, r in zip(names, ("client", "fw-out", "fw-in", "lb", "be", "be"))))
    code, doc = analyse_set("wrong_source", "--topology", str(topo), names=names)
    rename = dict(zip(VANTAGES, names))

    def renamed(v: str) -> str:
        sep = "->" if "->" in v else ", "
        return sep.join(rename.get(x, x) for x in v.split(sep))
    want = sorted([k, renamed(v)] for k, v in next(s for s in SETS if s["name"] == "wrong_source")["findings"])
    assert sorted([f["kind"], where(f)] for f in doc["findings"]) == want
    assert code == 1


def test_unknown_vantage_role_in_topology_file_is_a_usage_error(tmp_path):
    topo = tmp_path / "site.toml"
    topo.write_text('[[vantage]]\nname = "x"\nrole = "router"\n')
    r = run_cli("analyze", str(CAPTURES / "healthy.pcap"), "--topology", str(topo))
    assert r.code == 2 and "role 'router'" in r.err and "Traceback" not in r.err


@pytest.mark.parametrize("outer", ["ipip", "gre", "6in4"])
def test_client_packets_inside_ipip_6in4_and_gre_are_analysed_with_the_encapsulator_kept(outer):
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import GRE, Ether

    from dsrdiag.decode.packet import KIND_TCP, decode

    inner = (IPv6(src="2001:db8:51::7", dst="2001:db8:25::25") if outer == "6in4" else
             IP(src="198.51.100.7", dst="192.0.2.25", id=77)) / TCP(sport=40000, dport=25, flags="S", seq=1234)
    outer_ip = IP(src="192.0.2.10", dst="192.0.2.11")
    pkt = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:11") / (outer_ip / GRE() / inner if outer == "gre" else outer_ip / inner)
    data = bytes(pkt)
    p = decode((1, 0, 1, data, len(data)), frozenset((25,)))
    assert p is not None and p.kind == KIND_TCP
    assert p.tunnel == bytes([192, 0, 2, 10]) and p.dport == 25 and p.seq == 1234
    assert p.src == (bytes(inner)[8:24] if outer == "6in4" else bytes([198, 51, 100, 7]))


@pytest.mark.parametrize("name", [s["name"] for s in SETS])
def test_each_connection_counts_once_in_the_back_end_table(results, name):
    """The back-end table counts what the verdict counts: a connection seen at six vantages, or
    proxied / NATed (a front leg to the VIP and a back leg to the back-end's own address), is one
    connection of one back-end. The DSR sets, where every leg goes to the VIP, must not change."""
    _, doc = results[name]
    v = doc["verdict"]
    served = sum(b["connections"] for b in doc["backends"])
    done = sum(b["completed"] for b in doc["backends"])
    assert served <= v["connections"], (name, served, v)
    assert done <= v["completed"], (name, done, v)
    if all(f["severity"] != "error" for f in doc["findings"]):  # every connection reached a back-end
        assert served == v["connections"], (name, served, v)


@pytest.mark.parametrize("folder, says", [
    ("nat", "HEALTHY - the service works, but not by DSR: the load balancer NATs the connections"),
    ("proxy", "HEALTHY - the service works, but not by DSR: the load balancer opens the connections to the back-ends from its own address"),
    ("healthy", "HEALTHY - no DSR problem found"),
])
def test_a_healthy_verdict_says_when_the_load_balancer_does_not_do_dsr(folder, says, cli):
    caps = [f"{v}={CAPTURES / 'paths' / folder / (v + '.pcap')}" for v in ("client", "fw-out", "fw-in", "lb", "be1", "be2")
            if (CAPTURES / "paths" / folder / (v + ".pcap")).exists()]
    v = cli("analyze", *caps, "--format", "json", check_code=0).json()["verdict"]
    assert v["state"] == "healthy" and v["text"].startswith(says)
