"""Niche protection: how strongly stromal niches shelter blasts from CAR-T killing, against residual disease.

Runs a paired virtual trial (:mod:`experiments.sweep`: ``n`` virtual patients
of the cohort, default 40, each at every level with the same profile and seed)
with ``niche.kill_protection`` (the fractional reduction of attach and kill
hazards for targets next to a stromal niche cell) at each value of the grid
(default 0, 0.25, 0.5, 0.75, 1; the default is 0.5, and each level is compared
with it patient by patient), for 84 days (12 weeks, so that regrowth after
remission has time to show), and reports MRD and the window's residual blasts
at day 28, CR and MRD-negativity at day 28, relapse after CR and the blast
fraction at the end of the run.

Run ``python -m experiments.niche_protection`` (full study; see ``--help``),
or ``--smoke`` for a seconds-long check of the machinery.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from abm.params import BY_KEY
from experiments import common, sweep

NAME = "niche_protection"
DAYS = 84.0
LEVELS = (0.0, 0.25, 0.5, 0.75, 1.0)
SMOKE_LEVELS = (0.0, 1.0)
QUESTION = (
    "How does the strength of stromal-niche protection (from none to complete) change residual disease at day 28 "
    "(MRD, residual blasts), remission and relapse?"
)
OUTCOMES = (
    sweep.MRD,
    sweep.Outcome("blasts_day28", "residual blasts in the window at day 28", lambda r: sweep.series_value(
        r, "blasts", 28.0), unit="cells", log=True),
    sweep.CR, sweep.MRD_NEGATIVE, sweep.RELAPSE,
    sweep.Outcome("relapse_day", "day of relapse (runs that relapsed)", sweep.summary_key("relapse_day"), unit="d"),
    sweep.Outcome("blast_fraction_final", "marrow blast fraction at the end of the run",
                  sweep.summary_key("blast_fraction_final"), log=True),
)


def options(parser) -> None:
    parser.add_argument("--levels", default=None,
                        help="comma-separated niche.kill_protection values in [0, 1] (default: 0,0.25,0.5,0.75,1; "
                             "smoke: 0,1)")


def conditions(args) -> list[sweep.Condition]:
    levels = sweep.parse_values(args.levels, "--levels", SMOKE_LEVELS if args.smoke else LEVELS,
                                key="niche.kill_protection")
    return [sweep.Condition(f"protection {x:g}", {"niche.kill_protection": x}, {"kill_protection": x}, x=x)
            for x in levels]


def setup(result: sweep.SweepResult) -> list[str]:
    return [f"{sweep.patients(result)}, with `niche.kill_protection` set to each value of the grid "
            f"{', '.join(f'{c.x:g}' for c in result.conditions)} (0: niches give no protection; 1: a target next to "
            f"a stromal niche cell cannot be attached or killed), run for {common.fmt(result.args.days)} days so "
            "that relapse after remission has time to show; residual disease is read at day 28."]


def finding(result: sweep.SweepResult) -> list[str]:
    f = common.fmt
    conds = result.conditions
    if not result["mrd_day28", conds[0]].n:
        return ["Day-28 residual disease is not defined for runs shorter than 28 days, so no finding."]
    mrd = [result["mrd_day28", c].mean for c in conds]
    relapsed = ", ".join(f"{sum(bool(r.get('relapse')) for r in result.runs(c))}/{len(result.runs(c))}"
                         for c in conds)
    return [
        f"The mean day-28 MRD {sweep.trend(mrd, 'with protection')} ({sweep.span(result, 'mrd_day28')}; residual "
        f"window blasts {sweep.span(result, 'blasts_day28')}), CR at day 28 went from {sweep.span(result, 'cr_day28')} "
        f"and MRD-negativity from {sweep.span(result, 'mrd_negative_day28')}.",
        f"Over {f(result.args.days)} days, {relapsed} runs relapsed at the protection levels "
        f"{', '.join(f'{c.x:g}' for c in conds)}.",
    ]


SWEEP = sweep.Sweep(
    name=NAME, title="Niche protection", description=__doc__, question=QUESTION, conditions=conditions,
    outcomes=OUTCOMES, setup=setup, finding=finding, x_label="niche.kill_protection",
    reference=lambda conds: min(conds, key=lambda c: abs(c.x - BY_KEY["niche.kill_protection"].default)),
    days=DAYS, options=options, time_course=("blast_fraction", "marrow blast fraction"),
    provenance=lambda result: {"kill_protection": [c.x for c in result.conditions]},
)


def main(argv: Sequence[str] | None = None) -> int:
    return sweep.run(SWEEP, argv)


if __name__ == "__main__":
    sys.exit(common.cli(main))
