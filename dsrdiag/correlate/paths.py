"""Follow each connection vantage by vantage: where each packet was seen, where it was last seen,
and the facts that say what went wrong (packets lost between two vantages, replies that went
around the firewall, the LB's mode); put every capture on one clock. The kinds that judge these
facts live with the others (findings/kinds/firewall_drop.py, asymmetric_flow.py, lb_mode_mixed.py).

Reads: CaptureRecords of several vantages (their packet notes: the first packets of every
connection, which is where DSR faults show) and the topology (vantage roles and order, when the
topology file gives them). Produces: a Correlation (FlowPath records, clock offsets, and the facts the path kinds judge: drops, bypasses).
Never: reports a drop where the next capture was not running at that time, or for vantages whose
role on the path is unknown (name them client, fw-out, fw-in, lb, be1... or give the order).
Why: an engineer lines these captures up by hand in several Wireshark windows; this does it.

Matching, by what each LB mode leaves intact (docs/correlation.md):
- DSR and routers keep the IP packet: addresses, ports, sequence numbers, IP ID, flags, length.
- NAT rewrites addresses and ports but keeps the TCP sequence numbers: the client's ISN links the
  client-side and back-end views.
- A full proxy opens a new connection (new ISN, its own address): its back-end leg is linked to
  the client's connection by the SMTP lines both carry (EHLO name, banner) and by timing.

Requests travel client -> fw-out -> fw-in -> lb -> the serving back-end; replies travel back from
the back-end and skip the LB unless the LB saw replies of that connection (NAT modes).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from dataclasses import dataclass

from dsrdiag.core.stats import median
from dsrdiag.correlate.roles import vantage_roles
from dsrdiag.decode.tcp import flag_text
from dsrdiag.track.conn import MAX_NOTES
from dsrdiag.track.records import ORIG, RESP, CaptureRecords, Connection, flow_key

ONE_WAY_TRANSIT_NS = 10_000_000
"""A one-way clock estimate includes the transit between the two vantages; packets of one direction
cannot measure it, so its uncertainty is at least this (capture points of one site are assumed to be
under 10 ms apart; docs/correlation.md). Two-way estimates measure their own."""
MARGIN_NS = 500_000_000
"""A capture must have been running this long before and after a packet's time to count as 'not seen there'."""
PROXY_WINDOW_NS = 5_000_000_000
"""A proxy opens its back-end connection within this time of accepting the client's."""
FRONT_ROLES = ("client", "fw-out", "fw", "fw-in")
FIREWALL_SIDES = ({"fw-out", "fw-in"}, {"fw-out", "fw"}, {"fw", "fw-in"}, {"client", "fw-in"})
"""Pairs of adjacent vantages with the firewall between them: a packet lost there was dropped by it
(the client side and the server side of the firewall count when no capture of its outside leg exists)."""


@dataclass(frozen=True)
class Hop:
    vantage: str
    frame: int
    ts_ns: int
    src_mac: str | None
    dst_mac: str | None
    ip_id: int | None = None
    text: str | None = None
    """The payload's first line (SMTP), untrusted: presenters escape it."""


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

    @property
    def text(self) -> str | None:
        return next((h.text for h in self.hops if h.text), None)

    @property
    def label(self) -> str:
        """Its flags and payload length, as ladders and findings name a packet."""
        return flag_text(self.flags) + (f" len={self.payload_len}" if self.payload_len else "")


@dataclass(frozen=True)
class FlowPath:
    client: str
    server_port: int
    vantages: tuple[str, ...]
    packets: tuple[PacketPath, ...]
    mode: str | None = None
    """How the load balancer handled it, judged from the packets: dsr (MAC rewrite, addresses kept),
    nat (destination rewritten), snat (source rewritten: client IP lost), full-nat (both), tunnel
    (the client's packet inside IP-in-IP/GRE to the back-end), proxy (a new connection from the LB), proxy+proxy-protocol / proxy+xclient (a proxy that passes the
    client's address on); None when no back-end capture shows it."""
    linked: str | None = None
    """The same connection on the other side of a NAT or proxy, as the back-end saw it."""
    matched_by: tuple[str, ...] = ()
    """The invariants that tied the vantages' views together."""
    leg: str | None = None
    """For a proxied connection: `front` (client <-> LB) or `back` (LB <-> back-end)."""
    died: str | None = None
    """Where its first lost packet was last seen, in words; None when nothing was lost."""
    died_at: str | None = None
    """The vantage that saw its first lost packet last."""
    key: tuple = ()
    """flow_key(): client address, port, service port, client ISN."""
    uids: tuple[str, ...] = ()
    """The connection ids of this flow at every vantage that saw it."""


@dataclass(frozen=True)
class ClockOffset:
    offset_s: float
    """How far this capture's clock is ahead of the reference's."""
    uncertainty_s: float
    matched: int
    basis: str
    """two-way: packets of both directions bound the transit time (offset = midpoint, uncertainty =
    half the difference plus spread); one-way: only one direction was seen, the offset includes
    the transit time between the vantages."""
    via: tuple[str, ...] = ()
    """Vantages the estimate was chained through, when not measured against the reference directly."""


@dataclass(frozen=True)
class Correlation:
    """Facts about paths, for the kinds that judge them (findings/kinds: firewall_drop,
    asymmetric_flow, lb_mode_mixed) and for the report: nothing here is a verdict."""

    flows: tuple[FlowPath, ...]
    offsets: dict[str, ClockOffset]
    reference: str | None
    aliases: dict[tuple, tuple] = None
    """flow_key of a back-end's view behind a NAT -> the client-side flow_key it belongs to."""
    drops: dict = None
    """(direction, last vantage, next vantage) -> [(flow key, PacketPath)]: packets last seen at a
    firewall leg and not at the next while it was capturing."""
    bypasses: dict = None
    """firewall vantages -> [(flow key, PacketPath)]: replies seen at the client side and at none of them."""
    captures: dict = None
    """vantage -> capture path (for evidence)."""
    uids: dict = None
    """flow key -> the connection ids of that flow at every vantage."""
    roles: dict = None
    """vantage -> its place on the path (client, fw-out, fw-in, lb, be), or None."""

    def uids_of(self, keys) -> tuple[str, ...]:
        """The connection ids of these flows: findings name connections one way."""
        return tuple(sorted({u for fk in keys for u in (self.uids or {}).get(fk, ())}))

    def died_by_key(self) -> dict[tuple, tuple[str, str]]:
        """flow_key (the client side's, and the back-end's behind a NAT) -> (vantage where its first
        lost packet was last seen, where it died in words)."""
        out = {f.key: (f.died_at, f.died) for f in self.flows if f.died and f.key}
        for a, fk in (self.aliases or {}).items():
            if fk in out:
                out[a] = out[fk]
        return out


def correlate(records: list[CaptureRecords], topology=None) -> Correlation:
    roles, order = vantage_roles(records, topology)
    known = [r for r in records if roles[r.vantage]]
    if len({roles[r.vantage] for r in known}) < 2:
        return Correlation((), {}, None, {}, {}, {}, {}, {}, roles)
    span = {r.vantage: (r.first_ts_ns or 0, r.last_ts_ns or 0) for r in records}
    cap = {r.vantage: r.capture for r in records}

    # packets of the same connection at every vantage: key -> packet key -> vantage -> Hop
    flows: dict[tuple, dict[tuple, dict[str, Hop]]] = defaultdict(lambda: defaultdict(dict))
    views: dict[tuple, dict[str, Connection]] = defaultdict(dict)
    # trackers keep the first MAX_NOTES packets of a connection: past the last one kept, a vantage's
    # silence about a packet means nothing
    noted_until: dict[tuple, int] = {}
    modes, links, alias = _nat_links(known, roles)
    # Zeek's timers end a connection's state on what each vantage saw: a one-sided view (no SYN-ACK
    # passed) times out where the two-sided view stays established, and its later packets form a
    # record without a SYN (no ISN). Such a record belongs to the latest connection of its 4-tuple
    # that began before it, at any vantage: joined to it here, so its packets are not "lost".
    began: dict[tuple, list[tuple[int, tuple]]] = defaultdict(list)
    for r in known:
        for c in r.connections:
            k = flow_key(c)
            if k[3] is not None:
                began[k[:3]].append((c.first_ts_ns, k))
    for lst in began.values():
        lst.sort()

    def joined(c) -> tuple:
        k = flow_key(c)
        if k[3] is None and k[:3] in began:
            earlier = [fk for ts, fk in began[k[:3]] if ts <= c.first_ts_ns]
            if earlier:
                return earlier[-1]
        return k

    copies: dict[tuple, dict[tuple, int]] = defaultdict(lambda: defaultdict(int))
    for r in known:
        for c in r.connections:
            fk = alias.get(flow_key(c), joined(c))  # the back-end's view of a NATed connection joins the client's
            views[fk].setdefault(r.vantage, c)
            if len(c.packets) >= MAX_NOTES:
                until = max(n.ts_ns for n in c.packets)
                noted_until[(fk, r.vantage)] = min(until, noted_until.get((fk, r.vantage), until))
            # the n-th copy of the same segment (a retransmission) at one vantage matches the n-th elsewhere,
            # counted over every record of the 4-tuple at this vantage (a record split by a timer
            # included; the two legs of a NAT at the LB are two 4-tuples)
            seen_n = copies[(fk, r.vantage, c.client_ip, c.client_port, c.server_ip, c.server_port)]
            for n in sorted({n.frame: n for n in c.packets + c.syn_frames}.values(), key=lambda n: n.frame):
                pk = (n.direction, n.seq, n.ack, n.flags, n.payload_len)
                seen_n[pk] += 1
                flows[fk][pk + (seen_n[pk],)].setdefault(r.vantage, Hop(r.vantage, n.frame, n.ts_ns, n.src_mac, n.dst_mac, n.ip_id, n.text))

    offsets, ref = _offsets(flows, order)
    # two vantages that share no connection at all did not capture the same traffic (another
    # client's segment, a capture filter, another site): silence between them proves nothing
    shared: dict[frozenset, int] = defaultdict(int)
    for pkts in flows.values():
        seen = sorted({v for hops in pkts.values() for v in hops})
        for i, a in enumerate(seen):
            for b in seen[i + 1:]:
                shared[frozenset((a, b))] += 1
    legs = _proxy_links(views, roles, offsets)
    for front, (back, mode, how) in legs.items():
        modes[front] = modes[back] = mode
        links[front] = _describe(views[back], roles, "be")
        links[back] = _describe(views[front], roles, "client")

    out_flows, drops, bypass = [], defaultdict(list), defaultdict(list)
    back_of = {b: f for f, (b, _, _) in legs.items()}
    for fk, pkts in flows.items():
        seen_by = {v for hops in pkts.values() for v in hops}
        if len(seen_by) < 2:
            continue
        leg = "front" if fk in legs else "back" if fk in back_of else None
        serving = {v for v in seen_by if roles[v] == "be"}
        lb_on_reply = any(roles[v] == "lb" for (d, *_), hops in pkts.items() if d == RESP for v in hops)
        path_req = sorted((v for v in order if (roles[v] != "be" or v in serving)
                           and (leg != "back" or roles[v] in ("lb", "be"))), key=order.get)
        path_rep = [v for v in reversed(path_req) if roles[v] != "lb" or lb_on_reply]
        paths = []
        for pk, hops in sorted(pkts.items(), key=lambda kv: min(h.ts_ns - _ns(offsets, h.vantage) for h in kv[1].values())):
            d, seq, ack, flags, plen, _ = pk
            expected = path_req if d == ORIG else path_rep
            idx = [i for i, v in enumerate(expected) if v in hops]
            if not idx:
                continue
            last = max(idx)
            lost = None
            if last + 1 < len(expected):
                nxt = expected[last + 1]
                t = hops[expected[last]].ts_ns - _ns(offsets, expected[last]) + _ns(offsets, nxt)
                lo, hi = span[nxt]
                hi = min(hi, noted_until.get((fk, nxt), hi) + 1)
                if lo and lo + MARGIN_NS <= t <= hi - MARGIN_NS and t <= noted_until.get((fk, nxt), t) \
                        and shared[frozenset((expected[last], nxt))]:
                    lost = nxt
            pp = PacketPath(d, flags, seq, ack, plen, tuple(hops[v] for v in expected if v in hops), expected[last], lost)
            paths.append(pp)
            a = expected[last]
            if lost and {roles[a], roles[lost]} in FIREWALL_SIDES:
                drops[(d, a, lost)].append((fk, pp))
            # a reply seen beyond the firewall but never at it: it went around
            if d == RESP:
                fw_vs = [v for v in expected if roles[v] in ("fw-in", "fw-out", "fw")]
                beyond = [v for v in expected if roles[v] == "client" and v in hops]
                if fw_vs and beyond and not any(v in hops for v in fw_vs):
                    tb = hops[beyond[0]].ts_ns
                    if all(span[v][0] + MARGIN_NS <= tb <= span[v][1] - MARGIN_NS and tb <= noted_until.get((fk, v), tb)
                           and shared[frozenset((v, beyond[0]))] for v in fw_vs):
                        bypass[tuple(fw_vs)].append((fk, pp))
        first_lost = next((p for p in paths if p.lost_before), None)
        died = (f"{(p := first_lost).label} ({'client->server' if p.direction == ORIG else 'server->client'}) "
                f"last seen at {p.last_seen}, not at {p.lost_before}") if first_lost else None
        how = legs[fk][2] if fk in legs else legs[back_of[fk]][2] if fk in back_of else _invariants(pkts, views[fk], fk in alias.values())
        if modes.get(fk) == "tunnel":
            how += ("the client's packet found inside the tunnel at the back-end",)
        out_flows.append(FlowPath(f"{fk[0]}:{fk[1]}", fk[2], tuple(sorted(seen_by, key=order.get)), tuple(paths),
                                  modes.get(fk), links.get(fk), how, leg, died,
                                  died_at=first_lost.last_seen if first_lost else None, key=fk,
                                  uids=tuple(sorted(c.uid for c in views[fk].values()))))

    uids = {fk: tuple(sorted(c.uid for c in vs.values())) for fk, vs in views.items()}
    out_flows.sort(key=lambda f: (f.leg == "back", f.client, f.server_port))
    return Correlation(tuple(out_flows), offsets, ref, alias, dict(drops), dict(bypass), cap, uids, roles)


def _ns(offsets: dict, v: str) -> int:
    o = offsets.get(v)
    return int(o.offset_s * 1e9) if o else 0


def _nat_links(records: list[CaptureRecords], roles: dict) -> tuple[dict, dict, dict]:
    """Judge the LB mode per connection: link the client-side and back-end views of a connection by
    the client's ISN (NAT keeps sequence numbers) and compare their addresses."""
    syn_at: dict[int, list[tuple[str, object]]] = defaultdict(list)
    for r in records:
        for c in r.connections:
            if c.syn_seq is not None:
                syn_at[c.syn_seq].append((r.vantage, c))
    modes, links, alias = {}, {}, {}
    for seq, seen in syn_at.items():
        front = [c for v, c in seen if roles[v] in FRONT_ROLES]
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
        elif b.tunneled_from:
            mode = "tunnel"  # the client's packet inside IP-in-IP/GRE to the back-end's own address
        else:
            # addresses kept end to end: DSR when the frame reached the back-end by MAC rewrite
            mode = "dsr" if any(s and d for s, d in b.orig_l2) else None
        modes[fk] = mode
        if src_changed or dst_changed:
            links[fk] = f"{b.client_ip}:{b.client_port} -> {b.server_ip}:{b.server_port} at {v}"
            alias[flow_key(b)] = fk
        elif mode == "tunnel":
            links[fk] = f"encapsulated by {b.tunneled_from} at {v}"
    return modes, links, alias


def _smtp_match(a: Connection, b: Connection) -> list[str]:
    """What two connections' SMTP dialogues have in common: a proxy relays the client's EHLO and the
    back-end's banner (or its own, then only the EHLO matches)."""
    sa, sb = a.smtp, b.smtp
    if not sa or not sb:
        return []
    same = []
    if sa.helo and sa.helo == sb.helo:
        same.append("EHLO name")
    if sa.banner_text and sa.banner_text == sb.banner_text:
        same.append("banner")
    return same


def _proxy_links(views: dict, roles: dict, offsets: dict) -> dict[tuple, tuple[tuple, str, tuple[str, ...]]]:
    """Full proxy: a client-side connection no back-end saw, and a connection to a back-end that no
    client-side capture saw (the LB's own), carrying the same SMTP lines a moment later.
    Returns front key -> (back key, mode, what matched)."""
    def first(vs: dict[str, Connection], want: tuple[str, ...]) -> tuple[str, Connection] | None:
        return next(((v, c) for v, c in vs.items() if roles.get(v) in want), None)

    fronts, backs = [], []
    for fk, vs in views.items():
        rs = {roles.get(v) for v in vs}
        if rs & set(FRONT_ROLES) and "be" not in rs:
            fronts.append((fk, first(vs, FRONT_ROLES + ("lb",))))
        elif rs <= {"lb", "be"} and "be" in rs:
            backs.append((fk, first(vs, ("be", "lb"))))
    front_clients = {fk[0] for fk, _ in fronts}
    out, taken = {}, set()
    for bk, (bv, b) in sorted(backs, key=lambda x: x[1][1].first_ts_ns):
        if bk[0] in front_clients:
            continue  # a client's own connection to a back-end, not the LB's
        best = None
        for fk, (fv, f) in fronts:
            if fk in taken:
                continue
            same = _smtp_match(f, b)
            if not same:
                continue
            dt = (b.first_ts_ns - _ns(offsets, bv)) - (f.first_ts_ns - _ns(offsets, fv))
            if -MARGIN_NS // 5 <= dt <= PROXY_WINDOW_NS and (best is None or abs(dt) < abs(best[0])):
                best = (dt, fk, same)
        if best is None:
            continue
        dt, fk, same = best
        taken.add(fk)
        mode = "proxy"
        client = fk[0]
        for c in views[bk].values():
            s = c.smtp
            if s and s.proxy and s.proxy.client_ip == client:
                mode = "proxy+proxy-protocol"
            elif s and s.xclient and f"ADDR={client}".lower() in s.xclient.lower():
                mode = "proxy+xclient"
        out[fk] = (bk, mode, (f"SMTP payload ({', '.join(same)})", f"timing (back-end leg opened {dt / 1e6:+.1f} ms after)"))
    return out


def _describe(vs: dict[str, Connection], roles: dict, prefer: str) -> str:
    v, c = next(((v, c) for v, c in vs.items() if roles.get(v) == prefer), next(iter(vs.items())))
    return f"{c.client_ip}:{c.client_port} -> {c.server_ip}:{c.server_port} at {v}"


def _invariants(pkts: dict, vs: dict[str, Connection], nat: bool) -> tuple[str, ...]:
    """Which invariants tied this connection's views together (DSR and routers keep them all)."""
    if len({v for hops in pkts.values() for v in hops}) < 2:
        return ()
    out = ["TCP sequence numbers, flags and lengths"]
    if nat:
        out.append("client ISN (addresses rewritten)")
    elif len({(c.client_ip, c.client_port, c.server_port) for c in vs.values()}) == 1:
        out.insert(0, "addresses and ports")
    shared = [hops for hops in pkts.values() if len(hops) > 1]
    ids = [{h.ip_id for h in hops.values()} for hops in shared if all(h.ip_id is not None for h in hops.values())]
    if ids and all(len(s) == 1 for s in ids):
        out.append("IP ID")
    return tuple(out)


def _offsets(flows, order) -> tuple[dict[str, ClockOffset], str | None]:
    """Clock offsets of every capture against the reference (the first on the path).

    Per pair of vantages a (earlier on the path) and b: a request reaches a first, so t_b - t_a =
    offset + transit; a reply reaches b first, so t_b - t_a = offset - transit. With both, the
    offset lies between the two medians (NTP's reasoning): their midpoint, give or take half their
    difference. Vantages that share no packets with the reference are chained through others
    (a proxy's back-end through the LB), choosing the chain with the smallest uncertainty."""
    ref = min(order, key=order.get) if order else None
    diffs: dict[tuple[str, str], dict[str, list[int]]] = defaultdict(lambda: {ORIG: [], RESP: []})
    for pkts in flows.values():
        for (d, *_), hops in pkts.items():
            vs = sorted((v for v in hops if v in order), key=order.get)
            for i, a in enumerate(vs):
                for b in vs[i + 1:]:
                    diffs[(a, b)][d].append(hops[b].ts_ns - hops[a].ts_ns)
    edges: dict[str, list[tuple[str, float, float, int, bool]]] = defaultdict(list)
    for (a, b), by_dir in diffs.items():
        o, r = by_dir[ORIG], by_dir[RESP]
        if len(o) + len(r) < 3:
            continue
        spread = max(_mad(o), _mad(r), 1000)
        if o and r:
            mo, mr = median(o), median(r)
            off, unc, two = (mo + mr) / 2, abs(mo - mr) / 2 + spread, True
        else:  # one direction only: the median includes the transit time, which nothing here bounds
            off, unc, two = median(o or r), max(spread, ONE_WAY_TRANSIT_NS), False
        n = len(o) + len(r)
        edges[a].append((b, off, unc, n, two))
        edges[b].append((a, -off, unc, n, two))
    # Dijkstra from the reference; a one-way edge costs more than any two-way chain
    best: dict[str, tuple[float, float, float, int, bool, tuple]] = {}
    heap = [(0.0, ref, 0.0, 0.0, 0, True, ())]
    while heap:
        cost, v, off, unc, n, two, via = heapq.heappop(heap)
        if v in best:
            continue
        best[v] = (cost, off, unc, n, two, via)
        for b, o, u, m, t in edges.get(v, ()):
            if b not in best:
                heapq.heappush(heap, (cost + u + (0 if t else 1e12), b, off + o, unc + u, m if v == ref else min(n, m),
                                      two and t, via + ((v,) if v != ref else ())))
    out = {v: ClockOffset(off / 1e9, unc / 1e9, n, "two-way" if two else "one-way", via)
           for v, (_, off, unc, n, two, via) in best.items() if v != ref}
    return out, ref


def _mad(xs: list[int]) -> float:
    if not xs:
        return 0.0
    m = median(xs)
    return median(abs(x - m) for x in xs)
