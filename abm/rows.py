"""Predicates on patient rows.

Rows are ``abm.outcomes.summarize`` dicts or ``patients.csv`` records; trial summaries
(:mod:`abm.cohort`), the calibration (:mod:`abm.calibration`) and the experiments share these.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

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
