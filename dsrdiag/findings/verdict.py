"""Findings + what was judged -> the verdict: healthy, broken or inconclusive, the causes first.

Why here and not in the CLI: the verdict is a judgement; the CLI only turns it into an exit code.
Why `inconclusive`: a gate that says "healthy" for an empty capture, a wrong --vip or the wrong
port passes a site nobody looked at. The verdict is healthy only when a VIP is known, connections
to it were seen and judged, and every one of them completed; when there was nothing to judge, or
connections failed that no finding explains, it is inconclusive and says what was seen instead,
so the user can correct the question.
Information findings (PROXY header, XCLIENT) are facts, not problems: they never make a site broken.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dsrdiag.findings.causes import causes as root_causes
from dsrdiag.findings.finding import SEVERITY_RANK, WARNING, Finding, plural

FAIL_ON_CHOICES = ("error", "warning", "info", "never")
HEALTHY, BROKEN, INCONCLUSIVE = "healthy", "broken", "inconclusive"


@dataclass(frozen=True)
class Judged:
    """What the analysis had to judge: the facts an honest verdict needs besides the findings.

    Connections are counted once however many vantages saw them (by flow key)."""

    packets: int = 0
    """Frames in every capture."""
    analysed: int = 0
    """... of which on the service ports (or ARP/NDP): what the analysis read."""
    vips: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    service: int = 0
    """Connections to a VIP on a service port."""
    completed: int = 0
    """... of which the handshake completed."""
    why_not: tuple[str, ...] = ()
    """Why the connections seen could not show an outcome (e.g. the LB's own interface)."""
    hints: tuple[str, ...] = ()
    """What was seen instead, when there was nothing to judge ("TCP to 192.0.2.25:587 seen: try --port 587")."""
    set_apart: int = 0
    """Attempts of a SYN flood or scan to a VIP (findings/kinds/syn_flood_or_scan.py): not clients,
    left out of `service` (its finding counts them)."""
    lb_mode: str = ""
    """Topology.lb_mode: "nat" or "proxy" when the load balancer was seen rewriting, never forwarding (no DSR at all)."""

    @property
    def failed(self) -> int:
        return self.service - self.completed


@dataclass(frozen=True)
class Verdict:
    state: str
    """healthy | broken | inconclusive"""
    causes: tuple[str, ...]
    """ids of the root-cause findings (at or above --fail-on), most severe first."""
    text: str
    errors: int
    warnings: int
    infos: int
    connections: int = 0
    completed: int = 0
    failed: int = 0
    hints: tuple[str, ...] = field(default=())

    @property
    def healthy(self) -> bool:
        return self.state == HEALTHY

    @property
    def problems(self) -> int:
        return self.errors + self.warnings


def _ports(ports) -> str:
    """`port 25`, `ports 25 or 587`: a verdict names the ports it looked at."""
    ps = [str(p) for p in ports]
    return f"port {ps[0]}" if len(ps) == 1 else "ports " + ", ".join(ps[:-1]) + " or " + ps[-1]

def _floor(fail_on: str) -> int:
    """What counts as a cause: findings at or above --fail-on (`never` judges at error and only
    keeps the exit code at 0)."""
    return SEVERITY_RANK.get(fail_on, SEVERITY_RANK["error"])


def _cause_text(f: Finding, titles) -> str:
    b = f.backend
    who = ""
    if b is not None:
        who = b.name + (f" ({b.ip})" if b.ip and b.ip != b.name else "") + ": "
    where = f" between {f.between[0]} and {f.between[1]}" if f.between else ""
    return f"{who}{titles(f.kind)}{where}"


def verdict(findings: list[Finding], judged: Judged | None = None, fail_on: str = "error", titles=None) -> Verdict:
    """`titles(kind)`: a short title per kind for the text (the catalogue's)."""
    titles = titles or (lambda k: k.replace("_", " "))
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = sum(1 for f in findings if f.severity == "warning")
    infos = sum(1 for f in findings if f.severity == "info")
    floor = _floor(fail_on)
    cs = root_causes(findings, floor)
    if not cs:  # every finding at the floor is explained by one below it: name those
        by_id = {f.id: f for f in findings}
        cs = list({f.explained_by: by_id[f.explained_by] for f in findings
                   if f.rank >= floor and f.explained_by in by_id}.values())
    cs = sorted(cs, key=Finding.sort_key)
    j = judged or Judged()
    counts = ""
    if j.service:
        counts = (f"{j.failed} of {plural(j.service, 'connection')} failed" if j.failed
                  else "the connection completed" if j.service == 1 else "both connections completed" if j.service == 2
                  else f"all {j.service} connections completed")
        if j.set_apart:
            counts += f"; {plural(j.set_apart, 'attempt')} of a SYN flood or scan set apart"
    if cs:
        state = BROKEN
        text = "BROKEN - " + "; ".join(_cause_text(f, titles) for f in cs[:3])
        if len(cs) > 3:
            text += f"; and {len(cs) - 3} more"
        if j.failed:
            text += f" ({counts})"
    elif judged is not None and (j.service == 0 or j.completed == 0 or not j.vips or j.failed):
        state = INCONCLUSIVE
        if j.packets == 0:
            why = "the captures hold no packets"
        elif j.analysed == 0:
            why = (("the one packet is not" if j.packets == 1 else f"none of the {plural(j.packets, 'packet')} is")
                   + f" TCP on {_ports(j.ports)}, ARP or NDP")
        elif not j.vips and j.hints and j.hints[0].startswith("every connection to"):
            why = "no VIP could be determined"
        elif not j.vips:
            why = f"no client connection on {_ports(j.ports)} was seen, so no VIP could be determined"
        elif j.service == 0 and j.set_apart:
            why = (f"only a SYN flood or scan reached " + " or ".join(j.vips) + f" on {_ports(j.ports)}"
                   + f" ({plural(j.set_apart, 'attempt')}, set apart): "
                   "no client connection to judge")
        elif j.service == 0:
            why = "no connection to " + " or ".join(j.vips) + f" on {_ports(j.ports)} was seen"
        elif j.completed == 0:
            why = f"none of the {plural(j.service, 'connection')} to the service could be seen to complete"
        else:  # failures that no finding explains: not healthy, and no fault to name
            why = (f"{j.failed} of {plural(j.service, 'connection')} failed and no finding explains them "
                   "(the back-end table says how each ended)")
        text = "INCONCLUSIVE - " + why
        extra = list(j.why_not) + list(j.hints)
        if extra:
            text += ": " + "; ".join(extra)
    else:
        state = HEALTHY
        if j.lb_mode == "nat":  # it works, but it is not what the user set out to prove
            text = ("HEALTHY - the service works, but not by DSR: the load balancer NATs the connections to the "
                    "back-ends' own addresses and their replies return through it")
        elif j.lb_mode == "proxy":
            text = ("HEALTHY - the service works, but not by DSR: the load balancer opens the connections to the "
                    "back-ends from its own address (SNAT or a proxy) and their replies return through it")
        else:
            text = "HEALTHY - no DSR problem found"
        if counts:
            text += f" ({counts})"
        below = errors + warnings
        if below:
            text += f"; {plural(below, 'finding')} below --fail-on {fail_on}"
    return Verdict(state, tuple(f.id for f in cs), text, errors, warnings, infos,
                   j.service, j.completed, j.failed, tuple(j.hints))


def fails(findings: list[Finding], fail_on: str) -> bool:
    if fail_on == "never":
        return False
    floor = SEVERITY_RANK[fail_on]
    return any(SEVERITY_RANK[f.severity] >= floor for f in findings)


__all__ = ["Verdict", "Judged", "verdict", "fails", "FAIL_ON_CHOICES", "WARNING", "HEALTHY", "BROKEN", "INCONCLUSIVE"]
