"""core/stats.median gives statistics.median's values (the back-end table's median banner time and
the correlator's clock offsets used statistics.median before)."""

from __future__ import annotations

import random
import statistics

import pytest

from dsrdiag.core.stats import median


def test_median_is_statistics_median_for_ints_floats_odd_and_even_counts():
    rnd = random.Random(1)
    for n in range(1, 40):
        for ints in (True, False):
            xs = [rnd.randint(-10**12, 10**12) if ints else rnd.random() * 1e3 for _ in range(n)]
            want = statistics.median(xs)
            assert median(xs) == want and type(median(xs)) is type(want)
            assert median(iter(xs)) == want  # a generator, as the correlator's MAD passes


def test_median_of_nothing_is_an_error():
    with pytest.raises(ValueError):
        median([])
