"""The back-ends' SMTP server: aiosmtpd on port 25 (IPv4 and IPv6), banner naming the host, STARTTLS.

Run inside a back-end's namespace by the lab: `python3 -m dsrdiag.lab.smtpd --name mx1.lab.example
--cert C --key K --ready FILE [--listen ADDR ...]` (every address by default; the connection_refused
scenario makes be2 listen on its real addresses only, as an MTA bound to the LAN address does). Why aiosmtpd: a real SMTP implementation with STARTTLS, installable
from PyPI; the banner host is how dsrdiag tells back-ends apart, exactly as in production.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
from pathlib import Path

from aiosmtpd.smtp import SMTP


class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 2.0.0 Ok: queued"


async def serve(name: str, cert: str, key: str, port: int, ready: Path | None, hosts: list[str]) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Sink(), hostname=name, ident="ESMTP dsrdiag-lab", tls_context=ctx, require_starttls=False),
        host=hosts, port=port, reuse_address=True,
    )
    if ready:
        ready.write_text("ready\n")
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port", type=int, default=25)
    ap.add_argument("--ready", type=Path)
    ap.add_argument("--listen", action="append", default=None,
                    help="An address to listen on (repeatable); default every address (0.0.0.0 and ::).")
    a = ap.parse_args()
    asyncio.run(serve(a.name, a.cert, a.key, a.port, a.ready, a.listen or ["0.0.0.0", "::"]))


if __name__ == "__main__":
    main()
