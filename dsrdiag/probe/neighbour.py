"""Ask who has the VIP (ARP who-has, or an IPv6 neighbour solicitation) and keep every answer.

Why every answer: scapy's ordinary request/answer matching keeps the first; a VIP answered by the
load balancer and a leaking back-end has two, and the second is the fault. Bounded: one request,
answers collected for `wait` seconds, only on the chosen interface.
"""

from __future__ import annotations

import ipaddress


def who_has(vip: str, iface: str, source: str, mac: str, wait: float = 2.0) -> list[str]:
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptSrcLLAddr, IPv6
    from scapy.layers.l2 import ARP, Ether
    from scapy.sendrecv import srp

    ip = ipaddress.ip_address(vip)
    if ip.version == 4:
        req = Ether(src=mac, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=mac, psrc=source, pdst=vip)
    else:
        snm = ipaddress.ip_address("ff02::1:ff00:0").packed[:13] + ip.packed[13:]
        dst = str(ipaddress.IPv6Address(snm))
        req = (Ether(src=mac, dst="33:33:" + ":".join(f"{b:02x}" for b in snm[12:]))
               / IPv6(src=source, dst=dst, hlim=255) / ICMPv6ND_NS(tgt=vip) / ICMPv6NDOptSrcLLAddr(lladdr=mac))
    ans, _ = srp(req, iface=iface, timeout=wait, multi=True, verbose=0)
    macs = []
    for _, r in ans:
        who = r[ARP].hwsrc if ip.version == 4 else (r.src if ICMPv6ND_NA in r else None)
        if who and who not in macs:
            macs.append(who.lower())
    return macs
