"""CRS management: tocilizumab and steroid policies, and a severe-CRS predictor from days 1-3.

Runs ``n`` virtual patients of the ELIANA-like cohort (:func:`abm.cohort.sample_patient`:
weight, blast fraction, CD19 density, CD19-negative fraction, CAR-T fitness
and dose vary) under four policies, each patient with the same profile and
seed under every policy (a paired virtual trial, :mod:`experiments.sweep`),
for 28 days, in the converged 200 x 200 window (``--grid`` changes it); each
policy is compared with the label policy patient by patient:

- label (the defaults, after the tisagenlecleucel label: tocilizumab at CRS
  grade 3, corticosteroids at CRS or ICANS grade 3);
- CARTOX (tocilizumab at CRS grade 2, Neelapu 2018; steroids as by default);
- early tocilizumab (at CRS grade 1; steroids as by default);
- no anti-cytokine treatment (``therapy.tocilizumab_grade`` and
  ``therapy.steroids_grade`` 0: never).

It reports the CRS and ICANS maximum grades and rates against CR and MRD at
day 28 and the blood CAR-T peak and exposure, and fits a severe-CRS predictor:
a penalised logistic regression (:mod:`experiments.predictor`) of
``crs_max_grade >= 3`` under the label policy on log10 blood CAR-T
and log10 serum IL-6 on days 1, 2 and 3, trained on the first half of the
patients and scored by ROC AUC on the other half.

Run ``python -m experiments.crs_management`` (full study; see ``--help``), or
``--smoke`` for a seconds-long check of the machinery.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

import numpy as np

from abm.params import BY_KEY
from experiments import common, predictor, sweep

NAME = "crs_management"
TOCI, STEROIDS = "therapy.tocilizumab_grade", "therapy.steroids_grade"
POLICIES = (  # label, tocilizumab grade, steroids grade (0 = never)
    ("label", BY_KEY[TOCI].default, BY_KEY[STEROIDS].default),
    ("CARTOX", 2, BY_KEY[STEROIDS].default),
    ("early tocilizumab", 1, BY_KEY[STEROIDS].default),
    ("no tocilizumab or steroids", 0, 0),
)
FEATURE_DAYS = (1.0, 2.0, 3.0)
FEATURES = (("blood_cart_per_ul", "blood CAR-T"), ("serum_il6_pg_ml", "serum IL-6"))
LOG_FLOOR = 1e-3  # floor before log10 (cells/uL, pg/mL)
PENALTY = 1.0  # L2 penalty on the standardised coefficients
QUESTION = (
    "How do tocilizumab and steroid policies (at CRS grade 3 as by the tisagenlecleucel label, at grade 2 as by "
    "CARTOX, early at grade 1, or none) change CRS and ICANS grades, and what do they cost in remission and CAR-T "
    "expansion? And can severe CRS (grade >= 3) be predicted from blood CAR-T and serum IL-6 on days 1-3?"
)
OUTCOMES = (
    sweep.CRS_GRADE, sweep.SEVERE_CRS, sweep.ICANS_GRADE, sweep.ICANS_ANY, sweep.ICANS_SEVERE, sweep.CR, sweep.MRD,
    sweep.BLOOD_PEAK, sweep.EXPANSION,
    sweep.Outcome("tocilizumab_doses", "tocilizumab doses given", sweep.summary_key("tocilizumab_doses")),
    sweep.Outcome("steroids_given", "corticosteroids given", sweep.summary_key("steroids_given"), proportion=True),
)


def conditions(args) -> list[sweep.Condition]:
    return [sweep.Condition(label, {TOCI: toci, STEROIDS: steroids},
                            {"policy": label, "tocilizumab_grade": toci, "steroids_grade": steroids}, x=i)
            for i, (label, toci, steroids) in enumerate(POLICIES)]


def setup(result: sweep.SweepResult) -> list[str]:
    args = result.args
    return [
        f"{args.n} virtual patients from the ELIANA-like cohort of `abm.cohort.sample_patient` (cohort seed "
        f"{args.seed}; weight, marrow blast fraction, CD19 density, CD19-negative fraction, CAR-T proliferation "
        "and dose vary; each patient's profile is in `results.csv`), each treated under every policy with the "
        "same seed. Tocilizumab blocks the IL-6 signal while a dose acts and is repeated while CRS stays at the "
        "trigger (`therapy.tocilizumab_*`); corticosteroids damp CAR-T proliferation, activation, IL-6 "
        "production and the neurotoxic drive (`therapy.steroid_*`).",
        "CRS predictor: for each patient under the label policy, the features are log10 blood CAR-T "
        f"[cells/uL] and log10 serum IL-6 [pg/mL] (floored at {LOG_FLOOR:g}) on day(s) "
        f"{', '.join(f'{d:g}' for d in feature_days(args.days))}, the label is severe CRS (`crs_max_grade >= 3` "
        "over the whole run). A logistic regression with an L2 penalty of "
        f"{PENALTY:g} on standardised coefficients (NumPy, `experiments.predictor`) is fitted on the first half "
        "of the patients (patients 0 to n/2 - 1) and scored on the held-out second half by ROC AUC (ties count "
        "one half).",
    ]


# -- the predictor -------------------------------------------------------------------------------------------------
def feature_days(days: float) -> tuple[float, ...]:
    """Days 1-3 when the run reaches them; a shorter (smoke) run uses its last day."""
    return tuple(d for d in FEATURE_DAYS if d <= days + 1e-9) or (float(days),)


def features(run: sweep.Run, days: Sequence[float]) -> list[float]:
    out = []
    for day in days:
        for name, _ in FEATURES:
            value = sweep.series_value(run, name, day)
            out.append(math.nan if value is None else math.log10(max(value, LOG_FLOOR)))
    return out


def feature_names(days: Sequence[float]) -> list[str]:
    return [f"log10_{name}_day{day:g}" for day in days for name, _ in FEATURES]


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def analyse(result: sweep.SweepResult) -> sweep.Analysis:
    """Fit the severe-CRS predictor on the label arm and score it on held-out patients."""
    f = common.fmt
    arm = result.conditions[0]
    runs = sorted(result.runs(arm), key=lambda r: r["patient_id"])
    days = feature_days(result.args.days)
    names = feature_names(days)
    x = np.array([features(r, days) for r in runs], dtype=float)
    y = np.array([bool(r["crs_max_grade"] >= 3) for r in runs])
    train = np.array([r["patient_id"] < len(runs) // 2 for r in runs])
    test = ~train
    early = sum(bool(np.max(np.asarray(r["series"]["crs_grade"])[np.asarray(r["series"]["day"]) <= days[-1]] >= 3))
                for r in runs)
    model, reason = None, ""
    if train.sum() < 2 or test.sum() < 1:
        reason = f"too few patients ({len(runs)}) to split into a training and a test half"
    elif not np.isfinite(x).all():
        reason = "the runs do not record every feature day"
    elif y[train].all() or not y[train].any():
        reason = f"every training patient had the same label ({int(y[train].sum())}/{int(train.sum())} severe)"
    else:
        model = predictor.fit_logistic(x[train], y[train], penalty=PENALTY)
    prob = model.probability(x) if model is not None else np.full(len(runs), np.nan)
    auc = predictor.roc_auc(prob[test], y[test]) if model is not None else math.nan
    if model is not None and math.isnan(auc):
        reason = f"every held-out patient had the same label ({int(y[test].sum())}/{int(test.sum())} severe)"
    single = {n: predictor.roc_auc(x[test, j], y[test]) for j, n in enumerate(names)}
    values = {"auc": auc, "n_train": int(train.sum()), "n_test": int(test.sum()),
              "severe_train": int(y[train].sum()), "severe_test": int(y[test].sum()), "reason": reason,
              "early_severe": early, "feature_days": list(days)}
    lines = ["## CRS predictor", "",
             f"Severe CRS under the label policy: {int(y[train].sum())}/{int(train.sum())} training and "
             f"{int(y[test].sum())}/{int(test.sum())} held-out patients; {early}/{len(runs)} had already reached "
             f"grade 3 by day {f(days[-1])} (for them the early measurements are concurrent, not predictive).", ""]
    if math.isnan(auc):
        lines += [f"Held-out ROC AUC: not defined: {reason}.", ""]
    else:
        lines += [f"Held-out ROC AUC of the logistic model: **{f(auc)}** ({int(test.sum())} patients, "
                  f"{int(y[test].sum())} with severe CRS; 0.5 is chance).", ""]
    lines += ["| feature | coefficient (standardised) | held-out AUC of the feature alone |", "|---|---|---|"]
    for j, n in enumerate(names):
        coef = f(float(model.coef[j])) if model is not None else "-"
        lines.append(f"| `{n}` | {coef} | {f(single[n])} |")
    if model is not None:
        lines.append(f"| intercept | {f(model.intercept)} | |")
    table = common.csv_text(
        ["patient_id", "seed", "split", *names, "crs_max_grade", "severe_crs", "probability"],
        [{"patient_id": r["patient_id"], "seed": r["seed"], "split": "train" if train[i] else "test",
          **{n: x[i, j] for j, n in enumerate(names)}, "crs_max_grade": r["crs_max_grade"],
          "severe_crs": bool(y[i]), "probability": "" if math.isnan(prob[i]) else prob[i]}
         for i, r in enumerate(runs)])

    def roc_panel(ax) -> None:
        fpr, tpr = predictor.roc_curve(prob[test], y[test]) if model is not None else ([], [])
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        if len(fpr):
            ax.plot(fpr, tpr, color="black", lw=1.5, marker="o", ms=3, label=f"AUC {f(auc)}")
            ax.legend(fontsize=6, loc="lower right")
        else:
            ax.text(0.5, 0.5, "AUC not defined:\n" + reason, transform=ax.transAxes, ha="center", fontsize=6,
                    wrap=True)
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"severe-CRS predictor, held-out ROC (days {', '.join(f'{d:g}' for d in days)})", fontsize=8)
        ax.set_xlabel("false-positive rate", fontsize=8)
        ax.set_ylabel("true-positive rate", fontsize=8)
        ax.tick_params(labelsize=7)

    return sweep.Analysis(
        sections=tuple(lines), tables={"predictor.csv": table},
        files=("- `predictor.csv`: one row per patient under the label policy: split, features, label "
               "and predicted probability of severe CRS;",),
        provenance={"predictor": {**{k: (_finite(v) if isinstance(v, float) else v) for k, v in values.items()},
                                  "features": names, "penalty": PENALTY,
                                  "single_feature_auc": {n: _finite(v) for n, v in single.items()}}},
        values=values, panels=(roc_panel,))


def finding(result: sweep.SweepResult) -> list[str]:
    f = common.fmt
    conds = result.conditions
    per = "; ".join(
        f"{c.label}: severe CRS {sweep.count(result['severe_crs', c])}, mean CRS grade "
        f"{f(result['crs_max_grade', c].mean)}, mean ICANS grade {f(result['icans_max_grade', c].mean)}, "
        + (f"CR {sweep.count(result['cr_day28', c])}, " if result["cr_day28", c].n else "")
        + f"mean blood CAR-T peak {f(result['cart_peak_blood_per_ul', c].mean)} cells/uL" for c in conds)
    v = result.analysis.values
    days = ", ".join(f"{d:g}" for d in v["feature_days"])
    if math.isnan(v["auc"]):
        pred = f"The severe-CRS predictor (day {days} blood CAR-T and IL-6) could not be scored: {v['reason']}."
    else:
        pred = (f"Severe CRS was predicted from day {days} blood CAR-T and serum IL-6 with a held-out ROC AUC of "
                f"{f(v['auc'])} ({v['n_test']} patients, {v['severe_test']} severe).")
    return [f"Per policy ({result.args.n} patients each): {per}.", pred]


SWEEP = sweep.Sweep(
    name=NAME, title="CRS management", description=__doc__, question=QUESTION, conditions=conditions,
    outcomes=OUTCOMES, setup=setup, finding=finding, categorical=True, x_label="policy",
    smoke_n=6, analyse=analyse,
    series=(*common.DEFAULT_SERIES, "serum_il6_pg_ml", "crs_grade", "icans_grade", "tocilizumab_doses",
            "steroids_on"),
    provenance=lambda result: {"policies": [{"label": label, TOCI: toci, STEROIDS: steroids}
                                            for label, toci, steroids in POLICIES]},
)


def main(argv: Sequence[str] | None = None) -> int:
    return sweep.run(SWEEP, argv)


if __name__ == "__main__":
    sys.exit(common.cli(main))
