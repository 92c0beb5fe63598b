"""TCP connection tracking with Zeek's conn.log semantics: history letters and conn_state.

Reads: decoded TCP packets of one vantage. Produces: a Connection record per connection.
Never: judges (asymmetric, unanswered... is findings/' job); guesses the service from payload.

Why Zeek's semantics, letter for letter: the users of this tool read conn.log every day; a
connection dsrdiag calls `S0` with history `Ss` must mean exactly what Zeek would say. The endpoint
state machine, the history rules (a/d/i/q once per direction; s/h/f/r again when the sequence
number differs; t/w/g logarithmically at 1, 10, 100...) and the conn_state function follow Zeek's
TCPSessionAdapter.cc and base/protocols/conn/main.zeek; so do the timers that end a connection
(a later packet of the 4-tuple starts a new one), the reuse of a 4-tuple by a SYN (IsReuse), the
payload length (the IP length's, whatever the snaplen kept) and the content gaps (holes below an
ACK, TCP_Reassembler's rules). Differences, on purpose, are listed in docs/conn-states.md (e.g.
checksums are not verified, like `zeek -C`; a timestamp far ahead waits for the next packet).
"""

from __future__ import annotations

import os

from dsrdiag.core.addr import ip_text
from dsrdiag.decode.proxyproto import parse_proxy
from dsrdiag.decode.tcp import ACK, FIN, RST, SYN
from dsrdiag.track import lone
from dsrdiag.track.facts import Facts
from dsrdiag.track.intern import ip_text as shared_ip
from dsrdiag.track.intern import l2_text, mac_text, shared, tables
from dsrdiag.track.records import ORIG, RESP, Connection, NoteBlock, PacketNote, SmtpDialogue, TimeSteps
from dsrdiag.track.smtp import BANNERS, SmtpFollower, banner_parts, dialogue
from dsrdiag.track.spill import RecordSeq, RecordSink

try:
    from dsrdiag.track import _conntrack as _native  # the C Tracker (track/_conntrack.c)
except ImportError:  # no compiler at install time: ConnState below does the same work
    _native = None

INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)
_M = 0xFFFFFFFF
_TOO_LARGE = 1048576
MAX_NOTES = 24
PEEK = 80
"""Payload bytes kept per noted packet: the first line of an SMTP command or reply."""
MAX_SYNS = 16
MAX_L2 = 6
FORWARD_WINDOW_NS = 50_000_000
"""A copy of a packet re-sent by the MAC it was addressed to within 50 ms is a forwarded copy."""
MAX_OOO = 64
"""Out-of-order segments held per direction before the gap is declared and skipped."""
_S = 1_000_000_000
# Zeek's TCP timers (init-bare.zeek defaults), which end a connection: later packets of the same
# 4-tuple start a new one (TCPSessionAdapter.cc AttemptTimer/ExpireTimer/ConnDeleteTimer, Session.cc
# InactivityTimer). docs/conn-states.md says which of Zeek's timers dsrdiag leaves out and why.
TCP_SYN_TIMEOUT = 5 * _S
"""First ExpireTimer tick after the connection's first packet."""
TCP_SESSION_TIMER = 6 * _S
"""ExpireTimer period."""
TCP_CONNECTION_LINGER = 5 * _S
"""ExpireTimer removes a closed/half-closed/reset connection idle this long."""
TCP_ATTEMPT_DELAY = 5 * _S
"""A SYN unanswered this long is a finished attempt (S0)."""
TCP_CLOSE_DELAY = 5 * _S
"""A connection closed on both sides (or reset) is removed this long after its last activity."""
TCP_INACTIVITY_TIMEOUT = 300 * _S
"""Inactivity timeout once the handshake is over (before: udp_inactivity_timeout, as Zeek sets it)."""
UDP_INACTIVITY_TIMEOUT = 60 * _S
_HANDSHAKE = (0, 1, 2)  # INACTIVE, SYN_SENT, SYN_ACK_SENT
MAX_CLOCK_STEP = 600 * _S
"""A timestamp further than this ahead of the capture clock moves the clock only when the next
packet confirms it: one packet stamped hours ahead must not time out every other connection."""
TS_MAX = (1 << 63) - (1 << 42)
"""The clock stops here (73 minutes before the end of int64 nanoseconds): a timer set from it still
fits in 64 bits, in C as in Python (a hostile pcapng can stamp anything)."""
TAKE = 4096
"""Finished connections taken from the C tracker at a time (its more())."""


def _clean(ep) -> bool:
    """Zeek's is_clean: established, or closed from established (gaps count only then)."""
    return ep.state == ESTABLISHED or (ep.state == CLOSED and ep.prev_state == ESTABLISHED)


def seq_delta(a: int, b: int) -> int:
    d = (a - b) & _M
    return d - 0x100000000 if d >= 0x80000000 else d


def _raise_ack(peer, ack: int) -> None:
    """The highest ACK the peer's data got (Zeek: ack_seq), ignoring wild jumps."""
    d = seq_delta(ack, peer.ack_seq)
    if d > 0 and not (ack == 0 and d > _TOO_LARGE):
        peer.ack_seq = ack & _M


class _Endpoint:
    __slots__ = (
        "state", "prev_state", "start_seq", "last_seq", "ack_seq", "fin_cnt", "seen",
        "last_syn", "last_fin", "last_rst", "rxmit", "rxmit_thr", "zw", "zw_thr", "gaps", "gap_thr",
        "did_close", "pkts", "l2", "ttl", "next_seq", "ooo", "missed", "last_sig", "copies", "fin_end",
    )

    def __init__(self):
        self.state = self.prev_state = INACTIVE
        self.start_seq = self.last_seq = self.ack_seq = 0
        self.fin_cnt = 0
        self.seen = set()
        self.last_syn = self.last_fin = self.last_rst = 0
        self.rxmit = self.zw = self.gaps = 0
        self.rxmit_thr = self.zw_thr = self.gap_thr = 1
        self.did_close = False
        self.pkts = 0
        self.l2: list = []
        self.ttl = None
        self.next_seq = None
        """Next in-order payload sequence number (stream reassembly); None until data is seen."""
        self.ooo: dict[int, bytes] = {}
        self.missed = 0
        self.last_sig = None
        """(seq, ack, flags, length, ip_id/window, ts, src MAC, dst MAC) of the last packet."""
        self.copies = 0
        """Packets seen a second time with other MACs: the load balancer's forwarded copy."""
        self.fin_end = 0
        """Sequence number one past this endpoint's (last) FIN (Zeek: FIN_seq): ACKs beyond it are capped."""

    def set_state(self, s: int) -> None:
        if s != self.state:
            self.prev_state, self.state = self.state, s

    def init_seqs(self, start: int, last: int) -> None:
        self.start_seq = self.ack_seq = start & _M
        self.last_seq = last & _M

    def side(self, peer_state: int) -> tuple:
        """What the record keeps of this endpoint (connection_record's `o`/`r`)."""
        return (self.pkts, self.size(peer_state) if self.state != INACTIVE else 0, self.missed, self.copies, self.l2, self.ttl)

    def size(self, peer_state: int) -> int:
        """Zeek's TCP_Endpoint::Size: bytes by sequence numbers, SYN and FIN not counted."""
        if (self.prev_state == SYN_SENT and self.state == RESET and peer_state == INACTIVE
                and self.ack_seq not in (self.start_seq, (self.start_seq + 1) & _M)):
            return 0  # a half-open connection found and aborted: its numbers mean nothing
        top = self.last_seq if seq_delta(self.last_seq, self.ack_seq) > 0 else self.ack_seq
        size = seq_delta(top, self.start_seq)
        if size > 0:
            size -= 1
        if self.fin_cnt and size > 0:
            size -= 1
        return max(size, 0)


class ConnState:
    """Working state of one connection; dies when its Connection record is emitted."""

    __slots__ = (
        "uid", "orig_key", "orig", "resp", "history", "first_ts", "last_ts", "notes", "syns",
        "syn_seq", "synack_ack", "smtp", "c_ip", "c_port", "s_ip", "s_port", "fwd_notes", "tunnel_src",
        "zlast", "attempt_at", "chains", "delete_at",
    )

    def __init__(self, uid: str, p, is_orig_sender: bool, flipped: bool, now: int | None = None):
        self.uid = uid
        if is_orig_sender:
            self.c_ip, self.c_port, self.s_ip, self.s_port = p.src, p.sport, p.dst, p.dport
        else:
            self.c_ip, self.c_port, self.s_ip, self.s_port = p.dst, p.dport, p.src, p.sport
        self.orig_key = (self.c_ip, self.c_port, self.s_ip, self.s_port)
        self.orig = _Endpoint()
        self.resp = _Endpoint()
        self.history: list[str] = ["^"] if flipped else []
        self.first_ts = self.last_ts = p.ts_ns if now is None else now
        self.zlast = self.first_ts
        """Zeek's LastTime: the last packet's time, frozen once both sides closed (timers count from it)."""
        self.attempt_at = None
        self.chains = [self.first_ts + TCP_SYN_TIMEOUT]
        """First tick of each ExpireTimer chain (period TCP_SESSION_TIMER)."""
        self.delete_at = None
        self.notes: list[PacketNote] = []
        self.syns: list[PacketNote] = []
        self.fwd_notes: list[PacketNote] = []
        self.syn_seq = None
        self.synack_ack = None
        self.smtp = SmtpFollower()
        self.tunnel_src = None
        """Outer source address of the first encapsulated (IP-in-IP/GRE) client packet."""

    # ---- history helpers (Zeek's CheckHistory / ScaledHistoryEntry) --------------------
    def _check(self, ep: _Endpoint, is_orig: bool, code: str) -> bool:
        """Record `code` the first time it is seen for this endpoint; True if it had been seen."""
        mask = "S" if code in "SH" else code
        if mask in ep.seen:
            return True
        ep.seen.add(mask)
        self.history.append(code if is_orig else code.lower())
        return False

    def _add(self, is_orig: bool, code: str) -> None:
        self.history.append(code if is_orig else code.lower())

    # ---- the per-packet entry point -------------------------------------------------------
    def process(self, p, is_orig: bool, now: int | None = None) -> None:
        """`now`: the capture clock at this packet (ConnTracker's; the packet's time unless it jumped)."""
        ep, peer = (self.orig, self.resp) if is_orig else (self.resp, self.orig)
        flags, seq, ack = p.flags, p.seq, p.ack
        cut = p.cut
        plen = len(p.payload) + cut  # the IP length's, as Zeek: a snaplen-cut segment still carries its bytes
        syn, fin, rst, ackf = flags & SYN, flags & FIN, flags & RST, flags & ACK
        if now is None:
            now = p.ts_ns
        if not (self.orig.did_close and self.resp.did_close):
            self.last_ts = now  # Zeek's last_time: not moved once both sides closed (TCPSessionAdapter)
        pair = (p.src_mac, p.dst_mac)
        if pair not in ep.l2 and len(ep.l2) < MAX_L2:
            ep.l2.append(pair)
        if p.tunnel is not None and is_orig and self.tunnel_src is None:
            self.tunnel_src = p.tunnel
        sig = (seq, ack, flags, plen, p.ip_id if p.ip_id is not None else p.win)
        last = ep.last_sig
        if (
            last is not None and last[0] == sig and p.ts_ns - last[1] < FORWARD_WINDOW_NS
            and last[2] != pair and p.src_mac is not None and p.src_mac == last[2][1]
        ):
            # The same IP packet again, now sent by the MAC it was addressed to: a load balancer
            # (or router) forwarding it on the same segment. Not a retransmission: record the
            # L2 hop and leave the TCP state alone.
            ep.copies += 1
            ep.last_sig = (sig, p.ts_ns, pair)
            if len(self.fwd_notes) < MAX_SYNS:
                self.fwd_notes.append((p.frame, p.ts_ns, ORIG if is_orig else RESP, flags, plen, p.src_mac, p.dst_mac, p.ttl, seq, ack,
                                       p.ip_id, None))
            return
        ep.last_sig = (sig, p.ts_ns, pair)
        ep.pkts += 1
        if not (self.orig.did_close and self.resp.did_close):
            self.zlast = now
        if ep.ttl is None:
            ep.ttl = p.ttl
        if (
            (flags & 0x17) == ACK and ep.state == ESTABLISHED and peer.state == ESTABLISHED and seq == ep.last_seq
            and p.win and len(self.notes) >= MAX_NOTES and not self.smtp.wants_data and not cut
            and (("D" in ep.seen and seq == ep.next_seq and not ep.ooo) if plen else "A" in ep.seen)
        ):
            # Established fast path (most packets of a day of mail: TLS records and their ACKs):
            # in order, no SYN/FIN/RST, no zero window, nothing left to note or to parse, and the
            # history letters it would add are already there. Only what the full path would
            # change remains: the peer's highest ACK, this side's sequence, and gaps the ACK shows.
            _raise_ack(peer, ack)
            if plen:
                ep.last_seq = ep.next_seq = (seq + plen) & _M
            self._ack_gap(peer, is_orig, ack, p)
            return
        note = None
        if len(self.notes) < MAX_NOTES or (syn and not ackf and len(self.syns) < MAX_SYNS):
            # raw tuples here; PacketNote (with MAC text) is made once, when the record is emitted
            note = (p.frame, p.ts_ns, ORIG if is_orig else RESP, flags, plen, p.src_mac, p.dst_mac, p.ttl, seq, ack,
                    p.ip_id, p.payload[:PEEK] if plen else None)
            if len(self.notes) < MAX_NOTES:
                self.notes.append(note)
        if syn and not ackf and is_orig:
            if self.syn_seq is None:
                self.syn_seq = seq
            if note is not None and len(self.syns) < MAX_SYNS:
                self.syns.append(note)
        if syn and ackf and not is_orig and self.synack_ack is None:
            self.synack_ack = ack

        seg_len = plen + (1 if syn else 0) + (1 if fin else 0) - (plen if rst else 0)
        seq_end = (seq + seg_len) & _M

        # init_endpoint
        st = ep.state
        if st == INACTIVE:
            if syn:
                ep.init_seqs(seq, seq_end)
            else:
                ep.init_seqs(seq - 1, seq)
        elif st in (SYN_SENT, SYN_ACK_SENT):
            if syn and seq != ep.start_seq:
                ep.init_seqs(seq, seq_end)
        elif st in (ESTABLISHED, PARTIAL):
            if syn:
                ep.init_seqs(seq, seq_end)
        elif st == RESET and syn and ep.prev_state == INACTIVE:
            ep.init_seqs(seq, seq_end)
        rel = seq_delta(seq, ep.start_seq)

        # update_history
        bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
        if bits > 1:
            self._check(ep, is_orig, "I" if (fin and rst) else "Q")
        elif bits == 1:
            if syn:
                code = "H" if ackf else "S"
                if self._check(ep, is_orig, code) and rel != ep.last_syn:
                    self._add(is_orig, code)
                ep.last_syn = rel
            if fin:
                if self._check(ep, is_orig, "F") and rel + plen != ep.last_fin:
                    self._add(is_orig, "F")
                ep.last_fin = rel + plen
            if rst:
                if self._check(ep, is_orig, "R") and rel != ep.last_rst:
                    self._add(is_orig, "R")
                ep.last_rst = rel
        elif plen:
            self._check(ep, is_orig, "D")
        elif ackf:
            self._check(ep, is_orig, "A")

        # zero window (update_window)
        if p.win == 0 and not rst and peer.state != CLOSED and ep.state != RESET:
            ep.zw, ep.zw_thr = self._scaled(is_orig, "W", ep.zw, ep.zw_thr)

        if fin:
            ep.fin_cnt += 1
            ep.fin_end = seq_end

        if ackf:
            if peer.state == INACTIVE:
                peer.init_seqs(ack - 1, ack - 1)
            elif not rst:
                _raise_ack(peer, ack)

        # update_last_seq (uses the state before the state machine runs)
        delta_last = seq_delta(seq_end, ep.last_seq)
        if (syn or rst) and (delta_last > _TOO_LARGE or delta_last < -_TOO_LARGE):
            pass
        elif fin and ep.last_seq == (ep.start_seq + 1) & _M:
            ep.last_seq = seq_end
        elif ep.state == RESET:
            pass
        elif delta_last > 0:
            ep.last_seq = seq_end
        elif plen > 0:
            ep.rxmit, ep.rxmit_thr = self._scaled(is_orig, "T", ep.rxmit, ep.rxmit_thr)

        if self._state_machine(ep, peer, is_orig, syn, fin, rst, ackf, plen, now) and not ep.did_close:
            self._closed(ep, peer)

        # payload stream for the SMTP follower (whole segments only: Zeek's reassembler takes no
        # snaplen-cut segment), and content gaps seen through the peer's ACKs (Zeek's AckReceived)
        if plen and not rst and not cut:
            self._stream(ep, is_orig, (seq + 1) & _M if syn else seq, p.payload, p)
        if ackf:
            self._ack_gap(peer, is_orig, ack, p)

    def _ack_gap(self, peer: _Endpoint, is_orig: bool, ack: int, p) -> None:
        """An ACK beyond the bytes seen from the peer: the holes below it were missed (Zeek's
        TCP_Reassembler::AckReceived/Undelivered). The stream starts at the peer's first sequence
        number, so data never captured at all still shows (its FIN's ACK reveals it)."""
        if peer.state == INACTIVE:
            return
        if peer.next_seq is None:
            peer.next_seq = (peer.start_seq + 1) & _M
        if peer.fin_cnt and seq_delta(ack, peer.fin_end) >= 0:
            ack = (peer.fin_end - 1) & _M  # the FIN's own sequence number is no data
        gap = seq_delta(ack, peer.next_seq)
        if gap <= 0:
            return
        missed, pos = 0, peer.next_seq  # holes only: segments held out of order were seen
        for s in sorted(peer.ooo, key=lambda s: seq_delta(s, peer.next_seq)):
            if seq_delta(s, ack) >= 0:
                break
            if seq_delta(s, pos) > 0:
                missed += seq_delta(s, pos)
                pos = s
            end = (s + len(peer.ooo[s])) & _M
            if seq_delta(end, pos) > 0:
                pos = end
        if seq_delta(ack, pos) > 0:
            missed += seq_delta(ack, pos)
        if missed:
            me = self.orig if is_orig else self.resp  # the ACK's sender
            if _clean(peer) and _clean(me):  # Zeek: established_or_cleanly_closing
                peer.missed += missed
                peer.gaps, peer.gap_thr = self._scaled(not is_orig, "G", peer.gaps, peer.gap_thr)
        self._skip_to(peer, not is_orig, ack, p)

    def _scaled(self, is_orig: bool, code: str, counter: int, thr: int) -> tuple[int, int]:
        counter += 1
        if counter == thr:
            self._add(is_orig, code)
            thr *= 10
        return counter, thr

    def _state_machine(self, ep, peer, is_orig, syn, fin, rst, ackf, plen, now) -> bool:
        """Zeek's UpdateStateMachine; True where Zeek's do_close is set (ConnectionClosed follows)."""
        st = ep.state
        do_close = False
        if st == INACTIVE:
            if syn:
                if is_orig:
                    ep.set_state(SYN_ACK_SENT if ackf else SYN_SENT)
                    self.attempt_at = now + TCP_ATTEMPT_DELAY
                else:
                    if peer.state == SYN_SENT:
                        peer.set_state(ESTABLISHED)
                    ep.set_state(ESTABLISHED)
            if fin:
                ep.set_state(CLOSED)
                do_close = True
            if rst:
                ep.set_state(RESET)
                do_close = True
            if ep.state == INACTIVE:
                if not is_orig and plen == 0 and self.orig.state == SYN_SENT:
                    pass  # an eccentric stack ACKs the SYN before its SYN-ACK
                elif ackf and peer.state == ESTABLISHED:
                    ep.set_state(ESTABLISHED)
                else:
                    ep.set_state(PARTIAL)
        elif st in (SYN_SENT, SYN_ACK_SENT):
            if fin:
                ep.set_state(CLOSED)
                do_close = True
            if rst:
                ep.set_state(RESET)
                do_close = True
        elif st in (ESTABLISHED, PARTIAL):
            if syn and st == PARTIAL and peer.state == INACTIVE and not ackf:
                ep.set_state(SYN_SENT)
            if fin and not rst:
                ep.set_state(CLOSED)
                if peer.state == RESET and peer.prev_state == CLOSED:
                    peer.set_state(CLOSED)
                do_close = True
            if rst:
                ep.set_state(RESET)
                do_close = True
        elif st == CLOSED:
            if rst and peer.state != CLOSED:
                ep.set_state(RESET)
                do_close = True  # ConnectionClosed returns at once if this side closed already
        return do_close

    def _closed(self, ep: _Endpoint, peer: _Endpoint) -> None:
        """Zeek's ConnectionClosed: this side is done; which timer ends the connection."""
        ep.did_close = True
        if ep.state == RESET or peer.did_close or peer.state == INACTIVE:  # close_complete
            self.attempt_at, self.chains = None, []  # CancelTimers
            self.delete_at = self.zlast + TCP_CLOSE_DELAY
        elif ep.prev_state != INACTIVE:
            self.chains.append(self.zlast + TCP_SESSION_TIMER)
        # else Zeek's PartialCloseTimer, scheduled only with a connection_partial_close handler
        # (none in the default scripts): the ExpireTimer chains end such a connection

    def removal_time(self) -> int:
        """When Zeek's timers would remove this connection if no packet of it came again."""
        o, r = self.orig, self.resp
        t = self.zlast + (UDP_INACTIVITY_TIMEOUT if o.state in _HANDSHAKE and r.state in _HANDSHAKE else TCP_INACTIVITY_TIMEOUT)
        if self.delete_at is not None and self.delete_at < t:
            t = self.delete_at
        if self.attempt_at is not None and self.attempt_at < t and o.state in (SYN_SENT, SYN_ACK_SENT) and r.state == INACTIVE:
            t = self.attempt_at
        if self.chains and (
            ((o.did_close or r.did_close) and ((o.did_close and r.did_close) or RESET in (o.state, r.state)
                                              or INACTIVE in (o.state, r.state)))
            or (o.state == INACTIVE and r.state == INACTIVE)
        ):
            after = max(self.last_ts, self.zlast + TCP_CONNECTION_LINGER)  # a tick strictly after both
            for t0 in self.chains:
                tick = t0 if t0 > after else t0 + ((after - t0) // TCP_SESSION_TIMER + 1) * TCP_SESSION_TIMER
                if tick < t:
                    t = tick
        return t

    # ---- in-order payload ---------------------------------------------------------------
    def _stream(self, ep: _Endpoint, is_orig: bool, seq: int, payload: bytes, p) -> None:
        if ep.next_seq is None:  # Zeek's stream starts at relative sequence 1: data before it were missed
            base = (ep.start_seq + 1) & _M
            ep.next_seq = base if 0 <= seq_delta(seq, base) < _TOO_LARGE else seq
        d = seq_delta(seq, ep.next_seq)
        if d > 0:
            if d < _TOO_LARGE and len(ep.ooo) < MAX_OOO:
                ep.ooo.setdefault(seq, payload)
            elif d < _TOO_LARGE:  # too much out of order: declare the gap and move on
                ep.missed += d
                self._skip_to(ep, is_orig, seq, p)
                self._deliver(ep, is_orig, payload, p)
            return
        if -d >= len(payload):
            return  # pure retransmission
        self._deliver(ep, is_orig, payload[-d:] if d else payload, p)

    def _deliver(self, ep: _Endpoint, is_orig: bool, data: bytes, p) -> None:
        ep.next_seq = (ep.next_seq + len(data)) & _M
        if self.smtp.wants_data:
            self.smtp.data(is_orig, data, p.frame, p.ts_ns)
        while ep.ooo:
            nxt = ep.ooo.pop(ep.next_seq, None)
            if nxt is None:
                # drop segments now entirely behind next_seq; trim an overlapping one
                for s in [s for s in ep.ooo if seq_delta(s, ep.next_seq) < 0]:
                    seg = ep.ooo.pop(s)
                    over = -seq_delta(s, ep.next_seq)
                    if over < len(seg):
                        ep.ooo[ep.next_seq] = seg[over:]
                if ep.next_seq not in ep.ooo:
                    return
                continue
            ep.next_seq = (ep.next_seq + len(nxt)) & _M
            if self.smtp.wants_data:
                self.smtp.data(is_orig, nxt, p.frame, p.ts_ns)

    def _skip_to(self, ep: _Endpoint, is_orig: bool, seq: int, p) -> None:
        """A gap will not be filled: tell the follower, jump the stream to `seq`, deliver what follows."""
        self.smtp.gap(is_orig)
        ep.next_seq = seq & _M
        for s in [s for s in ep.ooo if seq_delta(s, ep.next_seq) < 0]:
            del ep.ooo[s]
        if ep.next_seq in ep.ooo:
            data = ep.ooo.pop(ep.next_seq)
            self._deliver(ep, is_orig, data, p)

    # ---- end of the connection ------------------------------------------------------------
    def is_reuse(self, p) -> bool:
        """Zeek's TCPSessionAdapter::IsReuse: does this SYN (or a half connection's SYN-ACK) start a
        new connection on the 4-tuple? After either side closed, always; before, when its sequence
        number is not the originator's initial one."""
        flags = p.flags
        if not flags & SYN:
            return False
        o, r = self.orig, self.resp
        conn_orig = o
        if flags & ACK:
            if o.state != INACTIVE:
                return False
            conn_orig = r
        if not (o.did_close or r.did_close):
            if p.seq == conn_orig.start_seq:
                return False
            if not flags & ACK and conn_orig.state == SYN_ACK_SENT and r.state == INACTIVE and p.seq == r.start_seq:
                return False  # SYN and SYN-ACK seen in reverse order
        return True

    def conn_state(self) -> str:
        os, rs = self.orig.state, self.resp.state
        o_inactive = os in (INACTIVE, PARTIAL)
        r_inactive = rs in (INACTIVE, PARTIAL)
        if rs == RESET:
            if os in (SYN_SENT, SYN_ACK_SENT) or (os == RESET and self.orig.size(rs) == 0 and self.resp.size(os) == 0):
                return "REJ"
            return "RSTRH" if o_inactive else "RSTR"
        if os == RESET:
            if r_inactive:
                h = "".join(self.history).lstrip("^")
                if h.startswith("S"):
                    rest = h[1:]
                    cut = rest.find("R")
                    if cut >= 0 and not any(c in "HAFGIQ" for c in rest[:cut]):
                        return "RSTOS0"
                return "OTH"
            return "RSTO"
        if rs == CLOSED and os == CLOSED:
            return "SF"
        if os == CLOSED:
            return "SH" if r_inactive else "S2"
        if rs == CLOSED:
            return "SHR" if o_inactive else "S3"
        if os == SYN_SENT and rs == INACTIVE:
            return "S0"
        if os == ESTABLISHED and rs == ESTABLISHED:
            return "S1"
        return "OTH"

    def record(self, capture: str, vantage: str) -> Connection:
        return connection_record(
            capture, vantage, self.uid, self.c_ip, self.c_port, self.s_ip, self.s_port, self.first_ts, self.last_ts,
            "".join(self.history), self.conn_state(), self.orig.side(self.resp.state), self.resp.side(self.orig.state), self.syn_seq, self.synack_ack,
            _notes(self.notes), _notes(self.syns), _notes(self.fwd_notes), self.smtp.record(self.first_ts), self.tunnel_src)


def connection_record(capture, vantage, uid, c_ip, c_port, s_ip, s_port, first_ts, last_ts, history, conn_state,
                      o, r, syn_seq, synack_ack, notes, syns, fwd_notes, smtp, tunnel_src) -> Connection:
    """The one place a Connection is made, from either tracker (this module's, or _conntrack.c's
    Tracker, which hands over the same values). `o`/`r`: (packets, bytes, missed bytes, forwarded
    copies, [(src MAC, dst MAC)], first TTL) of originator and responder; notes as NoteBlocks; `smtp`
    the SmtpDialogue or None."""
    o_pkts, o_bytes, o_missed, o_copies, o_l2, o_ttl = o
    r_pkts, r_bytes, r_missed, r_copies, r_l2, r_ttl = r
    # tuple.__new__ with the fields in Connection's order: no keyword parsing, no Python __new__
    # (this runs once per connection of a day of mail); tests/test_native_tracker.py compares fields
    return _new_tuple(Connection, (
        uid, capture, vantage, shared_ip(c_ip), c_port, shared_ip(s_ip), s_port, 4 if len(c_ip) == 4 else 6,
        first_ts, last_ts, shared(history), conn_state, o_pkts, r_pkts, o_bytes, r_bytes, o_missed + r_missed,
        o_copies, r_copies, l2_text(o_l2), l2_text(r_l2), o_ttl, r_ttl, syn_seq, synack_ack, notes, syns, fwd_notes,
        smtp, ip_text(tunnel_src) if tunnel_src else None,
    ))


_new_tuple = tuple.__new__
assert Connection._fields == (
    "uid", "capture", "vantage", "client_ip", "client_port", "server_ip", "server_port", "ip_version", "first_ts_ns",
    "last_ts_ns", "history", "conn_state", "orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "missed_bytes",
    "orig_forwarded", "resp_forwarded", "orig_l2", "resp_l2", "orig_ttl", "resp_ttl", "syn_seq", "synack_ack",
    "packets", "syn_frames", "forwarded_frames", "smtp", "tunneled_from"), "connection_record's field order"


def record_kit(capture: str, vantage: str) -> tuple:
    """What the C tracker needs to make the records connection_record makes (its peer,
    _conntrack.c conn_record): the record types, the capture and vantage, and each intern table
    beside the function that fills it (the C code looks a value up, and calls the function on a
    miss). Order: _conntrack.c's K_* indices."""
    ips, values, paths = tables()
    return (Connection, NoteBlock, SmtpDialogue, capture, vantage, ips, shared_ip, values, shared, paths, l2_text,
            BANNERS, banner_parts, dialogue, ip_text)


def _notes(raw: list[tuple]) -> NoteBlock:
    return NoteBlock.pack_raw(raw, mac_text, payload_text)


def payload_text(data: bytes) -> str | None:
    """The first line of a payload when it is printable ASCII (an SMTP line), `TLS` for a TLS record."""
    if len(data) >= 3 and data[0] in (0x14, 0x15, 0x16, 0x17) and data[1] == 3:
        return "TLS"
    line = bytes(data).split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    if not line or any(b < 0x20 or b > 0x7E for b in line):
        return None
    return line.decode("ascii")


class ConnTracker:
    """All connections of one vantage, keyed both ways by 4-tuple; finished ones are emitted.

    The work is done by the C Tracker (track/_conntrack.c, the same rules) when the extension is
    built, else by ConnState below; DSRDIAG_TRACKER=python selects ConnState (the reference the tests
    compare the C tracker with). Both sit behind this one interface (packet, sweep, finish_all,
    first_last, time_steps, snaplen_cut, and `sink`): a capture walker (capture/_fastpcap.c) given
    `sink` (the C Tracker's capsule, capture/_sink.h; None for the Python tracker) feeds TCP frames
    to it directly; every other TCP packet comes through packet().
    `tracker` ("c" or "python") chooses per instance, over DSRDIAG_TRACKER (tests run both)."""

    def __init__(self, capture: str, vantage: str, ports: frozenset[int], tracker: str | None = None):
        self.capture, self.vantage, self.ports = capture, vantage, ports
        self.table: dict[tuple, ConnState] = {}
        self.facts = Facts()
        self.done = RecordSink(observe_all=self.facts.observe_all, observe_rows=self.facts.observe_rows, capture=capture,
                               vantage=vantage)
        self.lane = lone.enabled()
        """Lone SYNs go to the record store as packed rows (track/lone.py), not as records."""
        self._rows: list[bytes] = []  # the reference tracker's rows since the last sweep
        self.count = 0
        self.clock = self.held = None
        self.backwards = self.largest_back = self.outliers = self.largest_outlier = 0
        self.cut_packets = 0
        """Tracked packets whose payload the capture's snaplen cut (lengths from the IP header)."""
        self.native = None
        self.sink = None
        """The C tracker's packet sink for a capture walker (capture/_sink.h), or None."""
        choice = tracker or os.environ.get("DSRDIAG_TRACKER", "c")
        if choice not in ("c", "python"):
            raise ValueError(f"tracker must be 'c' or 'python', not {choice!r}")
        if _native is not None and choice == "c":
            self.native = _native.Tracker(ports, parse_proxy, MAX_CLOCK_STEP, TS_MAX)
            self.packet = self._native_packet
            self.sink = self.native.sink
            # 0: tuples, records made in Python (tests compare); a vantage that is not a plain str
            # (a subclass may format differently) too: the C maker takes plain texts only
            if os.environ.get("DSRDIAG_RECORD_KIT", "1") != "0" and type(vantage) is str and type(capture) is str:
                self.native.kit = record_kit(capture, vantage)
            if self.lane:
                try:
                    self.native.lane = 1
                except AttributeError:  # an extension built before the lane: records only
                    self.lane = False

    def _native_packet(self, p) -> None:
        self.native.packet(p.frame, p.ts_ns, p.src_mac, p.dst_mac, p.src, p.dst, p.sport, p.dport, p.seq, p.ack,
                           p.flags, p.win, p.ttl, p.ip_id, p.payload, p.tunnel, p.cut)

    def _take(self, finished: list) -> None:
        """Records of the C tracker's finished connections, TAKE at a time (finished: the first
        batch; the tracker hands the rest over with more()): a sweep that ends half a million
        attempts of a flood never holds them all as Python objects at once. Its lone SYNs come as
        rows (104 bytes each, track/lone.py), handed to the store together: a sweep ends them in
        the order they began, not that of their last packets, and only the whole sweep's rows,
        sorted, follow the rows before them."""
        rows = bytearray()  # every drain's rows of this sweep: the lane takes them sorted together (RecordSink.add_rows)
        while True:
            if finished:
                self._take_batch(finished)
            got = self.native.lone() if self.lane else b""
            if got:
                rows += got
            if not finished and not got:  # a drain also stops when its rows fill the C buffer
                break
            finished = self.native.more(TAKE)
        if rows:
            self.done.add_rows(rows)

    def _take_batch(self, finished: list) -> None:
        if self.native.kit is not None:  # records made in C (record_kit)
            self.done.add_all(finished)
            return
        capture, vantage = self.capture, self.vantage
        self.done.add_all([connection_record(capture, vantage, f"{vantage}:C{num}", c_ip, c_port, s_ip, s_port, first, last,
                                             history, state, o, r, syn_seq, synack_ack, NoteBlock(*notes), NoteBlock(*syns),
                                             NoteBlock(*fwd), dialogue(*smtp), tunnel)
                           for (num, c_ip, c_port, s_ip, s_port, first, last, history, state, o, r, syn_seq, synack_ack,
                                notes, syns, fwd, smtp, tunnel) in finished])

    def first_last(self) -> tuple | None:
        """((frame, ts_ns), (frame, ts_ns)) of the first and last packet the C tracker took (it sees
        packets Python never does), or None."""
        n = self.native
        return (n.first, n.last) if n is not None and n.first is not None else None

    def packet(self, p) -> None:
        """The capture clock, then the packet: the clock never goes back (a step back is counted and
        the packet is timed at the clock), and a packet stamped more than MAX_CLOCK_STEP ahead is held
        until the next one: if that one is near it, the capture really moved on (the clock jumps);
        if not, the held packet was one out of line (counted) and is timed at the clock, so it
        neither times out other connections nor splits its own. Timers run on this clock; packet
        notes keep each packet's own stamp."""
        ts = p.ts_ns if p.ts_ns < TS_MAX else TS_MAX
        held = self.held
        if held is not None:
            self.held = None
            hts = held.ts_ns if held.ts_ns < TS_MAX else TS_MAX
            if ts >= hts - MAX_CLOCK_STEP:
                self.clock = hts
            else:
                self.outliers += 1
                self.largest_outlier = max(self.largest_outlier, hts - self.clock)
            self._track(held, self.clock)
        if p.cut:
            self.cut_packets += 1
        clock = self.clock
        if clock is None:
            self.clock = ts
        elif ts < clock:
            self.backwards += 1
            self.largest_back = max(self.largest_back, clock - ts)
        elif ts - clock > MAX_CLOCK_STEP:
            self.held = p
            return
        else:
            self.clock = ts
        self._track(p, self.clock)

    def snaplen_cut(self) -> int:
        return self.native.snaplen_cut if self.native is not None else self.cut_packets

    def time_steps(self) -> TimeSteps:
        if self.native is not None:
            return TimeSteps(*self.native.time_steps)
        return TimeSteps(self.backwards, self.largest_back, self.outliers, self.largest_outlier)

    def _track(self, p, now: int) -> None:
        key = (p.src, p.sport, p.dst, p.dport)
        c = self.table.get(key)
        flags = p.flags
        if c is not None:
            if c.removal_time() <= now:
                self._finish(c)  # Zeek's timers ended it before this packet
                c = None
            else:
                if c.attempt_at is not None and c.attempt_at <= now:
                    c.attempt_at = None  # the attempt timer fired, the SYN had been answered
                if c.is_reuse(p):
                    self._finish(c)  # the 4-tuple is reused by a new connection
                    c = None
        if c is None:
            if flags & SYN and not flags & ACK:
                orig_sender, flipped = True, False
            elif flags & SYN:  # SYN-ACK first: its sender is the responder
                orig_sender, flipped = False, True
            elif p.sport in self.ports and p.dport not in self.ports:
                orig_sender, flipped = False, True
            elif p.sport in self.ports and p.dport in self.ports:
                orig_sender = not p.sport < p.dport
                flipped = not orig_sender
            else:
                orig_sender, flipped = True, False
            self.count += 1
            c = ConnState(f"{self.vantage}:C{self.count}", p, orig_sender, flipped, now)
            self.table[c.orig_key] = c
            self.table[(c.s_ip, c.s_port, c.c_ip, c.c_port)] = c
        c.process(p, key == c.orig_key, now)

    def _finish(self, c: ConnState) -> None:
        rec = c.record(self.capture, self.vantage)
        row = lone.row_of(rec) if self.lane else None
        if row is not None:
            self._rows.append(row)  # handed over with the sweep's, as the C tracker hands its rows
        else:
            self.done.add(rec)
        self.table.pop(c.orig_key, None)
        self.table.pop((c.s_ip, c.s_port, c.c_ip, c.c_port), None)

    def sweep(self) -> None:
        """Emit the connections Zeek's timers have ended by the capture clock, so memory follows open
        connections (a packet of an ended connection would start a new one anyway)."""
        if self.native is not None:
            self._take(self.native.sweep(TAKE))
            return
        if self.clock is None:
            return
        for c in {id(c): c for c in self.table.values()}.values():
            if c.removal_time() <= self.clock:
                self._finish(c)
        self._hand_rows()

    def _hand_rows(self) -> None:
        if self._rows:
            rows, self._rows = b"".join(self._rows), []
            self.done.add_rows(rows)

    def finish_all(self) -> RecordSeq:
        if self.native is not None:
            self._take(self.native.finish_all(TAKE))
        if self.held is not None:  # the last packet jumped ahead: nothing came to contradict it
            self.clock, held, self.held = min(self.held.ts_ns, TS_MAX), self.held, None
            self._track(held, self.clock)
        for c in {id(c): c for c in self.table.values()}.values():
            self._finish(c)
        self._hand_rows()
        return self.done.records()
