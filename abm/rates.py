"""From parameters in time units to the integer tables the kernels use.

This is the one place where rates become per-step probabilities
(``p = 1 - exp(-rate * dt)``, STYLE 4) and probabilities become integer
thresholds (:func:`kernels.rng.threshold`), and where antigen densities become
antigen levels.

CD19 and CD22 levels share one trait slot (``ANTIGEN``: CD19 in the low byte,
CD22 in the high byte; see :mod:`kernels.layout`). The array helpers here
(:func:`cd19_levels`, :func:`cd22_levels`, :func:`pack_levels`,
:func:`target_levels`) are the host-side, vectorised twins of the kernels'
scalar ``cd19_level``, ``cd22_level``, ``pack`` and ``target_level``.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from abm.params import Params
from kernels import DECAY_SHIFT, MAX_RATIO, QUANTUM, SHIFT, RuleTables, threshold
from kernels import layout as L

MINUTES_PER_DAY = 1440.0
MINUTES_PER_HOUR = 60.0
LOG10_MIN_MOLECULES = 1.0  # level 1 = 10 molecules
LOG10_SPAN = 4.0  # level 255 = 100,000 molecules


def per_step_probability(rate: float, dt: float) -> float:
    """Probability that an event with hazard ``rate`` happens within ``dt`` (same time unit)."""
    if rate < 0 or dt < 0 or not math.isfinite(rate * dt):
        raise ValueError(f"rate ({rate!r}) and dt ({dt!r}) must be finite and non-negative")
    return -math.expm1(-rate * dt)


TARGET_MODES = {"CD19": L.TARGET_CD19, "CD22": L.TARGET_CD22, "CD19/CD22": L.TARGET_BOTH}


def target_mode(params: Params) -> int:
    """The kernels' target choice (``rates[R_TARGET_MODE]``) for ``product.target``."""
    return TARGET_MODES[params.product.target]


def cd22_tracked(params: Params) -> bool:
    """True if cells carry CD22 levels in this run (``patient.cd22_tracking``).

    With the default ``"target"`` only when the product targets CD22; a
    CD19-only run then holds no CD22 at all and is identical, bit for bit, to
    a run of the model before CD22 existed.
    """
    return params.patient.cd22_tracking == "always" or target_mode(params) != L.TARGET_CD19


def cd19_levels(antigen: np.ndarray) -> np.ndarray:
    """CD19 levels (int64, 0..255) of ``ANTIGEN`` trait values: the low byte."""
    return np.asarray(antigen, dtype=np.int64) & L.LEVEL_MASK


def cd22_levels(antigen: np.ndarray) -> np.ndarray:
    """CD22 levels (int64, 0..255) of ``ANTIGEN`` trait values: the high byte."""
    return (np.asarray(antigen, dtype=np.int64) >> L.CD22_SHIFT) & L.LEVEL_MASK


def pack_levels(cd19: np.ndarray | int, cd22: np.ndarray | int) -> np.ndarray:
    """``ANTIGEN`` trait values (uint16) of CD19 and CD22 levels, each in 0..255."""
    cd19 = np.asarray(cd19, dtype=np.int64)
    cd22 = np.asarray(cd22, dtype=np.int64)
    for name, level in (("cd19", cd19), ("cd22", cd22)):
        if level.size and (level.min() < 0 or level.max() >= L.N_LEVELS):
            raise ValueError(f"{name} levels must lie in [0, {L.N_LEVELS}), got {level.min()}..{level.max()}")
    return ((cd22 << L.CD22_SHIFT) | cd19).astype(np.uint16)


def target_levels(antigen: np.ndarray, mode: int) -> np.ndarray:
    """The level a CAR with target choice ``mode`` sees on cells with these ``ANTIGEN`` values.

    Array form of :func:`kernels.rules.target_level`: CD19, CD22, or the
    higher of the two for a dual (OR-gate) CAR.
    """
    if mode == L.TARGET_CD19:
        return cd19_levels(antigen)
    if mode == L.TARGET_CD22:
        return cd22_levels(antigen)
    if mode == L.TARGET_BOTH:
        return np.maximum(cd19_levels(antigen), cd22_levels(antigen))
    raise ValueError(f"target mode {mode!r}: expected one of {sorted(TARGET_MODES.values())}")


def level_to_molecules(level: np.ndarray | int) -> np.ndarray:
    """Antigen molecules per cell of an antigen level (level 0 -> 0), for CD19 and CD22 alike."""
    level = np.asarray(level, dtype=np.float64)
    molecules = 10.0 ** (LOG10_MIN_MOLECULES + LOG10_SPAN * (level - 1.0) / (L.N_LEVELS - 2))
    return np.where(level > 0, molecules, 0.0)


def molecules_to_level(molecules: np.ndarray | float) -> np.ndarray:
    """Nearest antigen level (1..255) of a positive antigen density; 0 for zero."""
    molecules = np.asarray(molecules, dtype=np.float64)
    with np.errstate(divide="ignore"):
        raw = 1.0 + (np.log10(molecules) - LOG10_MIN_MOLECULES) * (L.N_LEVELS - 2) / LOG10_SPAN
    level = np.clip(np.rint(raw), 1, L.N_LEVELS - 1)
    return np.where(molecules > 0, level, 0).astype(np.int64)


def is_cd28(params: Params) -> bool:
    return params.product.costimulation == "CD28"


def affinity_factor(params: Params) -> float:
    """``1 + K_D / kd_ref``: how much more antigen (and engagements before exhaustion) a looser binder needs."""
    return 1.0 + params.product.affinity_kd_nM / params.cart.kd_ref_nM


def off_rate_per_s(params: Params) -> float:
    """The binder's off-rate ``k_off = K_D k_on`` [1/s] (``product.affinity_kd_nM``, ``product.kon_per_M_s``)."""
    return params.product.affinity_kd_nM * 1e-9 * params.product.kon_per_M_s


def signalling_fraction(params: Params) -> float:
    """Kinetic proofreading: the probability ``phi = (k_p / (k_p + k_off))^N`` that a CAR bond signals.

    Exactly 1 with ``cart.proofreading_steps = 0`` (McKeithan 1995 PNAS 92:5042).
    """
    k_p = params.cart.proofreading_rate_per_s
    return (k_p / (k_p + off_rate_per_s(params))) ** params.cart.proofreading_steps


def detach_rate_per_h(params: Params) -> float:
    """Conjugate release hazard [1/h]: ``cart.detach_rate_per_h + cart.detach_per_unbinding * k_off``."""
    c = params.cart
    return c.detach_rate_per_h + c.detach_per_unbinding * off_rate_per_s(params) * 3600.0  # exact with factor 0


def response_at(params: Params, molecules: np.ndarray) -> np.ndarray:
    """Fraction of the maximal CAR response to a target cell carrying ``molecules`` antigen (Hill function).

    ``f(A) = A^h / (A^h + A50^h)`` with
    ``A50 = threshold * (1 + K_D / kd_ref) * (costim.cd28_threshold_factor if CD28)``:
    a looser binder (larger K_D) needs more antigen for the same response, a
    CD28 CAR less (Majzner 2020).
    """
    c = params.cart
    a50 = c.antigen_threshold_molecules * affinity_factor(params)
    if is_cd28(params):
        a50 *= params.costim.cd28_threshold_factor
    a = np.asarray(molecules, dtype=np.float64)
    h = c.antigen_hill
    return a**h / (a**h + a50**h)


def antigen_response(params: Params) -> np.ndarray:
    """:func:`response_at` of each antigen level (0..255): the attach/kill hazard fraction the kernels use."""
    return response_at(params, level_to_molecules(np.arange(L.N_LEVELS)))


def mean_response(params: Params, points: int = 64) -> float:
    """Mean :func:`response_at` over the patient's target-positive blasts (their log-normal density).

    Midpoint quadrature over ``points`` normal quantiles of each antigen's
    log10 density (``patient.cd19_*``, ``patient.cd22_*``); a dual CAR responds
    to the denser antigen of each cell, the two drawn independently (as the
    window draws them). The response the body gives the residual disease
    outside the window, whose cells it does not see one by one.
    """
    z = np.array([NormalDist().inv_cdf((k + 0.5) / points) for k in range(points)])
    pat = params.patient

    def responses(median: float, sd: float) -> np.ndarray:
        return response_at(params, 10.0 ** (math.log10(median) + sd * z))

    mode = target_mode(params)
    if mode == L.TARGET_CD19:
        return float(responses(pat.cd19_median_molecules, pat.cd19_sd_log10).mean())
    if mode == L.TARGET_CD22:
        return float(responses(pat.cd22_median_molecules, pat.cd22_sd_log10).mean())
    cd19 = responses(pat.cd19_median_molecules, pat.cd19_sd_log10)
    cd22 = responses(pat.cd22_median_molecules, pat.cd22_sd_log10)
    return float(np.maximum(cd19[:, None], cd22[None, :]).mean())


def field_rates(params: Params, dt_min: float) -> tuple[np.ndarray, list[int]]:
    """Integer secretion / diffusion / decay rows per field and the sub-steps each needs."""
    site_um = params.grid.site_um
    voxel_um = site_um * params.grid.coarsen
    voxel_ml = voxel_um * voxel_um * site_um * 1e-12  # one cell layer thick; 1 mL = 1e12 um^3
    table = np.zeros((L.N_FIELDS, L.N_FIELD_RATES), dtype=np.int64)
    specs = {L.F_IL6: params.il6, L.F_CXCL12: params.cxcl12}
    for f, sec in specs.items():
        # fg/cell/h -> pg/mL per cell per step in the voxel, in quanta.
        per_step_pg_per_ml = sec.secretion_fg_per_cell_per_h * 1e-3 * dt_min / MINUTES_PER_HOUR / voxel_ml
        quanta = int(round(per_step_pg_per_ml / QUANTUM))
        if f == L.F_IL6:
            table[f, L.FR_SECRETE_ACTIVE_CART] = quanta
        else:
            table[f, L.FR_SECRETE_STROMA] = quanta
        ratio = sec.diffusion_um2_per_s * 60.0 * dt_min / (voxel_um * voxel_um)
        substeps = max(1, math.ceil(ratio / MAX_RATIO))
        table[f, L.FR_DIFFUSE] = int(round(ratio / substeps * (1 << SHIFT)))
        decay_rate_per_min = math.log(2.0) / (sec.half_life_h * MINUTES_PER_HOUR)
        decay_p = per_step_probability(decay_rate_per_min, dt_min / substeps)
        table[f, L.FR_DECAY] = int(round(decay_p * (1 << DECAY_SHIFT)))
        table[f, L.FR_SUBSTEPS] = substeps
    return table, [int(s) for s in table[:, L.FR_SUBSTEPS]]


def cd19_noise_table(sd_levels: float) -> np.ndarray:
    """256 level changes whose empirical distribution is N(0, sd) rounded to integers.

    Entry ``k`` is the rounded normal quantile at ``(k + 0.5) / 256``; a blast
    daughter adds ``table[draw >> 24]`` to its mother's level (CD19, and with
    an independent draw CD22).
    """
    from statistics import NormalDist

    if sd_levels == 0:
        return np.zeros(256, dtype=np.int64)
    dist = NormalDist(0.0, sd_levels)
    return np.array([round(dist.inv_cdf((k + 0.5) / 256.0)) for k in range(256)], dtype=np.int64)


def exhaustion_engagements(params: Params) -> int:
    """Engagements before exhaustion: ``cart.exhaustion_engagements * (1 + K_D / kd_ref)``, times the CD28 factor.

    Looser binders disengage faster and exhaust later (Ghorashian 2019);
    4-1BB costimulation resists exhaustion better than CD28 (Long 2015).
    """
    value = params.cart.exhaustion_engagements * affinity_factor(params)
    if is_cd28(params):
        value *= params.costim.cd28_exhaustion_factor
    value /= max(signalling_fraction(params), 1e-9)  # a weaker signal per engagement exhausts later
    return int(min(max(1, round(value)), L.TRAIT_MAX))


LEVELS_PER_DECADE = (L.N_LEVELS - 2) / LOG10_SPAN  # 63.5 antigen levels make a tenfold density


def stripped_share(params: Params) -> float:
    """Share of a target's antigen that one engagement strips: ``cart.trogocytosis_fraction / (1 + K_D / kd_ref)``."""
    return params.cart.trogocytosis_fraction / affinity_factor(params)


def trogocytosis_rates(params: Params) -> tuple[int, int, int, int, int]:
    """The kernels' trogocytosis rows: ``R_TROG_LEVELS``, ``R_TROG_FRAC``, ``R_TROG_OFFSET``, ``R_RECOVER``, ``R_SHED``.

    A strip of share ``s`` (:func:`stripped_share`) takes ``-63.5 log10(1 - s)``
    levels (the whole part, and one more with the fractional part's
    probability) and gives the T cell ``-63.5 log10(s)`` levels less than
    the target had; a stripped cell regains one level with probability
    ``63.5 dt / blast.antigen_recovery_h`` per step (a decade in that
    time), the T cell loses one with ``63.5 log10(2) dt / half-life``. All 0
    without trogocytosis.
    """
    share = stripped_share(params)
    if share <= 0.0:
        return 0, 0, 0, 0, 0
    levels = -LEVELS_PER_DECADE * math.log10(1.0 - share)
    offset = round(-LEVELS_PER_DECADE * math.log10(share))
    hours = params.time.dt_min / MINUTES_PER_HOUR
    per_step = {"blast.antigen_recovery_h": LEVELS_PER_DECADE * hours / params.blast.antigen_recovery_h,
                "cart.acquired_antigen_half_life_h":
                    LEVELS_PER_DECADE * math.log10(2.0) * hours / params.cart.acquired_antigen_half_life_h}
    for key, p in per_step.items():
        if p > 1.0:
            from abm.errors import ParamError

            raise ParamError(
                f"{key} = {params[key]:g} h is {p:.2f} antigen levels per step of time.dt_min = "
                f"{params.time.dt_min:g} min; expected at most 1 (raise it or lower time.dt_min)"
            )
    whole = math.floor(levels)
    return (whole, threshold(levels - whole), offset, threshold(per_step["blast.antigen_recovery_h"]),
            threshold(per_step["cart.acquired_antigen_half_life_h"]))


def build_tables(
    params: Params, seed: int, proliferation_factor: float = 1.0, activation_factor: float = 1.0
) -> RuleTables:
    """All integer tables for a run of ``params`` with ``seed``.

    ``proliferation_factor`` multiplies the CAR-T proliferation hazard and
    ``activation_factor`` the attach and kill hazards; the model changes them
    while lymphodepletion boosts expansion or steroids suppress T cells.
    """
    dt = params.time.dt_min
    per_day = dt / MINUTES_PER_DAY
    per_hour = dt / MINUTES_PER_HOUR

    def thr_day(rate):
        return threshold(per_step_probability(rate, per_day))

    def thr_hour(rate):
        return threshold(per_step_probability(rate, per_hour))

    kind_rates = np.zeros((L.N_KIND_RATES, L.N_KINDS), dtype=np.int64)
    for kind, section in ((L.BLAST, params.blast), (L.BCELL, params.bcell), (L.NORMAL, params.normal)):
        kind_rates[L.KR_DIE, kind] = thr_day(section.death_rate_per_day)
        kind_rates[L.KR_DIVIDE, kind] = thr_day(section.division_rate_per_day)
    kind_rates[L.KR_CONVERT, L.NORMAL] = thr_day(params.bcell.production_per_day)
    kind_rates[L.KR_DIE, L.CART] = thr_day(params.cart.death_rate_per_day)
    for kind in range(L.N_KINDS):
        if kind_rates[:, kind].sum() > 1 << 32:
            from abm.errors import ParamError

            raise ParamError(
                f"{L.KIND_NAMES[kind]} death, division and conversion rates add up to more than one event per "
                f"step at time.dt_min = {dt:g}; lower the rates or time.dt_min"
            )

    response = antigen_response(params) * activation_factor
    shelter = 1.0 - params.niche.kill_protection
    kill_rate = params.cart.kill_rate_per_h * signalling_fraction(params)  # a bond that does not signal does not kill
    antigen_rates = np.zeros((L.N_ANTIGEN_RATES, L.N_LEVELS), dtype=np.int64)
    for level in range(L.N_LEVELS):
        attach = params.cart.attach_rate_per_h * response[level]
        kill = kill_rate * response[level]
        antigen_rates[L.AR_ATTACH, level] = thr_hour(attach)
        antigen_rates[L.AR_KILL, level] = thr_hour(kill)
        antigen_rates[L.AR_ATTACH_NICHE, level] = thr_hour(attach * shelter)
        antigen_rates[L.AR_KILL_NICHE, level] = thr_hour(kill * shelter)

    c = params.cart
    move_p = c.speed_um_per_min * dt / params.grid.site_um
    if move_p > 1.0:
        from abm.errors import ParamError

        raise ParamError(
            f"cart.speed_um_per_min = {c.speed_um_per_min:g} with time.dt_min = {dt:g} and grid.site_um = "
            f"{params.grid.site_um:g} means {move_p:.2f} sites per step; expected at most 1 (lower time.dt_min)"
        )
    active_steps = max(1, round(c.activation_h * MINUTES_PER_HOUR / dt))
    if active_steps > L.TRAIT_MAX:
        from abm.errors import ParamError

        raise ParamError(
            f"cart.activation_h = {c.activation_h:g} is {active_steps} steps of {dt:g} min; "
            f"expected at most {L.TRAIT_MAX}"
        )
    rates = np.zeros(L.N_RATES, dtype=np.int64)
    rates[L.R_MOVE] = threshold(move_p)
    rates[L.R_SWAP] = threshold(c.swap_probability)
    rates[L.R_CHEMO] = threshold(c.chemotaxis_bias)
    rates[L.R_DETACH] = thr_hour(detach_rate_per_h(params))
    prolif = c.proliferation_rate_per_day * proliferation_factor
    memory = c.memory_conversion_per_day
    if is_cd28(params):
        prolif *= params.costim.cd28_proliferation_factor
        memory *= params.costim.cd28_memory_factor
    rates[L.R_PROLIF] = thr_day(prolif)
    rates[L.R_MAX_DIVS] = c.max_divisions
    rates[L.R_ACTIVE_STEPS] = active_steps
    rates[L.R_EXIT] = thr_day(c.marrow_exit_rate_per_day)
    rates[L.R_EXHAUST_STIM] = exhaustion_engagements(params)
    rates[L.R_EXHAUST_DIE] = threshold(c.exhausted_apoptosis_fraction)
    rates[L.R_AICD] = threshold(c.aicd_per_engagement)
    rates[L.R_MEMORY] = thr_day(memory)
    rates[L.R_MEMORY_DIE] = thr_day(c.memory_death_rate_per_day)
    rates[L.R_LOSS] = threshold(params.blast.cd19_loss_per_division)
    rates[L.R_DISPLACE] = threshold(params.blast.displacement_probability)
    rates[L.R_SWITCH] = threshold(params.blast.lineage_switch_per_division if params.patient.kmt2a_rearranged
                                  else 0.0)
    rates[L.R_BCELL_LEVEL] = int(molecules_to_level(params.bcell.cd19_molecules))
    rates[L.R_TARGET_MODE] = target_mode(params)
    rates[L.R_LOSS_CD22] = threshold(params.blast.cd22_loss_per_division)
    rates[L.R_BCELL_CD22_LEVEL] = int(molecules_to_level(params.bcell.cd22_molecules)) if cd22_tracked(params) else 0
    rates[[L.R_TROG_LEVELS, L.R_TROG_FRAC, L.R_TROG_OFFSET, L.R_RECOVER, L.R_SHED]] = trogocytosis_rates(params)

    table, _ = field_rates(params, dt)
    return RuleTables(
        kind_rates=kind_rates,
        antigen_rates=antigen_rates,
        cd19_noise=cd19_noise_table(params.blast.cd19_inheritance_sd),
        rates=rates,
        field_rates=table,
        coarsen=params.grid.coarsen,
        chemokine_field=L.F_CXCL12,
        seed=seed,
        entry_levels=entry_level_tables(params),
    )


# standard-normal quantiles at (k + 1/2) / 256: the same for every patient, so computed once
_ENTRY_QUANTILES_Z = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)])


def entry_level_tables(params: Params) -> np.ndarray:
    """CD19 and CD22 levels of reservoir blasts entering the window: int64[2, 256] quantile tables.

    Entry ``k`` of a row is the level at quantile ``(k + 1/2) / 256`` of the
    patient's blast antigen density (log-normal, ``patient.cd19_median_molecules``
    and ``patient.cd19_sd_log10``; CD22 likewise when it is tracked, else 0), so
    a uniform random byte draws from that distribution. Blasts lacking the
    product's target are decided separately (the reservoir's negative share).
    """
    z = _ENTRY_QUANTILES_Z
    p = params.patient
    table = np.zeros((2, 256), dtype=np.int64)
    table[0] = molecules_to_level(10.0 ** (np.log10(p.cd19_median_molecules) + p.cd19_sd_log10 * z))
    if cd22_tracked(params):
        table[1] = molecules_to_level(10.0 ** (np.log10(p.cd22_median_molecules) + p.cd22_sd_log10 * z))
    return table
