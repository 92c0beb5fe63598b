"""Records the C tracker makes are left to reference counting where that is sound
(track/_conntrack.c settle()): an immutable tree of tuples, NamedTuples and NoteBlocks, none of
whose parts the cycle collector tracks, is untracked, so that track/pipeline.py's periodic
collection does not re-scan the records the selection holds. Sound means: an untracked record
reaches no object the collector tracks (else a cycle through it could never be freed), and a
record holding such an object (a PROXY header's ProxyHeader, a plain class) stays tracked."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from dsrdiag.track.pipeline import track_capture
from tests.conftest import CAPTURES, ROOT

pytest.importorskip("dsrdiag.track._conntrack", reason="the C tracker was not built (no compiler)")

ZEEK = ROOT.parent / "shared" / "captures-zeek"
SAMPLES = sorted(p for p in CAPTURES.glob("*") if p.suffix in (".pcap", ".pcapng", ".gz"))
TRACES = sorted(p for p in ZEEK.glob("*") if p.suffix in (".pcap", ".pcapng")) if ZEEK.is_dir() else []
PORTS = (25, 587, 465, 2525)


def _records(path: Path) -> list:
    """The C tracker's own record objects: a capture this small is never spilled, so its store
    holds them in memory (not copies unpacked from a file)."""
    recs = track_capture(str(path), path.stem, PORTS, tracker="c").connections
    assert recs.runs == 0
    return [c for c in recs if type(c).__name__ == "Connection"]


def _tracked_inside(obj, seen: set) -> object | None:
    """The first object reachable from obj (types excluded) that the collector tracks, or None."""
    stack = list(gc.get_referents(obj))
    while stack:  # bounded: each object is visited once
        o = stack.pop()
        if id(o) in seen or isinstance(o, type):
            continue
        seen.add(id(o))
        if gc.is_tracked(o):
            return o
        stack.extend(gc.get_referents(o))
    return None


@pytest.mark.parametrize("path", SAMPLES + TRACES, ids=lambda p: p.name)
def test_an_untracked_record_reaches_nothing_the_collector_tracks(path):
    for c in _records(path):
        for part in (c, c.smtp, c.packets, c.syn_frames, c.forwarded_frames, c.orig_l2, c.resp_l2):
            if part is not None and not gc.is_tracked(part):
                assert _tracked_inside(part, set()) is None, (c.uid, type(part).__name__)


def test_plain_sessions_are_untracked_whole():
    recs = _records(CAPTURES / "healthy.pcap")
    done = [c for c in recs if c.conn_state == "SF" and c.smtp is not None]
    assert done, "healthy.pcap has complete SMTP sessions"
    assert not any(gc.is_tracked(c) for c in done)
    assert not any(gc.is_tracked(c.smtp) or gc.is_tracked(c.packets) for c in done)


def test_a_record_holding_a_proxy_header_stays_tracked():
    recs = _records(CAPTURES / "snat_proxy.pcap")
    proxied = [c for c in recs if c.smtp is not None and c.smtp.proxy is not None]
    assert proxied, "snat_proxy.pcap carries PROXY headers"
    for c in proxied:
        assert gc.is_tracked(c.smtp.proxy)
        assert gc.is_tracked(c), c.uid  # its ProxyHeader (a plain class instance) is tracked
