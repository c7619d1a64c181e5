"""Unit and statistical tests of the counter-based generator."""

import numpy as np
import pytest

from kernels import rng


@pytest.mark.parametrize("key", [(0, 0, 0, 0), (1, 2, 3, 4), (2**63 - 1, 2**28 - 1, 2**28 - 1, 255), (42, 7, 99, 16)])
def test_draw_matches_pure_python_reference(key):
    seed, step, site, purpose = key
    assert rng.draw(rng.key_of(seed), step, site, purpose) == rng.draw_reference(*key)


def draws(n, vary="site", seed=7):
    idx = np.arange(n)
    if vary == "site":
        return np.array([rng.draw(seed, 5, int(i), 3) for i in idx])
    if vary == "step":
        return np.array([rng.draw(seed, int(i), 11, 3) for i in idx])
    return np.array([rng.draw(rng.key_of(int(i)), 5, 11, 3) for i in idx])


@pytest.mark.statistical
@pytest.mark.parametrize("vary", ["site", "step", "seed"])
def test_draw_uniform_chi_square(vary):
    # 64 bins, 20,000 draws: chi-square with 63 dof; 99.9 % quantile is 103.4.
    u = draws(20000, vary)
    assert u.min() >= 0 and u.max() < 2**32
    counts = np.bincount((u >> 26).astype(np.int64), minlength=64)
    expected = len(u) / 64
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 103.4


def test_draw_neighbouring_counters_uncorrelated():
    # Correlation between draws at adjacent sites, steps and purposes: |r| < 4/sqrt(n).
    n = 20000
    a = np.array([rng.draw(3, 10, i, 5) for i in range(n)], dtype=float)
    b = np.array([rng.draw(3, 10, i + 1, 5) for i in range(n)], dtype=float)
    c = np.array([rng.draw(3, 11, i, 5) for i in range(n)], dtype=float)
    d = np.array([rng.draw(3, 10, i, 6) for i in range(n)], dtype=float)
    bound = 4 / np.sqrt(n)
    for other in (b, c, d):
        assert abs(np.corrcoef(a, other)[0, 1]) < bound


def test_draw_bits_balanced():
    # Each of the 32 output bits is set with probability 1/2 (5-sigma binomial band).
    u = draws(20000, "site").astype(np.uint64)
    for bit in range(32):
        ones = int(((u >> np.uint64(bit)) & np.uint64(1)).sum())
        assert abs(ones - 10000) < 5 * np.sqrt(5000)


def test_below_threshold_extremes():
    assert not any(rng.below(1, 1, s, 1, 0) for s in range(1000))
    assert all(rng.below(1, 1, s, 1, 2**32) for s in range(1000))


@pytest.mark.statistical
def test_pick_in_range_and_uniform():
    picks = np.array([rng.pick(5, 1, s, 2, 8) for s in range(16000)])
    assert picks.min() == 0 and picks.max() == 7
    counts = np.bincount(picks, minlength=8)
    assert ((counts - 2000) ** 2 / 2000).sum() < 24.3  # chi-square 7 dof, 99.9 %


@pytest.mark.parametrize("bad", [-0.1, 1.1, float("nan")])
def test_threshold_rejects_non_probability(bad):
    with pytest.raises(ValueError, match="probability"):
        rng.threshold(bad)


def test_threshold_exact_ends():
    assert rng.threshold(0.0) == 0
    assert rng.threshold(1.0) == 2**32
    assert rng.threshold(0.5) == 2**31
