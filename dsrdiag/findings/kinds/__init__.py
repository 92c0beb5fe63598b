"""Every finding kind dsrdiag judges from packets, one module each: its Entry (name, severity,
meaning, where it can be seen from, fixes) beside its decision, like a Zeek notice declared by
the script that raises it. A newcomer finds where a kind is decided, and its text, in one step:
findings/kinds/<kind>.py. (Host-setting kinds are judged in audit/checks.py, their entries in
findings/catalog.py: they read a host's settings, not packets.)

Decisions take three shapes:
- `check(ctx)`: its own pass (or none) over one capture's records (findings/judge.py);
- `Collector(ctx)` with `observe(c)` / `findings()`: shares judge's one pass over one capture's
  connections (service ports only, unless the class sets `all_ports`);
- `decide_path(corr)`: judges the facts correlate/paths.py gathered along the path.
No kind reads another's results: which finding explains which is decided afterwards, from
their connections and subjects, by findings/causes.py.
"""

from dsrdiag.findings.kinds import (
    arp_reply_for_vip_from_backend,
    asymmetric_flow,
    capture_one_sided,
    connection_refused,
    firewall_drop,
    lb_mode_mixed,
    proxy_protocol_header,
    return_source_not_vip,
    sessions_failed,
    smtp_xclient,
    snat_client_ip_lost,
    syn_flood_or_scan,
    syn_unanswered,
    vip_claimed_by_several_macs,
    vip_not_on_backend,
)

CAPTURE_KINDS = (
    return_source_not_vip,
    arp_reply_for_vip_from_backend,
    vip_claimed_by_several_macs,
    connection_refused,
    vip_not_on_backend,
    syn_flood_or_scan,
    syn_unanswered,
    asymmetric_flow,
    capture_one_sided,
    snat_client_ip_lost,
    proxy_protocol_header,
    smtp_xclient,
)
"""Kinds judged per capture (check() or Collector)."""

PATH_KINDS = (firewall_drop, asymmetric_flow, lb_mode_mixed, snat_client_ip_lost)
"""Kinds judged from captures correlated along the path (decide_path)."""

PROBE_KINDS = (sessions_failed,)

ALL = tuple(dict.fromkeys(CAPTURE_KINDS + PATH_KINDS + PROBE_KINDS))
