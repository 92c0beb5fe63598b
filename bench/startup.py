"""The fixed cost of a run: what `dsrdiag analyze F --format json` spends before and around its capture.

    python bench/startup.py [--runs 10] [--capture captures/healthy.pcap] [--against OTHER_CHECKOUT]

Why: on small and medium captures the interpreter's start and the imports are most of a run
(docs/performance.md), and weigh against tshark in bench/bench.py's ratios. This says how much,
and where: median wall and CPU time (user + system) of N runs of the interpreter alone, of
`dsrdiag --version` and of `analyze --format json` on a tiny capture (checkouts alternating when
--against names a second one, so that both see the same load); then, in-process, the parts of the
imports: all of them, the dataclasses' generated methods, typer, and building the command line
(with the garbage collector on, whatever the checkout's start-up does).
Every checkout is byte-compiled first, as an installed package is (bench.py's bytecode()). The
minimum of the in-process parts is reported (the least disturbed run); walls are medians.
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_PARTS = """
import dataclasses, sys, time
made = dataclasses._process_class
spent = [0.0]
def timed(cls, *a, **k):
    t = time.perf_counter()
    try:
        return made(cls, *a, **k)
    finally:
        spent[0] += time.perf_counter() - t
dataclasses._process_class = timed
import inspect, re, enum, typing, pathlib, json, datetime, signal  # what any part would import anyway
t0 = time.perf_counter()
import typer
t1 = time.perf_counter()
try:
    import dsrdiag.cli.commands as cli
except ImportError:  # a checkout from before cli/commands.py
    import dsrdiag.cli.main as cli
import dsrdiag.capture.sources, dsrdiag.core.topology, dsrdiag.jobs.analyze, dsrdiag.report.jsondoc
t2 = time.perf_counter()
from typer.main import get_command
get_command(cli.app)
t3 = time.perf_counter()
print((t2 - t0) * 1000, spent[0] * 1000, (t1 - t0) * 1000, (t3 - t2) * 1000)
"""
PARTS = ("imports of analyze --format json (ms)", "of which dataclasses' generated methods (ms)",
         "of which typer (ms)", "building the command line (ms)")


def _timed(cmd: list[str], tree: Path) -> tuple[float, float]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, cwd=str(tree), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10, help="runs of each command (1-100)")
    ap.add_argument("--capture", type=Path, default=ROOT / "captures" / "healthy.pcap")
    ap.add_argument("--against", type=Path, help="another checkout (with its extensions built) to measure alike")
    a = ap.parse_args()
    runs = max(1, min(a.runs, 100))
    trees = [ROOT] + ([a.against.resolve()] if a.against else [])
    for tree in trees:
        compileall.compile_dir(str(tree / "dsrdiag"), quiet=1)
    cap = str(a.capture.resolve())
    commands = {"python -c pass": [sys.executable, "-c", "pass"],
                "dsrdiag --version": [sys.executable, "-m", "dsrdiag", "--version"],
                "analyze --format json": [sys.executable, "-m", "dsrdiag", "analyze", cap, "--format", "json", "--jobs", "1"]}
    got: dict[tuple[Path, str], list[tuple[float, float]]] = {}
    for _ in range(runs):
        for tree in trees:  # alternating: the same load for every checkout
            for name, cmd in commands.items():
                got.setdefault((tree, name), []).append(_timed(cmd, tree))
    print(f"{runs} runs each, {Path(cap).name}, load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| checkout | command | wall (median) | CPU (median) | wall (min) |\n| --- | --- | --- | --- | --- |")
    for (tree, name), v in got.items():
        print(f"| {tree} | {name} | {statistics.median(w for w, _ in v):.3f} s | {statistics.median(c for _, c in v):.3f} s "
              f"| {min(w for w, _ in v):.3f} s |")
    print("\n| checkout | " + " | ".join(PARTS) + " |\n" + "| --- " * (len(PARTS) + 1) + "|")
    for tree in trees:
        rows = []
        for _ in range(runs):
            p = subprocess.run([sys.executable, "-c", _PARTS], cwd=str(tree), env=dict(os.environ, PYTHONPATH=str(tree)),
                               capture_output=True, text=True, timeout=120)
            if p.returncode == 0:
                rows.append([float(x) for x in p.stdout.split()])
        best = [min(r[i] for r in rows) for i in range(len(PARTS))] if rows else ["-"] * len(PARTS)
        print(f"| {tree} | " + " | ".join(f"{x:.1f}" if rows else x for x in best) + " |")


if __name__ == "__main__":
    main()
