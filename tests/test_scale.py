"""Scale without changing answers: records spilled to disk beyond a bound give the same report as
records kept in memory, spill files are removed, and the C walker counts like libpcap.
(Speed is measured by bench/bench.py, never here.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import CAPTURES

SETS = ["paths/wrong_source", "paths/proxy", "paths/asym"]


def analyse(*args: str, spill_at: int | None = None, tmp: Path | None = None) -> dict:
    env = dict(os.environ)
    if spill_at:
        env["DSRDIAG_SPILL_AT"] = str(spill_at)
    if tmp:
        env["TMPDIR"] = str(tmp)
    p = subprocess.run([sys.executable, "-m", "dsrdiag", "analyze", *args, "--format", "json"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode in (0, 1), p.stderr
    return json.loads(p.stdout)


@pytest.mark.parametrize("name", ["healthy.pcap", "wrong_source.pcap", "vip_missing.pcap", "arp_leak6.pcapng", "snat_proxy.pcap"])
def test_spilled_records_give_the_same_report_as_records_in_memory(name, tmp_path):
    inmem = analyse(str(CAPTURES / name))
    spilled = analyse(str(CAPTURES / name), spill_at=1, tmp=tmp_path)
    assert spilled == inmem
    assert len(inmem["connections"]) > 1  # so that something was spilled
    assert not list(tmp_path.iterdir())  # the spill files and their folder are gone


@pytest.mark.parametrize("folder", SETS)
def test_spilled_records_from_parallel_workers_give_the_same_correlation(folder, tmp_path):
    caps = [f"{v}={CAPTURES / folder / (v + '.pcap')}" for v in ("client", "fw-out", "fw-in", "lb", "be1", "be2")]
    inmem = analyse(*caps, "--jobs", "1")
    spilled = analyse(*caps, "--jobs", "2", spill_at=3, tmp=tmp_path)
    assert spilled == inmem
    assert not list(tmp_path.iterdir())


def test_record_sequence_merges_spilled_chunks_in_first_packet_order(tmp_path, monkeypatch):
    from dsrdiag.track import spill
    from dsrdiag.track.pipeline import track_capture

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(spill, "_DIR", None)
    monkeypatch.setenv("DSRDIAG_SPILL_AT", "3")
    r = track_capture(str(CAPTURES / "vip_missing.pcap"), "lan", (25,))
    files = list(tmp_path.rglob("*.records"))
    assert files, "nothing was spilled"
    recs = list(r.connections)
    assert len(recs) == len(r.connections) > 3
    assert [(c.first_ts_ns, c.uid) for c in recs] == sorted((c.first_ts_ns, c.uid) for c in recs)
    assert list(r.connections) == recs  # iterable again, same records
    del r, recs
    import gc
    gc.collect()
    assert not list(tmp_path.rglob("*.records"))
