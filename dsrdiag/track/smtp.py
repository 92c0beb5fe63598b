"""Follow the SMTP dialogue of one TCP connection (sans-io: bytes in, a SmtpDialogue out).

Reads: in-order payload per direction from track/conn.py. Produces: one SmtpDialogue per connection.
Never: guesses the back-end from anything but the banner; keeps message bodies (DATA is skipped
by scanning for the terminating dot line); parses after STARTTLS (the rest is encrypted).
Why: the banner host is how a user tells which server behind the VIP answered, the time from SYN
to banner is the first thing to compare between back-ends, and PROXY/XCLIENT are how a client's
address survives a full proxy.
"""

from __future__ import annotations

from dsrdiag.decode.proxyproto import NEED_MORE, parse_proxy
from dsrdiag.decode.smtp import MAX_LINE, banner_host, parse_command, parse_reply
from dsrdiag.track.intern import shared
from dsrdiag.track.records import ProxyHeader, SmtpDialogue

MAX_CODES = 64


class SmtpFollower:
    __slots__ = (
        "wants_data", "_buf", "_in_data", "_data_tail", "_start", "_seen_server", "banner",
        "helo", "codes", "commands", "starttls_offered", "starttls_started", "_starttls_asked",
        "xclient_offered", "xclient", "xclient_at", "proxy", "last_reply",
        "_bad", "_data_asked",
    )

    def __init__(self):
        self.wants_data = True
        self._buf = [b"", b""]  # [server->client, client->server] partial lines
        self._in_data = False
        self._data_tail = b""
        self._start = True
        self._seen_server = False
        self.banner = None  # (code, text, frame, ts)
        self.helo = None
        self.codes: list[int] = []
        self.commands: list[str] = []
        self.starttls_offered = False
        self.starttls_started = False
        self._starttls_asked = False
        self._data_asked = False
        self.xclient_offered = False
        self.xclient = None
        self.xclient_at = None
        self.proxy = None
        self.last_reply = None
        self._bad = 0

    def gap(self, is_orig: bool) -> None:
        """Bytes were lost: the partial line cannot be trusted."""
        self._buf[1 if is_orig else 0] = b""

    def data(self, is_orig: bool, data: bytes, frame: int, ts: int) -> None:
        if not self.wants_data:
            return  # TLS started, or the stream is not SMTP
        if is_orig:
            if self._start:
                data = self._proxy_header(data, frame, ts)
                if data is None:
                    return
            if self._in_data:
                data = self._skip_message(data)
                if not data:
                    return
        idx = 1 if is_orig else 0
        buf = self._buf[idx] + data
        while True:
            nl = buf.find(b"\n")
            if nl < 0:
                break
            line, buf = buf[:nl].rstrip(b"\r"), buf[nl + 1 :]
            if is_orig:
                self._command(line, frame, ts)
                if self._in_data:
                    buf = self._skip_message(buf)
            else:
                self._reply(line, frame, ts)
            if not self.wants_data:
                return
        if len(buf) > MAX_LINE:
            self._bad += 1
            buf = b""
            if self._bad > 3:
                self.wants_data = False  # not SMTP
        self._buf[idx] = buf

    def _proxy_header(self, data: bytes, frame: int, ts: int):
        pending = self._buf[1] + data
        r = parse_proxy(pending)
        if r == NEED_MORE:
            self._buf[1] = pending
            return None
        self._start = False
        self._buf[1] = b""
        if r is None:
            return pending
        version, src, sport, _dst, _dport, hlen = r
        self.proxy = ProxyHeader(version, src, sport, frame, ts)
        return pending[hlen:]

    def _skip_message(self, data: bytes) -> bytes:
        """In DATA: drop message bytes up to and including CRLF.CRLF; return what follows."""
        probe = self._data_tail + data
        end = probe.find(b"\r\n.\r\n")
        if end < 0:
            self._data_tail = probe[-4:]
            return b""
        self._in_data = False
        self._data_tail = b""
        return probe[end + 5 :]

    def _command(self, line: bytes, frame: int, ts: int) -> None:
        self._start = False
        cmd = parse_command(line)
        if cmd is None:
            return
        verb, arg = cmd
        if len(self.commands) < MAX_CODES:
            self.commands.append(verb)
        if verb in ("EHLO", "HELO") and self.helo is None:
            self.helo = arg[:255]
        elif verb == "STARTTLS":
            self._starttls_asked = True
        elif verb == "XCLIENT" and self.xclient is None:
            self.xclient = arg[:512]
            self.xclient_at = (frame, ts)
        elif verb == "DATA":
            self._data_asked = True

    def _reply(self, line: bytes, frame: int, ts: int) -> None:
        r = parse_reply(line)
        if r is None:
            return
        code, cont, text = r
        if self.banner is None and not self._seen_server:
            self._seen_server = True
            self.banner = (code, text, frame, ts)
        if cont:
            word = text.split(" ", 1)[0].upper()
            if word == "STARTTLS":
                self.starttls_offered = True
            elif word == "XCLIENT":
                self.xclient_offered = True
            return
        word = text.split(" ", 1)[0].upper()
        if word == "STARTTLS":
            self.starttls_offered = True
        elif word == "XCLIENT":
            self.xclient_offered = True
        if len(self.codes) < MAX_CODES:
            self.codes.append(code)
        self.last_reply = f"{code} {text}"[:200]
        if self._data_asked:
            self._data_asked = False
            if code == 354:
                self._in_data = True
                self._data_tail = b"\r\n"  # the DATA line's CRLF: an empty message is just ".\r\n"
        if self._starttls_asked:
            self._starttls_asked = False
            if code == 220:
                self.starttls_started = True
                self.wants_data = False  # TLS from here on

    def record(self, syn_ts: int) -> SmtpDialogue | None:
        return dialogue(self.banner, self.helo, tuple(self.codes), tuple(self.commands), self.starttls_offered,
                        self.starttls_started, self.xclient_offered, self.xclient, self.xclient_at, self.proxy,
                        self.last_reply)


def dialogue(banner, helo, codes, commands, starttls_offered, starttls_started, xclient_offered, xclient,
             xclient_at, proxy, last_reply) -> SmtpDialogue | None:
    """The one place a SmtpDialogue is made, from this follower or the C one (track/_smtpfollow.c,
    whose state comes as these values; its PROXY header as a tuple)."""
    if banner is None and not commands and proxy is None:
        return None
    if proxy is not None and not isinstance(proxy, ProxyHeader):
        proxy = ProxyHeader(*proxy)
    code, text, frame, ts = banner if banner else (None, None, None, None)
    host = None
    if text:
        text, host = banner_parts(text)
    # positional, through tuple.__new__ (once per connection; field order checked below)
    return _new_tuple(SmtpDialogue, (
        code, text, host if code == 220 else None, frame, ts,
        shared(helo), shared(codes), shared(commands), starttls_offered, starttls_started, xclient_offered, xclient,
        xclient_at[0] if xclient_at else None, xclient_at[1] if xclient_at else None, proxy, last_reply,
    ))


BANNERS: dict = {}
"""banner text -> banner_parts(text): a server greets every client alike (the C tracker reads it too)."""
MAX_BANNERS = 4096


def banner_parts(text: str) -> tuple:
    """(the banner as a record keeps it: its first 200 characters, the host it names or None);
    once per distinct banner, bounded: the table is emptied when full (values stay the same)."""
    got = BANNERS.get(text)
    if got is None:
        if len(BANNERS) >= MAX_BANNERS:
            BANNERS.clear()
        got = BANNERS[text] = (text[:200], banner_host(text) if text else None)
    return got


_new_tuple = tuple.__new__
assert SmtpDialogue._fields == (
    "banner_code", "banner_text", "banner_host", "banner_frame", "banner_ts_ns", "helo", "reply_codes", "commands",
    "starttls_offered", "starttls_started", "xclient_offered", "xclient", "xclient_frame", "xclient_ts_ns", "proxy",
    "last_reply"), "dialogue's field order"
