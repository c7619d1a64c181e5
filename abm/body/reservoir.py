"""Residual disease outside the window: the reservoir's seeding, small-number noise and homing to the window.

The reservoir's two compartments are variables of the body ODE
(:mod:`abm.body.kinetics`, indices ``RP`` and ``RN``); this module holds
what is particular to them: their initial size, the stochastic small-number
regime that replaces the equations' result for a compartment below
:data:`STOCHASTIC_CELLS` cells, and the window's blast entry quota.

Residual disease outside the window ``R_+``, ``R_-`` [cells]
    Leukemia the marrow window does not sample (CNS, testes, extramedullary
    sites, marrow spaces CAR-T cells reach poorly): blasts with (``R_+``) and
    without (``R_-``) the product's target. At the first step they are
    ``f = relapse.reservoir_fraction`` of the body's marrow blasts (the
    window's, over ``window_share``); ``R_-`` is the patient's expected
    target-negative share of them (:func:`target_negative_share`), not the
    window's count, which holds a few cells at most for the pre-existing
    subclones of 1e-6 to 1e-4 of blasts (:mod:`abm.cohort`). Below
    :data:`STOCHASTIC_CELLS` the first step rounds it to whole founders. With ``C = E_t + M_t`` (tissue CAR-T)::

        dR_+/dt = gamma R_+ (1 - R / K_R) - lambda R_+ - q f_act C / 1e9 R_+ - r R_+ - sigma R_+
        dR_-/dt = gamma R_- (1 - R / K_R) + lambda R_+ - r R_-                   (per route, below)

    ``R_-`` is held by escape route (issue 28): ``R_pre`` (target-negative at
    infusion; index ``RN``), ``R_mut`` (lost the target in a division, fed by
    ``lambda R_+``; ``RM``), ``R_lin`` (switched to the myeloid lineage, fed
    by ``sigma`` from every B-lineage compartment; ``RL``) and ``R_mask``
    (blasts transduced with the CAR in manufacturing, whose CAR masks the
    target: ``product.transduced_blasts`` join it with each fraction of the
    dose; ``RK``; assumption: they do not switch lineage), each growing in the
    shared room and homing like the rest; ``sigma`` = division rate x
    ``blast.lineage_switch_per_division`` for a KMT2A-rearranged leukemia
    (``patient.kmt2a_rearranged``), else 0. A negative blast homing to the
    window carries its compartment's route (``kernels.rules.traffic_site``).

    * ``gamma = blast.division_rate_per_day - blast.death_rate_per_day`` [1/d],
      logistic in ``R = R_+ + R_-`` up to ``K_R = f`` times the body's marrow
      cells (the reservoir's room);
    * ``lambda`` = division rate times the per-division loss of the target
      (``blast.cd19_loss_per_division`` for CD19, ``blast.cd22_loss_per_division``
      for CD22; 0 for a dual CAR, which needs both lost);
    * ``q = relapse.reservoir_kill_per_day`` per 1e9 tissue CAR-T, times the
      steroid activation factor ``f_act``: mass action, since sanctuary blasts
      meet CAR-T cells less often than marrow blasts do; with trogocytosis
      (``cart.trogocytosis_fraction``) also times the window's stripped
      response (``WindowReadout.stripped_response``: its blasts' response to
      the target they carry over that to the target their genes make), a
      stated simplification: the reservoir's blasts are stripped as the
      window's are, and enter the window at full density;
    * ``r = relapse.reseed_rate_per_day``: blasts leave the reservoir for the
      marrow; the window receives ``r R window_share`` a day through its
      perivascular sites (the kernels' blast entry quota; a blast enters
      without the target with probability ``R_- / R``, with antigen levels
      drawn from the patient's distribution).

    ``R_+`` adds to the stimulating load: ``A = cd19_cells / window_share + R_+``.

    Small numbers: a compartment below :data:`STOCHASTIC_CELLS` cells at the
    start of a step is a whole number of cells for that step (one entering
    this regime is rounded up or down at random, keeping its mean). Within
    each sub-step ``h`` of the step each cell divides with probability
    ``div h`` (``div = blast.division_rate_per_day``; a division of an
    ``R_+`` cell makes an ``R_-`` daughter with the per-division loss) and
    leaves with the complementary hazard ``div - gamma (1 - R / K_R)`` plus
    killing (``R_+``) and homing, so the mean follows the equations above.
    A target-negative compartment fed by a large ``R_+`` receives a Poisson
    number of new cells. So the last cells of a killed compartment go
    extinct (a one-cell clone facing only its natural death and homing
    survives with probability ``(gamma - r) / div``, ~52 % by default), and a
    target-negative reservoir forms only if one of its founders survives.
    Relapse thus follows CAR-T loss when ``R_+`` survives the expansion
    (target-positive relapse) or a target-negative clone survives
    (target-negative relapse), months later, as the reseeded blasts regrow in
    the window; a patient in whom neither survives is cured of the reservoir.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from kernels import TWO32

if TYPE_CHECKING:
    from abm.params import Params

# a reservoir compartment below this many cells is a whole number of cells with random births and deaths
# (assumption: demographic noise is ~3 % at 1000 cells, so the deterministic equations take over there)
STOCHASTIC_CELLS = 1000.0
RESERVOIR_STREAM = 0x5E5E  # spawn key of the reservoir's generator (Body.rng)


def target_negative_share(p: Params) -> float:
    """Expected share of the patient's blasts without the product's target at infusion.

    The marrow draws each blast's CD19 and CD22 negativity independently
    (:func:`abm.marrow.build_window`), so a dual CAR misses ``f19 f22`` of
    them.
    """
    f19, f22 = p.patient.cd19_negative_fraction, p.patient.cd22_negative_fraction
    return {"CD19": f19, "CD22": f22}.get(p.product.target, f19 * f22)


def target_loss_per_division(p: Params) -> float:
    """Probability that a division loses the product's target (0 for a dual CAR, which needs both lost)."""
    target = p.product.target
    return (p.blast.cd19_loss_per_division if target == "CD19" else
            p.blast.cd22_loss_per_division if target == "CD22" else 0.0)


def generator(seed: int) -> np.random.Generator:
    """The reservoir's random numbers: one generator per run, from the run's seed and :data:`RESERVOIR_STREAM`."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(RESERVOIR_STREAM,)))


def initial(fraction: float, window_blasts: int, window_share: float, negative_share: float) -> tuple[float, float]:
    """(``R_+``, ``R_-``) at the first step: ``fraction`` of the body's marrow blasts, split by target."""
    reservoir = fraction * window_blasts / window_share
    return reservoir * (1.0 - negative_share), reservoir * negative_share


def whole(rng: np.random.Generator, cells: float) -> int:
    """``cells`` rounded up with probability its fractional part (a whole number with the same mean)."""
    floor = math.floor(cells)
    frac = cells - floor
    return int(floor) + (1 if frac > 0.0 and rng.random() < frac else 0)


def small_numbers(
    rng: np.random.Generator,
    before: tuple[float, ...],
    n: int,
    h: float,
    kill: float,
    *,
    division: float,
    growth: float,
    room: float,
    reseed: float,
    target_loss: float,
    loss_per_division: float,
    switch_per_division: float = 0.0,
) -> tuple[int | None, ...]:
    """Whole-cell (``R_+``, ``R_mut``, ``R_pre``, ``R_lin``, ``R_mask``) after a step, for the small compartments.

    Small: below :data:`STOCHASTIC_CELLS` cells. ``before`` is (``R_+``,
    ``R_mut``, ``R_pre``, ``R_lin``, ``R_mask``) at the start of the step, ``n`` sub-steps
    of ``h`` days, ``kill`` the killing hazard of ``R_+`` cells [1/d]; hazards
    are those of the step's start (see the module docstring, "Small
    numbers"). ``division``, ``growth`` are the blasts' division and net
    growth rates [1/d], ``room`` the reservoir's room [cells], ``reseed`` its
    homing rate [1/d], ``target_loss`` the rate of target loss [1/d] and
    ``loss_per_division`` its probability per division,
    ``switch_per_division`` the probability that a daughter switches lineage.
    A compartment at or above the threshold is None (the equations' result
    stands). The draws come in the order of the model before the routes
    (``R_+``, then the acquired-loss compartment), then those of the others,
    which make none while they are empty: a patient without pre-existing
    negatives, lineage switch or masked blasts draws what it did.
    """
    room_growth = growth * (1.0 - sum(before) / room) if room > 0.0 else 0.0
    leave = max(division - room_growth, 0.0) + reseed  # natural exits and homing [1/d]
    pos, mut, pre, lin, mask = (whole(rng, v) if v < STOCHASTIC_CELLS else None for v in before)
    birth = division * h
    for _ in range(n):
        lost = 0
        switched = 0
        if pos is None:  # a large R+ feeds the small compartments
            lost = int(rng.poisson(target_loss * before[0] * h)) if target_loss > 0.0 else 0
        elif pos > 0:
            born = int(rng.poisson(birth * pos))
            lost = int(rng.binomial(born, loss_per_division)) if born and loss_per_division else 0
            moved = _switched(rng, born - lost, switch_per_division)
            pos = int(rng.binomial(pos, math.exp(-(leave + kill) * h))) + born - lost - moved
            switched += moved
        if mut is not None and (mut > 0 or lost > 0):
            mut, moved = _negative(rng, mut, leave * h, birth, switch_per_division)
            mut += lost
            switched += moved
        if pre is not None and pre > 0:
            pre, moved = _negative(rng, pre, leave * h, birth, switch_per_division)
            switched += moved
        if lin is not None:
            if switch_per_division > 0.0:  # large compartments feed a small switched one
                large = sum(v for v, w in zip(before[:3], (pos, mut, pre), strict=True) if w is None)
                switched += int(rng.poisson(division * switch_per_division * large * h)) if large else 0
            if lin > 0 or switched > 0:
                lin, _ = _negative(rng, lin, leave * h, birth, 0.0)
                lin += switched
        if mask is not None and mask > 0:
            mask, _ = _negative(rng, mask, leave * h, birth, 0.0)
    return pos, mut, pre, lin, mask


def _negative(rng: np.random.Generator, cells: int, leave: float, birth: float, switch: float) -> tuple[int, int]:
    """A small target-negative compartment over one sub-step: (cells after, daughters that switched lineage)."""
    survivors = int(rng.binomial(cells, math.exp(-leave))) if cells else 0
    born = int(rng.poisson(birth * cells)) if cells else 0
    moved = _switched(rng, born, switch)
    return survivors + born - moved, moved


def _switched(rng: np.random.Generator, born: int, switch: float) -> int:
    """How many of ``born`` daughters switch lineage (no draw without a switch probability)."""
    return int(rng.binomial(born, switch)) if born and switch > 0.0 else 0


def reseeding(rp: float, rm: float, rn: float, rl: float, rk: float, reseed: float, window_share: float,
              n_portals: int, dt_day: float) -> tuple[int, int, int, int, int]:
    """Reservoir blasts homing to the window this step: (entry quota, negative, pre-existing, mutation, lineage).

    The quota is the expected number of entries times ``2**32``; the
    negative threshold the probability (times ``2**32``) that an entering
    blast lacks the product's target (from ``rm`` acquired-loss, ``rn``
    pre-existing, ``rl`` lineage-switched and ``rk`` masked cells); the last
    three the cumulative probabilities that a negative one is pre-existing,
    or pre-existing or mutated, or one of these or switched (the rest are
    masked).
    """
    total = rp + rm + rn + rl + rk
    if total <= 0.0 or n_portals == 0:
        return 0, 0, TWO32, TWO32, TWO32
    expected = reseed * total * window_share * dt_day
    negative = rm + rn + rl + rk
    if negative <= 0.0:
        return int(round(expected * TWO32)), 0, TWO32, TWO32, TWO32
    return (int(round(expected * TWO32)), int(round(negative / total * TWO32)), int(round(rn / negative * TWO32)),
            int(round((rn + rm) / negative * TWO32)), int(round((rn + rm + rl) / negative * TWO32)))
