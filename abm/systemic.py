"""The body compartment: CAR-T pools, serum IL-6, CRS/ICANS surrogates and their treatment.

The marrow window is a lattice; the rest of the patient is this module: a
handful of deterministic ordinary differential equations (ODEs) for the whole
body, coupled to the window once per step. :class:`Body` is what
:class:`abm.model.MarrowModel` advances every lattice step.

Determinism and noise
    The body is a *mean-field* compartment standing for ~1e7 windows' worth
    of marrow plus blood and other tissues, so its outputs (blood CAR-T,
    serum IL-6, CRS and ICANS grades) must not inherit one window's
    small-number noise: they depend on the window only through the body's
    CD19+ load ``A`` (from the window's CD19+ cell count, which is large),
    never through the window's CAR-T count (tens of cells early on). The one
    exception is the residual disease outside the window (``R_+``, ``R_-``,
    below): a compartment of fewer than :data:`STOCHASTIC_CELLS` cells is a
    whole number of cells with random births, deaths and losses, because
    whether the last sanctuary blasts die out or a first target-negative
    blast appears and survives is what separates cure from relapse, and a
    continuum of fractional cells can never go extinct. Its random numbers
    come from one ``numpy`` generator per run, seeded by the run's seed and
    :data:`RESERVOIR_STREAM` and stored in :meth:`Body.state`; the body runs
    in Python on every backend, so the same seed and readouts give
    bit-identical results everywhere, and :meth:`Body.state`/
    :meth:`Body.restore` round-trip exactly.

Coupling with the window (per step of ``dt`` days)
    * in: :class:`WindowReadout`, refreshed by the model about hourly and
      piecewise constant in between. Only ``cd19_cells`` enters the
      equations: the body CD19+ load is ``A = cd19_cells / window_share``
      [cells], with ``window_share = window_capacity / (marrow_cells_per_kg *
      weight)``. CD19+ cells outside the marrow (lymph-node and splenic B
      cells, extramedullary disease) are not counted (simplification).
      "CD19+" reads "carrying the product's target" throughout: for a CD22
      or a dual CD19/CD22 CAR ``cd19_cells`` counts the cells the CAR
      recognises (``product.target``; the names predate CD22).
    * out: the window's CAR-T entry quota (the expected entries this step,
      times ``2**32``, as the kernels expect them): the window is a sample of
      the marrow, so its CAR-T count is fed towards its share of the body's
      marrow CAR-T, ``target = f_m (E_t + M_t) window_share`` with
      ``f_m = body.marrow_share``, at ``k_home = body.marrow_homing_rate_per_day``:
      ``entries = k_home * max(0, target - window CAR-T) * dt``. The window's
      own CAR-T count (``WindowReadout.cart``) thus steers only the window's
      intake, never a body equation; local expansion above the target simply
      stops the intake. And :class:`Controls` (steroid suppression of CAR-T
      proliferation and activation). Cells that leave the window do not
      return to the body pool: the window is a sample of the marrow, whose
      mean-field share of CAR-T is already in the pool. (Feeding the window
      from blood alone left it 20-fold sparser in CAR-T than the body pool it
      stands for, so the body kept expanding against antigen the window could
      not clear.)

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
    With stimulation ``s = A / (A + K_A)`` (``body.antigen_half_saturation_cells``),
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
      (if ``lymphodepletion.enabled``). Expansion happens in tissue only,
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

        dR_+/dt = gamma R_+ (1 - R / K_R) - lambda R_+ - q f_act C / 1e9 R_+ - r R_+
        dR_-/dt = gamma R_- (1 - R / K_R) + lambda R_+ - r R_-

    * ``gamma = blast.division_rate_per_day - blast.death_rate_per_day`` [1/d],
      logistic in ``R = R_+ + R_-`` up to ``K_R = f`` times the body's marrow
      cells (the reservoir's room);
    * ``lambda`` = division rate times the per-division loss of the target
      (``blast.cd19_loss_per_division`` for CD19, ``blast.cd22_loss_per_division``
      for CD22; 0 for a dual CAR, which needs both lost);
    * ``q = relapse.reservoir_kill_per_day`` per 1e9 tissue CAR-T, times the
      steroid activation factor ``f_act``: mass action, since sanctuary blasts
      meet CAR-T cells less often than marrow blasts do;
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

Serum IL-6 ``I`` [pg/mL]
    ::

        dI/dt = k_el I_0 + c P X (1 + g I / (I + K_M)) - k_el (1 - r_R b) I

    * ``X = a sum_i delta^i E_t^i / 1e9``: antigen-activated effectors
      [1e9 cells], those that have divided ``i`` times weighted by
      ``delta^i`` (``delta = serum.il6_division_decay``: repeated stimulation
      cuts cytokine secretion, so IL-6 rises less steeply than the pool and
      fever comes days before its peak, as in the clinic);
      ``P = serum.il6_production_pg_ml_per_day`` [pg/mL/d per 1e9 cells];
    * myeloid amplification: up to ``g = serum.myeloid_amplification`` times
      more, half maximal at ``K_M = serum.myeloid_half_il6_pg_ml``. It is
      self-reinforcing (IL-6 recruits more IL-6) but capped and still
      proportional to T-cell activation, so it stops when antigen is gone.
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

CRS surrogate (ASTCT 2019, Lee 2019 Biol Blood Marrow Transplant 25:625)
    The IL-6 *signal* ``S = max(I - I_0, 0) (1 - b)`` [pg/mL] drives three
    physiological surrogates:

    * temperature [C] ``T = 37 + 3 S / (S + 2 S_1)``: 38.0 C exactly at ``S = S_1``
      (``crs.fever_il6_pg_ml``), at most 40 C;
    * hypotension and hypoxia share one severity level: 0 below ``S_2``;
      1 (hypotension on fluids, low-flow oxygen) from ``S_2``; 2 (one
      vasopressor, high-flow oxygen) from ``S_3``; 3 (several vasopressors,
      positive pressure) from ``S_4`` (``crs.grade2/3/4_il6_pg_ml``);
    * grade: 0 without fever; 1 fever alone; 2, 3, 4 fever plus severity level
      1, 2, 3. As in ASTCT, once tocilizumab or steroids have been given
      fever is no longer required (they mask it), and the grade follows
      hypotension and hypoxia.

    Simplification: hypotension and hypoxia move together, so the model
    cannot produce isolated hypoxic CRS. The thresholds are assumptions to be
    calibrated against ELIANA/real-world grade distributions (issue 4).

ICANS surrogate (ASTCT ICE score)
    A neurotoxic effect compartment ``C`` [pg/mL] follows the serum IL-6
    excess with a mean delay ``tau = icans.delay_days``::

        dC/dt = (h max(I - I_0, 0) - C) / tau

    with ``h = therapy.steroid_icans_factor`` on steroids (else 1). It is
    driven by serum IL-6, *not* by the blocked signal: tocilizumab does not
    prevent ICANS (poor CNS penetration) and the serum rise it causes even
    feeds it. ICE score = ``round(10 / (1 + (C / K_ICE)^n))``
    (``icans.ice_half_il6_pg_ml``, ``n = icans.ice_hill``); grade 0 for ICE 10, 1 for 7-9, 2 for 3-6,
    3 for 0-2, 4 when ``C >= u K_ICE 19^(1/n)`` (unarousable: ``u =
    icans.unarousable_factor`` times the level at which ICE reaches 0, so
    that grade 3 always comes first). Seizures, motor weakness and cerebral oedema (other ASTCT ICANS
    domains) are not modelled. Thresholds are assumptions (issue 4).

Therapy (checked at the end of every step, acting from the next one)
    * tocilizumab when the CRS grade is at least ``therapy.tocilizumab_grade``
      (0: never), repeated at least ``therapy.tocilizumab_redose_h`` apart
      while CRS stays there, at most ``therapy.tocilizumab_max_doses``; each
      dose blocks for ``therapy.tocilizumab_duration_days``;
    * corticosteroids when CRS or ICANS reaches ``therapy.steroids_grade``
      (0: never), until ``therapy.steroid_duration_days`` after the last
      moment either was at the trigger. On steroids
      ``Controls.proliferation_factor = therapy.steroid_proliferation_factor``
      and ``Controls.activation_factor = therapy.steroid_activation_factor``
      (window and body), IL-6 production and the ICANS drive are damped.

Numerics
    Classical fourth-order Runge-Kutta with sub-steps of at most 15 min and
    at most ``0.5 /`` the fastest rate, so that every decay stays positive
    and stable; inputs (stimulation, factors, blockade) are constant within a
    step, taken at its start.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from abm.errors import ParamError, SimulationError
from abm.params import Params
from abm.rates import MINUTES_PER_DAY
from kernels.rng import TWO32

UL_PER_ML = 1000.0
HOURS_PER_DAY = 24.0
BILLION = 1e9
FEVER_C = 38.0
MAX_SUBSTEP_DAY = 15.0 / MINUTES_PER_DAY

# indices of the ODE state vector (RP, RN: reservoir blasts with and without the product's target [cells]);
# the effector stages follow: E_b^0..E_b^K from E0, then E_t^0..E_t^K (Body.blood_e, Body.tissue_e)
MB, MT, IL6, NEURO, RP, RN = range(6)
E0 = 6
# a reservoir compartment below this many cells is a whole number of cells with random births and deaths
# (assumption: demographic noise is ~3 % at 1000 cells, so the deterministic equations take over there)
STOCHASTIC_CELLS = 1000.0
RESERVOIR_STREAM = 0x5E5E  # spawn key of the reservoir's generator (Body.rng)
ICE_ZERO = 19.0  # (C / K)^n from which round(10 / (1 + (C / K)^n)) is 0


@dataclass
class WindowReadout:
    """What the window tells the body, refreshed about hourly (piecewise constant in between)."""

    cd19_cells: int  # blasts + normal B cells in the window carrying the product's target (CD19+ for a CD19 CAR)
    blasts: int  # all blasts (CD19+ and CD19-)
    nucleated: int  # blasts + B cells + other hematopoietic cells in the window
    cart: int  # CAR-T cells in the window
    cart_active: int  # activated CAR-T cells in the window
    il6_mean_pg_ml: float  # mean IL-6 of the window's marrow field
    kills: int  # cumulative CAR-T kills in the window


@dataclass
class Controls:
    """What the body imposes on the lattice kernels."""

    proliferation_factor: float  # multiplies CAR-T proliferation hazard (steroids < 1)
    activation_factor: float  # multiplies attach/kill hazards (steroids < 1)


def target_negative_share(p: Params) -> float:
    """Expected share of the patient's blasts without the product's target at infusion.

    The marrow draws each blast's CD19 and CD22 negativity independently
    (:func:`abm.marrow.build_window`), so a dual CAR misses ``f19 f22`` of
    them.
    """
    f19, f22 = p.patient.cd19_negative_fraction, p.patient.cd22_negative_fraction
    return {"CD19": f19, "CD22": f22}.get(p.product.target, f19 * f22)


def check_body_params(p: Params) -> None:
    """Raise :class:`ParamError` if the body parameters are inconsistent with each other."""
    crs = [p["crs.fever_il6_pg_ml"], p["crs.grade2_il6_pg_ml"], p["crs.grade3_il6_pg_ml"], p["crs.grade4_il6_pg_ml"]]
    if any(b <= a for a, b in itertools.pairwise(crs)):
        raise ParamError(
            f"crs.fever_il6_pg_ml, crs.grade2_il6_pg_ml, crs.grade3_il6_pg_ml, crs.grade4_il6_pg_ml = "
            f"{', '.join(f'{v:g}' for v in crs)}: expected strictly increasing thresholds"
        )


def crs_surrogates(signal: float, thresholds: tuple[float, float, float, float]) -> tuple[float, int]:
    """Temperature [C] and hypotension/hypoxia severity level (0-3) for an IL-6 signal [pg/mL].

    ``thresholds`` are the signals of fever (38.0 C) and of severity levels
    1, 2 and 3 (fluids / low-flow oxygen; one vasopressor / high-flow oxygen;
    several vasopressors / positive pressure).
    """
    fever_at, *severe_at = thresholds
    temperature = 37.0 + 3.0 * signal / (signal + 2.0 * fever_at)
    return temperature, sum(signal >= s for s in severe_at)


def astct_crs_grade(temperature: float, severity: int, masked: bool) -> int:
    """ASTCT 2019 CRS grade from temperature, severity level and whether treatment masks fever."""
    fever = temperature >= FEVER_C
    if severity > 0 and (fever or masked):
        return 1 + severity
    return 1 if fever else 0


def icans_surrogate(effect: float, ice_half: float, unarousable: float, hill: float = 2.0) -> tuple[int, int]:
    """ICE score (0-10) and ASTCT ICANS grade (0-4) for an effect-compartment level [pg/mL]."""
    if effect >= unarousable:
        return 0, 4
    ice = int(math.floor(10.0 / (1.0 + (effect / ice_half) ** hill) + 0.5))
    return ice, 0 if ice == 10 else 1 if ice >= 7 else 2 if ice >= 3 else 3


class Body:
    """The patient outside the window: CAR-T pools, serum IL-6, CRS, ICANS and therapy.

    Parameters
    ----------
    params : Params
        The run's parameters.
    window_capacity : int
        Sites of the window that can hold a cell (sets ``window_share``).
    n_portals : int
        Perivascular entry sites of the window (guards the entry quota).
    seed : int
        The run's seed (the reservoir's small-number noise).
    """

    def __init__(self, params: Params, window_capacity: int, n_portals: int, seed: int = 0):
        check_body_params(params)
        if window_capacity <= 0:
            raise SimulationError(f"window_capacity = {window_capacity}: expected a window with marrow sites")
        p = params
        weight = p.patient.weight_kg
        cd28 = p.product.costimulation == "CD28"
        self.window_share = window_capacity / (p.patient.marrow_cells_per_kg * weight)
        self.n_portals = int(n_portals)
        self.dose_cells = p.product.dose_per_kg * weight
        self.schedule = list(zip(p.schedule.days, p.schedule.fractions, strict=True))
        self.hold_grade = p.schedule.hold_crs_grade
        self.memory_fraction = p.cart.memory_fraction
        self.blood_ul = p.traffic.blood_volume_ml_per_kg * weight * UL_PER_ML
        self.k_home = p.body.marrow_homing_rate_per_day
        self.marrow_share = p.body.marrow_share
        self.k_bt = p.traffic.marrow_entry_rate_per_day + p.traffic.blood_loss_rate_per_day
        f_b = p.body.blood_fraction
        self.k_tb = self.k_bt * f_b / (1.0 - f_b)
        self.rho = p.cart.proliferation_rate_per_day * (p.costim.cd28_proliferation_factor if cd28 else 1.0)
        self.boost = p.lymphodepletion.proliferation_boost if p.lymphodepletion.enabled else 1.0
        self.boost_days = p.lymphodepletion.boost_days
        self.d_e = p.cart.death_rate_per_day
        self.d_m = p.cart.memory_death_rate_per_day
        self.mu = p.cart.memory_conversion_per_day * (p.costim.cd28_memory_factor if cd28 else 1.0)
        self.r_m = p.body.memory_reactivation_per_day
        self.max_divs = p.cart.max_divisions
        self.blood_e = slice(E0, E0 + self.max_divs + 1)
        self.tissue_e = slice(E0 + self.max_divs + 1, E0 + 2 * (self.max_divs + 1))
        self.n_state = E0 + 2 * (self.max_divs + 1)
        self.reservoir_fraction = p.relapse.reservoir_fraction
        self.reservoir_room = p.relapse.reservoir_fraction * p.patient.marrow_cells_per_kg * weight
        self.reservoir_kill = p.relapse.reservoir_kill_per_day / BILLION
        self.reseed = p.relapse.reseed_rate_per_day
        self.blast_division = p.blast.division_rate_per_day
        self.blast_growth = p.blast.division_rate_per_day - p.blast.death_rate_per_day
        target = p.product.target
        self.loss_per_division = (p.blast.cd19_loss_per_division if target == "CD19" else
                                  p.blast.cd22_loss_per_division if target == "CD22" else 0.0)
        self.target_loss = p.blast.division_rate_per_day * self.loss_per_division
        self.negative_share = target_negative_share(p)
        self.k_a = p.body.antigen_half_saturation_cells
        self.il6_0 = p.serum.il6_baseline_pg_ml
        self.k_el = math.log(2.0) / (p.serum.il6_half_life_h / HOURS_PER_DAY)
        self.il6_prod = p.serum.il6_production_pg_ml_per_day
        self.il6_weights = tuple(p.serum.il6_division_decay ** i for i in range(self.max_divs + 1))
        self.gain = p.serum.myeloid_amplification
        self.k_m = p.serum.myeloid_half_il6_pg_ml
        self.r_rec = p.serum.receptor_clearance_fraction
        self.crs_thresholds = (p.crs.fever_il6_pg_ml, p.crs.grade2_il6_pg_ml, p.crs.grade3_il6_pg_ml,
                               p.crs.grade4_il6_pg_ml)
        self.tau = p.icans.delay_days
        self.k_ice = p.icans.ice_half_il6_pg_ml
        self.ice_hill = p.icans.ice_hill
        self.unarousable = p.icans.unarousable_factor * self.k_ice * ICE_ZERO ** (1.0 / self.ice_hill)
        t = p.therapy
        self.toci_grade = t.tocilizumab_grade
        self.toci_blockade = t.tocilizumab_blockade
        self.toci_days = t.tocilizumab_duration_days
        self.toci_redose_days = t.tocilizumab_redose_h / HOURS_PER_DAY
        self.toci_max = t.tocilizumab_max_doses
        self.steroids_grade = t.steroids_grade
        self.steroid_days = t.steroid_duration_days
        self.steroid_prolif = t.steroid_proliferation_factor
        self.steroid_act = t.steroid_activation_factor
        self.steroid_cyto = t.steroid_cytokine_factor
        self.steroid_icans = t.steroid_icans_factor
        fastest = max(self.k_el, self.k_bt + self.k_tb, self.rho * self.boost + self.d_e + self.mu,
                      self.r_m, 1.0 / self.tau, 1e-12)
        self.max_substep = min(MAX_SUBSTEP_DAY, 0.5 / fastest)
        # dynamic state
        self.y = [0.0] * self.n_state
        self.y[IL6] = self.il6_0
        self.t_day = 0.0
        self.infused = 0.0
        self.given = 0
        self.held = 0  # fractions withheld for CRS (schedule.hold_crs_grade)
        self.antigen = 0.0
        self.reservoir_seeded = False
        self.rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(RESERVOIR_STREAM,)))
        self.toci_doses = 0
        self.toci_last: float | None = None
        self.steroids_until: float | None = None
        self.steroids_given = False
        self.crs_peak = 0  # highest CRS grade at any step so far (observations are hours apart)
        self.icans_peak = 0
        self._grade()

    # -- time stepping -----------------------------------------------------------
    def advance(self, t_day: float, dt_day: float, readout: WindowReadout) -> int:
        """Infusions due, integrate the body ODEs over ``dt_day``, update CRS/ICANS/therapy.

        Returns this step's CAR-T entry quota for the window: the expected
        number of entries during the step times ``2**32``, rounded.
        """
        if dt_day < 0 or not math.isfinite(dt_day):
            raise SimulationError(f"dt_day = {dt_day!r}: expected a finite, non-negative step")
        if readout.cd19_cells < 0:
            raise SimulationError(f"window readout has {readout.cd19_cells} CD19+ cells at day {t_day:g}")
        while self.given < len(self.schedule) and self.schedule[self.given][0] <= t_day + 1e-12:
            if self.given > 0 and self.hold_grade > 0 and self.crs_grade >= self.hold_grade:
                self.held += 1  # schedule.hold_crs_grade: this fraction is not given (Frey 2020)
                self.given += 1
                continue
            dose = self.dose_cells * self.schedule[self.given][1]
            self.y[E0] += dose * (1.0 - self.memory_fraction)  # E_b^0
            self.y[MB] += dose * self.memory_fraction
            self.infused += dose
            self.given += 1
        if not self.reservoir_seeded:
            reservoir = self.reservoir_fraction * readout.blasts / self.window_share
            self.y[RP] = reservoir * (1.0 - self.negative_share)
            self.y[RN] = reservoir * self.negative_share
            self.reservoir_seeded = True
        self.antigen = readout.cd19_cells / self.window_share + self.y[RP]
        self.t_day = t_day
        rates = self._rates(t_day)
        # the reservoir's killing hazard grows with the pool: keep RK4 within its stable range for it too
        kill_now = self.reservoir_kill * (self.effectors_tissue + self.y[MT])
        n = max(1, math.ceil(dt_day / min(self.max_substep, 0.5 / max(kill_now, 1e-12)) - 1e-9))
        h = dt_day / n
        before = (self.y[RP], self.y[RN])
        for _ in range(n):
            self.y = _rk4(self.y, h, rates)
        if min(before) < STOCHASTIC_CELLS:
            self._small_reservoir(before, n, h, kill_now * self.controls().activation_factor)
        self.t_day = t_day + dt_day
        self._grade()
        self._treat()
        target = self.marrow_share * (self.effectors_tissue + self.y[MT]) * self.window_share
        expected = self.k_home * max(0.0, target - readout.cart) * dt_day
        if self.n_portals == 0:
            return 0
        if expected > self.n_portals:
            raise SimulationError(
                f"blood traffic asks {expected:.1f} entries into the window in one step at day {t_day:g}, more than "
                f"its {self.n_portals} perivascular sites; lower time.dt_min or raise grid.sinusoid_fraction"
            )
        return int(round(expected * TWO32))

    def _small_reservoir(self, before: tuple[float, float], n: int, h: float, kill: float) -> None:
        """Replace the equations' result for reservoir compartments below :data:`STOCHASTIC_CELLS` cells.

        ``before`` is (``R_+``, ``R_-``) at the start of the step, ``n`` sub-steps of ``h`` days, ``kill``
        the killing hazard of ``R_+`` cells [1/d]; hazards are those of the step's start (see the module
        docstring, "Small numbers").
        """
        room_growth = (self.blast_growth * (1.0 - sum(before) / self.reservoir_room)
                       if self.reservoir_room > 0.0 else 0.0)
        leave = max(self.blast_division - room_growth, 0.0) + self.reseed  # natural exits and homing [1/d]
        pos, neg = (self._whole(v) if v < STOCHASTIC_CELLS else None for v in before)
        rng, birth = self.rng, self.blast_division * h
        for _ in range(n):
            lost = 0
            if pos is None:  # a large R+ feeds a small R-
                lost = int(rng.poisson(self.target_loss * before[0] * h)) if self.target_loss > 0.0 else 0
            elif pos > 0:
                born = int(rng.poisson(birth * pos))
                lost = int(rng.binomial(born, self.loss_per_division)) if born and self.loss_per_division else 0
                pos = int(rng.binomial(pos, math.exp(-(leave + kill) * h))) + born - lost
            if neg is not None and (neg > 0 or lost > 0):
                survivors = int(rng.binomial(neg, math.exp(-leave * h))) if neg else 0
                neg = survivors + (int(rng.poisson(birth * neg)) if neg else 0) + lost
        if pos is not None:
            self.y[RP] = float(pos)
        if neg is not None:
            self.y[RN] = float(neg)

    def _whole(self, cells: float) -> int:
        """``cells`` rounded up with probability its fractional part (a whole number with the same mean)."""
        whole = math.floor(cells)
        frac = cells - whole
        return int(whole) + (1 if frac > 0.0 and self.rng.random() < frac else 0)

    def _rates(self, t_day: float) -> tuple[float, ...]:
        ctl = self.controls()
        stim = self.antigen / (self.antigen + self.k_a)
        rho = self.rho * ctl.proliferation_factor * (self.boost if t_day < self.boost_days else 1.0)
        act = stim * ctl.activation_factor
        on_steroids = self._steroids_on(t_day)
        cyto = self.steroid_cyto if on_steroids else 1.0
        neuro = self.steroid_icans if on_steroids else 1.0
        k_clear = self.k_el * (1.0 - self.r_rec * self._blockade(t_day))
        return (self.k_bt, self.k_tb, self.d_e, self.mu, self.d_m, rho * stim, self.mu * (1.0 - stim),
                self.r_m * act, act / BILLION * self.il6_prod * cyto, self.gain, self.k_m,
                self.k_el * self.il6_0, k_clear, self.il6_0, neuro, 1.0 / self.tau, self.blast_growth,
                self.reservoir_room, self.target_loss, self.reservoir_kill * ctl.activation_factor, self.reseed,
                self.max_divs, self.il6_weights)

    def reseeding(self, dt_day: float) -> tuple[int, int]:
        """Reservoir blasts homing to the window this step: (entry quota, negative threshold).

        The quota is the expected number of entries times ``2**32``; the
        threshold the probability (times ``2**32``) that an entering blast
        lacks the product's target.
        """
        total = self.y[RP] + self.y[RN]
        if total <= 0.0 or self.n_portals == 0:
            return 0, 0
        expected = self.reseed * total * self.window_share * dt_day
        return int(round(expected * TWO32)), int(round(self.y[RN] / total * TWO32))

    # -- clinical state ------------------------------------------------------------
    def _blockade(self, t_day: float) -> float:
        if self.toci_last is None or t_day >= self.toci_last + self.toci_days:
            return 0.0
        return self.toci_blockade

    def _steroids_on(self, t_day: float) -> bool:
        return self.steroids_until is not None and t_day < self.steroids_until

    def _grade(self) -> None:
        """Physiological surrogates and ASTCT grades from the state at ``t_day``."""
        excess = max(self.y[IL6] - self.il6_0, 0.0)
        self.signal = excess * (1.0 - self._blockade(self.t_day))
        self.temperature, self.severity = crs_surrogates(self.signal, self.crs_thresholds)
        masked = self.toci_doses > 0 or self.steroids_given
        self.crs_grade = astct_crs_grade(self.temperature, self.severity, masked)
        self.ice, self.icans_grade = icans_surrogate(self.y[NEURO], self.k_ice, self.unarousable, self.ice_hill)
        self.crs_peak = max(self.crs_peak, self.crs_grade)
        self.icans_peak = max(self.icans_peak, self.icans_grade)

    def _treat(self) -> None:
        t = self.t_day
        if (
            self.toci_grade > 0
            and self.crs_grade >= self.toci_grade
            and self.toci_doses < self.toci_max
            and (self.toci_last is None or t - self.toci_last >= self.toci_redose_days - 1e-12)
        ):
            self.toci_doses += 1
            self.toci_last = t
        if self.steroids_grade > 0 and max(self.crs_grade, self.icans_grade) >= self.steroids_grade:
            self.steroids_until = t + self.steroid_days
            self.steroids_given = True

    def controls(self) -> Controls:
        """Factors the kernels apply now (steroids suppress CAR-T proliferation and activation)."""
        if self._steroids_on(self.t_day):
            return Controls(self.steroid_prolif, self.steroid_act)
        return Controls(1.0, 1.0)

    # -- observation -----------------------------------------------------------------
    @property
    def effectors_blood(self) -> float:
        """Effector CAR-T cells in blood, all division stages [cells]."""
        return math.fsum(self.y[self.blood_e])

    @property
    def effectors_tissue(self) -> float:
        """Effector CAR-T cells in tissue, all division stages [cells]."""
        return math.fsum(self.y[self.tissue_e])

    @property
    def blood_cells(self) -> float:
        """CAR-T cells in blood [cells]."""
        return self.effectors_blood + self.y[MB]

    def blood_memory_fraction(self) -> float:
        """Fraction of blood CAR-T cells with a memory phenotype (of the cells entering the window)."""
        total = self.blood_cells
        return self.y[MB] / total if total > 0 else self.memory_fraction

    def observe(self) -> dict[str, float]:
        """Body-level observables (JSON-able numbers).

        ``blood_cart_per_ul`` [cells/uL], ``blood_cart_memory_fraction`` [-],
        ``body_cart_cells``, ``body_cart_memory_cells``, ``cart_infused_cells``,
        ``reservoir_target_pos_cells``, ``reservoir_target_neg_cells`` (the
        residual disease outside the window),
        ``body_cart_terminal_fraction`` (the share of effectors that have
        made all ``cart.max_divisions`` divisions),
        ``body_cd19_cells`` (the load A) [cells], ``serum_il6_pg_ml``,
        ``il6_signal_pg_ml`` (after blockade), ``icans_effect_pg_ml`` [pg/mL],
        ``temperature_c`` [C], ``vasopressors`` (0 none, 1 one, 2 several),
        ``oxygen_support`` (0 none, 1 low-flow, 2 high-flow, 3 positive
        pressure), ``crs_grade``, ``icans_grade`` (ASTCT 0-4), ``crs_grade_max``,
        ``icans_grade_max`` (the highest grade at any step so far, so that a
        grade held for less than an observation interval is not missed),
        ``ice_score`` (0-10), ``tocilizumab_doses``, ``tocilizumab_blockade`` [-],
        ``steroids_on`` (0/1).
        """
        y = self.y
        effectors = self.effectors_blood + self.effectors_tissue
        terminal = y[self.blood_e.stop - 1] + y[self.tissue_e.stop - 1]
        return {
            "blood_cart_per_ul": self.blood_cells / self.blood_ul,
            "blood_cart_memory_fraction": self.blood_memory_fraction(),
            "body_cart_cells": effectors + y[MB] + y[MT],
            "body_cart_memory_cells": y[MB] + y[MT],
            "cart_infused_cells": self.infused,
            "reservoir_target_pos_cells": y[RP],
            "reservoir_target_neg_cells": y[RN],
            "body_cart_terminal_fraction": terminal / effectors if effectors > 0 else 0.0,
            "body_cd19_cells": self.antigen,
            "serum_il6_pg_ml": y[IL6],
            "il6_signal_pg_ml": self.signal,
            "icans_effect_pg_ml": y[NEURO],
            "temperature_c": self.temperature,
            "vasopressors": max(self.severity - 1, 0),
            "oxygen_support": self.severity,
            "crs_grade": self.crs_grade,
            "crs_grade_max": self.crs_peak,
            "ice_score": self.ice,
            "icans_grade": self.icans_grade,
            "icans_grade_max": self.icans_peak,
            "tocilizumab_doses": self.toci_doses,
            "tocilizumab_blockade": self._blockade(self.t_day),
            "steroids_on": int(self._steroids_on(self.t_day)),
        }

    # -- checkpoints -------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-able state; :meth:`restore` continues bit for bit."""
        return {
            "y": list(self.y),
            "t_day": self.t_day,
            "infused": self.infused,
            "given": self.given,
            "held": self.held,
            "antigen": self.antigen,
            "reservoir_seeded": self.reservoir_seeded,
            "rng": self.rng.bit_generator.state,
            "toci_doses": self.toci_doses,
            "toci_last": self.toci_last,
            "steroids_until": self.steroids_until,
            "steroids_given": self.steroids_given,
            "crs_peak": self.crs_peak,
            "icans_peak": self.icans_peak,
        }

    def restore(self, state: dict[str, Any]) -> None:
        y = [float(v) for v in state["y"]]
        if len(y) != self.n_state:
            raise SimulationError(f"body state has {len(y)} variables; this version with cart.max_divisions = "
                                  f"{self.max_divs} has {self.n_state}")
        self.y = y
        self.t_day = float(state["t_day"])
        self.infused = float(state["infused"])
        self.given = int(state["given"])
        self.held = int(state.get("held", 0))  # checkpoints from before schedule.hold_crs_grade have none
        self.antigen = float(state["antigen"])
        self.reservoir_seeded = bool(state["reservoir_seeded"])
        if "rng" in state:  # checkpoints from before the small-number reservoir have no generator state
            self.rng.bit_generator.state = state["rng"]
        self.toci_doses = int(state["toci_doses"])
        self.toci_last = None if state["toci_last"] is None else float(state["toci_last"])
        self.steroids_until = None if state["steroids_until"] is None else float(state["steroids_until"])
        self.steroids_given = bool(state["steroids_given"])
        # checkpoints from before the running maxima have none: the grades from then on are kept
        self.crs_peak = int(state.get("crs_peak", 0))
        self.icans_peak = int(state.get("icans_peak", 0))
        self._grade()


def _derivative(y: list[float], r: tuple[float, ...]) -> list[float]:
    (k_bt, k_tb, d_e, mu, d_m, div, mu_rest, recall, prod, gain, k_m, base, k_clear, il6_0, neuro, k_tau,
     growth, room, loss, kill, reseed, k, il6_weights) = r
    mb, mt, il6, c, rp, rn = y[:E0]
    eb = y[E0:E0 + k + 1]
    et = y[E0 + k + 1:]
    out = [0.0] * len(y)
    to_memory_b = to_memory_t = 0.0
    for i in range(k + 1):
        exchange = k_tb * et[i] - k_bt * eb[i]
        if i < k:
            out[E0 + i] = exchange - (d_e + mu) * eb[i]
            tissue = -exchange - (d_e + div + mu_rest) * et[i]
            to_memory_b += eb[i]
            to_memory_t += et[i]
        else:  # at the division limit: no division, no memory
            out[E0 + i] = exchange - d_e * eb[i]
            tissue = -exchange - d_e * et[i]
        out[E0 + k + 1 + i] = tissue + (2.0 * div * et[i - 1] if i > 0 else recall * mt)
    effectors_t = math.fsum(et)
    producing = math.fsum(w * e for w, e in zip(il6_weights, et, strict=True))  # division-weighted, for IL-6
    excess = il6 - il6_0 if il6 > il6_0 else 0.0
    room_growth = growth * (1.0 - (rp + rn) / room) if room > 0.0 else 0.0  # reservoir blasts, logistic
    out[MB] = -k_bt * mb + k_tb * mt + mu * to_memory_b - d_m * mb
    out[MT] = k_bt * mb - k_tb * mt + mu_rest * to_memory_t - d_m * mt - recall * mt
    out[IL6] = base + prod * producing * (1.0 + gain * il6 / (il6 + k_m)) - k_clear * il6
    out[NEURO] = (neuro * excess - c) * k_tau
    out[RP] = (room_growth - loss - kill * (effectors_t + mt) - reseed) * rp
    out[RN] = room_growth * rn + loss * rp - reseed * rn
    return out


def _rk4(y: list[float], h: float, r: tuple[float, ...]) -> list[float]:
    k1 = _derivative(y, r)
    k2 = _derivative([a + 0.5 * h * b for a, b in zip(y, k1, strict=True)], r)
    k3 = _derivative([a + 0.5 * h * b for a, b in zip(y, k2, strict=True)], r)
    k4 = _derivative([a + h * b for a, b in zip(y, k3, strict=True)], r)
    return [a + h / 6.0 * (b1 + 2.0 * b2 + 2.0 * b3 + b4) for a, b1, b2, b3, b4 in zip(y, k1, k2, k3, k4, strict=True)]
