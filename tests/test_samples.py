"""Golden runs (Zeek btest style): every sample in captures/MANIFEST.toml gives exactly its findings
and exit code, and every cited frame is the packet the finding says it is, according to tshark."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import jsonschema
import pytest

from tests.conftest import CAPTURES, ROOT, run_cli, tshark_fields

pytestmark = pytest.mark.usefixtures("tracker")  # every test on the C tracker and on the Python reference


MANIFEST = tomllib.loads((CAPTURES / "MANIFEST.toml").read_text())["capture"]
SCHEMA = json.loads((ROOT / "docs" / "report.schema.json").read_text())


def analyze_json(entry) -> tuple[int, dict]:
    r = run_cli("analyze", str(CAPTURES / entry["file"]), "--format", "json", *entry["args"])
    return r.code, r.json()


@pytest.fixture(scope="module")
def results(tracker):
    return {e["file"]: analyze_json(e) for e in MANIFEST}


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_sample_gives_exactly_its_manifest_findings(results, entry):
    code, doc = results[entry["file"]]
    got = sorted((f["kind"], f["severity"]) for f in doc["findings"])
    want = sorted((f["kind"], f["severity"]) for f in entry["findings"])
    assert got == want, json.dumps(doc["findings"], indent=1)[:3000]
    for f in entry["findings"]:
        if "backend_mac" in f:
            (match,) = [x for x in doc["findings"] if x["kind"] == f["kind"]]
            assert match["backend"] and match["backend"]["mac"] == f["backend_mac"]


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_sample_exit_code_follows_its_findings(results, entry):
    assert results[entry["file"]][0] == entry["exit"]


@pytest.mark.parametrize("entry", MANIFEST, ids=[e["file"] for e in MANIFEST])
def test_sample_report_validates_against_the_json_schema(results, entry):
    jsonschema.validate(results[entry["file"]][1], SCHEMA)


@pytest.mark.parametrize("entry", [e for e in MANIFEST if e["findings"]], ids=[e["file"] for e in MANIFEST if e["findings"]])
def test_every_finding_has_evidence_explanation_and_both_fixes(results, entry):
    for f in results[entry["file"]][1]["findings"]:
        assert f["evidence"] and f["explanation"] and f["fix"]["windows"] and f["fix"]["linux"]
        for ev in f["evidence"]:
            assert ev["capture"].endswith(entry["file"]) and ev["frame"] >= 1


def _tshark_frame(tshark, path: Path, frame: int) -> dict:
    rows = tshark_fields(tshark, path, f"frame.number=={frame}", "frame.time_epoch", "ip.src", "ipv6.src", "tcp.flags.str",
                         "arp.opcode", "arp.src.proto_ipv4", "arp.src.hw_mac", "eth.dst", "icmpv6.nd.na.target_address")
    (row,) = rows
    keys = ["epoch", "ip", "ip6", "flags", "arp_op", "arp_ip", "arp_mac", "eth_dst", "na_target"]
    return dict(zip(keys, row + [""] * (len(keys) - len(row))))


def test_wrong_source_evidence_frames_are_the_syn_and_the_real_ip_syn_ack(results, tshark):
    f = results["wrong_source.pcap"][1]["findings"][0]
    whats = {ev["frame"]: ev for ev in f["evidence"]}
    synacks = [fr for fr, ev in whats.items() if ev["what"].startswith("SYN-ACK from real address")]
    syns = [fr for fr, ev in whats.items() if ev["what"].startswith("SYN ")]
    assert synacks and syns
    for fr in synacks:
        t = _tshark_frame(tshark, CAPTURES / "wrong_source.pcap", fr)
        assert t["ip"] == "192.0.2.12" and "S" in t["flags"] and "A" in t["flags"]
        assert abs(float(t["epoch"]) - whats[fr]["epoch"]) < 1e-6
    for fr in syns:
        t = _tshark_frame(tshark, CAPTURES / "wrong_source.pcap", fr)
        assert "S" in t["flags"] and "A" not in t["flags"].replace("·", "")


def test_arp_leak_evidence_frame_is_the_backends_arp_reply(results, tshark):
    f = results["arp_leak.pcap"][1]["findings"][0]
    frames = [ev["frame"] for ev in f["evidence"] if "ARP reply" in ev["what"]]
    assert frames
    t = _tshark_frame(tshark, CAPTURES / "arp_leak.pcap", frames[0])
    assert (t["arp_op"], t["arp_ip"], t["arp_mac"]) == ("2", "192.0.2.25", "02:00:00:00:00:12")


def test_vip_missing_evidence_frames_are_syns_to_the_backend_mac(results, tshark):
    f = results["vip_missing.pcap"][1]["findings"][0]
    for ev in f["evidence"]:
        t = _tshark_frame(tshark, CAPTURES / "vip_missing.pcap", ev["frame"])
        assert t["eth_dst"] == "02:00:00:00:00:12" and "S" in t["flags"]


def test_healthy_site_infers_vip_lb_and_both_backends_by_banner(results):
    doc = results["healthy.pcap"][1]
    topo = doc["topology"]
    assert [(v["ip"], v["source"]) for v in topo["vips"]] == [("192.0.2.25", "inferred")]
    assert [m["mac"] for m in topo["load_balancer"]["macs"]] == ["02:00:00:00:00:0a"]
    rows = {r["backend"]["name"]: r for r in doc["backends"]}
    assert set(rows) == {"mx1.example.net", "mx2.example.net"}
    assert all(r["connections"] == 2 and r["completed"] == 2 for r in rows.values())
    conns = doc["connections"]
    assert all(c["smtp"]["starttls_started"] and c["smtp"]["banner_host"] == c["backend"]["name"] for c in conns)
    assert all(c["l2_path"]["forwarded_copies"] > 0 for c in conns)


def test_client_capture_says_it_cannot_check_arp(results):
    (cap,) = results["healthy-client.pcapng"][1]["captures"]
    assert any("no ARP/NDP for the VIP" in x for x in cap["cannot_show"])


def test_damaged_sample_reports_where_it_stopped(results):
    (cap,) = results["damaged.pcap"][1]["captures"]
    assert cap["damage"].startswith("stopped after frame ")
    assert cap["connections"] >= 2


def test_a_given_backend_claiming_the_vip_is_named_as_given(cli):
    r = cli("analyze", str(CAPTURES / "arp_leak.pcap"), "-f", "json", "--lb-mac", "02-00-00-00-00-0A",
            "--backend", "mx2=192.0.2.12@02:00:00:00:00:12")
    (f,) = [f for f in r.json()["findings"] if f["kind"] == "arp_reply_for_vip_from_backend"]
    assert (f["severity"], f["backend"]["name"], f["backend"]["source"]) == ("error", "mx2", "given")


def test_all_samples_together_keep_each_finding_at_its_own_vantage(cli):
    files = [e["file"] for e in MANIFEST if not e["args"] and e["file"] != "damaged.pcap"]
    r = cli("analyze", *[str(CAPTURES / f) for f in files], "-f", "json")
    got = sorted((tuple(f["vantages"]), f["kind"]) for f in r.json()["findings"])
    from dsrdiag.capture.sources import vantage_of
    want = sorted(((vantage_of(e["file"]),), x["kind"]) for e in MANIFEST if e["file"] in files for x in e["findings"])
    assert got == want


@pytest.mark.parametrize("name", ["healthy.pcap", "hostile_banner.pcap", "snat_proxy.pcap", "arp_leak6.pcapng"])
def test_json_written_through_orjson_is_byte_for_byte_the_stdlib_encoders(name):
    """The report streams connections through orjson when the output has a byte stream; a text-only
    stream takes json's encoder: both must write the same document."""
    import io

    from dsrdiag.core.topology import Topology
    from dsrdiag.jobs.analyze import analyze
    from dsrdiag.report import jsondoc

    if jsondoc.orjson is None:
        pytest.skip("orjson not installed")
    report = analyze([("lan", str(CAPTURES / name))], Topology())
    raw = io.BytesIO()
    fast = io.TextIOWrapper(raw, encoding="utf-8", newline="")
    jsondoc.write(report, fast)
    fast.flush()
    text_only = io.StringIO()
    jsondoc.write(report, text_only)
    assert raw.getvalue().decode("utf-8") == text_only.getvalue()
    assert json.loads(text_only.getvalue())["connections"]
