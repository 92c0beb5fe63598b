"""Parse what a Windows back-end prints about itself into a HostConfig.

Reads: text saved from `netsh interface ipv4 show interface [NAME|INDEX]` (the per-interface
detail and the summary table), `Get-NetIPInterface | Format-List *`, `Get-NetIPAddress |
Format-List *` and `ipconfig /all`, in any order and mixture, in one file or several, UTF-16
(PowerShell's Out-File) or UTF-8, CRLF or LF. English output only.
Never: fails on what it does not know: unknown lines are skipped; a truncated file gives what
was read, and a note. On Windows itself `collect()` runs the same commands.
Why text and not WMI: the tool runs on an admin's Linux laptop with files a Windows admin sent;
the documented one-liner (docs/hostcheck.md) produces exactly these outputs.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from pathlib import Path

from dsrdiag.audit.snapshot import Address, HostConfig, Interface, Value
from dsrdiag.core.errors import DsrdiagError, UsageError
from dsrdiag.core.evidence import HostRef

ONE_LINER = (
    "powershell -NoProfile -Command \"& { Get-NetIPInterface -AddressFamily IPv4 | ForEach-Object "
    "{ netsh interface ipv4 show interface $_.ifIndex }; Get-NetIPInterface | Format-List *; "
    "Get-NetIPAddress | Format-List *; ipconfig /all } | Out-File -Encoding utf8 dsr-host.txt\""
)

_NETSH_DETAIL = re.compile(r"^\s*Interface (.+) Parameters\s*$")
_NETSH_TABLE = re.compile(r"^\s*Idx\s+Met\s+MTU\s+State\s+Name\s*$")
_NETSH_ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(.+?)\s*$")
_KV = re.compile(r"^\s*([^:]+?)\s*:\s?(.*)$")
_PS_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9()]*$")
_IPCONFIG_ADAPTER = re.compile(r"^(\S.*?) adapter (.+):\s*$")
_IPCONFIG_KV = re.compile(r"^\s{2,}(\S.*?)[ .]*:\s?(.*)$")
_PSEUDO = "Loopback Pseudo-Interface"


def decode(data: bytes) -> str:
    if data.startswith(b"\xff\xfe") or data.startswith(b"\xfe\xff"):
        return data.decode("utf-16", errors="replace")
    if len(data) > 4 and data[1:2] == b"\x00" and data[3:4] == b"\x00":
        return data.decode("utf-16-le", errors="replace")  # UTF-16 without BOM
    for enc in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _onoff(v: str) -> bool | None:
    v = v.strip().lower()
    if v in ("enabled", "true", "yes"):
        return True
    if v in ("disabled", "false", "no"):
        return False
    return None


def parse_files(paths: list[Path]) -> HostConfig:
    host = HostConfig(os="windows")
    for p in paths:
        try:
            text = decode(Path(p).read_bytes())
        except FileNotFoundError:
            raise DsrdiagError(f"{p}: no such file") from None
        except OSError as e:
            raise DsrdiagError(f"{p}: cannot be read ({e.strerror})") from None
        parse_text(host, text, str(p))
    return host


def parse_text(host: HostConfig, text: str, source: str) -> None:
    host.sources.append(source)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it is not a blank line
    mode, current, record, rec_start = None, None, {}, 0
    ipcfg_last_key = None
    recognised = 0

    def flush_record():
        nonlocal record
        if record:
            _ps_record(host, record, source)
        record = {}

    for n, raw in enumerate(lines, 1):
        line = raw.rstrip()
        m = _NETSH_DETAIL.match(line)
        if m:
            flush_record()
            mode, current = "netsh", host.iface(m.group(1).strip())
            recognised += 1
            continue
        if _NETSH_TABLE.match(line):
            flush_record()
            mode, current = "netsh-table", None
            recognised += 1
            continue
        m = _IPCONFIG_ADAPTER.match(line)
        if m:
            flush_record()
            mode, current = "ipconfig", host.iface(m.group(2).strip())
            ipcfg_last_key = None
            recognised += 1
            continue
        if line.startswith("Windows IP Configuration"):
            flush_record()
            mode, current = "ipconfig-global", None
            continue
        if not line.strip():
            if mode == "ps":
                flush_record()
                mode = None
            elif mode == "netsh" and current is not None and current.settings:
                mode = None
            continue
        if set(line.strip()) <= {"-", " "}:
            continue  # netsh underline
        if mode == "netsh" and current is not None:
            kv = _KV.match(line)
            if kv:  # netsh's block runs from its header to the next blank line
                _netsh_kv(current, kv.group(1).strip(), kv.group(2).strip(), HostRef(source, n, line.strip()))
                continue
            mode = None
        if mode == "netsh-table":
            row = _NETSH_ROW.match(line)
            if row:
                i = host.iface(row.group(5))
                i.index = int(row.group(1))
                i.settings.setdefault("metric", Value(int(row.group(2)), HostRef(source, n, line.strip())))
                continue
            mode = None
        if mode in ("ipconfig", "ipconfig-global"):
            kv = _IPCONFIG_KV.match(line)
            if kv and (". " in line or (mode == "ipconfig" and not _PS_KEY.match(kv.group(1).strip()))):
                key, val = kv.group(1).strip().rstrip(". ").strip(), kv.group(2).strip()
                if mode == "ipconfig-global":
                    if key == "Host Name":
                        host.hostname = val
                else:
                    ipcfg_last_key = key
                    _ipconfig_kv(current, key, val, HostRef(source, n, line.strip()))
                continue
            if mode == "ipconfig" and raw.startswith(" " * 20) and ipcfg_last_key:
                _ipconfig_kv(current, ipcfg_last_key, line.strip(), HostRef(source, n, line.strip()))
                continue
        kv = _KV.match(line)
        if kv and _PS_KEY.match(kv.group(1).strip()):
            if mode != "ps":
                flush_record()
                mode, rec_start = "ps", n
            record[kv.group(1).strip()] = (kv.group(2).strip(), n, line.strip())
            recognised += 1 if len(record) == 1 else 0
            continue
        # anything else (headers, prose, other commands' output) is skipped
    if mode == "ps" and record:
        # Format-List ends every record with a blank line: a file that stops inside one was cut off
        if not text.replace("\r", "").rstrip(" \t").endswith("\n\n"):
            host.notes.append(f"{source}: ends in the middle of a record (from line {rec_start}); what it holds was used, the rest is missing")
        flush_record()
    if recognised == 0:  # bad input, not a finding about a host nobody described
        raise UsageError(f"{source}: nothing recognisable (expected netsh, Get-NetIPInterface, Get-NetIPAddress or ipconfig /all output)")


def _netsh_kv(i: Interface, key: str, val: str, ref: HostRef) -> None:
    k = key.lower()
    if k == "weak host sends":
        i.settings["weak_send"] = Value(_onoff(val), ref)
    elif k == "weak host receives":
        i.settings["weak_receive"] = Value(_onoff(val), ref)
    elif k == "metric":
        try:
            i.settings["metric"] = Value(int(val.split()[0]), ref)
        except (ValueError, IndexError):
            pass
    elif k == "ifindex":
        i.index = int(val) if val.isdigit() else i.index


def _ps_record(host: HostConfig, rec: dict, source: str) -> None:
    def get(k):
        return rec.get(k, (None, 0, ""))

    alias = get("InterfaceAlias")[0]
    if not alias:
        return
    i = host.iface(alias)
    if get("InterfaceIndex")[0] and get("InterfaceIndex")[0].isdigit():
        i.index = int(get("InterfaceIndex")[0])
    if "IPAddress" in rec and "PrefixLength" in rec:
        ip, n, text = get("IPAddress")
        try:
            addr = ipaddress.ip_address(ip.split("%")[0])
            prefix = int(get("PrefixLength")[0])
        except ValueError:
            return
        i.addresses.append(Address(str(addr), prefix, addr.version, HostRef(source, n, f"{text} /{prefix}")))
        return
    if "AddressFamily" in rec:
        fam = get("AddressFamily")[0]
        if fam == "IPv6":
            v, n, text = get("AddressFamily")
            i.settings["ipv6_bound"] = Value(True, HostRef(source, n, f"{alias}: {text}"))
            return
        for key, name in (("WeakHostSend", "weak_send"), ("WeakHostReceive", "weak_receive")):
            if key in rec:
                v, n, text = rec[key]
                i.settings.setdefault(name, Value(_onoff(v), HostRef(source, n, f"{alias}: {text}")))
        if "InterfaceMetric" in rec:
            v, n, text = rec["InterfaceMetric"]
            if v.isdigit():
                i.settings.setdefault("metric", Value(int(v), HostRef(source, n, f"{alias}: {text}")))
        if get("ifIndex")[0] and get("ifIndex")[0].isdigit():
            i.index = int(get("ifIndex")[0])


def _ipconfig_kv(i: Interface, key: str, val: str, ref: HostRef) -> None:
    k = key.lower()
    if k == "description":
        i.description = val
    elif k == "physical address":
        i.mac = val.replace("-", ":").lower()
    elif k in ("ipv4 address", "autoconfiguration ipv4 address", "ip address"):
        i.settings["_last_v4"] = Value(val.split("(")[0].strip(), ref)
    elif k == "subnet mask":
        last = i.settings.pop("_last_v4", None)
        if last:
            try:
                net = ipaddress.ip_network(f"{last.value}/{val}", strict=False)
                if not any(a.ip == last.value for a in i.addresses):
                    i.addresses.append(Address(str(last.value), net.prefixlen, 4, HostRef(ref.source, last.ref.line, f"{last.ref.text}; {ref.text}")))
            except ValueError:
                pass
    elif k in ("link-local ipv6 address", "ipv6 address", "temporary ipv6 address"):
        i.settings["ipv6_bound"] = Value(True, ref)
    elif k == "netbios over tcpip":
        i.settings["netbios"] = Value(_onoff(val), ref)
    elif k == "default gateway" and val:
        gw = val.split("%")[0].strip()
        try:
            ipaddress.ip_address(gw)
        except ValueError:
            return
        i.settings.setdefault("gateways", Value([], ref)).value.append(gw)


def is_windows_loopback(i: Interface) -> bool:
    if i.name.startswith(_PSEUDO):
        return False
    d = (i.description or "").lower()
    return "loopback" in d or "km-test" in d or (i.description is None and "loopback" in i.name.lower())


def collect() -> HostConfig:  # pragma: no cover - runs only on Windows
    """On Windows itself: run the documented commands and parse their output."""
    out = []
    for cmd in (
        ["powershell", "-NoProfile", "-Command",
         "Get-NetIPInterface -AddressFamily IPv4 | ForEach-Object { netsh interface ipv4 show interface $_.ifIndex }"],
        ["powershell", "-NoProfile", "-Command", "Get-NetIPInterface | Format-List *"],
        ["powershell", "-NoProfile", "-Command", "Get-NetIPAddress | Format-List *"],
        ["ipconfig", "/all"],
    ):
        try:
            out.append(subprocess.run(cmd, capture_output=True, timeout=60).stdout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise DsrdiagError(f"cannot run {cmd[0]}: {e}") from None
    host = HostConfig(os="windows")
    for n, data in enumerate(out):
        parse_text(host, decode(data), f"live output {n + 1}")
    return host
