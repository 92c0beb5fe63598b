"""What topology inference needs of every connection record, gathered as each record is made.

Why: inference (findings/infer.py) made three passes over every record, in the parent process,
after the parallel part; a day of mail spills its records to disk and every pass unpickles them
all. Gathered here instead, in the process that tracks the capture (a worker when several are read
in parallel), the facts are small (they grow with distinct addresses and L2 paths, not with
connections) and travel with the records: infer() reduces the facts of every capture, a map and a
reduce a distributed engine could run apart (docs/performance.md).

Exactness: inference breaks ties by first appearance (Counter.most_common, the order back-ends are
found and named), and passes see records in (first packet time, uid) order while records are made
in the order connections finish. So every fact keeps the place (`first`) of the first record that
showed it; infer() replays the facts in that order and concludes exactly what the passes did
(tests/test_infer_facts.py).
"""

from __future__ import annotations

from itertools import groupby

from dsrdiag.track.history import DONE_AFTER_SYNACK, DONE_NO_SYNACK, FLAGS, OPENED, REFUSED, SAW_SYN, SYNACK
from dsrdiag.track.intern import ip_text, l2_text
from dsrdiag.track.lone import address_text
from dsrdiag.track.records import Connection, SmtpDialogue, _record_native

INITIAL_TTLS = frozenset((32, 60, 64, 128, 255))
"""TTLs a host starts with: a reply arriving with one was sent on this segment, not routed."""


SYN_SRC_MAX = 4096
ATTEMPT_SRC_MAX = 4096
"""Sources counted one by one per attacked address (more are counted together: a spoofed flood has
millions, and the top ones are what a firewall rule needs)."""
DISTINCT_MAX = 1 << 16
"""Distinct sources counted exactly per attacked address; beyond, the report says "at least"."""
SCAN_SOURCES_MAX = 4096
"""Sources whose failed targets are followed for scan detection (Zeek's scan.zeek keeps a SumStats
set per source; bounded here)."""
SCAN_TARGETS_MAX = 64
"""Targets kept per source: enough to cross either scan threshold (findings/kinds/syn_flood_or_scan.py)."""
STARTING_TTLS = (32, 64, 128, 255)


def _hops(ttl: int | None) -> int | None:
    if ttl is None:
        return None
    for start in STARTING_TTLS:
        if ttl <= start:
            return min(start - ttl, 16)
    return None


HOPS: dict = {t: _hops(t) for t in (None, *range(256))}
"""hops() of every TTL an IP header can hold (8 bits) and of None: the passes look it up per record."""
HOPS_OF = HOPS.get
"""hops(ttl) as one dict lookup, for a record's TTL (a byte of its header, or None)."""


def hops(ttl: int | None) -> int | None:
    """Routers a packet passed since it was sent: the nearest starting TTL above it, minus it (capped)."""
    got = HOPS.get(ttl, HOPS)
    return _hops(ttl) if got is HOPS else got


def forwarders(c) -> set[str]:
    """MACs that received a client packet of `c` and re-sent it (the LB's forwarding hop)."""
    if not c.orig_forwarded:
        return set()
    dsts = {d for _, d in c.orig_l2 if d}
    return {s for s, _ in c.orig_l2 if s in dsts}


def _forwarding_of(c) -> tuple[str, ...]:
    """forwarders(c) sorted (a set's order varies by run): the forwarding MACs of a record's L2
    path, which observe() keeps once per distinct path."""
    return tuple(sorted(forwarders(c)))


def handshake_done(history: str, resp_pkts: int) -> bool:
    """The client completed the handshake: its ACK or data after the server's SYN-ACK, or (where
    replies do not pass this vantage) after its own SYN (jobs/analyze.py completed(), on facts).
    From the history's bits (track/history.py): computed once per distinct history."""
    f = FLAGS[history]
    return bool(f & DONE_AFTER_SYNACK) or (bool(f & DONE_NO_SYNACK) and not resp_pkts)


class Attempts:
    """Failed connection attempts to one service (server address and port; Zeek's connection_attempt and
    connection_rejected: the client's SYN, and the handshake never completed), gathered as the
    records are made so that a flood is judged from counts, never from a million kept records.

    `lone`: attempts of one SYN, never retransmitted and not refused by the server (no client stack
    gives up after one unanswered SYN: RFC 6298 retransmits after 1 s; flood tools and stateless
    scanners never do); `retried`: the others not refused. A server's RST is an answer real clients
    take at once: refused attempts are neither (connection_refused judges them); scans count them."""

    __slots__ = ("syns", "lone", "retried", "answered", "per_second", "sources", "distinct", "other_sources",
                 "first", "last")

    def __init__(self):
        self.syns = self.lone = self.retried = self.answered = self.other_sources = 0
        """attempts with a client SYN (failed or not); lone failed; retried failed; lone failed the server answered"""
        self.per_second: dict[int, int] = {}
        """lone failed attempts per second of their SYN (the peak rate)"""
        self.sources: dict[str, int] = {}
        """lone failed attempts per source (the first ATTEMPT_SRC_MAX sources; the rest in other_sources)"""
        self.distinct: set[str] = set()
        self.first = self.last = None
        """(SYN time, frame, uid, client address, client port, service port) of the first and last lone attempt"""

    def __getstate__(self):
        return tuple(getattr(self, k) for k in self.__slots__)

    def __setstate__(self, state):
        for k, v in zip(self.__slots__, state):
            setattr(self, k, v)


def _attempt(v: Attempts, facts, c, f: int) -> None:
    """One failed attempt (the caller counted v.syns and left out completed handshakes); `f`: the
    history's bits (track/history.py)."""
    syns = c.syn_frames
    src = c.client_ip
    ts = c.first_ts_ns  # the client's SYN opened the connection: its time
    if f & REFUSED:
        pass  # the server refused it (RST): an answer real clients take too, connection_refused's
    elif len(syns) != 1:
        v.retried += 1
    else:
        v.lone += 1
        if c.resp_pkts:
            v.answered += 1
        sec = ts // 1_000_000_000
        per_second = v.per_second
        per_second[sec] = per_second.get(sec, 0) + 1
        sources = v.sources
        n = sources.get(src)
        if n is not None:
            sources[src] = n + 1
        elif len(sources) < ATTEMPT_SRC_MAX:
            sources[src] = 1
        else:
            v.other_sources += 1
        if len(v.distinct) < DISTINCT_MAX:
            v.distinct.add(src)
        first, last = v.first, v.last
        if first is None or ts <= first[0] or ts >= last[0]:
            note = syns[0]
            ev = (note.ts_ns, note.frame, c.uid, src, c.client_port, c.server_port)
            if first is None or ev < first:
                v.first = ev
            if last is None or ev > last:
                v.last = ev
    # scan detection: the distinct (address, port) targets each source failed to reach
    t = facts.targets.get(src)
    if t is None:
        if len(facts.targets) >= SCAN_SOURCES_MAX:
            return
        note = syns[0] if syns else None
        t = facts.targets[src] = [set(), None if note is None else
                                  (note.ts_ns, note.frame, c.uid, src, c.client_port, c.server_port, c.server_ip)]
    elif t[1] is not None and ts < t[1][0] and syns:
        note = syns[0]
        t[1] = (note.ts_ns, note.frame, c.uid, src, c.client_port, c.server_port, c.server_ip)
    if len(t[0]) < SCAN_TARGETS_MAX:
        t[0].add((c.server_ip, c.server_port))


def _native_env() -> tuple:
    """What the C observer (track/_factsobserve.c) is given with each batch: the constants, the
    steps it calls back, the record types and their field positions, all named here once (read at
    each call: tests change SYN_SRC_MAX)."""
    return (FLAGS, HOPS, INITIAL_TTLS, SYN_SRC_MAX, (SAW_SYN, OPENED, SYNACK, DONE_AFTER_SYNACK, DONE_NO_SYNACK),
            Attempts, _attempt, _forwarding_of, Connection, SmtpDialogue, _RECORD_AT, _DIALOGUE_AT)


_RECORD_AT = tuple(Connection._fields.index(n) for n in (
    "uid", "client_ip", "client_port", "server_ip", "server_port", "first_ts_ns", "history", "orig_pkts", "resp_pkts",
    "orig_forwarded", "orig_l2", "resp_l2", "orig_ttl", "resp_ttl", "synack_ack", "smtp"))
_DIALOGUE_AT = tuple(SmtpDialogue._fields.index(n) for n in ("banner_host", "xclient", "proxy"))


def _seen_n(table: dict, key, first, n: int) -> None:
    got = table.get(key)
    if got is None:
        table[key] = [n, first]
    else:
        got[0] += n
        if first < got[1]:
            got[1] = first


def _runs(d):
    """(group, a, b): the digest's pairs a..b-1 are consecutive pairs of one group (all of them,
    in one run, when the block has one group: a flood's shape)."""
    n = len(d.pair_n)  # not d.pairs: a tuple per client, made for its length (track/lone.py LazyDigest)
    if len(d.groups) <= 1:
        return [(0, 0, n)] if n else []
    out = []
    a = 0
    for g, run in groupby(d.pair_first, key=d.row_group.__getitem__):  # a pair's group: its first row's
        b = a + sum(1 for _ in run)
        out.append((g, a, b))
        a = b
    return out


def _sources_run(v: Attempts, d, a: int, b: int) -> None:
    """v.sources of pairs a..b of one group (their addresses distinct): one by one while there is
    room, as _attempt() counts them; then known addresses add their attempts, the others go to
    other_sources."""
    sources, ips, pn = v.sources, d.pair_ips, d.pair_n
    i = a
    while i < b and len(sources) < ATTEMPT_SRC_MAX:
        src = ips[i]
        m = sources.get(src)
        sources[src] = pn[i] if m is None else m + pn[i]
        i += 1
    if i == b:
        return
    rest = ips[i:b]
    total = sum(pn[i:b])
    hits = sources.keys() & rest
    if hits:
        n_of = dict(zip(rest, pn[i:b]))
        for src in hits:
            k = n_of[src]
            sources[src] += k
            total -= k
    v.other_sources += total


def _distinct_run(distinct: set, srcs: list) -> None:
    """Add srcs to distinct in order while it holds fewer than DISTINCT_MAX, as _attempt() does
    one at a time: a slice of as many as there is room for can all go in (each adds at most one)."""
    j, n = 0, len(srcs)
    while j < n and len(distinct) < DISTINCT_MAX:
        k = DISTINCT_MAX - len(distinct)
        distinct.update(srcs[j:j + k])
        j += k


class Facts:
    """One capture's facts; observe() every record (in any order), then hand the object on."""

    __slots__ = ("syn_dst", "syn_ports", "syn_src", "sides", "paths", "replies", "forwarded", "answered_forwarded",
                 "attempts", "targets", "carried", "_fw", "_known")

    def __init__(self):
        self.syn_dst: dict[tuple[str, int], list] = {}
        """(server address, port) -> [client SYN connections, first place]"""
        self.syn_ports: dict[str, set[int]] = {}
        self.syn_src: dict[tuple, list] = {}
        """(server address, port, client address, client frame's source and destination MAC, reply's
        source MAC, banner host, client frames' router hops) -> [count, first]: who opens connections
        to whom, through which MACs, from how far. Inference tells a load
        balancer's own connections to its back-ends (SNAT) from clients' by it. Bounded: past
        SYN_SRC_MAX distinct keys only known keys are counted (a day of mail has many clients)."""
        """server address -> every port a client SYN went to"""
        self.sides: dict[tuple, list] = {}
        """(server address, server port, client TTL initial, reply TTL initial or None when no reply
        passed) -> [count, first]: which
        side of the capture each end sent from. A TTL a host starts with was sent on this segment;
        one a router decremented came from beyond it (the capture's place on the path, correlate/roles.py)."""
        self.paths: dict[tuple, list] = {}
        """(server address, client L2 pairs, forwarding MACs, reply L2 pairs, reply TTL initial,
        banner host) -> [connections, first place]: the forwarding MACs, the MACs either way and
        the back-ends are all read from these (few: a vantage sees a few L2 paths)"""
        self.replies: list[tuple] = []
        """Connections seen from their SYN-ACK only (a wrong-source reply, if the VIP turns out to be
        elsewhere): (place, client address, client port, service port, SYN-ACK's ack, reply source
        MAC, server address, banner host)"""
        self.forwarded = False
        """A client packet was seen forwarded (received by a MAC and re-sent by it)."""
        self.answered_forwarded = False
        """... on a connection the server answered at this vantage."""
        self.attempts: dict[tuple[str, int], Attempts] = {}
        """(server address, port) -> its connection attempts (a flood is judged from these)"""
        self.targets: dict[str, set] = {}
        """client address -> [the (server address, port) its failed attempts went to (bounded), its first
        attempt (SYN time, frame, uid, address, port, service port, server address)]: a scan"""
        self.carried = False
        """A record's stream carried the client's address (a PROXY header or XCLIENT): without one, the
        judge does not ask every record (findings/kinds/carried.py)."""
        self._fw: dict = {}  # client L2 pairs (shared tuples) -> their forwarding MACs
        self._known = None  # (syn_src, its length, _syn_src_known's index), made once syn_src is full

    def observe(self, c) -> None:
        """Note one record. Why syn_dst and syn_src are written out rather than through _seen_n(): it
        runs for every record as it is made (a day of mail: millions), and their steps do more than
        count (syn_ports filled with syn_dst, syn_src's bound) in the same lookup; the
        history is read as bits (track/history.py), TTLs as hops from a table, and a (server, port)
        already in syn_dst has its port in syn_ports (they are filled together)."""
        first = (c.first_ts_ns, c.uid)
        ip = c.server_ip
        port = c.server_port
        f = FLAGS[c.history]
        s = c.smtp
        host = s.banner_host if s else None
        o_hops = HOPS_OF(c.orig_ttl)
        if f & SAW_SYN:
            syn_dst = self.syn_dst
            got = syn_dst.get((ip, port))
            if got is None:
                syn_dst[(ip, port)] = [1, first]
                ports = self.syn_ports.get(ip)
                if ports is None:
                    ports = self.syn_ports[ip] = set()
                ports.add(port)
            else:
                got[0] += 1
                if first < got[1]:
                    got[1] = first
            o_l2, r_l2 = c.orig_l2, c.resp_l2
            key = (ip, port, c.client_ip, o_l2[0][0] if o_l2 else None, o_l2[0][1] if o_l2 else None,
                   r_l2[0][0] if r_l2 else None, host, o_hops)
            syn_src = self.syn_src
            got = syn_src.get(key)
            if got is not None:
                got[0] += 1
                if first < got[1]:
                    got[1] = first
            elif len(syn_src) < SYN_SRC_MAX:
                syn_src[key] = [1, first]
            if f & OPENED:  # the client's SYN opened it: an attempt (not a mid-stream pickup)
                v = self.attempts.get((ip, port))
                if v is None:
                    v = self.attempts[(ip, port)] = Attempts()
                v.syns += 1
                if not (f & DONE_AFTER_SYNACK or (f & DONE_NO_SYNACK and not c.resp_pkts)):  # handshake_done()
                    _attempt(v, self, c, f)
        elif f & SYNACK:
            self.replies.append((first, c.client_ip, c.client_port, port, c.synack_ack,
                                 c.resp_l2[0][0] if c.resp_l2 else None, ip, host))
        resp_ttl = c.resp_ttl
        if c.orig_pkts:
            _seen_n(self.sides, (ip, port, o_hops, HOPS_OF(resp_ttl) if c.resp_pkts else None), first, 1)
        o_l2 = c.orig_l2
        fw = ()
        if c.orig_forwarded:
            self.forwarded = True
            if c.resp_pkts:
                self.answered_forwarded = True
            fw = self._fw.get(o_l2)
            if fw is None:
                fw = self._fw[o_l2] = _forwarding_of(c)
        if s and not self.carried and (s.proxy is not None or s.xclient):
            self.carried = True
        _seen_n(self.paths, (ip, o_l2, fw, c.resp_l2, resp_ttl in INITIAL_TTLS, host), first, 1)

    def observe_all(self, records) -> None:
        """observe() of each record of a batch, in order: in C when built (_conntrack.facts_observe,
        track/_factsobserve.c, its peer: the same steps on the same tables, calling back here for a
        failed attempt's details and a new L2 path's forwarding MACs), else observe() one by one;
        DSRDIAG_TRACKER=python runs the reference. Why: observe() runs for every record as it is
        made, and in Python it was the largest step of tracking short sessions (docs/performance.md)."""
        native = _record_native()
        if native is None:
            observe = self.observe
            for c in records:
                observe(c)
        else:
            native.facts_observe(self, records, _native_env())

    def observe_rows(self, block) -> None:
        """observe() of every record of a block of lone SYNs (track/lone.py), without making the
        records: from the block's digest, a step per group (server, MACs, TTL), and the clients of
        a group taken together, in order of first appearance (lone.Digest says why that is exact).
        Where the digest cannot say what rows would (a stamp the capture clock overruled; a scanning
        source already followed whose first attempt this block would move), row by row.

        Why the clients together: a spoofed flood has as many client addresses as attempts, and
        each of the four tables they go to is bounded (SYN_SRC_MAX, ATTEMPT_SRC_MAX, DISTINCT_MAX,
        SCAN_SOURCES_MAX) and full after the first few thousand. Each table depends on nothing but
        its own past, so each is fed apart, in the pairs' order: one by one while it has room (what
        observe() does), then, full, its known keys found by one set intersection per run of a
        group's pairs (C loops over the digest's address texts, no Python step per address)."""
        d = block.digest()
        if not d.same_ts or not self._digest_exact(d, block):
            return self._observe_rows(block)
        vantage = block.vantage
        attempts = self.attempts
        row = block.row
        info = []  # per group: (server text, port, L2 text pair, hops, Attempts)
        for g, (si, sport, smac, dmac, has, ttl, alen) in enumerate(d.groups):
            ip = ip_text(si)
            l2 = l2_text(((smac if has & 1 else None, dmac if has & 2 else None),))
            v = attempts.get((ip, sport))
            if v is None:
                v = attempts[(ip, sport)] = Attempts()
            info.append((ip, sport, l2, hops(ttl), v))
            n = d.group_n[g]
            first_row = row(d.group_first[g])
            first = (first_row[2], f"{vantage}:C{first_row[0]}")
            _seen_n(self.syn_dst, (ip, sport), first, n)
            ports = self.syn_ports.get(ip)
            if ports is None:
                ports = self.syn_ports[ip] = set()
            ports.add(sport)
            _seen_n(self.sides, (ip, sport, hops(ttl), None), first, n)
            _seen_n(self.paths, (ip, l2, (), (), False, None), first, n)
            v.syns += n
            v.lone += n
            for i in (d.group_min[g], d.group_max[g]):
                t = row(i)
                ev = (t[4], t[1], f"{vantage}:C{t[0]}", address_text(t[5][:t[16]]), t[7], sport)
                if v.first is None or ev < v.first:
                    v.first = ev
                if v.last is None or ev > v.last:
                    v.last = ev
        for g, sec, n in d.secs:
            per_second = info[g][4].per_second
            per_second[sec] = per_second.get(sec, 0) + n
        for g, a, b in _runs(d):
            ip, sport, l2, h, v = info[g]
            self._syn_src_run(d, row, vantage, a, b, (ip, sport, l2[0][0], l2[0][1], None, None, h))
            _sources_run(v, d, a, b)
            _distinct_run(v.distinct, d.pair_ips[a:b])
            self._targets_run(d, row, vantage, a, b, ip, sport)

    def _syn_src_run(self, d, row, vantage: str, a: int, b: int, prefix: tuple) -> None:
        """syn_src of pairs a..b of one group: prefix is their key but the client address
        (server, port, client MACs, reply MAC, banner host, hops)."""
        syn_src, ips, pn, pf = self.syn_src, d.pair_ips, d.pair_n, d.pair_first
        ip, sport, smac, dmac, rmac, host, h = prefix
        i = a
        while i < b and len(syn_src) < SYN_SRC_MAX:  # room: every key counts, as in observe()
            t = row(pf[i])
            _seen_n(syn_src, (ip, sport, ips[i], smac, dmac, rmac, host, h), (t[2], f"{vantage}:C{t[0]}"), pn[i])
            i += 1
        if i == b:
            return
        known = self._syn_src_known().get(prefix)  # full: only keys already there count
        if not known:
            return
        hits = known.intersection(ips[i:b])
        if not hits:
            return
        at = dict(zip(ips[i:b], range(i, b)))  # a group's pairs: one per address
        for src in hits:
            j = at[src]
            t = row(pf[j])
            _seen_n(syn_src, (ip, sport, src, smac, dmac, rmac, host, h), (t[2], f"{vantage}:C{t[0]}"), pn[j])

    def _syn_src_known(self) -> dict:
        """syn_src's client addresses by the rest of their key, once it is full (its keys no longer
        change then: nothing is added past SYN_SRC_MAX, and nothing is ever removed)."""
        got = self._known
        if got is None or got[0] is not self.syn_src or got[1] != len(self.syn_src):
            index: dict = {}
            for k in self.syn_src:
                rest = k[:2] + k[3:]
                s = index.get(rest)
                if s is None:
                    s = index[rest] = set()
                s.add(k[2])
            got = self._known = (self.syn_src, len(self.syn_src), index)
        return got[2]

    def _targets_run(self, d, row, vantage: str, a: int, b: int, ip: str, sport: int) -> None:
        """targets of pairs a..b of one group (service ip:sport): a source is followed while
        there is room for it; once SCAN_SOURCES_MAX are, only those gain targets."""
        targets, ips, pf = self.targets, d.pair_ips, d.pair_first
        target = (ip, sport)
        i = a
        while i < b and len(targets) < SCAN_SOURCES_MAX:
            src = ips[i]
            tg = targets.get(src)
            if tg is None:
                t = row(pf[i])
                tg = targets[src] = [set(), (t[4], t[1], f"{vantage}:C{t[0]}", src, t[7], sport, ip)]
            if len(tg[0]) < SCAN_TARGETS_MAX:
                tg[0].add(target)
            i += 1
        if i == b:
            return
        for src in targets.keys() & ips[i:b]:
            tg = targets[src]
            if len(tg[0]) < SCAN_TARGETS_MAX:
                tg[0].add(target)

    def _digest_exact(self, d, block) -> bool:
        """No source of the block is followed already with a first attempt later than its first row
        here (observe() would move it: row by row, then)."""
        targets = self.targets
        if not targets:
            return True
        hits = targets.keys() & d.pair_ips
        if not hits:
            return True
        pf = d.pair_first
        for p, src in enumerate(d.pair_ips):
            if src in hits:
                tg = targets[src]
                if tg[1] is not None and block.row(pf[p])[2] < tg[1][0]:
                    return False
        return True

    def _observe_rows(self, block) -> None:
        """observe_rows where the digest cannot say it: each row made its record and observed (rare:
        exact by construction)."""
        for c in block:
            self.observe(c)

    @property
    def lb_interface(self) -> bool:
        """This capture sees the LB forwarding but never a reply on a forwarded connection: it is
        the load balancer's own interface, which DSR replies never pass."""
        return self.forwarded and not self.answered_forwarded

    def __getstate__(self):
        return tuple(getattr(self, k) for k in self.__slots__ if k not in ("_fw", "_known"))

    def __setstate__(self, state):
        for k, v in zip(self.__slots__, state):
            setattr(self, k, v)
        self._fw = {}
        self._known = None
