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
