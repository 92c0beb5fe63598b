"""Topology: the VIPs, the load balancer and the back-ends, each marked given or inferred.

Reads: command-line options or a TOML topology file. Produces: an immutable Topology.
Never: guesses; inference lives in findings/infer.py and returns a new Topology with
`source="inferred"` on what it added. Why: a finding that names a back-end must say whether
the user told us who that is or whether we concluded it from the packets.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from dsrdiag.core.addr import parse_ip, parse_mac
from dsrdiag.core.errors import UsageError

VANTAGE_ROLES = ("client", "fw-out", "fw", "fw-in", "lb", "be")
"""Where a capture was taken, in path order from the client to the back-ends."""
GIVEN = "given"
INFERRED = "inferred"


@dataclass(frozen=True)
class Vip:
    ip: str
    ports: tuple[int, ...]
    source: str = GIVEN


@dataclass(frozen=True)
class Backend:
    name: str
    ip: str | None
    mac: str | None
    source: str = GIVEN


@dataclass(frozen=True)
class Topology:
    vips: tuple[Vip, ...] = ()
    lb_macs: tuple[tuple[str, str], ...] = ()
    """(mac, source) pairs."""
    lb_ips: tuple[tuple[str, str], ...] = ()
    """(ip, source) pairs: the load balancer's own addresses (SNAT source)."""
    backends: tuple[Backend, ...] = ()
    ports: tuple[int, ...] = (25,)
    vantages: tuple[tuple[str, str], ...] = ()
    """(capture vantage name, role) in path order, from the topology file; roles: client, fw-out,
    fw, fw-in, lb, be. Vantages not listed get their role from their name (correlate/paths.py)."""
    notes: tuple[str, ...] = field(default=())
    """What inference did, in words, for the report."""
    lb_mode: str = ""
    """"nat" when the load balancer was seen rewriting the clients' connections to the back-ends'
    own addresses and never forwarding a frame unchanged (DSR): the site works another way, and a
    healthy verdict says so; "proxy" when it also opens those connections from an address of its own
    (SNAT or a full proxy). "" otherwise (DSR, or not known)."""

    @property
    def vip_ips(self) -> frozenset[str]:
        return frozenset(v.ip for v in self.vips)

    @property
    def lb_mac_set(self) -> frozenset[str]:
        return frozenset(m for m, _ in self.lb_macs)

    @property
    def lb_ip_set(self) -> frozenset[str]:
        return frozenset(i for i, _ in self.lb_ips)

    def backend_by_mac(self, mac: str | None) -> Backend | None:
        if mac is None:
            return None
        return next((b for b in self.backends if b.mac == mac), None)

    def backend_by_ip(self, ip: str | None) -> Backend | None:
        if ip is None:
            return None
        return next((b for b in self.backends if b.ip == ip), None)

    def with_changes(self, **kw) -> "Topology":
        return replace(self, **kw)


def parse_ports(ports: list[int] | tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for p in ports:
        if not isinstance(p, int) or not 1 <= p <= 65535:
            raise UsageError(f"port {p!r} is not a TCP port (1-65535)")
        if p not in out:
            out.append(p)
    return tuple(out) or (25,)


def parse_backend(spec: str) -> Backend:
    """`NAME=IP[@MAC]`, `NAME=@MAC` or `IP[@MAC]` (then the IP is the name)."""
    name, sep, rest = spec.partition("=")
    if not sep:
        name, rest = "", spec
    ip_part, _, mac_part = rest.partition("@")
    ip = parse_ip(ip_part, "back-end address") if ip_part else None
    mac = parse_mac(mac_part, "back-end MAC") if mac_part else None
    if ip is None and mac is None:
        raise UsageError(f"--backend {spec!r}: give NAME=IP, NAME=IP@MAC or NAME=@MAC")
    return Backend(name=name.strip() or ip or mac, ip=ip, mac=mac)


def build(
    vips: list[str] | None = None,
    ports: list[int] | None = None,
    backends: list[str] | None = None,
    lb_macs: list[str] | None = None,
    lb_ips: list[str] | None = None,
    topology_file: Path | None = None,
) -> Topology:
    """Combine a topology file and command-line options (options add to the file)."""
    base = load_file(topology_file) if topology_file else Topology()
    port_t = parse_ports(list(ports or []) or list(base.ports))
    vip_list = list(base.vips)
    for v in vips or []:
        ip = parse_ip(v, "VIP")
        if ip not in {x.ip for x in vip_list}:
            vip_list.append(Vip(ip=ip, ports=port_t))
    # a VIP without its own ports serves the global ports
    vip_list = [v if v.ports else replace(v, ports=port_t) for v in vip_list]
    all_ports = list(port_t)
    for v in vip_list:
        all_ports += [p for p in v.ports if p not in all_ports]
    return Topology(
        vips=tuple(vip_list),
        lb_macs=base.lb_macs + tuple((parse_mac(m, "--lb-mac"), GIVEN) for m in lb_macs or []),
        lb_ips=base.lb_ips + tuple((parse_ip(i, "--lb-ip"), GIVEN) for i in lb_ips or []),
        backends=base.backends + tuple(parse_backend(b) for b in backends or []),
        ports=tuple(all_ports),
        vantages=base.vantages,
    )


KNOWN_KEYS = {"ports": None, "vip": {"address", "ports"}, "lb": {"macs", "ips"},
              "backend": {"name", "ip", "mac"}, "vantage": {"name", "role"}}
"""The topology file's keys (docs/topology.md): a misspelt key would otherwise be ignored in silence."""


def _known_keys(path: Path, data: dict) -> None:
    for key, value in data.items():
        if key not in KNOWN_KEYS:
            raise UsageError(f"topology file {str(path)!r}: unknown key {key!r}; known: {', '.join(KNOWN_KEYS)}")
        allowed = KNOWN_KEYS[key]
        if allowed is None:
            continue
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, dict):
                raise UsageError(f"topology file {str(path)!r}: {key!r} must be a table ([{key}] or [[{key}]])")
            for k in item:
                if k not in allowed:
                    raise UsageError(f"topology file {str(path)!r}: unknown key {k!r} in [{key}]; known: {', '.join(sorted(allowed))}")


def load_file(path: Path) -> Topology:
    """Read a TOML topology file (format in docs/topology.md)."""
    import tomllib  # only with --topology: a few ms of every start otherwise

    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"topology file {str(path)!r} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"topology file {str(path)!r} is not valid TOML: {e}") from None
    except OSError as e:
        raise UsageError(f"topology file {str(path)!r} cannot be read: {e.strerror}") from None
    _known_keys(path, data)
    try:
        ports = parse_ports(data.get("ports", [25]))
        vips = tuple(
            Vip(ip=parse_ip(v["address"], "VIP"), ports=parse_ports(v.get("ports", list(ports))))
            for v in data.get("vip", [])
        )
        lb = data.get("lb", {})
        backends = tuple(
            Backend(
                name=str(b.get("name") or b.get("ip") or b.get("mac")),
                ip=parse_ip(b["ip"], "back-end address") if b.get("ip") else None,
                mac=parse_mac(b["mac"], "back-end MAC") if b.get("mac") else None,
            )
            for b in data.get("backend", [])
        )
        vantages = []
        for v in data.get("vantage", []):
            role = str(v["role"])
            if role not in VANTAGE_ROLES:
                raise UsageError(f"topology file {str(path)!r}: vantage {v['name']!r} has role {role!r}; "
                                 f"use one of {', '.join(VANTAGE_ROLES)}")
            vantages.append((str(v["name"]), role))
        return Topology(
            vantages=tuple(vantages),
            vips=vips,
            lb_macs=tuple((parse_mac(m, "lb MAC"), GIVEN) for m in lb.get("macs", [])),
            lb_ips=tuple((parse_ip(i, "lb address"), GIVEN) for i in lb.get("ips", [])),
            backends=backends,
            ports=ports,
        )
    except (KeyError, TypeError, AttributeError) as e:
        raise UsageError(f"topology file {str(path)!r}: missing or malformed entry ({e})") from None
