"""Small statistics for A/B comparisons: Wilson intervals, the exact sign test, means with intervals."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal


@dataclass(frozen=True)
class Interval:
    """An estimate with a (95 %) interval around it."""

    value: float | None
    low: float | None
    high: float | None

    def __str__(self) -> str:
        if self.value is None:
            return "–"
        return f"{self.value:.3g} [{self.low:.3g}, {self.high:.3g}]"


def wilson_interval(successes: int, n: int, z: float = Z95) -> Interval:
    """The proportion successes/n with its Wilson score interval (no value when n is 0)."""
    if successes < 0 or n < 0 or successes > n:
        raise ValueError(f"Need 0 <= successes <= n, got {successes} of {n}.")
    if n == 0:
        return Interval(None, None, None)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign test: how surprising wins vs losses is if both were equally likely (ties dropped)."""
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    # P(X <= k) for X ~ Binomial(n, 1/2), doubled; exact integers so large n stays precise
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def mean_interval(values: Sequence[float]) -> Interval:
    """The mean with its 95% Student-t interval (mean ± t·s/√n, t with n-1 degrees of freedom); one value has no width.

    A normal z (1.96) would be too narrow for the few cases a comparison usually has: about 30% at n = 5.
    """
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return Interval(None, None, None)
    n, mean = len(xs), sum(xs) / len(xs)
    if n == 1:
        return Interval(mean, mean, mean)
    from scipy.stats import t  # scipy.stats takes ~0.4 s to import: only pay for it when a mean is asked for

    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half)
