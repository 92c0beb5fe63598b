"""The analyse job: captures -> per-vantage records (in parallel) -> topology -> findings -> Report.

Why the split into `track_one` and `conclude`: the per-file work and the merge are separable, so
a distributed engine could run the first on many machines and the second once
(docs/architecture.md). Reading in worker processes gives the same records as reading inline:
trackers are deterministic and records are plain frozen data.
"""

from __future__ import annotations

import os
from dataclasses import replace

from dsrdiag.core.topology import Topology
from dsrdiag.findings.context import Context
from dsrdiag.findings.finding import BackendRef
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
    # The parent reads captures too: of n captures with j jobs, j-1 worker processes take them from
    # the end of the list while this process takes them from the front, each taking the next one
    # nobody started (a future not yet running can be cancelled: then it is ours). So two captures
    # on two cores cost one worker, and only the records the workers made cross a pipe (pickling
    # is ~0.15 s for a million-packet capture's records).
    from concurrent.futures import ProcessPoolExecutor, wait  # only here: ~10 ms of every start otherwise
    from multiprocessing import Manager

    manager = Manager() if on_progress else None
    shared = manager.dict() if manager else None
    out: list = [None] * len(sources)
    try:
        with ProcessPoolExecutor(max_workers=min(jobs - 1, len(sources) - 1)) as pool:
            futures = {i: pool.submit(track_one, (*sources[i], ports, shared), True) for i in range(len(sources) - 1, 0, -1)}
            mine = [0]
            while mine:
                i = mine.pop()
                v, p = sources[i]
                cb = None
                if on_progress:
                    def cb(pos: int, frames: int, p=p) -> None:  # ours, and the workers' meanwhile
                        on_progress(p, pos, frames)
                        for path, (wpos, wframes) in list(shared.items()):
                            on_progress(path, wpos, wframes)
                out[i] = track_capture(p, v, ports, cb)
                for j in sorted(futures):  # the next capture no worker has started
                    if futures[j].cancel():
                        del futures[j]
                        mine.append(j)
                        break
            while on_progress and not all(f.done() for f in futures.values()):
                wait(list(futures.values()), timeout=0.2)
                for path, (pos, frames) in list(shared.items()):
                    on_progress(path, pos, frames)
            for i, f in futures.items():
                r = f.result()
                out[i] = replace(r, connections=r.connections.loaded())
            return out
    finally:
        if manager is not None:
            manager.shutdown()


def conclude(records: list[CaptureRecords], given: Topology) -> Report:
    topology = infer(records, given)
    several = len(records) > 1
    tally = BackendTally(topology, several)
    conn_key: dict[str, tuple] = {}  # uid -> (client, port, service port): group_across_vantages

    def riders(ctx: Context) -> list:
        # what else needs every connection rides judge's shared pass (each pass over spilled
        # records unpickles them all): the back-end table, and with several captures the keys that
        # group one fault seen at several vantages
        out = [tally.observer(ctx)]
        if several:
            def key(c) -> None:
                conn_key[c.uid] = (c.client_ip, c.client_port, c.server_port)
            out.append(key)
        return out

    findings = judge(records, topology, riders)
    corr = None
    if several:
        from dsrdiag.correlate.paths import correlate, vantage_roles  # several vantages only

        findings = group_across_vantages(findings, conn_key, vantage_roles(records, topology)[1])
        corr = correlate(records, topology)
    if corr is not None and corr.findings:
        findings = sorted(findings + list(corr.findings), key=lambda f: f.sort_key())
    captures = []
    for r in records:
        captures.append(CaptureSummary(
            path=r.capture, vantage=r.vantage, frames=r.frames, analysed=r.passed,
            linktypes=r.linktypes, reader=r.reader, damage=r.damage,
            first_ts_ns=r.first_ts_ns, last_ts_ns=r.last_ts_ns,
            anomalies=dict(r.anomalies), anomaly_frames=dict(r.anomaly_frames),
            limits=tuple(limits(r, topology)), connections=len(r.connections),
        ))
    return Report(
        captures=tuple(captures),
        topology=topology,
        connections=ConnectionsView(tuple(records), topology),
        findings=tuple(findings),
        verdict=verdict(findings),
        backends=tuple(tally.rows(corr.died_by_key() if corr is not None else {})),
        notes=topology.notes,
        correlation=corr if corr is not None and corr.flows else None,
    )


class ConnectionsView:
    """Every connection of every capture with the back-end that served it, made while iterating.

    Why not a list: a day of mail has hundreds of thousands of connections; the report's
    presenters stream them (JSON writes one at a time), so memory stays with the records."""

    def __init__(self, records: tuple[CaptureRecords, ...], topology: Topology):
        self.records, self.topology = records, topology
        self._contexts: dict[int, Context] = {}  # one per capture: backend_of remembers its answers

    def __iter__(self):
        for i, r in enumerate(self.records):
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


def analyze(sources: list[tuple[str, str]], given: Topology, jobs: int | None = None, on_progress=None) -> Report:
    return conclude(track_all(sources, given.ports, jobs, on_progress), given)
