"""Facts.observe_all in C (track/_factsobserve.c) against Facts.observe, the Python reference
(track/facts.py): fed the same records in the same order, the two leave equal Facts, on every
capture the tests have and on records made to take each of observe()'s branches (a failed
attempt, a reply seen alone, a forwarded client packet, a client address carried, a full
syn_src, records the C observer hands back to the reference)."""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest

from dsrdiag.track import facts as facts_mod
from dsrdiag.track.facts import Attempts, Facts
from dsrdiag.track.pipeline import track_capture
from dsrdiag.track.records import Connection, NoteBlock, PacketNote, ProxyHeader, SmtpDialogue, _NOTE
from tests.conftest import CAPTURES, ROOT

_native = pytest.importorskip("dsrdiag.track._conntrack", reason="the C tracker was not built (no compiler)")

ZEEK = ROOT.parent / "shared" / "captures-zeek"
SAMPLES = sorted(p for p in CAPTURES.glob("*") if p.suffix in (".pcap", ".pcapng", ".gz"))
PATHS = sorted(p for d in (CAPTURES / "paths").iterdir() if d.is_dir() for p in d.iterdir() if p.is_file())
TRACES = sorted(p for p in ZEEK.glob("*") if p.suffix in (".pcap", ".pcapng")) if ZEEK.is_dir() else []


def _plain(x):
    """Facts' state as plain values: Attempts (no __eq__) as their slots, recursively."""
    if isinstance(x, Attempts):
        return ("Attempts",) + tuple(_plain(v) for v in x.__getstate__())
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_plain(v) for v in x]
    if isinstance(x, tuple):
        return tuple(_plain(v) for v in x)
    return x


def _state(f: Facts) -> tuple:
    return _plain(f.__getstate__()) + (_plain(f._fw),)


def _by_reference(records) -> Facts:
    f = Facts()
    for c in records:
        f.observe(c)
    return f


def _by_c(records, sizes=(4096,), seed=0) -> Facts:
    """observe_all in batches whose sizes are drawn from `sizes` (the C peer: DSRDIAG_TRACKER unset)."""
    f = Facts()
    rnd = random.Random(seed)
    i = 0
    while i < len(records):
        n = rnd.choice(sizes)
        f.observe_all(records[i:i + n])
        i += n
    return f


def _assert_same(records, sizes=(4096,)) -> None:
    want = _state(_by_reference(records))
    assert _state(_by_c(records, sizes)) == want


@pytest.fixture
def c_peer(monkeypatch):
    monkeypatch.setenv("DSRDIAG_TRACKER", "c")


@pytest.mark.parametrize("path", SAMPLES + PATHS + TRACES, ids=lambda p: p.name)
def test_the_c_observer_leaves_the_facts_the_reference_leaves_on_every_capture(path, c_peer):
    records = list(track_capture(str(path), path.stem, (25,)).connections)
    assert records or path.name == "damaged.pcap" or path in TRACES
    _assert_same(records)
    _assert_same(records, sizes=(1, 2, 7, 64))


def test_zeek_traces_are_there_to_compare_on():
    if not ZEEK.is_dir():
        pytest.skip("../shared/captures-zeek is absent")
    assert len(TRACES) >= 10


# ---- records made to take each branch ----------------------------------------------------------

_MAC_C, _MAC_LB, _MAC_S = "02:00:00:00:00:01", "02:00:00:00:00:0a", "02:00:00:00:00:11"


def _syns(n: int, ts: int) -> NoteBlock:
    raw = b"".join(_NOTE.pack(10 + i, ts + i * 1_000_000_000, 0, 2, 0, -1, -1, 60, 1000, 0, -1, -1) for i in range(n))
    return NoteBlock(raw, ())


def _rec(n: int, history: str = "ShAdDfFa", *, client: str = "198.51.100.7", server: str = "192.0.2.25", port: int = 25,
         ts: int | None = None, resp_pkts: int = 5, orig_forwarded: int = 0, orig_l2=None, resp_l2=None, smtp=None,
         syns: int = 1, orig_ttl: int | None = 60, resp_ttl: int | None = 64) -> Connection:
    ts = 1_700_000_000_000_000_000 + n * 1_000_000 if ts is None else ts
    return Connection(
        uid=f"v:C{n}", capture="x.pcap", vantage="v", client_ip=client, client_port=40000 + n, server_ip=server,
        server_port=port, ip_version=4, first_ts_ns=ts, last_ts_ns=ts + 10, history=history, conn_state="SF",
        orig_pkts=5, resp_pkts=resp_pkts, orig_bytes=0, resp_bytes=0, missed_bytes=0, orig_forwarded=orig_forwarded,
        resp_forwarded=0, orig_l2=((_MAC_C, _MAC_LB),) if orig_l2 is None else orig_l2,
        resp_l2=((_MAC_S, _MAC_C),) if resp_l2 is None else resp_l2, orig_ttl=orig_ttl, resp_ttl=resp_ttl,
        syn_seq=1000 + n, synack_ack=1001 + n, packets=NoteBlock(), syn_frames=_syns(syns, ts),
        smtp=smtp if smtp is not None else SmtpDialogue(banner_code=220, banner_host="mx1.example.net"),
    )


def test_failed_attempts_lone_retried_refused_and_answered_go_through_the_reference_step(c_peer):
    recs = [_rec(1, "S", resp_pkts=0, smtp=None), _rec(2, "S", resp_pkts=0, syns=3, smtp=None),
            _rec(3, "Sr", resp_pkts=1, smtp=None), _rec(4, "ShR", resp_pkts=1, smtp=None),
            _rec(5, "S", resp_pkts=0, client="203.0.113.9", smtp=None, ts=1_700_000_000_000_000_000),
            _rec(6, "ShAdDfFa")]
    _assert_same(recs, sizes=(1, 3, 6))
    v = _by_c(recs).attempts[("192.0.2.25", 25)]
    assert (v.syns, v.lone, v.retried) == (6, 3, 1) and set(v.sources) == {"198.51.100.7", "203.0.113.9"}


def test_connections_seen_from_their_syn_ack_only_are_kept_as_replies(c_peer):
    recs = [_rec(1, "^hADad", resp_l2=((_MAC_S, _MAC_C),)), _rec(2, "^hA", resp_l2=()), _rec(3, "^dA", smtp=None)]
    _assert_same(recs)
    assert len(_by_c(recs).replies) == 2


def test_forwarded_client_packets_mark_the_lb_hop_and_each_path_s_forwarders(c_peer):
    hop = ((_MAC_C, _MAC_LB), (_MAC_LB, _MAC_S))
    other = ((_MAC_C, "02:00:00:00:00:0b"), ("02:00:00:00:00:0b", _MAC_S))
    recs = [_rec(1, orig_forwarded=1, orig_l2=hop), _rec(2, orig_forwarded=1, orig_l2=hop, resp_pkts=0, history="ShAD"),
            _rec(3, orig_forwarded=2, orig_l2=other), _rec(4)]
    _assert_same(recs, sizes=(1, 4))
    f = _by_c(recs)
    assert f.forwarded and f.answered_forwarded and f._fw == {hop: (_MAC_LB,), other: ("02:00:00:00:00:0b",)}


def test_forwarded_only_without_an_answer_leaves_answered_forwarded_unset(c_peer):
    hop = ((_MAC_C, _MAC_LB), (_MAC_LB, _MAC_S))
    recs = [_rec(1, "S", orig_forwarded=1, orig_l2=hop, resp_pkts=0, resp_l2=(), smtp=None)]
    _assert_same(recs)
    f = _by_c(recs)
    assert f.forwarded and not f.answered_forwarded and f.lb_interface


@pytest.mark.parametrize("smtp, carried", [
    (SmtpDialogue(banner_code=220, xclient="ADDR=203.0.113.7"), True),
    (SmtpDialogue(banner_code=220, proxy=ProxyHeader(1, "203.0.113.7", 40000, 3, 4)), True),
    (SmtpDialogue(banner_code=220, xclient=""), False),
    (SmtpDialogue(banner_code=220), False),
], ids=["xclient", "proxy", "empty-xclient", "none"])
def test_a_carried_client_address_is_noted_only_when_a_record_carries_one(smtp, carried, c_peer):
    recs = [_rec(1), _rec(2, smtp=smtp), _rec(3)]
    _assert_same(recs)
    assert _by_c(recs).carried is carried


def test_a_full_syn_src_counts_known_keys_only(monkeypatch, c_peer):
    monkeypatch.setattr(facts_mod, "SYN_SRC_MAX", 3)
    recs = [_rec(i, client=f"198.51.100.{i % 5}") for i in range(1, 21)]
    _assert_same(recs, sizes=(1, 5, 20))
    assert len(_by_c(recs).syn_src) == 3


def test_equal_keys_made_of_other_objects_find_the_same_entry(c_peer):
    """The C observer finds a key again by the identity of its parts first: equal parts that are
    other objects (a text made anew) must still count in the same entry."""
    recs = [_rec(i, client="".join(["198.51.100.", "7"]), server="".join(["192.0.2.", "25"]),
                 orig_l2=(("".join(["02:00:00:00:00:", "01"]), _MAC_LB),)) for i in range(1, 6)]
    assert recs[0].server_ip is not recs[1].server_ip
    _assert_same(recs)
    f = _by_c(recs)
    assert list(f.syn_dst.values())[0][0] == 5 and len(f.paths) == 1 and len(f.syn_src) == 1


def test_a_later_record_with_an_earlier_place_moves_every_entry_s_first(c_peer):
    recs = [_rec(2, ts=2000), _rec(1, ts=1000), _rec(3, ts=1000), _rec(0, ts=1000)]
    _assert_same(recs)
    f = _by_c(recs)
    assert {tuple(v[1]) for v in f.paths.values()} == {(1000, "v:C0")}


def test_records_not_of_the_trackers_kind_are_observed_by_the_reference(c_peer):
    class Other(Connection):  # a subclass: the C observer hands it back whole
        __slots__ = ()

    odd_l2 = _rec(3)._replace(orig_l2=(("02:00:00:00:00:01",),))  # not a pair: read by the reference (an IndexError there)
    recs = [_rec(1), Other(*_rec(2)), _rec(4, smtp=None)]
    _assert_same(recs)
    with pytest.raises(IndexError):
        _by_reference([odd_l2])
    with pytest.raises(IndexError):
        _by_c([odd_l2])


def test_the_reference_runs_when_the_python_tracker_is_asked_for(monkeypatch):
    monkeypatch.setenv("DSRDIAG_TRACKER", "python")
    seen = []
    monkeypatch.setattr(Facts, "observe", lambda self, c: seen.append(c.uid))
    Facts().observe_all([_rec(1), _rec(2)])
    assert seen == ["v:C1", "v:C2"]


def test_an_env_that_is_not_the_facts_module_s_is_refused():
    env = facts_mod._native_env()
    for bad in (env[:5], env[:10] + ((0,) * 15, env[11]), env[:10] + (tuple(range(100, 116)), env[11]),
                env[:8] + (int, env[9]) + env[10:]):
        with pytest.raises((TypeError, ValueError)):
            _native.facts_observe(Facts(), [_rec(1)], bad)


def test_an_error_in_a_step_called_back_reaches_the_caller(monkeypatch, c_peer):
    def boom(v, facts, c, f):
        raise RuntimeError("from _attempt")

    monkeypatch.setattr(facts_mod, "_attempt", boom)
    with pytest.raises(RuntimeError, match="from _attempt"):
        Facts().observe_all([_rec(1, "S", resp_pkts=0, smtp=None)])


def test_the_sanitizer_build_lists_the_extension_s_sources_as_setup_py_does():
    from tests import _asan

    tree = ast.parse((ROOT / "setup.py").read_text())
    lists = [ast.literal_eval(c.args[1]) for c in ast.walk(tree) if isinstance(c, ast.Call)
             and getattr(c.func, "id", "") == "Extension" and ast.literal_eval(c.args[0]) == "dsrdiag.track._conntrack"]
    assert lists == [_asan.CONNTRACK]


def test_facts_observer_under_the_sanitizer_passes_this_module_cleanly(tmp_path):
    """_conntrack rebuilt with -fsanitize=address,undefined (tests/_asan.py), every allocation of the
    interpreter through ASan's malloc: this module's tests all pass on that build, with no report."""
    from tests import _asan

    sanitized = _asan.build(tmp_path, {"dsrdiag.capture._fastpcap": ["dsrdiag/capture/_fastpcap.c"],
                                       "dsrdiag.track._conntrack": _asan.CONNTRACK})
    _asan.run_module_tests(sanitized, str(Path(__file__)), tmp_path / "t", timeout=1500, malloc=True)
