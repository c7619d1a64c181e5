"""Counter-based random numbers: the same stream on every backend.

Algorithm
---------
Each random decision is a pure function of ``(seed, step, site, purpose)``::

    counter = step << 36 | purpose << 28 | site          (64 bits)
    key     = fmix(seed + GOLDEN)                          (once per run: key_of)
    z       = fmix(fmix(counter ^ key) + GOLDEN)
    draw    = z >> 32                                      (uniform on [0, 2**32))

``fmix`` is the 64-bit output function of SplitMix64 (Steele, Lea & Flood,
OOPSLA 2014; Stafford's "Mix13" constants), a bijection with full avalanche.
Applying it twice to a keyed counter is the construction of counter-based
generators such as Random123 (Salmon et al., SC 2011) with a cheaper round
function; tests in ``tests/test_rng.py`` check uniformity, independence of
neighbouring counters and purposes, and agreement with a pure-Python
implementation.

Because nothing is stateful, a draw does not depend on which thread, block or
backend makes it, nor on the order of the draws: this is what makes lattice
states bit-identical across ``python``, ``cpu`` (any thread count) and
``cuda``.

Limits: ``site < 2**28`` (a 16384 x 16384 lattice), ``purpose < 2**8``,
``step < 2**28``.
"""

from __future__ import annotations

import numpy as np

from kernels.config import jit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_S36 = np.uint64(36)
_S28 = np.uint64(28)

MAX_SITES = 1 << 28
MAX_STEPS = 1 << 28
MAX_PURPOSE = 1 << 8
TWO32 = 1 << 32


@jit
def fmix(z):
    """SplitMix64 output function on a ``uint64``."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def key_of(seed: int) -> np.uint64:
    """The generator key of a run seed (``0 <= seed < 2**63``), as ``np.uint64`` (what kernels take)."""
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed = {seed!r}: expected an integer in [0, 2**63)")
    return np.uint64(_mix_reference((seed + 0x9E3779B97F4A7C15) & _MASK64))


@jit
def draw(key, step, site, purpose):
    """Uniform integer in ``[0, 2**32)`` for one decision, as ``int64``.

    Parameters
    ----------
    key : int
        Run key, :func:`key_of` of the seed.
    step : int
        Step index, ``0 <= step < 2**28``.
    site : int
        Flat site (or voxel, or slot) index, ``0 <= site < 2**28``.
    purpose : int
        Which decision (a ``P_*`` constant of :mod:`kernels.rules`), ``< 2**8``.
    """
    counter = (np.uint64(step) << _S36) | (np.uint64(purpose) << _S28) | np.uint64(site)
    z = fmix(fmix(counter ^ np.uint64(key)) + GOLDEN)
    return np.int64(z >> _S32)


@jit
def below(key, step, site, purpose, threshold):
    """True with probability ``threshold / 2**32`` (``threshold`` in ``[0, 2**32]``)."""
    return draw(key, step, site, purpose) < threshold


@jit
def pick(key, step, site, purpose, n):
    """Uniform integer in ``[0, n)`` (multiply-high, no modulo bias beyond 2**-32)."""
    return (draw(key, step, site, purpose) * n) >> 32


_MASK64 = (1 << 64) - 1


def _mix_reference(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def draw_reference(seed: int, step: int, site: int, purpose: int) -> int:
    """Pure-Python implementation of ``draw(key_of(seed), ...)``, for tests and documentation."""
    counter = (step << 36) | (purpose << 28) | site
    return _mix_reference((_mix_reference(counter ^ int(key_of(seed))) + 0x9E3779B97F4A7C15) & _MASK64) >> 32


def threshold(probability: float) -> int:
    """Convert a probability to the integer threshold used by :func:`below`.

    ``below(..., threshold(p))`` is true with probability ``round(p * 2**32) / 2**32``,
    exact to 2.3e-10.
    """
    if not 0.0 <= probability <= 1.0 or probability != probability:
        raise ValueError(f"probability must be in [0, 1], got {probability!r}")
    return int(round(probability * TWO32))
