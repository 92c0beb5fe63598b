"""Infer what the user did not give: VIPs, the load balancer's MAC/IPs, the back-ends.

Reads: the records of every capture and the given Topology. Produces: a Topology where each
added item is marked `inferred`, with notes saying how it was concluded.
Never: overrides what was given.
Why: a post-mortem often starts with nothing but captures; the report must say what it concluded
and from which packets, so the user can correct it with --vip / --lb-mac / --backend.

Rules (each documented in docs/findings.md):
- VIP: the destinations of client SYNs on the service ports (the busiest per address family, at most 4).
- LB MAC: (1) a MAC that receives VIP frames and re-sends the same packets (seen forwarding);
  (2) else the only MAC that claims the VIP in ARP/NDP; (3) else the one MAC client frames to
  the VIP are addressed to, when replies come from other MACs (DSR seen from the server LAN).
- Back-ends: MACs the LB forwards VIP frames to; MACs that send replies from the VIP with an
  initial TTL (64/128/255: the sender is on this segment, not behind a router); hosts that answer
  a VIP connection from another address; seen through a router, the banner hosts alone. Names:
  the banner host, else the MAC or IP.
How: from the Facts every capture gathered while it was tracked (track/facts.py), not from passes
over the records (a day of mail's records are on disk, and reading them is most of the serial work).
"""

from __future__ import annotations

from collections import Counter, defaultdict

from dsrdiag.core.topology import INFERRED, Backend, Topology, Vip
from dsrdiag.findings.context import answers_syn, claim_conflict
from dsrdiag.findings.finding import plural
from dsrdiag.track.records import CaptureRecords

MAX_INFERRED_VIPS = 4


def _in_order(per_capture: list[dict], keep=None) -> list[tuple]:
    """[(key, count)] over every capture's facts table, keys merged, in order of first appearance
    (capture by capture, then by the place of the first record that showed the key)."""
    total: dict = {}
    for i, table in enumerate(per_capture):
        for key, (n, first) in table.items():
            if keep is not None and not keep(key):
                continue
            got = total.get(key)
            if got is None:
                total[key] = [n, (i, first)]
            else:
                got[0] += n
    return [(k, v[0]) for k, v in sorted(total.items(), key=lambda kv: kv[1][1])]


def _link_local(ip: str) -> bool:
    """fe80::/10 and 169.254/16: never a VIP (every IPv6 host claims one of its own)."""
    return ip.lower().startswith("fe8") or ip.lower().startswith("fe9") or ip.lower().startswith("fea") \
        or ip.lower().startswith("feb") or ip.startswith("169.254.")


def _behind_a_load_balancer(records, ports) -> tuple[set[str], list[str], Counter, set[str], dict]:
    """SYN destinations that are a load balancer's back-ends (never VIPs), and that balancer's VIPs.

    What one capture shows of its own segment (ARP/NDP claims, TTLs) is read per capture:
    - SNAT or a client with two addresses (ambiguous): a host M opens connections to D, a server on
      this segment, from its own address S (M claims S) while M holds other addresses V that others
      ask for: a load balancer whose VIP is one of V, or a multi-homed client. Neither is assumed:
      D is no VIP candidate and the report says both readings.
    - Routed SNAT: connections reach D from an address M claims on this segment, with the TTL of
      packets that came from further away: M forwarded them and rewrote their source.
    Across captures (MACs are the same on every segment they appear on):
    - NAT: the clients whose SYNs to V were addressed to MAC M reach D through M with another
      destination address: M rewrote it, D is behind it. A router forwards to the same address,
      so it never looks like this.
    - A proxy: M receives SYNs to V and itself opens connections to D from an address none of
      those clients used (a router forwards the clients' own addresses)."""
    behind: set[str] = set()
    vips: list[str] = []
    rewriters: Counter = Counter()  # MACs seen sending the clients on to a back-end's own address
    own_sources: set[str] = set()  # the addresses such a MAC opens its own connections from
    ambiguous: dict[str, tuple[str, tuple[str, ...]]] = {}  # D -> (source, other addresses its MAC holds)
    to_mac: dict[tuple[str, str], set[str]] = defaultdict(set)  # (client, MAC it sent to) -> destinations
    clients_to: dict[str, set[str]] = defaultdict(set)  # MAC -> clients whose SYNs were addressed to it
    dests_to: dict[str, set[str]] = defaultdict(set)  # MAC -> destinations of the SYNs addressed to it
    emitted_by: dict[str, set[str]] = defaultdict(set)  # MAC -> destinations of the SYNs it sent on
    for r in records:
        for (s_ip, s_port, c_ip, c_src, c_dst, *_), _ in r.facts.syn_src.items():
            if s_port in ports and c_dst:
                to_mac[(c_ip, c_dst)].add(s_ip)
                clients_to[c_dst].add(c_ip)
                dests_to[c_dst].add(s_ip)
            if s_port in ports and c_src:
                emitted_by[c_src].add(s_ip)
    for r in records:
        f = r.facts
        macs_claim: dict[str, set[str]] = defaultdict(set)
        for ip, cls in r.neighbours.claims.items():
            for cl in cls:
                macs_claim[cl.mac].add(ip)
        local_servers = {ip for (ip, port, _, resp_hops), _ in f.sides.items() if port in ports and resp_hops == 0}
        for (s_ip, s_port, c_ip, c_src, _, _, _, c_hops), (n, _) in f.syn_src.items():
            if s_port not in ports or not c_src:
                continue
            own = {a for a in macs_claim.get(c_src, set()) if not _link_local(a)}
            # ... other addresses it holds that someone else asks for: a host's second address nobody
            # looks up is not a VIP
            held = {a for a in own - {c_ip, s_ip} if set(r.neighbours.requesters.get(a, ())) - {c_src}}
            if c_ip in own and held and s_ip in local_servers and not c_hops:
                # a load balancer's SNAT (its VIP is one of the others) or a client with two addresses:
                # this capture cannot tell, and the verdict must not guess
                ambiguous.setdefault(s_ip, (c_ip, tuple(sorted(held))))
            if c_ip in own and c_hops:
                behind.add(s_ip)  # routed SNAT: what else M holds that others ask for is its VIP
                own_sources.add(c_ip)
                rewriters[c_src] += n
                vips += sorted(held - set(vips))
            fam = ":" in s_ip
            # what M receives and never sends on: a router forwards to the address it received for
            passed_on = emitted_by.get(c_src, set())
            fronts = {v for v in to_mac.get((c_ip, c_src), set()) - {s_ip} - passed_on if (":" in v) == fam}
            if not fronts and c_hops == 0 and c_ip not in clients_to.get(c_src, ()) and s_ip in local_servers:
                # M takes connections to V and opens its own (sent with its starting TTL) from an
                # address no client used, and not from V itself (an MTA relaying mail from its own
                # address is no proxy), to a server on this segment: a proxy
                fronts = {v for v in dests_to.get(c_src, set()) - {s_ip} - passed_on - {c_ip} if (":" in v) == fam}
                if fronts:
                    own_sources.add(c_ip)
            if fronts:
                behind.add(s_ip)
                vips += sorted(fronts - set(vips))
                rewriters[c_src] += n
    return behind, [v for v in vips if v not in behind], rewriters, own_sources, \
        {d: a for d, a in ambiguous.items() if d not in behind}


def infer(records: list[CaptureRecords], given: Topology) -> Topology:
    """From every capture's Facts (track/facts.py, gathered while tracking): no pass over the
    records, except one to match wrong-source replies with their SYNs when there are any."""
    notes: list[str] = []
    lb_mode = ""
    facts = [r.facts for r in records]
    ports = set(given.ports)

    # ---- VIPs ----------------------------------------------------------------------------
    claimed_by: dict[str, set[str]] = defaultdict(set)  # address -> MACs that claim it in ARP/NDP
    for r in records:
        for ip, cls in r.neighbours.claims.items():
            for cl in cls:
                claimed_by[ip].add(cl.mac)
    behind_lb, lb_vips, rewriters, lb_sources, unsure = _behind_a_load_balancer(records, ports)
    vips = list(given.vips)
    if not vips:
        syn_dst: Counter = Counter()
        for (ip, _), n in _in_order([f.syn_dst for f in facts], lambda k: k[1] in ports):
            if ip not in behind_lb and ip not in unsure:
                syn_dst[ip] += n
        for d, (src, others) in sorted(unsure.items()):
            notes.append(f"VIP unsure: every connection to {d} comes from {src}, whose MAC also holds "
                         f"{', '.join(others)}: a load balancer's SNAT (the VIP would be {' or '.join(others)}) or a "
                         f"client with two addresses (the VIP would be {d}); give --vip")
        syn_ports: dict[str, set[int]] = defaultdict(set)  # every SYN destination's ports (few: bounded)
        for f in facts:
            for ip, ps in f.syn_ports.items():
                syn_ports[ip] |= ps
        for ip in lb_vips:  # the VIP of a load balancer seen opening connections to its back-ends
            if ip not in syn_dst:
                syn_dst[ip] += 0
                syn_ports[ip] |= ports
        if syn_dst:
            top = syn_dst.most_common()
            # the busiest destinations, per address family (an IPv6 VIP beside a busier IPv4 one)
            best = {fam: max(n for ip, n in top if (":" in ip) == fam) for fam in {":" in ip for ip, _ in top}}
            keep = [ip for ip, n in top if n * 4 >= best[":" in ip] or ip in lb_vips][:MAX_INFERRED_VIPS]
            vips = [Vip(ip=ip, ports=tuple(sorted(syn_ports[ip] & ports or syn_ports[ip])), source=INFERRED) for ip in keep]
            notes.append(
                "no --vip given: VIP inferred: "
                + ", ".join(f"{ip} (destination of client SYNs in {plural(syn_dst[ip], 'connection record')})" if syn_dst[ip] else
                            f"{ip} (claimed by the load balancer {', '.join(sorted(claimed_by[ip]))}, which opens the connections to the back-ends)"
                            for ip in keep)
                + (f"; {plural(len(top) - len(keep), 'less busy destination')} not treated as VIPs" if len(top) > len(keep) else "")
            )
            if behind_lb:
                notes.append("not VIPs: " + ", ".join(sorted(behind_lb))
                             + " are reached through the load balancer (NAT, SNAT or a proxy): back-ends' own addresses")
        else:
            # no client connection to go by: an address several MACs claim is the one to look at
            claimed_twice = sorted(ip for r in records for ip, cls in r.neighbours.claims.items()
                                   if not _link_local(ip) and len(claim_conflict(cls)) > 1)
            claimed_twice = sorted(set(claimed_twice))
            if claimed_twice:
                vips = [Vip(ip=ip, ports=tuple(sorted(ports)), source=INFERRED) for ip in claimed_twice[:MAX_INFERRED_VIPS]]
                notes.append("no --vip given and no client connection to a VIP: VIP inferred from ARP/NDP: "
                             + ", ".join(f"{ip} (claimed by {', '.join(sorted(claimed_by[ip]))})" for ip in claimed_twice[:MAX_INFERRED_VIPS]))
            elif behind_lb:
                notes.append("no --vip given: no VIP could be inferred: " + ", ".join(sorted(behind_lb))
                             + " are back-ends' own addresses, reached through a load balancer")
            else:
                notes.append("no --vip given and no client SYN seen on the service ports: no VIP could be inferred")
    vip_ips = {v.ip for v in vips}

    # the L2 paths of VIP connections, in order of first appearance: what the rest is read from
    paths = _in_order([f.paths for f in facts], lambda k: k[0] in vip_ips)

    # ---- load balancer MAC -----------------------------------------------------------------
    lb_macs = list(given.lb_macs)
    if not lb_macs:
        fwd: Counter = Counter()
        for (_, _, fw, *_), n in paths:
            for mac in fw:  # (sorted: two MACs forwarding the same connection tie by name)
                fwd[mac] += n
        # MACs that send SYN-ACKs from the VIP are servers (back-ends), never the DSR load balancer
        servers = {s for (_, _, _, resp_l2, *_), _ in paths for s, _ in resp_l2 if s}
        claimants = {m for vip in vip_ips for m in claimed_by.get(vip, ())} - servers
        # seen at a back-end: client frames to the VIP arrive from one MAC, the replies leave to another
        # (the frames came through the load balancer's MAC rewrite, the replies go to the gateway)
        routers = {m for r in records for vip in vip_ips for m in r.neighbours.requesters.get(vip, ())}
        """MACs that ask for the VIP: whoever routes to it (a router never is the DSR load balancer)."""
        rewrite: Counter = Counter()
        for (_, orig_l2, _, resp_l2, *_), n in paths:
            srcs = {s for s, _ in orig_l2 if s}
            dsts = {d for _, d in orig_l2 if d}
            repl_src = {s for s, _ in resp_l2 if s}
            repl_dst = {d for _, d in resp_l2 if d}
            if len(srcs) == 1 and repl_src and dsts == repl_src and not (srcs & repl_dst) and not (srcs & servers) \
                    and not (srcs & routers):  # HSRP/VRRP: a router sends from its own MAC, is answered at the virtual one
                rewrite[next(iter(srcs))] += n
        # seen at a back-end whose VIP is missing (no reply at all): the router asks for the VIP, yet the
        # routed client frames to it come from another MAC, which hands them on to a MAC that does not
        # hold the VIP either: the LB (a second router would deliver to the VIP's holder)
        holders = {m for vip in vip_ips for m in claimed_by.get(vip, ())}
        relay: Counter = Counter()
        if routers:
            for (ip, orig_l2, _, resp_l2, *_), n in paths:
                srcs = {s for s, _ in orig_l2 if s}
                dsts = {d for _, d in orig_l2 if d}
                if len(srcs) == 1 and not resp_l2 and not (srcs & routers) and not (srcs & servers) \
                        and not (dsts & holders):
                    relay[next(iter(srcs))] += n
        if fwd:
            mac = fwd.most_common(1)[0][0]
            lb_macs = [(mac, INFERRED)]
            notes.append(f"load balancer MAC {mac} inferred: it received VIP frames and re-sent them ({plural(fwd[mac], 'connection')})")
        elif rewriters:
            mac = rewriters.most_common(1)[0][0]
            lb_macs = [(mac, INFERRED)]
            lb_mode = "nat"
            notes.append(f"load balancer MAC {mac} inferred: it sends the clients' connections to the VIP on to "
                         f"back-ends' own addresses ({plural(rewriters[mac], 'connection')}; NAT)")
        elif relay:
            mac = relay.most_common(1)[0][0]
            lb_macs = [(mac, INFERRED)]
            notes.append(f"load balancer MAC {mac} inferred: it hands routed client frames to the VIP to another MAC "
                         f"while the router that asks for the VIP is another host ({plural(relay[mac], 'connection')})")
        elif rewrite:
            mac = rewrite.most_common(1)[0][0]
            lb_macs = [(mac, INFERRED)]
            notes.append(f"load balancer MAC {mac} inferred: client frames to the VIP arrive from it while the "
                         f"back-end's replies leave towards another MAC ({plural(rewrite[mac], 'connection')}; DSR seen at a back-end)")
        elif len(claimants) == 1:
            mac = next(iter(claimants))
            lb_macs = [(mac, INFERRED)]
            notes.append(f"load balancer MAC {mac} inferred: the only MAC other than the back-ends' that claims the VIP in ARP/NDP")
        else:
            to_macs = {d for (_, orig_l2, *_), _ in paths for _, d in orig_l2 if d}
            from_macs = {s for (_, _, _, resp_l2, *_), _ in paths for s, _ in resp_l2 if s}
            if len(to_macs) == 1 and from_macs and not (to_macs & from_macs) and not (to_macs & servers) \
                    and not (to_macs & routers):
                mac = next(iter(to_macs))
                lb_macs = [(mac, INFERRED)]
                notes.append(f"load balancer MAC {mac} inferred: client frames to the VIP go to it while replies come from other MACs")
            elif len(claimants) > 1:
                notes.append(
                    "the VIP is claimed by several MACs (" + ", ".join(sorted(claimants))
                    + ") and none was seen forwarding: give --lb-mac to say which is the load balancer"
                )
    lb_set = {m for m, _ in lb_macs}

    # ---- load balancer IPs: other addresses its MAC claims ------------------------------------
    lb_ips = list(given.lb_ips)
    known = {i for i, _ in lb_ips}
    for ip in sorted(lb_sources - known - vip_ips):
        lb_ips.append((ip, INFERRED))
        known.add(ip)
        notes.append(f"load balancer address {ip} inferred: the load balancer opens its own connections to the "
                     "back-ends from it (SNAT or a proxy)")
    if lb_mode == "nat" and lb_sources - vip_ips:
        lb_mode = "proxy"  # it opens connections of its own to the back-ends: SNAT or a full proxy
    if lb_set:
        for r in records:
            for ip, cls in r.neighbours.claims.items():
                if ip not in vip_ips and ip not in known and any(cl.mac in lb_set for cl in cls):
                    lb_ips.append((ip, INFERRED))
                    known.add(ip)
                    notes.append(f"load balancer address {ip} inferred: claimed in ARP/NDP by the load balancer's MAC")

    # ---- back-ends ----------------------------------------------------------------------------
    found: dict[str, dict] = {}  # mac or ip -> {"mac", "ip", "hosts": Counter}

    def add(mac: str | None, ip: str | None, host: str | None = None, n: int = 1) -> None:
        key = mac or ip
        if key is None or (mac and mac in lb_set):
            return
        b = found.get(key)
        if b is None:
            b = found[key] = {"mac": mac, "ip": ip, "hosts": Counter()}
        if ip and not b["ip"]:
            b["ip"] = ip
        if host:
            b["hosts"][host] += n

    # back-ends by MAC, then replies from a real address (wrong source); banner hosts seen only
    # through a router are applied below, in this order, once `found` is complete
    routed_hosts: dict[str, None] = {}  # in order of first appearance
    for (_, orig_l2, fw, resp_l2, ttl_initial, host), n in paths:
        for s, d in orig_l2:
            if s in fw or (s in lb_set and d):
                add(d, None, host if not resp_l2 else None, n)
        if ttl_initial:
            for s, _ in resp_l2[:1]:
                add(s, None, host, n)
        elif host:
            routed_hosts.setdefault(host)
    # a host that answers a VIP connection from another address (wrong source)
    replies = sorted((i, rep) for i, f in enumerate(facts) for rep in f.replies if rep[6] not in vip_ips)
    wanted = {(c_ip, c_port, s_port) for _, (_, c_ip, c_port, s_port, *_) in replies}
    vip_syns: dict[tuple, int] = {}
    if wanted:  # the one pass left, and only when such replies exist: their SYNs' sequence numbers
        for r in records:
            for c in r.connections:
                if c.server_ip in vip_ips and c.syn_seq is not None and (c.client_ip, c.client_port, c.server_port) in wanted:
                    vip_syns[(c.client_ip, c.client_port, c.server_port)] = c.syn_seq
    for _, (_, c_ip, c_port, s_port, synack_ack, resp_src, s_ip, host) in replies:
        syn_seq = vip_syns.get((c_ip, c_port, s_port))
        if answers_syn(synack_ack, syn_seq):
            add(resp_src, s_ip, host)
    # back-ends a load balancer connects to from its own address (SNAT / full proxy)
    lb_ip_set = {i for i, _ in lb_ips}
    for (s_ip, s_port, c_ip, c_mac, _, r_mac, host, _), _ in _in_order([f.syn_src for f in facts]):
        if s_port in ports and s_ip not in vip_ips and (c_ip in lb_ip_set or (c_mac and c_mac in lb_set)):
            add(r_mac if r_mac not in lb_set else None, s_ip, host)
    # real addresses from ARP: what else does a back-end MAC claim?
    for r in records:
        for ip, cls in r.neighbours.claims.items():
            if ip in vip_ips:
                continue
            for cl in cls:
                b = found.get(cl.mac)
                if b is not None and not b["ip"]:
                    b["ip"] = ip

    # seen only through a router (client side): a back-end is still told apart by its banner host
    named = {h for b in found.values() for h in b["hosts"]}
    for host in routed_hosts:
        if host not in named:
            found.setdefault(f"banner:{host}", {"mac": None, "ip": None, "hosts": Counter()})["hosts"][host] += 1
            named.add(host)

    backends = list(given.backends)
    for b in found.values():
        if any((g.mac and g.mac == b["mac"]) or (g.ip and g.ip == b["ip"]) or g.name in b["hosts"] for g in backends):
            continue
        host = b["hosts"].most_common(1)[0][0] if b["hosts"] else None
        name = host or b["ip"] or f"backend-{b['mac']}"
        if any(x.name == name for x in backends):
            name = f"{name} ({b['mac'] or b['ip']})"
        backends.append(Backend(name=name, ip=b["ip"], mac=b["mac"], source=INFERRED))
    if found and not given.backends:
        notes.append(_inferred_note(list(found.values())))

    all_ports = list(given.ports)
    for v in vips:
        all_ports += [p for p in v.ports if p not in all_ports]
    return Topology(
        vips=tuple(vips),
        lb_macs=tuple(lb_macs),
        lb_ips=tuple(lb_ips),
        backends=tuple(backends),
        ports=tuple(all_ports),
        vantages=given.vantages,
        notes=tuple(notes),
        lb_mode=lb_mode or given.lb_mode,
    )


def _inferred_note(found: list[dict]) -> str:
    """`2 back-ends inferred from ...`: said for what each one was really found by (its MAC, its own
    address, or only the host its SMTP banner names), so that a user knows how far to trust it."""
    by_mac = sum(1 for b in found if b["mac"])
    by_ip = sum(1 for b in found if not b["mac"] and b["ip"])
    by_banner = len(found) - by_mac - by_ip
    ways = []
    if by_mac:
        ways.append((by_mac, "the MAC" + ("s" if by_mac > 1 else "") + " the VIP traffic was delivered to or answered from"))
    if by_ip:
        ways.append((by_ip, ("their own addresses" if by_ip > 1 else "its own address")
                     + " (a reply from it, or the load balancer connecting to it)"))
    if by_banner:
        ways.append((by_banner, ("the hosts their" if by_banner > 1 else "the host its")
                     + " SMTP banner names (seen only through a router: no MAC or address of theirs here)"))
    if len(ways) == 1:
        return f"{plural(len(found), 'back-end')} inferred from {ways[0][1]}"
    return f"{plural(len(found), 'back-end')} inferred: " + "; ".join(f"{n} from {w}" for n, w in ways)
