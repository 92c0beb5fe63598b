"""Report -> a JUnit XML report (the Ant/Surefire form Jenkins, GitLab, GitHub and Azure read).

Why: a CI job that runs `dsrdiag analyze` (or probe, hostcheck) as a gate gets one exit code; its
CI system shows per check what passed and what failed only from a JUnit report. So each check
is a test case, stable from run to run (the same names whatever the captures show, so a CI's
history of a check means something):

- one per finding kind the command judges and per back-end (`classname` dsrdiag.<command>.<kind>,
  `name` the back-end), and one per kind for what is about no back-end (`name` "site": a VIP
  claimed by several MACs, a firewall's drop between two vantages); hostcheck's one back-end is
  the host it read, and every setting check is about it;
- one per capture (read whole, or damaged: a JUnit `error`, as exit 3 is an input problem, not
  a DSR fault), and one for the verdict.

Outcomes follow the exit code exactly: a finding at or above --fail-on is a `failure` (with its
summary, its evidence frames and the display filter and tshark command for each capture), so a
report has failures exactly when the run exits 1; a finding below --fail-on passes, its summary
in system-out. Inconclusive (exit 4: nothing could be judged) makes every check `skipped` with
the reason: neither passed (nothing was shown to work) nor failed (no fault was found). A kind
that needs captures from several vantages (scope path) is skipped, with that reason, when only
one vantage was analysed. docs/junit.md says all of it.
"""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET

from dsrdiag import __version__
from dsrdiag.core.safetext import terminal
from dsrdiag.findings.catalog import CATALOG
from dsrdiag.findings.finding import SEVERITY_RANK
from dsrdiag.findings.kind import CAPTURE, HOST, PATH, PROBE
from dsrdiag.report.wireshark import per_capture, tshark_command

SCOPES = {"analyze": (CAPTURE, PATH), "probe": (PROBE, CAPTURE), "hostcheck": (HOST,)}
"""The kinds each command judges, by the scope the kind declares (findings/kind.py)."""
SITE = "site"
"""The test case of a kind for what is about no back-end."""


def _clean(s) -> str:
    """Text XML 1.0 can carry: control and undecodable characters shown as escapes, line by line
    (packet text is untrusted: a banner can hold anything)."""
    return "\n".join(terminal(line) for line in str(s).split("\n"))


def command_of(report) -> str:
    return "hostcheck" if report.host is not None else "probe" if report.probe is not None else "analyze"


def _backend_label(b) -> str:
    """The back-end's name only (its banner host, given name or address): a test case's name must
    not change with what else a run could infer (its address, seen in one run and not the next)."""
    return b.name


def host_name(report) -> str:
    """hostcheck's one back-end: the host it read."""
    h = report.host
    return (h.hostname if h is not None and h.hostname else None) or "host"


def _targets(report) -> list[tuple[str, str]]:
    """Every back-end the report knows (given, inferred, served connections, named by a finding),
    in a stable order; for hostcheck, the host itself when no finding names it."""
    names: dict[str, str] = {}
    for b in report.topology.backends:
        names.setdefault(b.name, _backend_label(b))
    for row in report.backends:
        names.setdefault(row.backend.name, _backend_label(row.backend))
    for f in report.findings:
        if f.backend is not None:
            names.setdefault(f.backend.name, _backend_label(f.backend))
    return [(k, names[k]) for k in sorted(names)]


def _failure_text(f) -> str:
    e = CATALOG[f.kind]
    lines = [f.summary, "", f"finding {f.id} ({f.severity}): {e.title}",
             "seen at: " + ", ".join(f.vantages) + (f" (between {f.between[0]} and {f.between[1]})" if f.between else "")]
    if f.explained_by:
        lines.append(f"explained by finding {f.explained_by}: fix that first")
    for x in f.evidence:
        frame = getattr(x, "frame", None)
        if frame is not None:
            lines.append(f"  {x.vantage} frame {frame}: {x.what}")
        else:
            lines.append(f"  {x.source}" + (f":{x.line}" if x.line else "") + f": {x.text}")
    for cap, van, flt in per_capture(f.evidence):
        lines.append(f"display filter ({van}): {flt}")
        lines.append("  " + tshark_command(cap, flt))
    return "\n".join(lines)


class _Suite:
    def __init__(self, name: str):
        self.el = ET.Element("testsuite", name=name)
        self.tests = self.failures = self.errors = self.skipped = 0

    def case(self, classname: str, name: str, failures=(), error=None, skipped=None, out=()) -> None:
        c = ET.SubElement(self.el, "testcase", classname=classname, name=_clean(name), time="0")
        self.tests += 1
        if failures:
            self.failures += 1
            x = ET.SubElement(c, "failure", type=failures[0].kind, message=_clean(failures[0].summary if len(failures) == 1
                                                                                else f"{len(failures)} findings: " + "; ".join(f.summary for f in failures)))
            x.text = _clean("\n\n".join(_failure_text(f) for f in failures))
        elif error is not None:
            self.errors += 1
            ET.SubElement(c, "error", type=error[0], message=_clean(error[1])).text = _clean(error[1])
        elif skipped is not None:
            self.skipped += 1
            ET.SubElement(c, "skipped", message=_clean(skipped))
        if out:
            ET.SubElement(c, "system-out").text = _clean("\n".join(out))


def build(report, fail_on: str = "error", command: str | None = None, started: float | None = None,
          elapsed: float | None = None) -> ET.Element:
    """The <testsuites> element for one run. `report`'s verdict must be the one for `fail_on`
    (cli/main.py's _emit re-decides it). `started`/`elapsed`: the run's wall clock (time.time()
    at the start, seconds), for the suite's timestamp and time."""
    command = command or command_of(report)
    floor = None if fail_on == "never" else SEVERITY_RANK[fail_on]
    v = report.verdict
    inconclusive = v.state == "inconclusive"
    correlated = report.correlation is not None
    suite = _Suite(f"dsrdiag {command}")
    props = ET.SubElement(suite.el, "properties")
    for k, val in (("dsrdiag.version", __version__), ("report.version", report.version), ("verdict", v.state),
                   ("verdict.text", v.text), ("fail_on", fail_on)):
        ET.SubElement(props, "property", name=k, value=_clean(val))

    for c in report.captures:
        out = [f"{c.path}: {c.frames} frames, {c.analysed} analysed, {c.connections} connections"]
        suite.case(f"dsrdiag.{command}.capture", c.vantage, error=("damaged", f"{c.path}: {c.damage}") if c.damage else None,
                   out=out)

    targets = _targets(report)
    kinds = sorted(k for k, e in CATALOG.items() if e.scope in SCOPES[command])
    for kind in kinds:
        scope = CATALOG[kind].scope
        found = [f for f in report.findings if f.kind == kind]
        if command == "hostcheck":  # one host, every setting of it: no "site" beside it
            per_target = [(host_name(report), found)]
        else:
            per_target = [(label, [f for f in found if (f.backend.name if f.backend is not None else None) == key])
                          for key, label in targets + [(None, SITE)]]
        for target, mine in per_target:
            failing = [f for f in mine if floor is not None and SEVERITY_RANK[f.severity] >= floor]
            out = [f"{f.severity} below --fail-on {fail_on}: {f.summary}" for f in mine if f not in failing]
            skipped = None
            if not failing:
                if inconclusive:
                    skipped = v.text
                elif scope == PATH and not correlated:
                    skipped = "judged only from captures taken at two or more places on the path, analysed together"
            suite.case(f"dsrdiag.{command}.{kind}", target, failures=failing, skipped=skipped, out=out)

    verdict_fails = floor is not None and v.state == "broken"
    suite.case(f"dsrdiag.{command}.verdict", "verdict", skipped=v.text if inconclusive else None,
               failures=tuple(f for f in report.findings if f.id in v.causes) if verdict_fails else (),
               out=[v.text])

    started = time.time() if started is None else started
    el = suite.el
    el.set("tests", str(suite.tests))
    el.set("failures", str(suite.failures))
    el.set("errors", str(suite.errors))
    el.set("skipped", str(suite.skipped))
    el.set("time", f"{max(elapsed or 0.0, 0.0):.3f}")
    el.set("timestamp", time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(started)))
    el.set("hostname", _clean(socket.gethostname()))
    root = ET.Element("testsuites", name="dsrdiag", tests=el.get("tests"), failures=el.get("failures"),
                      errors=el.get("errors"), time=el.get("time"))
    root.append(el)
    return root


def render(report, fail_on: str = "error", command: str | None = None, started: float | None = None,
           elapsed: float | None = None) -> str:
    root = build(report, fail_on, command, started, elapsed)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write_file(path: str, report, fail_on: str = "error", command: str | None = None, started: float | None = None,
               elapsed: float | None = None) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(report, fail_on, command, started, elapsed))
