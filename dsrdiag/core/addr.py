"""Address text forms used everywhere: canonical IP strings and lowercase colon MACs.

Why: records keep raw bytes on the hot path; the user sees one canonical spelling, so that an
address given on the command line compares equal to the same address read from a packet.
"""

import ipaddress
import re

# _socket, not socket: the two functions below are all this needs, and socket.py builds its enums
# and imports selectors at start (~2 ms of every run)
from _socket import AF_INET, AF_INET6, inet_ntop

from dsrdiag.core.errors import UsageError


def ip_text(raw: bytes) -> str:
    """4 or 16 raw bytes -> canonical text (IPv6 compressed, as Wireshark prints it)."""
    return inet_ntop(AF_INET if len(raw) == 4 else AF_INET6, raw)


def mac_text(raw: bytes) -> str:
    return raw.hex(":")


def parse_ip(text: str, what: str = "address") -> str:
    """Validate and canonicalise an IPv4/IPv6 address given by the user."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise UsageError(f"{what} {text!r} is not an IPv4 or IPv6 address") from None


def ip_bytes(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


_MAC_FORMS = re.compile(
    r"^(?:[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}"  # 00:50:56:aa:bb:cc, 00-50-56-...
    r"|[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}\.[0-9A-Fa-f]{4}"               # 0050.56aa.bbcc (Cisco)
    r"|[0-9A-Fa-f]{12})$"                                              # 005056aabbcc
)


def parse_mac(text: str, what: str = "MAC") -> str:
    """Accept the spellings admins paste (00-50-56-..., 0050.56..., 00:50:56:...), every octet whole:
    netaddr alone reads `02:00:00:00:00:0` as ...:00, and a typo must not become another MAC."""
    import netaddr  # only for MACs the user gives: ~10 ms of every start otherwise

    if not isinstance(text, str) or not _MAC_FORMS.match(text.strip()):
        raise UsageError(f"{what} {text!r} is not a MAC address (six two-digit hex octets, e.g. 02:00:00:00:00:0a)")
    try:
        mac = netaddr.EUI(text.strip())
    except (netaddr.AddrFormatError, TypeError, ValueError):
        raise UsageError(f"{what} {text!r} is not a MAC address") from None
    if mac.version != 48:
        raise UsageError(f"{what} {text!r} is not a 48-bit MAC address")
    mac.dialect = netaddr.mac_unix_expanded
    return str(mac).lower()
