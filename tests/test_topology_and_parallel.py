"""Topology options parse as admins write them; findings do not depend on how captures are read
(alone, in parallel workers, or with --jobs 1)."""

from __future__ import annotations

import pytest

from dsrdiag.capture.sources import parse_sources
from dsrdiag.core.errors import UsageError
from dsrdiag.core.topology import build, parse_backend
from tests.conftest import CAPTURES

pytestmark = pytest.mark.usefixtures("tracker")  # every test on the C tracker and on the Python reference


def test_backend_spec_accepts_name_ip_and_mac_spellings():
    b = parse_backend("exch1=192.0.2.11@00-50-56-AA-BB-CC")
    assert (b.name, b.ip, b.mac) == ("exch1", "192.0.2.11", "00:50:56:aa:bb:cc")
    assert parse_backend("2001:db8:25::11").name == "2001:db8:25::11"
    assert parse_backend("be2=@0050.56aa.bbcd").mac == "00:50:56:aa:bb:cd"
    with pytest.raises(UsageError):
        parse_backend("be3=")


def test_ipv6_vip_is_canonicalised():
    t = build(vips=["2001:DB8:25:0::25"], ports=[25, 587, 25])
    assert t.vips[0].ip == "2001:db8:25::25" and t.ports == (25, 587)


def test_vantage_names_come_from_labels_or_file_stems():
    got = parse_sources([f"fw-in={CAPTURES / 'healthy.pcap'}", str(CAPTURES / "healthy.pcap.gz"), str(CAPTURES / "healthy.pcap")])
    assert [v for v, _ in got] == ["fw-in", "healthy", "healthy-2"]


def _kinds(doc):
    return sorted((tuple(f["vantages"]), f["kind"], f["severity"], tuple(f["connections"]), tuple(e["frame"] for e in f["evidence"])) for f in doc["findings"])


def test_findings_are_identical_alone_in_parallel_and_with_one_job(cli):
    files = [str(CAPTURES / n) for n in ("wrong_source.pcap", "vip_missing.pcap", "arp_leak.pcap", "asym_bypass.pcap")]
    together_par = cli("analyze", *files, "-f", "json", "--jobs", "2").json()
    together_one = cli("analyze", *files, "-f", "json", "--jobs", "1").json()
    assert _kinds(together_par) == _kinds(together_one)
    alone = []
    for f in files:
        alone += _kinds(cli("analyze", f, "-f", "json").json())
    assert sorted(alone) == _kinds(together_par)
    assert together_par["connections"] == together_one["connections"]


@pytest.mark.parametrize("name, how", [
    ("healthy.pcap", "2 back-ends inferred from the MACs the VIP traffic was delivered to or answered from"),
    ("healthy-client.pcapng", "2 back-ends inferred from the hosts their SMTP banner names"),
    ("snat_proxy.pcap", "1 back-end inferred from the MAC the VIP traffic was delivered to or answered from"),
])
def test_the_inferred_back_ends_note_says_what_they_were_found_by(cli, name, how):
    doc = cli("analyze", str(CAPTURES / name), "--format", "json").json()
    notes = [n for n in doc["topology"]["notes"] if "inferred from" in n and "back-end" in n]
    assert len(notes) == 1 and notes[0].startswith(how)
