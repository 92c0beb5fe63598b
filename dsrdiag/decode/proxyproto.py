"""PROXY protocol v1/v2 header at the start of a client->server stream -> the original client address.

Why: with SNAT / full-proxy load balancing the back-end sees the LB's address; a PROXY header is
one of the two ways (with SMTP XCLIENT) the real client address still reaches the server.
Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
"""

from __future__ import annotations

import _socket as socket  # not socket.py: its enums and selectors cost ~2 ms at every start; these use inet_ntop/pton only
import struct

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
NEED_MORE = "need-more"


def parse_proxy(data: bytes):
    """Return (version, src_ip, src_port, dst_ip, dst_port, header_length), None if not PROXY, or NEED_MORE."""
    if data.startswith(b"PROXY "):
        end = data.find(b"\r\n", 0, 108)
        if end < 0:
            return NEED_MORE if len(data) < 108 else None
        parts = data[:end].decode("latin-1").split(" ")
        if len(parts) == 6 and parts[1] in ("TCP4", "TCP6"):
            try:
                return 1, parts[2], int(parts[4]), parts[3], int(parts[5]), end + 2
            except ValueError:
                return None
        if len(parts) >= 2 and parts[1] == "UNKNOWN":
            return 1, None, None, None, None, end + 2
        return None
    if len(data) < 16:
        return NEED_MORE if V2_SIGNATURE.startswith(data[:12]) and data else None
    if not data.startswith(V2_SIGNATURE):
        return None
    ver_cmd, fam, length = data[12], data[13], struct.unpack_from(">H", data, 14)[0]
    if ver_cmd >> 4 != 2:
        return None
    if len(data) < 16 + length:
        return NEED_MORE
    body = data[16 : 16 + length]
    if fam >> 4 == 1 and len(body) >= 12:
        s, d = socket.inet_ntop(socket.AF_INET, body[0:4]), socket.inet_ntop(socket.AF_INET, body[4:8])
        sp, dp = struct.unpack_from(">HH", body, 8)
        return 2, s, sp, d, dp, 16 + length
    if fam >> 4 == 2 and len(body) >= 36:
        s, d = socket.inet_ntop(socket.AF_INET6, body[0:16]), socket.inet_ntop(socket.AF_INET6, body[16:32])
        sp, dp = struct.unpack_from(">HH", body, 32)
        return 2, s, sp, d, dp, 16 + length
    return 2, None, None, None, None, 16 + length  # LOCAL command or UNSPEC family
