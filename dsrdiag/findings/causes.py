"""Root cause first: give every finding a stable id and link each symptom to the fault that causes it.

Reads: the findings of every vantage (grouped across vantages, correlated ones included) and the
flow key of every connection they name. Produces: the same findings with `id`, `explained_by`
and `consequences` set.

Why: one back-end answering from its real address shows up as a wrong-source reply at the
server LAN, a firewall drop between the firewall's legs, unanswered SYNs at the client and a
one-way view at the load balancer. The user has one thing to fix; the report must say which
finding is the cause and which are its consequences, the way an engineer reads the captures.

How (the general rule, not the cases): each kind names the kinds that can cause it (CAUSED_BY,
in order of preference). A symptom is explained by a cause when they concern the same
connections (flow keys: client address, port, service port: uids are per capture), or, for
findings about an address rather than connections (ARP/NDP claims), the same subject; a kind about
a whole service that counts its connections instead of listing them (WHOLE_SERVICE: a flood)
explains the symptoms with its subject at its vantages. A cause
must stand strictly earlier in PRECEDENCE than its symptom, so links never form a cycle; within
one kind, a finding about a segment of the path (a bypass seen by correlating both firewall
legs) explains the per-vantage findings of that kind on the same connections.

A symptom seen at the same vantages as its cause, on the cause's own connections, is the cause
seen again and is folded into it: rules never silence each other, this one rule does it for all of
them. Findings about an address (ARP/NDP claims) are kept beside their cause: how many MACs claim
the VIP says more than the leak alone.

Ids: like a Zeek notice's identifier, from what makes the fault the same fault: kind, vantages,
segment, the back-end's MAC (its address when no MAC is known: an inferred address, like an
inferred name, depends on what else was captured) and subject. The same captures give the same ids in every run.
"""

from __future__ import annotations

from dataclasses import replace

from dsrdiag.findings.finding import Finding

PRECEDENCE = (
    "return_source_not_vip",
    "vip_not_on_backend",
    "connection_refused",
    "arp_reply_for_vip_from_backend",
    "snat_client_ip_lost",
    "lb_mode_mixed",
    "capture_one_sided",
    "asymmetric_flow",
    "vip_claimed_by_several_macs",
    "firewall_drop",
    "syn_flood_or_scan",
    "syn_unanswered",
    "sessions_failed",
)
"""Kinds in causal order: a finding can only be explained by one of a kind listed before its own."""

CAUSED_BY: dict[str, tuple[str, ...]] = {
    "firewall_drop": ("return_source_not_vip", "asymmetric_flow"),
    "syn_unanswered": ("return_source_not_vip", "vip_not_on_backend", "asymmetric_flow", "firewall_drop",
                       "syn_flood_or_scan"),
    "asymmetric_flow": ("capture_one_sided", "return_source_not_vip", "asymmetric_flow"),
    "vip_claimed_by_several_macs": ("arp_reply_for_vip_from_backend",),
    "sessions_failed": ("return_source_not_vip", "vip_not_on_backend", "connection_refused",
                        "arp_reply_for_vip_from_backend", "asymmetric_flow", "firewall_drop", "syn_flood_or_scan",
                        "syn_unanswered"),
}
"""symptom kind -> the kinds that can cause it, most specific first."""

_RANK = {k: i for i, k in enumerate(PRECEDENCE)}

WHOLE_SERVICE = ("syn_flood_or_scan",)
"""Kinds about a service (address:port) as a whole that count the connections they stand for
instead of listing them (a flood's million attempts): they explain the symptoms with the same
subject seen at one of their vantages, whichever connections those name."""


def identify(f: Finding) -> str:
    b = f.backend
    basis = "|".join((
        f.kind, ",".join(sorted(f.vantages)), "->".join(f.between or ()),
        ((b.mac or b.ip or "") if b else ""), f.subject,
    ))
    from hashlib import sha1  # here: loading OpenSSL is most of hashlib's import, and many runs name no finding

    return "F" + sha1(basis.encode("utf-8", "surrogateescape")).hexdigest()[:10]


def _can_explain(cause: Finding, symptom: Finding) -> bool:
    if cause is symptom or cause.kind not in CAUSED_BY.get(symptom.kind, ()):
        return False
    rc, rs = _RANK.get(cause.kind, len(_RANK)), _RANK.get(symptom.kind, len(_RANK))
    if cause.kind == symptom.kind:
        return cause.between is not None and symptom.between is None
    return rc < rs


def link(findings: list[Finding], conn_key: dict[str, tuple]) -> list[Finding]:
    """Ids, explained_by and consequences for every finding. `conn_key`: uid -> flow key of every
    connection the findings name (a uid missing there stands for itself)."""
    ids: dict[int, str] = {}
    used: dict[str, int] = {}
    for i, f in enumerate(findings):
        base = identify(f)
        n = used.get(base, 0) + 1
        used[base] = n
        ids[i] = base if n == 1 else f"{base}-{n}"
    keys = [frozenset(conn_key.get(u, u) for u in f.connections) for f in findings]
    cause_of: dict[int, int] = {}
    for s, sym in enumerate(findings):
        best = None
        for c, cause in enumerate(findings):
            if not _can_explain(cause, sym):
                continue
            if cause.kind in WHOLE_SERVICE:
                if cause.subject != sym.subject or not set(cause.vantages) & set(sym.vantages):
                    continue
                shared = 0
            elif keys[s] or keys[c]:
                shared = len(keys[s] & keys[c])
                if not shared:
                    continue
            elif cause.subject != sym.subject:
                continue
            else:
                shared = 0
            pref = CAUSED_BY[sym.kind].index(cause.kind)
            rank = (pref, cause.between is None, -shared, ids[c])
            if best is None or rank < best[0]:
                best = (rank, c)
        if best is not None:
            cause_of[s] = best[1]
    # a cause explained in turn (a drop caused by a wrong source): the symptom points at the root
    def root(i: int) -> int:
        seen = set()
        while i in cause_of and i not in seen:
            seen.add(i)
            i = cause_of[i]
        return i

    # a symptom seen where its cause was seen, on the cause's own connections, adds nothing: it is
    # the cause seen again (the client->VIP half of a wrong-source pair, the unanswered SYNs of the
    # back-end without the VIP); it is folded into the cause instead of reported beside it
    folded = set()
    for s, c in cause_of.items():
        r = root(s)
        sym = findings[s]
        # the probe's failed sessions, explained by a finding of the probe's own capture, are that
        # finding seen from the sessions' side (the verdict keeps their count)
        own_sessions = sym.kind == "sessions_failed" and set(sym.vantages) <= set(findings[r].vantages)
        if own_sessions or (keys[s] and set(sym.vantages) <= set(findings[r].vantages) and keys[s] <= keys[r]
                            and sym.between is None):
            folded.add(s)
    out = []
    for i, f in enumerate(findings):
        if i in folded:
            continue
        expl = ids[root(i)] if i in cause_of else None
        cons = tuple(sorted(ids[s] for s in cause_of if root(s) == i and s != i and s not in folded))
        out.append(replace(f, id=ids[i], explained_by=expl, consequences=cons,
                           connections=tuple(dict.fromkeys(f.connections))))  # each connection named once
    return out


def causes(findings, floor_rank: int) -> list[Finding]:
    """The root causes: findings at or above the floor that nothing explains."""
    return [f for f in findings if f.explained_by is None and f.rank >= floor_rank]
