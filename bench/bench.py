#!/usr/bin/env python3
"""dsrdiag against tshark and tcpdump on every shape and format of issue 14, in one run.

For each case (bench/gen.py generates its capture, deterministic, cached in --dir), run, alternating
(one of each tool in turn, so that cache and a busy machine's load fall on all three alike):
  dsrdiag analyze FILE --format json --jobs 1   (the full analysis)
  tshark -nr FILE -q -z conv,tcp                (listing TCP conversations only)
  tcpdump -nr FILE -w /dev/null                 (a raw libpcap read)
and report the median wall time, packets/s, peak memory (each child's own max RSS, from wait4),
dsrdiag's ratios to both, and PASS/FAIL against issue 14's targets, as markdown tables
(docs/performance.md quotes them; they are also written to DIR/results.md and DIR/results.json).

Cases (full; --quick divides every count by 10, a few minutes):
  relay 1M packets in pcap, nanosecond pcap, Linux cooked SLL, pcapng, pcap.gz, pcapng.gz;
  syn 1M and 2M unanswered SYNs; sessions 200k, 400k and 2M short SMTP sessions (linearity);
  hash-xorshift, hash-modulo, hash-random: 100k IPv6 SYNs against a table's hash, and random;
  seqjump: the 1M relay with one segment 2^31 past the expected sequence number.
A tool whose first run of a case takes more than --slow seconds (60) runs that case once (said in the
table); a run past --timeout (600 s) is killed and reported; every child runs under a --mem-cap (8 GiB) address
space limit so that a blow-up cannot take the shared machine down (reported as such).

Never a unit test: timings belong here.

Usage: python bench/bench.py [--quick] [--runs 3] [--only relay] [--dir bench/out] [--parallel]
       python bench/bench.py --packets 1000000 [--packets 5000000]   (the relay in pcap only, as before)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen import file_name, generate  # noqa: E402

M = 1_000_000
K = 1_000


def cases(scale: int) -> list[dict]:
    """(name, shape, count, format, tshark?) of every case; scale 1 is the full run, 10 the quick one."""
    c = []
    for fmt in ("pcap", "pcap-ns", "sll", "pcapng", "pcap.gz", "pcapng.gz"):
        c.append({"name": f"relay {fmt}", "shape": "relay", "count": M // scale, "format": fmt})
    c.append({"name": "syn 1x", "shape": "syn", "count": M // scale, "format": "pcap"})
    c.append({"name": "syn 2x", "shape": "syn", "count": 2 * M // scale, "format": "pcap"})
    c.append({"name": "sessions 1x", "shape": "sessions", "count": 200 * K // scale, "format": "pcap"})
    c.append({"name": "sessions 2x", "shape": "sessions", "count": 400 * K // scale, "format": "pcap"})
    # 2M connections are for dsrdiag's linearity and memory: tshark's conv,tcp would hold 2M
    # conversations (several GiB) for no comparison the targets ask for
    c.append({"name": "sessions 10x", "shape": "sessions", "count": 2 * M // scale, "format": "pcap", "tshark": False})
    for h in ("hash-xorshift", "hash-modulo", "hash-random"):
        c.append({"name": h, "shape": h, "count": 100 * K // scale, "format": "pcap"})
    c.append({"name": "seqjump", "shape": "seqjump", "count": M // scale, "format": "pcap"})
    return c


class Outcome:
    __slots__ = ("wall", "peak_mib", "code", "note")

    def __init__(self, wall, peak_mib, code, note=""):
        self.wall, self.peak_mib, self.code, self.note = wall, peak_mib, code, note


def run(cmd: list[str], timeout: float, mem_cap: int, ok_codes=(0,)) -> Outcome:
    """Wall seconds and the child's peak RSS in MiB (wait4 gives that process's own rusage)."""

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (mem_cap, mem_cap))

    t0 = time.perf_counter()
    with open(os.devnull, "wb") as null:
        p = subprocess.Popen(cmd, stdout=null, stderr=subprocess.DEVNULL, preexec_fn=limit, start_new_session=True)
        deadline = t0 + timeout
        while True:  # bounded by the timeout
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                os.killpg(p.pid, signal.SIGKILL)
                _, status, ru = os.wait4(p.pid, 0)
                p.returncode = -9
                return Outcome(time.perf_counter() - t0, ru.ru_maxrss / 1024, -9, f"killed after {timeout:.0f} s")
            time.sleep(0.005)
        p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    code = p.returncode
    note = ""
    if code not in ok_codes:
        note = f"exit {code}" + (" (memory cap?)" if code in (2, -6, -11, 134, 139) or code < 0 else "")
    return Outcome(wall, ru.ru_maxrss / 1024, code, note)


def machine() -> str:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def bytecode() -> str:
    """Compile dsrdiag's modules to .pyc, as `pip install` does for an installed package.

    Why: an editable checkout run with PYTHONDONTWRITEBYTECODE=1 (this machine sets it) keeps no
    .pyc and recompiles every module on every start, ~45 ms of each run: that measures the
    compiler, not the tool a user installs. tshark and tcpdump are measured installed too."""
    import compileall

    import dsrdiag

    pkg = Path(dsrdiag.__file__).resolve().parent
    ok = compileall.compile_dir(str(pkg), quiet=1)
    return f"{pkg} byte-compiled ({'ok' if ok else 'with errors'})"


def tool_cmds(path: Path, with_tshark: bool) -> dict[str, list[str]]:
    tools = {
        "dsrdiag": [sys.executable, "-m", "dsrdiag", "analyze", str(path), "--format", "json", "--jobs", "1"],
        "tshark": ["tshark", "-nr", str(path), "-q", "-z", "conv,tcp"],
        "tcpdump": ["tcpdump", "-nr", str(path), "-w", os.devnull],
    }
    if path.name.endswith(".gz"):  # tcpdump reads no gzip: a decompressing pipe into it (wait4 on sh covers both)
        tools["tcpdump"] = ["sh", "-c", 'gzip -dc "$1" | tcpdump -nr - -w /dev/null', "sh", str(path)]
    if not with_tshark:
        del tools["tshark"]
    return {k: v for k, v in tools.items() if k == "dsrdiag" or shutil.which(v[0])}


def bench_case(path: Path, packets: int, runs: int, a, with_tshark: bool) -> dict:
    tools = tool_cmds(path, with_tshark)
    results: dict[str, list[Outcome]] = {k: [] for k in tools}
    for i in range(runs):
        for name, cmd in tools.items():  # alternating, so that cache and CPU state are shared fairly
            if i and (results[name][0].wall > a.slow or results[name][0].note):
                continue  # too slow (or failed) to repeat: one run is the figure
            # dsrdiag: 1 broken, 3 damaged, 4 inconclusive (a SYN flood has nothing to judge)
            results[name].append(run(cmd, a.timeout, a.mem_cap, (0, 1, 3, 4) if name == "dsrdiag" else (0,)))
    out = {}
    for name, rs in results.items():
        wall = statistics.median(r.wall for r in rs)
        notes = sorted({r.note for r in rs if r.note})
        out[name] = {"wall_s": round(wall, 3), "packets_per_s": round(packets / wall), "peak_mib": round(max(r.peak_mib for r in rs), 1),
                     "runs": [round(r.wall, 3) for r in rs], "exit": [r.code for r in rs], "note": "; ".join(notes),
                     "ok": not notes}
    return out


def fmt_rate(x: float) -> str:
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.0f} k"


def ratios(r: dict) -> tuple[float | None, float | None]:
    d = r["dsrdiag"]
    xt = r["tshark"]["wall_s"] / d["wall_s"] if "tshark" in r and r["tshark"]["ok"] and d["ok"] else None
    xd = d["wall_s"] / r["tcpdump"]["wall_s"] if "tcpdump" in r and r["tcpdump"]["ok"] and d["ok"] else None
    return xt, xd


def table(report: dict) -> str:
    lines = ["| case | packets | dsrdiag wall | dsrdiag packets/s | dsrdiag peak | tshark wall | tshark peak | tcpdump wall "
             "| tcpdump peak | vs tshark | vs tcpdump |", "| --- " * 11 + "|"]
    for name, c in report["cases"].items():
        r = c["tools"]
        d = r["dsrdiag"]

        def cell(t, key, unit):
            if t not in r:
                return "not run"
            v = r[t]
            if v.get(key) is None:
                return "not recorded"
            s = f"{v[key]:.2f} s" if unit == "s" else f"{v[key]:,.0f} MiB"
            if unit == "s" and len(v["runs"]) == 1 and not v["note"]:
                s += " (1 run)"
            if v["note"] and unit == "s":
                s += f" ({v['note']})"
            return s

        xt, xd = ratios(r)
        lines.append(f"| {name} | {c['packets']:,} | {cell('dsrdiag', 'wall_s', 's')} | {fmt_rate(d['packets_per_s'])} | "
                     f"{cell('dsrdiag', 'peak_mib', 'm')} | {cell('tshark', 'wall_s', 's')} | {cell('tshark', 'peak_mib', 'm')} | "
                     f"{cell('tcpdump', 'wall_s', 's')} | {cell('tcpdump', 'peak_mib', 'm')} | "
                     f"{'-' if xt is None else f'{xt:.2f}x faster' if xt >= 1 else f'{1 / xt:.2f}x slower'} | "
                     f"{'-' if xd is None else f'{xd:.2f}x slower' if xd >= 1 else f'{1 / xd:.2f}x faster'} |")
    return "\n".join(lines)


def targets(report: dict) -> list[tuple[str, str, bool | None]]:
    """(target, what was measured, PASS True / FAIL False / None: not measured) for issue 14's targets."""
    cs = report["cases"]
    out = []

    def d(name):
        return cs[name]["tools"]["dsrdiag"] if name in cs else None

    for name, c in cs.items():
        xt, _ = ratios(c["tools"])
        if "tshark" in c["tools"]:
            need = 8.0 if c.get("shape", name.split()[0]) == "relay" else 3.0  # the relay in every format
            dd, tt = c["tools"]["dsrdiag"], c["tools"]["tshark"]
            if xt is not None:
                out.append((f"{name}: >= {need:g}x faster than tshark", f"{xt:.2f}x", xt >= need))
            elif not dd["ok"] and tt["ok"]:  # dsrdiag killed: its time is a lower bound, the ratio an upper one
                bound = tt["wall_s"] / dd["wall_s"]
                out.append((f"{name}: >= {need:g}x faster than tshark", f"< {bound:.2f}x ({dd['note']})", False if bound < need else None))
            else:
                out.append((f"{name}: >= {need:g}x faster than tshark", "tshark failed", None))
    for name, c in cs.items():
        v = c["tools"]["dsrdiag"]
        over = v["peak_mib"] > 256
        out.append((f"{name}: peak <= 256 MiB", f"{v['peak_mib']:,.0f} MiB" + ("" if v["ok"] else f" when {v['note']}"),
                    not over if v["ok"] else (False if over else None)))
    if d("relay pcap") and d("relay pcapng"):
        q = d("relay pcapng")["wall_s"] / d("relay pcap")["wall_s"]
        out.append(("pcapng within 1.3x of classic pcap", f"{q:.2f}x", d("relay pcapng")["ok"] and q <= 1.3))
    def linear(base, more):
        n = cs[more]["count"] / cs[base]["count"]
        q = d(more)["wall_s"] / d(base)["wall_s"]
        # a run killed at the timeout only shows a lower bound: a FAIL if that is already past the bound
        ok = q <= 1.1 * n if d(more)["ok"] else (False if q > 1.1 * n else None)
        shown = f"{q:.2f}x" if d(more)["ok"] else f"> {q:.2f}x ({d(more)['note']})"
        out.append((f"{more} / {base}: {n:g}x the connections in <= {1.1 * n:.1f}x the time", shown, ok))

    for base, two, ten in (("sessions 1x", "sessions 2x", "sessions 10x"), ("syn 1x", "syn 2x", None)):
        if d(base) and d(two):
            linear(base, two)
        if ten and d(base) and d(ten):
            linear(base, ten)
            m = d(ten)["peak_mib"] / d(base)["peak_mib"]
            out.append((f"{ten} / {base}: memory flat (<= 1.25x)", f"{d(base)['peak_mib']:,.0f} -> {d(ten)['peak_mib']:,.0f} MiB",
                        (m <= 1.25) if d(ten)["ok"] else (False if m > 1.25 else None)))
    if d("hash-random"):
        for h in ("hash-xorshift", "hash-modulo"):
            if d(h):
                q = d(h)["wall_s"] / d("hash-random")["wall_s"]
                out.append((f"{h}: chosen addresses within 1.5x of random ones", f"{q:.2f}x", d(h)["ok"] and q <= 1.5))
    return out


def targets_table(ts) -> str:
    lines = ["| target | measured | result |", "| --- | --- | --- |"]
    for t, m, ok in ts:
        lines.append(f"| {t} | {m} | {'not measured' if ok is None else '**PASS**' if ok else '**FAIL**'} |")
    return "\n".join(lines)


def markdown(report: dict, ts) -> str:
    return (f"Measured {report['started']} ({'quick: counts / 10' if report['quick'] else 'full'}, median of {report['runs']} runs, "
            f"tools alternating): {report['machine']}\n\n{table(report)}\n\n{targets_table(ts)}\n")


def parallel(a, report, relay: Path, runs: int) -> None:
    """Two equal files (a hard link) with --jobs 2 against --jobs 1 (issue 7's figure)."""
    twin = relay.with_name(relay.stem + "-twin.pcap")
    if not twin.exists():
        os.link(relay, twin)
    cmd = [sys.executable, "-m", "dsrdiag", "analyze", str(relay), str(twin), "-f", "json"]
    one = min(run(cmd + ["--jobs", "1"], a.timeout, a.mem_cap, (0, 1)).wall for _ in range(runs))
    two = min(run(cmd + ["--jobs", "2"], a.timeout, a.mem_cap, (0, 1)).wall for _ in range(runs))
    report["parallel"] = {"jobs1_s": round(one, 3), "jobs2_s": round(two, 3), "ratio": round(two / one, 3)}
    print(f"\ntwo equal relay files: --jobs 1 {one:.2f} s, --jobs 2 {two:.2f} s: ratio {two / one:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="every count divided by 10 (a few minutes)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", action="append", help="run the cases whose name contains this (repeatable)")
    ap.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / "out")
    ap.add_argument("--slow", type=float, default=60.0, help="a tool whose first run takes longer runs that case once")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds before a run is killed")
    ap.add_argument("--mem-cap", type=int, default=8 << 30, help="address-space limit of every child, bytes")
    ap.add_argument("--parallel", action="store_true", help="also two equal relay files, --jobs 2 against --jobs 1")
    ap.add_argument("--packets", type=int, action="append",
                    help="only the relay in classic pcap, at this many packets (repeatable): the figures before issue 14")
    ap.add_argument("--no-parallel", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for old commands
    ap.add_argument("--from", dest="from_json", type=Path, action="append",
                    help="print the tables and targets of earlier runs' results (repeatable: their cases merged, in order)")
    ap.add_argument("--name", default=None, help="results file stem in --dir (default results, results-quick)")
    ap.add_argument("--resume", action="store_true", help="keep the cases already in the results file and run the rest")
    a = ap.parse_args()
    if a.from_json:
        report = None
        for f in a.from_json:
            r = json.loads(f.read_text())
            if report is None:
                report = r
            else:
                report["cases"].update(r["cases"])
        print(markdown(report, targets(report)))
        return
    scale = 10 if a.quick else 1
    if a.packets:
        todo = [{"name": f"relay pcap {n:,}", "shape": "relay", "count": n, "format": "pcap"} for n in a.packets]
    else:
        todo = [c for c in cases(scale) if not a.only or any(o in c["name"] for o in a.only)]
    if not a.quick and not a.packets and not a.only:
        print("full run: about 60 minutes on 2 busy cores with main's engine of 2026-12-01 (runs past --timeout are killed; "
              "generating the ~5 GB of captures the first time adds ~5 min)")
    a.dir.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "quick": a.quick, "runs": a.runs, "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "cases": {}}
    print(f"machine: {report['machine']}")
    report["bytecode"] = bytecode()
    print(report["bytecode"])
    stem = a.dir / (a.name or ("results-quick" if a.quick else "results"))
    if a.resume and stem.with_suffix(".json").exists():
        report["cases"] = json.loads(stem.with_suffix(".json").read_text())["cases"]
    for c in todo:
        if c["name"] in report["cases"]:
            continue
        path = a.dir / file_name(c["shape"], c["count"], c["format"])
        meta_path = path.with_name(path.name + ".json")
        if not path.exists() or not meta_path.exists():
            t0 = time.perf_counter()
            generate(path, c["shape"], c["count"], c["format"])
            print(f"generated {path.name} in {time.perf_counter() - t0:.0f} s")
        meta = json.loads(meta_path.read_text())
        r = bench_case(path, meta["packets"], a.runs, a, c.get("tshark", True))
        report["cases"][c["name"]] = {"file": path.name, "shape": c["shape"], "packets": meta["packets"], "bytes": meta["bytes"],
                                      "count": c["count"], "tools": r}
        d = r["dsrdiag"]
        xt, xd = ratios(r)
        print(f"{c['name']:14} {meta['packets']:>11,} packets: dsrdiag {d['wall_s']:.2f} s {d['peak_mib']:.0f} MiB {d['note']}"
              + (f"; tshark {r['tshark']['wall_s']:.2f} s {r['tshark']['note']}" if "tshark" in r else "")
              + (f"; tcpdump {r['tcpdump']['wall_s']:.2f} s" if "tcpdump" in r else "")
              + (f"; {xt:.2f}x tshark" if xt else "") + (f", {xd:.2f}x tcpdump" if xd else ""), flush=True)
        stem.with_suffix(".json").write_text(json.dumps(report, indent=2))  # after every case: a long run killed keeps its figures
    if a.parallel:
        relay = a.dir / file_name("relay", M // scale, "pcap")
        if relay.exists():
            parallel(a, report, relay, a.runs)
    ts = targets(report)
    report["targets"] = [{"target": t, "measured": m, "pass": ok} for t, m, ok in ts]
    md = markdown(report, ts)
    print("\n" + md)
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2))
    stem.with_suffix(".md").write_text(md)


if __name__ == "__main__":
    main()
