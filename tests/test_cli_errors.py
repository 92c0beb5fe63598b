"""Bad input gets one clear line on stderr and a documented exit code, never a traceback."""

from __future__ import annotations

import pytest

from tests.conftest import CAPTURES


def assert_one_line_error(r, code, text):
    assert r.code == code, (r.out, r.err)
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("dsrdiag: error: "), r.err
    assert text in lines[0]
    assert "Traceback" not in r.err + r.out


def test_missing_capture_file(cli, tmp_path):
    assert_one_line_error(cli("analyze", str(tmp_path / "nope.pcap")), 2, "no such file")


def test_file_that_is_not_a_capture(cli, tmp_path):
    p = tmp_path / "mail.log"
    p.write_text("Nov 27 postfix/smtpd[1]: connect from x\n")
    assert_one_line_error(cli("analyze", str(p)), 2, "not a pcap or pcapng capture")


def test_empty_file(cli, tmp_path):
    p = tmp_path / "empty.pcap"
    p.write_bytes(b"")
    assert_one_line_error(cli("analyze", str(p)), 2, "empty file")


def test_truncated_file_header(cli, tmp_path):
    p = tmp_path / "head.pcap"
    p.write_bytes((CAPTURES / "healthy.pcap").read_bytes()[:10])
    assert_one_line_error(cli("analyze", str(p)), 2, "head.pcap")


def test_unknown_link_type(cli, tmp_path):
    data = bytearray((CAPTURES / "healthy.pcap").read_bytes())
    data[20:24] = (147).to_bytes(4, "little")
    p = tmp_path / "user0.pcap"
    p.write_bytes(bytes(data))
    assert_one_line_error(cli("analyze", str(p)), 2, "link type 147 is not a supported link type")


def test_gzip_that_holds_no_capture(cli, tmp_path):
    import gzip
    p = tmp_path / "x.pcap.gz"
    p.write_bytes(gzip.compress(b"this is text, not packets" * 10))
    assert_one_line_error(cli("analyze", str(p)), 2, "gzip data that is not a pcap or pcapng capture")


@pytest.mark.parametrize("args,text", [
    (["--vip", "192.0.2.300"], "VIP '192.0.2.300' is not an IPv4 or IPv6 address"),
    (["--port", "0"], "port 0 is not a TCP port"),
    (["--lb-mac", "zz:zz"], "is not a MAC address"),
    (["--backend", "be1"], "is not an IPv4 or IPv6 address"),
    (["--format", "xml"], "--format 'xml'"),
    (["--fail-on", "fatal"], "--fail-on 'fatal'"),
    (["--topology", "/nonexistent.toml"], "topology file '/nonexistent.toml' does not exist"),
    (["--no-such-option"], "No such option"),
    (["--width", "10"], "--width 10: use 40 columns or more"),
    (["--width", "wide"], "--width"),
    (["--brief", "-f", "json"], "--brief is a form of the text report: not with --format json"),
    (["--explain", "-f", "json"], "--explain is a form of the text report"),
])
def test_bad_options(cli, args, text):
    assert_one_line_error(cli("analyze", str(CAPTURES / "healthy.pcap"), *args), 2, text)


def test_bad_topology_file(cli, tmp_path):
    p = tmp_path / "t.toml"
    p.write_text("[[vip]]\naddress = 12\n")
    assert_one_line_error(cli("analyze", str(CAPTURES / "healthy.pcap"), "--topology", str(p)), 2, "topology file")


def test_directory_without_captures(cli, tmp_path):
    assert_one_line_error(cli("analyze", str(tmp_path)), 2, "folder holds no")


def test_damaged_capture_is_analysed_and_exits_3(cli):
    r = cli("analyze", str(CAPTURES / "damaged.pcap"))
    assert r.code == 3 and "DAMAGED" in r.out and "stopped after frame" in r.out and "Traceback" not in r.err


def test_fail_on_never_and_info_change_the_exit_code(cli):
    r_error = cli("analyze", str(CAPTURES / "wrong_source.pcap"), "--fail-on", "never")
    assert r_error.code == 0
    r_info = cli("analyze", str(CAPTURES / "snat_proxy.pcap"), "--vip", "192.0.2.25", "--fail-on", "info")
    assert r_info.code == 1


def test_topology_file_names_backends_and_lb(cli, tmp_path):
    p = tmp_path / "site.toml"
    p.write_text(
        'ports = [25]\n[[vip]]\naddress = "192.0.2.25"\n[lb]\nmacs = ["02:00:00:00:00:0a"]\n'
        '[[backend]]\nname = "exch2"\nip = "192.0.2.12"\nmac = "02:00:00:00:00:12"\n'
    )
    r = cli("analyze", str(CAPTURES / "vip_missing.pcap"), "--topology", str(p), "-f", "json")
    (f,) = r.json()["findings"]
    assert (f["kind"], f["backend"]["name"], f["backend"]["source"]) == ("vip_not_on_backend", "exch2", "given")


def test_terminal_output_shows_packet_text_literally(cli, tmp_path):
    # a banner holding rich markup must be printed as text, not interpreted
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    base = Ether(src="02:00:00:00:00:11", dst="02:00:00:00:00:01")
    syn = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:11") / IP(src="198.51.100.7", dst="192.0.2.25") / TCP(sport=40000, dport=25, flags="S", seq=1)
    sa = base / IP(src="192.0.2.25", dst="198.51.100.7") / TCP(sport=25, dport=40000, flags="SA", seq=100, ack=2)
    ack = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:11") / IP(src="198.51.100.7", dst="192.0.2.25") / TCP(sport=40000, dport=25, flags="A", seq=2, ack=101)
    banner = base / IP(src="192.0.2.25", dst="198.51.100.7") / TCP(sport=25, dport=40000, flags="PA", seq=101, ack=2) / b"220 [red]mx[/red] ESMTP\r\n"
    for i, p in enumerate((syn, sa, ack, banner)):
        p.time = 1_700_000_000 + i * 0.01
    path = tmp_path / "markup.pcap"
    wrpcap(str(path), [syn, sa, ack, banner])
    r = cli("analyze", str(path), "-v", "-f", "json")
    assert r.json()["connections"][0]["smtp"]["banner"] == "[red]mx[/red] ESMTP"
    import io

    from dsrdiag.cli.console import make_console
    from dsrdiag.core.topology import build
    from dsrdiag.jobs.analyze import analyze
    from dsrdiag.report import terminal
    buf = io.StringIO()
    rep = analyze([("m", str(path))], build())
    terminal.render(rep, make_console(buf, width=300), verbose=True)
    assert "[red]mx[/red]" in buf.getvalue()  # the banner host, printed as text, not swallowed as markup


def test_a_bad_completion_shell_is_one_line_and_exit_2(cli):
    assert_one_line_error(cli("--show-completion", "tcsh"), 2, "--show-completion 'tcsh': use one of bash, zsh")


def test_bare_dsrdiag_prints_the_help_once_and_exits_2(cli):
    r = cli()
    assert r.code == 2 and r.out == "" and r.err.count("Usage: dsrdiag") == 1 and "Traceback" not in r.err
