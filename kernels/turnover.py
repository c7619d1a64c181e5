"""Quiescent turnover drawn by group: one random number per group of sites instead of one per site.

A blast, B cell or other marrow cell dies, divides or converts with a small
probability per step (``p = (die + divide + convert) / 2**32`` of its kind,
~1e-3 for a blast and less for the others at the default 2-min step). Drawing
that coin for every occupied site was one counter-based hash per site per
step: most of the cost of a step once the CAR-T cells are few.

The same decisions, in distribution, from fewer draws (thinning):

* every tissue site is a *candidate* with the bound probability
  ``q = B / 2**32``, ``B`` the largest ``die + divide + convert`` of the
  tissue kinds, independently of the others;
* a candidate holding a cell of kind ``k`` acts with probability
  ``total_k / B``: the decision value ``v = floor(u B / 2**32)`` of its
  ``P_DIE`` draw ``u`` is uniform on ``[0, B)`` and the cell acts iff
  ``v < total_k``; :func:`kernels.rules.act_tissue_cell` then reads ``v`` as
  its draw (death if ``v < die``, else division if ``v < die + divide``, ...).

So a site acts with probability ``q * total_k / B = total_k / 2**32`` and each
event keeps its probability, as before, up to the ``2**-32`` quantisation of
every threshold. Candidates are drawn per *group*: the sites of one row of one
sublattice pass (every third site), ``group`` consecutive ones at a time. A
group's number of candidates ``c`` is Binomial(``group``, ``q``), drawn by
inverting its distribution function (``TV_CDF``, computed here in exact
integer arithmetic, so every machine gets the same table), and which ``c``
of its sites they are is a uniform ``c``-subset chosen by Floyd's algorithm
(``P_SLOT + r`` for the ``r``-th of at most ``MAX_CANDIDATES`` draws);
:func:`kernels.rules.candidate_mask` is the rule. ``group`` is the largest of
32, 16, ..., 1 for which more than ``MAX_CANDIDATES`` candidates has
probability below ``2**-33`` (so its table entry rounds to certainty): 32 at
the default rates, where a group has a candidate in ~4 % of steps.

The candidates of a group are a property of the step and the sites, not of
the cells on them, so the decision of a site is still evaluated when its
pass reaches it, on whatever cell is there then. The random stream differs
from the per-site one (results are equal in distribution, not bit for bit);
``tests/test_turnover.py`` checks the rates and ``benchmarks/results/`` the
paired comparison of whole patients, which ``scheme="site"`` (the per-site coin, kept as the reference)
makes possible.
"""

from __future__ import annotations

from math import comb

import numpy as np

from kernels.layout import (
    CART,
    EMPTY,
    KR_CONVERT,
    KR_DIE,
    KR_DIVIDE,
    MAX_CANDIDATES,
    N_KINDS,
    N_TURNOVER,
    STROMA,
    TV_BOUND,
    TV_CDF,
    TV_GROUP,
)

TWO32 = 1 << 32
GROUPS = (32, 16, 8, 4, 2, 1)
SCHEMES = ("group", "site")


def bound(kind_rates: np.ndarray) -> int:
    """The largest ``die + divide + convert`` threshold of the tissue kinds (blasts, B cells, other marrow)."""
    totals = [int(kind_rates[KR_DIE, k] + kind_rates[KR_DIVIDE, k] + kind_rates[KR_CONVERT, k])
              for k in range(N_KINDS) if k not in (EMPTY, STROMA, CART)]
    b = max(totals, default=0)
    if not 0 <= b <= TWO32:
        raise ValueError(f"die + divide + convert of a tissue kind = {b}: expected at most 2**32 (probability 1)")
    return b


def cdf(group: int, b: int) -> list[int]:
    """``round(P(X <= c) * 2**32)`` for ``c = 0..MAX_CANDIDATES``, ``X ~ Binomial(group, b / 2**32)``, exactly."""
    whole = TWO32 ** group  # the common denominator of every term
    out, total = [], 0
    for c in range(MAX_CANDIDATES + 1):
        if c <= group:
            total += comb(group, c) * b ** c * (TWO32 - b) ** (group - c)
        out.append((total * 2 * TWO32 + whole) // (2 * whole))  # round half up
    return out


def table(kind_rates: np.ndarray, scheme: str = "group") -> np.ndarray:
    """The ``turnover[N_TURNOVER]`` vector for these kind rates (slots ``TV_*`` of :mod:`kernels.layout`).

    ``scheme="site"`` gives the per-site coin instead (``TV_GROUP`` = 0, ``TV_BOUND`` = ``2**32``: every
    tissue site's ``P_DIE`` draw is its decision value), the stream of the versions before this scheme.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"turnover scheme = {scheme!r}: expected one of {', '.join(map(repr, SCHEMES))}")
    b = bound(kind_rates)
    out = np.zeros(N_TURNOVER, dtype=np.int64)
    if scheme == "site":
        out[TV_BOUND] = TWO32
        out[TV_CDF:] = TWO32
        return out
    for group in GROUPS:
        values = cdf(group, b)
        if values[MAX_CANDIDATES] == TWO32:  # more than MAX_CANDIDATES candidates: below 2**-33
            break
    out[TV_BOUND] = b
    out[TV_GROUP] = group
    out[TV_CDF:] = values
    return out
