"""The body's ordinary differential equations: state vector, right-hand side, RK4 step and infusion.

The state vector holds the CAR-T pools, serum IL-6, the myeloid compartment,
the ICANS effect compartment (:mod:`abm.body.toxicity`) and the residual
disease outside the window (:mod:`abm.body.reservoir`); :class:`Rates` carries the step's
constant inputs. :class:`abm.body.Body` assembles the rates and decides what
is infused when.

CAR-T pools [cells]
    Effectors ``E`` and memory cells ``M``, each split between blood (``_b``)
    and tissue (``_t``; marrow, lymphoid organs). Effectors are counted by
    the divisions they have made since they were infused or recalled from
    memory: ``E^i`` for ``i = 0..K``, ``K = cart.max_divisions`` (division
    destiny: a stimulated T cell makes a programmed number of divisions and
    stops, whether or not antigen remains; Hawkins 2007 PNAS 104:5032,
    Heinzel 2017 Nat Immunol 18:96; the window's cells follow the same
    limit). Infusions (``schedule.days``,
    ``schedule.fractions`` of ``product.dose_per_kg * weight``; a later fraction
    is held, i.e. not given, when CRS is at ``schedule.hold_crs_grade`` or above
    on its day) go into blood,
    ``cart.memory_fraction`` of them as memory cells, the rest as ``E^0``.
    With stimulation ``s = A / (A + K_A + c_T (E_t + M_t))``
    (``body.antigen_half_saturation_cells``; ``c_T = body.targets_per_cart``: the
    CD19+ cells one tissue CAR-T cell ties up, so that a pool grown large
    against its antigen competes for it and stops expanding: ratio-dependent
    stimulation, Sahoo 2020 J R Soc Interface 17:20190734; 0 = none),
    activation ``a = s * f_act`` and division rate ``g = rho s``,
    ``[i < K]`` 1 below the limit and 0 at it::

        dE_b^i/dt = -k_bt E_b^i + k_tb E_t^i - (d_E + [i < K] mu) E_b^i
        dE_t^i/dt =  k_bt E_b^i - k_tb E_t^i - (d_E + [i < K] (g + mu (1 - s))) E_t^i
                     + 2 g E_t^(i-1)  (i > 0)   or   + r_M a M_t  (i = 0)
        dM_b/dt = -k_bt M_b + k_tb M_t + mu sum_(i<K) E_b^i - d_M M_b
        dM_t/dt =  k_bt M_b - k_tb M_t + mu (1 - s) sum_(i<K) E_t^i - d_M M_t - r_M a M_t

    ``E`` is the sum over ``i``. A recalled memory cell starts a fresh program,
    so the pool can re-expand against returning antigen (B cells, a relapse),
    but one expansion is at most ``2^K``-fold per cell: a patient whose
    antigen the window cannot clear (niche-protected blasts, a non-responder)
    no longer expands without bound. Effectors at the limit do not become
    memory cells (they are terminally differentiated).

    * ``k_bt = traffic.marrow_entry_rate_per_day + traffic.blood_loss_rate_per_day``
      [1/d]: blood to tissue (to marrow, or to other tissues);
      ``k_tb = k_bt f_b / (1 - f_b)`` [1/d] so that a fraction ``f_b``
      (``body.blood_fraction``) of the pool is in blood at equilibrium;
    * ``rho = cart.proliferation_rate_per_day`` [1/d], times
      ``costim.cd28_proliferation_factor`` for CD28 products, times
      ``Controls.proliferation_factor`` (steroids), times
      ``lymphodepletion.proliferation_boost`` while ``t < lymphodepletion.boost_days``
      (if ``lymphodepletion.enabled``; with ``lymphodepletion.boost_shape =
      "consumed"`` a boost ``1 + (b - 1) H`` that fades with the IL-7/IL-15
      surge ``H`` the CAR-T cells use up: :meth:`abm.body.Body.homeostatic_boost`). Expansion happens in tissue only,
      where antigen is met;
    * ``d_E = cart.death_rate_per_day``, ``d_M = cart.memory_death_rate_per_day``
      [1/d]; ``mu = cart.memory_conversion_per_day`` [1/d] (times
      ``costim.cd28_memory_factor`` for CD28), only for resting effectors
      (``1 - s`` of those in tissue); ``r_M = body.memory_reactivation_per_day``;
      ``f_act = Controls.activation_factor``.

    Without antigen the pools contract biphasically: effectors with half-life
    ``ln 2 / (d_E + mu)`` (the fast phase, ~4 d), memory with ``ln 2 / d_M``
    (the slow phase, ~220 d), fed by ``mu / (d_E + mu - d_M)`` of the
    effectors. The rates do not depend on the compartment except expansion,
    so blood-tissue exchange never changes the totals.
    Blood CAR-T concentration [cells/uL] = ``(E_b + M_b) /
    (traffic.blood_volume_ml_per_kg * weight * 1000)``.

Serum IL-6 ``I`` [pg/mL]
    ::

        dI/dt = k_el I_0 + c P X (1 + g I / (I + K_M)) + c P_M kappa Y - k_el (1 - r_R b) I

    * ``X = a sum_i delta^i E_t^i / 1e9``: antigen-activated effectors
      [1e9 cells], those that have divided ``i`` times weighted by
      ``delta^i`` (``delta = serum.il6_division_decay``: repeated stimulation
      cuts cytokine secretion, so IL-6 rises less steeply than the pool and
      fever comes days before its peak, as in the clinic);
      ``P = serum.il6_production_pg_ml_per_day`` [pg/mL/d per 1e9 cells], times
      ``30 kg / weight`` with ``serum.diluted_by_weight`` (the same cells in a
      larger distribution volume);
    * amplification: up to ``g = serum.myeloid_amplification`` times
      more, half maximal at ``K_M = serum.myeloid_half_il6_pg_ml``. It is
      self-reinforcing (IL-6 recruits more IL-6) but capped and still
      proportional to T-cell activation, so it stops when antigen is gone;
      instantaneous, unlike the myeloid compartment ``Y`` below, which is to
      take over most of it in the issue-23/28 recalibration.
      Serum IL-6 stands here for the whole myeloid cytokine milieu (IL-1,
      GM-CSF, IL-6), so the loop is *not* cut by tocilizumab: in mice IL-1
      blockade prevents CRS and neurotoxicity while IL-6 receptor blockade
      only treats CRS (Giavridis 2018 Nat Med 24:731);
    * ``k_el = ln 2 / serum.il6_half_life_h`` [1/d]; ``I_0`` the baseline;
    * tocilizumab blocks a fraction ``b`` of the IL-6 receptors
      (``therapy.tocilizumab_blockade`` while a dose acts, else 0). Receptor
      uptake is ``r_R = serum.receptor_clearance_fraction`` of the
      clearance, so serum IL-6 *rises* under tocilizumab (Nishimoto 2008)
      while its signal falls;
    * corticosteroids multiply production by ``c = therapy.steroid_cytokine_factor``
      (1 without steroids).

Myeloid compartment ``Y`` [-] (the activated fraction of monocytes and macrophages)
    Activated CAR-T cells activate monocytes and macrophages (GM-CSF, CD40L,
    IFN-gamma), which then make most of the IL-6 and IL-1 of CRS (Giavridis
    2018 Nat Med 24:731; Norelli 2018 Nat Med 24:739)::

        dY/dt = k_on D / (D + 1) (1 - Y) - k_off Y,
        D = a sum_i delta^i E_t^i / K_D + (F_w + q f_act C R_+) / K_K

    (``myeloid.activation_per_day``, ``myeloid.resolution_per_day``,
    ``myeloid.half_drive_cells``); the second term is the danger signal of the
    target cells CAR-T cells kill (pyroptosis releases DAMPs that activate
    macrophages: Liu 2020 Sci Immunol 5:eaax7969; Santurio 2025 PLoS Comput
    Biol), ``F_w`` the body's kills a day as the window counts them (its kills
    over the last coupling interval, over ``window_share``), ``q f_act C R_+``
    the reservoir's, ``K_K = myeloid.half_drive_kills_per_day`` (0: no such
    drive). Saturable and with its own time constants,
    so it lags T-cell activation and outlasts it by about a day. It adds
    ``c P_M kappa Y`` to the IL-6 production (``P_M = myeloid.il6_pg_ml_per_day``;
    ``kappa = patient.monocytes_per_nl / myeloid.monocytes_reference_per_nl``, the
    patient's myeloid capacity) and ``h epsilon D_1 kappa Y`` to the ICANS drive
    (``D_1 = myeloid.il1_icans_pg_ml``, its IL-1; :mod:`abm.body.toxicity`).
    Tocilizumab blocks neither. With ``P_M = D_1 = 0`` it is computed but acts
    on nothing (the model before issue 23).

Numerics
    Classical fourth-order Runge-Kutta with sub-steps of at most 15 min and
    at most ``0.5 /`` the fastest rate, so that every decay stays positive
    and stable; inputs (stimulation, factors, blockade) are constant within a
    step, taken at its start.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

from abm.rates import MINUTES_PER_DAY

UL_PER_ML = 1000.0
HOURS_PER_DAY = 24.0
BILLION = 1e9
MAX_SUBSTEP_DAY = 15.0 / MINUTES_PER_DAY

# indices of the ODE state vector (RP: reservoir blasts with the product's target, RN, RM, RL, RK: without it,
# by escape route: pre-existing, mutation, lineage switch, masking by the CAR they carry [cells]; MY: the
# activated fraction of the myeloid compartment [-]); the effector stages follow: E_b^0..E_b^K from E0,
# then E_t^0..E_t^K (Body.blood_e, Body.tissue_e)
MB, MT, IL6, NEURO, RP, RN, MY, RM, RL, RK = range(10)
E0 = 10
RESERVOIR = (RP, RM, RN, RL, RK)  # the reservoir's compartments, in the order reservoir.small_numbers and
# reservoir.reseeding take them


class Rates(NamedTuple):
    """The inputs of :func:`derivative`, constant within a step (taken at its start)."""

    k_bt: float  # blood to tissue [1/d]
    k_tb: float  # tissue to blood [1/d]
    d_e: float  # effector death [1/d]
    mu: float  # effector to memory, in blood [1/d]
    d_m: float  # memory death [1/d]
    div: float  # division rate g = rho s [1/d]
    mu_rest: float  # effector to memory in tissue, mu (1 - s) [1/d]
    recall: float  # memory recall r_M a [1/d]
    prod: float  # IL-6 production per producing effector, c P a / 1e9 [pg/mL/d per cell]
    gain: float  # myeloid amplification g [-]
    k_m: float  # myeloid half-maximal IL-6 K_M [pg/mL]
    base: float  # baseline production k_el I_0 [pg/mL/d]
    k_clear: float  # IL-6 clearance k_el (1 - r_R b) [1/d]
    il6_0: float  # baseline IL-6 I_0 [pg/mL]
    neuro: float  # steroid damping of the ICANS drive h [-]
    k_tau: float  # 1 / ICANS delay [1/d]
    growth: float  # reservoir net growth gamma [1/d]
    room: float  # reservoir room K_R [cells]
    loss: float  # target loss lambda [1/d]
    kill: float  # reservoir killing per tissue CAR-T, q f_act / 1e9 [1/d per cell]
    reseed: float  # reservoir homing r [1/d]
    drive: float  # myeloid drive per producing effector, c a / 1e9 / K_D [1 per cell]
    my_on: float  # myeloid activation k_on [1/d]
    my_off: float  # myeloid resolution k_off [1/d]
    my_il6: float  # IL-6 of the fully activated myeloid compartment, c P_M kappa [pg/mL/d]
    my_il1: float  # endothelial drive of its IL-1, h epsilon D_1 kappa [pg/mL]
    switch: float  # reservoir lineage switch, division rate x per-division probability [1/d]
    damp: float  # myeloid drive of the kills the window counts, F_w / K_K [-]
    damp_per_kill: float  # myeloid drive per target cell killed a day, 1 / K_K [d per cell]
    k: int  # division limit K
    il6_weights: tuple[float, ...]  # delta^i, i = 0..K


def layout(max_divs: int) -> tuple[slice, slice, int]:
    """Blood and tissue effector slices of the state vector, and its length, for ``max_divs`` divisions."""
    blood = slice(E0, E0 + max_divs + 1)
    tissue = slice(E0 + max_divs + 1, E0 + 2 * (max_divs + 1))
    return blood, tissue, E0 + 2 * (max_divs + 1)


def max_substep(*rates: float) -> float:
    """Longest sub-step [d]: at most 15 min and at most ``0.5 /`` the fastest of ``rates`` [1/d]."""
    return min(MAX_SUBSTEP_DAY, 0.5 / max(*rates, 1e-12))


def substeps(dt_day: float, longest: float, kill_now: float) -> tuple[int, float]:
    """Number and length [d] of the sub-steps of a step of ``dt_day``.

    The reservoir's killing hazard ``kill_now`` [1/d] grows with the pool, so
    it bounds the sub-step too (RK4 stays within its stable range for it).
    """
    n = max(1, math.ceil(dt_day / min(longest, 0.5 / max(kill_now, 1e-12)) - 1e-9))
    return n, dt_day / n


def infuse(y: list[float], dose: float, memory_fraction: float) -> None:
    """Add an infused dose [cells] to blood, ``memory_fraction`` of it as memory cells, the rest as ``E_b^0``."""
    y[E0] += dose * (1.0 - memory_fraction)  # E_b^0
    y[MB] += dose * memory_fraction


def integrate(y: list[float], n: int, h: float, r: Rates) -> list[float]:
    """``n`` RK4 sub-steps of ``h`` days from ``y`` with constant rates ``r``."""
    out = _integrate(np.array(y, dtype=np.float64), n, h, np.array(r[:N_FLOAT_RATES], dtype=np.float64),
                     np.array(r.il6_weights, dtype=np.float64), r.k)
    return out.tolist()


def derivative(y: list[float], r: Rates) -> list[float]:
    """The right-hand side at ``y`` (the equations in the module docstring)."""
    out = np.zeros(len(y))
    _derivative(np.array(y, dtype=np.float64), np.array(r[:N_FLOAT_RATES], dtype=np.float64),
                np.array(r.il6_weights, dtype=np.float64), r.k, out)
    return out.tolist()


N_FLOAT_RATES = 29  # Rates up to ``damp_per_kill``: the floats; then the division limit k and the IL-6 weights

# Compiled (one call per body step instead of ~100 Python-level operations per stage; a 365-day patient makes
# 263k of them). Sums run left to right in float64 with no reassociation, so every machine gets the same bits.


@numba.njit(cache=True, nogil=True)
def _derivative(y, rv, weights, k, out):
    k_bt, k_tb, d_e, mu, d_m, div, mu_rest, recall = rv[0], rv[1], rv[2], rv[3], rv[4], rv[5], rv[6], rv[7]
    prod, gain, k_m, base, k_clear, il6_0, neuro, k_tau = rv[8], rv[9], rv[10], rv[11], rv[12], rv[13], rv[14], rv[15]
    growth, room, loss, kill, reseed = rv[16], rv[17], rv[18], rv[19], rv[20]
    drive, my_on, my_off, my_il6, my_il1, switch = rv[21], rv[22], rv[23], rv[24], rv[25], rv[26]
    damp, damp_per_kill = rv[27], rv[28]
    mb, mt, il6, c, rp, rn, my, rm, rl, rk = y[MB], y[MT], y[IL6], y[NEURO], y[RP], y[RN], y[MY], y[RM], y[RL], y[RK]
    tb = E0 + k + 1  # first tissue stage
    to_memory_b = 0.0
    to_memory_t = 0.0
    effectors_t = 0.0
    producing = 0.0  # division-weighted, for IL-6
    for i in range(k + 1):
        eb = y[E0 + i]
        et = y[tb + i]
        exchange = k_tb * et - k_bt * eb
        if i < k:
            out[E0 + i] = exchange - (d_e + mu) * eb
            tissue = -exchange - (d_e + div + mu_rest) * et
            to_memory_b += eb
            to_memory_t += et
        else:  # at the division limit: no division, no memory
            out[E0 + i] = exchange - d_e * eb
            tissue = -exchange - d_e * et
        out[tb + i] = tissue + (2.0 * div * y[tb + i - 1] if i > 0 else recall * mt)
        effectors_t += et
        producing += weights[i] * et
    excess = il6 - il6_0 if il6 > il6_0 else 0.0
    room_growth = growth * (1.0 - (rp + rm + rn + rl + rk) / room) if room > 0.0 else 0.0  # reservoir, logistic
    out[MB] = -k_bt * mb + k_tb * mt + mu * to_memory_b - d_m * mb
    out[MT] = k_bt * mb - k_tb * mt + mu_rest * to_memory_t - d_m * mt - recall * mt
    # activated effectors over the myeloid half-drive, and the danger signal of the cells killed (exactly 0 without)
    d = drive * producing + damp + damp_per_kill * kill * (effectors_t + mt) * rp
    out[MY] = my_on * d / (1.0 + d) * (1.0 - my) - my_off * my
    out[IL6] = base + prod * producing * (1.0 + gain * il6 / (il6 + k_m)) + my_il6 * my - k_clear * il6
    out[NEURO] = (neuro * excess + my_il1 * my - c) * k_tau
    # the acquired-loss compartment RM keeps the expression of the single negative one it split from, so a
    # patient without pre-existing negatives or lineage switch gives the same bits as before the routes
    out[RP] = (room_growth - loss - kill * (effectors_t + mt) - reseed - switch) * rp
    out[RM] = room_growth * rm + loss * rp - reseed * rm - switch * rm
    out[RN] = room_growth * rn - reseed * rn - switch * rn
    out[RL] = room_growth * rl - reseed * rl + switch * (rp + rm + rn)
    out[RK] = room_growth * rk - reseed * rk  # masked blasts (assumption: they do not switch lineage)


@numba.njit(cache=True, nogil=True)
def _integrate(y, n, h, rv, weights, k):
    size = y.shape[0]
    k1 = np.empty(size)
    k2 = np.empty(size)
    k3 = np.empty(size)
    k4 = np.empty(size)
    z = np.empty(size)
    for _ in range(n):
        _derivative(y, rv, weights, k, k1)
        for i in range(size):
            z[i] = y[i] + 0.5 * h * k1[i]
        _derivative(z, rv, weights, k, k2)
        for i in range(size):
            z[i] = y[i] + 0.5 * h * k2[i]
        _derivative(z, rv, weights, k, k3)
        for i in range(size):
            z[i] = y[i] + h * k3[i]
        _derivative(z, rv, weights, k, k4)
        for i in range(size):
            y[i] = y[i] + h / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i])
    return y
