"""CRS and ICANS surrogates and their ASTCT grades, from serum IL-6 and the ICANS effect compartment.

Pure functions of the body's state: :func:`grade` is the per-step update that
:class:`abm.body.Body` applies; the effect compartment ``C`` itself is a
variable of the body ODE (:mod:`abm.body.kinetics`, index ``NEURO``).

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
    A neurotoxic effect compartment ``C`` [pg/mL] (endothelial activation and
    blood-brain-barrier disruption, Gust 2017 Cancer Discov 7:1404, in
    serum-IL-6-excess equivalents) follows its cytokine drive with a mean
    delay ``tau = icans.delay_days``::

        dC/dt = (h epsilon (max(I - I_0, 0) + D_1 kappa Y) - C) / tau

    with ``h = therapy.steroid_icans_factor`` on steroids (else 1). The drive
    is serum IL-6, *not* the blocked signal: tocilizumab does not prevent
    ICANS (poor CNS penetration) and the serum rise it causes even feeds it;
    and the myeloid compartment's IL-1 (``D_1 kappa Y``, :mod:`abm.body.kinetics`;
    tocilizumab does not block it, anakinra would: Norelli 2018 Nat Med
    24:739). ``epsilon = (patient.ang2_ang1_ratio / icans.ang2_ang1_reference)
    ** icans.endothelial_sensitivity`` is the patient's endothelial
    susceptibility (pre-existing endothelial activation predisposes to severe
    neurotoxicity, Gust 2017), so ICANS follows CRS without being its shadow.
    With ``D_1 = 0`` and sensitivity 0 (the defaults until the issue-23/28
    recalibration) the drive is the serum IL-6 excess alone. ICE score = ``round(10 / (1 + (C / K_ICE)^n))``
    (``icans.ice_half_il6_pg_ml``, ``n = icans.ice_hill``); grade 0 for ICE 10, 1 for 7-9, 2 for 3-6,
    3 for 0-2, 4 when ``C >= u K_ICE 19^(1/n)`` (unarousable: ``u =
    icans.unarousable_factor`` times the level at which ICE reaches 0, so
    that grade 3 always comes first). Seizures, motor weakness and cerebral oedema (other ASTCT ICANS
    domains) are not modelled. Thresholds are assumptions (issue 4).
"""

from __future__ import annotations

import math
from typing import NamedTuple

FEVER_C = 38.0
ICE_ZERO = 19.0  # (C / K)^n from which round(10 / (1 + (C / K)^n)) is 0


class Grades(NamedTuple):
    """The physiological surrogates and ASTCT grades at one moment."""

    signal: float  # IL-6 signal after blockade [pg/mL]
    temperature: float  # [C]
    severity: int  # hypotension/hypoxia level (0-3)
    crs_grade: int  # ASTCT 0-4
    ice: int  # ICE score (0-10)
    icans_grade: int  # ASTCT 0-4


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


def unarousable_level(factor: float, ice_half: float, hill: float) -> float:
    """Effect-compartment level [pg/mL] of grade 4 ICANS: ``factor`` times the level at which ICE reaches 0."""
    return factor * ice_half * ICE_ZERO ** (1.0 / hill)


def grade(
    il6: float,
    effect: float,
    il6_0: float,
    blockade: float,
    masked: bool,
    crs_thresholds: tuple[float, float, float, float],
    ice_half: float,
    unarousable: float,
    hill: float,
) -> Grades:
    """Surrogates and grades from serum IL-6 ``il6`` and the effect compartment ``effect`` [pg/mL].

    ``blockade`` is tocilizumab's receptor blockade now, ``masked`` whether
    tocilizumab or steroids have been given (fever no longer required).
    """
    excess = max(il6 - il6_0, 0.0)
    signal = excess * (1.0 - blockade)
    temperature, severity = crs_surrogates(signal, crs_thresholds)
    crs_grade = astct_crs_grade(temperature, severity, masked)
    ice, icans_grade = icans_surrogate(effect, ice_half, unarousable, hill)
    return Grades(signal, temperature, severity, crs_grade, ice, icans_grade)
