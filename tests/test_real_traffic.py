"""Real captures from public projects: no false finding on healthy SMTP, SMTP facts agree with
Zeek's smtp.log, and every link type there is read."""

from __future__ import annotations

import pytest

from dsrdiag.core.topology import build
from dsrdiag.jobs.analyze import analyze
from dsrdiag.track.pipeline import track_capture

pytestmark = pytest.mark.usefixtures("tracker")  # every test on the C tracker and on the Python reference


HEALTHY_SMTP = ["zeek-smtp.pcap", "zeek-smtp-starttls.pcap", "chrissanders-mail_sender_attachment.pcapng"]


@pytest.mark.parametrize("name", HEALTHY_SMTP)
def test_healthy_real_smtp_traffic_gives_no_problem(real, cli, name):
    r = cli("analyze", str(real / name), "--format", "json")
    doc = r.json()
    assert [f for f in doc["findings"] if f["severity"] != "info"] == []
    assert r.code == 0 and doc["verdict"]["state"] == "healthy"


def test_smtp_dialogue_matches_zeek_smtp_log_for_starttls(real):
    (c,) = track_capture(str(real / "zeek-smtp-starttls.pcap"), "t", (25,)).connections
    # zeek smtp.log: helo openssl.client.net, last_reply "220 2.0.0 Ready to start TLS", tls T
    assert c.smtp.helo == "openssl.client.net"
    assert c.smtp.last_reply == "220 2.0.0 Ready to start TLS"
    assert c.smtp.starttls_offered and c.smtp.starttls_started
    assert c.smtp.banner_host == "mx.google.com"


def test_smtp_dialogue_matches_zeek_smtp_log_for_plain_sessions(real):
    text = (real / "zeek-smtp.pcap.zeek-smtp.expected").read_text()
    conns = list(track_capture(str(real / "zeek-smtp.pcap"), "t", (25,)).connections)
    helos = [c.smtp.helo for c in conns]
    for helo in helos:
        assert f"\t{helo}\t" in text
    # the message body is skipped, and the replies after DATA are still followed
    assert conns[0].smtp.reply_codes[-3:] == (354, 250, 221)


def test_every_link_type_in_the_shared_captures_reads(real):
    seen = set()
    for p in sorted(real.iterdir()):
        if p.suffix not in (".pcap", ".pcapng"):
            continue
        r = track_capture(str(p), p.stem, (25, 80, 443, 22))
        assert r.damage is None, p.name
        seen.update(r.linktypes)
    assert {0, 1, 101, 113, 276} <= seen


def test_arp_claims_are_read_through_qinq_and_linux_cooked(real):
    qinq = track_capture(str(real / "tcpdump-802.1ad_QinQ.pcap"), "q", (25,))
    assert qinq.neighbours.claim_counts  # the reply inside 802.1ad + 802.1Q
    sll = track_capture(str(real / "zeek-linuxsll-arp.pcap"), "s", (25,))
    assert sll.neighbours.claim_counts.get(("192.168.22.81", "00:50:56:8b:3f:0d")) == 2  # 2 gratuitous ARPs
    zeek = (real / "zeek-linuxsll-arp.pcap.zeek-stdout.expected").read_text().splitlines()
    asked = sum(1 for line in zeek if line.split(", ")[4:5] == ["10.1.10.1"])  # Zeek's arp_request events
    assert sll.neighbours.requests.get("10.1.10.1") == asked == 9


def test_malformed_arp_is_counted_as_an_anomaly_not_a_claim(real):
    r = track_capture(str(real / "zeek-arp-leak.pcap"), "a", (25,))
    assert sum(r.anomalies.values()) == 6 and not r.neighbours.claim_counts
    assert any("hln=255" in k for k in r.anomalies) and any("pln=255" in k for k in r.anomalies)


def test_arp_poisoning_real_capture_names_the_mac_that_claims_the_protected_ip(real):
    # 00:25:b3:bf:91:ee claims the gateway 172.16.0.1 in ARP. Told that 172.16.0.1 is a VIP whose
    # rightful owner is another MAC, dsrdiag must name the poisoning MAC with its evidence frame.
    rep = analyze([("poison", str(real / "chrissanders-arppoison.pcapng"))],
                  build(vips=["172.16.0.1"], ports=[80], lb_macs=["02:00:00:00:00:0a"]))
    (f,) = [f for f in rep.findings if f.kind == "vip_claimed_by_several_macs"]
    assert f.severity == "error" and "00:25:b3:bf:91:ee" in f.summary and "02:00:00:00:00:0a" in f.summary
    # its first claim: frame 54, a who-has sent *as* 172.16.0.1 (every receiver caches a request's
    # sender, RFC 826), before the forged reply of frame 56
    assert [e.frame for e in f.evidence] == [54]
    assert not [f for f in rep.findings if f.kind == "arp_reply_for_vip_from_backend"]  # the poisoner serves nothing


def test_ipv6_neighbour_advertisement_from_another_mac_is_seen(real):
    r = track_capture(str(real / "chrissanders-icmpv6_neighbor_solicitation.pcapng"), "n", (25,))
    assert ("2001:db8:1:2::1000", "00:0c:29:1f:a7:55") in r.neighbours.claim_counts


def test_one_sided_real_capture_is_one_warning_about_the_capture_and_inconclusive(real, cli):
    r = cli("analyze", str(real / "zeek-ssh-server-side-half-duplex.pcap"), "--port", "22", "-f", "json")
    doc = r.json()
    assert [(f["kind"], f["severity"]) for f in doc["findings"]] == [("capture_one_sided", "warning")]
    assert len(doc["findings"][0]["connections"]) == 20  # all 20 connections of Zeek's conn.log
    assert r.code == 4 and doc["verdict"]["state"] == "inconclusive"