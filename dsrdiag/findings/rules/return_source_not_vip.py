"""return_source_not_vip: a VIP connection answered from another address (the back-end's real IP).

Matched by sequence numbers, not by guesswork: the wrong-source SYN-ACK acknowledges ISN+1 of the
client's SYN to the VIP. The pair of records (client->VIP with no answer, real-IP->client with
'^h...') are one fault; both are claimed so no other rule reports them again.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from dsrdiag.decode.tcp import ACK, RST, SYN
from dsrdiag.findings.context import Context, first
from dsrdiag.findings.finding import ERROR, MAX_EVIDENCE, Finding, plural
from dsrdiag.track.records import ORIG, RESP

KIND = "return_source_not_vip"


def check(ctx: Context) -> Iterator[Finding]:
    if not ctx.vips:
        return
    vips, ports = ctx.vips, ctx.ports
    if not any(rep[6] not in vips and rep[3] in ports for rep in ctx.records.facts.replies):
        return  # the capture's facts (track/facts.py) know every such reply: none, so no pass at all
    # two passes, so that memory holds the replies from a real address, not every VIP connection
    replies = [r for r in ctx.service_conns() if r.server_ip not in ctx.vips and not r.saw_syn and r.saw_synack]
    if not replies:
        return
    wanted = {(r.client_ip, r.client_port, r.server_port) for r in replies}
    to_vip = {}
    for c in ctx.service_conns():
        if c.server_ip in ctx.vips and c.syn_seq is not None and (c.client_ip, c.client_port, c.server_port) in wanted:
            to_vip[(c.client_ip, c.client_port, c.server_port)] = c
    groups = defaultdict(list)
    for r in replies:
        v = to_vip.get((r.client_ip, r.client_port, r.server_port))
        matched = v is not None and r.synack_ack == (v.syn_seq + 1) & 0xFFFFFFFF
        known_backend = ctx.topology.backend_by_ip(r.server_ip) is not None
        if not matched and not known_backend:
            continue
        mac = r.resp_l2[0][0] if r.resp_l2 else None
        groups[(r.server_ip, mac)].append((v if matched else None, r))
    for (ip, mac), pairs in sorted(groups.items(), key=lambda kv: kv[0][0]):
        evidence = []
        uids = []
        for v, r in pairs:
            uids.append(r.uid)
            ctx.claimed.add(r.uid)
            if v is not None:
                uids.append(v.uid)
                ctx.claimed.add(v.uid)
                if len(evidence) < MAX_EVIDENCE and v.syn_frames:
                    evidence.append(ctx.ref(v.syn_frames[0], v, f"SYN {v.client_ip}:{v.client_port} -> VIP {v.server_ip}:{v.server_port}"))
            sa = first(r.packets, lambda n: n.direction == RESP and n.flags & SYN and n.flags & ACK)
            if sa and len(evidence) < MAX_EVIDENCE:
                evidence.append(ctx.ref(sa, r, f"SYN-ACK from real address {r.server_ip} (not the VIP), source MAC {sa.src_mac or '?'}"))
            rst = first(r.packets, lambda n: n.direction == ORIG and n.flags & RST)
            if rst and len(evidence) < MAX_EVIDENCE:
                evidence.append(ctx.ref(rst, r, f"client resets the unknown connection from {r.server_ip}"))
        vip = next((v.server_ip for v, _ in pairs if v is not None), None)
        n = len(pairs)
        matched = sum(1 for v, _ in pairs if v is not None)
        summary = (
            f"{plural(n, 'connection')} to VIP {vip or '?'} answered from {ip}"
            + (f" (MAC {mac})" if mac else "")
            + (f"; {matched} matched to the client's SYN by sequence number" if matched else "; the client's SYN to the VIP is not in this capture")
            + "."
        )
        yield Finding(
            kind=KIND, severity=ERROR, vantages=(ctx.vantage,), summary=summary,
            evidence=tuple(sorted(evidence)), connections=tuple(uids), backend=ctx.backend(mac, ip),
        )
