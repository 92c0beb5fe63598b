"""HostConfig + VIP -> findings: the back-end's own DSR settings, Linux and Windows.

Reads: a HostConfig (audit/linux.py, audit/windows.py). Produces: Findings citing what was read
(HostRef), and notes on what could not be checked. Never: reads the host itself.
Why separate from collection: the same checks run on a live Linux host, a namespace in the lab,
or files a Windows admin sent; tests feed them both.
"""

from __future__ import annotations

import ipaddress
from typing import Iterator

from dsrdiag.audit.snapshot import HostConfig, Interface
from dsrdiag.audit.windows import is_windows_loopback
from dsrdiag.core.evidence import HostRef
from dsrdiag.findings.finding import ERROR, WARNING, BackendRef, Finding

KINDS = (
    "vip_not_on_loopback", "vip_on_lan_interface", "vip_prefix_too_wide", "vip_mask_mismatch",
    "arp_ignore_unsafe", "arp_announce_unsafe", "rp_filter_strict", "no_listener_on_vip", "no_default_route",
    "return_route_not_via_gateway", "weakhost_receive_disabled", "weakhost_send_disabled",
    "loopback_metric_not_254", "netbios_enabled_on_loopback", "ipv6_bound_on_loopback",
)
WILDCARDS = {"0.0.0.0", "::"}


def check(host: HostConfig, vip: str, port: int, gateway: str | None = None) -> tuple[list[Finding], list[str]]:
    notes: list[str] = list(host.notes)
    name = host.hostname or "host"
    me = BackendRef(name, None, None, "given")
    fam = ipaddress.ip_address(vip).version
    gen = _linux(host, vip, port, fam, gateway, notes) if host.os == "linux" else _windows(host, vip, fam, notes)
    out = []
    for kind, severity, summary, evidence, subject in gen:
        if not evidence:  # a finding always cites what was read, even when that was nothing relevant
            evidence = [HostRef(", ".join(host.sources) or "host", 0, "no address or setting relevant to this check was read")]
        out.append(Finding(kind=kind, severity=severity, vantages=(name,), summary=summary,
                           evidence=tuple(evidence), backend=me, subject=subject))
    out.sort(key=Finding.sort_key)
    return out, notes


def _holders(host: HostConfig, vip: str):
    return host.holders(vip)


# ---- Linux --------------------------------------------------------------------------------------
def _eff(host: HostConfig, i: Interface, key: str):
    a, b = host.all_settings.get(key), i.settings.get(key)
    vals = [v for v in (a, b) if v is not None]
    if not vals:
        return None, []
    return max(v.value for v in vals), [v.ref for v in vals]


def _lan_ifaces(host: HostConfig) -> list[Interface]:
    return [i for i in host.interfaces.values() if not i.loopback and not i.noarp and i.up
            and any(a.family == 4 for a in i.addresses)]


def _linux(host: HostConfig, vip: str, port: int, fam: int, gateway: str | None, notes: list[str]) -> Iterator:
    holders = _holders(host, vip)
    full = 32 if fam == 4 else 128
    if not holders:
        yield ("vip_not_on_loopback", ERROR, f"VIP {vip} is on no interface of this host.",
               [a.ref for i in host.interfaces.values() for a in i.addresses][:8], vip)
    for i, a in holders:
        if not (i.loopback or i.noarp):
            yield ("vip_on_lan_interface", ERROR, f"VIP {vip}/{a.prefix} is on {i.name}, which answers {'ARP' if fam == 4 else 'neighbour solicitations'}.",
                   [a.ref], i.name)
        elif a.prefix != full:
            yield ("vip_prefix_too_wide", ERROR, f"VIP {vip} is on {i.name} as /{a.prefix}: every address of that prefix is now local.",
                   [a.ref], i.name)
    if fam == 4:
        lans = _lan_ifaces(host)
        for i in lans:
            ign, refs = _eff(host, i, "arp_ignore")
            if ign is not None and ign not in (1, 2):
                yield ("arp_ignore_unsafe", ERROR, f"arp_ignore on {i.name} is effectively {ign} (max of all and {i.name}); it must be 1 or 2.", refs, i.name)
            ann, refs = _eff(host, i, "arp_announce")
            if ann is not None and ann != 2:
                yield ("arp_announce_unsafe", ERROR, f"arp_announce on {i.name} is effectively {ann} (max of all and {i.name}); it must be 2.", refs, i.name)
        routes = [r for r in host.default_routes if r[2] == fam]
        vipnet = [i for i in lans if any(a.family == 4 and ipaddress.ip_address(vip) in ipaddress.ip_network(f"{a.ip}/{a.prefix}", strict=False) for a in i.addresses)]
        for i in vipnet:
            rp, refs = _eff(host, i, "rp_filter")
            if rp == 1 and routes and all(r[1] != i.name for r in routes):
                yield ("rp_filter_strict", WARNING, f"rp_filter on {i.name} is strict (1) while the default route leaves by {routes[0][1]}: client packets arriving on {i.name} are dropped.",
                       refs + [routes[0][3]], i.name)
        if not lans:
            notes.append("no ARP-capable interface with an IPv4 address is up: arp_ignore/arp_announce were not checked")
    routes = [r for r in host.default_routes if r[2] == fam]
    if not routes:
        yield ("no_default_route", ERROR, f"no default route for IPv{fam}: replies to clients cannot leave.",
               [i.ref for i in host.interfaces.values() if i.ref][:2], f"IPv{fam}")
    elif gateway and all(r[0] != gateway for r in routes):
        yield ("return_route_not_via_gateway", ERROR,
               f"the default route goes via {routes[0][0]} ({routes[0][1]}), not via the firewall {gateway} that forwards the requests.",
               [r[3] for r in routes], str(routes[0][0]))
    ok = [lst for lst in host.listeners if lst[1] == port and (lst[0] == vip or lst[0] in WILDCARDS)]
    if not ok:
        same_port = [lst[2] for lst in host.listeners if lst[1] == port]
        yield ("no_listener_on_vip", ERROR,
               f"nothing listens on {vip}:{port} or on the wildcard address"
               + (f" (port {port} is bound only to {', '.join(lst[0] for lst in host.listeners if lst[1] == port)})" if same_port else "")
               + ".", same_port or [ref for ref in (_proc_ref(fam),)], f"{vip}:{port}")


def _proc_ref(fam: int):
    return HostRef("/proc/net/tcp" + ("6" if fam == 6 else ""), 0, "no LISTEN socket on the port")


# ---- Windows ------------------------------------------------------------------------------------
def _windows(host: HostConfig, vip: str, fam: int, notes: list[str]) -> Iterator:
    holders = _holders(host, vip)
    loops = [i for i in host.interfaces.values() if is_windows_loopback(i)]
    vipaddr = ipaddress.ip_address(vip)
    lans = [i for i in host.interfaces.values()
            if not is_windows_loopback(i) and not i.name.startswith("Loopback Pseudo-Interface")
            and any(a.family == vipaddr.version and a.ip != vip and vipaddr in ipaddress.ip_network(f"{a.ip}/{a.prefix}", strict=False)
                    for a in i.addresses)]
    if not holders:
        yield ("vip_not_on_loopback", ERROR, f"VIP {vip} is on no adapter in the saved output.",
               [a.ref for i in host.interfaces.values() for a in i.addresses][:4], vip)
    loop_vip = None
    for i, a in holders:
        if is_windows_loopback(i):
            loop_vip = (i, a)
        else:
            yield ("vip_on_lan_interface", ERROR, f"VIP {vip}/{a.prefix} is on {i.name}, not on the loopback adapter.", [a.ref], i.name)
    if loop_vip:
        li, la = loop_vip
        for lan in lans:
            lan_addr = next(a for a in lan.addresses if a.family == vipaddr.version and a.ip != vip
                            and vipaddr in ipaddress.ip_network(f"{a.ip}/{a.prefix}", strict=False))
            if lan_addr.prefix != la.prefix:
                yield ("vip_mask_mismatch", WARNING,
                       f"the VIP on {li.name} is /{la.prefix} but the VIP's network on {lan.name} is /{lan_addr.prefix}.",
                       [la.ref, lan_addr.ref], li.name)
    if not lans:
        notes.append("no LAN adapter with an address in the VIP's subnet was found: weak host receive on the LAN side was not checked")
    for lan in lans:
        yield from _flag(lan, "weak_receive", "weakhost_receive_disabled", f"weak host receive is disabled on the LAN adapter {lan.name}: packets for the VIP arriving there are dropped.", notes)
    if not loops:
        if holders:
            notes.append("no adapter identifiable as the KM-TEST loopback (no ipconfig /all description, no 'Loopback' in a name): loopback checks skipped")
        return
    for lo in loops:
        yield from _flag(lo, "weak_send", "weakhost_send_disabled", f"weak host send is disabled on {lo.name}: replies from the VIP cannot leave through the LAN adapter.", notes)
        yield from _flag(lo, "weak_receive", "weakhost_receive_disabled", f"weak host receive is disabled on {lo.name}.", notes)
        m = lo.settings.get("metric")
        if m is None:
            notes.append(f"metric of {lo.name} not in the saved output: not checked")
        elif m.value != 254:
            yield ("loopback_metric_not_254", WARNING, f"{lo.name} has metric {m.value}, not 254.", [m.ref], lo.name)
        nb = lo.settings.get("netbios")
        if nb is None:
            notes.append(f"NetBIOS setting of {lo.name} not in the saved output (ipconfig /all): not checked")
        elif nb.value:
            yield ("netbios_enabled_on_loopback", WARNING, f"NetBIOS over TCP/IP is enabled on {lo.name}.", [nb.ref], lo.name)
        v6 = lo.settings.get("ipv6_bound")
        if v6 is not None and v6.value and fam == 4:
            yield ("ipv6_bound_on_loopback", WARNING, f"IPv6 is bound on {lo.name}.", [v6.ref], lo.name)


def _flag(i: Interface, key: str, kind: str, text: str, notes: list[str]) -> Iterator:
    v = i.settings.get(key)
    if v is None or v.value is None:
        notes.append(f"{key.replace('_', ' ')} of {i.name} not in the saved output (netsh or Get-NetIPInterface): not checked")
    elif not v.value:
        yield (kind, ERROR, text, [v.ref], i.name)
