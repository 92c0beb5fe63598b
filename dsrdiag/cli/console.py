"""Build the rich Console once and pass it down (never a global), at the width the text is made for.

Why: colour only on a terminal (rich decides from isatty, and honours NO_COLOR); the width is
chosen once, here, and every presenter lays its lines out for it (report/terminal.py). Which
width (docs/terminal.md): `--width N`, else `COLUMNS` from the environment, else the terminal's
own width, else (a file or a pipe) 120. Never below MIN_WIDTH: nothing can be laid out in less.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console

DEFAULT_WIDTH = 120
"""Files and pipes with no COLUMNS and no --width."""
MIN_WIDTH = 40


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """A closed pipe (`| head`) is the CLI's to report (cli/main.py), not rich's SystemExit(1),
        which would read as "findings" to a pipeline."""
        self.quiet = True
        raise BrokenPipeError(32, "Broken pipe")


def text_width(stream=None, width: int | None = None) -> int:
    """The width text output is laid out for: --width, COLUMNS, the terminal's, or 120."""
    if width is not None:
        return max(MIN_WIDTH, width)
    cols = os.environ.get("COLUMNS", "").strip()
    if cols.isdigit() and int(cols) > 0:
        return max(MIN_WIDTH, int(cols))
    stream = stream or sys.stdout
    try:
        if stream.isatty():
            return max(MIN_WIDTH, os.get_terminal_size(stream.fileno()).columns or DEFAULT_WIDTH)
    except (AttributeError, OSError, ValueError):  # a stream with no descriptor, or not a terminal after all
        pass
    return DEFAULT_WIDTH


def make_console(stream=None, width: int | None = None) -> Console:
    stream = stream or sys.stdout
    return _Console(file=stream, width=text_width(stream, width), highlight=False, soft_wrap=False, emoji=False)
