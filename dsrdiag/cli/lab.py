"""`dsrdiag lab ...`: build a real DSR site in network namespaces, healthy or broken (Linux, root)."""

from pathlib import Path

import typer


def _runner():
    """The lab's runner (namespaces, nftables, processes), imported when a lab command runs, not on
    every `dsrdiag analyze`."""
    from dsrdiag.lab import runner

    return runner


def _scenario(name: str):
    from dsrdiag.lab.scenarios import get  # the lab's modules load when a lab command runs

    return get(name)


lab_app = typer.Typer(help="A real DSR site in network namespaces, for tests and to see each failure.", no_args_is_help=True)


@lab_app.command("list")
def list_cmd():
    """Name every scenario, one line each."""
    from dsrdiag.lab.scenarios import SCENARIOS

    width = max(len(name) for name in SCENARIOS)
    for s in SCENARIOS.values():
        print(f"{s.name:{width}}  {s.summary}")


@lab_app.command("up")
def up_cmd(scenario: str = typer.Argument(..., help="Scenario name (dsrdiag lab list).")):
    """Build the site for SCENARIO and leave it running (dsrdiag lab down removes it)."""
    sc = _scenario(scenario)
    work = _runner().up(sc)
    print(f"lab up: {sc.name} ({sc.summary}); work dir {work}; try: ip netns exec dsrdiag-client "
          f"swaks --server {'2001:db8:25::25' if sc.ipv6 else '192.0.2.25'} or python3 -m dsrdiag.lab.client")


@lab_app.command("down")
def down_cmd():
    """Remove every namespace and process the lab started (also after a crash)."""
    removed = _runner().down()
    print("lab down: removed " + (", ".join(removed) if removed else "nothing (no lab was up)"))


@lab_app.command("status")
def status_cmd():
    """Show whether a lab is up, with which scenario, namespaces and processes."""
    import json

    print(json.dumps(_runner().status(), indent=2))


@lab_app.command("run")
def run_cmd(
    scenario: str = typer.Argument(..., help="Scenario name (dsrdiag lab list)."),
    out: Path = typer.Option(..., "--out", help="Folder for the captures, sessions.json, topology.toml, scenario.json."),
    count: int = typer.Option(6, "--count", min=1, max=50, help="SMTP sessions to send (at most 50)."),
    timeout: float = typer.Option(3.5, "--timeout", min=0.5, max=10, help="Per-step client timeout in seconds."),
    keep: bool = typer.Option(False, "--keep", help="Leave the site up afterwards."),
):
    """Build SCENARIO, capture at every vantage while a client sends real SMTP sessions, check the fault showed up."""
    sc = _scenario(scenario)
    result = _runner().run(sc, out, count=count, timeout=timeout, keep=keep)
    from dsrdiag.cli.console import make_console  # rich only when a lab run has a table to show

    console = make_console()
    ok = sum(1 for s in result["sessions"] if s["outcome"] == "ok")
    console.print(f"lab run {sc.name}: {ok}/{len(result['sessions'])} SMTP sessions completed; captures in {out}")
    for p in result["proofs"]:
        console.print(f"  proof at {p['vantage']}: {p['means']} ({p['matches']} match, want {p['want']}): {'ok' if p['ok'] else 'MISSING'}",
                      markup=False)
