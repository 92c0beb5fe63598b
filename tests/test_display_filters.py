"""The display filters the report gives select, in tshark, exactly what they claim: for every bundled
capture and path set (captures/MANIFEST.toml), each finding's filter for each capture selects
exactly that finding's evidence frames there (and not the frame beside them), each evidence
item's filter its own frame, and each connection's conversation filter exactly that connection's
packets at that vantage (the record's packet counts, forwarded copies included). And
`analyze --tshark` prints those very commands.

Batching (tshark starts slowly): per capture, one tshark run for the evidence and connection
filters together (OR-ed, then split by frame number and 4-tuple), and one per finding filter,
run a few at a time.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tomllib
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import CAPTURES, run_cli

TSHARK = shutil.which("tshark")
pytestmark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed")
MANIFEST = tomllib.loads((CAPTURES / "MANIFEST.toml").read_text())
VANTAGES = ("client", "fw-out", "fw-in", "lb", "be1", "be2")

TARGETS: dict[str, list[str]] = {}
for _e in MANIFEST["capture"]:
    TARGETS[f"sample:{_e['file']}"] = [str(CAPTURES / _e["file"]), *_e["args"]]
for _s in MANIFEST["set"]:
    TARGETS[f"set:{_s['name']}"] = [f"{v}={CAPTURES / 'paths' / _s['name'] / (v + '.pcap')}" for v in VANTAGES]

FIELDS = ("frame.number", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport")


def tshark(capture: str, flt: str, fields=("frame.number",)) -> list[list[str]]:
    args = [TSHARK, "-n", "-r", capture, "-Y", flt, "-T", "fields", "-E", "occurrence=l"]
    for f in fields:
        args += ["-e", f]
    p = subprocess.run(args, capture_output=True, text=True, timeout=120)
    cut_short = p.returncode == 2 and "cut short in the middle of a packet" in p.stderr  # damaged.pcap: read to the damage
    assert p.returncode == 0 or cut_short, f"tshark rejected {flt!r}: {p.stderr.strip()}"
    return [line.split("\t") for line in p.stdout.splitlines() if line.strip()]


def frames(capture: str, flt: str) -> set[int]:
    return {int(r[0]) for r in tshark(capture, flt)}


def _analyse(args: list[str]) -> dict:
    r = run_cli("analyze", *args, "--format", "json")
    assert r.code in (0, 1, 3, 4) and "Traceback" not in r.err, (args, r.err)
    return r.json()


@pytest.fixture(scope="module")
def docs() -> dict[str, dict]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(TARGETS, pool.map(_analyse, TARGETS.values())))


def _by_capture(d: dict) -> dict[str, dict]:
    """Per capture: its evidence filters (filter -> frame) and its connections."""
    by_cap: dict[str, dict] = {}
    for f in d["findings"]:
        for e in f["evidence"]:
            if "frame" in e:
                by_cap.setdefault(e["capture"], {"evidence": {}, "conns": []})["evidence"][e["display_filter"]] = e["frame"]
    for c in d["connections"]:
        by_cap.setdefault(c["capture"], {"evidence": {}, "conns": []})["conns"].append(c)
    return by_cap


def _combined(want: dict) -> str:
    return " || ".join(f"({x})" for x in list(want["evidence"]) + sorted({c["display_filter"] for c in want["conns"]}))


@pytest.fixture(scope="module")
def selected(docs) -> dict:
    """Every tshark run the tests below look at, made once, a few at a time: ("finding", name, id,
    capture) -> frames; ("capture", name, capture) -> rows of the combined filter."""
    jobs = []
    for name, d in docs.items():
        for fid, cap, flt, _ in _finding_cases(d):
            jobs.append((("finding", name, fid, cap), cap, flt, ("frame.number",)))
        for cap, want in _by_capture(d).items():
            jobs.append((("capture", name, cap), cap, _combined(want), FIELDS))
    with ThreadPoolExecutor(max_workers=4) as pool:
        rows = list(pool.map(lambda j: tshark(j[1], j[2], j[3]), jobs))
    return {j[0]: r for j, r in zip(jobs, rows)}


def _finding_cases(d: dict):
    """(finding id, capture, filter, cited frames) for each finding and capture it cites."""
    for f in d["findings"]:
        for x in f["display_filter"]:
            cited = {e["frame"] for e in f["evidence"] if e.get("capture") == x["capture"] and "frame" in e}
            yield f["id"], x["capture"], x["display_filter"], cited


@pytest.mark.parametrize("name", list(TARGETS))
def test_each_findings_filter_selects_exactly_its_evidence_frames_in_each_capture(docs, selected, name):
    cases = list(_finding_cases(docs[name]))
    if not cases:
        assert not docs[name]["findings"] or all(not f["display_filter"] for f in docs[name]["findings"])
    for fid, cap, flt, cited in cases:
        assert {int(r[0]) for r in selected[("finding", name, fid, cap)]} == cited, (name, fid, cap, flt)


def test_a_findings_filter_does_not_select_the_frame_beside_its_evidence(docs):
    """The must-not case, on frames tshark shows: the frame right after the last cited one (a
    packet of the same connection, not evidence) exists in the capture and is not selected."""
    d = docs["sample:wrong_source.pcap"]
    fid, cap, flt, cited = next(_finding_cases(d))
    beside = max(cited) + 1
    assert beside not in cited and frames(cap, f"frame.number == {beside}") == {beside}, "the neighbour frame exists"
    assert beside not in frames(cap, flt)
    assert frames(cap, f"({flt}) || frame.number == {beside}") == cited | {beside}  # and tshark does see it


def _key(row: list[str]) -> tuple:
    _, s4, d4, s6, d6, sp, dp = (row + [""] * 7)[:7]
    src, dst = s4 or s6, d4 or d6
    return frozenset({(src, int(sp) if sp else None), (dst, int(dp) if dp else None)})


@pytest.mark.parametrize("name", list(TARGETS))
def test_evidence_and_connection_filters_select_exactly_their_frames_and_packets(docs, selected, name):
    """Per capture, the OR of every evidence and connection filter, split: each evidence frame is
    selected; every other selected frame belongs to a listed connection; each conversation has
    exactly its records' packets (client and server packets and the forwarded copies; a 4-tuple
    reused in the capture: all its records). (An evidence frame of a conversation would be
    counted even if the conversation filter missed it; the finding filters are checked alone.)"""
    by_cap = _by_capture(docs[name])
    assert by_cap, name
    for cap, want in by_cap.items():
        rows = selected[("capture", name, cap)]
        nums = {int(r[0]) for r in rows}
        for flt, frame in want["evidence"].items():
            assert flt == f"frame.number == {frame}" and frame in nums, (name, cap, flt)
        want_conv: dict = {}
        for c in want["conns"]:
            k = frozenset({(c["client"]["ip"], c["client"]["port"]), (c["server"]["ip"], c["server"]["port"])})
            want_conv[k] = want_conv.get(k, 0) + c["client"]["packets"] + c["server"]["packets"] + c["l2_path"]["forwarded_copies"]
        per_conv: dict = {}
        for r in rows:
            k = _key(r)
            if k in want_conv:
                per_conv[k] = per_conv.get(k, 0) + 1
            else:
                assert int(r[0]) in want["evidence"].values(), (name, cap, "a frame no filter claims", r)
        assert per_conv == want_conv, (name, cap)


def test_a_connection_filter_does_not_select_a_neighbouring_connections_frames(docs):
    d = docs["sample:healthy.pcap"]
    a, b = d["connections"][0], d["connections"][1]
    fa, fb = frames(a["capture"], a["display_filter"]), frames(b["capture"], b["display_filter"])
    assert fa and fb and not fa & fb


def test_tshark_option_prints_the_command_for_each_finding_and_capture(docs):
    d = docs["set:wrong_source"]
    r = run_cli("analyze", *TARGETS["set:wrong_source"], "--tshark")
    assert r.code == 1, r.err
    cmds = [line for line in r.out.splitlines() if not line.startswith("#")]
    want = [f"tshark -r {shlex.quote(x['capture'])} -Y {shlex.quote(x['display_filter'])}"
            for f in d["findings"] for x in f["display_filter"]]
    assert sorted(cmds) == sorted(want)
    assert all(line.startswith("# ") for line in r.out.splitlines() if not line.startswith("tshark "))
    first = shlex.split(cmds[0])  # pasted into a shell: tshark runs it
    p = subprocess.run([TSHARK, "-n", *first[1:], "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.split()


def test_tshark_option_on_a_healthy_capture_prints_only_the_verdict_comment():
    r = run_cli("analyze", str(CAPTURES / "healthy.pcap"), "--tshark")
    assert r.code == 0 and r.out.splitlines() and all(x.startswith("# ") for x in r.out.splitlines())
    assert "HEALTHY" in r.out


def test_tshark_option_with_json_format_is_a_usage_error():
    r = run_cli("analyze", str(CAPTURES / "healthy.pcap"), "--tshark", "--format", "json")
    assert r.code == 2 and "Traceback" not in r.err and "--tshark" in r.err


def test_tshark_lines_stay_one_pasteable_line_for_a_capture_name_with_a_newline_and_a_quote(tmp_path):
    odd = tmp_path / "odd\nname 'x'.pcap"
    odd.write_bytes((CAPTURES / "wrong_source.pcap").read_bytes())
    r = run_cli("analyze", str(odd), "--tshark")
    assert r.code == 1, r.err
    cmds = [line for line in r.out.splitlines() if line.startswith("tshark ")]
    assert cmds and all(line.startswith("# ") or line.startswith("tshark ") for line in r.out.splitlines())
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    p = subprocess.run([bash, "-c", cmds[0].replace("tshark ", f"{TSHARK} -n ", 1) + " -T fields -e frame.number"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    d = run_cli("analyze", str(odd), "--format", "json").json()
    first = d["findings"][0]
    assert {int(x) for x in p.stdout.split()} == {e["frame"] for e in first["evidence"] if "frame" in e}
