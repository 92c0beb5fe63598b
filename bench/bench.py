#!/usr/bin/env python3
"""dsrdiag against tshark and tcpdump on the same generated mail-relay capture, in one run.

For each size: generate the capture (bench/gen.py, deterministic, cached), then run, alternating,
several times each:
  dsrdiag analyze FILE --format json      (the full analysis)
  tshark -nr FILE -q -z conv,tcp          (listing TCP conversations only)
  tcpdump -nr FILE -w /dev/null           (a raw libpcap read)
and print the median wall time, packets/s, peak memory (each child's own max RSS, from wait4)
and the ratios. Then two equal files with --jobs 2 against --jobs 1, at every size.
Never a unit test: timings belong here (docs/performance.md holds the figures).

Usage: python bench/bench.py [--packets 1000000 ...] [--runs 3] [--dir bench/out]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gen import generate  # noqa: E402


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and the child's peak RSS in MiB (wait4 gives that process's own rusage)."""
    t0 = time.perf_counter()
    with open(os.devnull, "wb") as null:
        p = subprocess.Popen(cmd, stdout=null, stderr=subprocess.DEVNULL)
        _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):  # dsrdiag exits 1 when it finds problems (the capture has broken sessions)
        raise SystemExit(f"{cmd[0]} failed with exit {code}")
    return wall, ru.ru_maxrss / 1024


def machine() -> str:
    cpu = "?"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def bench(path: Path, packets: int, runs: int) -> dict:
    tools = {
        "dsrdiag": [sys.executable, "-m", "dsrdiag", "analyze", str(path), "--format", "json", "--jobs", "1"],
        "tshark": ["tshark", "-nr", str(path), "-q", "-z", "conv,tcp"],
        "tcpdump": ["tcpdump", "-nr", str(path), "-w", os.devnull],
    }
    tools = {k: v for k, v in tools.items() if shutil.which(v[0]) or k == "dsrdiag"}
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in tools}
    for _ in range(runs):
        for name, cmd in tools.items():  # alternating, so that cache and CPU state are shared fairly
            results[name].append(run(cmd))
    out = {}
    for name, rs in results.items():
        wall = statistics.median(r[0] for r in rs)
        out[name] = {"wall_s": round(wall, 3), "packets_per_s": round(packets / wall), "peak_mib": round(max(r[1] for r in rs), 1),
                     "runs": [round(r[0], 3) for r in rs]}
    return out


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, action="append")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / "out")
    ap.add_argument("--no-parallel", action="store_true")
    a = ap.parse_args()
    sizes = a.packets or [1_000_000]
    a.dir.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "sizes": {}}
    print(f"machine: {report['machine']}")
    report["bytecode"] = bytecode()
    print(report["bytecode"])
    for n in sizes:
        path = a.dir / f"mail-relay-{n}.pcap"
        if not path.exists():
            real = generate(path, n)
            print(f"generated {path} ({real} packets, {path.stat().st_size / 1e6:.0f} MB)")
        r = bench(path, n, a.runs)
        report["sizes"][n] = r
        print(f"\n{n:,} packets, median of {a.runs} runs:")
        print(f"  {'tool':8} {'wall s':>8} {'packets/s':>12} {'peak MiB':>9} {'x tshark':>9} {'x tcpdump':>10}")
        for name, v in r.items():
            xt = r["tshark"]["wall_s"] / v["wall_s"] if "tshark" in r else float("nan")
            xd = v["wall_s"] / r["tcpdump"]["wall_s"] if "tcpdump" in r else float("nan")
            print(f"  {name:8} {v['wall_s']:8.2f} {v['packets_per_s']:12,} {v['peak_mib']:9.1f} {xt:8.2f}x {xd:9.2f}x")
        if "tshark" in r:
            print(f"  dsrdiag is {r['tshark']['wall_s'] / r['dsrdiag']['wall_s']:.2f}x faster than tshark's conv,tcp; "
                  f"{r['dsrdiag']['wall_s'] / r['tcpdump']['wall_s']:.1f}x tcpdump's raw read")
    if not a.no_parallel:
        # two equal files at every size: the fixed costs (start, judging and writing both files'
        # connections) are serial, so the ratio depends on how much of the run is reading
        report["parallel"] = {}
        for n in sizes:
            src = a.dir / f"mail-relay-{n}.pcap"
            twin = a.dir / f"mail-relay-{n}-twin.pcap"
            if not twin.exists():
                os.link(src, twin)
            one = min(run([sys.executable, "-m", "dsrdiag", "analyze", str(src), str(twin), "-f", "json", "--jobs", "1"])[0]
                      for _ in range(a.runs))
            two = min(run([sys.executable, "-m", "dsrdiag", "analyze", str(src), str(twin), "-f", "json", "--jobs", "2"])[0]
                      for _ in range(a.runs))
            report["parallel"][n] = {"jobs1_s": round(one, 3), "jobs2_s": round(two, 3), "ratio": round(two / one, 3)}
            print(f"\ntwo equal files of {n:,} packets: --jobs 1 {one:.2f} s, --jobs 2 {two:.2f} s: ratio {two / one:.2f}")
    (a.dir / "results.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
