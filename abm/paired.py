"""Statistics of a paired virtual trial: two arms run on the same patients, compared patient by patient.

Every arm of a comparison runs the same virtual patients with the same seeds
(common random numbers), so the difference an arm makes is measured within
each patient and the spread between patients cancels. For one outcome and
two arms, :func:`paired_difference` gives the mean over patients of
``other - reference`` with its 95 % interval, and for a yes/no outcome
:func:`mcnemar` gives the exact McNemar test on the discordant pairs:

- interval: percentile bootstrap of the mean difference over patients
  (``scipy.stats.bootstrap``, 9,999 resamples, a fixed generator, so a report
  is reproducible); when every patient's difference is the same (e.g. no
  discordant pair) the interval is that value, as there is nothing to resample;
- exact McNemar: under no difference each discordant pair is equally likely
  to favour either arm, so the count favouring one arm is Binomial(discordant,
  1/2) (``scipy.stats.binomtest``, two-sided); p = 1 without discordant pairs.

A difference is *detected* when its interval excludes 0. With many outcomes
and arms, about one interval in 20 excludes 0 by chance alone when nothing
differs; reports say so.

Missing values (an outcome not defined for a patient in an arm: no CRS, so no
onset day) drop that patient from that outcome's comparison only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

RESAMPLES = 9999
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Difference:
    """Mean paired difference ``other - reference`` over ``pairs`` patients, with its 95 % interval."""

    pairs: int
    reference_mean: float
    other_mean: float
    difference: float
    low: float
    high: float

    @property
    def detected(self) -> bool:
        """True when the interval excludes 0 (the arms differ at the 95 % level)."""
        return self.pairs > 0 and not (self.low <= 0.0 <= self.high)


@dataclass(frozen=True)
class McNemar:
    """Discordant pairs of a yes/no outcome and the exact two-sided McNemar p."""

    reference_only: int  # yes in the reference arm, no in the other
    other_only: int  # no in the reference arm, yes in the other
    p: float


def pairs_of(reference: Sequence[float | None], other: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """The patients defined in both arms, as two float arrays (``reference[i]`` pairs with ``other[i]``)."""
    if len(reference) != len(other):
        raise ValueError(f"paired arms need the same patients: {len(reference)} against {len(other)} values")
    kept = [(float(a), float(b)) for a, b in zip(reference, other, strict=True) if a is not None and b is not None]
    a = np.array([x for x, _ in kept], dtype=float)
    b = np.array([y for _, y in kept], dtype=float)
    return a, b


def paired_difference(reference: Sequence[float | None], other: Sequence[float | None],
                      seed: int = 0) -> Difference:
    """Mean of ``other - reference`` over the patients defined in both, with its bootstrap 95 % interval.

    NaN values when no patient is defined in both arms.
    """
    a, b = pairs_of(reference, other)
    if a.size == 0:
        nan = float("nan")
        return Difference(0, nan, nan, nan, nan, nan)
    d = b - a
    mean = float(d.mean())
    if d.size < 2 or np.all(d == d[0]):
        low = high = mean
    else:
        res = stats.bootstrap((d,), np.mean, confidence_level=CONFIDENCE, n_resamples=RESAMPLES,
                              method="percentile", random_state=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return Difference(int(d.size), float(a.mean()), float(b.mean()), mean, low, high)


def mcnemar(reference: Sequence[bool | None], other: Sequence[bool | None]) -> McNemar:
    """Exact two-sided McNemar test of a yes/no outcome over the patients defined in both arms."""
    a, b = pairs_of([None if x is None else float(bool(x)) for x in reference],
                    [None if x is None else float(bool(x)) for x in other])
    reference_only = int(((a == 1) & (b == 0)).sum())
    other_only = int(((a == 0) & (b == 1)).sum())
    discordant = reference_only + other_only
    p = 1.0 if discordant == 0 else float(stats.binomtest(reference_only, discordant, 0.5).pvalue)
    return McNemar(reference_only, other_only, p)
