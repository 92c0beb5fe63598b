"""The records trackers produce and findings judge: frozen, typed, the only cross-layer types.

Why frozen records separate from working state (Zeek's Info vs State): a finding can cite a record
without the tracker changing it later, and the tracker's state dies when the record is emitted.
Addresses are text (canonical) here; MACs are lowercase colon text or None where the link type
carries none (raw IP) or only the sender (Linux cooked capture).
"""

# No `from __future__ import annotations`: the record types are built at every start, and a
# NamedTuple turns each string annotation into a ForwardRef by compiling it (~10 us a field);
# the annotations here are evaluated once instead (the names they use are defined above them).

from dataclasses import dataclass, field
import os
import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from dsrdiag.track.facts import Facts

ORIG = ">"
"""Packet direction: originator (client) to responder (server)."""
RESP = "<"


class PacketNote(NamedTuple):
    """One packet of a connection, kept for evidence and per-connection detail (the first N only).

    A NamedTuple, not a dataclass: there are tens of thousands per capture, and they cross from
    worker processes to the parent; tuples pickle and unpickle in C (a slotted dataclass does not)."""

    frame: int
    ts_ns: int
    direction: str
    flags: int
    payload_len: int
    src_mac: str | None
    dst_mac: str | None
    ttl: int
    seq: int
    ack: int
    ip_id: int | None = None
    """IPv4 identification (None for IPv6): routers and DSR keep it; a proxy's packets have their own."""
    text: str | None = None
    """What the payload carries, for ladders: its first line if printable (an SMTP command or reply,
    untrusted text), `TLS` for a TLS record, else None."""

    def __reduce__(self):
        return (tuple.__new__, (PacketNote, tuple(self)))  # rebuilt in C, not through a Python __new__


_NOTE = struct.Struct("<QqBBIhhBIIih")
"""A packed note: frame, ts_ns, direction (0 '>' / 1 '<'), flags, payload_len, src/dst MAC (index
into the block's strings, -1 none), ttl, seq, ack, ip_id (-1 none), text (index, -1 none)."""


class NoteBlock:
    """The packet notes of one connection, packed: a sequence of PacketNote made on access.

    Why: a day of mail has hundreds of thousands of connections with up to 24 notes each; as
    objects they dominate memory and the time to send records from worker processes to the
    parent. Packed they cost ~40 bytes a note and pickle as one bytes object."""

    __slots__ = ("_data", "_strs")

    def __init__(self, data: bytes = b"", strs: tuple = ()):
        self._data, self._strs = data, strs

    @classmethod
    def pack_raw(cls, raw, mac, text) -> "NoteBlock":
        """From the tracker's raw note tuples (frame, ts, direction, flags, length, src MAC bytes,
        dst MAC bytes, ttl, seq, ack, ip_id, payload head), without a PacketNote per note.
        (One loop with inline lookups: this runs for every note of every connection.)"""
        strs: list = []
        index: dict = {}  # raw MAC bytes or payload text -> position in strs
        out = []
        append, pack = out.append, _NOTE.pack
        try:
            for f, ts, d, fl, ln, s, t, ttl, seq, ack, ipid, p in raw:
                si = ti = xi = -1
                if s is not None:
                    si = index.get(s)
                    if si is None:
                        si = index[s] = len(strs)
                        strs.append(mac(s))
                if t is not None:
                    ti = index.get(t)
                    if ti is None:
                        ti = index[t] = len(strs)
                        strs.append(mac(t))
                if p:
                    x = text(p)
                    if x is not None:
                        xi = index.get(x)
                        if xi is None:
                            xi = index[x] = len(strs)
                            strs.append(x)
                append(pack(f, ts, 0 if d == ORIG else 1, fl, ln, si, ti, ttl, seq, ack, -1 if ipid is None else ipid, xi))
        except struct.error:  # a corrupt capture's absurd timestamp: keep the notes as they are
            return cls(None, tuple(PacketNote(f, ts, d, fl, ln, mac(s) if s else None, mac(t) if t else None, ttl, seq, ack, ipid,
                                              text(p) if p else None)
                                   for f, ts, d, fl, ln, s, t, ttl, seq, ack, ipid, p in raw))
        return cls(b"".join(out), tuple(strs))

    def _note(self, t) -> PacketNote:
        s = self._strs
        f, ts, d, fl, ln, sm, dm, ttl, seq, ack, ipid, tx = t
        return PacketNote(f, ts, RESP if d else ORIG, fl, ln, s[sm] if sm >= 0 else None, s[dm] if dm >= 0 else None,
                          ttl, seq, ack, None if ipid < 0 else ipid, s[tx] if tx >= 0 else None)

    def __iter__(self):
        if self._data is None:
            return iter(self._strs)
        return (self._note(t) for t in _NOTE.iter_unpack(self._data))

    def __len__(self) -> int:
        return len(self._strs) if self._data is None else len(self._data) // _NOTE.size

    def __bool__(self) -> bool:
        return len(self) > 0

    def __getitem__(self, i):
        if isinstance(i, slice) or self._data is None:
            return tuple(self)[i]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("note index out of range")
        return self._note(_NOTE.unpack_from(self._data, i * _NOTE.size))

    def __add__(self, other):
        return tuple(self) + tuple(other)

    def __radd__(self, other):
        return tuple(other) + tuple(self)

    def __eq__(self, other):
        if isinstance(other, NoteBlock):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self):
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"NoteBlock({list(self)!r})"

    def __reduce__(self):
        return (NoteBlock, (self._data, self._strs))


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int
    client_ip: str | None
    client_port: int | None
    frame: int
    ts_ns: int


class SmtpDialogue(NamedTuple):
    """What the SMTP follower learnt of one connection (Zeek's smtp.log, reduced to what DSR needs).

    A NamedTuple, like PacketNote and Connection: records are unpickled on every pass over spilled
    records and when they come back from worker processes; tuples rebuild in C."""

    banner_code: int | None = None
    banner_text: str | None = None
    banner_host: str | None = None
    """The host the 220 banner names: how a user tells which back-end answered."""
    banner_frame: int | None = None
    banner_ts_ns: int | None = None
    helo: str | None = None
    """EHLO/HELO argument (the client's name)."""
    reply_codes: tuple[int, ...] = ()
    """Final reply codes in order (continuation lines are not repeated)."""
    commands: tuple[str, ...] = ()
    starttls_offered: bool = False
    starttls_started: bool = False
    """The client sent STARTTLS and the server agreed (220): the rest is encrypted."""
    xclient_offered: bool = False
    xclient: str | None = None
    """Argument of an XCLIENT command (e.g. `ADDR=203.0.113.7 NAME=...`)."""
    xclient_frame: int | None = None
    xclient_ts_ns: int | None = None
    proxy: ProxyHeader | None = None
    last_reply: str | None = None

    def __reduce__(self):
        return (tuple.__new__, (SmtpDialogue, tuple(self)))


class Connection(NamedTuple):
    """One TCP connection on a service port, as seen at one vantage point (Zeek's conn.log line).

    Orientation follows Zeek: the originator sent the first SYN; a connection first seen from its
    responder (SYN-ACK, or data from the service port) is flipped and its history starts with '^'.
    What a vantage cannot tell: a capture on one side of an asymmetric path sees one direction
    only; conn_state then reads S0/SH/SHR/OTH although the endpoints may be happily talking.
    """

    uid: str
    capture: str
    vantage: str
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    ip_version: int
    first_ts_ns: int
    last_ts_ns: int
    history: str
    """Zeek history letters: S h A a D d F f R r T t W w G g I i Q q ^ (upper = originator)."""
    conn_state: str
    """Zeek conn_state: S0 S1 SF REJ S2 S3 RSTO RSTR RSTOS0 RSTRH SH SHR OTH."""
    orig_pkts: int
    resp_pkts: int
    orig_bytes: int
    resp_bytes: int
    missed_bytes: int
    orig_forwarded: int
    """Client packets seen twice here: once to a MAC, then re-sent by that MAC (LB forwarding)."""
    resp_forwarded: int
    orig_l2: tuple[tuple[str | None, str | None], ...]
    """Distinct (source MAC, destination MAC) pairs of client->server packets, in order of appearance."""
    resp_l2: tuple[tuple[str | None, str | None], ...]
    orig_ttl: int | None
    resp_ttl: int | None
    syn_seq: int | None
    """Sequence number of the client's (first) SYN: matches a reply that comes from the wrong address."""
    synack_ack: int | None
    """Acknowledgement number of the responder's SYN-ACK."""
    packets: NoteBlock
    """The first packets of the connection (bounded), for evidence and -v detail."""
    syn_frames: NoteBlock
    """Every client SYN (retransmissions included, bounded): syn_unanswered cites them."""
    forwarded_frames: NoteBlock = NoteBlock()
    """The forwarded copies themselves (first ones, bounded): the frames that show the LB's hop."""
    smtp: SmtpDialogue | None = None
    tunneled_from: str | None = None
    """Client packets arrived encapsulated (IP-in-IP, 6in4, GRE) from this address: a tunnelling
    load balancer (LVS-TUN style); the connection's addresses are those inside."""

    @property
    def key(self) -> tuple[str, int, str, int]:
        return (self.client_ip, self.client_port, self.server_ip, self.server_port)

    # A NamedTuple, rebuilt in C when unpickled (no Python __new__ or __setstate__): records cross
    # from worker processes to the parent, and every pass over spilled records unpickles them all
    # (docs/performance.md: ~3x faster than the slotted dataclass this was).
    def __reduce__(self):
        return (tuple.__new__, (Connection, tuple(self)))

    @property
    def saw_syn(self) -> bool:
        return "S" in self.history

    @property
    def saw_synack(self) -> bool:
        return "h" in self.history

    @property
    def saw_orig(self) -> bool:
        return self.orig_pkts > 0

    @property
    def saw_resp(self) -> bool:
        return self.resp_pkts > 0


_new = tuple.__new__


def _fields_as_members(*types) -> None:
    """Each field of these NamedTuples read by a member descriptor at its item's place, when the C
    extension is built (_conntrack.fields_as_members): the interpreter specializes reading a
    member (LOAD_ATTR_SLOT, a load at an offset) but not a NamedTuple's field property, which is a
    generic attribute lookup and a call (~2x as long, measured). Records are read field by field
    by every pass (the rules, the tallies, the JSON list): ~50 reads a record. The values, the
    order and the errors are the same (a field cannot be set either way). A member does not
    check the tuple's length: these types are only ever made with all their fields (their
    __new__, the C record maker and codecs, and unflatten, which checks)."""
    try:
        from dsrdiag.track import _conntrack
    except ImportError:  # not built: the properties NamedTuple made
        return
    for t in types:
        _conntrack.fields_as_members(t)


_fields_as_members(Connection, SmtpDialogue)


def flatten(c: Connection) -> tuple:
    """A record as plain values (its note blocks as their bytes and strings, its dialogue as a
    tuple): what the record store pickles when a batch does not pack (track/packed.py: a PROXY
    header in a dialogue, notes that could not be packed). Why: a NamedTuple pickles through its
    __reduce__, a Python call per object (the record, three note blocks, a dialogue); plain tuples
    of bytes, str and int pickle and unpickle in C: measured 2x faster both ways on 20k SMTP sessions."""
    s = c.smtp
    p, y, f = c.packets, c.syn_frames, c.forwarded_frames
    return c[:25] + (p._data, p._strs, y._data, y._strs, f._data, f._strs, None if s is None else tuple(s), c.tunneled_from)


def unflatten(t: tuple) -> Connection:
    """flatten's inverse: the equal record (ValueError for a tuple that is not a flattened record)."""
    if len(t) != _FLAT_N or t[31] is not None and len(t[31]) != _DIALOGUE_N:
        raise ValueError(f"unflatten: a flattened record has {_FLAT_N} values and a dialogue {_DIALOGUE_N}")
    s = t[31]
    return _new(Connection, t[:25] + (NoteBlock(t[25], t[26]), NoteBlock(t[27], t[28]), NoteBlock(t[29], t[30]),
                                      None if s is None else _new(SmtpDialogue, s), t[32]))


_FLAT_N = 33
_DIALOGUE_N = len(SmtpDialogue._fields)


def flatten_all(batch: list) -> list:
    """flatten() of each record of a batch (Connection records only): in C when built
    (_conntrack.flatten_all, its peer), else flatten_all_py; DSRDIAG_TRACKER=python runs the reference."""
    native = _record_native()
    return flatten_all_py(batch) if native is None else native.flatten_all(batch, _TYPES)


def unflatten_all(batch: list) -> list:
    """unflatten() of each flattened record of a batch: in C when built (_conntrack.unflatten_all)."""
    native = _record_native()
    return unflatten_all_py(batch) if native is None else native.unflatten_all(batch, _TYPES)


def flatten_all_py(batch: list) -> list:
    return [flatten(r) for r in batch]


def unflatten_all_py(batch: list) -> list:
    return list(map(unflatten, batch))


_TYPES = (Connection, NoteBlock, SmtpDialogue)


def _record_native():
    """The C peers, unless DSRDIAG_TRACKER=python asks for the references (read per batch)."""
    if os.environ.get("DSRDIAG_TRACKER", "c") == "python":
        return None
    try:
        from dsrdiag.track import _conntrack
    except ImportError:  # not built: the references
        return None
    return _conntrack


@dataclass(frozen=True, slots=True)
class Claim:
    """A MAC claiming an IP: an ARP reply, a gratuitous ARP, an ND advertisement or DAD probe."""

    ip: str
    mac: str
    kind: str
    """arp-reply | arp-gratuitous | nd-advert | nd-dad"""
    frame: int
    ts_ns: int
    src_mac: str | None
    """The frame's Ethernet source (normally equal to `mac`; a difference is itself suspicious)."""


@dataclass(frozen=True)
class NeighbourTable:
    """Everything ARP/NDP said about who holds which IP (bounded per IP)."""

    claims: dict[str, tuple[Claim, ...]] = field(default_factory=dict)
    """Per IP, in order: the first claims per MAC and changes of MAC, then the most recent (bounded)."""
    requests: dict[str, int] = field(default_factory=dict)
    """Per IP: how many who-has / neighbour solicitations asked for it."""
    requesters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Per IP: the first few MACs that asked for it."""
    claim_counts: dict[tuple[str, str], int] = field(default_factory=dict)
    """(ip, mac) -> number of claims."""
    mac_changes: dict[str, int] = field(default_factory=dict)
    """Per IP: how many times the claiming MAC changed (exact; the claims kept are a bounded sample)."""
    overflow: int = 0
    """Claims and requests not kept because MAX_IPS addresses or MAX_PAIRS (ip, mac) were held already."""


class TimeSteps(NamedTuple):
    """Timestamps that went wrong in one capture's tracked packets (TCP on the service ports): the
    capture clock never goes back, and one packet stamped far ahead does not move it (ConnTracker's
    clock), so they are counted here instead of splitting or stretching connections."""

    backwards: int = 0
    """Packets stamped before the capture clock (an earlier packet's time)."""
    largest_backwards_ns: int = 0
    outliers: int = 0
    """Packets stamped more than track/conn.py MAX_CLOCK_STEP ahead that the next packet did not confirm."""
    largest_outlier_ns: int = 0

    def __bool__(self) -> bool:
        return bool(self.backwards or self.outliers)

    def text(self) -> str:
        """`backwards steps 3 (largest 1.5 s), jumps ahead 1 (largest 7200.0 s)`, for a report."""
        return (f"backwards steps {self.backwards} (largest {self.largest_backwards_ns / 1e9:.1f} s), "
                f"jumps ahead {self.outliers} (largest {self.largest_outlier_ns / 1e9:.1f} s)")


@dataclass(frozen=True)
class CaptureRecords:
    """Everything one capture produced: the input of findings/ for one vantage."""

    capture: str
    vantage: str
    connections: "Iterable[Connection]"
    """A RecordSeq (track/spill.py): iterate it, take len(); beyond a bound the records are on disk."""
    neighbours: NeighbourTable
    anomalies: dict[str, int]
    anomaly_frames: dict[str, int]
    """First frame of each anomaly name."""
    frames: int
    passed: int
    linktypes: tuple[int, ...]
    damage: str | None
    skipped: dict[int, int]
    reader: str
    first_ts_ns: int | None
    last_ts_ns: int | None
    facts: "Facts"
    """What topology inference needs of every record, gathered as they were made (track/facts.py)."""
    time_steps: TimeSteps = TimeSteps()
    """Timestamps that stepped back or jumped ahead (counted, not obeyed)."""
    snaplen_cut: int = 0
    """Tracked TCP packets whose payload the capture's snaplen cut (a headers-only capture): their
    lengths come from the IP header, their bytes count as content gaps (docs/conn-states.md)."""
    unwrapped: dict[str, int] = field(default_factory=dict)
    """Decoded packets that came out of a wrapper (MPLS, PPPoE, VXLAN, Geneve, Teredo), per wrapper
    label ("VXLAN VNI 42"): decode/tunnel.py."""


def flow_key(c) -> tuple:
    """One connection at every vantage: client address and port, service port, and the client's ISN
    (from its SYN, or the SYN-ACK's acknowledgement), so that a reused source port is another flow."""
    isn = c.syn_seq if c.syn_seq is not None else ((c.synack_ack - 1) & 0xFFFFFFFF if c.synack_ack is not None else None)
    return (c.client_ip, c.client_port, c.server_port, isn)
