"""Build the rich Console once and pass it down (never a global).

Why: colour only on a terminal (rich decides from isatty, and honours NO_COLOR); tests pin a plain
100-column console.
"""

from __future__ import annotations

import sys

from rich.console import Console


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """A closed pipe (`| head`) is the CLI's to report (cli/main.py), not rich's SystemExit(1),
        which would read as "findings" to a pipeline."""
        self.quiet = True
        raise BrokenPipeError(32, "Broken pipe")


def make_console(stream=None, width: int | None = None) -> Console:
    stream = stream or sys.stdout
    if width is None and not (hasattr(stream, "isatty") and stream.isatty()):
        width = 120  # files and pipes: wide enough that evidence lines rarely wrap
    return _Console(file=stream, width=width, highlight=False, soft_wrap=False, emoji=False)
