"""Live capture on an interface while a probe runs, saved to a pcap file for the analyser.

Reads: an interface (libpcap via pcapy-ng, BPF in the kernel). Produces: a pcap file.
Never: runs unbounded: it stops on request, after max_seconds, or after max_packets.
Why save to a file: the probe's packets then go through exactly the same analyser as any
capture (frame numbers in findings point into the kept --pcap), and a post-mortem has the file.
"""

from __future__ import annotations

import select
import threading
import time

import pcapy

from dsrdiag.core.errors import CaptureError, DsrdiagError


class CaptureUnavailable(DsrdiagError):
    """Live capture is not possible here (no privilege): the caller may go on without it."""


class LiveCapture:
    def __init__(self, iface: str, bpf: str, path: str, max_seconds: float = 300.0, max_packets: int = 200_000):
        self.iface, self.bpf, self.path = iface, bpf, path
        self.max_seconds, self.max_packets = max_seconds, max_packets
        self.packets = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        try:
            self._pcap = pcapy.open_live(iface, 262144, False, 100)
        except pcapy.PcapError as e:
            msg = str(e)
            if "No such device" in msg:
                raise CaptureError(f"interface {iface!r} does not exist") from None
            if "ermission" in msg or "not permitted" in msg:
                raise CaptureUnavailable(f"live capture on {iface} needs root or CAP_NET_RAW ({msg})") from None
            raise CaptureError(f"cannot capture on {iface}: {msg}") from None
        try:
            self._pcap.setfilter(bpf)
        except pcapy.PcapError as e:
            raise CaptureError(f"bad capture filter {bpf!r}: {e}") from None
        self._pcap.setnonblock(1)
        self._dumper = self._pcap.dump_open(path)

    def start(self) -> "LiveCapture":
        self._thread = threading.Thread(target=self._run, name="dsrdiag-capture", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        fd = self._pcap.getfd()
        deadline = time.monotonic() + self.max_seconds
        try:
            while not self._stop.is_set() and time.monotonic() < deadline and self.packets < self.max_packets:
                select.select([fd], [], [], 0.1)
                while self.packets < self.max_packets:
                    hdr, data = self._pcap.next()
                    if hdr is None or not data:
                        break
                    self._dumper.dump(hdr, data)
                    self.packets += 1
        except pcapy.PcapError as e:
            self.error = str(e)

    def stop(self, linger: float = 0.5) -> int:
        """Keep capturing `linger` seconds (late replies, resets), then stop and close the file."""
        time.sleep(linger)
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        self._dumper.close()
        self._pcap.close()
        return self.packets
