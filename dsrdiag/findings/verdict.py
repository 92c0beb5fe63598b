"""Findings -> verdict (healthy, or N problems) and whether --fail-on is reached.

Why here and not in the CLI: the verdict is a judgement; the CLI only turns it into an exit code.
Information findings (PROXY header, XCLIENT) are facts, not problems: they never make a site unhealthy.
"""

from __future__ import annotations

from dataclasses import dataclass

from dsrdiag.findings.finding import SEVERITY_RANK, WARNING, Finding, plural

FAIL_ON_CHOICES = ("error", "warning", "info", "never")


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    problems: int
    errors: int
    warnings: int
    infos: int
    text: str


def verdict(findings: list[Finding]) -> Verdict:
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = sum(1 for f in findings if f.severity == "warning")
    infos = sum(1 for f in findings if f.severity == "info")
    problems = errors + warnings
    if problems == 0:
        text = "healthy: no DSR problem found"
    else:
        text = f"{plural(problems, 'problem')} found ({plural(errors, 'error')}, {plural(warnings, 'warning')})"
    return Verdict(problems == 0, problems, errors, warnings, infos, text)


def fails(findings: list[Finding], fail_on: str) -> bool:
    if fail_on == "never":
        return False
    floor = SEVERITY_RANK[fail_on]
    return any(SEVERITY_RANK[f.severity] >= floor for f in findings)


__all__ = ["Verdict", "verdict", "fails", "FAIL_ON_CHOICES", "WARNING"]
