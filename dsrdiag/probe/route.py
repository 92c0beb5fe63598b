"""Where the VIP is from here: the outgoing interface, our source address, on-link or routed.

Reads: the kernel's routing decision over netlink (pyroute2), like `ip route get VIP`.
Why: ARP/NDP for the VIP only makes sense on its own segment; when it is routed, the report says
this check needs a vantage there instead of pretending.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from dsrdiag.core.errors import UsageError


@dataclass(frozen=True)
class Path:
    iface: str
    source: str
    gateway: str | None
    mac: str | None

    @property
    def on_link(self) -> bool:
        return self.gateway is None


def resolve(vip: str, iface: str | None) -> Path:
    from pyroute2 import IPRoute

    fam = socket.AF_INET6 if ":" in vip else socket.AF_INET
    with IPRoute() as ipr:
        idx = None
        if iface:
            found = ipr.link_lookup(ifname=iface)
            if not found:
                raise UsageError(f"interface {iface!r} does not exist")
            idx = found[0]
        try:
            kw = {"dst": vip, "family": fam}
            if idx is not None:
                kw["oif"] = idx
            routes = ipr.route("get", **kw)
        except Exception as e:  # pyroute2 raises NetlinkError (an OSError) for unreachable destinations
            raise UsageError(f"no route to {vip}{' via ' + iface if iface else ''}: {getattr(e, 'args', [e])[-1]}") from None
        r = routes[0]
        oif = r.get_attr("RTA_OIF")
        link = ipr.get_links(oif)[0]
        return Path(
            iface=link.get_attr("IFLA_IFNAME"),
            source=r.get_attr("RTA_PREFSRC") or "",
            gateway=r.get_attr("RTA_GATEWAY"),
            mac=link.get_attr("IFLA_ADDRESS"),
        )
