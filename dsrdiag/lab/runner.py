"""Build, run, check and remove the lab: `up`, `run`, `status`, `down`.

Reads: a Scenario and the site description. Produces: namespaces and processes (up), captures
at every vantage plus sessions.json, topology.toml and scenario.json (run).
Never: sends traffic outside the namespaces it created; every wait is bounded in time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from dsrdiag.lab import netns
from dsrdiag.lab.netns import LabError, nft, sh, sysctl
from dsrdiag.lab.scenarios import (
    ARP_LEAK,
    ASYM_BYPASS,
    CONN_REFUSED,
    VIP_MISSING,
    VIP_TWICE,
    WRONG_SOURCE,
    Scenario,
)
from dsrdiag.lab.site import (
    BACKENDS,
    BANNER,
    BYP_IN,
    CLIENT,
    CNET,
    FW_IN,
    FW_OUT,
    LAN,
    LB,
    LB2,
    LINKS,
    NAMESPACES,
    PORT,
    VANTAGES,
    VIP4,
    VIP6,
    Host,
    addr,
)

READY_TIMEOUT = 10.0


def up(sc: Scenario, workdir: Path | None = None) -> Path:
    """Build the site for a scenario (after removing any earlier lab). Returns the work dir."""
    netns.preflight()
    netns.teardown()
    work = workdir or netns.STATE_DIR / "work"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    netns.save_state({"scenario": sc.name, "work": str(work), "pids": [], "started": time.time()})
    try:
        _namespaces()
        _links(sc)
        _client_and_routers(sc)
        _firewall()
        _load_balancer(sc)
        _standby(sc)
        for b in BACKENDS:
            _backend(b, sc, work)
        _wait_ready(work)
    except Exception:
        netns.teardown()
        raise
    return work


def _namespaces() -> None:
    for ns in NAMESPACES:
        sh(["ip", "netns", "add", ns])
        sh(["ip", "link", "set", "lo", "up"], ns)
        # no router advertisements or DAD noise in the lab; forwarding decided per host below
        sysctl(ns, "net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
               "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
    for ns, br in ((CNET, "brc"), (LAN, "brl")):
        sh(["ip", "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0"], ns)
        sh(["ip", "link", "set", br, "up"], ns)


def _links(sc: Scenario) -> None:
    for i, (h, bridge_ns, br) in enumerate(LINKS):
        port = f"p{i}-{h.ifname}"[:15]
        sh(["ip", "link", "add", h.ifname, "netns", h.ns, "type", "veth", "peer", "name", port, "netns", bridge_ns])
        sh(["ip", "link", "set", port, "master", br, "up"], bridge_ns)
        sh(["ip", "link", "set", h.ifname, "address", h.mac], h.ns)
        sh(["sysctl", "-qw", f"net.ipv6.conf.{h.ifname}.accept_dad=0"], h.ns, check=False)
        sh(["ip", "link", "set", h.ifname, "up"], h.ns)
        sh(["ip", "addr", "add", f"{h.ip4}/{h.prefix4}", "dev", h.ifname], h.ns)
        sh(["ip", "-6", "addr", "add", f"{h.ip6}/{h.prefix6}", "dev", h.ifname, "nodad"], h.ns)


def _client_and_routers(sc: Scenario) -> None:
    sh(["ip", "route", "add", "default", "via", FW_OUT.ip4], CLIENT.ns)
    sh(["ip", "-6", "route", "add", "default", "via", FW_OUT.ip6], CLIENT.ns)
    for ns in (FW_IN.ns, BYP_IN.ns):
        sysctl(ns, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")


def _firewall() -> None:
    nft(FW_IN.ns, f"""
table inet dsrdiag_fw {{
    chain forward {{
        type filter hook forward priority 0; policy drop;
        ct state established,related accept
        ct state invalid counter drop comment "half conversations die here"
        ip daddr {VIP4} tcp dport {PORT} ct state new accept
        ip6 daddr {VIP6} tcp dport {PORT} ct state new accept
        counter drop
    }}
}}
""")
    sysctl(FW_IN.ns, "net.netfilter.nf_conntrack_tcp_loose=0")


def _hash_map(field: str) -> str:
    macs = ", ".join(f"{i} : {b.mac}" for i, b in enumerate(BACKENDS))
    return f"jhash {field} . tcp sport mod {len(BACKENDS)} seed 0x5eed map {{ {macs} }}"


def _dsr_forwarding(h: Host) -> None:
    """DSR on a load balancer: VIP frames get the LB's source MAC and a back-end's destination MAC, and go
    back out of the same interface (nftables netdev ingress, `fwd`)."""
    nft(h.ns, f"""
table netdev dsrdiag_lb {{
    chain ingress {{
        type filter hook ingress device {h.ifname} priority 0;
        ip daddr {VIP4} tcp dport {PORT} ether saddr set {h.mac} ether daddr set {_hash_map("ip saddr")} fwd to {h.ifname}
        ip6 daddr {VIP6} tcp dport {PORT} ether saddr set {h.mac} ether daddr set {_hash_map("ip6 saddr")} fwd to {h.ifname}
    }}
}}
""")


def _load_balancer(sc: Scenario) -> None:
    # the LB owns the VIP on its LAN interface: it answers ARP / neighbour solicitations for it
    sh(["ip", "addr", "add", f"{VIP4}/32", "dev", LB.ifname], LB.ns)
    sh(["ip", "-6", "addr", "add", f"{VIP6}/128", "dev", LB.ifname, "nodad"], LB.ns)
    sh(["ip", "route", "add", "default", "via", FW_IN.ip4], LB.ns)
    sh(["ip", "-6", "route", "add", "default", "via", FW_IN.ip6], LB.ns)
    if sc.mode == "dsr":
        _dsr_forwarding(LB)
    else:
        sysctl(LB.ns, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        be4 = ", ".join(f"{i} : {b.ip4}" for i, b in enumerate(BACKENDS))
        be6 = ", ".join(f"{i} : {b.ip6}" for i, b in enumerate(BACKENDS))
        nft(LB.ns, f"""
table ip dsrdiag_nat {{
    chain pre {{ type nat hook prerouting priority dstnat;
        ip daddr {VIP4} tcp dport {PORT} dnat to jhash ip saddr . tcp sport mod {len(BACKENDS)} seed 0x5eed map {{ {be4} }}
    }}
    chain post {{ type nat hook postrouting priority srcnat;
        ip daddr {{ {", ".join(b.ip4 for b in BACKENDS)} }} tcp dport {PORT} snat to {LB.ip4}
    }}
}}
table ip6 dsrdiag_nat6 {{
    chain pre {{ type nat hook prerouting priority dstnat;
        ip6 daddr {VIP6} tcp dport {PORT} dnat to jhash ip6 saddr . tcp sport mod {len(BACKENDS)} seed 0x5eed map {{ {be6} }}
    }}
    chain post {{ type nat hook postrouting priority srcnat;
        ip6 daddr {{ {", ".join(b.ip6 for b in BACKENDS)} }} tcp dport {PORT} snat to {LB.ip6}
    }}
}}
""")


def _standby(sc: Scenario) -> None:
    """lb2, the load balancer's HA peer: idle, except in vip_claimed_twice (split brain) where it holds
    the VIP on its LAN interface too, so it answers ARP/NDP for it, and forwards like the LB (the same
    hash), so the sessions work whichever MAC the firewall keeps. Which one that is follows from the
    bridge's flood order (site.LINKS: the LB answers first): IPv4 keeps the first answer (later ones
    within arp locktime do not override), IPv6 the last (advertisements carry the override flag), so
    over IPv4 the LB carries every connection, over IPv6 the first one and lb2 the rest."""
    if sc.fault == VIP_TWICE:
        sh(["ip", "addr", "add", f"{VIP4}/32", "dev", LB2.ifname], LB2.ns)
        sh(["ip", "-6", "addr", "add", f"{VIP6}/128", "dev", LB2.ifname, "nodad"], LB2.ns)
        _dsr_forwarding(LB2)


def _backend(b: Host, sc: Scenario, work: Path) -> None:
    broken = b.role in sc.broken
    fault = sc.fault if broken else None
    ns, dev = b.ns, b.ifname
    if fault != VIP_MISSING:
        sh(["ip", "addr", "add", f"{VIP4}/32", "dev", "lo"], ns)
        if fault == ARP_LEAK and sc.ipv6:
            sh(["ip", "-6", "addr", "add", f"{VIP6}/128", "dev", dev, "nodad"], ns)  # the IPv6 leak: VIP on the LAN side
        else:
            sh(["ip", "-6", "addr", "add", f"{VIP6}/128", "dev", "lo"], ns)
    if fault == ARP_LEAK:
        sysctl(ns, "net.ipv4.conf.all.arp_ignore=0", "net.ipv4.conf.all.arp_announce=0",
               f"net.ipv4.conf.{dev}.arp_ignore=0", f"net.ipv4.conf.{dev}.arp_announce=0")
    else:
        sysctl(ns, "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2",
               f"net.ipv4.conf.{dev}.arp_ignore=1", f"net.ipv4.conf.{dev}.arp_announce=2")
    gw4, gw6 = (BYP_IN.ip4, BYP_IN.ip6) if fault == ASYM_BYPASS else (FW_IN.ip4, FW_IN.ip6)
    sh(["ip", "route", "add", "default", "via", gw4], ns)
    sh(["ip", "-6", "route", "add", "default", "via", gw6], ns)
    if fault == WRONG_SOURCE:
        # replies leave with the back-end's own address, as a Windows server without weak host send does
        nft(ns, f"""
table netdev dsrdiag_wrong_source {{
    chain egress {{
        type filter hook egress device {dev} priority 0;
        ip saddr {VIP4} tcp sport {PORT} ip saddr set {b.ip4}
        ip6 saddr {VIP6} tcp sport {PORT} ip6 saddr set {b.ip6}
    }}
}}
""")
    name = BANNER[b.role]
    cert, key = work / f"{b.role}.crt", work / f"{b.role}.key"
    sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}"])
    # connection_refused: the MTA is bound to the back-end's real addresses only, so the kernel resets SYNs to the VIP
    listen = ["--listen", b.ip4, "--listen", b.ip6] if fault == CONN_REFUSED else []
    netns.spawn(ns, [sys.executable, "-m", "dsrdiag.lab.smtpd", "--name", name, "--cert", str(cert), "--key", str(key),
                     "--ready", str(work / f"{b.role}.ready"), *listen], work / f"{b.role}-smtpd.log", f"smtpd-{b.role}")


def _wait_ready(work: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    for b in BACKENDS:
        while not (work / f"{b.role}.ready").exists():
            if time.monotonic() > deadline:
                log = (work / f"{b.role}-smtpd.log").read_text()[-400:]
                raise LabError(f"the SMTP server on {b.role} did not start: {log.strip().splitlines()[-1] if log.strip() else 'no output'}")
            time.sleep(0.05)


def status() -> dict:
    state = netns.load_state()
    present = netns.existing_namespaces()
    alive = []
    for e in state.get("pids", []):
        try:
            import os
            os.kill(int(e["pid"]), 0)
            alive.append(e)
        except OSError:
            pass
    return {"scenario": state.get("scenario") if present else None, "namespaces": present, "processes": alive}


def down() -> list[str]:
    return netns.teardown()


# ---- run: capture every vantage while the client talks to the VIP ------------------------------
def run(sc: Scenario, out: Path, count: int = 6, timeout: float = 3.5, keep: bool = False) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.pcap"):
        old.unlink()
    work = up(sc)
    dumps = []
    try:
        for vantage, h in VANTAGES:
            dumps.append(_tcpdump(vantage, h, out, work))
        time.sleep(0.3)
        vip = VIP6 if sc.ipv6 else VIP4
        sessions_file = out / "sessions.json"
        sh([sys.executable, "-m", "dsrdiag.lab.client", "--vip", vip, "--source", addr(CLIENT, sc.ipv6),
            "--count", str(count), "--timeout", str(timeout), "--out", str(sessions_file)],
           CLIENT.ns, timeout=count * (3 * timeout + 2) + 30)
        time.sleep(1.0)  # trailing retransmissions and FINs
    finally:
        for p in dumps:
            netns.stop(p)
        if not keep:
            netns.teardown()
    sessions = json.loads((out / "sessions.json").read_text())
    (out / "topology.toml").write_text(topology_toml(sc))
    result = {"scenario": sc.name, "summary": sc.summary, "sessions": sessions,
              "expected": expected(sc),
              "captures": {v: f"{v}.pcap" for v, _ in VANTAGES}}
    result["proofs"] = check(sc, out, sessions)
    (out / "scenario.json").write_text(json.dumps(result, indent=2))
    failed = [p for p in result["proofs"] if not p["ok"]]
    if failed:
        raise LabError(f"scenario {sc.name}: its fault did not show up: " + "; ".join(p["means"] for p in failed))
    return result


def _judgement(j) -> dict:
    return {"kinds": sorted(j.kinds), "causes": sorted(j.causes), "state": j.state, "exit_code": j.exit_code, "why": j.why}


def expected(sc: Scenario) -> dict:
    """What dsrdiag must conclude from this run's captures (scenario.json): each alone, and all together."""
    return {"alone": {v: _judgement(j) for v, j in sc.alone.items()},
            "together": _judgement(sc.together), "together_without_topology": _judgement(sc.without_topology),
            "between": {k: {"from": a, "to": b} for k, (a, b) in sc.between.items()}}


def _tcpdump(vantage: str, h: Host, out: Path, work: Path) -> subprocess.Popen:
    log = work / f"tcpdump-{vantage}.log"
    p = netns.spawn(h.ns, ["tcpdump", "-i", h.ifname, "-n", "-U", "-s", "0", "-Z", "root", "-w", str(out / f"{vantage}.pcap")],
                    log, f"tcpdump-{vantage}")
    deadline = time.monotonic() + READY_TIMEOUT
    while "listening on" not in log.read_text():
        if p.poll() is not None or time.monotonic() > deadline:
            raise LabError(f"tcpdump at {vantage} did not start: {log.read_text().strip()[-200:]}")
        time.sleep(0.05)
    return p


def check(sc: Scenario, out: Path, sessions: list[dict]) -> list[dict]:
    """Prove the scenario's fault with tcpdump filters and the client's own view."""
    results = []
    for pr in sc.proofs:
        p = sh(["tcpdump", "-n", "-r", str(out / f"{pr.vantage}.pcap"), pr.bpf], check=False)
        n = len([line for line in p.stdout.splitlines() if line.strip()])
        ok = n > 0 if pr.want == "some" else n == 0
        results.append({"vantage": pr.vantage, "filter": pr.bpf, "matches": n, "want": pr.want, "ok": ok, "means": pr.means})
    ok_n = sum(1 for s in sessions if s["outcome"] == "ok")
    want = {"all": ok_n == len(sessions), "none": ok_n == 0, "some": 0 < ok_n < len(sessions)}[sc.sessions_ok]
    results.append({"vantage": "client", "filter": "sessions.json", "matches": ok_n, "want": f"{sc.sessions_ok} sessions ok",
                    "ok": want, "means": f"{ok_n} of {len(sessions)} SMTP sessions completed"})
    return results


def topology_toml(sc: Scenario) -> str:
    vip = VIP6 if sc.ipv6 else VIP4
    lines = [f"ports = [{PORT}]", "", "[[vip]]", f'address = "{vip}"', "", "[lb]", f'macs = ["{LB.mac}"]',
             f'ips = ["{LB.ip6 if sc.ipv6 else LB.ip4}"]']
    for b in BACKENDS:
        lines += ["", "[[backend]]", f'name = "{b.role}"', f'ip = "{addr(b, sc.ipv6)}"', f'mac = "{b.mac}"']
    return "\n".join(lines) + "\n"
