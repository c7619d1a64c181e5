"""Fractionation: one infusion vs the same dose split over days 0-2 (10/30/60 %) or over days 0 and 9 (50/50).

Runs the default patient and product (the default dose in all) under three
infusion schedules (``schedule.days`` / ``schedule.fractions``), ``n`` seeds
each, the same seeds in every schedule (paired), for 28 days, and reports
severe CRS, the CRS maximum grade and onset, ICANS, CR and MRD at day 28 and
the blood CAR-T peak and its day, and whether CRS had begun before the last
fraction was due (where a hold-on-CRS rule would act; the model gives every
scheduled fraction, it has no such rule).

Run ``python -m experiments.fractionation`` (full study; see ``--help``), or
``--smoke`` for a seconds-long check of the machinery.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np

from abm.params import BY_KEY
from experiments import common, sweep

NAME = "fractionation"
DEFAULT_N = 10
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


def crs_before_last_dose(run: sweep.Run) -> bool | None:
    """Whether CRS (grade >= 1) was recorded before the last fraction was due (None for a single infusion)."""
    last = max(run["overrides"]["schedule.days"])
    s = run["series"]
    if last <= 0 or "crs_grade" not in s:
        return None
    before = np.asarray(s["day"]) < last
    return bool(np.any(np.asarray(s["crs_grade"])[before] >= 1))


OUTCOMES = (
    sweep.SEVERE_CRS, sweep.CRS_GRADE, sweep.CRS_ONSET,
    sweep.Outcome("crs_before_last_dose", "CRS (grade >= 1) before the last fraction was due",
                  crs_before_last_dose, proportion=True),
    sweep.ICANS_ANY, sweep.ICANS_SEVERE, sweep.CR, sweep.MRD, sweep.BLOOD_PEAK, sweep.PEAK_DAY,
)


def conditions(args) -> list[sweep.Condition]:
    return [sweep.Condition(label, {"schedule.days": days, "schedule.fractions": fractions},
                            {"schedule": label, "schedule_days": ";".join(f"{d:g}" for d in days),
                             "schedule_fractions": ";".join(f"{x:g}" for x in fractions)}, x=i)
            for i, (label, days, fractions) in enumerate(SCHEDULES)]


def setup(result: sweep.SweepResult) -> list[str]:
    return [
        f"The default patient and product (`product.dose_per_kg` = {BY_KEY['product.dose_per_kg'].default:g} "
        "cells/kg in all, whatever the schedule) under each infusion schedule of the table below "
        "(`schedule.days`, `schedule.fractions` of the dose); the split on days 0 and 9 is the clinic's "
        "day-1/day-10 split, counted from the first infusion.",
        "Doses held on early CRS are not modelled: `abm.params` has no hold rule and `abm.systemic` gives every "
        "scheduled fraction. The outcome `crs_before_last_dose` counts the runs in which CRS had already begun "
        "when the last fraction was due, i.e. where a hold rule would have acted.",
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
    held = ", ".join(f"{sweep.count(result['crs_before_last_dose', c])} ({c.label})" for c in split)
    acted = any(result["crs_before_last_dose", c].mean > 0 for c in split)
    lines.append(f"CRS had begun before the last fraction was due in {held} runs: "
                 + ("a hold-on-CRS rule (not modelled here) would have held fractions in those runs."
                    if acted else "a hold-on-CRS rule would not have acted in these runs."))
    return lines


SWEEP = sweep.Sweep(
    name=NAME, title="Fractionation", description=__doc__, question=QUESTION, conditions=conditions,
    outcomes=OUTCOMES, setup=setup, finding=finding, categorical=True, x_label="schedule", default_n=DEFAULT_N,
    series=(*common.DEFAULT_SERIES, "crs_grade", "icans_grade", "serum_il6_pg_ml"),
)


def main(argv: Sequence[str] | None = None) -> int:
    return sweep.run(SWEEP, argv)


if __name__ == "__main__":
    sys.exit(common.cli(main))
