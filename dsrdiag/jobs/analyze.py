"""The analyse job: captures -> per-vantage records (in parallel) -> topology -> findings -> Report.

Why the split into `track_one` and `conclude`: the per-file work and the merge are separable, so
a distributed engine could run the first on many machines and the second once
(docs/architecture.md). Reading in worker processes gives the same records as reading inline:
trackers are deterministic and records are plain frozen data.
"""

from __future__ import annotations

import os
import weakref
from typing import NamedTuple

from dsrdiag.core.topology import Topology
from dsrdiag.findings.context import Context
from dsrdiag.findings.finding import BackendRef, Finding
from dsrdiag.findings.group import group_across_vantages
from dsrdiag.findings.infer import infer
from dsrdiag.findings.judge import judge, limits
from dsrdiag.findings.verdict import verdict
from dsrdiag.jobs.report_model import BackendRow, CaptureSummary, Report
from dsrdiag.track.pipeline import track_capture
from dsrdiag.track.records import CaptureRecords, flow_key


def track_one(args: tuple, hand_off: bool = False) -> CaptureRecords:
    """One capture's records. `hand_off` (this machine's worker processes): records are pickled to
    the spill folder while the capture is read, not all at the end (track/spill.py EARLY_SPILLS);
    left False for an engine that moves records between machines, as they then travel in memory
    up to the spill bound."""
    vantage, path, ports, shared = args
    report = None
    if shared is not None:
        def report(pos: int, frames: int) -> None:
            shared[path] = (pos, frames)
    return track_capture(path, vantage, ports, report, hand_off=hand_off)


def track_all(sources: list[tuple[str, str]], ports: tuple[int, ...], jobs: int | None = None,
              on_progress=None) -> list[CaptureRecords]:
    """Read every capture, in worker processes when there are several. `on_progress(path, bytes,
    frames)` is called from this thread (never from a worker), a few times a second."""
    jobs = jobs or os.cpu_count() or 1
    if jobs <= 1 or len(sources) <= 1:
        out = []
        for v, p in sources:
            cb = (lambda pos, fr, p=p: on_progress(p, pos, fr)) if on_progress else None
            out.append(track_capture(p, v, ports, cb))
        return out
    from multiprocessing import Manager

    manager = Manager() if on_progress else None
    shared = manager.dict() if manager else None

    def workers_progress() -> None:
        for path, (wpos, wframes) in list(shared.items()):
            on_progress(path, wpos, wframes)

    def here(i: int) -> CaptureRecords:
        v, p = sources[i]
        cb = None
        if on_progress:
            def cb(pos: int, frames: int, p=p) -> None:  # ours, and the workers' meanwhile
                on_progress(p, pos, frames)
                workers_progress()
        return track_capture(p, v, ports, cb)

    try:
        return share(len(sources), jobs, here, track_one, lambda i: ((*sources[i], ports, shared), True),
                     workers_progress if on_progress else None)
    finally:
        if manager is not None:
            manager.shutdown()


def share(n: int, jobs: int, here, there, args, poll=None, mp_context=None) -> list:
    """Items 0..n-1 done by this process and jobs-1 worker processes: `here(i)` in this process,
    `there(*args(i))` in a worker. This process takes items from the front, the workers from the
    end, each taking the next one nobody started (a future not yet running can be cancelled: then
    it is ours). So two items on two cores cost one worker, and only what the workers made crosses
    a pipe. `poll()` is called a few times a second while workers finish."""
    from concurrent.futures import ProcessPoolExecutor, wait  # only here: ~10 ms of every start otherwise

    out: list = [None] * n
    with ProcessPoolExecutor(max_workers=min(jobs - 1, n - 1), mp_context=mp_context) as pool:
        futures = {i: pool.submit(there, *args(i)) for i in range(n - 1, 0, -1)}
        mine = [0]
        while mine:
            i = mine.pop()
            out[i] = here(i)
            for j in sorted(futures):  # the next item no worker has started
                if futures[j].cancel():
                    del futures[j]
                    mine.append(j)
                    break
        while poll is not None and not all(f.done() for f in futures.values()):
            wait(list(futures.values()), timeout=0.2)
            poll()
        for i, f in futures.items():
            out[i] = f.result()
    return out


class CapturePart(NamedTuple):
    """What one capture contributes to the report once the topology is known (conclude_part)."""

    findings: list
    tally: "BackendTally"
    keys: dict
    """uid -> (client address, port, service port) of every connection its findings name"""
    limits: list
    rendered: str | None
    """A file holding its connection list as JSON items (jsondoc), or None."""


def conclude_part(r: CaptureRecords, topology: Topology, several: bool, render: bool) -> CapturePart:
    """One capture's rules, back-end table, grouping keys and (if `render`) JSON connection list,
    in judge's one pass over its records. Per capture, so that worker processes can do it
    (conclude_parts); merged in capture order, it gives what a pass over every capture gives."""
    tally = BackendTally(topology, several)
    keys: dict[str, tuple] = {}
    rendered = None
    out = None

    def riders(ctx: Context) -> list:
        nonlocal out, rendered
        # what else needs every connection rides judge's shared pass (each pass over spilled
        # records unpickles them all): the back-end table, the keys that group one fault seen at
        # several vantages, the JSON connection list
        riding = [tally.observer(ctx)]
        if several:
            def key(c) -> None:
                keys[c.uid] = (c.client_ip, c.client_port, c.server_port)
            riding.append(key)
        if render:
            from dsrdiag.report.jsondoc import ConnectionItems

            out = ConnectionItems.to_file()
            rendered = out.path
            backend_of, add = ctx.backend_of, out.add
            riding.append(lambda c: add(c, backend_of(c)))
        return riding

    try:
        findings = judge([r], topology, riders)
    finally:
        if out is not None:
            out.close()
    named = {u for f in findings for u in f.connections}
    return CapturePart(findings, tally, {u: k for u, k in keys.items() if u in named}, limits(r, topology), rendered)


_FORKED: tuple | None = None
"""(records, topology, several, render) while conclude_parts' worker processes are forked: they
find the records here, inherited, instead of receiving them pickled."""


def _part_in_worker(i: int) -> CapturePart:
    records, topology, several, render = _FORKED
    return conclude_part(records[i], topology, several, render)


def conclude_parts(records: list[CaptureRecords], topology: Topology, jobs: int = 1, render: bool = False) -> list[CapturePart]:
    """Every capture's part, in forked worker processes when there are several captures and jobs:
    the rules and the JSON list of one capture need no other capture, and a forked worker inherits
    the records (in memory, or the spill files' names) without pickling them."""
    global _FORKED
    several = len(records) > 1
    import multiprocessing

    if jobs <= 1 or not several or "fork" not in multiprocessing.get_all_start_methods():
        return [conclude_part(r, topology, several, render) for r in records]
    _FORKED = (records, topology, several, render)
    try:
        return share(len(records), jobs, lambda i: conclude_part(records[i], topology, several, render),
                     _part_in_worker, lambda i: (i,), mp_context=multiprocessing.get_context("fork"))
    finally:
        _FORKED = None


def conclude(records: list[CaptureRecords], given: Topology, jobs: int = 1, render: bool = False) -> Report:
    """The merge: topology from every capture's facts, then each capture's part (in parallel with
    `jobs` > 1), then what needs every capture (grouping across vantages, correlation).
    `render`: the report will be written as compact JSON, so the parts write their connection
    lists as they judge (the writer copies them) instead of the writer taking one more pass."""
    topology = infer(records, given)
    several = len(records) > 1
    parts = conclude_parts(records, topology, jobs, render)
    tally = parts[0].tally if parts else BackendTally(topology, several)
    for p in parts[1:]:
        tally.merge(p.tally)
    findings = sorted((f for p in parts for f in p.findings), key=Finding.sort_key)
    corr = None
    if several:
        from dsrdiag.correlate.paths import correlate, vantage_roles  # several vantages only

        conn_key = {u: k for p in parts for u, k in p.keys.items()}
        findings = group_across_vantages(findings, conn_key, vantage_roles(records, topology)[1])
        corr = correlate(records, topology)
    if corr is not None and corr.findings:
        findings = sorted(findings + list(corr.findings), key=lambda f: f.sort_key())
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
        topology=topology,
        connections=ConnectionsView(tuple(records), topology, tuple(p.rendered for p in parts) if render else None),
        findings=tuple(findings),
        verdict=verdict(findings),
        backends=tuple(tally.rows(corr.died_by_key() if corr is not None else {})),
        notes=topology.notes,
        correlation=corr if corr is not None and corr.flows else None,
    )


class ConnectionsView:
    """Every connection of every capture with the back-end that served it, made while iterating.

    Why not a list: a day of mail has hundreds of thousands of connections; the report's
    presenters stream them (JSON writes one at a time), so memory stays with the records.
    `rendered`: per capture, a file with its connection list already written as JSON items (or
    None); the JSON writer copies those, the other presenters iterate. The files are removed with
    the view (or at exit)."""

    def __init__(self, records: tuple[CaptureRecords, ...], topology: Topology, rendered: tuple | None = None):
        self.records, self.topology = records, topology
        self.rendered = rendered or (None,) * len(records)
        self._contexts: dict[int, Context] = {}  # one per capture: backend_of remembers its answers
        files = [p for p in self.rendered if p]
        if files:
            from dsrdiag.track.spill import remove_files

            weakref.finalize(self, remove_files, files)

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

    def __len__(self) -> int:
        return sum(len(r.connections) for r in self.records)


def completed(c) -> bool:
    """The handshake completed: the server's SYN-ACK and then the client's ACK or data were seen,
    or (where replies do not pass this vantage) the client ACKed after its SYN: it got a SYN-ACK."""
    h = c.history
    i = h.find("h")
    if i >= 0:
        return "A" in h[i:] or "D" in h[i:]
    j = h.find("S")
    return j >= 0 and not c.resp_pkts and ("A" in h[j:] or "D" in h[j:])


STATE_WORDS = {
    "S0": "SYN unanswered", "REJ": "refused (RST to the SYN)", "S1": "open when the capture ended",
    "RSTO": "reset by the client", "RSTR": "reset by the server", "RSTOS0": "client SYN then reset",
    "RSTRH": "server SYN-ACK then reset", "SH": "client SYN then FIN, no reply", "SHR": "reply only",
    "OTH": "no SYN seen (mid-stream)", "S2": "closing", "S3": "closing", "SF": "closed normally",
}
"""conn_state in words, for the per-back-end table (docs/conn-states.md has the full meaning)."""


class BackendTally:
    """Per back-end: connections served, completed, and where the others died (the correlated path
    when several captures saw them, else the conn_state of the vantage that saw most).

    Fed every connection of every capture, in report order, by judge's shared pass (observer());
    rows() once the correlation is known."""

    def __init__(self, topology: Topology, several: bool):
        self.topology, self.several = topology, several
        names = {b.name for b in topology.backends}
        self.ok: dict[str, dict[tuple, bool]] = {n: {} for n in names}
        self.state: dict[str, dict[tuple, str]] = {n: {} for n in names}
        self.banner_ms: dict[str, list[float]] = {n: [] for n in names}
        self.hosts: dict[str, set[str]] = {n: set() for n in names}
        self.refs: dict[str, BackendRef] = {}
        self.done_one: dict[str, int] = {n: 0 for n in names}

    def observer(self, ctx: Context):
        """observe(c) for one capture's connections (the back-end is its Context's to say)."""
        vips, backend_of, several = self.topology.vip_ips, ctx.backend_of, self.several
        ok, state, banner_ms, hosts, refs, done_one = self.ok, self.state, self.banner_ms, self.hosts, self.refs, self.done_one

        def observe(c) -> None:
            ref = backend_of(c)
            if ref is None or ref.name not in ok:
                return
            b = ref.name
            refs.setdefault(b, ref)
            if vips and c.server_ip not in vips and c.server_ip != ref.ip:
                return
            if c.smtp and c.smtp.banner_ts_ns and c.saw_syn:
                banner_ms[b].append((c.smtp.banner_ts_ns - c.first_ts_ns) / 1e6)
            if c.smtp and c.smtp.banner_host:
                hosts[b].add(c.smtp.banner_host)
            # one connection seen at several vantages (or as a SYN and a reply from a wrong address)
            # counts once; completed if any view saw it complete. With one capture a completed record
            # is one connection: counted, not kept (memory stays flat on a day of healthy mail).
            done = completed(c)
            if not several and done:
                done_one[b] += 1
                return
            k = flow_key(c)
            ok[b][k] = ok[b].get(k, False) or done
            state[b].setdefault(k, c.conn_state)
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
            self.banner_ms[b] += later.banner_ms[b]
            self.hosts[b] |= later.hosts[b]
            self.done_one[b] += later.done_one[b]

    def rows(self, died: dict[tuple, str] | None = None) -> list[BackendRow]:
        died = died or {}
        rows = []
        for b in self.topology.backends:
            by_key = self.ok[b.name]
            failures: dict[str, int] = {}
            for k, done in by_key.items():
                if not done:
                    st = self.state[b.name][k]
                    why = died.get(k) or f"{st}: {STATE_WORDS.get(st, st)}"
                    failures[why] = failures.get(why, 0) + 1
            n_done = sum(by_key.values()) + self.done_one[b.name]
            n_all = len(by_key) + self.done_one[b.name]
            ms = self.banner_ms[b.name]
            rows.append(BackendRow(
                backend=self.refs.get(b.name) or BackendRef(b.name, b.ip, b.mac, b.source),
                connections=n_all, completed=n_done, failed=n_all - n_done,
                banner_hosts=tuple(sorted(self.hosts[b.name])),
                median_banner_ms=round(_median(ms), 3) if ms else None,
                failures=tuple(sorted(failures.items(), key=lambda kv: -kv[1])),
            ))
        return rows


def _median(xs: list[float]) -> float:
    """statistics.median, without importing statistics (decimal, fractions) on every start."""
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def analyze(sources: list[tuple[str, str]], given: Topology, jobs: int | None = None, on_progress=None,
            render: bool = False) -> Report:
    """`render`: the report will be written as compact JSON (conclude)."""
    jobs = jobs or os.cpu_count() or 1
    return conclude(track_all(sources, given.ports, jobs, on_progress), given, jobs, render)
