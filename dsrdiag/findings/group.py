"""Group the same fault seen from several vantages into one finding, with all the evidence.

Why: with captures at the client, both firewall legs and a back-end, one back-end answering from
its real address shows up once per capture that saw it. The user has one fault to fix; the report
should say so once, and keep every vantage's frames as proof.

Same fault: same kind, severity, back-end and subject, and (when they name connections) at least
one connection in common, connections being compared by client address, port and service port
(their uids are per capture).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import replace

from dsrdiag.findings.finding import Finding


def group_across_vantages(findings: list[Finding], conn_key: dict[str, tuple], order: dict[str, tuple]) -> list[Finding]:
    """`conn_key`: uid -> (client address, port, service port) of every connection (judge's shared
    pass collects it: a pass of its own would unpickle every spilled record once more)."""
    buckets: dict[tuple, list[Finding]] = defaultdict(list)
    for f in findings:
        b = f.backend
        buckets[(f.kind, f.severity, (b.mac, b.ip) if b else None, f.subject, f.between)].append(f)
    out = []
    for group in buckets.values():
        # union of findings that share a connection (or name none): one fault each
        sets: list[tuple[set, list[Finding]]] = []
        for f in group:
            keys = {conn_key.get(u, u) for u in f.connections}
            joined = [s for s in sets if (s[0] & keys) or (not keys and not s[0])]
            merged_keys, merged = set(keys), [f]
            for s in joined:
                merged_keys |= s[0]
                merged += s[1]
                sets.remove(s)
            sets.append((merged_keys, merged))
        for _, fs in sets:
            out.append(fs[0] if len(fs) == 1 else _merge(fs, order))
    return sorted(out, key=Finding.sort_key)


def _merge(fs: list[Finding], order: dict[str, tuple]) -> Finding:
    """One finding with every vantage (in path order) and all their evidence; the summary stays the
    first vantage's own sentence (presenters say where else it was seen, from `vantages`)."""
    fs = sorted(fs, key=lambda f: order.get(f.vantage, (99, 0)))
    vantages = tuple(dict.fromkeys(v for f in fs for v in f.vantages))
    first = fs[0]
    evidence = tuple(sorted({e for f in fs for e in f.evidence}))
    connections = tuple(sorted({c for f in fs for c in f.connections}))
    return replace(first, vantages=vantages, evidence=evidence, connections=connections)
