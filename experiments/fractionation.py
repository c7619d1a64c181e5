"""Fractionation: one infusion vs the same dose split over days 0-2 (10/30/60 %) or over days 0 and 9 (50/50).

Runs a paired virtual trial (:mod:`experiments.sweep`: ``n`` virtual patients
of the cohort, default 40, each under every schedule with the same profile,
dose and seed) under three infusion schedules (``schedule.days`` /
``schedule.fractions``), for 28 days in the converged 200 x 200 window, each
split schedule against the single infusion patient by patient. The split
schedules hold (skip) a later fraction when CRS has begun by its day
(``schedule.hold_crs_grade`` = 1, as in Frey 2020's fractionated dosing).
Reports severe CRS, the CRS maximum grade and onset, ICANS, CR and MRD at day
28, the blood CAR-T peak and its day, and the fraction of the planned dose that
was given.

Run ``python -m experiments.fractionation`` (full study; see ``--help``), or
``--smoke`` for a seconds-long check of the machinery.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from abm.params import BY_KEY
from experiments import common, sweep

NAME = "fractionation"
SCHEDULES = (  # label, days, fractions
    ("single d0", [0.0], [1.0]),
    ("10/30/60 % d0-2", [0.0, 1.0, 2.0], [0.1, 0.3, 0.6]),
    ("50/50 % d0/d9", [0.0, 9.0], [0.5, 0.5]),
)
QUESTION = (
    "Does splitting the CAR-T dose (10 %/30 %/60 % over days 0-2, or 50 %/50 % on days 0 and 9) lower severe CRS "
    "and ICANS compared with a single infusion, and at what cost to remission at day 28 and to the blood CAR-T "
    "peak?"
)


HOLD_GRADE = 1


def dose_given(run: sweep.Run) -> float | None:
    """Fraction of the planned dose (the run's ``product.dose_per_kg`` x weight) infused by the end of the run."""
    infused = sweep.series_final(run, "cart_infused_cells")
    if infused is None:
        return None
    overrides = run.get("overrides", {})
    planned = (overrides.get("product.dose_per_kg", BY_KEY["product.dose_per_kg"].default)
               * overrides.get("patient.weight_kg", BY_KEY["patient.weight_kg"].default))
    return float(infused) / planned


OUTCOMES = (
    sweep.SEVERE_CRS, sweep.CRS_GRADE, sweep.CRS_ONSET,
    sweep.Outcome("dose_given", "fraction of the planned dose given (later fractions held on CRS)", dose_given),
    sweep.ICANS_ANY, sweep.ICANS_SEVERE, sweep.CR, sweep.MRD, sweep.BLOOD_PEAK, sweep.PEAK_DAY,
)


def conditions(args) -> list[sweep.Condition]:
    return [sweep.Condition(label, {"schedule.days": days, "schedule.fractions": fractions,
                                    "schedule.hold_crs_grade": HOLD_GRADE if len(days) > 1 else 0},
                            {"schedule": label, "schedule_days": ";".join(f"{d:g}" for d in days),
                             "schedule_fractions": ";".join(f"{x:g}" for x in fractions)}, x=i)
            for i, (label, days, fractions) in enumerate(SCHEDULES)]


def setup(result: sweep.SweepResult) -> list[str]:
    return [
        f"The default patient and product (`product.dose_per_kg` = {BY_KEY['product.dose_per_kg'].default:g} "
        "cells/kg in all, whatever the schedule) under each infusion schedule of the table below "
        "(`schedule.days`, `schedule.fractions` of the dose); the split on days 0 and 9 is the clinic's "
        "day-1/day-10 split, counted from the first infusion.",
        f"In the split schedules a later fraction is held (not given) when CRS has reached grade {HOLD_GRADE} by its "
        "day (`schedule.hold_crs_grade`; Frey 2020 J Clin Oncol 38:415); `dose_given` is the fraction of the "
        "planned dose that was infused.",
    ]


def finding(result: sweep.SweepResult) -> list[str]:
    f = common.fmt
    single, *split = result.conditions
    sev = ", ".join(f"{sweep.count(result['severe_crs', c])} ({c.label})" for c in result.conditions)
    grade = ", ".join(f"{f(result['crs_max_grade', c].mean)} ({c.label})" for c in result.conditions)
    peak = ", ".join(f"{f(result['cart_peak_blood_per_ul', c].mean)} cells/uL on day "
                     f"{f(result['cart_peak_day', c].mean)} ({c.label})" for c in result.conditions)
    lines = [f"Severe CRS: {sev}; mean CRS maximum grade {grade}; blood CAR-T peak {peak}."]
    if result["cr_day28", single].n:
        cr = ", ".join(f"{sweep.count(result['cr_day28', c])} ({c.label})" for c in result.conditions)
        lines.append(f"CR at day 28: {cr}.")
    given = ", ".join(f"{f(result['dose_given', c].mean)} ({c.label})" for c in split)
    lines.append(f"Mean fraction of the planned dose given (later fractions held on CRS): {given}.")
    return lines


SWEEP = sweep.Sweep(
    name=NAME, title="Fractionation", description=__doc__, question=QUESTION, conditions=conditions,
    outcomes=OUTCOMES, setup=setup, finding=finding, categorical=True, x_label="schedule",
    series=(*common.DEFAULT_SERIES, "crs_grade", "icans_grade", "serum_il6_pg_ml", "cart_infused_cells"),
)


def main(argv: Sequence[str] | None = None) -> int:
    return sweep.run(SWEEP, argv)


if __name__ == "__main__":
    sys.exit(common.cli(main))
