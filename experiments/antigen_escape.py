"""Antigen escape: CD19-negative blasts before infusion and CD19 loss at division against relapse; a dual CAR.

Runs a paired virtual trial (:mod:`experiments.sweep`: ``n`` virtual
patients of the cohort, default 40, each in every arm with the same profile
and seed, the arm's CD19-negative fraction replacing the patient's) with a
CD19 CAR under increasing escape pressure --
CD19-negative blasts already present at infusion (``patient.cd19_negative_fraction``
0, 0.1 %, 1 %) and a higher acquired loss rate (``blast.cd19_loss_per_division``
1e-3 instead of the calibrated default) -- and then, at the highest pressure, a
CD22 CAR and a dual CD19/CD22 (OR-gate) CAR (``product.target``) as the
counter-measure, each arm against the CD19 CAR without CD19-negative blasts
patient by patient, for ``--days`` (default 90, so that relapses can show), and reports CR and MRD
at day 28, relapse after CR and its day, whether relapses are negative for
the product's target, and relapse by escape route (``relapse_route``: target-
positive, pre-existing negative clone, target lost in a division, lineage
switch; each a yes/no per responder, so the arms pair); the time course is the
window's target-negative blasts.

Run ``python -m experiments.antigen_escape`` (full study; see ``--help``), or
``--smoke`` for a seconds-long check of the machinery.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from abm.params import Params
from experiments import common, sweep

NAME = "antigen_escape"
DAYS = 90.0
HIGH_LOSS = 1e-3
QUESTION = (
    "How do CD19-negative blasts present at infusion and the rate of CD19 loss at division shape relapse, its "
    "timing and its antigen phenotype under a CD19 CAR, and does a CD22 or dual CD19/CD22 CAR prevent it?"
)
RELAPSE_DAY = sweep.Outcome("relapse_day", "day of relapse (among relapses)", sweep.summary_key("relapse_day"),
                            unit="d")
TARGET_NEGATIVE_RELAPSE = sweep.Outcome(
    "relapse_antigen_negative", "relapse negative for the CAR's target (among relapses)",
    sweep.summary_key("relapse_antigen_negative"), proportion=True)


def relapse_by(route: str) -> sweep.Getter:
    """Whether a responder relapsed by ``route`` (``summary.json``'s ``relapse_route``); None without remission."""
    return lambda r: None if r.get("relapse") is None else bool(r.get("relapse") and r.get("relapse_route") == route)


ROUTE_RELAPSES = tuple(
    sweep.Outcome(f"relapse_{route.replace('-', '_')}", f"relapse, {label} (among responders)", relapse_by(route),
                  proportion=True)
    for route, label in (("antigen-positive", "target-positive"), ("preexisting", "pre-existing negative clone"),
                         ("mutation", "target lost in a division"), ("lineage", "lineage switch")))
OUTCOMES = (sweep.CR, sweep.MRD_NEGATIVE, sweep.MRD, sweep.RELAPSE, RELAPSE_DAY, TARGET_NEGATIVE_RELAPSE,
            *ROUTE_RELAPSES, sweep.SEVERE_CRS, sweep.BLOOD_PEAK)


def conditions(args) -> list[sweep.Condition]:
    loss = Params.default()["blast.cd19_loss_per_division"]
    cd19 = "CD19 CAR"
    rows = [
        ("CD19 CAR, no CD19- at infusion", cd19, 0.0, loss, "CD19"),
        ("CD19 CAR, 0.1 % CD19- at infusion", cd19, 1e-3, loss, "CD19"),
        ("CD19 CAR, 1 % CD19- at infusion", cd19, 1e-2, loss, "CD19"),
        (f"CD19 CAR, 1 % CD19-, loss {HIGH_LOSS:g}", cd19, 1e-2, HIGH_LOSS, "CD19"),
        (f"CD22 CAR, 1 % CD19-, loss {HIGH_LOSS:g}", "CD22 CAR", 1e-2, HIGH_LOSS, "CD22"),
        (f"CD19/CD22 CAR, 1 % CD19-, loss {HIGH_LOSS:g}", "dual CAR", 1e-2, HIGH_LOSS, "CD19/CD22"),
    ]
    return [
        sweep.Condition(label, {"patient.cd19_negative_fraction": negative, "blast.cd19_loss_per_division": rate,
                                "product.target": target},
                        {"cd19_negative_fraction": negative, "cd19_loss_per_division": rate, "target": target},
                        group=group)
        for label, group, negative, rate, target in rows
    ]


def setup(result: sweep.SweepResult) -> list[str]:
    return [f"{sweep.patients(result)} (CD22 median 3,500 molecules per blast, Haso 2013), "
            "with the CD19-negative fraction at infusion, the CD19 loss per blast division and the CAR's target set "
            "per condition (table below). A relapse is blasts back to >= 5 % after a CR; it is target-negative when "
            "blasts negative for the product's target(s) are the majority at that time. A CD22 or dual product "
            "tracks CD22 in the window (`patient.cd22_tracking`)."]


def finding(result: sweep.SweepResult) -> list[str]:
    lines = [f"Relapse after CR went from {sweep.span(result, 'relapse')} across the conditions; day-28 "
             f"MRD-negativity from {sweep.span(result, 'mrd_negative_day28')}."]
    single, dual = result.conditions[3], result.conditions[-1]
    lines.append(f"At the highest escape pressure the CD19 CAR gave relapse {sweep.count(result['relapse', single])} "
                 f"and the dual CD19/CD22 CAR {sweep.count(result['relapse', dual])}; day-28 MRD "
                 f"{common.fmt(result['mrd_day28', single].mean)} vs {common.fmt(result['mrd_day28', dual].mean)}.")
    return lines


SWEEP = sweep.Sweep(
    name=NAME, title="Antigen escape", description=__doc__, question=QUESTION, conditions=conditions,
    outcomes=OUTCOMES, setup=setup, finding=finding, x_label="condition", categorical=True,
    days=DAYS,
    series=(*common.DEFAULT_SERIES, "blasts_cd19neg", "blasts_target_neg"),
    time_course=("blasts_target_neg", "window blasts negative for the CAR's target"),
)


def main(argv: Sequence[str] | None = None) -> int:
    return sweep.run(SWEEP, argv)


if __name__ == "__main__":
    sys.exit(common.cli(main))
