"""The SMTP follower and the PROXY protocol parser, as transcripts (sans-io: bytes in, facts out)."""

from __future__ import annotations

import socket
import struct

from dsrdiag.decode.proxyproto import NEED_MORE, V2_SIGNATURE, parse_proxy
from dsrdiag.decode.smtp import banner_host, parse_command, parse_reply
from dsrdiag.track.smtp import SmtpFollower


def feed(*steps):
    f = SmtpFollower()
    for i, (d, data) in enumerate(steps, 1):
        f.data(d == ">", data, i, i * 1000)
    return f.record(0)


def test_reply_and_command_lines_parse():
    assert parse_reply(b"250-STARTTLS") == (250, True, "STARTTLS")
    assert parse_reply(b"220 mx.example ESMTP") == (220, False, "mx.example ESMTP")
    assert parse_reply(b"hello") is None and parse_reply(b"999 x") is None
    assert parse_command(b"ehlo client.example") == ("EHLO", "client.example")
    assert banner_host("mx1.example.net ESMTP Postfix") == "mx1.example.net"


def test_banner_ehlo_and_starttls_are_followed_and_parsing_stops_at_tls():
    s = feed(("<", b"220 mx1.example.net ESMTP\r\n"), (">", b"EHLO c.example\r\n"),
             ("<", b"250-mx1.example.net\r\n250-STARTTLS\r\n250 8BITMIME\r\n"), (">", b"STARTTLS\r\n"),
             ("<", b"220 2.0.0 Ready\r\n"), (">", b"\x16\x03\x01garbage\r\n"), ("<", b"500 not parsed\r\n"))
    assert (s.banner_host, s.helo, s.starttls_offered, s.starttls_started) == ("mx1.example.net", "c.example", True, True)
    assert s.reply_codes == (220, 250, 220)


def test_lines_split_across_segments_are_joined():
    s = feed(("<", b"220 mx1.ex"), ("<", b"ample.net ESMTP\r"), ("<", b"\n"))
    assert s.banner_host == "mx1.example.net"


def test_message_body_is_skipped_even_when_it_looks_like_smtp():
    s = feed(("<", b"220 mx ESMTP\r\n"), (">", b"DATA\r\n"), ("<", b"354 go\r\n"),
             (">", b"250 fake reply in body\r\nQUIT\r\n"), (">", b"more\r\n.\r\n"), ("<", b"250 queued\r\n"),
             (">", b"QUIT\r\n"), ("<", b"221 bye\r\n"))
    assert s.reply_codes == (220, 354, 250, 221)
    assert s.commands == ("DATA", "QUIT")


def test_xclient_is_recognised_in_ehlo_and_as_a_command():
    s = feed(("<", b"220 mx ESMTP\r\n"), (">", b"EHLO lb\r\n"), ("<", b"250-mx\r\n250 XCLIENT ADDR NAME\r\n"),
             (">", b"XCLIENT ADDR=198.51.100.7\r\n"), ("<", b"220 mx ESMTP\r\n"))
    assert s.xclient_offered and s.xclient == "ADDR=198.51.100.7" and s.xclient_frame == 4


def test_proxy_v1_header_before_the_banner_gives_the_client():
    s = feed((">", b"PROXY TCP4 198.51.100.7 192.0.2.25 40211 25\r\n"), ("<", b"220 mx ESMTP\r\n"), (">", b"EHLO c\r\n"))
    assert (s.proxy.version, s.proxy.client_ip, s.proxy.client_port, s.helo) == (1, "198.51.100.7", 40211, "c")


def test_proxy_v2_header_ipv6_parses_and_partial_header_waits():
    body = socket.inet_pton(socket.AF_INET6, "2001:db8:51::7") + socket.inet_pton(socket.AF_INET6, "2001:db8:25::25") + struct.pack(">HH", 40000, 25)
    hdr = V2_SIGNATURE + bytes([0x21, 0x21]) + struct.pack(">H", len(body)) + body
    assert parse_proxy(hdr[:20]) == NEED_MORE
    assert parse_proxy(hdr + b"EHLO") == (2, "2001:db8:51::7", 40000, "2001:db8:25::25", 25, len(hdr))
    assert parse_proxy(b"EHLO x\r\n") is None


def test_a_stream_that_is_not_smtp_stops_being_followed():
    f = SmtpFollower()
    for i in range(6):
        f.data(True, b"x" * 5000, i, i)
    assert not f.wants_data
