"""The hostcheck job: collect (live Linux, live Windows, or saved Windows files) -> checks -> Report.

Why a Report like analyze's: the same findings model, JSON document and exit codes serve both,
so a pipeline gate treats a host check and a capture analysis alike.
"""

from __future__ import annotations

import platform
from pathlib import Path

from dsrdiag.audit import checks, linux, windows
from dsrdiag.audit.snapshot import HostConfig
from dsrdiag.core.errors import UsageError
from dsrdiag.core.topology import Topology
from dsrdiag.findings.catalog import title
from dsrdiag.findings.causes import link
from dsrdiag.findings.verdict import verdict
from dsrdiag.jobs.report_model import HostSummary, Report


def collect(from_files: list[Path], os_name: str | None) -> HostConfig:
    if from_files:
        if os_name == "linux":
            raise UsageError("--from reads saved Windows output; on Linux run hostcheck on the back-end itself")
        return windows.parse_files(from_files)
    system = os_name or platform.system().lower()
    if system == "linux":
        return linux.collect()
    if system == "windows":
        return windows.collect()
    raise UsageError(f"hostcheck reads Linux live or Windows output; this is {platform.system()}: use --from FILE")


def hostcheck(topology: Topology, from_files: list[Path], os_name: str | None = None, gateway: str | None = None) -> Report:
    if len(topology.vips) != 1:
        raise UsageError("hostcheck needs exactly one --vip")
    vip = topology.vips[0]
    host = collect(from_files, os_name)
    findings, notes = checks.check(host, vip.ip, vip.ports[0], gateway)
    summary = HostSummary(
        os=host.os,
        hostname=host.hostname,
        sources=tuple(host.sources),
        interfaces=tuple(
            {"name": i.name, "loopback": i.loopback or windows.is_windows_loopback(i) if host.os == "windows" else i.loopback,
             "addresses": [f"{a.ip}/{a.prefix}" for a in i.addresses],
             "settings": {k: v.value for k, v in sorted(i.settings.items()) if not k.startswith("_")}}
            for i in host.interfaces.values()
        ),
        default_routes=tuple(f"default via {gw} dev {dev}" for gw, dev, _f, _r in host.default_routes),
        listeners=tuple(f"{ip}:{port}" for ip, port, _r in host.listeners),
        cannot_show=tuple(notes),
    )
    findings = link(findings, {})
    return Report(captures=(), topology=topology, connections=(), findings=tuple(findings),
                  verdict=verdict(findings, titles=title), backends=(), host=summary)
