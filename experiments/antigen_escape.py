"""Antigen escape by route, and which product covers which route.

Runs a paired virtual trial (:mod:`experiments.sweep`: ``n`` virtual
patients of the cohort, default 40, each in every arm with the same profile
and seed, the arm's values replacing the patient's) under a CD19 CAR with one
escape route at a time -- CD19-negative (or exon-2-skipped) blasts already
present at infusion (``patient.cd19_negative_fraction`` 1 %), acquired CD19
loss at division (``blast.cd19_loss_per_division`` 1e-3), lineage switch of a
KMT2A-rearranged leukemia (every patient rearranged,
``blast.lineage_switch_per_division`` 1e-4), reversible down-regulation by
trogocytosis (``cart.trogocytosis_fraction`` 0.3) and epitope masking by one
CAR-transduced blast in the product (``product.transduced_blasts`` 1) --
then with all routes but masking at once under a CD19, a CD22 and a dual
CD19/CD22 (OR-gate) CAR (``product.target``), each arm against the CD19 CAR
with none of them, patient by patient, for ``--days`` (default 90, so that
relapses can show). It reports CR and MRD at day 28, relapse after CR and its
day, whether relapses are negative for the product's target, and relapse by
escape route (``relapse_route``: target-positive, pre-existing negative clone,
target lost in a division, lineage switch, down-regulation, masking; each a
yes/no per responder, so the arms pair); the time course is the window's
target-negative blasts. The rates are values inside the ranges the
recalibration searches (``abm.calibration.NEXT_PRIORS``), not fitted ones.

Run ``python -m experiments.antigen_escape`` (full study; see ``--help``), or
``--smoke`` for a seconds-long check of the machinery.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from abm.calibration import PRIOR_BY_KEY
from experiments import common, sweep

NAME = "antigen_escape"
DAYS = 90.0
HIGH_LOSS = 1e-3  # per division: acquired CD19 (or CD22) loss
NEGATIVE_AT_INFUSION = 1e-2  # share of blasts lacking CD19 (or CD22) before infusion
SWITCH = 1e-4  # per division of a KMT2A-rearranged blast
TROGOCYTOSIS = 0.3  # share of the bound antigen stripped per engagement
QUESTION = (
    "How does each route of antigen escape (pre-existing negative clones, acquired loss, lineage switch, "
    "down-regulation by trogocytosis, epitope masking) shape relapse, its timing and its antigen phenotype under "
    "a CD19 CAR, and which routes does a CD22 or dual CD19/CD22 CAR cover?"
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
                         ("mutation", "target lost in a division"), ("lineage", "lineage switch"),
                         ("downregulation", "down-regulated by trogocytosis"), ("masking", "masked by the CAR")))
OUTCOMES = (sweep.CR, sweep.MRD_NEGATIVE, sweep.MRD, sweep.RELAPSE, RELAPSE_DAY, TARGET_NEGATIVE_RELAPSE,
            *ROUTE_RELAPSES, sweep.SEVERE_CRS, sweep.BLOOD_PEAK)
FLOOR = PRIOR_BY_KEY["blast.cd19_loss_per_division"].low  # the lowest loss per division the calibration allows
NONE = {"patient.cd19_negative_fraction": 0.0, "patient.cd22_negative_fraction": 0.0,
        "blast.cd19_loss_per_division": FLOOR, "blast.cd22_loss_per_division": FLOOR,
        "blast.lineage_switch_per_division": 0.0, "cart.trogocytosis_fraction": 0.0,
        "product.transduced_blasts": 0.0}
ROUTES = {
    "pre-existing CD19-": {"patient.cd19_negative_fraction": NEGATIVE_AT_INFUSION},
    "CD19 loss": {"blast.cd19_loss_per_division": HIGH_LOSS},
    "lineage switch": {"patient.kmt2a_rearranged": True, "blast.lineage_switch_per_division": SWITCH},
    "trogocytosis": {"cart.trogocytosis_fraction": TROGOCYTOSIS},
    "masked blast": {"product.transduced_blasts": 1.0},
}
# every route but masking, with CD22 as exposed as CD19 (the same negative share and loss), for the products
ALL = {**ROUTES["pre-existing CD19-"], **ROUTES["CD19 loss"], **ROUTES["lineage switch"], **ROUTES["trogocytosis"],
       "patient.cd22_negative_fraction": NEGATIVE_AT_INFUSION, "blast.cd22_loss_per_division": HIGH_LOSS}


COORDS = (*NONE, "patient.kmt2a_rearranged", "product.target")


def conditions(args) -> list[sweep.Condition]:
    rows = [("CD19 CAR, no escape route", "CD19 CAR", {}, "CD19")]
    rows += [(f"CD19 CAR, {route}", "CD19 CAR", values, "CD19") for route, values in ROUTES.items()]
    rows += [(f"{target} CAR, all routes but masking", "all routes", ALL, target)
             for target in ("CD19", "CD22", "CD19/CD22")]
    conditions = []
    for label, group, values, target in rows:
        overrides = {**NONE, **values, "product.target": target}
        coords = {key.split(".")[1]: overrides.get(key) for key in COORDS}  # None: the patient's own
        conditions.append(sweep.Condition(label, overrides, coords, group=group))
    return conditions


def setup(result: sweep.SweepResult) -> list[str]:
    return [f"{sweep.patients(result)} (CD22 median 3,500 molecules per blast, Haso 2013), "
            "with the escape routes set per arm (table below; every other route off, CD19 and CD22 loss at the "
            "calibrated floor). A relapse is blasts back to >= 5 % after a CR; it is target-negative when blasts "
            "negative for the product's target(s) are the majority at that time, and down-regulated when most "
            "blasts carry less of the target than their genes make. A CD22 or dual product tracks CD22 in the "
            "window (`patient.cd22_tracking`)."]


def finding(result: sweep.SweepResult) -> list[str]:
    def extremes(key: str) -> str:
        def rate(c: sweep.Condition) -> float:
            return result[key, c].mean

        low, high = min(result.conditions, key=rate), max(result.conditions, key=rate)  # the first at a tie
        return (f"{sweep.count(result[key, low])} ({low.label}) to {sweep.count(result[key, high])} "
                f"({high.label})")

    lines = [f"Relapse after CR ranged from {extremes('relapse')} across the arms; day-28 MRD-negativity from "
             f"{extremes('mrd_negative_day28')}."]
    single, cd22, dual = result.conditions[-3:]
    lines.append(f"With every route but masking, relapse was {sweep.count(result['relapse', single])} under the "
                 f"CD19 CAR, {sweep.count(result['relapse', cd22])} under the CD22 CAR and "
                 f"{sweep.count(result['relapse', dual])} under the dual CAR; by lineage switch "
                 f"{sweep.count(result['relapse_lineage', single])}, "
                 f"{sweep.count(result['relapse_lineage', cd22])} and {sweep.count(result['relapse_lineage', dual])}.")
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
