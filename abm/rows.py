"""Predicates on patient rows, the shares that pass them, their Wilson intervals, and rank correlations.

Rows are ``abm.outcomes.summarize`` dicts or ``patients.csv`` records; trial summaries
(:mod:`abm.cohort`), the calibration (:mod:`abm.calibration`) and the experiments share these:
this is the one place a proportion and its interval are computed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

Z95 = 1.959963984540054  # two-sided 95 % standard-normal quantile

RowTest = Callable[[dict[str, Any]], bool | None]


def grade_at_least(key: str, grade: int) -> RowTest:
    """Whether a patient row's ``key`` (a 0-4 grade) reached ``grade`` (None when missing)."""
    return lambda r: None if r.get(key) is None else r[key] >= grade


def proportion(rows: Iterable[dict[str, Any]], test: RowTest) -> tuple[int, int]:
    """How many rows pass ``test``, among the rows where it is known (not None)."""
    known = [bool(v) for v in map(test, rows) if v is not None]
    return sum(known), len(known)


def share(rows: Iterable[dict[str, Any]], test: RowTest) -> tuple[float | None, int]:
    """The fraction of rows passing ``test`` among those where it is known, and how many those are (None if none)."""
    successes, n = proportion(rows, test)
    return (successes / n if n else None), n


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float | None, float | None, float | None]:
    """Proportion and its Wilson score interval (95 % by default); ``(None, None, None)`` for ``n == 0``.

    The bounds are clamped to [0, 1] (those of 0/n and n/n come out as
    +-1e-17 in floating point).
    """
    if n == 0:
        return None, None, None
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = (0.0 if b < 1e-12 else 1.0 if b > 1.0 - 1e-12 else b for b in (centre - half, centre + half))
    return p, low, high


def rate(rows: Iterable[dict[str, Any]], test: RowTest) -> dict[str, Any]:
    """``{"rate", "ci95": [low, high], "n"}`` of the rows passing ``test`` (Wilson 95 %), as trial summaries hold."""
    successes, n = proportion(rows, test)
    p, low, high = wilson(successes, n)
    return {"rate": p, "ci95": [low, high], "n": n}


def spearman(rows: Iterable[dict[str, Any]], x: str, y: str, z: float = Z95) -> dict[str, Any]:
    """Spearman rank correlation of two row keys with its 95 % interval, over the rows where both are known.

    ``{"rho", "ci95": [low, high], "n"}``; ties get average ranks
    (``scipy.stats.spearmanr``). The interval is Fisher's z with the
    Bonett-Wright standard error ``sqrt((1 + rho^2 / 2) / (n - 3))`` (Bonett &
    Wright 2000 Psychometrika 65:23), good for n >= 10 and |rho| < 0.9;
    ``rho`` is None when fewer than 4 rows, or either key is constant.
    """
    from scipy.stats import spearmanr

    pairs = [(float(r[x]), float(r[y])) for r in rows if r.get(x) is not None and r.get(y) is not None]
    n = len(pairs)
    xs, ys = zip(*pairs, strict=True) if pairs else ((), ())
    if n < 4 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return {"rho": None, "ci95": [None, None], "n": n}
    rho = float(spearmanr(xs, ys).statistic)
    if abs(rho) >= 1.0:
        return {"rho": rho, "ci95": [rho, rho], "n": n}
    half = z * math.sqrt((1.0 + rho * rho / 2.0) / (n - 3))
    return {"rho": rho, "ci95": [math.tanh(math.atanh(rho) - half), math.tanh(math.atanh(rho) + half)], "n": n}
