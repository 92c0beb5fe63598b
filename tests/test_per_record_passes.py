"""The per-record passes made cheaper (issue 14) decide exactly what their straightforward versions
decided: the history bits (track/history.py) against the string scans they replace, Facts.observe
against a record-by-record reference of the same tables, and judge's pass, which leaves out the
collectors that cannot fire (idle) or can find nothing more, against feeding every collector
every record. Real captures: the samples, the path sets, the shared real captures (skipped when
absent), and a flood with sessions (tests/floodgen.py)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from dsrdiag.core import topology as topo
from dsrdiag.findings import judge as judge_mod
from dsrdiag.findings.context import NOT_RETRIED_NS, Context
from dsrdiag.findings.infer import infer
from dsrdiag.findings.kinds import CAPTURE_KINDS, capture_one_sided, proxy_protocol_header, smtp_xclient
from dsrdiag.jobs.analyze import BackendTally, ServiceTally, answered, completed
from dsrdiag.track import history as hist
from dsrdiag.track.facts import INITIAL_TTLS, SYN_SRC_MAX, Facts, forwarders, hops
from dsrdiag.track.pipeline import track_capture
from dsrdiag.track.records import flow_key
from tests import floodgen
from tests.conftest import CAPTURES, REAL

pytestmark = pytest.mark.usefixtures("tracker")  # every test on the C tracker and on the Python reference

SAMPLES = sorted(p for p in CAPTURES.glob("*") if p.suffix in (".pcap", ".pcapng", ".gz"))
PATH_SETS = sorted(d for d in (CAPTURES / "paths").iterdir() if d.is_dir())
ZEEK = REAL.parent / "captures-zeek"
SHARED = sorted(p for d in (REAL, ZEEK) if d.is_dir() for p in d.iterdir()
                if p.suffix in (".pcap", ".pcapng") and p.is_file())
PORTS = (25, 22, 80, 110, 143, 443, 587, 2745)
"""The real captures' services, so that their connections are judged (most are not mail)."""


def _given(**kw):
    return topo.build(vips=kw.get("vips", []), ports=list(PORTS), backends=[], lb_macs=[], lb_ips=[], topology_file=None)


# ---- the history bits ------------------------------------------------------------------------

def _scans(h: str, resp_pkts: int) -> dict:
    """The questions the passes asked of a history before the bits, as they asked them."""
    i, j = h.find("h"), h.find("S")
    done = ("A" in h[i:] or "D" in h[i:]) if i >= 0 else (j >= 0 and not resp_pkts and ("A" in h[j:] or "D" in h[j:]))
    return {
        "saw_syn": "S" in h, "opened": h[:1] == "S", "synack": "h" in h, "orig_progress": "A" in h or "D" in h,
        "resp_progress": "d" in h or "a" in h, "refused": "r" in h, "resp_data": "d" in h, "completed": done,
        "answered": i >= 0 and ("A" in h[i:] or "D" in h[i:]) and "d" in h,
        "only_syns": "S" in h and not resp_pkts and set(h) <= {"S"},
        "no_orig_after_synack": "D" not in h and "A" not in h.split("h", 1)[-1],
        "synack_or_data": "h" in h or "d" in h,
    }


def _bits(h: str, resp_pkts: int) -> dict:
    f = hist.FLAGS[h]
    return {
        "saw_syn": bool(f & hist.SAW_SYN), "opened": bool(f & hist.OPENED), "synack": bool(f & hist.SYNACK),
        "orig_progress": bool(f & hist.ORIG_PROGRESS), "resp_progress": bool(f & hist.RESP_PROGRESS),
        "refused": bool(f & hist.REFUSED), "resp_data": bool(f & hist.RESP_DATA),
        "completed": bool(f & hist.DONE_AFTER_SYNACK) or (bool(f & hist.DONE_NO_SYNACK) and not resp_pkts),
        "answered": bool(f & hist.ANSWERED), "only_syns": bool(f & hist.SYNS_ONLY) and not resp_pkts,
        "no_orig_after_synack": bool(f & hist.NO_ORIG_AFTER_SYNACK),
        "synack_or_data": bool(f & (hist.SYNACK | hist.RESP_DATA)),
    }


def test_history_bits_answer_what_the_string_scans_answered_for_every_short_history():
    letters = "ShADadrRFf^x"  # every letter a question reads, their neighbours, and another one
    n = 0
    for length in range(6):
        for t in itertools.product(letters, repeat=length):
            h = "".join(t)
            for resp in (0, 3):
                assert _bits(h, resp) == _scans(h, resp), (h, resp)
            n += 1
    assert n > 200_000


def test_a_history_table_past_its_bound_still_answers_and_stops_growing(monkeypatch):
    table = hist._Flags()
    monkeypatch.setattr(hist, "MAX_KEPT", 3)
    for h in ("S", "Sh", "ShA", "ShAD", "ShADd"):
        assert table[h] == hist.flags_of(h)
    assert len(table) == 3 and "ShADd" not in table


# ---- what the captures give --------------------------------------------------------------------

def _groups():
    out = [[p] for p in SAMPLES] + [sorted(d.glob("*.pcap")) for d in PATH_SETS] + [[p] for p in SHARED]
    return out


@pytest.fixture(scope="module")
def flood(tmp_path_factory, tracker) -> Path:
    p = tmp_path_factory.mktemp("flood") / "mixed.pcap"
    floodgen.mixed(p, 5, n_sessions=60)
    return p


def _track(paths):
    return [track_capture(str(p), p.stem, PORTS) for p in paths]


# ---- Facts.observe against the reference ----------------------------------------------------

def _seen(table, key, first):
    got = table.get(key)
    if got is None:
        table[key] = [1, first]
    else:
        got[0] += 1
        if first < got[1]:
            got[1] = first


def _reference_observe(fx: Facts, c) -> None:
    """Facts.observe as first written: a _seen() per table, string scans, hops() per TTL (the
    attempts' own counting is Facts' unchanged _attempt, fed as it was)."""
    from dsrdiag.track import facts as F

    first = (c.first_ts_ns, c.uid)
    ip, h = c.server_ip, c.history
    if "S" in h:
        _seen(fx.syn_dst, (ip, c.server_port), first)
        fx.syn_ports.setdefault(ip, set()).add(c.server_port)
        key = (ip, c.server_port, c.client_ip, c.orig_l2[0][0] if c.orig_l2 else None,
               c.orig_l2[0][1] if c.orig_l2 else None, c.resp_l2[0][0] if c.resp_l2 else None,
               c.smtp.banner_host if c.smtp else None, hops(c.orig_ttl))
        if key in fx.syn_src or len(fx.syn_src) < SYN_SRC_MAX:
            _seen(fx.syn_src, key, first)
        if h[0] == "S":
            v = fx.attempts.setdefault((ip, c.server_port), F.Attempts())
            v.syns += 1
            i, j = h.find("h"), h.find("S")
            done = ("A" in h[i:] or "D" in h[i:]) if i >= 0 else (j >= 0 and not c.resp_pkts and ("A" in h[j:] or "D" in h[j:]))
            if not done:
                F._attempt(v, fx, c, hist.flags_of(h))
    elif "h" in h:
        s = c.smtp
        fx.replies.append((first, c.client_ip, c.client_port, c.server_port, c.synack_ack,
                           c.resp_l2[0][0] if c.resp_l2 else None, ip, s.banner_host if s else None))
    if c.orig_pkts:
        _seen(fx.sides, (ip, c.server_port, hops(c.orig_ttl), hops(c.resp_ttl) if c.resp_pkts else None), first)
    fw = ()
    if c.orig_forwarded:
        fx.forwarded = True
        if c.resp_pkts:
            fx.answered_forwarded = True
        fw = tuple(sorted(forwarders(c)))
    s = c.smtp
    if s and (s.proxy is not None or s.xclient):
        fx.carried = True
    _seen(fx.paths, (ip, c.orig_l2, fw, c.resp_l2, c.resp_ttl in INITIAL_TTLS, s.banner_host if s else None), first)


def _state(fx: Facts):
    out = fx.__getstate__()
    return tuple({k: v.__getstate__() for k, v in x.items()} if x is fx.attempts else x for x in out)


@pytest.mark.parametrize("group", _groups(), ids=lambda g: g[0].parent.name + "/" + (g[0].name if len(g) == 1 else "*"))
def test_facts_noted_as_records_are_made_equal_the_record_by_record_reference(group):
    for r in _track(group):
        ref = Facts()
        for c in r.connections:  # lone SYNs come as records here: observe_rows is tests/test_lone.py's
            _reference_observe(ref, c)
        ours = Facts()
        for c in r.connections:
            ours.observe(c)
        assert _state(ours) == _state(ref)


def test_facts_of_a_flood_with_sessions_equal_the_reference(flood):
    r = _track([flood])[0]
    ref, ours = Facts(), Facts()
    for c in r.connections:
        _reference_observe(ref, c)
        ours.observe(c)
    assert _state(ours) == _state(ref) and ref.attempts and ours.syn_src


def test_facts_say_a_stream_carried_the_client_address_only_where_one_did():
    proxied = _track([CAPTURES / "snat_proxy.pcap"])[0]
    assert proxied.facts.carried
    assert any(c.smtp and c.smtp.proxy is not None for c in proxied.connections)
    plain = _track([CAPTURES / "healthy.pcap"])[0]
    assert not plain.facts.carried


# ---- judge's pass against feeding every collector every record --------------------------------

def _reference_judge(r, topology):
    """judge() as a plain pass: every collector, idle or not, fed every record to its end."""
    ctx = Context(r, topology)
    claims = [f for f in (k.claims(ctx) for k in CAPTURE_KINDS if hasattr(k, "claims")) if f is not None]
    claim = (lambda c: any(f(c) for f in claims)) if claims else None
    ctx.claimed = claim
    out, cols = [], []
    for kind in CAPTURE_KINDS:
        if hasattr(kind, "Collector"):
            cols.append(kind.Collector(ctx))
        else:
            out.extend(kind.check(ctx))
    for c in r.connections:
        unclaimed = claim is None or not claim(c)
        for col in cols:
            if getattr(col, "all_ports", False) or (c.server_port in ctx.ports and unclaimed):
                col.observe(c)
    for col in cols:
        out.extend(col.findings())
    return sorted(out, key=lambda f: f.sort_key())


def _judged(records, given):
    t = infer(records, given)
    return [(judge_mod.judge(r, t), _reference_judge(r, t)) for r in records]


@pytest.mark.parametrize("group", _groups(), ids=lambda g: g[0].parent.name + "/" + (g[0].name if len(g) == 1 else "*"))
def test_judging_without_idle_and_finished_collectors_finds_what_feeding_them_all_finds(group):
    for ours, ref in _judged(_track(group), _given()):
        assert ours == ref


def test_judging_a_flood_with_sessions_without_idle_collectors_finds_what_feeding_them_all_finds(flood):
    records = _track([flood])
    for given in (_given(), _given(vips=["192.0.2.25"])):
        for ours, ref in _judged(records, given):
            assert ours == ref
            assert any(f.kind == "syn_flood_or_scan" for f in ours)


def _collector(kind, r, topology):
    return kind.Collector(Context(r, topology))


def test_the_proxy_and_xclient_collectors_are_fed_where_a_stream_carried_the_client_and_fire():
    r = _track([CAPTURES / "snat_proxy.pcap"])[0]
    t = infer([r], topo.build(vips=["192.0.2.25"], ports=[25], backends=[], lb_macs=[], lb_ips=[], topology_file=None))
    assert not _collector(proxy_protocol_header, r, t).idle and not _collector(smtp_xclient, r, t).idle
    assert "proxy_protocol_header" in {f.kind for f in judge_mod.judge(r, t)}


def test_the_proxy_and_xclient_collectors_are_idle_on_plain_smtp():
    r = _track([CAPTURES / "healthy.pcap"])[0]
    t = infer([r], _given())
    assert _collector(proxy_protocol_header, r, t).idle and _collector(smtp_xclient, r, t).idle


def test_collectors_of_connections_to_a_vip_are_idle_without_one_and_fed_with_one():
    from dsrdiag.findings.kinds import connection_refused, syn_unanswered, vip_not_on_backend

    r = _track([CAPTURES / "vip_missing.pcap"])[0]
    t = infer([r], _given())
    assert t.vips and "vip_not_on_backend" in {f.kind for f in judge_mod.judge(r, t)}
    for kind in (vip_not_on_backend, syn_unanswered, connection_refused):
        assert not _collector(kind, r, t).idle
        assert _collector(kind, r, topo.Topology(ports=PORTS)).idle  # no VIP: nothing to judge


def test_capture_one_sided_says_it_is_done_once_both_directions_were_seen():
    r = _track([CAPTURES / "healthy.pcap"])[0]
    col = _collector(capture_one_sided, r, infer([r], _given()))
    done = [col.observe(c) for c in r.connections]
    assert done[-1] and not list(col.findings())


def test_capture_one_sided_is_never_done_on_a_capture_of_one_direction():
    p = REAL / "zeek-ssh-server-side-half-duplex.pcap"
    if not p.exists():
        pytest.skip("shared real captures absent")
    r = _track([p])[0]
    t = infer([r], _given())
    col = _collector(capture_one_sided, r, t)
    assert not col.idle and not any(col.observe(c) for c in r.connections)
    assert "capture_one_sided" in {f.kind for f in judge_mod.judge(r, t)}


# ---- the tallies against the reference ---------------------------------------------------------

def _reference_tallies(r, topology, several):
    """BackendTally and ServiceTally as first written: backend_of, completed() and answered() per record."""
    ctx = Context(r, topology)
    bt, st = BackendTally(topology, several), ServiceTally(topology, several)
    vips = topology.vip_ips
    for c in r.connections:
        ref = ctx.backend_of(c)
        if ref is not None and ref.name in bt.ok:
            b = ref.name
            bt.refs.setdefault(b, ref)
            if not (vips and c.server_ip not in vips and c.server_ip != ref.ip):
                ok, state, done_one = ((bt.back["ok"], bt.back["state"], bt.back["done_one"])
                                       if vips and c.server_ip not in vips else (bt.ok, bt.state, bt.done_one))
                if c.smtp and c.smtp.banner_ts_ns and c.saw_syn:
                    bt.banner_ns[b].add(c.smtp.banner_ts_ns - c.first_ts_ns)
                if c.smtp and c.smtp.banner_host:
                    bt.hosts[b].add(c.smtp.banner_host)
                done = completed(c)
                if not several and done:
                    done_one[b] += 1
                else:
                    k = flow_key(c)
                    ok[b][k] = ok[b].get(k, False) or done
                    state[b].setdefault(k, c.conn_state)
        if c.server_port in st.ports and "S" in c.history:
            if ctx.only_syns(c) and len(c.syn_frames) == 1 and not ctx.end_ts - c.first_ts_ns >= NOT_RETRIED_NS:
                continue
            count = st.front if c.server_ip in st.vips else st.back if c.server_ip in st.backend_ips else None
            if count is not None:
                count.add(c)
    return bt, st


def _tally_state(bt, st):
    return (bt.rows(), {b: r for b, r in bt.refs.items()}, bt.hosts,
            [(x.n, x.done, x.ok) for x in (st.front, st.back)], st.set_apart)


@pytest.mark.parametrize("several", [False, True])
@pytest.mark.parametrize("group", SAMPLES + PATH_SETS, ids=lambda p: p.name)
def test_backend_and_service_tallies_equal_the_record_by_record_reference(group, several):
    paths = sorted(group.glob("*.pcap")) if group.is_dir() else [group]
    records = _track(paths)
    t = infer(records, _given())
    for r in records:
        bt, st = BackendTally(t, several), ServiceTally(t, several)
        ctx = Context(r, t)
        ob, so = bt.observer(ctx), st.observer(ctx)
        for c in r.connections:
            ob(c)
            so(c)
        assert _tally_state(bt, st) == _tally_state(*_reference_tallies(r, t, several))


def test_completed_and_answered_read_the_bits_as_the_scans_did():
    for h, resp in (("ShAdDfF", 5), ("SAD", 0), ("SAD", 2), ("Sh", 1), ("ShA", 1), ("ShAd", 1), ("^hADd", 4), ("S", 0)):
        c = type("C", (), {"history": h, "resp_pkts": resp})()
        want = _scans(h, resp)
        assert (completed(c), answered(c)) == (want["completed"], want["answered"]), h
