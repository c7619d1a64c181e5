"""Treatment of CRS and ICANS: tocilizumab and corticosteroids, and what they impose on the kernels.

Pure functions of the therapy state that :class:`abm.body.Body` keeps
(doses given, the last dose's day, the day steroids end); they decide when
to treat and what acts now. Holding a later CAR-T fraction on CRS
(``schedule.hold_crs_grade``) is decided here too (:func:`dose_held`).

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
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Controls:
    """What the body imposes on the lattice kernels."""

    proliferation_factor: float  # multiplies CAR-T proliferation hazard (steroids < 1)
    activation_factor: float  # multiplies attach/kill hazards (steroids < 1)


def blockade(t_day: float, last_dose: float | None, duration_days: float, full: float) -> float:
    """Fraction of IL-6 receptors tocilizumab blocks at ``t_day``: ``full`` while the last dose acts, else 0."""
    if last_dose is None or t_day >= last_dose + duration_days:
        return 0.0
    return full


def steroids_on(t_day: float, until: float | None) -> bool:
    return until is not None and t_day < until


def controls(on_steroids: bool, proliferation_factor: float, activation_factor: float) -> Controls:
    """Factors the kernels apply now (steroids suppress CAR-T proliferation and activation)."""
    if on_steroids:
        return Controls(proliferation_factor, activation_factor)
    return Controls(1.0, 1.0)


def tocilizumab_due(
    t_day: float, crs_grade: int, trigger_grade: int, doses: int, max_doses: int, last_dose: float | None,
    redose_days: float,
) -> bool:
    """Whether a tocilizumab dose is given at ``t_day`` (CRS at the trigger, doses left, redosing interval past)."""
    return (
        trigger_grade > 0
        and crs_grade >= trigger_grade
        and doses < max_doses
        and (last_dose is None or t_day - last_dose >= redose_days - 1e-12)
    )


def steroids_due(crs_grade: int, icans_grade: int, trigger_grade: int) -> bool:
    """Whether corticosteroids are (re)started: CRS or ICANS at the trigger grade."""
    return trigger_grade > 0 and max(crs_grade, icans_grade) >= trigger_grade


def dose_held(given: int, hold_grade: int, crs_grade: int) -> bool:
    """Whether a later CAR-T fraction (``given > 0``) is held for CRS (``schedule.hold_crs_grade``; Frey 2020)."""
    return given > 0 and hold_grade > 0 and crs_grade >= hold_grade
