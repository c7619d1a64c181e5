"""Dose response: CAR-T dose from 0.1 to 10 x 10^6 cells/kg against response, toxicity and kinetics.

Sets ``product.dose_per_kg`` at each dose of the grid (default 1e5, 3e5,
1e6, 3e6, 1e7 cells/kg; the default product is 3e6/kg) for otherwise sampled
virtual patients: a paired virtual trial (:mod:`experiments.sweep`), ``n``
patients of the cohort (default 40), each at every dose with the same profile
and seed, for 28 days in the converged 200 x 200 window, each dose compared
with 3e6/kg patient by patient. Reports per dose: CR and MRD-negative rates at day 28, the
day-28 MRD, severe CRS (grade >= 3), ICANS (any, grade >= 3), the blood CAR-T
peak and its day, CAR-T persistence, B-cell aplasia and relapse.

Run ``python -m experiments.dose_response`` (full study; see ``--help``), or
``--smoke`` for a seconds-long check of the machinery.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from abm.params import BY_KEY
from experiments import common, sweep

NAME = "dose_response"
DOSES = (1e5, 3e5, 1e6, 3e6, 1e7)
SMOKE_DOSES = (3e5, 3e6)
SMOKE_GRID = 32
SMOKE_DAYS = 1.0
QUESTION = (
    "How do day-28 remission, severe CRS, ICANS, the blood CAR-T peak and persistence, B-cell aplasia and "
    "relapse change with the CAR-T dose, from 0.1 to 10 x 10^6 cells/kg?"
)
OUTCOMES = (sweep.CR, sweep.MRD_NEGATIVE, sweep.MRD, sweep.SEVERE_CRS, sweep.CRS_GRADE, sweep.ICANS_ANY,
            sweep.ICANS_SEVERE, sweep.ICANS_GRADE, sweep.BLOOD_PEAK, sweep.PEAK_DAY, sweep.PERSISTENCE,
            sweep.APLASIA, sweep.RELAPSE)


def dose_label(dose: float) -> str:
    return f"{dose / 1e6:g}e6/kg"


def options(parser) -> None:
    parser.add_argument("--doses", default=None,
                        help="comma-separated doses in cells/kg (default: 1e5,3e5,1e6,3e6,1e7; smoke: 3e5,3e6)")


def conditions(args) -> list[sweep.Condition]:
    doses = sweep.parse_values(args.doses, "--doses", SMOKE_DOSES if args.smoke else DOSES,
                               key="product.dose_per_kg")
    return [sweep.Condition(dose_label(d), {"product.dose_per_kg": d}, {"dose_per_kg": d}, x=d) for d in doses]


def setup(result: sweep.SweepResult) -> list[str]:
    doses = [c.x for c in result.conditions]
    return [f"{sweep.patients(result)}, with `product.dose_per_kg` set to each dose of the grid "
            f"{', '.join(f'{d:.1e}' for d in doses)} cells/kg. The default product dose is "
            f"{BY_KEY['product.dose_per_kg'].default:g}/kg (tisagenlecleucel label 0.2-5.0e6/kg for <= 50 kg)."]


def finding(result: sweep.SweepResult) -> list[str]:
    """One or two sentences generated from the numbers."""
    f = common.fmt
    conds = result.conditions
    lines = []
    defined = [c for c in conds if result["cr_day28", c].n > 0]
    if not defined:
        lines.append("Day-28 response is not defined for runs shorter than 28 days, so no response finding.")
    else:
        most = [c for c in defined if result["cr_day28", c].mean > 0.5]
        if most:
            others = ", ".join(sweep.count(result["cr_day28", c]) for c in defined if c not in most)
            lines.append(f"CR at day 28 was reached in most runs at {', '.join(c.label for c in most)} "
                         f"({', '.join(sweep.count(result['cr_day28', c]) for c in most)}), and in "
                         f"{others or 'no other'} runs at the other doses; the lowest dose with CR in most runs "
                         f"is {most[0].label}.")
        else:
            counts = ", ".join(f"{c.label} {sweep.count(result['cr_day28', c])}" for c in defined)
            lines.append(f"No dose reached CR at day 28 in most runs (CR: {counts}).")
    first, last = conds[0], conds[-1]
    trend = sweep.trend([result["severe_crs", c].mean for c in conds], along="with dose")
    peaks = [result["cart_peak_blood_per_ul", c].mean for c in (first, last)]
    ratio = peaks[1] / peaks[0] if peaks[0] > 0 else float("nan")
    lines.append(f"The severe-CRS rate {trend}, from "
                 f"{sweep.span(result, 'severe_crs')} (mean CRS maximum grade {f(result['crs_max_grade', first].mean)} "
                 f"to {f(result['crs_max_grade', last].mean)}); the mean blood CAR-T peak went from {f(peaks[0])} to "
                 f"{f(peaks[1])} cells/uL ({f(ratio)}x for a {f(last.x / first.x)}x dose range).")
    return lines


SWEEP = sweep.Sweep(
    name=NAME, title="Dose response", description=__doc__, question=QUESTION, conditions=conditions,
    outcomes=OUTCOMES, setup=setup, finding=finding, x_label="dose [cells/kg]", x_log=True,
    reference=lambda conds: min(conds, key=lambda c: abs(math.log(c.x / BY_KEY["product.dose_per_kg"].default))),
    smoke_grid=SMOKE_GRID, smoke_days=SMOKE_DAYS, options=options,
    provenance=lambda result: {"doses_per_kg": [c.x for c in result.conditions]},
)


def main(argv: Sequence[str] | None = None) -> int:
    return sweep.run(SWEEP, argv)


if __name__ == "__main__":
    sys.exit(common.cli(main))
