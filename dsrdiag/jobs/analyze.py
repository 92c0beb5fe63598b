"""The analyse job: captures -> per-vantage records -> topology -> findings -> Report.

Four steps, two of them per capture: `track_one` (a capture's records and Facts), `infer` (the
topology, from every capture's facts), `conclude_part` (a capture's rules, back-end tally and
connection list, given the topology) and `conclude` (the merge). The per-capture steps run where
the capture was read: in worker processes with --jobs (jobs/crew.py), on other machines for a
distributed engine (docs/performance.md). Where they run does not change the report: trackers are
deterministic, records are plain frozen data, and parts merge in capture order
(tests/test_parallel_crew.py).
"""

from __future__ import annotations

import gc
from dataclasses import replace
import os
from typing import NamedTuple

from dsrdiag.core.topology import Topology
from dsrdiag.findings.catalog import title
from dsrdiag.findings.causes import link
from dsrdiag.findings.context import NOT_RETRIED_NS, Context
from dsrdiag.findings.finding import BackendRef, Finding, plural
from dsrdiag.findings.group import group_across_vantages
from dsrdiag.findings.infer import infer
from dsrdiag.findings.judge import judge, judge_paths, limits
from dsrdiag.findings.verdict import Judged, verdict
from dsrdiag.jobs.report_model import BackendRow, CaptureSummary, Failure, Report
from dsrdiag.track.pipeline import track_capture
from dsrdiag.track.history import ANSWERED, DONE_AFTER_SYNACK, DONE_NO_SYNACK, FLAGS, SAW_SYN, SYNS_ONLY
from dsrdiag.track.intern import ip_text
from dsrdiag.track.lone import Block
from dsrdiag.track.records import CaptureRecords, flow_key
from dsrdiag.track.spill import IntBag


def track_one(vantage: str, path: str, ports: tuple[int, ...], progress=None) -> CaptureRecords:
    """One capture's records and facts (the first per-capture step). `progress(bytes, frames)`."""
    return track_capture(path, vantage, ports, progress)


def track_all(sources: list[tuple[str, str]], ports: tuple[int, ...], on_progress=None) -> list[CaptureRecords]:
    """Read every capture here, one after the other (analyze() reads several in parallel).
    `on_progress(path, bytes, frames)` is called a few times a second."""
    out = []
    for v, p in sources:
        cb = (lambda pos, fr, p=p: on_progress(p, pos, fr)) if on_progress else None
        out.append(track_one(v, p, ports, cb))
    return out


class CapturePart(NamedTuple):
    """What one capture contributes to the report once the topology is known (conclude_part)."""

    findings: list
    tally: "BackendTally"
    keys: dict
    """uid -> (client address, port, service port) of every connection its findings name"""
    limits: list
    service: "ServiceTally"


def conclude_part(r: CaptureRecords, topology: Topology, several: bool) -> CapturePart:
    """One capture's rules, back-end table and grouping keys, in judge's one pass over its records
    (the second per-capture step, the map: where the capture was read). Merged in capture order,
    parts give what passes over every capture give. The connection list is not made
    here: presenters stream it from the capture's record store (track/spill.py)."""
    tally = BackendTally(topology, several)
    service = ServiceTally(topology, several)
    keys: dict[str, tuple] = {}

    def riders(ctx: Context) -> list:
        # what else needs every connection rides judge's shared pass (each pass over spilled
        # records unpickles them all): the back-end table, the keys that group one fault seen at
        # several vantages
        riding = [tally.observer(ctx), service.observer(ctx)]
        claimed = getattr(ctx, "claimed", None)

        def key(c) -> bool:  # findings name connections by uid; causes link them by flow
            if len(keys) < KEYS_KEPT:
                keys[c.uid] = (c.client_ip, c.client_port, c.server_port)
                return False
            over[0] = True
            return True  # full: nothing more to note (judge stops feeding it: findings/judge.py)

        def key_unclaimed(c) -> bool:  # a flood's attempts are named by no finding: no key kept
            return False if claimed(c) else key(c)
        key_unclaimed.claimed_rows = _nothing  # judge's claimed lone SYNs (findings/judge.py)
        riding.append(key if claimed is None else key_unclaimed)
        return riding

    over = [False]
    findings = judge(r, topology, riders)
    named = {u for f in findings for u in f.connections}
    got = {u: k for u, k in keys.items() if u in named}
    missing = named - got.keys() if over[0] else ()
    if missing:  # beyond the keys kept: one more pass, for the connections findings name only
        for c in r.connections:
            if c.uid in missing:
                got[c.uid] = (c.client_ip, c.client_port, c.server_port)
                missing.discard(c.uid)
                if not missing:
                    break
    return CapturePart(findings, tally, got, limits(r, topology), service)


KEYS_KEPT = 50_000
"""Grouping keys kept per capture during the pass (each ~250 bytes): a day of healthy mail must not
grow memory with its connections; beyond, the few that findings name are looked up afterwards."""


def _nothing(block) -> None:
    """An observer's claimed_rows (findings/judge.py) when it does nothing with a claimed connection."""


def conclude(records: list[CaptureRecords], given: Topology, crew=None) -> Report:
    """The reduce: topology from every capture's facts, then each capture's part (its rules and
    back-end tally: by the worker that read it when an executor, `crew`, read them), then what
    needs every capture (grouping across vantages, correlation). `crew`: the executor of the map
    steps (jobs/crew.py's local Crew today; any object with owner, send_parts, parts and fetch)."""
    several = len(records) > 1
    if crew is not None and _needs_records(records, given):
        records = crew.fetch(records)
    topology = infer(records, given)
    parts: list = [None] * len(records)
    if crew is not None:
        crew.send_parts(topology, several)  # the workers conclude theirs meanwhile
    for i, r in enumerate(records):
        if crew is None or i not in crew.owner:
            parts[i] = conclude_part(r, topology, several)
    if crew is not None:
        crew.parts(parts)
    view = ConnectionsView(tuple(records), topology)
    tally = parts[0].tally if parts else BackendTally(topology, several)
    for p in parts[1:]:
        tally.merge(p.tally)
    for p in parts:  # a capture of one direction cannot show a connection complete
        if any(f.kind == "capture_one_sided" for f in p.findings):
            p.service.nothing_completes()
    service = parts[0].service if parts else ServiceTally(topology, several)
    for p in parts[1:]:
        service.merge(p.service)
    findings = sorted((f for p in parts for f in p.findings), key=Finding.sort_key)
    corr = None
    notes = list(topology.notes)
    conn_key = {u: k for p in parts for u, k in p.keys.items()}
    if several:
        from dsrdiag.correlate.roles import applies, role_notes, vantage_roles  # several vantages only

        findings = group_across_vantages(findings, conn_key, vantage_roles(records, topology)[1])
        notes += role_notes(records, topology)
        if applies(records, topology):  # captures from two places on the path
            from dsrdiag.correlate.paths import correlate

            corr = correlate(records, topology)
    if corr is not None:
        path_findings = judge_paths(corr)
        if path_findings:
            for v in views_of(records):
                conn_key.update(v)
            findings = sorted(findings + _new(path_findings, findings, conn_key), key=Finding.sort_key)
    findings = link(findings, conn_key)
    judged = replace(service.judged(records, any(f.kind == "capture_one_sided" for f in findings)),
                     lb_mode=topology.lb_mode)
    unsure = tuple(n.removeprefix("VIP unsure: ") for n in topology.notes if n.startswith("VIP unsure: "))
    if unsure and not judged.vips:
        judged = replace(judged, hints=unsure + judged.hints)
    captures = []
    for r, p in zip(records, parts):
        captures.append(CaptureSummary(
            path=r.capture, vantage=r.vantage, frames=r.frames, analysed=r.passed,
            linktypes=r.linktypes, reader=r.reader, damage=r.damage,
            first_ts_ns=r.first_ts_ns, last_ts_ns=r.last_ts_ns,
            anomalies=dict(r.anomalies), anomaly_frames=dict(r.anomaly_frames),
            limits=tuple(p.limits), connections=len(r.connections),
        ))
    return Report(
        captures=tuple(captures),
        topology=topology.with_changes(notes=tuple(notes)) if len(notes) != len(topology.notes) else topology,
        connections=view,
        findings=tuple(findings),
        verdict=verdict(findings, judged, titles=title),
        judged=judged,
        backends=tuple(tally.rows(corr.died_by_key() if corr is not None else {}, _caused(findings, conn_key))),
        notes=tuple(notes),
        correlation=corr if corr is not None and corr.flows else None,
    )


class ConnectionsView:
    """Every connection of every capture with the back-end that served it, made while iterating.

    Why not a list: a day of mail has hundreds of thousands of connections; the report's
    presenters stream them from each capture's record store (JSON writes one at a time, a
    conn.log likewise), so memory stays with the open connections."""

    def __init__(self, records: tuple[CaptureRecords, ...], topology: Topology):
        self.records, self.topology = records, topology
        self._contexts: dict[int, Context] = {}  # one per capture: backend_of remembers its answers

    def __iter__(self):
        for i in range(len(self.records)):
            yield from self.of_capture(i)

    def of_capture(self, i: int):
        r = self.records[i]
        ctx = self._contexts.get(i)
        if ctx is None:
            ctx = self._contexts[i] = Context(r, self.topology)
        backend_of = ctx.backend_of
        for c in r.connections:
            yield c, backend_of(c)

    def chunks(self):
        """Every capture's records a sequence at a time (track/spill.py's RecordSeq.chunks: a run of
        consecutive records, or a Block of lone SYNs), each with that capture's backend_of: the JSON
        list's C writer looks the back-ends up itself, once per distinct L2 path in a run."""
        for i, r in enumerate(self.records):
            ctx = self._contexts.get(i)
            if ctx is None:
                ctx = self._contexts[i] = Context(r, self.topology)
            chunks = getattr(r.connections, "chunks", None)
            if chunks is None:
                yield tuple(r.connections), ctx.backend_of
                continue
            backend_of = ctx.backend_of
            for chunk in chunks():
                yield chunk, backend_of

    def __len__(self) -> int:
        return sum(len(r.connections) for r in self.records)


def completed(c) -> bool:
    """The handshake completed: the server's SYN-ACK and then the client's ACK or data were seen,
    or (where replies do not pass this vantage) the client ACKed after its SYN: it got a SYN-ACK.
    Read from the history's bits (track/history.py: computed once per distinct history)."""
    f = FLAGS[c.history]
    return bool(f & DONE_AFTER_SYNACK) or (bool(f & DONE_NO_SYNACK) and not c.resp_pkts)


def answered(c) -> bool:
    """The verdict's completion: a SYN-ACK seen here, then the client's ACK or data, and the server's
    own data (an SMTP server speaks first: its banner). Where replies do not pass (the LB's own
    interface in DSR) a client's ACK proves it got some answer, not that the service works: that
    vantage cannot call a site healthy; and a handshake whose server never spoke (a firewall that
    drops the client's ACKs) did not serve anyone."""
    return bool(FLAGS[c.history] & ANSWERED)


STATE_WORDS = {
    "S0": "SYN unanswered", "REJ": "refused (RST to the SYN)", "S1": "open when the capture ended",
    "RSTO": "reset by the client", "RSTR": "reset by the server", "RSTOS0": "client SYN then reset",
    "RSTRH": "server SYN-ACK then reset", "SH": "client SYN then FIN, no reply", "SHR": "reply only",
    "OTH": "no SYN seen (mid-stream)", "S2": "closing", "S3": "closing", "SF": "closed normally",
}
"""conn_state in words, for the per-back-end table (docs/conn-states.md has the full meaning)."""


def _new(path_findings: list[Finding], findings: list[Finding], conn_key: dict) -> list[Finding]:
    """Path findings whose connections no capture finding of the same kind names already (a finding
    about a segment of the path always adds the segment: causes.py makes it the cause of those)."""
    named: dict[str, set] = {}
    for f in findings:
        named.setdefault(f.kind, set()).update(conn_key.get(u, u) for u in f.connections)
    return [p for p in path_findings
            if p.between or not p.connections or not {conn_key.get(u, u) for u in p.connections} <= named.get(p.kind, set())]


def _caused(findings: list[Finding], conn_key: dict) -> dict[tuple, tuple[str, str]]:
    """(client, port, service port) -> (kind, title) of the root cause naming that connection."""
    out = {}
    for f in findings:
        if f.explained_by is None and f.severity != "info":
            for u in f.connections:
                k = conn_key.get(u)
                if k is not None:
                    out.setdefault(k, (f.kind, title(f.kind)))
    return out


def views_of(records: list[CaptureRecords]):
    """uid -> flow key of every connection (correlated findings name connections at every vantage)."""
    for r in records:
        yield {c.uid: (c.client_ip, c.client_port, c.server_port) for c in r.connections}


class ServiceTally:
    """Connections to a VIP on a service port, and how many completed: what the verdict judged.

    One connection seen at several vantages counts once (by flow key); with one capture each
    record is one connection, counted and not kept (memory stays flat on a day of mail). Behind
    SNAT or a proxy, a back-end sees only the back legs (from the LB's address to its own): they
    are counted apart and judged only when no connection to the VIP was seen at all, so that a
    proxied connection is one connection, not two."""

    def __init__(self, topology: Topology, several: bool):
        self.vips, self.ports, self.several = topology.vip_ips, frozenset(topology.ports), several
        self.backend_ips = {b.ip for b in topology.backends if b.ip} - self.vips
        self.front = _Count(several)
        self.back = _Count(several)
        self.set_apart = 0
        """Attempts of a flood or scan (findings/kinds/syn_flood_or_scan.py): not clients to judge."""

    def observer(self, ctx: Context):
        """observe(c) for one capture: a lone SYN the capture ended too soon after is not judged
        (whether it would have been retried or answered, the capture does not say). What it reads
        of the tally and the context is bound once, the history read as bits (track/history.py):
        it runs for every connection."""
        claimed = getattr(ctx, "claimed", None)
        ports, vips, backend_ips, end_ts = self.ports, self.vips, self.backend_ips, ctx.end_ts
        front, back, several = self.front, self.back, self.several

        def observe(c) -> None:
            if c.server_port not in ports:
                return
            f = FLAGS[c.history]
            if not f & SAW_SYN:
                return
            if claimed is not None and claimed(c):
                if c.server_ip in vips:
                    self.set_apart += 1
                return
            if f & SYNS_ONLY and not c.resp_pkts and len(c.syn_frames) == 1 \
                    and end_ts - c.first_ts_ns < NOT_RETRIED_NS:  # only SYNs, one, and not not_retried()
                return
            ip = c.server_ip
            if ip in vips:
                count = front
            elif ip in backend_ips:
                count = back
            else:
                return
            if several:
                count.add(c)
            else:  # _Count.add(), inline
                count.n += 1
                if f & ANSWERED:
                    count.done += 1

        def claimed_rows(block) -> None:  # observe() of claimed lone SYNs (findings/judge.py)
            ports, vips = self.ports, self.vips
            d = block.digest()
            self.set_apart += sum(n for g, n in zip(d.groups, d.group_n) if g[1] in ports and ip_text(g[0]) in vips)
        observe.claimed_rows = claimed_rows
        return observe

    def nothing_completes(self) -> None:
        self.front.nothing_completes()
        self.back.nothing_completes()

    def merge(self, later: "ServiceTally") -> None:
        self.front.merge(later.front)
        self.back.merge(later.back)
        self.set_apart += later.set_apart

    def judged(self, records: list[CaptureRecords], one_sided: bool = False) -> Judged:
        count = self.front if self.front.total() else self.back
        service, done = count.total(), count.completed()
        why_not = tuple(dict.fromkeys(
            f"{r.vantage} is the load balancer's own interface (DSR replies never pass there)"
            for r in records if r.facts.lb_interface)) + (
            ("a capture that holds one direction only cannot show a connection complete",) if one_sided else ())
        return Judged(packets=sum(r.frames for r in records), analysed=sum(r.passed for r in records),
                      vips=tuple(sorted(self.vips)), ports=tuple(sorted(self.ports)), service=service, completed=done,
                      why_not=why_not, hints=tuple(_hints(records, self.vips, self.ports)) if not service and not self.set_apart else (),
                      set_apart=self.set_apart)


class _Count:
    """Connections and completions, once per flow when several captures are merged."""

    def __init__(self, several: bool):
        self.several = several
        self.n = self.done = 0
        self.ok: dict[tuple, bool] = {}

    def add(self, c) -> None:
        done = answered(c)
        if not self.several:
            self.n += 1
            self.done += done
            return
        k = (c.client_ip, c.client_port, c.server_port)
        self.ok[k] = self.ok.get(k, False) or done

    def nothing_completes(self) -> None:
        self.done = 0
        self.ok = dict.fromkeys(self.ok, False)

    def merge(self, later: "_Count") -> None:
        self.n += later.n
        self.done += later.done
        for k, done in later.ok.items():
            self.ok[k] = self.ok.get(k, False) or done

    def total(self) -> int:
        return self.n + len(self.ok)

    def completed(self) -> int:
        return self.done + sum(self.ok.values())


SMTP_PORTS = (25, 465, 587, 2525)
"""Where mail is served: looked for when nothing was seen on the ports asked for."""


def _hints(records: list[CaptureRecords], vips, ports) -> list[str]:
    """What was seen instead of connections to the VIP and port: from the captures' facts, and
    when the service ports were not the mail ports, from one more read of each capture (a file, not
    a stream) on the mail ports: only when there was nothing to judge, so it costs nothing otherwise."""
    other_ports: dict[tuple[str, int], int] = {}
    other_dst: dict[tuple[str, int], int] = {}
    extra = tuple(p for p in SMTP_PORTS if p not in ports)
    if extra:
        again = []
        for r in records:
            if r.frames and os.path.isfile(r.capture):
                try:
                    again.append(track_capture(r.capture, r.vantage, extra))
                except Exception:  # noqa: BLE001 - a hint must never turn a verdict into an error
                    pass
        records = list(records) + again
    for r in records:
        for (ip, port), (n, _) in r.facts.syn_dst.items():
            if port not in ports:
                other_ports.setdefault((ip, port), 0)
                other_ports[(ip, port)] += n
            elif ip not in vips:
                other_dst[(ip, port)] = other_dst.get((ip, port), 0) + n
    out = []
    for (ip, port), n in sorted(other_ports.items(), key=lambda kv: (kv[0][0] not in vips, -kv[1], kv[0]))[:3]:
        out.append(f"TCP to {ip}:{port} seen ({plural(n, 'connection')}): try --port {port}"
                   + ("" if ip in vips or not vips else f" --vip {ip}"))
    for (ip, port), n in sorted(other_dst.items(), key=lambda kv: (-kv[1], kv[0]))[:3]:
        out.append(f"SYNs to {ip}:{port} ({plural(n, 'connection')}): is that the VIP? (--vip {ip})")
    return out


class BackendTally:
    """Per back-end: connections served, completed, and where the others died (the correlated path
    when several captures saw them, else the conn_state of the vantage that saw most).

    Fed every connection of every capture, in report order, by judge's shared pass (observer());
    rows() once the correlation is known. As in ServiceTally: behind SNAT or a proxy, a back-end's
    back legs (from the LB's address to the back-end's own) are counted apart and used only for a
    back-end no connection to the VIP was attributed to, so a proxied connection counts once."""

    def __init__(self, topology: Topology, several: bool):
        self.topology, self.several = topology, several
        names = {b.name for b in topology.backends}
        self.ok: dict[str, dict[tuple, bool]] = {n: {} for n in names}
        self.state: dict[str, dict[tuple, str]] = {n: {} for n in names}
        self.back = {"ok": {n: {} for n in names}, "state": {n: {} for n in names}, "done_one": {n: 0 for n in names}}
        """The back legs (to the back-end's own address), kept apart: see the class docstring."""
        self.banner_ns: dict[str, IntBag] = {n: IntBag() for n in names}
        """SYN->banner times (ns) for the median: an IntBag (track/spill.py), whose memory is
        bounded whatever the number of connections (a list grew 32 bytes a connection)."""
        self.hosts: dict[str, set[str]] = {n: set() for n in names}
        self.refs: dict[str, BackendRef] = {}
        self.done_one: dict[str, int] = {n: 0 for n in names}

    def observer(self, ctx: Context):
        """observe(c) for one capture's connections (the back-end is its Context's to say).

        Why a plan per key: what observe does with a connection, past its times and history (the
        back-end, front or back legs, or nothing), depends only on what backend_of reads (its L2
        paths, forwarded or not, server address, banner host): decided once per such key, with the
        first back-end reference and the banner host noted then (the first record of a back-end
        is the first of its key; a set needs a host once)."""
        vips, backend_of, several = self.topology.vip_ips, ctx.backend_of, self.several
        front = (self.ok, self.state, self.done_one)
        back = (self.back["ok"], self.back["state"], self.back["done_one"])
        banner_ns, hosts, refs = self.banner_ns, self.hosts, self.refs
        claimed = getattr(ctx, "claimed", None)
        plans: dict[tuple, tuple | None] = {}

        def plan(c, host):
            ref = backend_of(c)
            if ref is None or ref.name not in front[0]:
                return None
            b = ref.name
            refs.setdefault(b, ref)
            if vips and c.server_ip not in vips and c.server_ip != ref.ip:
                return None
            ok, state, done_one = back if vips and c.server_ip not in vips else front
            if host:
                hosts[b].add(host)
            return b, ok[b], state[b], done_one, banner_ns[b]

        def observe(c) -> None:
            if claimed is not None and claimed(c):
                return  # a flood's attempt: its finding counts them, no back-end served them
            smtp = c.smtp
            host = smtp.banner_host if smtp else None
            key = (c.orig_l2, c.resp_l2, c.orig_forwarded > 0, c.server_ip, host)
            try:
                p = plans[key]
            except KeyError:
                p = plans[key] = plan(c, host)
            if p is None:
                return
            b, ok, state, done_one, bag = p
            f = FLAGS[c.history]
            if smtp and smtp.banner_ts_ns and f & SAW_SYN:
                bag.add(smtp.banner_ts_ns - c.first_ts_ns)
            # one connection seen at several vantages (or as a SYN and a reply from a wrong address)
            # counts once; completed if any view saw it complete. With one capture a completed record
            # is one connection: counted, not kept (memory stays flat on a day of healthy mail).
            done = bool(f & DONE_AFTER_SYNACK) or (bool(f & DONE_NO_SYNACK) and not c.resp_pkts)  # completed()
            if not several and done:
                done_one[b] += 1
                return
            k = flow_key(c)
            ok[k] = ok.get(k, False) or done
            state.setdefault(k, c.conn_state)
        observe.claimed_rows = _nothing  # a flood's attempts: see above
        return observe

    def merge(self, later: "BackendTally") -> None:
        """Add the tally of a later capture (made apart, maybe in another process): the same as if
        its connections had been observed here after ours."""
        for b, ref in later.refs.items():
            self.refs.setdefault(b, ref)
        for b, ok in self.ok.items():
            for k, done in later.ok[b].items():
                ok[k] = ok.get(k, False) or done
            state = self.state[b]
            for k, st in later.state[b].items():
                state.setdefault(k, st)
            self.banner_ns[b].update(later.banner_ns[b])
            self.hosts[b] |= later.hosts[b]
            self.done_one[b] += later.done_one[b]
            back, lback = self.back, later.back
            for k, done in lback["ok"][b].items():
                back["ok"][b][k] = back["ok"][b].get(k, False) or done
            for k, st in lback["state"][b].items():
                back["state"][b].setdefault(k, st)
            back["done_one"][b] += lback["done_one"][b]

    def rows(self, died: dict[tuple, tuple[str, str]] | None = None, caused: dict[tuple, tuple[str, str]] | None = None) -> list[BackendRow]:
        """`caused`: (client, port, service port) -> (finding kind, title) of the root cause that
        explains the connection; `died`: flow key -> (vantage, where) from the correlated paths."""
        died, caused = died or {}, caused or {}
        rows = []
        for b in self.topology.backends:
            legs = (self.ok, self.state, self.done_one)
            if not self.ok[b.name] and not self.done_one[b.name]:  # only back legs reached it
                legs = (self.back["ok"], self.back["state"], self.back["done_one"])
            by_key, states, done_one = legs[0][b.name], legs[1][b.name], legs[2][b.name]
            failures: dict[tuple, int] = {}
            for k, done in by_key.items():
                if done:
                    continue
                if k[:3] in caused:  # why, and where on the path when the captures show it
                    kind, text = caused[k[:3]]
                    vantage, where = died.get(k, (None, None))
                    f = (kind, f"{text}: {where}" if where else text, vantage, None)
                elif k in died:
                    vantage, text = died[k]
                    f = ("lost_on_path", text, vantage, None)
                else:
                    st = states[k]
                    f = ("conn_state", STATE_WORDS.get(st, st), None, st)
                failures[f] = failures.get(f, 0) + 1
            n_done = sum(by_key.values()) + done_one
            n_all = len(by_key) + done_one
            ns = self.banner_ns[b.name]
            rows.append(BackendRow(
                backend=self.refs.get(b.name) or BackendRef(b.name, b.ip, b.mac, b.source),
                connections=n_all, completed=n_done, failed=n_all - n_done,
                banner_hosts=tuple(sorted(self.hosts[b.name])),
                median_banner_ms=round(median_ms(ns), 3) if len(ns) else None,
                failures=tuple(Failure(kind, text, n, vantage, st) for (kind, text, vantage, st), n
                               in sorted(failures.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1]))),
            ))
        return rows


def median_ms(ns: IntBag) -> float:
    """The median of a bag of nanosecond times, in ms: core/stats.median's value over the times as
    ms (the middle one, or the mean of the two middle ones), which the table gave when it kept them
    as a list of floats (dividing by 1e6 keeps their order, so the middle ones are the same)."""
    n = len(ns)
    if n % 2:
        return ns.select(n // 2) / 1e6
    a = ns.select(n // 2 - 1)
    upto, nxt = ns.after(a)
    b = a if upto > n // 2 else nxt
    return (a / 1e6 + b / 1e6) / 2


def _needs_records(records: list[CaptureRecords], given: Topology) -> bool:
    """Must the workers' records come to this process before the parts are made? Always, now:
    every presenter lists connections from the record stores (handing a store over names its file:
    the records are not copied), and correlation and topology inference read them too."""
    return True


def analyze(sources: list[tuple[str, str]], given: Topology, jobs: int | None = None, on_progress=None) -> Report:
    """Several captures with jobs > 1: read and judged by a Crew (jobs/crew.py) of jobs-1 worker
    processes and this one."""
    # Automatic collection paused for the whole analysis: records and their parts make no reference
    # cycles, and a full collection re-scans every record held (measured: 12 ms of a 0.45 s run);
    # tracking still collects the young generations at each sweep (track/pipeline.py).
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _analyze(sources, given, jobs or os.cpu_count() or 1, on_progress)
    finally:
        if was_enabled:
            gc.enable()


def _analyze(sources, given: Topology, jobs: int, on_progress) -> Report:
    if jobs <= 1 or len(sources) <= 1:
        return conclude(track_all(sources, given.ports, on_progress), given)
    from multiprocessing import Manager

    from dsrdiag.jobs.crew import Crew

    manager = Manager() if on_progress else None
    shared = manager.dict() if manager else None

    def workers_progress() -> None:
        for path, (pos, frames) in list(shared.items()):
            on_progress(path, pos, frames)

    try:
        with Crew(sources, given.ports, jobs - 1, shared, steps=(track_one, conclude_part)) as crew:
            records: list = [None] * len(sources)
            while (i := crew.claim()) is not None:
                v, p = sources[i]
                cb = None
                if on_progress:
                    def cb(pos: int, frames: int, p=p) -> None:  # ours, and the workers' meanwhile
                        on_progress(p, pos, frames)
                        workers_progress()
                records[i] = track_one(v, p, given.ports, cb)
            crew.tracked(records, workers_progress if on_progress else None)
            if on_progress:
                workers_progress()
            return conclude(records, given, crew=crew)
    finally:
        if manager is not None:
            manager.shutdown()
