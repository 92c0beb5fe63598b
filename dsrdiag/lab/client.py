"""The lab's client: a bounded number of real SMTP sessions to the VIP, each from its own source port.

Run inside the client namespace: `python3 -m dsrdiag.lab.client --vip V --source S --count N
--timeout T --first-port P --out F`. Every session: connect, banner, EHLO, STARTTLS when offered
(no certificate check: the lab's certificates are self-signed), QUIT. Writes what happened to each
session, from the client's point of view, as JSON. Bounded: at most 50 sessions, each at most
--timeout seconds per step, and the whole run at most 120 s.
"""

from __future__ import annotations

import argparse
import json
import smtplib
import socket
import ssl
import time

MAX_SESSIONS = 50
MAX_TOTAL_S = 120.0


def session(vip: str, source: str, port: int, sport: int, timeout: float) -> dict:
    out = {"source_port": sport, "outcome": None, "banner": None, "banner_host": None, "starttls": False,
           "error": None}
    t0 = time.monotonic()
    s = smtplib.SMTP(timeout=timeout, source_address=(source, sport), local_hostname="client.lab.example")
    try:
        code, msg = s.connect(vip, port)
        s._host = vip  # smtplib only records the host given to __init__; STARTTLS needs it for SNI
        banner = msg.decode("latin-1", "replace")
        out["banner"] = f"{code} {banner}"
        out["banner_host"] = banner.split(" ", 1)[0] if code == 220 else None
        s.ehlo()
        if s.has_extn("starttls"):
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s.starttls(context=ctx)
            out["starttls"] = True
            s.ehlo()
        s.quit()
        out["outcome"] = "ok"
    except (socket.timeout, TimeoutError):
        out["outcome"] = "timeout"
    except ConnectionRefusedError:
        out["outcome"] = "refused"
    except ConnectionResetError:
        out["outcome"] = "reset"
    except (smtplib.SMTPException, OSError, ssl.SSLError, ValueError) as e:
        out["outcome"] = "error"
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        try:
            s.close()
        except OSError:
            pass
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vip", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--port", type=int, default=25)
    ap.add_argument("--count", type=int, default=6)
    ap.add_argument("--timeout", type=float, default=3.5)
    ap.add_argument("--first-port", type=int, default=41000)
    ap.add_argument("--gap", type=float, default=0.2)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    count = max(1, min(a.count, MAX_SESSIONS))
    deadline = time.monotonic() + MAX_TOTAL_S
    results = []
    for i in range(count):
        if time.monotonic() > deadline:
            break
        results.append(session(a.vip, a.source, a.port, a.first_port + i, min(a.timeout, 10.0)))
        time.sleep(a.gap)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
