"""The dsrdiag commands (typer): thin commands over jobs/, and the click command they make.

Why apart from cli/main.py (the entry and its one error handler): this module is the command
line's definition, and loading it (typer, every command's signature) is part of the start-up
that cli/main.py runs with the garbage collector off.
"""

import gc
import inspect
import sys
import time
from pathlib import Path
from typing import List, NamedTuple, Optional

import typer

from dsrdiag import __version__
from dsrdiag.cli.shutdown import stdout_errors
from dsrdiag.core.errors import UsageError
from dsrdiag.core.exitcodes import ExitCode

# What a command needs is imported when it runs (`dsrdiag --help` or `probe` never loads the
# analysis, `analyze --format json` never loads rich), and the annotations here are objects, not
# strings (no `from __future__ import annotations`): typer would compile and evaluate each string
# to build the command line, on every run.

app = typer.Typer(
    add_completion=False,  # added by command(): `--show-completion bash` names its shell
    rich_markup_mode=None,  # plain help: `NAME=IP[@MAC]` is not markup, and the help is printed once
    no_args_is_help=True,
    help="Prove that a DSR load-balanced SMTP service works, and find out exactly why it does not.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        print(f"dsrdiag {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
):
    """dsrdiag: DSR diagnostics for SMTP behind a load balancer."""
    gc.enable()  # the start-up (cli/main.py) is over: from here the command decides (analyze: off)


def _register_lab() -> None:
    from dsrdiag.cli.lab import lab_app

    lab_app.rich_markup_mode = None  # plain help, as the app's
    app.add_typer(lab_app, name="lab")


_register_lab()


class Output(NamedTuple):
    """How a command shows its report: the options every command that prints one has (docs/terminal.md)."""

    fmt: str
    fail_on: str
    width: Optional[int]
    explain: bool
    brief: bool
    junit: Optional[Path]


def _output_options() -> list[tuple[str, object, object]]:
    """(parameter, type, typer option) of each Output field: the one definition of these options."""
    return [
        ("fmt", str, typer.Option("text", "--format", "-f", metavar="FORMAT", help="text or json.")),
        ("fail_on", str, typer.Option("error", "--fail-on", metavar="LEVEL",
                                      help="Exit 1 when a finding has this severity or worse: error, warning, info, never.")),
        ("width", Optional[int], typer.Option(None, "--width", metavar="N",
                                              help="Lay the text out for N columns (default: COLUMNS, the terminal's width, or 120 in a pipe).")),
        ("explain", bool, typer.Option(False, "--explain",
                                       help="Also print what each kind of finding means and its fixes (Windows, Linux, load balancer).")),
        ("brief", bool, typer.Option(False, "--brief", help="At most 8 lines to paste into a ticket: verdict, cause, back-end, frames, fix.")),
        ("junit", Optional[Path], typer.Option(None, "--junit", metavar="FILE",
                                               help="Also write a JUnit XML report to this file (docs/junit.md).")),
    ]


OUTPUT = None
"""The default of a command's `out: Output` parameter: where, in its help, the Output options stand."""


def _prints_a_report(command):
    """Give a command the Output options in place of its `out` parameter, and call it with them
    gathered in one Output. Why: analyze, probe and hostcheck print the same report, so they take
    the same options, declared once (typer reads the parameters from the signature)."""
    sig = inspect.signature(command)
    params = []
    for p in sig.parameters.values():
        if p.name != "out":
            params.append(p)
            continue
        params += [inspect.Parameter(name, p.kind, default=option, annotation=kind) for name, kind, option in _output_options()]

    def run_command(**kw):
        out = Output(**{name: kw.pop(name) for name in Output._fields})
        return command(**kw, out=out)

    run_command.__name__, run_command.__doc__ = command.__name__, command.__doc__
    run_command.__signature__ = sig.replace(parameters=params)
    run_command.__annotations__ = {p.name: p.annotation for p in params}
    return run_command


def _check_output(out: Output) -> None:
    from dsrdiag.findings.verdict import FAIL_ON_CHOICES

    if out.fmt not in ("text", "json"):
        raise UsageError(f"--format {out.fmt!r}: use text or json")
    if out.fail_on not in FAIL_ON_CHOICES:
        raise UsageError(f"--fail-on {out.fail_on!r}: use one of {', '.join(FAIL_ON_CHOICES)}")
    MIN_WIDTH = 40  # cli/console.py's (rich is imported only when there is text to show)
    if out.width is not None and out.width < MIN_WIDTH:
        raise UsageError(f"--width {out.width}: use {MIN_WIDTH} columns or more")
    if out.fmt == "json" and (out.brief or out.explain):
        raise UsageError(f"{'--brief' if out.brief else '--explain'} is a form of the text report: not with --format json")


@stdout_errors
def _emit(report, out: Output, started: float, verbose: bool = False, ladder: Optional[str] = None,
          html_path: Optional[Path] = None, tshark: bool = False) -> None:
    """Print the report (and write the HTML page) and end with the exit code the findings (and
    damage) call for: the verdict is decided again for this --fail-on (what counts as a cause)."""
    from dataclasses import replace

    from dsrdiag.findings.catalog import title
    from dsrdiag.findings.verdict import verdict

    fail_on = out.fail_on
    report = replace(report, verdict=verdict(list(report.findings), report.judged, fail_on, title))
    if html_path is not None:
        from dsrdiag.report import html

        try:
            html_path.write_text(html.render(report), encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--html {str(html_path)!r} cannot be written: {e.strerror}") from None
    if out.junit is not None:  # after the verdict for this --fail-on: its failures are the exit code's
        from dsrdiag.report import junit

        _write_output(out.junit, "--junit", lambda p: junit.write_file(p, report, fail_on, started=started,
                                                                       elapsed=time.time() - started))
    if tshark:  # instead of the report: one paste-ready command per finding and capture (docs/display-filters.md)
        from dsrdiag.core.safetext import terminal as visible
        from dsrdiag.report.wireshark import tshark_script

        sys.stdout.write(tshark_script(report.findings, visible(report.verdict.text)))
    elif out.fmt == "json":
        from dsrdiag.report import jsondoc

        jsondoc.write(report, sys.stdout, pretty=sys.stdout.isatty())
    else:
        from dsrdiag.cli.console import make_console  # rich: imported when there is text to show
        from dsrdiag.report import terminal

        terminal.render(report, make_console(width=out.width), verbose=verbose, ladder=ladder,
                        explain=out.explain, brief=out.brief)
    if fail_on != "never" and report.verdict.state == "broken":
        raise typer.Exit(int(ExitCode.FINDINGS))
    if report.verdict.state == "inconclusive":
        raise typer.Exit(int(ExitCode.INCONCLUSIVE))
    if report.damaged:
        raise typer.Exit(int(ExitCode.DAMAGED))
    raise typer.Exit(int(ExitCode.OK))


def _write_output(path: Path, option: str, write) -> None:
    """Write an output file (`write(path)`); one line and exit 2 when it cannot be, and no
    half-written file left behind."""
    try:
        write(str(path))
    except OSError as e:
        try:
            if path.is_file():
                path.unlink()
        except OSError:
            pass
        raise UsageError(f"{option} {str(path)!r} cannot be written: {e.strerror or e}") from None


def _not_an_input(sources, option: str, path: Optional[Path]) -> None:
    if path is not None and any(Path(p).resolve() == path.resolve() for _, p in sources):
        raise UsageError(f"{option} {str(path)!r} is one of the input files: input files are never overwritten")


def _write_conn_logs(report, tsv: Optional[Path], jsonl: Optional[Path]) -> None:
    """--conn-log / --conn-log-json: the report's connection records as Zeek's conn.log
    (report/connlog.py). The one place the records are handed to it (imported only when asked for)."""
    for path, form, option in ((tsv, "tsv", "--conn-log"), (jsonl, "json", "--conn-log-json")):
        if path is not None:
            from dsrdiag.report import connlog

            _write_output(path, option, lambda p, form=form: connlog.write_file(p, report.connections, form=form))


def _progress(sources, out: Output):
    """The progress bar (report/progress.py) when it is wanted: text output, stderr a terminal. At
    the report's width (--width, docs/terminal.md), as every line of text the run shows."""
    if out.fmt != "text" or not sys.stderr.isatty():
        return None
    from rich.markup import escape

    from dsrdiag.cli.console import make_console
    from dsrdiag.core.safetext import terminal as visible
    from dsrdiag.report.progress import CaptureProgress

    # the bar's labels are rich markup: vantage names (file names) escaped for both
    return CaptureProgress([(escape(visible(v)), p) for v, p in sources], make_console(sys.stderr, width=out.width))


def _backend_option():
    return typer.Option([], "--backend", metavar="NAME=IP[@MAC]", help="A back-end as NAME=IP[@MAC] (repeatable).")


def _service_port_option():
    return typer.Option(25, "--port", "-p", metavar="PORT", help="The service port.")


@app.command("analyze")
@_prints_a_report
def analyze_cmd(
    captures: List[str] = typer.Argument(..., metavar="[VANTAGE=]CAPTURE...", help="pcap, pcapng or .gz files, or folders; VANTAGE=path names the vantage point."),
    vip: List[str] = typer.Option([], "--vip", metavar="IP", help="The virtual IP (repeatable). Inferred from SYN destinations when absent."),
    port: List[int] = typer.Option([], "--port", "-p", metavar="PORT", help="Service port (repeatable; default 25)."),
    backend: List[str] = _backend_option(),
    lb_mac: List[str] = typer.Option([], "--lb-mac", metavar="MAC", help="The load balancer's MAC (repeatable)."),
    lb_ip: List[str] = typer.Option([], "--lb-ip", metavar="IP", help="A load balancer's own address, the SNAT source (repeatable)."),
    topology_file: Optional[Path] = typer.Option(None, "--topology", metavar="FILE", help="TOML topology file (docs/topology.md)."),
    out: Output = OUTPUT,
    jobs: int = typer.Option(0, "--jobs", "-j", metavar="N", help="Captures read in parallel (default: one per core)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also list every connection."),
    ladder: Optional[str] = typer.Option(None, "--ladder", metavar="IP:PORT", help="Draw one connection (client IP:port) vantage by vantage."),
    html_out: Optional[Path] = typer.Option(None, "--html", metavar="FILE", help="Also write a self-contained HTML report (ladders as SVG) to this file."),
    tshark: bool = typer.Option(False, "--tshark", help="Instead of the report: per finding, the `tshark -r CAPTURE -Y FILTER` line that shows it (same exit code)."),
    conn_log: Optional[Path] = typer.Option(None, "--conn-log", metavar="FILE", help="Also write the connections as a Zeek conn.log (TSV) to this file (docs/connlog.md)."),
    conn_log_json: Optional[Path] = typer.Option(None, "--conn-log-json", metavar="FILE", help="Also write the connections as Zeek JSON log lines to this file."),
):
    """Analyse captures for DSR faults; exit 0 healthy, 1 broken, 2 bad input, 3 damaged capture, 4 inconclusive."""
    gc.disable()  # to the end of the process: as in jobs/analyze.py's analyze(), nothing here makes cycles
    started = time.time()
    from dsrdiag.capture.sources import parse_sources
    from dsrdiag.core import topology as topo
    from dsrdiag.jobs.analyze import analyze

    _check_output(out)
    if tshark and out.fmt == "json":
        raise UsageError("--tshark prints commands instead of the report: use it without --format json")
    if jobs < 0:
        raise UsageError("--jobs must be 0 (one per core) or more")
    given = topo.build(vips=vip, ports=port, backends=backend, lb_macs=lb_mac, lb_ips=lb_ip, topology_file=topology_file)
    sources = parse_sources(captures)
    if html_out is not None and any(Path(p).resolve() == html_out.resolve() for _, p in sources):
        raise UsageError(f"--html {str(html_out)!r} is one of the input captures: input files are never overwritten")
    for option, path in (("--conn-log", conn_log), ("--conn-log-json", conn_log_json), ("--junit", out.junit)):
        _not_an_input(sources, option, path)
    progress = _progress(sources, out)
    try:
        report = analyze(sources, given, jobs=jobs or None, on_progress=progress.update if progress else None)
    finally:
        if progress:
            progress.close()
    _write_conn_logs(report, conn_log, conn_log_json)
    _emit(report, out, started, verbose, ladder, html_out, tshark=tshark)


@app.command("probe")
@_prints_a_report
def probe_cmd(
    vip: str = typer.Argument(..., metavar="VIP", help="The virtual IP to probe (the only address probed)."),
    port: int = _service_port_option(),
    count: int = typer.Option(6, "--count", "-n", metavar="N", help="Sessions to open (1-100)."),
    rate: float = typer.Option(5.0, "--rate", metavar="PER_SECOND", help="Sessions started per second, at most (max 20)."),
    timeout: float = typer.Option(5.0, "--timeout", metavar="SECONDS", help="Seconds per step (connect, banner, reply); max 30."),
    iface: Optional[str] = typer.Option(None, "--iface", "-i", metavar="IFACE", help="Interface to probe and capture on (default: the route to the VIP)."),
    pcap: Optional[Path] = typer.Option(None, "--pcap", metavar="FILE", help="Keep the probe's capture in this file."),
    starttls: bool = typer.Option(False, "--starttls", help="Also complete the TLS handshake after STARTTLS."),
    syn_only: bool = typer.Option(False, "--syn-only", help="Half-open: raw SYNs only (scapy, root), no SMTP session."),
    lb_mac: List[str] = typer.Option([], "--lb-mac", metavar="MAC", help="The load balancer's MAC: names the offender when several MACs answer ARP."),
    backend: List[str] = _backend_option(),
    out: Output = OUTPUT,
):
    """Verify a live DSR SMTP service: ARP/NDP for the VIP, N real SMTP sessions, and what really came back."""
    from dsrdiag.core import topology as topo
    from dsrdiag.jobs.probe import probe
    from dsrdiag.probe.plan import make_plan

    _check_output(out)
    plan = make_plan(vip, port, count, rate, timeout, iface, starttls, syn_only)
    given = topo.build(vips=[plan.vip], ports=[port], lb_macs=lb_mac, backends=backend)
    started = time.time()
    report = probe(plan, given, pcap)
    _emit(report, out, started)


@app.command("hostcheck", short_help="Audit a back-end's own DSR configuration (Linux live; Windows live or saved).")
@_prints_a_report
def hostcheck_cmd(
    vip: str = typer.Option(..., "--vip", metavar="IP", help="The virtual IP this back-end serves."),
    port: int = _service_port_option(),
    from_files: List[Path] = typer.Option([], "--from", metavar="FILE", help="Saved Windows output (netsh, Get-NetIPInterface, Get-NetIPAddress, ipconfig /all); repeatable."),
    gateway: Optional[str] = typer.Option(None, "--gateway", metavar="IP", help="The firewall that forwards client requests: the return route must use it."),
    out: Output = OUTPUT,
):
    """Audit a back-end's own DSR configuration (Linux live; Windows live or from saved output)."""
    from dsrdiag.core import topology as topo
    from dsrdiag.core.addr import parse_ip
    from dsrdiag.jobs.audit import hostcheck

    _check_output(out)
    _not_an_input([("", str(f)) for f in from_files], "--junit", out.junit)
    given = topo.build(vips=[vip], ports=[port])
    started = time.time()
    report = hostcheck(given, list(from_files), gateway=parse_ip(gateway, "--gateway") if gateway else None)
    _emit(report, out, started)


SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


def _completion_option(name: str, action):
    """`--show-completion SHELL`, `--install-completion SHELL`: typer's own scripts, for the shell
    named (typer's add_completion offers bare flags that guess the shell, and cannot name one)."""
    from typer.core import TyperOption

    def callback(ctx, param, value):
        if value is None or ctx.resilient_parsing:
            return
        if value not in SHELLS:
            raise UsageError(f"{name} {value!r}: use one of {', '.join(SHELLS)}")
        action(ctx, param, value)

    verb = "Print" if "show" in name else "Install"
    return TyperOption(param_decls=[name], metavar="SHELL", default=None, expose_value=False, is_eager=True,
                       callback=callback, help=f"{verb} the shell completion script for SHELL: {', '.join(SHELLS)}.")


def command():
    """The click command of `app`, with the shell-completion options (typer's add_completion
    offers them as bare flags that cannot name a shell)."""
    from typer import completion
    from typer.main import get_command

    cmd = get_command(app)
    completion.completion_init()  # `_DSRDIAG_COMPLETE=complete_bash dsrdiag`: typer's completion classes
    cmd.params += [_completion_option("--install-completion", completion.install_callback),
                   _completion_option("--show-completion", completion.show_callback)]
    return cmd
