"""The one exception family of dsrdiag.

Reads: nothing. Produces: DsrdiagError subclasses carrying a one-line message and an exit code.
Never: carries a traceback to the user; the CLI prints `dsrdiag: error: <message>` and exits.
Why: bad input must give a clear one-line error and a documented exit code, never a traceback.
"""

from dsrdiag.core.exitcodes import ExitCode


class DsrdiagError(Exception):
    """An error the user can act on. `str(err)` is a single line."""

    exit_code: ExitCode = ExitCode.USAGE

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class UsageError(DsrdiagError):
    """Options that contradict each other or do not parse (a VIP that is not an address...)."""


class CaptureError(DsrdiagError):
    """A capture that cannot be read at all: missing, not a capture, unsupported link type."""
