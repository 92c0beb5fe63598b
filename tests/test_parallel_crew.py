"""Several captures with --jobs > 1 (jobs/crew.py: workers keep the captures they read and judge
them there) give the very bytes --jobs 1 gives: the compact JSON whose connection lists the
workers write, the text report and correlated path sets for which the records come back to the
parent, spilled records, errors raised in a worker; and they leave no file behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CAPTURES

SAMPLES = sorted(str(p) for p in CAPTURES.glob("*") if p.suffix in (".pcap", ".pcapng"))
PATH_SET = [f"{v}={CAPTURES / 'paths' / 'wrong_source' / (v + '.pcap')}" for v in ("client", "fw-out", "fw-in", "lb", "be1", "be2")]


def run(args: list[str], tmp: Path, jobs: int, spill_at: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, TMPDIR=str(tmp))
    if spill_at:
        env["DSRDIAG_SPILL_AT"] = str(spill_at)
    return subprocess.run([sys.executable, "-m", "dsrdiag", "analyze", *args, "--jobs", str(jobs)],
                          capture_output=True, timeout=120, env=env)


CASES = {
    "every sample (wrong-source replies: records fetched for inference)": SAMPLES,
    "healthy, snat and arp captures (judged in the workers)": [str(CAPTURES / n) for n in ("healthy.pcap", "snat.pcap", "arp_leak.pcap", "healthy-client.pcapng")],
    "a path set (correlated: records fetched)": PATH_SET,
}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.split(" (")[0])
@pytest.mark.parametrize("spill_at", [None, 2], ids=["in memory", "spilled"])
def test_several_captures_give_the_bytes_of_one_job_with_two_and_three(case, spill_at, tmp_path):
    args = [*CASES[case], "-f", "json"]
    one = run(args, tmp_path, 1, spill_at)
    assert one.returncode in (0, 1), one.stderr
    assert len(one.stdout) > 2000
    for jobs in (2, 3):
        par = run(args, tmp_path, jobs, spill_at)
        assert (par.returncode, par.stderr) == (one.returncode, one.stderr)
        assert par.stdout == one.stdout, f"--jobs {jobs} differs from --jobs 1"
    assert not list(tmp_path.iterdir())  # spill files, pre-written JSON lists and their folders are gone


def test_text_report_of_several_captures_is_the_same_with_two_jobs(tmp_path):
    args = [str(CAPTURES / n) for n in ("healthy.pcap", "vip_missing.pcap", "wrong_source.pcap")] + ["-v"]
    one, two = run(args, tmp_path, 1), run(args, tmp_path, 2)
    assert one.returncode == two.returncode == 1
    assert two.stdout == one.stdout and b"vip_not_on_backend" in one.stdout
    assert not list(tmp_path.iterdir())


def test_a_capture_a_worker_cannot_read_gives_the_error_and_exit_code_of_one_job(tmp_path):
    bad = tmp_path / "notes.pcap"
    bad.write_bytes(b"this is not a capture at all, just text" * 10)
    work = tmp_path / "tmp"
    work.mkdir()
    args = [str(CAPTURES / "healthy.pcap"), str(CAPTURES / "snat.pcap"), str(bad), "-f", "json"]
    one, two = run(args, work, 1), run(args, work, 3)
    assert one.returncode == 2 and b"notes.pcap" in one.stderr
    assert (two.returncode, two.stderr, two.stdout) == (one.returncode, one.stderr, one.stdout)
    assert not list(work.iterdir())


def _tallies(records, topology):
    from dsrdiag.findings.context import Context
    from dsrdiag.jobs.analyze import BackendTally

    whole = BackendTally(topology, len(records) > 1)
    parts = []
    for r in records:
        part = BackendTally(topology, len(records) > 1)
        for t in (whole, part):
            observe = t.observer(Context(r, topology))
            for c in r.connections:
                observe(c)
        parts.append(part)
    merged = parts[0]
    for p in parts[1:]:
        merged.merge(p)
    return whole.rows(), merged.rows()


def test_back_end_tallies_made_per_capture_and_merged_are_one_tally_over_every_capture():
    from dsrdiag.core import topology as topo
    from dsrdiag.findings.infer import infer
    from dsrdiag.track.pipeline import track_capture
    from tests.test_infer_facts import _conn, _records

    given = topo.build(vips=[], ports=[], backends=[], lb_macs=[], lb_ips=[], topology_file=None)
    for group in ("wrong_source", "asym", "proxy"):
        records = [track_capture(str(p), p.stem, (25,)) for p in sorted((CAPTURES / "paths" / group).glob("*.pcap"))]
        whole, merged = _tallies(records, infer(records, given))
        assert merged == whole and any(row.connections for row in whole)
    # one back-end answering under another banner name in the second capture, failing there once,
    # and a connection the first capture saw complete seen half in the second
    vip, be = "192.0.2.25", "02:00:00:00:00:0b"
    a = _records([_conn(1, 100, vip, host="mx-a", resp_mac=be), _conn(2, 200, vip, host="mx-a", resp_mac=be)])
    b = _records([_conn(3, 300, vip, host="mx-b", resp_mac=be), _conn(4, 400, vip, resp_mac=be, history="Sh"),
                  _conn(1, 150, vip, history="S")])  # connection 1 again, its SYN only: still completed
    whole, merged = _tallies([a, b], infer([a, b], given))
    assert merged == whole
    assert whole[0].banner_hosts == ("mx-a", "mx-b") and whole[0].connections == 4 and whole[0].failed == 1


def test_json_written_beside_an_html_page_is_the_json_written_alone_with_two_jobs(tmp_path):
    work = tmp_path / "tmp"
    work.mkdir()
    args = [str(CAPTURES / n) for n in ("healthy.pcap", "snat.pcap")] + ["-f", "json"]
    alone = run(args, work, 2)
    page = tmp_path / "report.html"
    both = run(args + ["--html", str(page)], work, 2)
    assert both.returncode == alone.returncode == 1, both.stderr
    assert both.stdout == alone.stdout == run(args, work, 1).stdout
    assert "healthy" in page.read_text() and not list(work.iterdir())


def test_when_one_capture_fails_the_others_stop_and_leave_no_spill_file(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    try:
        from gen import generate
    finally:
        sys.path.pop(0)
    big = tmp_path / "relay.pcap"
    generate(big, 300_000, seed=11)
    bad = tmp_path / "notes.pcap"
    bad.write_bytes(b"this is not a capture at all, just text" * 10)
    work = tmp_path / "tmp"
    work.mkdir()
    # the parent or the worker meets the bad file first; whoever reads the relay is stopped or
    # finishes, and its records (spilled every 50) leave no file behind either way
    r = run([str(bad), str(big), "-f", "json"], work, 2, spill_at=50)
    assert r.returncode == 2 and b"notes.pcap" in r.stderr and not r.stdout
    assert b"Traceback" not in r.stderr
    assert not list(work.iterdir())
