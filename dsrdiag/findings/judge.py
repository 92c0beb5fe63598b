"""Run every kind on a capture (and the path kinds on correlated captures); say what each capture
could and could not show.

Reads: one capture's CaptureRecords and the (inferred) topology. Produces: sorted findings and
per-capture limits. Why limits: a client capture cannot see ARP on the server LAN; saying so is
better than a silent "healthy".
"""

from __future__ import annotations

from dsrdiag.core.topology import Topology
from dsrdiag.findings.context import Context
from dsrdiag.findings.finding import Finding
from dsrdiag.findings.kinds import CAPTURE_KINDS, PATH_KINDS
from dsrdiag.track.intern import ip_text
from dsrdiag.track.lone import Block
from dsrdiag.track.records import CaptureRecords


def judge(r: CaptureRecords, topology: Topology, riders=None) -> list[Finding]:
    """One capture's findings. Kinds with a pass of their own (`check(ctx)`) run first; then the
    others (`Collector(ctx)`) see every connection in ONE shared pass (service ports, or all with
    `all_ports`). `riders(ctx)`, if given, returns more observers for that pass: they see every
    connection of the capture (service port or not).

    Why one pass: a day of mail spills its records to disk and every pass unpickles them all
    (docs/performance.md). No kind reads another's findings, so their order is not semantics:
    which finding explains which is decided afterwards (findings/causes.py).

    Why some collectors are not fed: a collector `idle` from the start (decided from the topology
    and the capture's facts: no VIP, no PROXY header) can find nothing in this capture, and one
    whose observe() returns True can find nothing more (capture_one_sided once both sides were
    seen); feeding them every connection would only cost (each call is paid per record)."""
    ctx = Context(r, topology)
    out: list[Finding] = []
    service_obs, every_obs, collectors = [], [], []
    # a kind that claims connections (a flood's attempts: findings/kinds/syn_flood_or_scan.py) is
    # the only one that judges them; riders see them and may ask ctx.claimed(c)
    claims = [f for f in (kind.claims(ctx) for kind in CAPTURE_KINDS if hasattr(kind, "claims")) if f is not None]
    claim = ctx.claimed = claims[0] if len(claims) == 1 else (lambda c: any(f(c) for f in claims)) if claims else None
    for kind in CAPTURE_KINDS:
        if hasattr(kind, "Collector"):
            col = kind.Collector(ctx)
            collectors.append(col)
            if getattr(col, "idle", False):
                continue
            (every_obs if getattr(col, "all_ports", False) else service_obs).append(col.observe)
        else:
            out.extend(kind.check(ctx))
    every_obs += riders(ctx) if riders is not None else []
    ports = ctx.ports
    chunks = getattr(r.connections, "chunks", None)
    claim_lone = getattr(claim, "lone", None)
    any_source = getattr(claim, "any_source", True)  # False: lone SYNs are claimed by their service alone
    # a run of records at a time (track/spill.py: no generator step per record)
    for run in chunks() if chunks is not None else (r.connections,):
        if type(run) is Block:  # consecutive lone SYNs (track/lone.py)
            if claim is None or claim_lone is not None:
                _judge_rows(run, claim_lone, ports, service_obs, every_obs, any_source)
                continue
            for one in run:  # a claim that cannot read rows: each record, as below
                _judge_one(one, claim, ports, service_obs, every_obs)
            continue
        for c in run:
            if c.server_port in ports and (claim is None or not claim(c)):  # ctx.service_conns(), inline
                for observe in service_obs:
                    if observe(c):  # it can find nothing more
                        service_obs = [o for o in service_obs if o is not observe]
            for observe in every_obs:
                if observe(c):
                    every_obs = [o for o in every_obs if o is not observe]
    for col in collectors:
        out.extend(col.findings())
    out.sort(key=Finding.sort_key)
    return out


def _judge_one(c, claim, ports, service_obs, every_obs) -> None:
    if c.server_port in ports and (claim is None or not claim(c)):
        for observe in service_obs:
            observe(c)
    for observe in every_obs:
        observe(c)


def _judge_rows(block: Block, claim_lone, ports, service_obs, every_obs, any_source: bool = True) -> None:
    """judge's pass over a block of lone SYNs, with the same effect as over their records: runs of
    rows a flood or scan claims go, as blocks, to the observers that take claimed rows at once
    (`observe.claimed_rows(block)`); every other row is made a record and judged as one (a lone SYN
    nobody claims is rare: a client whose one SYN the capture ended too soon after)."""
    n = len(block)
    if claim_lone is None:
        claimed = None
    else:
        d = block.digest()
        servers = [(ip_text(g[0]), g[1]) for g in d.groups]
        if not any_source:  # the service decides: once per group, not per client address
            by_group = [claim_lone(ip, port, None) for ip, port in servers]
            claimed = (None if not any(by_group) else True if all(by_group)
                       else [by_group[g] for g in d.row_group])
        else:
            by_pair = [claim_lone(*servers[g], ip) for (g, _ci), ip in zip(d.pairs, d.pair_ips)]  # the texts the digest made
            claimed = None if not any(by_pair) else True if all(by_pair) else [by_pair[p] for p in d.row_pair]
    if claimed is None or claimed is True:  # the whole block one way (the usual case)
        claimed = (claimed is True,) * n
    i = 0
    while i < n:
        j = i
        while j < n and claimed[j] == claimed[i]:
            j += 1
        run = block if (i, j) == (0, n) else block.slice(i, j)
        if claimed[i]:
            for observe in every_obs:
                # a function's own claimed_rows, or a Collector's beside its observe()
                fast = getattr(observe, "claimed_rows", None) or getattr(getattr(observe, "__self__", None), "claimed_rows", None)
                if fast is not None:
                    fast(run)
                else:
                    for c in run:
                        observe(c)
        else:
            for c in run:
                if c.server_port in ports:
                    for observe in service_obs:
                        observe(c)
                for observe in every_obs:
                    observe(c)
        i = j


def judge_paths(corr) -> list[Finding]:
    """The kinds that judge captures correlated along the path (correlate/paths.py's facts)."""
    return sorted((f for kind in PATH_KINDS for f in kind.decide_path(corr)), key=Finding.sort_key)


def limits(r: CaptureRecords, topology: Topology) -> list[str]:
    """What this capture cannot show, in words, for the report."""
    out = []
    vips = topology.vip_ips
    seen_arp = any(ip in vips for ip in r.neighbours.claims) or any(ip in vips for ip in r.neighbours.requests)
    if vips and not seen_arp:
        out.append(
            "no ARP/NDP for the VIP in this capture: arp_reply_for_vip_from_backend could not be checked "
            "(a capture on the VIP's segment can show it)"
        )
    any_conn = with_mac = with_banner = False
    ports = topology.ports
    parts = getattr(r.connections, "parts", None)
    for c in parts() if parts is not None else r.connections:  # one pass: records may be streamed from disk
        if type(c) is Block:  # lone SYNs: no banner; a MAC when the row has its source MAC
            for g in c.digest().groups:
                if g[1] in ports:
                    any_conn = True
                    with_mac = with_mac or bool(g[4] & 1)
            continue
        if c.server_port not in ports:
            continue
        any_conn = True
        with_mac = with_mac or bool(c.orig_l2 and c.orig_l2[0][0] is not None)
        with_banner = with_banner or bool(c.smtp and c.smtp.banner_host)
        if with_mac and with_banner:
            break
    if not any_conn:
        out.append("no TCP connection on the service ports in this capture")
    elif not with_mac:
        out.append("the link type carries no destination MAC: back-ends cannot be told apart by MAC here")
    if any_conn and not with_banner:
        out.append("no SMTP banner in this capture: back-ends are named by MAC or address only")
    ctx = Context(r, topology)
    if ctx.lb_interface:
        out.append(
            "this is the load balancer's own interface (it forwards client frames and sees no reply): "
            "DSR replies never pass here, so whether a back-end answered cannot be seen"
        )
    if r.damage:
        out.append(f"the capture is damaged: {r.damage}; nothing after that point was analysed")
    steps = getattr(r, "time_steps", None)
    if steps and (steps.backwards or steps.outliers):
        out.append(f"its timestamps go wrong ({steps.text()}): connection timers ran on a clock that never goes "
                   "back, and no duration is negative")
    if getattr(r, "snaplen_cut", 0):
        out.append(f"{r.snaplen_cut} tracked packets were cut by the capture's snaplen: payload lengths come from "
                   "the IP header, their bytes count as missed (Zeek's missed_bytes), SMTP text in them is not read")
    wrapped = getattr(r, "unwrapped", None)
    if wrapped:
        top = sorted(wrapped.items(), key=lambda kv: (-kv[1], kv[0]))
        text = "; ".join(f"{k}: {n:,} frames" for k, n in top[:8]) + (f"; {len(top) - 8} more" if len(top) > 8 else "")
        out.append(f"unwrapped ({text}): connections are the packets inside, by their inner addresses, as Zeek tracks them")
    for lt, n in sorted(r.skipped.items()):
        out.append(f"{n} frame{'' if n == 1 else 's'} on interfaces of unsupported link type {lt} {'was' if n == 1 else 'were'} skipped")
    return out
