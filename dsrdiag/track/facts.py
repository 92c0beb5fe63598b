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

INITIAL_TTLS = frozenset((32, 60, 64, 128, 255))
"""TTLs a host starts with: a reply arriving with one was sent on this segment, not routed."""


SYN_SRC_MAX = 4096
STARTING_TTLS = (32, 64, 128, 255)


def hops(ttl: int | None) -> int | None:
    """Routers a packet passed since it was sent: the nearest starting TTL above it, minus it (capped)."""
    if ttl is None:
        return None
    for start in STARTING_TTLS:
        if ttl <= start:
            return min(start - ttl, 16)
    return None


def forwarders(c) -> set[str]:
    """MACs that received a client packet of `c` and re-sent it (the LB's forwarding hop)."""
    if not c.orig_forwarded:
        return set()
    dsts = {d for _, d in c.orig_l2 if d}
    return {s for s, _ in c.orig_l2 if s in dsts}


def _seen(table: dict, key, first) -> None:
    got = table.get(key)
    if got is None:
        table[key] = [1, first]
    else:
        got[0] += 1
        if first < got[1]:
            got[1] = first


class Facts:
    """One capture's facts; observe() every record (in any order), then hand the object on."""

    __slots__ = ("syn_dst", "syn_ports", "syn_src", "sides", "paths", "replies", "forwarded", "answered_forwarded", "_fw")

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
        self._fw: dict = {}  # client L2 pairs (shared tuples) -> their forwarding MACs

    def observe(self, c) -> None:
        first = (c.first_ts_ns, c.uid)
        ip = c.server_ip
        history = c.history
        saw_syn = "S" in history
        if saw_syn:
            _seen(self.syn_dst, (ip, c.server_port), first)
            ports = self.syn_ports.get(ip)
            if ports is None:
                ports = self.syn_ports[ip] = set()
            ports.add(c.server_port)
            key = (ip, c.server_port, c.client_ip, c.orig_l2[0][0] if c.orig_l2 else None,
                   c.orig_l2[0][1] if c.orig_l2 else None, c.resp_l2[0][0] if c.resp_l2 else None,
                   c.smtp.banner_host if c.smtp else None, hops(c.orig_ttl))
            if key in self.syn_src or len(self.syn_src) < SYN_SRC_MAX:
                _seen(self.syn_src, key, first)
        elif "h" in history:
            s = c.smtp
            self.replies.append((first, c.client_ip, c.client_port, c.server_port, c.synack_ack,
                                 c.resp_l2[0][0] if c.resp_l2 else None, ip, s.banner_host if s else None))
        if c.orig_pkts:
            _seen(self.sides, (ip, c.server_port, hops(c.orig_ttl), hops(c.resp_ttl) if c.resp_pkts else None), first)
        o_l2 = c.orig_l2
        fw = ()
        if c.orig_forwarded:
            self.forwarded = True
            if c.resp_pkts:
                self.answered_forwarded = True
            fw = self._fw.get(o_l2)
            if fw is None:
                fw = self._fw[o_l2] = tuple(sorted(forwarders(c)))  # sorted: a set's order varies by run
        s = c.smtp
        _seen(self.paths, (ip, o_l2, fw, c.resp_l2, c.resp_ttl in INITIAL_TTLS, s.banner_host if s else None), first)

    @property
    def lb_interface(self) -> bool:
        """This capture sees the LB forwarding but never a reply on a forwarded connection: it is
        the load balancer's own interface, which DSR replies never pass."""
        return self.forwarded and not self.answered_forwarded

    def __getstate__(self):
        return tuple(getattr(self, k) for k in self.__slots__ if k != "_fw")

    def __setstate__(self, state):
        for k, v in zip(self.__slots__, state):
            setattr(self, k, v)
        self._fw = {}
