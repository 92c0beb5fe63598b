"""What every rule needs about one vantage: its records, the topology, and evidence helpers.

Why: rules stay short and uniform (one module per kind, `check(ctx) -> Iterator[Finding]`), and
all of them name back-ends and cite frames the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from dsrdiag.core.evidence import FrameRef
from dsrdiag.core.topology import Topology
from dsrdiag.decode.tcp import flag_text
from dsrdiag.findings.finding import BackendRef
from dsrdiag.track.facts import forwarders
from dsrdiag.track.history import FLAGS, SYNS_ONLY
from dsrdiag.track.records import ORIG, CaptureRecords, Connection, PacketNote

SETTLE_NS = 3_000_000_000
"""A SYN counts as unanswered only if the capture went on this long after it, or it was retransmitted."""
NOT_RETRIED_NS = 3_500_000_000
"""A lone SYN was answered some other way if the capture went on this long after it without a
retransmission: longer than any stack's first SYN retransmission (Linux and macOS 1 s, Windows 3 s)."""


CONFLICT_NS = 1_000_000_000
"""Two MACs claiming one address within this long of each other answer at once: a conflict, not a move."""


def claim_conflict(claims) -> list[str]:
    """The MACs that claim one address at the same time: two of them within CONFLICT_NS, or taking
    it back and forth (A, B, A). One MAC following another once (a laptop docked, an HA pair that
    failed over and announced it from its new MAC) is a move, not a conflict."""
    out: set[str] = set()
    last_of: dict[str, int] = {}
    order: list[str] = []
    for c in sorted(claims, key=lambda c: c.ts_ns):
        for mac, ts in last_of.items():
            if mac != c.mac and c.ts_ns - ts <= CONFLICT_NS:
                out |= {mac, c.mac}
        last_of[c.mac] = c.ts_ns
        if not order or order[-1] != c.mac:
            if c.mac in order:  # taken back: every MAC it moved between is in conflict
                out |= set(order[order.index(c.mac):]) | {c.mac}
            order.append(c.mac)
    return sorted(out)


def answers_syn(synack_ack: int | None, syn_seq: int | None) -> bool:
    """A SYN-ACK answers a SYN when it acknowledges the SYN's ISN+1 (the one match, written once)."""
    return synack_ack is not None and syn_seq is not None and synack_ack == (syn_seq + 1) & 0xFFFFFFFF


@dataclass
class Context:
    records: CaptureRecords
    topology: Topology

    def __post_init__(self):
        t = self.topology
        self.vips = t.vip_ips
        self.ports = frozenset(t.ports)
        self.lb_macs = t.lb_mac_set
        self.lb_ips = t.lb_ip_set
        self.vantage = self.records.vantage
        self.capture = self.records.capture
        self.end_ts = self.records.last_ts_ns or 0
        self.lb_interface = self.records.facts.lb_interface
        """This capture sees the LB forwarding but never a reply on a forwarded connection: it is
        the load balancer's own interface, which DSR replies never pass."""
        self.backend_macs = frozenset(b.mac for b in t.backends if b.mac)
        self.answered_elsewhere = frozenset((rep[1], rep[2], rep[3]) for rep in self.records.facts.replies)
        """(client, port, service port) of replies from an address that is not the VIP: those SYNs were answered."""
        self._backend_memo: dict[tuple, BackendRef | None] = {}
        """backend_of by what it reads: a day of mail has few distinct L2 paths and hosts, and the
        report asks twice per connection (back-end table, connection list)."""
        self.delivered_memo: tuple[dict, dict] = ({}, {})
        """delivered_to by what it reads: the client L2 pairs, of connections not forwarded here
        and of forwarded ones (the topology and the LB's MACs are this context's); [forwarded][L2
        pairs] -> MAC or None. A collector may read it before asking delivered_to() (a call saved
        per connection)."""
        self.servers = self.vips | frozenset(b.ip for b in t.backends if b.ip)
        """The VIPs and the back-ends' own addresses: the servers whose connections some kinds judge
        (is_vip_conn(c) or topology.backend_by_ip(c.server_ip), as a set)."""

    # ---- selections ----------------------------------------------------------------------
    def service_conns(self) -> Iterator[Connection]:
        """The connections on the service ports, one pass (records may be streamed from disk)."""
        ports = self.ports
        return (c for c in self.records.connections if c.server_port in ports)

    def is_vip_conn(self, c: Connection) -> bool:
        """A connection to a VIP (none without a VIP: a finding about the service needs one)."""
        return c.server_ip in self.vips

    def forwarded_by_lb(self, c: Connection) -> bool:
        fw = forwarders(c)
        return bool(fw & self.lb_macs) if self.lb_macs else bool(fw)

    def lb_view(self, c: Connection) -> bool:
        """Seen at the LB's own interface: whether the back-end answered cannot be seen here."""
        return self.lb_interface and c.orig_forwarded > 0

    def settled(self, c: Connection) -> bool:
        """Had the reply time to come? (retransmitted SYN, or the capture went on long enough)"""
        if len(c.syn_frames) > 1:
            return True
        return self.end_ts - c.first_ts_ns >= SETTLE_NS

    def not_retried(self, c: Connection) -> bool:
        """One SYN, never retransmitted, although the capture went on long enough for a retry."""
        return len(c.syn_frames) == 1 and self.end_ts - c.first_ts_ns >= NOT_RETRIED_NS

    def only_syns(self, c: Connection) -> bool:
        """The client's SYNs and nothing else of the connection passed here."""
        return not c.resp_pkts and bool(FLAGS[c.history] & SYNS_ONLY)

    def is_backend_mac(self, mac: str | None) -> bool:
        return bool(mac) and mac in self.backend_macs

    # ---- back-ends -------------------------------------------------------------------------
    def backend(self, mac: str | None = None, ip: str | None = None) -> BackendRef | None:
        b = self.topology.backend_by_mac(mac) or (self.topology.backend_by_ip(ip) if ip and ip not in self.vips else None)
        if b is not None:
            return BackendRef(b.name, b.ip or (ip if ip not in self.vips else None), b.mac or mac, b.source)
        if mac or ip:
            return BackendRef(ip or f"backend-{mac}", ip, mac, "inferred")
        return None

    def delivered_to(self, c: Connection) -> str | None:
        """The back-end MAC a client packet was delivered to (after the LB's rewrite), if visible.
        Remembered per client L2 path (and whether it was forwarded: all it reads of `c`), as
        backend_of is: asked per connection by several kinds."""
        memo = self.delivered_memo[c.orig_forwarded > 0]
        o_l2 = c.orig_l2
        try:
            return memo[o_l2]
        except KeyError:
            mac = memo[o_l2] = self._delivered_to(c)
            return mac

    def _delivered_to(self, c: Connection) -> str | None:
        fw = forwarders(c)
        for s, d in c.orig_l2:
            if d and (s in fw or s in self.lb_macs) and d not in self.lb_macs:
                return d
        for _, d in c.orig_l2:
            if d and self.topology.backend_by_mac(d):
                return d
        return None

    def backend_of(self, c: Connection) -> BackendRef | None:
        smtp = c.smtp
        key = (c.orig_l2, c.resp_l2, c.orig_forwarded > 0, c.server_ip, smtp.banner_host if smtp else None)
        try:
            return self._backend_memo[key]
        except KeyError:
            ref = self._backend_memo[key] = self._backend_of(c)
            return ref

    def _backend_of(self, c: Connection) -> BackendRef | None:
        mac = self.delivered_to(c)
        if mac is None:
            for s, _ in c.resp_l2:
                if s and self.topology.backend_by_mac(s):
                    mac = s
                    break
        host_ip = c.server_ip if c.server_ip not in self.vips else None
        ref = self.backend(mac, host_ip) if (mac or host_ip) else None
        if ref is None and c.smtp and c.smtp.banner_host:
            b = next((b for b in self.topology.backends if b.name == c.smtp.banner_host), None)
            if b:
                ref = BackendRef(b.name, b.ip, b.mac, b.source)
        return ref

    # ---- evidence ----------------------------------------------------------------------------
    def ref(self, note: PacketNote, c: Connection, what: str | None = None) -> FrameRef:
        if what is None:
            src, dst = (c.client_ip, c.server_ip) if note.direction == ORIG else (c.server_ip, c.client_ip)
            what = f"{flag_text(note.flags)} {src} -> {dst}" + (f" len={note.payload_len}" if note.payload_len else "")
        return FrameRef(note.ts_ns, self.capture, self.vantage, note.frame, what)

    def frame(self, frame: int, ts_ns: int, what: str) -> FrameRef:
        return FrameRef(ts_ns, self.capture, self.vantage, frame, what)


def first(notes, pred):
    return next((n for n in notes if pred(n)), None)
