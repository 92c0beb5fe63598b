"""A progress bar for long reads: bytes and packets per capture, rate and time left.

Shown only on a terminal, only for text output, and only once a read has taken more than a
second (short reads stay quiet); it is drawn on stderr and disappears when done.
"""

from __future__ import annotations

import os
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

DELAY_S = float(os.environ.get("DSRDIAG_PROGRESS_DELAY", "1.0"))
"""Seconds before the bar shows (DSRDIAG_PROGRESS_DELAY: how the tests see it on small captures)."""


class CaptureProgress:
    def __init__(self, sources: list[tuple[str, str]], console: Console):
        self.console = console
        self.sizes = {p: _size(p) for _, p in sources}
        self.names = {p: v for v, p in sources}
        self.started = time.monotonic()
        self.progress: Progress | None = None
        self.tasks: dict[str, int] = {}
        self.latest: dict[str, tuple[int, int]] = {}
        """Each capture's last (bytes, packets), kept from before the bar shows: a capture read
        within the first second must not appear unread when another one brings the bar up."""

    def update(self, path: str, pos: int, frames: int) -> None:
        self.latest[path] = (pos, frames)
        if self.progress is None:
            if time.monotonic() - self.started < DELAY_S:
                return
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TextColumn("{task.fields[frames]:,} packets"),
                TransferSpeedColumn(), TimeRemainingColumn(), console=self.console, transient=True,
            )
            self.progress.start()
            for p, size in self.sizes.items():
                done, frames_so_far = self.latest.get(p, (0, 0))
                self.tasks[p] = self.progress.add_task(self.names[p], total=size or None, frames=frames_so_far,
                                                       completed=min(done, size or done))
        self.progress.update(self.tasks[path], completed=min(pos, self.sizes[path] or pos), frames=frames)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
