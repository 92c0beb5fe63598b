"""Which place on the path each capture was taken at (client, firewall legs, LB, back-end).

The topology file's list first, then the capture's name (`client`, `fw-out`, `be1`...), then its
traffic, so that captures named after their devices (`asa-o=`, `f5=`, `exch1=`) are correlated
like the others (traffic_role). A capture whose place cannot be told is left out of the path
checks, and role_notes() says so and why.

Why a module of its own: deciding whether captures can be correlated at all needs only their
names and facts, and the correlator (paths.py) is ~8 ms of imports that most analyses (one
vantage, or ring files of one place) never use.
"""

from __future__ import annotations

import re

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
    if re.match(r"(be|backend|server|srv|mx)(\d|[-_.]|$)", n):  # be1, backend-2, mx1; not "bench"
        return "be"
    return None


def traffic_role(r: CaptureRecords, topology=None) -> tuple[str | None, str]:
    """A capture's place on the path from its own packets, and why (or why it cannot be told).

    - the load balancer's own interface: it re-sends client frames and sees no reply (DSR);
    - a back-end: client frames to the VIP are addressed to one MAC, and that MAC alone answers,
      with the TTL a host starts with (it sent them here), or it is reached from a load
      balancer's address (SNAT);
    - the server side of the firewall: replies start here (initial TTL), client frames were routed;
    - the client side: client frames start here, replies were routed on the way.
    """
    f = r.facts
    if f.lb_interface:
        return "lb", "it re-sends client frames to the VIP and sees no reply"
    vips = getattr(topology, "vip_ips", frozenset()) or frozenset()
    lb_ips = getattr(topology, "lb_ip_set", frozenset()) or frozenset()
    servers: set = set()
    dsts: set = set()
    for (ip, orig_l2, _fw, resp_l2, ttl_initial, _host), _ in f.paths.items():
        if vips and ip not in vips:
            continue
        dsts |= {d for _, d in orig_l2 if d}
        if ttl_initial:
            servers |= {s for s, _ in resp_l2 if s}
    if len(dsts) == 1 and dsts == servers:
        return "be", f"client frames to the VIP are delivered to {next(iter(dsts))}, which answers them itself"
    if lb_ips and any(c_ip in lb_ips and s_ip not in vips for (s_ip, _, c_ip, *_), _ in f.syn_src.items()):
        return "be", "it receives connections from the load balancer's own address"
    server_side = client_side = 0
    for (ip, _port, orig_hops, resp_hops), (n, _) in f.sides.items():
        if vips and ip not in vips:
            continue
        if resp_hops == 0 and orig_hops:
            server_side += n
        elif resp_hops:
            client_side += n
        elif resp_hops is None and orig_hops == 0:  # only the client's frames, sent on this segment
            client_side += n
    if server_side > client_side:
        return "fw-in", "replies arrive with the TTL they were sent with while client frames were routed: the server side"
    if client_side > server_side:
        return "client", "replies arrive routed (their TTL was decremented) or client frames start here: the client side"
    return None, "neither its packets' TTLs nor its MACs tell which side of the firewall it was taken on"


def role_notes(records: list[CaptureRecords], topology=None) -> list[str]:
    """Where each capture's place on the path came from, when not from its name or the topology
    file, and which checks did not run for captures whose place cannot be told."""
    given = dict(getattr(topology, "vantages", ()) or ())
    out = []
    for r in records:
        if given.get(r.vantage) or role_of(r.vantage):
            continue
        role, why = traffic_role(r, topology)
        if role:
            out.append(f"capture {r.vantage}: taken at the {ROLE_WORDS[role]} ({why}); name it {role}=... or "
                       "list it in the topology file to say otherwise")
        elif len(records) > 1:
            out.append(f"capture {r.vantage}: its place on the path cannot be told ({why}): firewall_drop, "
                       "the bypass check and clock offsets did not use it; name it client=, fw-out=, fw-in=, lb= or be1=")
    return out


ROLE_WORDS = {"client": "client side of the firewall", "fw-out": "firewall's outside leg", "fw": "firewall",
              "fw-in": "server side of the firewall", "lb": "load balancer's own interface", "be": "back-end"}


def vantage_roles(records: list[CaptureRecords], topology=None) -> tuple[dict[str, str | None], dict[str, tuple]]:
    """Role and path position of every vantage: the topology file's list first, then names, then traffic."""
    given = dict(getattr(topology, "vantages", ()) or ())
    listed = [name for name, _ in getattr(topology, "vantages", ()) or ()]
    roles = {r.vantage: given.get(r.vantage) or role_of(r.vantage) or traffic_role(r, topology)[0] for r in records}
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
