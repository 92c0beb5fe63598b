"""Which place on the path each capture was taken at (client, firewall legs, LB, back-end).

Why a module of its own: deciding whether captures can be correlated at all needs only their
names (or the topology file's list), and the correlator (paths.py) is ~8 ms of imports that most
analyses (one vantage, or ring files of one place) never use.
"""

from __future__ import annotations

from dsrdiag.track.records import CaptureRecords

RANK = {"client": 0, "fw-out": 1, "fw": 2, "fw-in": 3, "lb": 4, "be": 5}


def role_of(name: str) -> str | None:
    n = name.lower().replace("_", "-")
    if n.startswith("client") or n in ("cl", "c"):
        return "client"
    if n in ("fw-out", "fwout", "outside", "fw-outside", "firewall-out"):
        return "fw-out"
    if n in ("fw-in", "fwin", "inside", "fw-inside", "firewall-in"):
        return "fw-in"
    if n.startswith("fw") or n.startswith("firewall"):
        return "fw"
    if n.startswith("lb") or n.startswith("loadbalancer"):
        return "lb"
    if n.startswith("be") or n.startswith("backend") or n.startswith("server") or n.startswith("mx"):
        return "be"
    return None


def vantage_roles(records: list[CaptureRecords], topology=None) -> tuple[dict[str, str | None], dict[str, tuple]]:
    """Role and path position of every vantage: the topology file's list first, then names."""
    given = dict(getattr(topology, "vantages", ()) or ())
    listed = [name for name, _ in getattr(topology, "vantages", ()) or ()]
    roles = {r.vantage: given.get(r.vantage) or role_of(r.vantage) for r in records}
    order = {}
    for i, r in enumerate(records):
        role = roles[r.vantage]
        if role:
            pos = listed.index(r.vantage) if r.vantage in listed else len(listed) + i
            order[r.vantage] = (RANK[role], pos)
    return roles, order


def applies(records: list[CaptureRecords], topology=None) -> bool:
    """Would correlate() match anything: are captures from two different places on the path?"""
    roles, _ = vantage_roles(records, topology)
    return len({roles[r.vantage] for r in records if roles[r.vantage]}) >= 2
