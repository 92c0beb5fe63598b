"""Mutation fuzzing of the readers and the whole analysis: bit flips, truncation, absurd length
fields and bad pcapng block types on real and sample captures. At least 1,000 cases in CI: no
exception but our one-line DsrdiagError, no hang, and damage reported as data."""

from __future__ import annotations

import functools
import os
import struct
from pathlib import Path

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsrdiag.core.errors import DsrdiagError
from dsrdiag.core.topology import build
from dsrdiag.jobs.analyze import conclude
from dsrdiag.track.pipeline import track_capture
from tests.conftest import CAPTURES, REAL, run_cli

pytestmark = pytest.mark.usefixtures("tracker")  # every test on the C tracker and on the Python reference


SAMPLES = ("healthy.pcap", "healthy-client.pcapng", "arp_leak6.pcapng", "wrong_source.pcap", "healthy.pcap.gz", "snat_proxy.pcap")
REAL_SEEDS = ("zeek-smtp-starttls.pcap", "pcpp-many_interfaces-1.pcapng", "pcpp-sll2.pcap",
              "tcpdump-tcp-handshake-nano.pcap", "tcpdump-802.1ad_QinQ.pcap", "zeek-icmp6-nd-options.pcap")
EXAMPLES = int(os.environ.get("DSRDIAG_FUZZ_EXAMPLES", "1200"))


@functools.cache
def seeds() -> dict[str, bytes]:
    """The seed captures' bytes, read when a test first needs them (never at import)."""
    paths = [CAPTURES / n for n in SAMPLES] + ([REAL / n for n in REAL_SEEDS] if REAL.is_dir() else [])
    return {p.name: p.read_bytes() for p in paths}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(sorted(seeds())))
    data = bytearray(seeds()[name])
    kind = draw(st.sampled_from(["flip", "truncate", "length", "blocktype", "splice", "zero"]))
    n = len(data)
    if kind == "flip":
        for _ in range(draw(st.integers(1, 16))):
            i = draw(st.integers(0, n - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        data = data[: draw(st.integers(0, n - 1))]
    elif kind == "length":
        # an absurd 32-bit value where record/block lengths live (pcap record headers start at 24)
        i = draw(st.integers(0, max(0, n - 4)))
        struct.pack_into("<I", data, i, draw(st.sampled_from([0, 1, 3, 0x7FFFFFFF, 0xFFFFFFFF, 262145, 16 * 1024 * 1024 + 4])))
    elif kind == "blocktype":
        i = draw(st.integers(0, max(0, n - 4))) & ~3
        struct.pack_into("<I", data, i, draw(st.sampled_from([0x0A0D0D0A, 1, 2, 3, 5, 6, 0xDEADBEEF, 0x80000001])))
    elif kind == "splice":
        a, b = sorted((draw(st.integers(0, n)), draw(st.integers(0, n))))
        data = data[:a] + data[b:] + data[a:b]
    else:
        a = draw(st.integers(0, n - 1))
        data[a : a + draw(st.integers(1, 64))] = bytes(min(64, n - a))
    suffix = ".gz" if name.endswith(".gz") else Path(name).suffix
    return bytes(data), suffix


@settings(max_examples=EXAMPLES, deadline=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_mutated_captures_never_crash_or_hang(work, case):
    data, suffix = case
    path = work / f"case{suffix}"
    path.write_bytes(data)
    try:
        rec = track_capture(str(path), "fuzz", (25, 80, 443))
    except DsrdiagError as e:
        assert "\n" not in str(e) and str(e)
        return
    assert rec.frames >= 0 and rec.passed <= rec.frames
    if rec.damage is not None:
        assert rec.damage.startswith("stopped after frame ")
    report = conclude([rec], build(ports=[25, 80, 443]))
    for f in report.findings:
        assert f.evidence  # whatever was found still cites frames


def test_cli_on_mutated_files_exits_with_a_documented_code_and_no_traceback(work):
    import random
    rng = random.Random(7)
    data_of = seeds()
    for i in range(12):
        name = sorted(data_of)[i % len(data_of)]
        data = bytearray(data_of[name])
        for _ in range(rng.randint(1, 30)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randint(1, len(data))]
        p = work / f"cli{i}{'.gz' if name.endswith('.gz') else Path(name).suffix}"
        p.write_bytes(bytes(data))
        r = run_cli("analyze", str(p))
        assert r.code in (0, 1, 2, 3, 4), r.err  # docs/exit-codes.md; 4: inconclusive
        assert "Traceback" not in r.err and "internal error" not in r.err, r.err
