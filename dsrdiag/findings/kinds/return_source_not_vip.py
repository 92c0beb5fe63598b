"""return_source_not_vip: a VIP connection answered from another address (the back-end's real IP).

Matched by sequence numbers, not by guesswork: the wrong-source SYN-ACK acknowledges ISN+1 of the
client's SYN to the VIP (context.answers_syn). The pair of records (client->VIP with no answer,
real-IP->client with '^h...') are one fault; what it causes elsewhere (a firewall drop, the
client's unanswered SYNs, the LB's one-way view) is linked to it by findings/causes.py.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterator

from dsrdiag.decode.tcp import ACK, RST, SYN
from dsrdiag.findings.context import Context, answers_syn, first
from dsrdiag.findings.finding import ERROR, MAX_EVIDENCE, Finding, plural
from dsrdiag.findings.kind import Entry
from dsrdiag.track.records import ORIG, RESP

ENTRY = Entry(
    kind="return_source_not_vip",
    severity=ERROR,
    title="Back-end answers from its real IP, not the VIP",
    explanation=(
        "The client connected to the VIP, but the SYN-ACK came back from the back-end's own "
        "address. The client's TCP stack has no connection with that address, so it answers with "
        "a RST (or ignores the packet), and a stateful firewall drops it as a reply to nothing: "
        "to the application this is a connect timeout. In DSR the back-end must answer with the "
        "VIP as source, which it does only when the VIP is configured on it (loopback) and the "
        "reply is allowed to leave with that source."
    ),
    decided=(
        "A SYN-ACK from service port P to client C:p whose acknowledgement number is the ISN+1 of "
        "a SYN that C:p sent to VIP:P, with a source address that is not the VIP. The back-end is "
        "named by that source address and the SYN-ACK's source MAC."
    ),
    seen_from=(
        "Any vantage that sees the reply: the client, the firewall, the server LAN or the "
        "back-end. A capture on the load balancer's own interface does not see DSR replies."
    ),
    windows=(
        "Put the VIP on the KM-TEST loopback adapter with the load balancer's subnet mask and "
        "enable weak host send and receive on it, and weak host receive on the LAN adapter: "
        "`netsh interface ipv4 set interface \"Loopback\" weakhostreceive=enabled weakhostsend=enabled` "
        "and `netsh interface ipv4 set interface \"LAN\" weakhostreceive=enabled`. Without weak "
        "host send the reply sourced from the VIP may not leave through the LAN adapter and the "
        "stack answers from the adapter's own address. Bind the receive connector to all "
        "addresses or to the VIP (`Get-ReceiveConnector | fl Bindings`)."
    ),
    linux=(
        "Put the VIP on lo as /32 (`ip addr add VIP/32 dev lo`; IPv6 `ip -6 addr add VIP/128 dev "
        "lo nodad`) and persist it; let the MTA listen on the VIP or on all addresses (Postfix "
        "`inet_interfaces = all`); make sure no NAT rule rewrites the reply's source (`nft list "
        "ruleset`, `iptables -t nat -S`: no masquerade/SNAT of traffic from port 25)."
    ),
    load_balancer=(
        "Check that the virtual server really is in DSR mode, so that the back-end receives the VIP as destination and can answer from it: Citrix NetScaler / ADC: MAC-based forwarding (`add lb vserver ... -m MAC`) with `USIP` enabled (`set lb vserver <name> -USIP YES` / `enable ns mode USIP`); Kemp LoadMaster: Virtual Service > Standard Options > Forwarding method \"direct\" (Transparency on); F5 BIG-IP: nPath routing, a FastL4 profile with loose initiation/close and address and port translation disabled on the virtual server; keepalived/LVS: `lb_kind DR`. HAProxy cannot do DSR: it is a full proxy, use PROXY protocol (`send-proxy`) with Postfix `smtpd_upstream_proxy_protocol = haproxy` instead."
    )
)

KIND = ENTRY.kind


def check(ctx: Context) -> Iterator[Finding]:
    if not ctx.vips:
        return
    vips, ports = ctx.vips, ctx.ports
    if not any(rep[6] not in vips and rep[3] in ports for rep in ctx.records.facts.replies):
        return  # the capture's facts know every such reply: none, so no pass at all
    # two passes, so that memory holds the replies from a real address, not every VIP connection
    replies = [r for r in ctx.service_conns() if r.server_ip not in vips and not r.saw_syn and r.saw_synack]
    if not replies:
        return
    wanted = {(r.client_ip, r.client_port, r.server_port) for r in replies}
    to_vip = {}
    for c in ctx.service_conns():
        if c.server_ip in vips and c.syn_seq is not None and (c.client_ip, c.client_port, c.server_port) in wanted:
            to_vip[(c.client_ip, c.client_port, c.server_port)] = c
    groups = defaultdict(list)
    for r in replies:
        v = to_vip.get((r.client_ip, r.client_port, r.server_port))
        matched = v is not None and answers_syn(r.synack_ack, v.syn_seq)
        if not matched and ctx.topology.backend_by_ip(r.server_ip) is None:
            continue
        mac = r.resp_l2[0][0] if r.resp_l2 else None
        groups[(r.server_ip, mac)].append((v if matched else None, r))
    for (ip, mac), pairs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        evidence = []
        uids = []
        cited_syn = set()
        for v, r in pairs:
            uids.append(r.uid)
            if v is not None:
                uids.append(v.uid)  # one SYN record answered by several replies (retries) is named once
                if len(evidence) < MAX_EVIDENCE and v.syn_frames and v.uid not in cited_syn:
                    cited_syn.add(v.uid)
                    evidence.append(ctx.ref(v.syn_frames[0], v, f"SYN {v.client_ip}:{v.client_port} -> VIP {v.server_ip}:{v.server_port}"))
            sa = first(r.packets, lambda n: n.direction == RESP and n.flags & SYN and n.flags & ACK)
            if sa and len(evidence) < MAX_EVIDENCE:
                evidence.append(ctx.ref(sa, r, f"SYN-ACK from real address {r.server_ip} (not the VIP), source MAC {sa.src_mac or '?'}"))
            rst = first(r.packets, lambda n: n.direction == ORIG and n.flags & RST)
            if rst and len(evidence) < MAX_EVIDENCE:
                evidence.append(ctx.ref(rst, r, f"client resets the unknown connection from {r.server_ip}"))
        vip = next((v.server_ip for v, _ in pairs if v is not None), None)
        # one connection, however many records its replies made (a reply the timers split off, a
        # retried SYN-ACK): a matched one is its SYN's record, an unmatched one its flow and ISN
        flows = {v.uid if v is not None else (r.client_ip, r.client_port, r.server_port, r.synack_ack) for v, r in pairs}
        matched = len({v.uid for v, _ in pairs if v is not None})
        summary = (
            f"{plural(len(flows), 'connection')} to VIP {vip or '?'} answered from {ip}"
            + (f" (MAC {mac})" if mac else "")
            + (f"; {matched} matched to the client's SYN by sequence number" if matched else "; the client's SYN to the VIP is not in this capture")
            + "."
        )
        yield Finding(
            kind=KIND, severity=ERROR, vantages=(ctx.vantage,), summary=summary,
            evidence=tuple(sorted(evidence)), connections=tuple(dict.fromkeys(uids)), backend=ctx.backend(mac, ip),
        )
