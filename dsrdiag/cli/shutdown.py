"""How a run ends when it cannot end normally: a stop signal, or a report that cannot be written.

Why here, apart from the commands: these are properties of the process, not of any command.
- Signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT (Ctrl-C, `timeout`, systemd, `docker stop`, a closed
  terminal, CI cancellation) raise `Stopped`, a BaseException, so that the run unwinds as for
  an error: every `finally`, a Crew's close (its workers stopped: jobs/crew.py) and, at exit, the
  atexit removal of temporary files (track/spill.py). The exit status is 128 + the signal's number
  (docs/exit-codes.md). The first signal wins: later ones are ignored while the run cleans up.
- Output: a closed pipe (`| head -1`) or a full disk while the report is written is said as
  such, in one line, with its own exit code, never as an internal error or as "findings".
"""

from __future__ import annotations

import functools
import signal
import sys

from dsrdiag.core.errors import DsrdiagError
from dsrdiag.core.exitcodes import ExitCode

SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT")


class Stopped(BaseException):
    """A stop signal arrived; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def message(self) -> str:
        name = signal.Signals(self.signum).name
        return "dsrdiag: interrupted" if name == "SIGINT" else f"dsrdiag: stopped by {name}"


def stop_on_signals() -> None:
    """From now on, the first stop signal raises Stopped (for SIGINT too: click would turn a
    KeyboardInterrupt into its Abort)."""
    def stop(signum, frame):
        ignore_signals()
        raise Stopped(signum)

    for name in SIGNALS:
        signal.signal(getattr(signal, name), stop)


def _nothing(signum, frame) -> None:
    pass


def ignore_signals() -> None:
    """Cleaning up: stop signals do nothing (a handler that does nothing rather than SIG_IGN: a
    signal already pending would otherwise raise OSError, "ignored due to race condition")."""
    for name in SIGNALS:
        signal.signal(getattr(signal, name), _nothing)


class OutputError(DsrdiagError):
    """The report cannot be written to standard output (a full disk, an I/O error)."""


class OutputClosed(DsrdiagError):
    """Standard output was closed before the whole report was written (`| head -1`)."""

    exit_code = ExitCode.OUTPUT_CLOSED


def stdout_errors(emit):
    """Decorate the function that writes the report: output is flushed before its exit code is
    given (an error in the last bytes is not lost), and write errors become OutputClosed or
    OutputError."""
    @functools.wraps(emit)
    def wrapper(*args, **kw):
        try:
            try:
                emit(*args, **kw)
            finally:
                sys.stdout.flush()
        except BrokenPipeError:
            raise OutputClosed("standard output was closed before the whole report was written") from None
        except OSError as e:
            raise OutputError(f"cannot write the report to standard output: {e.strerror or e}") from None
    return wrapper
