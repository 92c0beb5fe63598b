"""What a probe will send, to whom, how many, how fast: refuses an unbounded or unsafe plan.

Why a plan object: every bound (count, rate, time) is checked once, before anything is sent, and
the report can say exactly what was done.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dsrdiag.core.errors import UsageError

MAX_COUNT = 100
MAX_RATE = 20.0
MAX_TIMEOUT = 30.0


@dataclass(frozen=True)
class ProbePlan:
    vip: str
    port: int = 25
    count: int = 6
    rate: float = 5.0
    """Sessions started per second, at most."""
    timeout: float = 5.0
    """Per step (connect, banner, each reply), seconds."""
    iface: str | None = None
    starttls: bool = False
    syn_only: bool = False
    first_port: int = 42000

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.vip).version

    @property
    def max_seconds(self) -> float:
        """The whole probe's time bound: sessions at the rate limit plus every step timing out."""
        return self.count / self.rate + self.count * 4 * self.timeout + 10


def make_plan(vip: str, port: int, count: int, rate: float, timeout: float, iface: str | None,
              starttls: bool, syn_only: bool) -> ProbePlan:
    try:
        ip = ipaddress.ip_address(vip.strip())
    except ValueError:
        raise UsageError(f"VIP {vip!r} is not an IPv4 or IPv6 address") from None
    if ip.is_multicast or ip.is_unspecified or (ip.version == 4 and ip == ipaddress.ip_address("255.255.255.255")):
        raise UsageError(f"VIP {vip} is not a unicast address")
    if not 1 <= port <= 65535:
        raise UsageError(f"port {port} is not a TCP port (1-65535)")
    if not 1 <= count <= MAX_COUNT:
        raise UsageError(f"--count {count}: between 1 and {MAX_COUNT} sessions")
    if not 0 < rate <= MAX_RATE:
        raise UsageError(f"--rate {rate}: more than 0 and at most {MAX_RATE} sessions per second")
    if not 0.2 <= timeout <= MAX_TIMEOUT:
        raise UsageError(f"--timeout {timeout}: between 0.2 and {MAX_TIMEOUT} seconds")
    return ProbePlan(str(ip), port, count, rate, timeout, iface, starttls, syn_only)
