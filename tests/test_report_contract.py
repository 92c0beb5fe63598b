"""The JSON report's 2.1 contract (docs/report-2.md, docs/report.schema.json) holds for every
document dsrdiag writes: every bundled sample (captures/MANIFEST.toml [[capture]]), every path set
([[set]]), all samples analysed together, hostcheck (saved Windows output and this Linux host, read
only) and a probe of a closed port on loopback.

What a consumer (a gate, a SIEM, a ticket bot) relies on, checked document by document: the
schema; references that resolve (explained_by, consequences, verdict.causes, connection uids);
ids that are unique in a document and the same in every run, with --jobs 1 or 2 and whatever the
order of the captures; causes and consequences that mirror each other; TCP flags as letters; every
epoch the same instant as the ISO time beside it; corrected times exactly where a clock offset is
known; display filters that name exactly the cited frames and connections (tshark runs them in
tests/test_display_filters.py); the exit code that the verdict's state documents. And the schema is strict enough to fail:
1.0 shapes and the loose spots the design review found are rejected.
"""

from __future__ import annotations

import calendar
import copy
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from decimal import Decimal

import jsonschema
import pytest

from tests.conftest import CAPTURES, ROOT, run_cli

MANIFEST = tomllib.loads((CAPTURES / "MANIFEST.toml").read_text())
SAMPLES = MANIFEST["capture"]
SETS = MANIFEST["set"]
VANTAGES = ("client", "fw-out", "fw-in", "lb", "be1", "be2")
SCHEMA = json.loads((ROOT / "docs" / "report.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
WINDOWS_GOOD = ROOT / "tests" / "data" / "windows" / "exch1-good.txt"
VIP = "192.0.2.25"
EXIT_OF_STATE = {"healthy": (0, 3), "broken": (1,), "inconclusive": (4,)}
"""docs/exit-codes.md: healthy exits 0 (3 when a capture was damaged), broken 1, inconclusive 4."""
OPTIONAL = {"#": {"host", "probe", "correlation"}, "frame_evidence": {"corrected"}, "settings": "*"}
"""The only fields the schema may leave out of `required`: the sections of one command, the
corrected time (only where a clock offset is known), and a host's settings (only those read)."""


# ---- the documents ------------------------------------------------------------------------------

def _set_args(name: str, order=VANTAGES) -> list[str]:
    folder = CAPTURES / "paths" / name
    return [f"{v}={folder / (v + '.pcap')}" for v in order]


def _together() -> list[str]:
    return [str(CAPTURES / e["file"]) for e in SAMPLES if not e["args"] and e["file"] != "damaged.pcap"]


TARGETS: dict[str, list[str]] = {}
for _e in SAMPLES:
    TARGETS[f"sample:{_e['file']}"] = [str(CAPTURES / _e["file"]), *_e["args"]]
for _s in SETS:
    TARGETS[f"set:{_s['name']}"] = _set_args(_s["name"])
TARGETS["samples-together"] = _together()
MULTI = [k for k in TARGETS if not k.startswith("sample:")]
"""Analyses of several captures: where --jobs can change how the work is split."""


def analyze(args: list[str], *extra: str) -> tuple[int, dict]:
    r = run_cli("analyze", *args, "--format", "json", *extra)
    assert "Traceback" not in r.err, r.err
    return r.code, r.json()


def _windows_with_a_mistake(tmp) -> str:
    text = WINDOWS_GOOD.read_text()
    bad = text.replace("Weak Host Sends                    : enabled", "Weak Host Sends                    : disabled")
    assert bad != text
    p = tmp / "exch1-weak-send-off.txt"
    p.write_text(bad)
    return str(p)


def _closed_loopback_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _probe(prefix: tuple[str, ...] = ()) -> tuple[int, dict]:
    """dsrdiag probe of a closed port on 127.0.0.1 (one SYN, answered by the kernel's RST)."""
    args = [*prefix, sys.executable, "-m", "dsrdiag", "probe", "127.0.0.1", "--port", str(_closed_loopback_port()),
            "--count", "1", "--timeout", "1", "--format", "json"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert "Traceback" not in p.stderr and p.returncode != 2, p.stderr
    return p.returncode, json.loads(p.stdout)


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> dict[str, tuple[int, dict]]:
    out = {name: analyze(args) for name, args in TARGETS.items()}
    tmp = tmp_path_factory.mktemp("hostcheck")
    for name, src in (("hostcheck:windows-good", str(WINDOWS_GOOD)), ("hostcheck:windows-mistake", _windows_with_a_mistake(tmp))):
        r = run_cli("hostcheck", "--vip", VIP, "--from", src, "--format", "json")
        assert "Traceback" not in r.err, r.err
        out[name] = (r.code, r.json())
    if sys.platform.startswith("linux"):  # this host as it is: read only (/proc, netlink)
        r = run_cli("hostcheck", "--vip", VIP, "--format", "json")
        if r.code != 2:
            out["hostcheck:linux-live"] = (r.code, r.json())
    if os.geteuid() == 0:  # the probe captures on lo; only loopback traffic
        out["probe:loopback-closed"] = _probe()
    return out


DOC_NAMES = list(TARGETS) + ["hostcheck:windows-good", "hostcheck:windows-mistake", "hostcheck:linux-live",
                             "probe:loopback-closed"]


@pytest.fixture(params=DOC_NAMES)
def doc(request, docs) -> tuple[str, int, dict]:
    if request.param not in docs:
        pytest.skip(f"{request.param}: not available here (needs Linux / root)")
    code, d = docs[request.param]
    return request.param, code, d


# ---- helpers ------------------------------------------------------------------------------------

def iso_seconds(iso: str) -> Decimal:
    """The ISO time as exact seconds since the epoch (nanoseconds kept)."""
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6,9})Z", iso)
    assert m, iso
    whole = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return Decimal(whole) + Decimal("0." + m.group(2))


def timed_pairs(d: dict):
    """Every (where, ISO time, epoch) pair in the document."""
    for i, c in enumerate(d["captures"]):
        for k in ("first_ts", "last_ts"):
            if c[k] is not None or c[k + "_epoch"] is not None:
                yield f"captures[{i}].{k}", c[k], c[k + "_epoch"]
    for i, c in enumerate(d["connections"]):
        yield f"connections[{i}].ts", c["ts"], c["ts_epoch"]
    for i, f in enumerate(d["findings"]):
        for j, e in enumerate(f["evidence"]):
            if "time" in e:
                yield f"findings[{i}].evidence[{j}]", e["time"], e["epoch"]
                if "corrected" in e:
                    yield f"findings[{i}].evidence[{j}].corrected", e["corrected"]["time"], e["corrected"]["epoch"]
    for i, fl in enumerate((d.get("correlation") or {}).get("flows", [])):
        for j, p in enumerate(fl["packets"]):
            for k, h in enumerate(p["hops"]):
                yield f"correlation.flows[{i}].packets[{j}].hops[{k}]", h["time"], h["epoch"]


def ids_of(d: dict) -> list[tuple]:
    """What must not change between runs: each finding's id with what it says and links to."""
    return sorted((f["id"], f["kind"], tuple(f["vantages"]), f["explained_by"], tuple(f["consequences"]))
                  for f in d["findings"]) + [("verdict", tuple(d["verdict"]["causes"]))]


def errors_of(d: dict) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in VALIDATOR.iter_errors(d)]


# ---- every document -----------------------------------------------------------------------------

def test_document_validates_against_the_2_1_schema(doc):
    name, _, d = doc
    assert d["version"] == "2.1"
    assert errors_of(d) == [], name


def _frames_of_filter(flt: str) -> set[int]:
    """The frame numbers a frames_filter names (`frame.number == 3`, `frame.number in {1, 4..6}`)."""
    m = re.fullmatch(r"frame\.number == (\d+)", flt)
    if m:
        return {int(m.group(1))}
    m = re.fullmatch(r"frame\.number in \{(.*)\}", flt)
    assert m, flt
    out: set[int] = set()
    for part in m.group(1).split(", "):
        a, _, b = part.partition("..")
        out |= set(range(int(a), int(b or a) + 1))
    return out


def test_a_findings_display_filters_name_exactly_its_evidence_frames_capture_by_capture(doc):
    name, _, d = doc
    for f in d["findings"]:
        frames: dict[tuple, set] = {}
        for e in f["evidence"]:
            if "frame" in e:
                frames.setdefault((e["capture"], e["vantage"]), set()).add(e["frame"])
                assert _frames_of_filter(e["display_filter"]) == {e["frame"]}, (name, e)
        got = {(x["capture"], x["vantage"]): _frames_of_filter(x["display_filter"]) for x in f["display_filter"]}
        assert len(got) == len(f["display_filter"]), (name, f["id"], "a capture listed twice")
        assert got == frames, (name, f["id"])


def test_a_findings_connection_filters_are_its_connections_conversation_filters(doc):
    name, _, d = doc
    by_uid = {c["uid"]: c for c in d["connections"]}
    for c in d["connections"]:
        ip = "ipv6.addr" if c["ip_version"] == 6 else "ip.addr"
        assert c["display_filter"] == (f"{ip}=={c['client']['ip']} && tcp.port=={c['client']['port']} && "
                                       f"{ip}=={c['server']['ip']} && tcp.port=={c['server']['port']}"), (name, c["uid"])
    for f in d["findings"]:
        assert [x["uid"] for x in f["connection_filters"]] == f["connections"], (name, f["id"])
        for x in f["connection_filters"]:
            c = by_uid[x["uid"]]
            assert (x["capture"], x["vantage"], x["display_filter"]) == (c["capture"], c["vantage"], c["display_filter"])


def test_every_finding_reference_names_a_finding_of_the_same_document(doc):
    name, _, d = doc
    ids = {f["id"] for f in d["findings"]}
    for f in d["findings"]:
        assert f["explained_by"] is None or f["explained_by"] in ids, (name, f["id"], f["explained_by"])
        assert f["explained_by"] != f["id"], (name, f["id"])
        assert set(f["consequences"]) <= ids, (name, f["id"], f["consequences"])
    assert set(d["verdict"]["causes"]) <= ids, (name, d["verdict"]["causes"])


def test_finding_ids_are_distinct_within_a_document(doc):
    name, _, d = doc
    ids = [f["id"] for f in d["findings"]]
    assert all(ids) and len(ids) == len(set(ids)), (name, ids)


def test_a_causes_consequences_are_exactly_the_findings_it_explains(doc):
    name, _, d = doc
    by_id = {f["id"]: f for f in d["findings"]}
    for f in d["findings"]:
        explained = sorted(g["id"] for g in d["findings"] if g["explained_by"] == f["id"])
        assert sorted(f["consequences"]) == explained, (name, f["id"])
        if f["explained_by"] is not None:  # symptoms point at the root cause, never at another symptom
            assert by_id[f["explained_by"]]["explained_by"] is None, (name, f["id"])
            assert f["consequences"] == [], (name, f["id"])


def test_finding_connections_are_uids_listed_in_the_documents_connections(doc):
    name, _, d = doc
    uids = [c["uid"] for c in d["connections"]]
    assert len(uids) == len(set(uids)), name
    known = set(uids)
    for f in d["findings"]:
        missing = set(f["connections"]) - known
        assert not missing, (name, f["id"], f["kind"], sorted(missing)[:5])
    for fl in (d.get("correlation") or {}).get("flows", []):
        missing = set(fl["connections"]) - known
        assert not missing, (name, fl["client"], sorted(missing)[:5])


def test_finding_vantages_are_the_documents_captures_and_between_is_two_of_them(doc):
    name, _, d = doc
    captured = {c["vantage"] for c in d["captures"]}
    for f in d["findings"]:
        if f["between"] is not None:
            assert f["between"]["from"] != f["between"]["to"], (name, f["id"])
            assert {f["between"]["from"], f["between"]["to"]} <= set(f["vantages"]), (name, f["id"])
        if name.startswith(("sample:", "set:", "samples-together")):
            assert set(f["vantages"]) <= captured, (name, f["id"], f["vantages"], captured)


def test_tcp_flags_in_correlated_packets_are_letters(doc):
    name, _, d = doc
    packets = [p for fl in (d.get("correlation") or {}).get("flows", []) for p in fl["packets"]]
    if name.startswith("set:"):
        assert packets, name  # every path set is correlated: the check below is not vacuous there
    for p in packets:
        assert isinstance(p["flags"], str) and re.fullmatch(r"[FSRPAUEC]*", p["flags"]), (name, p["flags"])


def test_every_epoch_is_the_same_instant_as_its_iso_time(doc):
    """To the microsecond: an epoch is a double, about 0.24 us apart at today's dates."""
    name, _, d = doc
    n = 0
    for where, iso, epoch in timed_pairs(d):
        assert iso is not None and epoch is not None, (name, where, iso, epoch)
        assert abs(Decimal(repr(epoch)) - iso_seconds(iso)) <= Decimal("0.000001"), (name, where, iso, epoch)
        n += 1
    if d["connections"]:
        assert n > len(d["connections"]), name


def test_corrected_times_appear_exactly_where_a_clock_offset_is_known(doc):
    name, _, d = doc
    offsets = {o["vantage"]: o for o in (d.get("correlation") or {}).get("clock_offsets", [])}
    seen = 0
    for f in d["findings"]:
        for e in f["evidence"]:
            if "time" not in e:
                assert "corrected" not in e
                continue
            o = offsets.get(e["vantage"])
            if o is None:
                assert "corrected" not in e, (name, f["id"], e)
                continue
            seen += 1
            c = e["corrected"]
            shift = iso_seconds(e["time"]) - iso_seconds(c["time"])
            assert abs(shift - Decimal(repr(o["offset_s"]))) <= Decimal("0.000001"), (name, e, o)
            assert c["uncertainty_s"] == o["uncertainty_s"], (name, e, o)
    if name in ("set:fw_drop_syn", "set:wrong_source", "set:asym"):
        assert seen, name  # their evidence comes from vantages with offsets: not vacuous


def test_verdict_counts_and_causes_agree_with_the_findings(doc):
    name, _, d = doc
    v = d["verdict"]
    sev = [f["severity"] for f in d["findings"]]
    assert (v["errors"], v["warnings"], v["infos"]) == (sev.count("error"), sev.count("warning"), sev.count("info")), name
    assert v["completed"] + v["failed"] == v["connections"], name
    by_id = {f["id"]: f for f in d["findings"]}
    for cid in v["causes"]:
        assert by_id[cid]["explained_by"] is None, (name, cid)
    assert (v["state"] == "broken") == bool(v["causes"]), (name, v)
    if v["state"] == "healthy":
        assert not [f for f in d["findings"] if f["severity"] == "error"], name


def test_exit_code_is_the_one_the_verdicts_state_documents(doc):
    name, code, d = doc
    state = d["verdict"]["state"]
    damaged = any(c["damage"] for c in d["captures"])
    want = {"healthy": 3 if damaged else 0, "broken": 1, "inconclusive": 4}[state]
    assert code == want, (name, state, code, d["verdict"]["text"])


# ---- the same captures, the same ids ------------------------------------------------------------

@pytest.mark.parametrize("name", list(TARGETS), ids=list(TARGETS))
def test_ids_are_the_same_in_a_second_run(docs, name):
    again = analyze(TARGETS[name])[1]
    assert ids_of(again) == ids_of(docs[name][1])


@pytest.mark.parametrize("name", MULTI, ids=MULTI)
def test_ids_are_the_same_with_one_job_and_with_two(docs, name):
    one = analyze(TARGETS[name], "--jobs", "1")[1]
    two = analyze(TARGETS[name], "--jobs", "2")[1]
    assert ids_of(one) == ids_of(two) == ids_of(docs[name][1])
    assert one["connections"] == two["connections"]


@pytest.mark.parametrize("entry", SETS, ids=[s["name"] for s in SETS])
def test_ids_do_not_depend_on_the_order_the_captures_are_given_in(docs, entry):
    reverse = analyze(_set_args(entry["name"], VANTAGES[::-1]))[1]
    assert ids_of(reverse) == ids_of(docs[f"set:{entry['name']}"][1])


def test_ids_tell_distinct_faults_apart_across_the_samples_and_sets(docs):
    """One fault, one id: two findings with the same id in different documents say the same thing."""
    seen: dict[str, tuple] = {}
    for name, (_, d) in docs.items():
        for f in d["findings"]:
            b = f["backend"] or {}
            what = (f["kind"], tuple(sorted(f["vantages"])), json.dumps(f["between"]),
                    b.get("mac") or b.get("ip"), f["subject"])  # the back-end by MAC, its address when no MAC
            if f["id"] in seen:
                assert seen[f["id"]][0] == what, (f["id"], seen[f["id"]], name, what)
            seen.setdefault(f["id"], (what, name))
    assert len(seen) >= 10


def test_a_captures_finding_ids_are_the_same_alone_and_beside_other_captures(docs):
    """The id leaves out what depends on the other captures (the back-end's inferred name): a
    fault in wrong_source.pcap has one id whether that capture is analysed alone or with others."""
    together = docs["samples-together"][1]
    got = {f["id"]: f["kind"] for f in together["findings"]}
    for e in SAMPLES:
        if TARGETS["samples-together"].count(str(CAPTURES / e["file"])):
            for f in docs[f"sample:{e['file']}"][1]["findings"]:
                assert got.get(f["id"]) == f["kind"], (e["file"], f["id"], f["kind"])


# ---- probe without capture rights ---------------------------------------------------------------

@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_probe_without_capture_rights_reports_a_valid_document_with_ids():
    """The sessions_failed finding only the probe makes (no capture to explain the refused
    session): its document must hold the contract like every other."""
    code, d = _probe(("setpriv", "--bounding-set=-net_raw,-net_admin"))
    assert any(s.startswith("live capture:") for s in d["probe"]["skipped"])
    assert [f["kind"] for f in d["findings"]] == ["sessions_failed"]
    assert errors_of(d) == []
    assert d["verdict"]["causes"] == [d["findings"][0]["id"]] and code == 1


# ---- the schema can fail ------------------------------------------------------------------------

def _first(d: dict, key: str):
    return d[key][0]


def _failures(d: dict) -> list:
    return next(r["failures"] for r in d["backends"] if r["failures"])


MUTATIONS = {
    "1.0 version": lambda d: d.__setitem__("version", "1.0"),
    "1.0 verdict.healthy": lambda d: d["verdict"].__setitem__("healthy", True),
    "verdict without state": lambda d: d["verdict"].pop("state"),
    "unknown verdict state": lambda d: d["verdict"].__setitem__("state", "degraded"),
    "1.0 finding.vantage": lambda d: _first(d, "findings").__setitem__("vantage", "fw-in, be2"),
    "vantages as a string": lambda d: _first(d, "findings").__setitem__("vantages", "fw-in, be2"),
    "finding without id": lambda d: _first(d, "findings").pop("id"),
    "empty finding id": lambda d: _first(d, "findings").__setitem__("id", ""),
    "between without to": lambda d: _first(d, "findings").__setitem__("between", {"from": "fw-in"}),
    "fix without load_balancer": lambda d: _first(d, "findings")["fix"].pop("load_balancer"),
    "evidence without epoch": lambda d: _first(d, "findings")["evidence"][0].pop("epoch"),
    "2.0 evidence (no display_filter)": lambda d: _first(d, "findings")["evidence"][0].pop("display_filter"),
    "2.0 finding (no display_filter)": lambda d: _first(d, "findings").pop("display_filter"),
    "finding display_filter as one string": lambda d: _first(d, "findings").__setitem__("display_filter", "frame.number == 1"),
    "empty display filter": lambda d: _first(d, "findings")["display_filter"][0].__setitem__("display_filter", ""),
    "connection filter without uid": lambda d: _first(d, "findings")["connection_filters"][0].pop("uid"),
    "2.0 connection (no display_filter)": lambda d: _first(d, "connections").pop("display_filter"),
    "1.0 failure": lambda d: _failures(d).__setitem__(0, {"where": "x", "connections": 1}),
    "lost_on_path with a conn_state": lambda d: _failures(d)[0].__setitem__("conn_state", "S0"),
    "connection without ts_epoch": lambda d: _first(d, "connections").pop("ts_epoch"),
    "capture without first_ts_epoch": lambda d: _first(d, "captures").pop("first_ts_epoch"),
    "unknown field in correlation": lambda d: d["correlation"].__setitem__("extra", 1),
    "unknown field in a flow": lambda d: d["correlation"]["flows"][0].__setitem__("extra", 1),
    "flow without connections": lambda d: d["correlation"]["flows"][0].pop("connections"),
    "numeric flags (1.0)": lambda d: d["correlation"]["flows"][0]["packets"][0].__setitem__("flags", 2),
    "flags spelled out": lambda d: d["correlation"]["flows"][0]["packets"][0].__setitem__("flags", "SYN, ACK"),
    "hop frame as text": lambda d: d["correlation"]["flows"][0]["packets"][0]["hops"][0].__setitem__("frame", "1"),
    "hop without epoch": lambda d: d["correlation"]["flows"][0]["packets"][0]["hops"][0].pop("epoch"),
    "clock offset without basis": lambda d: d["correlation"]["clock_offsets"][0].pop("basis"),
    "clock offset without via": lambda d: d["correlation"]["clock_offsets"][0].pop("via"),
    "unknown clock basis": lambda d: d["correlation"]["clock_offsets"][0].__setitem__("basis", "ntp"),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS), ids=list(MUTATIONS))
def test_schema_rejects_a_document_that_breaks_the_contract(docs, mutation):
    """A real document (the wrong_source path set: findings, evidence, failures, correlation) is
    valid; the same document with one contract violation is not."""
    d = copy.deepcopy(docs["set:wrong_source"][1])
    assert errors_of(d) == []
    MUTATIONS[mutation](d)
    assert errors_of(d), f"the schema accepted: {mutation}"


def _objects(node, path="#"):
    if isinstance(node, dict):
        if "properties" in node:
            yield path, node
        for k, v in node.items():
            yield from _objects(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _objects(v, f"{path}/{i}")


def test_every_object_in_the_schema_is_closed_and_requires_its_typed_fields():
    """The design review's loose spots (correlation open, flows/hops untyped, basis/via optional)
    cannot come back: each object says additionalProperties false, every field has a type (or a
    const/enum/$ref/oneOf), and every field is required unless OPTIONAL names it."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    n = 0
    for path, o in _objects(SCHEMA):
        if path.endswith("/properties/properties"):  # a field named "properties" (none today)
            continue
        n += 1
        assert o.get("additionalProperties") is False, path
        name = path.rsplit("/", 1)[-1]
        optional = OPTIONAL.get(name, set())
        missing = set(o["properties"]) - set(o.get("required", ()))
        assert optional == "*" or missing <= optional, (path, missing)
        for k, v in o["properties"].items():
            assert any(x in v for x in ("type", "const", "enum", "$ref", "oneOf")), f"{path}/{k} is untyped"
    assert n >= 30
