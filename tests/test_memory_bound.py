"""Memory stays flat as connections grow (issue 14): what the passes after tracking keep per
capture is bounded whatever the number of connections, with exact answers.

The back-end table's median SYN->banner time needs every value; it used to keep them in a list
(32 bytes a connection: 64 MiB on 2M sessions). It keeps them in a spill.IntBag now: a bounded
part in memory, sorted chunks on file, exact selection. (Peak RSS on 200k-2M sessions is measured
by bench/ and docs/performance.md, never here.)"""

from __future__ import annotations

import gc
import pickle
import random
import sys
import tempfile
import tracemalloc
from pathlib import Path

import pytest

from dsrdiag.core.stats import median
from dsrdiag.core.topology import Topology
from dsrdiag.findings.infer import infer
from dsrdiag.jobs import analyze as job
from dsrdiag.track import spill
from dsrdiag.track.pipeline import track_capture
from tests.conftest import CAPTURES

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A spill folder of the test's own, so that what is left in it can be seen."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(spill, "_DIR", None)
    return tmp_path


def _values(rng: random.Random, shape: int, n: int) -> list[int]:
    if shape == 0:  # the whole int64 range, both signs
        return [rng.randint(-2 ** 63, 2 ** 63 - 1) for _ in range(n)]
    if shape == 1:  # a few values far apart: the middle two can be the extremes
        return [rng.choice((-(2 ** 63), 0, 2 ** 62, 2 ** 63 - 1)) for _ in range(n)]
    if shape == 2:  # many ties
        return [rng.randint(0, 3) for _ in range(n)]
    return [rng.randint(50_000, 40_000_000) * 1000 for _ in range(n)]  # banner times, microsecond stamps


@pytest.mark.parametrize("shape", range(4))
def test_int_bag_selects_the_exact_kth_value_spilled_merged_and_handed_over(shape, folder, monkeypatch):
    monkeypatch.setattr(spill, "BAG_CHUNK", 64)
    rng = random.Random(shape)
    for _ in range(25):
        n = rng.randint(1, 700)
        vals = _values(rng, shape, n)
        cut = rng.randint(0, n)
        bag, later = spill.IntBag(), spill.IntBag()
        for v in vals[:cut]:
            bag.add(v)
        for v in vals[cut:]:
            later.add(v)
        bag.update(pickle.loads(pickle.dumps(later)))  # a worker's tally, merged by the parent
        s = sorted(vals)
        assert len(bag) == n
        for k in {0, n // 2, (n - 1) // 2, n - 1, rng.randrange(n)}:
            assert bag.select(k) == s[k]
        v = s[rng.randrange(n)]
        assert bag.after(v) == (sum(x <= v for x in vals), min((x for x in vals if x > v), default=None))
    with pytest.raises(IndexError):
        spill.IntBag().select(0)


def test_int_bag_holds_at_most_a_chunk_in_memory_and_its_file_goes_with_it(folder, monkeypatch):
    monkeypatch.setattr(spill, "BAG_CHUNK", 100)
    bag = spill.IntBag()
    for i in range(5_000):
        bag.add((i * 7919) % 5_003)
        assert len(bag._tail) < 100  # noqa: SLF001 - the bound this test proves
    files = list(folder.rglob("*.ints"))
    assert len(files) == 1 and files[0].stat().st_size == 8 * 5_000  # 8 bytes a value, nothing else
    assert bag.select(2_500) == sorted((i * 7919) % 5_003 for i in range(5_000))[2_500]
    del bag
    gc.collect()
    assert not list(folder.rglob("*.ints"))


def test_a_bag_within_one_chunk_makes_no_file(folder):
    bag = spill.IntBag()
    for v in range(spill.BAG_CHUNK - 1):
        bag.add(-v)
    assert bag.select(0) == -(spill.BAG_CHUNK - 2)
    assert not list(folder.rglob("*"))  # a small capture's table touches no disk


def test_median_of_a_bag_is_the_median_of_the_times_as_ms(folder, monkeypatch):
    monkeypatch.setattr(spill, "BAG_CHUNK", 16)
    rng = random.Random(5)
    for n in (1, 2, 3, 16, 17, 32, 101, 400):
        times = [rng.randint(1, 90_000) * 1000 + rng.choice((0, 1, 999_999)) for _ in range(n)]
        bag = spill.IntBag()
        for t in times:
            bag.add(t)
        want = median([t / 1e6 for t in times])  # what the table gave with a list of floats
        assert job.median_ms(bag) == want


def _sessions(tmp_path: Path, n: int) -> Path:
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from gen import generate
    finally:
        sys.path.pop(0)
    path = tmp_path / f"sessions-{n}.pcap"
    generate(path, "sessions", n)
    return path


def _part_memory(path: Path) -> tuple[int, int, object]:
    """(bytes the capture's CapturePart keeps, peak bytes while it is made, the part)."""
    r = track_capture(str(path), "be1", (25,))
    topology = infer([r], Topology())
    gc.collect()
    tracemalloc.start()
    try:
        part = job.conclude_part(r, topology, False)
        gc.collect()
        kept, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return kept, peak, part


def test_what_a_capture_part_keeps_does_not_grow_with_healthy_sessions(tmp_path, folder, monkeypatch):
    # a chunk and the grouping keys far below the sessions, so that both bounds are crossed; the
    # records all in memory (read before the measure starts), so that the peak is the pass's own
    # state, not the record store's read buffers (bounded by spill.py's runs, tests/test_store.py)
    monkeypatch.setattr(spill, "BAG_CHUNK", 256)
    monkeypatch.setattr(job, "KEYS_KEPT", 500)
    monkeypatch.setenv("DSRDIAG_SPILL_AT", "100000")
    small_kept, small_peak, small = _part_memory(_sessions(tmp_path, 2_000))
    big_kept, big_peak, big = _part_memory(_sessions(tmp_path, 8_000))
    assert [row.connections for row in big.tally.rows()] == [8_000]  # counted exactly, all of them
    assert [row.completed for row in big.tally.rows()] == [8_000]
    assert small.tally.rows()[0].median_banner_ms == big.tally.rows()[0].median_banner_ms is not None
    # 6,000 more sessions: a value kept per session (the old list of banner times: 32 bytes each,
    # 190 KB) would show; what is bounded (a chunk, the keys, a batch of records) does not
    assert big_kept - small_kept < 16_000, (small_kept, big_kept)
    assert big_peak - small_peak < 64_000, (small_peak, big_peak)


def test_spilled_banner_times_from_workers_give_the_table_of_times_kept_in_memory(folder, monkeypatch):
    caps = [(v, str(CAPTURES / "paths" / "nat" / f"{v}.pcap")) for v in ("client", "fw-out", "fw-in", "lb", "be1", "be2")]
    kept = job.analyze(caps, Topology(), jobs=1)
    monkeypatch.setattr(spill, "BAG_CHUNK", 1)  # every banner time on file, handed over by workers
    spilled = job.analyze(caps, Topology(), jobs=2)
    assert spilled.backends == kept.backends
    assert any(row.median_banner_ms is not None for row in kept.backends)
