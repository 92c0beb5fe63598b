"""dsrdiag hostcheck: Windows from saved output (a correct server, each single mistake, another
layout, a truncated file), and Linux against real namespaces configured right and wrong."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import jsonschema
import pytest

from tests.conftest import ROOT, run_cli

DATA = ROOT / "tests" / "data" / "windows"
GOOD = (DATA / "exch1-good.txt").read_text()
SCHEMA = json.loads((ROOT / "docs" / "report.schema.json").read_text())
VIP = "192.0.2.25"


def edit(text: str, must: list[str], old: str, new: str) -> str:
    """Replace `old` by `new` inside the blank-line-separated blocks that contain every `must`."""
    parts = re.split(r"(\r?\n\s*\r?\n)", text)
    hit = 0
    for i, block in enumerate(parts):
        if all(m in block for m in must) and old in block:
            parts[i] = block.replace(old, new)
            hit += 1
    assert hit, f"no block with {must} holds {old!r}"
    return "".join(parts)


def hostcheck_file(tmp_path, text: str, *extra) -> tuple[int, dict]:
    p = tmp_path / "host.txt"
    p.write_text(text)
    r = run_cli("hostcheck", "--vip", VIP, "--from", str(p), "--format", "json", *extra)
    assert "Traceback" not in r.err, r.err
    doc = r.json()
    jsonschema.validate(doc, SCHEMA)
    return r.code, doc


def kinds(doc) -> list[str]:
    return sorted(f["kind"] for f in doc["findings"])


LO_NETSH = ["Interface Loopback Parameters"]
LAN_NETSH = ["Interface LAN Parameters"]
LO_PS = ["InterfaceAlias                       : Loopback\n", "AddressFamily                        : IPv4"]
LAN_PS = ["InterfaceAlias                       : LAN\n", "AddressFamily                        : IPv4"]


def _weak(text, netsh_must, ps_must, which, value_netsh, value_ps):
    netsh_key = "Weak Host Sends                    : " if which == "send" else "Weak Host Receives                 : "
    ps_key = "WeakHostSend                         : " if which == "send" else "WeakHostReceive                      : "
    other = {"enabled": "disabled", "disabled": "enabled"}
    text = edit(text, netsh_must, netsh_key + other[value_netsh], netsh_key + value_netsh)
    return edit(text, ps_must, ps_key + other[value_netsh].capitalize(), ps_key + value_ps)


MISTAKES = {
    "weakhost_send_disabled": lambda t: _weak(t, LO_NETSH, LO_PS, "send", "disabled", "Disabled"),
    "weakhost_receive_disabled(LAN)": lambda t: _weak(t, LAN_NETSH, LAN_PS, "receive", "disabled", "Disabled"),
    "weakhost_receive_disabled(Loopback)": lambda t: _weak(t, LO_NETSH, LO_PS, "receive", "disabled", "Disabled"),
    "loopback_metric_not_254": lambda t: edit(edit(t, LO_NETSH, "Metric                             : 254", "Metric                             : 25"),
                                              LO_PS, "InterfaceMetric                      : 254", "InterfaceMetric                      : 25"),
    "netbios_enabled_on_loopback": lambda t: edit(t, ["KM-TEST"], "NetBIOS over Tcpip. . . . . . . . : Disabled", "NetBIOS over Tcpip. . . . . . . . : Enabled"),
    "ipv6_bound_on_loopback": lambda t: edit(t, ["KM-TEST"], "   IPv4 Address", "   Link-local IPv6 Address . . . . . : fe80::51%14(Preferred)\n   IPv4 Address"),
    "vip_on_lan_interface": lambda t: edit(edit(t, ["IPAddress               : 192.0.2.25"], "InterfaceAlias          : Loopback", "InterfaceAlias          : LAN"),
                                           ["KM-TEST"], "192.0.2.25(Preferred)", "192.0.2.26(Preferred)"),
    "vip_not_on_loopback": lambda t: t.replace("192.0.2.25", "192.0.2.26"),
    "vip_mask_mismatch": lambda t: edit(edit(t, ["IPAddress               : 192.0.2.25"], "PrefixLength            : 24", "PrefixLength            : 32"),
                                        ["KM-TEST"], "Subnet Mask . . . . . . . . . . . : 255.255.255.0", "Subnet Mask . . . . . . . . . . . : 255.255.255.255"),
}


def test_correct_windows_server_has_no_finding(tmp_path):
    code, doc = hostcheck_file(tmp_path, GOOD)
    assert (code, kinds(doc)) == (0, [])
    assert doc["host"]["hostname"] == "EXCH1" and doc["host"]["cannot_show"] == []
    lo = next(i for i in doc["host"]["interfaces"] if i["name"] == "Loopback")
    assert lo["loopback"] and lo["settings"]["weak_send"] and lo["settings"]["metric"] == 254


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_single_windows_mistake_gives_exactly_its_finding(tmp_path, mistake):
    code, doc = hostcheck_file(tmp_path, MISTAKES[mistake](GOOD))
    assert kinds(doc) == [mistake.split("(")[0]]
    (f,) = doc["findings"]
    assert f["evidence"] and all(e["source"].endswith("host.txt") and e["line"] for e in f["evidence"])
    if "(" in mistake:
        assert f["subject"] == mistake.split("(")[1].rstrip(")")
    assert code == (1 if f["severity"] == "error" else 0)


def test_evidence_line_numbers_point_at_the_lines_read(tmp_path):
    text = MISTAKES["weakhost_send_disabled"](GOOD)
    _, doc = hostcheck_file(tmp_path, text)
    lines = text.splitlines()
    for e in doc["findings"][0]["evidence"]:
        assert e["text"].split(": ", 1)[-1].strip() in lines[e["line"] - 1]


def test_netsh_and_ipconfig_layout_in_utf16_is_read_too(tmp_path):
    r = run_cli("hostcheck", "--vip", VIP, "--from", str(DATA / "exch1-netsh-ipconfig-utf16.txt"), "-f", "json")
    doc = r.json()
    assert (r.code, kinds(doc), doc["host"]["cannot_show"]) == (0, [], [])


def test_utf16_file_with_weak_send_disabled_is_caught(tmp_path):
    text = (DATA / "exch1-netsh-ipconfig-utf16.txt").read_bytes().decode("utf-16")
    text = edit(text, LO_NETSH, "Weak Host Sends                    : enabled", "Weak Host Sends                    : disabled")
    p = tmp_path / "x.txt"
    p.write_bytes(b"\xff\xfe" + text.encode("utf-16-le"))
    r = run_cli("hostcheck", "--vip", VIP, "--from", str(p), "-f", "json")
    assert kinds(r.json()) == ["weakhost_send_disabled"] and r.code == 1


def test_several_files_combine(tmp_path):
    parts = GOOD.split("\nWindows IP Configuration")
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(parts[0])
    b.write_text("Windows IP Configuration" + parts[1])
    r = run_cli("hostcheck", "--vip", VIP, "--from", str(a), "--from", str(b), "-f", "json")
    assert (r.code, kinds(r.json())) == (0, [])


def test_truncated_file_is_read_up_to_the_cut_and_says_what_was_not_checked(tmp_path):
    cut = GOOD[: GOOD.index("ClampMss")]  # inside the first Get-NetIPInterface record
    code, doc = hostcheck_file(tmp_path, cut)
    notes = doc["host"]["cannot_show"]
    assert any("ends in the middle of a record" in n for n in notes)
    # the netsh blocks before the cut were read: the weak host settings are known
    lo = next(i for i in doc["host"]["interfaces"] if i["name"] == "Loopback")
    assert lo["settings"]["weak_send"] is True
    assert kinds(doc) == ["vip_not_on_loopback"] and code == 1  # no address output survived the cut


def test_unknown_text_around_known_output_is_skipped(tmp_path):
    code, doc = hostcheck_file(tmp_path, "Some other program's output\nwith: colons : here\n\n" + GOOD + "\nTrailing junk\n")
    assert kinds(doc) == [] and code == 0


def test_a_file_with_nothing_recognisable_is_bad_input_not_a_finding_about_the_host(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("nothing useful here\n")
    r = run_cli("hostcheck", "--vip", VIP, "--from", str(f), "--format", "json")
    assert r.code == 2 and r.out == "" and "nothing recognisable" in r.err and r.err.count("\n") == 1


def test_missing_windows_file_is_a_one_line_error(tmp_path):
    r = run_cli("hostcheck", "--vip", VIP, "--from", str(tmp_path / "nope.txt"))
    assert r.code == 2 and r.err.strip().count("\n") == 0 and "no such file" in r.err


def test_hostcheck_needs_a_valid_vip():
    r = run_cli("hostcheck", "--vip", "not-an-ip", "--from", str(DATA / "exch1-good.txt"))
    assert r.code == 2 and "is not an IPv4 or IPv6 address" in r.err


# ---- Linux, in real namespaces (with --lab; lab_down asks for the lab_host check) -------------------


def in_ns(ns: str, *args: str) -> tuple[int, dict]:
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "dsrdiag", "hostcheck", *args, "--format", "json"],
                       capture_output=True, text=True, timeout=60)
    assert "Traceback" not in p.stderr, p.stderr
    doc = json.loads(p.stdout)
    jsonschema.validate(doc, SCHEMA)
    return p.returncode, doc


@pytest.mark.lab
@pytest.mark.parametrize("scenario,backend,args,want", [
    ("healthy", "be1", [], []),
    ("healthy-6", "be2", [], []),
    ("arp_leak", "be1", [], ["arp_announce_unsafe", "arp_ignore_unsafe"]),
    ("arp_leak-6", "be1", [], ["vip_on_lan_interface"]),  # ARP settings do not matter for an IPv6 VIP
    ("vip_missing", "be2", [], ["vip_not_on_backend"]),
    ("asym_bypass", "be1", ["--gateway", "192.0.2.1"], ["return_route_not_via_gateway"]),
    ("mixed", "be1", [], []),
])
def test_lab_backends_are_judged_from_their_own_kernel_state(lab_down, scenario, backend, args, want):
    from dsrdiag.lab.runner import up
    from dsrdiag.lab.scenarios import get
    sc = get(scenario)
    up(sc)
    vip = "2001:db8:25::25" if sc.ipv6 else VIP
    code, doc = in_ns(f"dsrdiag-{backend}", "--vip", vip, *args)
    want = ["vip_not_on_loopback" if w == "vip_not_on_backend" else w for w in want]
    assert kinds(doc) == sorted(want), json.dumps(doc["findings"], indent=1)[:2000]
    assert code == (1 if want else 0)
    if "arp_ignore_unsafe" in want:
        f = next(f for f in doc["findings"] if f["kind"] == "arp_ignore_unsafe")
        assert {e["source"] for e in f["evidence"]} == {"/proc/sys/net/ipv4/conf/all/arp_ignore", "/proc/sys/net/ipv4/conf/be1eth/arp_ignore"}


@pytest.mark.lab
def test_linux_misconfigurations_in_a_namespace(lab_down):
    ns = "dsrdiag-hc"
    sh = lambda *a: subprocess.run(["ip", "netns", "exec", ns, *a], check=True, capture_output=True)  # noqa: E731
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        sh("ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", "lan0", "type", "veth", "peer", "name", "up0")
        for dev, a in (("lan0", "192.0.2.11/24"), ("up0", "198.51.100.50/24")):
            sh("ip", "addr", "add", a, "dev", dev)
            sh("ip", "link", "set", dev, "up")
        sh("ip", "addr", "add", "192.0.2.25/24", "dev", "lo")  # too wide
        sh("sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
           "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.lan0.rp_filter=1")
        # no default route yet, and only a loopback-bound listener on port 25
        listener = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c",
                                     "import socket,time; s=socket.socket(); s.bind(('127.0.0.1',25)); s.listen(); time.sleep(60)"])
        try:
            for _ in range(50):
                if b":0019" in subprocess.run(["ip", "netns", "exec", ns, "cat", "/proc/net/tcp"], capture_output=True).stdout:
                    break
                import time
                time.sleep(0.05)
            code, doc = in_ns(ns, "--vip", VIP)
            assert kinds(doc) == ["no_default_route", "no_listener_on_vip", "vip_prefix_too_wide"]
            nl = next(f for f in doc["findings"] if f["kind"] == "no_listener_on_vip")
            assert "127.0.0.1" in nl["summary"]
            sh("ip", "route", "add", "default", "via", "198.51.100.1")
            code, doc = in_ns(ns, "--vip", VIP)
            assert kinds(doc) == ["no_listener_on_vip", "rp_filter_strict", "vip_prefix_too_wide"]
        finally:
            listener.kill()
            listener.wait()
    finally:
        subprocess.run(["ip", "netns", "del", ns])
