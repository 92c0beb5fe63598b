"""Real SMTP sessions to the VIP over sockets, with timings; or raw half-open SYNs (--syn-only).

Each session: connect from a fixed source port (so the capture can be matched to it), banner,
EHLO, STARTTLS offered, with --starttls the TLS handshake (no certificate check: the point is the
path, not the PKI), QUIT. Every step has the plan's timeout; sessions start no faster than the
plan's rate; the only destination is the VIP.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field

from dsrdiag.probe.plan import ProbePlan


@dataclass
class Session:
    source_port: int
    outcome: str = "error"
    """ok | timeout | refused | reset | no_banner | smtp_error | tls_error | error | syn_sent"""
    connect_ms: float | None = None
    banner_ms: float | None = None
    banner: str | None = None
    banner_host: str | None = None
    starttls_offered: bool = False
    tls: str | None = None
    error: str | None = None
    responder: dict = field(default_factory=dict)
    """Filled from the capture: the SYN-ACK's source address, MAC and TTL, resets, conn_state."""


def run_sessions(plan: ProbePlan, source: str, deadline: float) -> list[Session]:
    out = []
    gap = 1.0 / plan.rate
    for i in range(plan.count):
        if time.monotonic() > deadline:
            break
        started = time.monotonic()
        out.append(_one(plan, source, plan.first_port + i))
        rest = gap - (time.monotonic() - started)
        if rest > 0:
            time.sleep(rest)
    return out


def _one(plan: ProbePlan, source: str, sport: int) -> Session:
    s = Session(sport)
    t0 = time.monotonic()
    fam = socket.AF_INET6 if ":" in plan.vip else socket.AF_INET
    sock = socket.socket(fam, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    smtp = None
    try:
        sock.settimeout(plan.timeout)
        sock.bind((source, sport))
        sock.connect((plan.vip, plan.port))
        s.connect_ms = round((time.monotonic() - t0) * 1000, 3)
        smtp = smtplib.SMTP(timeout=plan.timeout, local_hostname="dsrdiag-probe.invalid")
        smtp.sock = sock
        smtp.file = None
        smtp._host = plan.vip
        code, msg = smtp.getreply()
        s.banner_ms = round((time.monotonic() - t0) * 1000, 3)
        text = msg.decode("latin-1", "replace")
        s.banner = f"{code} {text}"[:200]
        if code != 220:
            s.outcome = "no_banner"
            return s
        s.banner_host = text.split(" ", 1)[0][:255] or None
        smtp.ehlo()
        s.starttls_offered = smtp.has_extn("starttls")
        if plan.starttls and s.starttls_offered:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            try:
                smtp.starttls(context=ctx)
                s.tls = smtp.sock.version() if hasattr(smtp.sock, "version") else "yes"
                smtp.ehlo()
            except (ssl.SSLError, smtplib.SMTPException) as e:
                s.outcome, s.error = "tls_error", f"{type(e).__name__}: {e}"
                return s
        smtp.quit()
        s.outcome = "ok"
    except (socket.timeout, TimeoutError):
        s.outcome = "timeout"
        s.error = "connect timed out" if s.connect_ms is None else "reply timed out"
    except ConnectionRefusedError:
        s.outcome = "refused"
    except ConnectionResetError:
        s.outcome = "reset"
    except smtplib.SMTPServerDisconnected as e:
        s.outcome, s.error = "no_banner", str(e)
    except (smtplib.SMTPException, ssl.SSLError) as e:
        s.outcome, s.error = "smtp_error", f"{type(e).__name__}: {e}"
    except OSError as e:
        s.outcome, s.error = "error", f"{type(e).__name__}: {e.strerror or e}"
    finally:
        try:
            (smtp.sock if smtp and smtp.sock else sock).close()
        except OSError:
            pass
    return s


def send_syns(plan: ProbePlan, source: str, deadline: float) -> list[Session]:
    """Half-open: one raw SYN per source port (the kernel resets any SYN-ACK: no socket owns it)."""
    import random

    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.sendrecv import send

    rng = random.Random(plan.first_port)
    out = []
    for i in range(plan.count):
        if time.monotonic() > deadline:
            break
        sport = plan.first_port + i
        l3 = IPv6(src=source, dst=plan.vip) if ":" in plan.vip else IP(src=source, dst=plan.vip)
        send(l3 / TCP(sport=sport, dport=plan.port, flags="S", seq=rng.getrandbits(32), window=64240,
                      options=[("MSS", 1460)]), verbose=0)
        out.append(Session(sport, outcome="syn_sent"))
        time.sleep(1.0 / plan.rate)
    return out
