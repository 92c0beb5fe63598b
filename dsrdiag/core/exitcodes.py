"""Every exit code dsrdiag returns, in one place.

Why: a pre-production gate reads these codes; they are documented in docs/exit-codes.md and must
never change meaning. Precedence when several apply: USAGE > FINDINGS > INCONCLUSIVE > DAMAGED > OK.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    """Everything was read and no finding reached --fail-on."""
    FINDINGS = 1
    """At least one finding at or above --fail-on."""
    USAGE = 2
    """Bad usage or unusable input (not a capture, unknown link type, bad VIP, missing file)."""
    DAMAGED = 3
    """No finding reached --fail-on, but a capture was damaged: it was analysed only up to the damage."""
    INCONCLUSIVE = 4
    """Nothing could be judged: no packets, no VIP, no connection to the VIP and port, or none that
    could be seen to complete. Never reported as healthy (the verdict says what was seen instead)."""
    # A run that did not finish: 128 + the signal's number, as a shell reports a process it ended.
    HANGUP = 129
    """SIGHUP (the terminal closed): stopped, temporary files removed, workers ended."""
    INTERRUPTED = 130
    """SIGINT (Ctrl-C): stopped, temporary files removed, workers ended."""
    QUIT = 131
    """SIGQUIT: stopped, temporary files removed, workers ended."""
    OUTPUT_CLOSED = 141
    """Standard output closed before the report was written (`| head -1`): 128 + SIGPIPE."""
    TERMINATED = 143
    """SIGTERM (`timeout`, systemd, `docker stop`, CI cancellation): stopped, files removed."""
