"""decode(frame) -> Packet | Anomaly | None: the one entry that chains the protocol decoders.

Reads: a raw frame tuple from capture/. Produces: a Packet holding only the fields the trackers use,
an Anomaly (malformed ARP, truncated header) for the report, or None for frames that are neither
TCP on a service port, ARP, nor neighbour discovery. A frame inside a wrapper Zeek decodes (MPLS,
PPPoE, VXLAN, Geneve, Teredo: decode/tunnel.py) is decoded again from the wrapped packet on, and
its Packet says which wrapper it came out of (`wrap`, for the capture note).
Why one slotted class and no per-layer objects: this runs once per filtered packet.
"""

from __future__ import annotations

from struct import Struct

from dsrdiag.capture.frame import LINKTYPE_ETHERNET, LINKTYPE_RAW
from dsrdiag.decode.arp import decode_arp
from dsrdiag.decode.ip import (
    FRAGMENT,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    TUNNEL_PROTOS,
    decode_ipv4,
    decode_ipv6,
    decode_tunnel,
)
from dsrdiag.decode.link import ETH_ARP, ETH_IPV4, ETH_IPV6, decode_link
from dsrdiag.decode.ndp import decode_nd
from dsrdiag.decode.tcp import decode_tcp
from dsrdiag.decode.tunnel import ETHER, MAX_WRAPS, TUNNEL_UDP_PORTS, WRAPPED_ETHERTYPES, unwrap_link, unwrap_udp

KIND_TCP, KIND_ARP, KIND_ND = 1, 2, 3


class Packet:
    """The decoded fields of one frame. Addresses are raw bytes; text forms are made in track/."""

    __slots__ = (
        "frame", "ts_ns", "kind", "src_mac", "dst_mac", "vlans",
        "src", "dst", "ttl", "ip_id",
        "sport", "dport", "seq", "ack", "flags", "win", "payload",
        "op", "sha", "tha", "nd_flags", "tunnel", "cut", "wrap",
    )
    # cut: TCP payload bytes the IP length declares but the capture did not keep (snaplen); the
    # tracker takes a segment's length from the IP length, as Zeek does (track/conn.py)
    # wrap: the wrappers the packet came out of ("VXLAN VNI 42", "MPLS label 16, ..."), else None

    def __repr__(self) -> str:  # for test failure messages
        return f"Packet(frame={self.frame}, kind={self.kind}, sport={getattr(self, 'sport', None)}, dport={getattr(self, 'dport', None)})"


class Anomaly:
    """A frame dsrdiag looked at but could not decode (Zeek's weird.log)."""

    __slots__ = ("frame", "ts_ns", "name")

    def __init__(self, frame: int, ts_ns: int, name: str):
        self.frame, self.ts_ns, self.name = frame, ts_ns, name


_FAST = Struct(">6s6sHBxHHHBBH4s4s")
"""Untagged Ethernet + IPv4 header without options, in one unpack: the bulk of real traffic."""
_TCP = Struct(">HHIIBBH")


def _cut(etype: int, data: bytes, off: int) -> int:
    """Bytes the IP header's length declares beyond the frame (a snaplen cut), 0 if none."""
    if etype == ETH_IPV4:
        total = (data[off + 2] << 8) | data[off + 3]
        end = off + total if total else len(data)
    else:
        end = off + 40 + ((data[off + 4] << 8) | data[off + 5])
    return end - len(data) if end > len(data) else 0


IPPROTO_UDP = 17


def _unwrapped(fr: tuple, kind: str, data: bytes, pos: int, end: int, ports, depth: int, label: str, l2) -> Packet | Anomaly | None:
    """The packet inside a wrapper, decoded like any frame (an Ethernet frame, or raw IP that keeps
    the outer frame's L2 path: MPLS, PPPoE and Teredo carry no MACs of their own)."""
    frame, ts_ns, _lt, _data, wirelen = fr
    p = decode((frame, ts_ns, LINKTYPE_ETHERNET if kind == ETHER else LINKTYPE_RAW, data[pos:end], wirelen), ports, depth + 1)
    if p is None or type(p) is Anomaly:
        return p
    if kind != ETHER:
        p.src_mac, p.dst_mac, p.vlans = l2
    p.wrap = label if p.wrap is None else f"{label}, {p.wrap}"
    return p


def decode(fr: tuple, ports: frozenset[int], depth: int = 0) -> Packet | Anomaly | None:
    """`depth`: how many wrappers this frame is already inside (decode/tunnel.py MAX_WRAPS)."""
    frame, ts_ns, linktype, data, _wirelen = fr
    if linktype == 1 and len(data) >= 54 and data[12] == 8 and data[13] == 0 and data[14] == 0x45 and data[23] == 6:
        # fast path: Ethernet / IPv4 (no options) / TCP, the same checks the general path makes
        dst_mac, src_mac, _et, _vhl, total, ip_id, frag, ttl, _proto, _csum, src, dst = _FAST.unpack_from(data)
        if not frag & 0x1FFF:
            end = 14 + total if total else len(data)
            if end > len(data):
                end = len(data)
            sport, dport, seq, ack, doff, flags, win = _TCP.unpack_from(data, 34)
            hl = (doff >> 4) * 4
            if hl >= 20 and 34 + hl <= end:
                if sport not in ports and dport not in ports:
                    return None
                p = Packet()
                p.frame, p.ts_ns, p.kind, p.src_mac, p.dst_mac, p.vlans = frame, ts_ns, KIND_TCP, src_mac, dst_mac, ()
                p.src, p.dst, p.ttl, p.ip_id = src, dst, ttl, ip_id
                p.sport, p.dport, p.seq, p.ack, p.flags, p.win = sport, dport, seq, ack, flags, win
                p.payload = data[34 + hl : end]
                p.tunnel = p.wrap = None
                p.cut = 14 + total - len(data) if total and 14 + total > len(data) else 0
                return p
        # fragments and odd headers take the general path below
    link = decode_link(linktype, data)
    if link is None:
        return Anomaly(frame, ts_ns, "truncated-link-header")
    etype, off, src_mac, dst_mac, vlans = link
    if etype in WRAPPED_ETHERTYPES and depth < MAX_WRAPS:  # MPLS, PPPoE session
        u = unwrap_link(etype, data, off)
        if u is None:
            return None
        if type(u) is str:
            return Anomaly(frame, ts_ns, u)
        return _unwrapped(fr, u[0], data, u[1], len(data), ports, depth, u[2], (src_mac, dst_mac, vlans))
    if etype == ETH_ARP:
        a = decode_arp(data, off)
        if isinstance(a, str):
            return Anomaly(frame, ts_ns, a)
        p = Packet()
        p.frame, p.ts_ns, p.kind, p.src_mac, p.dst_mac, p.vlans = frame, ts_ns, KIND_ARP, src_mac, dst_mac, vlans
        p.op, p.sha, p.src, p.tha, p.dst = a
        p.wrap = None
        return p
    if etype == ETH_IPV4:
        ip = decode_ipv4(data, off)
    elif etype == ETH_IPV6:
        ip = decode_ipv6(data, off)
    else:
        return None
    if ip is None:
        return Anomaly(frame, ts_ns, "truncated-ip-header")
    if ip is FRAGMENT:
        return None
    proto, src, dst, ttl, ip_id, l4, end = ip
    tunnel = None
    if proto in TUNNEL_PROTOS:  # an encapsulating load balancer: analyse the packet inside
        inner = decode_tunnel(proto, data, l4, end)
        if inner is None or inner is FRAGMENT:
            return None
        tunnel = src
        proto, src, dst, ttl, ip_id, l4, end = inner
    if proto == IPPROTO_TCP:
        t = decode_tcp(data, l4, end)
        if t is None:
            return Anomaly(frame, ts_ns, "truncated-tcp-header")
        if t[0] not in ports and t[1] not in ports:
            return None
        p = Packet()
        p.frame, p.ts_ns, p.kind, p.src_mac, p.dst_mac, p.vlans = frame, ts_ns, KIND_TCP, src_mac, dst_mac, vlans
        p.src, p.dst, p.ttl, p.ip_id = src, dst, ttl, ip_id
        p.sport, p.dport, p.seq, p.ack, p.flags, p.win, p.payload = t
        p.tunnel, p.wrap = tunnel, None
        p.cut = 0 if tunnel is not None else _cut(etype, data, off)
        return p
    if proto == IPPROTO_ICMPV6:
        nd = decode_nd(data, l4, end)
        if nd is None:
            return None
        p = Packet()
        p.frame, p.ts_ns, p.kind, p.src_mac, p.dst_mac, p.vlans = frame, ts_ns, KIND_ND, src_mac, dst_mac, vlans
        p.src, p.dst, p.ttl = src, dst, ttl
        p.op, p.tha, p.nd_flags, p.sha = nd  # op = 135/136, tha = target address, sha = lladdr option
        p.wrap = None
        return p
    if proto == IPPROTO_UDP and depth < MAX_WRAPS and end - l4 >= 8:  # VXLAN, Geneve, Teredo
        if ((data[l4] << 8) | data[l4 + 1]) in TUNNEL_UDP_PORTS or ((data[l4 + 2] << 8) | data[l4 + 3]) in TUNNEL_UDP_PORTS:
            u = unwrap_udp(data, l4, end)
            if u is not None:
                return _unwrapped(fr, u[0], data, u[1], end, ports, depth, u[2], (src_mac, dst_mac, vlans))
    return None
