"""Topology inference from Facts gathered while tracking (track/facts.py) concludes what passes over
the records in report order concluded: records are made in the order connections finish, yet ties
(the busiest VIP, the forwarding MAC, a back-end's banner name) go to what appeared first."""

from __future__ import annotations

import dataclasses
import pickle
import random

import pytest

from dsrdiag.core import topology as topo
from dsrdiag.findings.infer import infer
from dsrdiag.track.facts import Facts
from dsrdiag.track.pipeline import track_capture
from dsrdiag.track.records import CaptureRecords, Connection, NoteBlock, NeighbourTable, SmtpDialogue
from tests.conftest import CAPTURES

pytestmark = pytest.mark.usefixtures("tracker")  # every test on the C tracker and on the Python reference


SAMPLES = sorted(p for p in CAPTURES.glob("*") if p.suffix in (".pcap", ".pcapng", ".gz"))
PATH_SETS = sorted(d for d in (CAPTURES / "paths").iterdir() if d.is_dir())


def _refact(r: CaptureRecords, order: list) -> CaptureRecords:
    f = Facts()
    for c in order:
        f.observe(c)
    return dataclasses.replace(r, facts=pickle.loads(pickle.dumps(f)))  # as from a worker


def _given():
    return topo.build(vips=[], ports=[], backends=[], lb_macs=[], lb_ips=[], topology_file=None)


@pytest.mark.parametrize("group", SAMPLES + PATH_SETS, ids=lambda p: p.name)
def test_inference_does_not_depend_on_the_order_records_were_made_in(group):
    paths = sorted(p for p in group.iterdir() if p.is_file()) if group.is_dir() else [group]
    records = [track_capture(str(p), p.stem, (25,)) for p in paths]
    want = infer(records, _given())
    rnd = random.Random(7)
    for trial in range(4):
        shuffled = []
        for r in records:
            conns = list(r.connections)
            if trial == 0:
                conns.reverse()
            else:
                rnd.shuffle(conns)
            shuffled.append(_refact(r, conns))
        assert infer(shuffled, _given()) == want


def _conn(n: int, ts: int, server: str, *, host: str | None = None, dst_mac: str = "02:00:00:00:00:0b",
          resp_mac: str | None = None, history: str = "ShAD") -> Connection:
    return Connection(
        uid=f"v:C{n}", capture="x.pcap", vantage="v", client_ip="203.0.113.7", client_port=40000 + n,
        server_ip=server, server_port=25, ip_version=4, first_ts_ns=ts, last_ts_ns=ts + 10, history=history,
        conn_state="S1", orig_pkts=3, resp_pkts=2 if resp_mac else 0, orig_bytes=0, resp_bytes=0, missed_bytes=0,
        orig_forwarded=0, resp_forwarded=0, orig_l2=(("02:00:00:00:00:01", dst_mac),),
        resp_l2=((resp_mac, "02:00:00:00:00:01"),) if resp_mac else (), orig_ttl=64, resp_ttl=64 if resp_mac else None,
        syn_seq=1000 + n, synack_ack=1001 + n if resp_mac else None, packets=NoteBlock(), syn_frames=NoteBlock(),
        smtp=SmtpDialogue(banner_code=220, banner_host=host) if host else None,
    )


def _records(conns: list[Connection]) -> CaptureRecords:
    f = Facts()
    for c in conns:
        f.observe(c)
    return CaptureRecords(capture="x.pcap", vantage="v", connections=tuple(sorted(conns, key=lambda c: (c.first_ts_ns, c.uid))),
                          neighbours=NeighbourTable(), anomalies={}, anomaly_frames={}, frames=0, passed=0,
                          linktypes=(1,), damage=None, skipped={}, reader="test", first_ts_ns=0, last_ts_ns=0, facts=f)


def test_equally_busy_vips_are_listed_in_order_of_their_first_connection_whatever_order_records_finish():
    early, late = "192.0.2.25", "198.51.100.25"
    conns = [_conn(1, 100, early), _conn(2, 900, late), _conn(3, 200, early), _conn(4, 300, late)]
    for made in (conns, conns[::-1], [conns[1], conns[3], conns[0], conns[2]]):
        t = infer([_records(made)], _given())
        assert [v.ip for v in t.vips] == [early, late]


def test_a_backend_named_by_two_banner_hosts_equally_often_takes_the_one_seen_first():
    vip, be = "192.0.2.25", "02:00:00:00:00:0b"
    conns = [_conn(1, 500, vip, host="mx-late", resp_mac=be), _conn(2, 100, vip, host="mx-early", resp_mac=be),
             _conn(3, 50, vip, resp_mac=be, history="S"),  # a connection without banner: no name
             _conn(4, 700, vip, host="mx-early", resp_mac=be), _conn(5, 600, vip, host="mx-late", resp_mac=be)]
    for made in (conns, conns[::-1]):
        t = infer([_records(made)], _given())
        assert [(b.name, b.mac) for b in t.backends] == [("mx-early", be)]


def test_facts_say_a_capture_is_the_load_balancers_own_interface_only_when_no_forwarded_connection_was_answered():
    c = _conn(1, 100, "192.0.2.25")._replace(orig_forwarded=2, orig_l2=(("02:00:00:00:00:01", "02:00:00:00:00:1b"),
                                                                         ("02:00:00:00:00:1b", "02:00:00:00:00:0b")))
    assert _records([c]).facts.lb_interface
    answered = c._replace(uid="v:C2", resp_pkts=1)
    assert not _records([c, answered]).facts.lb_interface
    assert not _records([_conn(3, 100, "192.0.2.25")]).facts.lb_interface
