"""HostConfig: the DSR-relevant state of one host, from whichever OS and source.

Why one model for Linux and Windows: the checks for each OS are different, but the report, the
evidence and the tests treat both alike. Every value remembers where it was read (HostRef), so a
finding can cite it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dsrdiag.core.evidence import HostRef


@dataclass
class Value:
    value: object
    ref: HostRef


@dataclass
class Address:
    ip: str
    prefix: int
    family: int
    """4 or 6"""
    ref: HostRef
    nodad: bool = False


@dataclass
class Interface:
    name: str
    index: int | None = None
    loopback: bool = False
    """Linux: the lo device (IFF_LOOPBACK); Windows: a KM-TEST / Microsoft loopback adapter."""
    noarp: bool = False
    up: bool = True
    mac: str | None = None
    description: str | None = None
    addresses: list[Address] = field(default_factory=list)
    settings: dict[str, Value] = field(default_factory=dict)
    """Linux: arp_ignore, arp_announce, rp_filter; Windows: weak_send, weak_receive, metric, netbios, ipv6_bound."""
    ref: HostRef | None = None


@dataclass
class HostConfig:
    os: str
    """linux | windows"""
    hostname: str | None = None
    interfaces: dict[str, Interface] = field(default_factory=dict)
    all_settings: dict[str, Value] = field(default_factory=dict)
    """Linux net.ipv4.conf.all.* values."""
    listeners: list[tuple[str, int, HostRef]] = field(default_factory=list)
    """(address, port) of listening TCP sockets."""
    default_routes: list[tuple[str | None, str | None, int, HostRef]] = field(default_factory=list)
    """(gateway, interface name, family)."""
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What could not be read or parsed (skipped lines are not listed, truncation is)."""

    def iface(self, name: str) -> Interface:
        return self.interfaces.setdefault(name, Interface(name=name))

    def holders(self, ip: str) -> list[tuple[Interface, Address]]:
        return [(i, a) for i in self.interfaces.values() for a in i.addresses if a.ip == ip]
