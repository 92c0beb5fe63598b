"""The one statistic the reports need: a median.

Why not `statistics.median`: importing `statistics` pulls in decimal and fractions, ~3 ms of every
start, for one line. Same values: the middle element, or the mean of the two middle ones.
"""

from __future__ import annotations


def median(xs):
    """Median of a non-empty iterable of numbers (statistics.median's result)."""
    s = sorted(xs)
    n = len(s)
    if not n:
        raise ValueError("median of no values")
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
