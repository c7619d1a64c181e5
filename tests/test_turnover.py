"""Quiescent turnover drawn by group (kernels/turnover.py): the table, the candidates and the event rates."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import empty_state, place, quiet_tables
from scipy import stats

import kernels
from kernels import Traffic, turnover
from kernels import layout as L
from kernels import rules as R
from kernels.rng import key_of

TWO32 = 1 << 32


def kind_rates_with(total: int) -> np.ndarray:
    rates = np.zeros((L.N_KIND_RATES, L.N_KINDS), dtype=np.int64)
    rates[L.KR_DIE, L.BLAST] = total // 3
    rates[L.KR_DIVIDE, L.BLAST] = total - total // 3
    rates[L.KR_DIE, L.NORMAL] = total // 7
    rates[L.KR_DIE, L.CART] = TWO32  # CAR-T and stromal rates never enter the bound
    return rates


@pytest.mark.parametrize("p", [1e-6, 1.4e-3, 0.02, 0.3])
def test_table_is_the_binomial_distribution_function_of_the_bound(p):
    b = round(p * TWO32)
    t = turnover.table(kind_rates_with(b))
    assert t[L.TV_BOUND] == b
    group = int(t[L.TV_GROUP])
    expected = stats.binom.cdf(np.arange(L.MAX_CANDIDATES + 1), group, b / TWO32) * TWO32
    assert np.all(np.abs(t[L.TV_CDF:] - expected) <= 2), (t[L.TV_CDF:], expected)
    assert t[L.TV_CDF + L.MAX_CANDIDATES] == TWO32
    # the largest group whose chance of more than MAX_CANDIDATES candidates rounds to 0
    assert stats.binom.sf(L.MAX_CANDIDATES, group, b / TWO32) < 2**-33 * 1.0001
    if group < 32:
        assert stats.binom.sf(L.MAX_CANDIDATES, 2 * group, b / TWO32) >= 2**-33 * 0.9999


def test_table_edges_and_the_site_scheme():
    none = turnover.table(kind_rates_with(0))
    assert none[L.TV_GROUP] == 32 and np.all(none[L.TV_CDF:] == TWO32)  # never a candidate
    certain = turnover.table(kind_rates_with(TWO32))
    assert certain[L.TV_GROUP] == L.MAX_CANDIDATES  # every site of a group of 8 is a candidate
    assert np.all(certain[L.TV_CDF:L.TV_CDF + L.MAX_CANDIDATES] == 0)
    site = turnover.table(kind_rates_with(12345), "site")
    assert site[L.TV_GROUP] == 0 and site[L.TV_BOUND] == TWO32
    with pytest.raises(ValueError, match="turnover scheme = 'tile'"):
        turnover.table(kind_rates_with(1), "tile")
    too_big = kind_rates_with(TWO32)
    too_big[L.KR_CONVERT, L.BLAST] = 1
    with pytest.raises(ValueError, match="at most 2\\*\\*32"):
        turnover.table(too_big)


@pytest.mark.statistical
def test_candidates_are_independent_sites_with_the_bound_probability():
    """20,000 groups: each site a candidate with probability q, pairs independent, counts binomial."""
    q = 0.01
    t = turnover.table(kind_rates_with(round(q * TWO32)))
    group = int(t[L.TV_GROUP])
    key = key_of(11)
    masks = np.array([R.candidate_mask(key, step, first, t) for step in range(200) for first in range(0, 300, 3)])
    bits = (masks[:, None] >> np.arange(group)) & 1
    n = len(masks)
    per_site = bits.sum(axis=0)
    sd = np.sqrt(n * q * (1 - q))
    assert np.all(np.abs(per_site - n * q) < 5 * sd), per_site
    both = (bits[:, 0] & bits[:, 1]).sum() + (bits[:, 3] & bits[:, 17]).sum()
    assert both < 2 * n * q * q + 5 * np.sqrt(2 * n * q * q)  # independent: ~4 pairs expected
    counts = np.bincount(bits.sum(axis=1), minlength=4)[:4]
    expected = stats.binom.pmf(np.arange(4), group, q) * n
    expected[-1] = n - expected[:-1].sum()
    observed = np.append(counts[:3], n - counts[:3].sum())
    assert stats.chisquare(observed, expected).pvalue > 1e-3


@pytest.mark.statistical
@pytest.mark.parametrize("scheme", ["group", "site"])
def test_deaths_follow_the_per_step_probability_in_either_scheme(scheme):
    """A full lattice of blasts (die p1) and other marrow cells (die p2): deaths are Binomial per kind."""
    n, steps = 60, 40
    p_blast, p_normal = 0.004, 0.0015
    state = empty_state(n)
    for i in range(n):
        for j in range(n):
            place(state, i, j, L.BLAST if (i + j) % 2 else L.NORMAL)
    tables = quiet_tables(seed=5)
    tables.kind_rates[L.KR_DIE, L.BLAST] = kernels.threshold(p_blast)
    tables.kind_rates[L.KR_DIE, L.NORMAL] = kernels.threshold(p_normal)
    lattice = kernels.Lattice(state, tables, backend="cpu", threads=1, turnover_scheme=scheme)
    for step in range(steps):
        lattice.step(step, Traffic())
    ev = lattice.pull().events
    for kind, p in ((L.BLAST, p_blast), (L.NORMAL, p_normal)):
        alive = n * n // 2
        q = 1 - (1 - p) ** steps
        mean, sd = alive * q, np.sqrt(alive * q * (1 - q))
        assert abs(ev[L.EV_DIED + kind] - mean) < 4 * sd, (scheme, kind, ev[L.EV_DIED + kind], mean)


def test_site_scheme_reproduces_the_per_site_coin():
    """'site': a tissue cell acts iff its own P_DIE draw is below its kind's total, and that draw is its value."""
    n = 9
    cell = np.full((n, n), L.BLAST, np.uint8)
    traits = np.zeros((n, n, L.N_TRAITS), np.uint16)
    no_recovery = np.zeros(L.N_RATES, np.int64)
    rates = kind_rates_with(round(0.2 * TWO32))
    t = turnover.table(rates, "site")
    key = key_of(3)
    total = rates[:, L.BLAST].sum()
    for step in range(30):
        for i in range(n):
            for j in range(n):
                u = kernels.draw_reference(3, step, i * n + j, L.P_DIE)
                expected = u if u < total else -1
                assert R.needs_visit(i, j, cell, traits, rates, no_recovery, t, key, step) == expected


@pytest.mark.statistical
def test_whole_runs_in_either_scheme_agree_patient_by_patient():
    """Eight seeds of a small patient in both schemes: paired differences of the day-4 counts are centred on 0.

    The small case of the paired 40-patient comparison in benchmarks/results/turnover-equivalence/: a
    scheme that changed a rate would shift blasts, normal cells or kills in every pair.
    """
    from abm.model import MarrowModel
    from abm.params import Params

    settings = {"grid.size": 48, "time.days": 4.0, "time.observe_every_h": 24.0}
    diffs = {"blasts": [], "normal": [], "kills": [], "cart": []}
    for seed in range(8):
        obs = {}
        for scheme in ("site", "group"):
            params = Params.default().replace({**settings, "grid.turnover": scheme})
            obs[scheme] = MarrowModel(params, seed=seed, backend="cpu", threads=1).run().observation()
        for key in diffs:
            diffs[key].append(obs["group"][key] - obs["site"][key])
    for key, d in diffs.items():
        d = np.array(d, dtype=float)
        assert np.any(d != 0), f"{key}: the schemes should draw differently"
        assert stats.ttest_1samp(d, 0.0).pvalue > 1e-3, (key, d)
