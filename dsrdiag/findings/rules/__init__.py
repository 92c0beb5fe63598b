"""The rules, in the order they run: a rule may claim connections so later ones do not report the
same fault again (wrong source before asymmetry, VIP-missing before unanswered SYN).

Two shapes (findings/judge.py): `check(ctx)` makes its own pass over the connections (or none);
`Collector(ctx)` with `observe(c)` and `findings()` shares judge's one pass with the others. The
first shape comes first."""

from dsrdiag.findings.rules import (
    arp_reply_for_vip_from_backend,
    asymmetric_flow,
    return_source_not_vip,
    snat_client_ip_lost,
    syn_unanswered,
    vip_not_on_backend,
)

RULES = (
    return_source_not_vip,
    arp_reply_for_vip_from_backend,
    vip_not_on_backend,
    syn_unanswered,
    asymmetric_flow,
    snat_client_ip_lost,
)
