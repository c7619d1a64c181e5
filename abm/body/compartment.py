"""The body compartment: :class:`Body`, which composes the body's parts and couples them with the window.

The marrow window is a lattice; the rest of the patient is this package: a
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
    :mod:`abm.body.reservoir`): a compartment of fewer than
    :data:`~abm.body.reservoir.STOCHASTIC_CELLS` cells is a
    whole number of cells with random births, deaths and losses, because
    whether the last sanctuary blasts die out or a first target-negative
    blast appears and survives is what separates cure from relapse, and a
    continuum of fractional cells can never go extinct. Its random numbers
    come from one ``numpy`` generator per run, seeded by the run's seed and
    :data:`~abm.body.reservoir.RESERVOIR_STREAM` and stored in
    :meth:`Body.state`; the body runs in Python on every backend, so the same seed and readouts give
    bit-identical results everywhere, and :meth:`Body.state`/
    :meth:`Body.restore` round-trip exactly.

Coupling with the window (per step of ``dt`` days)
    * in: :class:`WindowReadout`, refreshed by the model about hourly and
      piecewise constant in between. Only ``cd19_cells`` enters the
      equations: the body CD19+ load is ``A = cd19_cells / window_share + R_+``
      [cells], with ``window_share = window_capacity / (marrow_cells_per_kg *
      weight)``; with ``body.antigen_signal = "response"`` the window's
      ``target_signal`` (its target cells weighted by the CAR's response to
      their antigen density) stands for ``cd19_cells`` and ``R_+`` is weighted
      by the mean response over the patient's density distribution
      (:func:`abm.rates.mean_response`). CD19+ cells outside the marrow (lymph-node and splenic B
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
      stops the intake. And :class:`~abm.body.interventions.Controls`
      (steroid suppression of CAR-T proliferation and activation). Cells that leave the window do not
      return to the body pool: the window is a sample of the marrow, whose
      mean-field share of CAR-T is already in the pool. (Feeding the window
      from blood alone left it 20-fold sparser in CAR-T than the body pool it
      stands for, so the body kept expanding against antigen the window could
      not clear.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from abm.body import interventions, kinetics, reservoir, toxicity
from abm.body.interventions import Controls
from abm.body.kinetics import (
    BILLION,
    HOURS_PER_DAY,
    IL6,
    MB,
    MT,
    MY,
    NEURO,
    RESERVOIR,
    RK,
    RL,
    RM,
    RN,
    RP,
    UL_PER_ML,
    Rates,
)
from abm.body.reservoir import STOCHASTIC_CELLS
from abm.errors import SimulationError
from abm.rates import mean_response, signalling_fraction
from kernels import TWO32

if TYPE_CHECKING:
    from abm.params import Params


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
    # those cells weighted by the CAR's response to their antigen density (abm.rates.antigen_response); None: not read
    target_signal: float | None = None
    # the window's blasts' response to their target now over that before trogocytosis stripped it (1: none);
    # the reservoir's blasts are taken to be stripped alike, so it scales their killing
    stripped_response: float = 1.0
    # target cells the window's CAR-T cells killed a day over the last coupling interval (the danger signal)
    kills_per_day: float = 0.0


IL6_REFERENCE_WEIGHT_KG = 30.0  # serum.il6_production_pg_ml_per_day is that of a patient of this weight


class Body:
    """The patient outside the window: CAR-T pools, serum IL-6, CRS, ICANS and therapy.

    Parameters
    ----------
    params : Params
        The run's parameters (validated: :class:`abm.params.Params` checks the
        body parameters' consistency when it is built).
    window_capacity : int
        Sites of the window that can hold a cell (sets ``window_share``).
    n_portals : int
        Perivascular entry sites of the window (guards the entry quota).
    seed : int
        The run's seed (the reservoir's small-number noise).
    """

    def __init__(self, params: Params, window_capacity: int, n_portals: int, seed: int = 0):
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
        ld = p.lymphodepletion
        self.boost = ld.proliferation_boost if ld.enabled else 1.0
        self.boost_days = ld.boost_days
        self.consumed = ld.boost_shape == "consumed"
        self.k_surge = math.log(2.0) / ld.cytokine_half_life_days
        self.surge_uptake = ld.consumption_per_day / BILLION
        self.d_e = p.cart.death_rate_per_day
        self.d_m = p.cart.memory_death_rate_per_day
        self.mu = p.cart.memory_conversion_per_day * (p.costim.cd28_memory_factor if cd28 else 1.0)
        self.r_m = p.body.memory_reactivation_per_day
        self.max_divs = p.cart.max_divisions
        self.blood_e, self.tissue_e, self.n_state = kinetics.layout(self.max_divs)
        self.reservoir_fraction = p.relapse.reservoir_fraction
        self.reservoir_room = p.relapse.reservoir_fraction * p.patient.marrow_cells_per_kg * weight
        self.reservoir_kill = p.relapse.reservoir_kill_per_day / BILLION
        self.kill_scale = 1.0  # WindowReadout.stripped_response of the step
        self.transduced_blasts = p.product.transduced_blasts
        self.reseed = p.relapse.reseed_rate_per_day
        self.blast_division = p.blast.division_rate_per_day
        self.blast_growth = p.blast.division_rate_per_day - p.blast.death_rate_per_day
        self.loss_per_division = reservoir.target_loss_per_division(p)
        self.target_loss = p.blast.division_rate_per_day * self.loss_per_division
        self.switch_per_division = p.blast.lineage_switch_per_division if p.patient.kmt2a_rearranged else 0.0
        self.negative_share = reservoir.target_negative_share(p)
        self.k_a = p.body.antigen_half_saturation_cells
        self.c_t = p.body.targets_per_cart
        self.signal_weighted = p.body.antigen_signal == "response"
        self.reservoir_response = mean_response(p) if self.signal_weighted else 1.0
        self.il6_0 = p.serum.il6_baseline_pg_ml
        self.k_el = math.log(2.0) / (p.serum.il6_half_life_h / HOURS_PER_DAY)
        self.signalling = signalling_fraction(p)  # kinetic proofreading: cytokine output per activated cell
        self.il6_prod = p.serum.il6_production_pg_ml_per_day * self.signalling
        if p.serum.diluted_by_weight:
            self.il6_prod *= IL6_REFERENCE_WEIGHT_KG / weight
        self.il6_weights = tuple(p.serum.il6_division_decay ** i for i in range(self.max_divs + 1))
        self.gain = p.serum.myeloid_amplification
        self.k_m = p.serum.myeloid_half_il6_pg_ml
        self.r_rec = p.serum.receptor_clearance_fraction
        m = p.myeloid
        capacity = p.patient.monocytes_per_nl / m.monocytes_reference_per_nl  # kappa
        self.my_on, self.my_off, self.my_half = m.activation_per_day, m.resolution_per_day, m.half_drive_cells
        self.per_kill = 1.0 / m.half_drive_kills_per_day if m.half_drive_kills_per_day > 0 else 0.0  # 1 / K_K
        self.damp = 0.0  # F_w / K_K of the step
        self.my_il6, self.my_il1 = m.il6_pg_ml_per_day * capacity, m.il1_icans_pg_ml * capacity
        # endothelial susceptibility epsilon (exactly 1 at sensitivity 0)
        self.endothelium = (p.patient.ang2_ang1_ratio / p.icans.ang2_ang1_reference) ** p.icans.endothelial_sensitivity
        self.crp_0, self.crp_max, self.crp_half = p.serum.crp_baseline_mg_l, p.serum.crp_max_mg_l, \
            p.serum.crp_half_il6_pg_ml
        self.k_crp = math.log(2.0) / (p.serum.crp_half_life_h / HOURS_PER_DAY)
        self.crs_thresholds = (p.crs.fever_il6_pg_ml, p.crs.grade2_il6_pg_ml, p.crs.grade3_il6_pg_ml,
                               p.crs.grade4_il6_pg_ml)
        self.tau = p.icans.delay_days
        self.k_ice = p.icans.ice_half_il6_pg_ml
        self.ice_hill = p.icans.ice_hill
        self.unarousable = toxicity.unarousable_level(p.icans.unarousable_factor, self.k_ice, self.ice_hill)
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
        self.max_substep = kinetics.max_substep(self.k_el, self.k_bt + self.k_tb,
                                                self.rho * self.boost + self.d_e + self.mu, self.r_m, 1.0 / self.tau,
                                                self.my_on + self.my_off)
        # dynamic state
        self.y = [0.0] * self.n_state
        self.y[IL6] = self.il6_0
        self.t_day = 0.0
        self.infused = 0.0
        self.given = 0
        self.held = 0  # fractions withheld for CRS (schedule.hold_crs_grade)
        self.antigen = 0.0
        self.surge = 1.0 if ld.enabled else 0.0  # the homeostatic cytokine surge H ('consumed' shape)
        self.reservoir_seeded = False
        self.rng = reservoir.generator(seed)
        self.crp = self.crp_0  # serum CRP [mg/L], a marker of IL-6 signalling (it grades nothing)
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
        self._infuse(t_day)
        if not self.reservoir_seeded:
            self.y[RP], self.y[RN] = reservoir.initial(self.reservoir_fraction, readout.blasts, self.window_share,
                                                       self.negative_share)
            self.reservoir_seeded = True
        if self.signal_weighted:
            if readout.target_signal is None:
                raise SimulationError("body.antigen_signal = 'response' needs the window's target_signal readout")
            self.antigen = readout.target_signal / self.window_share + self.reservoir_response * self.y[RP]
        else:
            self.antigen = readout.cd19_cells / self.window_share + self.y[RP]
        self.t_day = t_day
        self.kill_scale = readout.stripped_response
        self.damp = readout.kills_per_day / self.window_share * self.per_kill
        rates = self._rates(t_day)
        # the reservoir's killing hazard grows with the pool: keep RK4 within its stable range for it too
        kill_now = self.reservoir_kill * self.kill_scale * (self.effectors_tissue + self.y[MT])
        n, h = kinetics.substeps(dt_day, self.max_substep, kill_now)
        before = tuple(self.y[i] for i in RESERVOIR)
        if self.consumed:  # exact over the step for the pool at its start
            pool = self.effectors_blood + self.effectors_tissue + self.y[MB] + self.y[MT]
            self.surge *= math.exp(-(self.k_surge + self.surge_uptake * pool) * dt_day)
        self.y = kinetics.integrate(self.y, n, h, rates)
        self._crp(dt_day)
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

    def _infuse(self, t_day: float) -> None:
        """Give (or hold, on CRS) the schedule's fractions due by ``t_day``."""
        while self.given < len(self.schedule) and self.schedule[self.given][0] <= t_day + 1e-12:
            if interventions.dose_held(self.given, self.hold_grade, self.crs_grade):
                self.held += 1  # schedule.hold_crs_grade: this fraction is not given (Frey 2020)
                self.given += 1
                continue
            fraction = self.schedule[self.given][1]
            dose = self.dose_cells * fraction
            kinetics.infuse(self.y, dose, self.memory_fraction)
            self.y[RK] += self.transduced_blasts * fraction  # masked blasts of the product: into the reservoir
            self.infused += dose
            self.given += 1

    def _small_reservoir(self, before: tuple[float, ...], n: int, h: float, kill: float) -> None:
        """Replace the equations' result for reservoir compartments below ``STOCHASTIC_CELLS`` cells.

        ``before`` is (``R_+``, ``R_mut``, ``R_pre``, ``R_lin``, ``R_mask``) at the start of the step, ``n``
        sub-steps of ``h`` days, ``kill`` the killing hazard of ``R_+`` cells [1/d] (see
        :func:`abm.body.reservoir.small_numbers`).
        """
        cells = reservoir.small_numbers(
            self.rng, before, n, h, kill, division=self.blast_division, growth=self.blast_growth,
            room=self.reservoir_room, reseed=self.reseed, target_loss=self.target_loss,
            loss_per_division=self.loss_per_division, switch_per_division=self.switch_per_division,
        )
        for index, value in zip(RESERVOIR, cells, strict=True):
            if value is not None:
                self.y[index] = float(value)

    def _rates(self, t_day: float) -> Rates:
        ctl = self.controls()
        competing = self.c_t * (self.effectors_tissue + self.y[MT]) if self.c_t > 0 else 0.0
        stim = self.antigen / (self.antigen + self.k_a + competing)
        rho = self.rho * ctl.proliferation_factor * self.homeostatic_boost(t_day)
        act = stim * ctl.activation_factor
        on_steroids = self._steroids_on(t_day)
        cyto = self.steroid_cyto if on_steroids else 1.0
        neuro = (self.steroid_icans if on_steroids else 1.0) * self.endothelium
        k_clear = self.k_el * (1.0 - self.r_rec * self._blockade(t_day))
        return Rates(self.k_bt, self.k_tb, self.d_e, self.mu, self.d_m, rho * stim, self.mu * (1.0 - stim),
                     self.r_m * act, act / BILLION * self.il6_prod * cyto, self.gain, self.k_m,
                     self.k_el * self.il6_0, k_clear, self.il6_0, neuro, 1.0 / self.tau, self.blast_growth,
                     self.reservoir_room, self.target_loss,
                     self.reservoir_kill * self.kill_scale * ctl.activation_factor, self.reseed,
                     act * self.signalling / self.my_half, self.my_on, self.my_off, self.my_il6 * cyto,
                     self.my_il1 * neuro, self.blast_division * self.switch_per_division, self.damp,
                     self.per_kill, self.max_divs, self.il6_weights)

    def _crp(self, dt_day: float) -> None:
        """CRP over the step, exactly, with the IL-6 signal ``S`` of its start held.

        It relaxes at its half-life towards ``crp_0 + crp_max S / (S + K)``
        (hepatic synthesis follows IL-6 receptor signalling).
        """
        target = self.crp_0 + self.crp_max * self.signal / (self.signal + self.crp_half)
        self.crp = target + (self.crp - target) * math.exp(-self.k_crp * dt_day)

    def homeostatic_boost(self, t_day: float) -> float:
        """Multiplier of CAR-T proliferation from lymphodepletion now (``lymphodepletion.boost_shape``)."""
        if self.consumed:
            return 1.0 + (self.boost - 1.0) * self.surge
        return self.boost if t_day < self.boost_days else 1.0

    def reseeding(self, dt_day: float) -> tuple[int, int, int, int, int]:
        """Reservoir blasts homing to the window this step: the entry quota and the route thresholds.

        See :func:`abm.body.reservoir.reseeding`.
        """
        return reservoir.reseeding(*(self.y[i] for i in RESERVOIR), self.reseed, self.window_share, self.n_portals,
                                   dt_day)

    # -- clinical state ------------------------------------------------------------
    def _blockade(self, t_day: float) -> float:
        return interventions.blockade(t_day, self.toci_last, self.toci_days, self.toci_blockade)

    def _steroids_on(self, t_day: float) -> bool:
        return interventions.steroids_on(t_day, self.steroids_until)

    def _grade(self) -> None:
        """Physiological surrogates and ASTCT grades from the state at ``t_day``."""
        (self.signal, self.temperature, self.severity, self.crs_grade, self.ice,
         self.icans_grade) = toxicity.grade(self.y[IL6], self.y[NEURO], self.il6_0, self._blockade(self.t_day),
                                            self.toci_doses > 0 or self.steroids_given, self.crs_thresholds,
                                            self.k_ice, self.unarousable, self.ice_hill)
        self.crs_peak = max(self.crs_peak, self.crs_grade)
        self.icans_peak = max(self.icans_peak, self.icans_grade)

    def _treat(self) -> None:
        t = self.t_day
        if interventions.tocilizumab_due(t, self.crs_grade, self.toci_grade, self.toci_doses, self.toci_max,
                                         self.toci_last, self.toci_redose_days):
            self.toci_doses += 1
            self.toci_last = t
        if interventions.steroids_due(self.crs_grade, self.icans_grade, self.steroids_grade):
            self.steroids_until = t + self.steroid_days
            self.steroids_given = True

    def controls(self) -> Controls:
        """Factors the kernels apply now (steroids suppress CAR-T proliferation and activation)."""
        return interventions.controls(self._steroids_on(self.t_day), self.steroid_prolif, self.steroid_act)
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
        ``body_cd19_cells`` (the load A) [cells], ``homeostatic_boost`` (the
        lymphodepletion multiplier of CAR-T proliferation now) [-], ``myeloid_activation`` (the
        activated fraction of the myeloid compartment) [-], ``serum_il6_pg_ml``,
        ``il6_signal_pg_ml`` (after blockade), ``icans_effect_pg_ml`` [pg/mL],
        ``crp_mg_l`` (serum CRP, a marker of IL-6 signalling) [mg/L],
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
            "reservoir_target_neg_cells": y[RM] + y[RN] + y[RL] + y[RK],
            "reservoir_route_preexisting_cells": y[RN],
            "reservoir_route_mutation_cells": y[RM],
            "reservoir_route_lineage_cells": y[RL],
            "reservoir_route_masking_cells": y[RK],
            "body_cart_terminal_fraction": terminal / effectors if effectors > 0 else 0.0,
            "body_cd19_cells": self.antigen,
            "homeostatic_boost": self.homeostatic_boost(self.t_day),
            "serum_il6_pg_ml": y[IL6],
            "myeloid_activation": y[MY],
            "il6_signal_pg_ml": self.signal,
            "crp_mg_l": self.crp,
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
            "surge": self.surge,
            "crp": self.crp,
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
        # checkpoints from before the myeloid compartment (it starts at rest), the escape routes (their one
        # negative compartment is read as pre-existing) and masking (empty)
        if len(y) == self.n_state - 4:
            y.insert(MY, 0.0)
        if len(y) == self.n_state - 3:
            y[RM:RM] = [0.0, 0.0]
        if len(y) == self.n_state - 1:
            y.insert(RK, 0.0)
        if len(y) != self.n_state:
            raise SimulationError(f"body state has {len(y)} variables; this version with cart.max_divisions = "
                                  f"{self.max_divs} has {self.n_state}")
        self.y = y
        self.t_day = float(state["t_day"])
        self.infused = float(state["infused"])
        self.given = int(state["given"])
        self.held = int(state.get("held", 0))  # checkpoints from before schedule.hold_crs_grade have none
        self.antigen = float(state["antigen"])
        self.crp = float(state.get("crp", self.crp_0))  # checkpoints from before CRP: it starts at baseline
        self.surge = float(state.get("surge", self.surge))  # checkpoints from before the surge: 'step' shape only
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
