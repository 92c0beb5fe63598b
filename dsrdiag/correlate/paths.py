"""Follow each connection vantage by vantage: where each packet was seen, where it was last seen,
and what that means (a firewall drop, a reply that bypassed the firewall); estimate clock offsets.

Reads: CaptureRecords of several vantages (their packet notes: the first packets of every
connection, which is where DSR faults show). Produces: FlowPath records and findings.
Never: reports a drop where the next capture was not running at that time, or for vantages whose
role on the path is unknown (name them client, fw-out, fw-in, lb, be1... or give the order).
Why: an engineer lines these captures up by hand in several Wireshark windows; this does it.

Vantage roles come from names: `client*`, `fw-out`/`outside`, `fw`/`firewall`, `fw-in`/`inside`,
`lb*`, `be*`/`backend*`/`server*`. Requests travel client -> fw-out -> fw-in -> lb -> the serving
back-end; replies travel back from the back-end and skip the LB unless the LB saw replies of that
connection (NAT modes).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass

from dsrdiag.core.evidence import FrameRef
from dsrdiag.findings.finding import ERROR, MAX_EVIDENCE, Finding, plural
from dsrdiag.track.conn import MAX_NOTES
from dsrdiag.track.records import ORIG, RESP, CaptureRecords

RANK = {"client": 0, "fw-out": 1, "fw": 2, "fw-in": 3, "lb": 4, "be": 5}
MARGIN_NS = 500_000_000
"""A capture must have been running this long before and after a packet's time to count as 'not seen there'."""


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


@dataclass(frozen=True)
class Hop:
    vantage: str
    frame: int
    ts_ns: int
    src_mac: str | None
    dst_mac: str | None


@dataclass(frozen=True)
class PacketPath:
    direction: str
    flags: int
    seq: int
    ack: int
    payload_len: int
    hops: tuple[Hop, ...]
    """Where it was seen, in path order."""
    last_seen: str
    lost_before: str | None
    """The next vantage on its path, which was capturing and did not see it."""


@dataclass(frozen=True)
class FlowPath:
    client: str
    server_port: int
    vantages: tuple[str, ...]
    packets: tuple[PacketPath, ...]
    mode: str | None = None
    """How the load balancer handled it, judged from the packets: dsr (MAC rewrite, addresses kept),
    nat (destination rewritten), snat (source rewritten: client IP lost), full-nat (both); None
    when no back-end capture shows it."""
    linked: str | None = None
    """The same connection behind the NAT (its client address and port as the back-end saw them)."""


@dataclass(frozen=True)
class Correlation:
    flows: tuple[FlowPath, ...]
    offsets: dict[str, tuple[float, float, int]]
    """vantage -> (offset seconds relative to the reference, uncertainty seconds, matched packets)."""
    reference: str | None
    findings: tuple[Finding, ...]


def correlate(records: list[CaptureRecords]) -> Correlation:
    roles = {r.vantage: role_of(r.vantage) for r in records}
    known = [r for r in records if roles[r.vantage]]
    if len({roles[r.vantage] for r in known}) < 2:
        return Correlation((), {}, None, ())
    order = {r.vantage: (RANK[roles[r.vantage]], i) for i, r in enumerate(records) if roles[r.vantage]}
    span = {r.vantage: (r.first_ts_ns or 0, r.last_ts_ns or 0) for r in records}
    cap = {r.vantage: r.capture for r in records}

    # packets of the same connection at every vantage: key -> vantage -> Hop
    flows: dict[tuple, dict[tuple, dict[str, Hop]]] = defaultdict(lambda: defaultdict(dict))
    # trackers keep the first MAX_NOTES packets of a connection: past the last one kept, a vantage's
    # silence about a packet means nothing
    noted_until: dict[tuple, int] = {}
    modes, links, alias = _modes(known, roles)
    for r in known:
        for c in r.connections:
            fk = flow_key(c)
            fk = alias.get(fk, fk)  # the back-end's view of a NATed connection joins the client's
            if len(c.packets) >= MAX_NOTES:
                until = max(n.ts_ns for n in c.packets)
                noted_until[(fk, r.vantage)] = min(until, noted_until.get((fk, r.vantage), until))
            for n in c.packets + c.syn_frames:
                pk = (n.direction, n.seq, n.ack, n.flags, n.payload_len)
                flows[fk][pk].setdefault(r.vantage, Hop(r.vantage, n.frame, n.ts_ns, n.src_mac, n.dst_mac))

    offsets, ref = _offsets(flows, order)
    out_flows, drops, bypass = [], defaultdict(list), defaultdict(list)
    for fk, pkts in flows.items():
        seen_by = {v for hops in pkts.values() for v in hops}
        if len(seen_by) < 2:
            continue
        serving = {v for v in seen_by if roles[v] == "be"}
        lb_on_reply = any(roles[v] == "lb" for (d, *_), hops in pkts.items() if d == RESP for v in hops)
        path_req = sorted((v for v in order if roles[v] != "be" or v in serving), key=order.get)
        path_rep = [v for v in reversed(path_req) if roles[v] != "lb" or lb_on_reply]
        paths = []
        for pk, hops in sorted(pkts.items(), key=lambda kv: min(h.ts_ns for h in kv[1].values())):
            d, seq, ack, flags, plen = pk
            expected = path_req if d == ORIG else path_rep
            idx = [i for i, v in enumerate(expected) if v in hops]
            if not idx:
                continue
            last = max(idx)
            lost = None
            if last + 1 < len(expected):
                nxt = expected[last + 1]
                t = hops[expected[last]].ts_ns - int(offsets.get(expected[last], (0, 0, 0))[0] * 1e9) + int(offsets.get(nxt, (0, 0, 0))[0] * 1e9)
                lo, hi = span[nxt]
                hi = min(hi, noted_until.get((fk, nxt), hi) + 1)
                if lo and lo + MARGIN_NS <= t <= hi - MARGIN_NS and t <= noted_until.get((fk, nxt), t):
                    lost = nxt
            pp = PacketPath(d, flags, seq, ack, plen, tuple(hops[v] for v in expected if v in hops), expected[last], lost)
            paths.append(pp)
            a = expected[last]
            if lost and {roles[a], roles[lost]} in ({"fw-out", "fw-in"}, {"fw-out", "fw"}, {"fw", "fw-in"}):
                drops[(d, a, lost)].append((fk, pp))
            # a reply seen beyond the firewall but never at it: it went around
            if d == RESP:
                fw_vs = [v for v in expected if roles[v] in ("fw-in", "fw-out", "fw")]
                beyond = [v for v in expected if roles[v] == "client" and v in hops]
                if fw_vs and beyond and not any(v in hops for v in fw_vs):
                    tb = hops[beyond[0]].ts_ns
                    if all(span[v][0] + MARGIN_NS <= tb <= span[v][1] - MARGIN_NS and tb <= noted_until.get((fk, v), tb)
                           for v in fw_vs):
                        bypass[tuple(fw_vs)].append((fk, pp))
        out_flows.append(FlowPath(f"{fk[0]}:{fk[1]}", fk[2], tuple(sorted(seen_by, key=order.get)), tuple(paths),
                                  modes.get(fk), links.get(fk)))

    findings = [_drop_finding(k, v, cap) for k, v in drops.items()] + [_bypass_finding(k, v, cap) for k, v in bypass.items()]
    mixed = _mixed_modes(out_flows, cap, known)
    if mixed:
        findings.append(mixed)
    out_flows.sort(key=lambda f: (f.client, f.server_port))
    return Correlation(tuple(out_flows), offsets, ref, tuple(sorted(findings, key=Finding.sort_key)))


def flow_key(c) -> tuple:
    """One connection at every vantage: client address and port, service port, and the client's ISN
    (from its SYN, or the SYN-ACK's acknowledgement), so that a reused source port is another flow."""
    isn = c.syn_seq if c.syn_seq is not None else ((c.synack_ack - 1) & 0xFFFFFFFF if c.synack_ack is not None else None)
    return (c.client_ip, c.client_port, c.server_port, isn)


def _modes(records: list[CaptureRecords], roles: dict) -> tuple[dict, dict, dict]:
    """Judge the LB mode per connection: link the client-side and back-end views of a connection by
    the client's ISN (NAT keeps sequence numbers) and compare their addresses."""
    syn_at: dict[int, list[tuple[str, object]]] = defaultdict(list)
    for r in records:
        for c in r.connections:
            if c.syn_seq is not None:
                syn_at[c.syn_seq].append((r.vantage, c))
    modes, links, alias = {}, {}, {}
    for seq, seen in syn_at.items():
        front = [c for v, c in seen if roles[v] in ("client", "fw-out", "fw", "fw-in")]
        back = [(v, c) for v, c in seen if roles[v] == "be"]
        if not front or not back:
            continue
        f = front[0]
        fk = flow_key(f)
        v, b = back[0]
        src_changed = (b.client_ip, b.client_port) != (f.client_ip, f.client_port)
        dst_changed = b.server_ip != f.server_ip
        if src_changed and dst_changed:
            mode = "full-nat"
        elif src_changed:
            mode = "snat"
        elif dst_changed:
            mode = "nat"
        else:
            # addresses kept end to end: DSR when the frame reached the back-end by MAC rewrite
            mode = "dsr" if any(s and d for s, d in b.orig_l2) else None
        modes[fk] = mode
        if src_changed or dst_changed:
            links[fk] = f"{b.client_ip}:{b.client_port} -> {b.server_ip}:{b.server_port} at {v}"
            alias[flow_key(b)] = fk
    return modes, links, alias


def _mixed_modes(flows: list[FlowPath], cap: dict, records) -> Finding | None:
    by_mode: dict[str, list[FlowPath]] = defaultdict(list)
    for f in flows:
        if f.mode:
            by_mode[f.mode].append(f)
    by_mode.pop(None, None)
    if len(by_mode) < 2:
        return None
    parts = [f"{plural(len(fs), 'connection')} by {m}" for m, fs in sorted(by_mode.items())]
    evidence = []
    for m, fs in sorted(by_mode.items()):
        for f in fs[:3]:
            h = f.packets[0].hops[-1] if f.packets and f.packets[0].hops else None
            if h:
                evidence.append(FrameRef(h.ts_ns, cap[h.vantage], h.vantage, h.frame, f"{f.client}: handled by {m}"))
    return Finding(kind="lb_mode_mixed", severity=ERROR, vantage="path",
                   summary=f"the load balancer handles connections to the service in different ways: {', '.join(parts)}.",
                   evidence=tuple(sorted(evidence)), connections=tuple(sorted(f.client for fs in by_mode.values() for f in fs)),
                   subject="mixed load-balancing modes")


def _offsets(flows, order) -> tuple[dict, str | None]:
    """Median time difference of the same packets against the reference vantage (first on the path)."""
    ref = min(order, key=order.get) if order else None
    diffs: dict[str, list[int]] = defaultdict(list)
    for pkts in flows.values():
        for hops in pkts.values():
            if ref in hops:
                for v, h in hops.items():
                    if v != ref:
                        diffs[v].append(h.ts_ns - hops[ref].ts_ns)
    out = {}
    for v, ds in diffs.items():
        if len(ds) >= 3:
            med = statistics.median(ds)
            mad = statistics.median(abs(x - med) for x in ds)
            out[v] = (med / 1e9, max(mad, 1000) / 1e9, len(ds))
    return out, ref


def _flagtext(pp: PacketPath) -> str:
    from dsrdiag.decode.tcp import flag_text
    return flag_text(pp.flags) + (f" len={pp.payload_len}" if pp.payload_len else "")


def _drop_finding(key, items, cap) -> Finding:
    d, a, b = key
    conns = sorted({f"{fk[0]}:{fk[1]}" for fk, _ in items})
    evidence = []
    for fk, pp in items[:MAX_EVIDENCE]:
        h = pp.hops[-1]
        evidence.append(FrameRef(h.ts_ns, cap[h.vantage], h.vantage, h.frame,
                                 f"{_flagtext(pp)} {'client->server' if d == ORIG else 'server->client'} of {fk[0]}:{fk[1]}: last seen here, not at {b}"))
    summary = (f"{plural(len(items), 'packet')} of {plural(len(conns), 'connection')} passed {a} and never reached {b} "
               f"({'client->server' if d == ORIG else 'server->client'}), although {b} was capturing: inferred drop by the firewall between them.")
    return Finding(kind="firewall_drop", severity=ERROR, vantage=f"{a}->{b}", summary=summary,
                   evidence=tuple(sorted(evidence)), connections=tuple(conns), subject=f"{a} -> {b}")


def _bypass_finding(fw_vs, items, cap) -> Finding:
    conns = sorted({f"{fk[0]}:{fk[1]}" for fk, _ in items})
    evidence, gateways = [], set()
    for fk, pp in items[:6]:
        first, last = pp.hops[0], pp.hops[-1]
        if first.dst_mac:
            gateways.add(first.dst_mac)
        evidence.append(FrameRef(first.ts_ns, cap[first.vantage], first.vantage, first.frame,
                                 f"{_flagtext(pp)} reply of {fk[0]}:{fk[1]} leaves {first.vantage} towards MAC {first.dst_mac}"))
        evidence.append(FrameRef(last.ts_ns, cap[last.vantage], last.vantage, last.frame,
                                 f"the same reply reaches {last.vantage}; {', '.join(fw_vs)} never saw it"))
    summary = (f"replies of {plural(len(conns), 'connection')} reached the client without passing the firewall "
               f"({', '.join(fw_vs)} never saw them); they left the back-end towards {', '.join(sorted(gateways)) or 'another gateway'}: "
               "the return path bypasses the firewall.")
    return Finding(kind="asymmetric_flow", severity=ERROR, vantage="/".join(fw_vs), summary=summary,
                   evidence=tuple(sorted(evidence)), connections=tuple(conns), subject="reply bypasses the firewall")
