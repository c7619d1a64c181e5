"""Tumour burden: the pre-infusion marrow blast fraction against response, toxicity and expansion.

Sets ``patient.marrow_blast_fraction`` at each value of the grid (default
0.05, 0.25, 0.5, 0.75, 0.95) on otherwise sampled virtual patients: a paired
virtual trial (:mod:`experiments.sweep`), ``n`` patients of the cohort
(default 40), each at every burden with the same profile and seed, for 28
days in the converged 200 x 200 window, and reports CR, MRD-negativity and MRD at day 28, severe CRS,
ICANS and the blood CAR-T peak and its day, each burden against 5 % patient
by patient.

Run ``python -m experiments.tumor_burden`` (full study; see ``--help``), or
``--smoke`` for a seconds-long check of the machinery.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from experiments import common, sweep

NAME = "tumor_burden"
BURDENS = (0.05, 0.25, 0.5, 0.75, 0.95)
SMOKE_BURDENS = (0.05, 0.75)
QUESTION = (
    "How do remission and MRD at day 28, severe CRS, ICANS and the blood CAR-T peak depend on the marrow blast "
    "fraction before infusion (5 % to 95 %)?"
)
OUTCOMES = (sweep.CR, sweep.MRD_NEGATIVE, sweep.MRD, sweep.SEVERE_CRS, sweep.CRS_GRADE, sweep.ICANS_ANY,
            sweep.ICANS_SEVERE, sweep.BLOOD_PEAK, sweep.PEAK_DAY)


def options(parser) -> None:
    parser.add_argument("--burdens", default=None,
                        help="comma-separated marrow blast fractions (default: 0.05,0.25,0.5,0.75,0.95; "
                             "smoke: 0.05,0.75)")


def conditions(args) -> list[sweep.Condition]:
    burdens = sweep.parse_values(args.burdens, "--burdens", SMOKE_BURDENS if args.smoke else BURDENS,
                                 key="patient.marrow_blast_fraction")
    return [sweep.Condition(f"{b:.0%} blasts", {"patient.marrow_blast_fraction": b}, {"marrow_blast_fraction": b},
                            x=b) for b in burdens]


def setup(result: sweep.SweepResult) -> list[str]:
    return [f"{sweep.patients(result)}, with `patient.marrow_blast_fraction` (blasts among nucleated marrow "
            f"cells before infusion) set to each value of the grid "
            f"{', '.join(f'{c.x:g}' for c in result.conditions)}. The window's measured blast fraction at day 0 "
            "is `blast_fraction_day0` in `results.csv`."]


def finding(result: sweep.SweepResult) -> list[str]:
    f = common.fmt
    lines = []
    if result["cr_day28", result.conditions[0]].n:
        lines.append(f"CR at day 28 went from {sweep.span(result, 'cr_day28')} and MRD-negativity from "
                     f"{sweep.span(result, 'mrd_negative_day28')}; the mean day-28 MRD "
                     f"{sweep.trend([result['mrd_day28', c].mean for c in result.conditions], 'with burden')} "
                     f"({sweep.span(result, 'mrd_day28')}).")
    peak = [result["cart_peak_blood_per_ul", c].mean for c in result.conditions]
    lines.append(f"Severe CRS went from {sweep.span(result, 'severe_crs')} (mean maximum grade "
                 f"{sweep.span(result, 'crs_max_grade')}), ICANS from {sweep.span(result, 'icans_any')}, and the "
                 f"mean blood CAR-T peak {sweep.trend(peak, 'with burden')} from {f(peak[0])} to {f(peak[-1])} "
                 "cells/uL.")
    return lines


SWEEP = sweep.Sweep(
    name=NAME, title="Tumour burden", description=__doc__, question=QUESTION, conditions=conditions,
    outcomes=OUTCOMES, setup=setup, finding=finding, x_label="marrow blast fraction before infusion",
    options=options,
    provenance=lambda result: {"marrow_blast_fractions": [c.x for c in result.conditions]},
)


def main(argv: Sequence[str] | None = None) -> int:
    return sweep.run(SWEEP, argv)


if __name__ == "__main__":
    sys.exit(common.cli(main))
