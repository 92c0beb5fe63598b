"""Read a Linux host's DSR state directly from the kernel: netlink (pyroute2) and /proc.

Reads: links, addresses and default routes over netlink; arp_ignore / arp_announce / rp_filter
from /proc/sys/net/ipv4/conf; listening TCP sockets from /proc/net/tcp and tcp6.
Never: scrapes `ip` output (its format changes between versions); changes anything.
Why: the back-end's own settings are half of DSR's faults; run inside a network namespace
(`ip netns exec NS dsrdiag hostcheck`) it reads that namespace, which is how the tests use it.
"""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from dsrdiag.audit.snapshot import Address, HostConfig, Value
from dsrdiag.core.errors import DsrdiagError
from dsrdiag.core.evidence import HostRef

CONF = Path("/proc/sys/net/ipv4/conf")
IFF_UP, IFF_LOOPBACK, IFF_NOARP = 0x1, 0x8, 0x80
SETTINGS = ("arp_ignore", "arp_announce", "rp_filter")


def collect() -> HostConfig:
    try:
        from pyroute2 import IPRoute
    except ImportError:  # pragma: no cover - a dependency of the package
        raise DsrdiagError("pyroute2 is needed to read the kernel's state (pip install pyroute2)") from None
    host = HostConfig(os="linux", hostname=socket.gethostname(), sources=["netlink", "/proc"])
    names: dict[int, str] = {}
    try:
        with IPRoute() as ipr:
            for link in ipr.get_links():
                name = link.get_attr("IFLA_IFNAME")
                names[link["index"]] = name
                i = host.iface(name)
                i.index = link["index"]
                flags = link["flags"]
                i.loopback = bool(flags & IFF_LOOPBACK)
                i.noarp = bool(flags & IFF_NOARP)
                i.up = bool(flags & IFF_UP)
                i.mac = link.get_attr("IFLA_ADDRESS")
                i.ref = HostRef("netlink", 0, f"link {name} flags=0x{flags:x}")
            for a in ipr.get_addr():
                ip = a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")
                name = names.get(a["index"], str(a["index"]))
                fam = 6 if a["family"] == socket.AF_INET6 else 4
                flags = a.get_attr("IFA_FLAGS") or a["flags"]
                ip = str(ipaddress.ip_address(ip))
                host.iface(name).addresses.append(Address(
                    ip, a["prefixlen"], fam, HostRef("netlink", 0, f"{ip}/{a['prefixlen']} dev {name}"),
                    nodad=bool(flags & 0x02),
                ))
            for r in ipr.get_routes(table=254):
                if r["dst_len"] != 0:
                    continue
                fam = 6 if r["family"] == socket.AF_INET6 else 4
                gw = r.get_attr("RTA_GATEWAY")
                dev = names.get(r.get_attr("RTA_OIF"))
                host.default_routes.append((gw, dev, fam, HostRef("netlink", 0, f"default via {gw} dev {dev}")))
    except OSError as e:
        raise DsrdiagError(f"cannot read the kernel's network state over netlink: {e.strerror or e}") from None
    for key in SETTINGS:
        v = _read_int(CONF / "all" / key)
        if v is not None:
            host.all_settings[key] = Value(v, HostRef(str(CONF / "all" / key), 0, f"net.ipv4.conf.all.{key} = {v}"))
        for name, i in host.interfaces.items():
            p = CONF / name / key
            v = _read_int(p)
            if v is not None:
                i.settings[key] = Value(v, HostRef(str(p), 0, f"net.ipv4.conf.{name}.{key} = {v}"))
    for path, fam in ((Path("/proc/net/tcp"), 4), (Path("/proc/net/tcp6"), 6)):
        host.listeners += _listeners(path, fam)
    return host


def _read_int(p: Path) -> int | None:
    try:
        return int(p.read_text().strip())
    except (OSError, ValueError):
        return None


def _listeners(path: Path, fam: int) -> list[tuple[str, int, HostRef]]:
    out = []
    try:
        lines = path.read_text().splitlines()[1:]
    except OSError:
        return out
    for n, line in enumerate(lines, 2):
        parts = line.split()
        if len(parts) < 4 or parts[3] != "0A":  # 0A = TCP_LISTEN
            continue
        hexip, hexport = parts[1].split(":")
        raw = bytes.fromhex(hexip)
        # /proc prints each 32-bit word in host (little-endian) order
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
        ip = str(ipaddress.ip_address(raw))
        port = int(hexport, 16)
        out.append((ip, port, HostRef(str(path), n, f"LISTEN {ip}:{port}")))
    return out
