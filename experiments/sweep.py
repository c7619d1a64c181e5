"""Paired virtual trials: arms x the same virtual patients, declared rather than coded.

Most experiments ask how outcomes change across a few *arms* (conditions: a
dose, a schedule, a binder, a policy). A sweep experiment declares only what
is particular to it, in a :class:`Sweep`:

- its question and a generator of its setup paragraph;
- its conditions (:class:`Condition`: a label, parameter overrides, the
  coordinates that name it in the long result table, and its place in the
  figure: an x value and a group);
- its outcomes (:class:`Outcome`: how to read one from a run's summary or time
  series, and whether it is a proportion); the usual ones are defined here
  (:data:`CR`, :data:`SEVERE_CRS`, :data:`BLOOD_PEAK`, ...);
- a finding generator: one or two sentences built from the numbers;
- its reference arm (:attr:`Sweep.reference`; default the first), against
  which every other arm is compared patient by patient;
- optionally its own options, notes, and an :class:`Analysis` that adds
  tables, README sections and figure panels (a predictor, for instance).

Designs (``--design``)
    ``cohort`` (the default): patient ``r`` of every arm is virtual patient
    ``r`` of the ELIANA-like cohort drawn with ``--seed``
    (:func:`abm.cohort.sample_patient`: weight, marrow burden, CD19 density,
    CD19-negative fraction, T-cell fitness, dose, host cytokine response,
    division destiny) and runs with that patient's seed
    (:func:`abm.cohort.patient_seed`): the same patients and random numbers in
    every arm (common random numbers). The profile is drawn on the arm's
    parameters, so a per-patient factor (T-cell fitness, host cytokine
    response) scales the arm's value, and a key the arm sets (the dose of a
    dose arm, the burden of a burden arm) replaces the patient's value: a
    covariate study sets that covariate on otherwise sampled patients.
    ``replicate``: one default patient with ``--n`` lattice seeds
    (``seed_for(base, r)``); its intervals measure lattice noise, not a
    difference between patients, and its README says so.

:func:`run` does the rest, with the shared machinery of :mod:`experiments.common`:

1. the command line of :func:`experiments.common.make_parser` plus the sweep's
   options (bad input raises :class:`~abm.errors.ParamError`: exit status 2,
   nothing written; every run's parameters are validated before any run);
2. the jobs: every arm x patient (above); ``--smoke`` adds ``grid.size`` =
   :attr:`Sweep.smoke_grid` to every run, a full run :attr:`Sweep.grid`
   (default :data:`COHORT_GRID`, the converged window) and ``--grid``
   overrides both; finished runs are kept beside ``--out``, so a stopped
   study resumes (:func:`experiments.common.run_all`);
3. per outcome and arm a proportion with its Wilson 95 % interval or a mean
   with its Student-t 95 % interval (:func:`estimates`), and per outcome and
   arm other than the reference the paired difference against the reference
   with its bootstrap 95 % interval, plus the exact McNemar p of a yes/no
   outcome (:func:`paired_estimates`, :mod:`abm.paired`);
4. the outputs of :func:`experiments.common.write_results`: ``results.csv``,
   ``timeseries.csv.gz``, ``<name>.csv`` (the result table in long form:
   outcome, the condition's coordinates, n, mean, lo, hi, interval),
   ``paired.csv`` (the paired differences), any tables of the analysis,
   ``figure.png`` (one panel per outcome against the condition, the patients
   as points and the estimate with its interval, plus a time course),
   ``provenance.json`` and the generated ``README.md``: question, setup, the
   conditions and their overrides, outcome definitions, the result table, the
   paired differences and which arms differ, the finding, notes, figure,
   files, wall time and provenance. No number in it is typed by hand.

A sweep module is then short::

    SWEEP = sweep.Sweep(name="tumor_burden", title="Tumour burden", description=__doc__, question=QUESTION,
                        conditions=conditions, outcomes=(sweep.CR, sweep.SEVERE_CRS, sweep.BLOOD_PEAK),
                        setup=setup, finding=finding, x_label="marrow blast fraction")

    def main(argv=None):
        return sweep.run(SWEEP, argv)

    if __name__ == "__main__":
        sys.exit(common.cli(main))
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from abm import paired
from abm.cohort import patient_seed, sample_patient
from abm.errors import ParamError
from abm.outcomes import CART_DETECTION_PER_UL, MRD_THRESHOLD, RESPONSE_DAY
from abm.params import BY_KEY, Params
from abm.rows import grade_at_least
from experiments import common

Run = Mapping[str, Any]  # one run's result: summary keys, overrides, series (see common.run_condition)
Getter = Callable[[Run], Any]
DESIGNS = ("cohort", "replicate")
COHORT_N = 40  # patients per arm of a full study: a rate near 0.5 then has a Wilson interval of about +-0.15
# window side of full-size runs: experiments/results/window_convergence (200 agrees with 400 and 800 on all 11
# outcomes), the side of the calibration report
COHORT_GRID = 200


# -- outcomes ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """One reported outcome: how to read it from a run, and how to summarise and draw it.

    ``get`` returns a bool for a proportion (``proportion=True``: Wilson
    interval), a number for a mean (Student-t interval), or None where the
    outcome is not defined for that run (left out, and the table says ``n``).
    """

    key: str
    label: str
    get: Getter
    proportion: bool = False
    unit: str = ""
    log: bool = False  # log y axis in the figure


def summary_key(key: str) -> Getter:
    """The run's ``summary.json`` value ``key`` (None when missing)."""
    return lambda r: r.get(key)


def series_value(run: Run, name: str, day: float) -> float | None:
    """Observable ``name`` at the observation nearest ``day`` (within half an observation interval), else None."""
    s = run.get("series", {})
    days = np.asarray(s.get("day", ()), dtype=float)
    if name not in s or days.size == 0:
        return None
    i = int(np.argmin(np.abs(days - day)))
    spacing = float(np.median(np.diff(days))) if days.size > 1 else 0.0
    if abs(days[i] - day) > max(spacing / 2.0, 1e-9):
        return None
    return float(s[name][i])


def series_final(run: Run, name: str) -> float | None:
    """Observable ``name`` at the run's last observation (None when not recorded)."""
    values = run.get("series", {}).get(name)
    return float(values[-1]) if values else None


CR = Outcome("cr_day28", "CR at day 28 (blast fraction < 5 %)", summary_key("cr_day28"), proportion=True)
MRD_NEGATIVE = Outcome("mrd_negative_day28", "MRD-negative at day 28 (< 0.01 %)",
                       summary_key("mrd_negative_day28"), proportion=True)
MRD = Outcome("mrd_day28", "marrow blast fraction at day 28 (MRD)", summary_key("mrd_day28"), log=True)
SEVERE_CRS = Outcome("severe_crs", "severe CRS (max grade >= 3)", grade_at_least("crs_max_grade", 3),
                     proportion=True)
CRS_GRADE = Outcome("crs_max_grade", "CRS maximum grade (ASTCT 0-4)", summary_key("crs_max_grade"))
CRS_ONSET = Outcome("crs_onset_day", "CRS onset (first grade >= 1)", summary_key("crs_onset_day"), unit="d")
ICANS_ANY = Outcome("icans_any", "ICANS, any grade (max grade >= 1)", grade_at_least("icans_max_grade", 1),
                    proportion=True)
ICANS_SEVERE = Outcome("icans_severe", "ICANS grade >= 3", grade_at_least("icans_max_grade", 3), proportion=True)
ICANS_GRADE = Outcome("icans_max_grade", "ICANS maximum grade (ASTCT 0-4)", summary_key("icans_max_grade"))
BLOOD_PEAK = Outcome("cart_peak_blood_per_ul", "blood CAR-T peak (Cmax)", summary_key("cart_peak_blood_per_ul"),
                     unit="cells/uL", log=True)
PEAK_DAY = Outcome("cart_peak_day", "day of the blood CAR-T peak (Tmax)", summary_key("cart_peak_day"), unit="d")
EXPANSION = Outcome("cart_auc_28", "blood CAR-T exposure, AUC days 0-28", summary_key("cart_auc_28"),
                    unit="cells/uL x d", log=True)
PERSISTENCE = Outcome("cart_persistence_day", f"last day with blood CAR-T >= {CART_DETECTION_PER_UL:g}/uL",
                      summary_key("cart_persistence_day"), unit="d")
APLASIA = Outcome("b_cell_aplasia_days", "B-cell aplasia (B-cell share of normal marrow < 10 % of day 0)",
                  summary_key("b_cell_aplasia_days"), unit="d")
RELAPSE = Outcome("relapse", "relapse after CR (among runs that reached CR)", summary_key("relapse"),
                  proportion=True)


# -- conditions and the sweep ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Condition:
    """One condition of a sweep.

    ``overrides`` are its parameter values (keys of :mod:`abm.params`);
    ``coords`` name it in the long table ``<name>.csv`` (e.g.
    ``{"dose_per_kg": 1e5}``); ``x`` is its position on the figure's x axis
    (ignored for categorical sweeps, which use the condition's index) and
    ``group`` its series (one line and colour per group).
    """

    label: str
    overrides: Mapping[str, Any]
    coords: Mapping[str, Any]
    x: float = 0.0
    group: str = ""


@dataclass(frozen=True)
class Analysis:
    """What an experiment adds beyond the per-condition table (e.g. a predictor fitted on the runs)."""

    sections: tuple[str, ...] = ()  # README lines, placed after the finding
    tables: Mapping[str, str] = field(default_factory=dict)  # extra files: name -> CSV text
    files: tuple[str, ...] = ()  # lines of the README's file list describing them
    provenance: Mapping[str, Any] = field(default_factory=dict)  # JSON-able (no NaN) entries for provenance.json
    values: Mapping[str, Any] = field(default_factory=dict)  # numbers the finding generator may quote
    panels: tuple[Callable[[Any], None], ...] = ()  # extra figure panels: each draws on one Matplotlib axes


@dataclass(frozen=True)
class Sweep:
    """Declaration of a sweep experiment (see the module docstring)."""

    name: str
    title: str
    description: str  # the module docstring: --help text
    question: str
    conditions: Callable[[argparse.Namespace], Sequence[Condition]]
    outcomes: tuple[Outcome, ...]
    setup: Callable[[SweepResult], Sequence[str]]  # paragraphs opening the README's setup
    finding: Callable[[SweepResult], Sequence[str]]  # sentences of the README's finding
    x_label: str = "condition"
    x_log: bool = False
    categorical: bool = False  # conditions side by side (x = their index), not on a numeric axis
    default_n: int = COHORT_N
    days: float = 28.0
    workers: int = 2
    smoke_n: int = 2
    smoke_days: float = 1.0
    smoke_grid: int = 32
    grid: int | None = COHORT_GRID  # window side of full-size runs (None: the default grid.size); --grid overrides
    series: tuple[str, ...] = common.DEFAULT_SERIES
    time_course: tuple[str, str] = ("blood_cart_per_ul", "blood CAR-T [cells/uL]")  # observable, panel title
    options: Callable[[argparse.ArgumentParser], None] | None = None
    reference: Callable[[Sequence[Condition]], Condition] | None = None  # default: the first condition
    notes: Callable[[SweepResult], Sequence[str]] | None = None  # default: standard_notes
    analyse: Callable[[SweepResult], Analysis] | None = None
    provenance: Callable[[SweepResult], Mapping[str, Any]] | None = None
    figure_note: str = ""


@dataclass(frozen=True)
class Paired:
    """One arm against the reference on one outcome: the paired difference and, for a yes/no outcome, McNemar."""

    difference: paired.Difference
    mcnemar: paired.McNemar | None = None

    @property
    def detected(self) -> bool:
        """Whether the arms differ at the 5 % level.

        Yes/no outcomes: exact McNemar p < 0.05 (the bootstrap interval of a
        difference of rates is too narrow with few discordant pairs); means:
        the 95 % interval excludes 0.
        """
        if self.mcnemar is not None:
            return self.difference.pairs > 0 and self.mcnemar.p < 0.05
        return self.difference.detected


@dataclass
class SweepResult:
    """A finished sweep: its runs (in job order) and their estimates, for the generators of the README."""

    sweep: Sweep
    args: argparse.Namespace
    conditions: tuple[Condition, ...]
    results: list[dict[str, Any]]
    wall_s: float
    est: dict[str, dict[str, common.Estimate]]  # outcome key -> condition label -> estimate
    reference: Condition | None = None
    paired: dict[str, dict[str, Paired]] = field(default_factory=dict)  # outcome -> other arm -> comparison
    analysis: Analysis = field(default_factory=Analysis)

    def runs(self, condition: Condition | str) -> list[dict[str, Any]]:
        label = condition if isinstance(condition, str) else condition.label
        return [r for r in self.results if r["arm"] == label]

    def __getitem__(self, key: tuple[str, Condition | str]) -> common.Estimate:
        """``result["cr_day28", condition]``: the estimate of an outcome in a condition."""
        outcome, condition = key
        return self.est[outcome][condition if isinstance(condition, str) else condition.label]


# -- option helpers -------------------------------------------------------------------------------------------
def parse_values(text: str | None, option: str, default: Sequence[float], *, key: str | None = None,
                 low: float | None = None, high: float | None = None, min_count: int = 2) -> tuple[float, ...]:
    """Comma-separated numbers of ``option`` (sorted, distinct), within ``key``'s declared range or [low, high].

    ``None`` gives ``default``. Raises :class:`ParamError` naming the option.
    """
    if key is not None:
        low = BY_KEY[key].low if low is None else low
        high = BY_KEY[key].high if high is None else high
    if text is None:
        return tuple(default)
    where = f"in [{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"
    expected = f"expected at least {min_count} distinct comma-separated numbers {where}"
    try:
        values = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ParamError(f"{option} = {text!r}: {expected}") from None
    if (len(values) < min_count or len(set(values)) != len(values)
            or any(not math.isfinite(v) for v in values)
            or any((low is not None and v < low) or (high is not None and v > high) for v in values)):
        raise ParamError(f"{option} = {text!r}: {expected}")
    return tuple(sorted(values))


# -- running ---------------------------------------------------------------------------------------------------
def build_parser(spec: Sweep) -> argparse.ArgumentParser:
    parser = common.make_parser(spec.name, spec.description, n=spec.default_n, days=spec.days,
                                workers=spec.workers)
    default = f"{spec.grid}" if spec.grid else f"the default grid.size, {BY_KEY['grid.size'].default}"
    parser.add_argument("--grid", type=int, default=None,
                        help=f"window side of every run (default {default}; --smoke: {spec.smoke_grid})")
    parser.add_argument("--design", choices=DESIGNS, default="cohort",
                        help="cohort (default): patient r of every arm is virtual patient r of the cohort drawn "
                             "with --seed, with its own seed; replicate: one default patient with --n lattice "
                             "seeds (lattice noise only)")
    if spec.options is not None:
        spec.options(parser)
    return parser


def jobs_for(spec: Sweep, args: argparse.Namespace, conditions: Sequence[Condition]) -> list[common.Job]:
    """Every (arm, patient) run, validated; patient r has the same profile and seed in every arm (see Designs)."""
    labels = [c.label for c in conditions]
    if not labels or len(set(labels)) != len(labels):
        raise ParamError(f"conditions {labels}: expected at least one condition and distinct labels")
    base = Params.default()
    grid = args.grid or (spec.smoke_grid if args.smoke else spec.grid)
    jobs = []
    for c in conditions:
        arm = base.replace(dict(c.overrides))  # a patient's factors scale the arm's values
        for r in range(args.n):
            overrides = dict(c.overrides)
            if args.design == "cohort":
                for key, value in sample_patient(args.seed, r, arm).items():
                    overrides.setdefault(key, value)  # what the arm sets replaces the patient's value
                seed = patient_seed(args.seed, r)
            else:
                seed = common.seed_for(args.seed, r)
            if grid:
                overrides["grid.size"] = grid
            base.replace({**overrides, "time.days": float(args.days)})  # bad values exit 2 before any run
            jobs.append(common.Job(c.label, overrides, r, seed, args.days, series=spec.series))
    return jobs


def estimates(outcomes: Sequence[Outcome], conditions: Sequence[Condition],
              results: Sequence[Run]) -> dict[str, dict[str, common.Estimate]]:
    """Per outcome and condition: proportion (Wilson) or mean (Student-t) with its 95 % interval."""
    out: dict[str, dict[str, common.Estimate]] = {}
    for o in outcomes:
        out[o.key] = {}
        for c in conditions:
            values = [o.get(r) for r in results if r["arm"] == c.label]
            if o.proportion:
                out[o.key][c.label] = common.proportion_interval(values)
            else:
                out[o.key][c.label] = common.mean_interval(float(v) for v in values if v is not None)
    return out


def reference_of(spec: Sweep, conditions: Sequence[Condition]) -> Condition:
    return conditions[0] if spec.reference is None else spec.reference(conditions)


def outcome_values(o: Outcome, runs: Mapping[int, Run], patients: Sequence[int]) -> list[float | None]:
    """``o`` for each patient (1/0 for a yes/no outcome; None where it is not defined)."""
    values = []
    for p in patients:
        v = o.get(runs[p])
        values.append(None if v is None or (isinstance(v, float) and math.isnan(v))
                      else float(bool(v)) if o.proportion else float(v))
    return values


def paired_estimates(outcomes: Sequence[Outcome], conditions: Sequence[Condition], reference: Condition,
                     results: Sequence[Run]) -> dict[str, dict[str, Paired]]:
    """Per outcome and arm other than ``reference``: the paired comparison over the patients both arms ran."""
    by_arm = {c.label: {r["patient_id"]: r for r in results if r["arm"] == c.label} for c in conditions}
    out: dict[str, dict[str, Paired]] = {}
    for o in outcomes:
        out[o.key] = {}
        for c in conditions:
            if c.label == reference.label:
                continue
            patients = sorted(set(by_arm[reference.label]) & set(by_arm[c.label]))
            a = outcome_values(o, by_arm[reference.label], patients)
            b = outcome_values(o, by_arm[c.label], patients)
            out[o.key][c.label] = Paired(paired.paired_difference(a, b),
                                         paired.mcnemar(a, b) if o.proportion else None)
    return out


def run(spec: Sweep, argv: Sequence[str] | None = None) -> int:
    """Parse, run every job, analyse, and write the experiment's folder; the ``main`` of a sweep module."""
    args = common.parse_args(build_parser(spec), argv, smoke_n=spec.smoke_n, smoke_days=spec.smoke_days)
    conditions = tuple(spec.conditions(args))
    jobs = jobs_for(spec, args, conditions)
    unit = "patients" if args.design == "cohort" else "seeds of one patient"
    print(f"{spec.name}: {len(jobs)} runs ({len(conditions)} arms x {args.n} {unit}, {args.days:g} days) on "
          f"{args.workers} worker(s) -> {args.out}", file=sys.stderr)
    results, wall = common.run_all(jobs, args.workers, progress=not args.quiet, scheduler=args.scheduler,
                                   resume=args.out)
    reference = reference_of(spec, conditions)
    result = SweepResult(spec, args, conditions, results, wall, estimates(spec.outcomes, conditions, results),
                         reference, paired_estimates(spec.outcomes, conditions, reference, results))
    if spec.analyse is not None:
        result.analysis = spec.analyse(result)
    prov = common.provenance(args, results, wall, argv)
    prov["conditions"] = [{"label": c.label, "overrides": dict(c.overrides)} for c in conditions]
    prov["design"] = args.design
    prov["reference_arm"] = reference.label
    if spec.provenance is not None:
        prov.update(spec.provenance(result))
    prov.update(result.analysis.provenance)
    common.write_results(args.out, results, figure=make_figure(result), readme=readme_text(result, prov),
                         provenance=prov,
                         extra_csv={f"{spec.name}.csv": table_csv(result), "paired.csv": paired_csv(result),
                                    **result.analysis.tables}, series_every_h=args.series_every)
    print(f"{spec.name}: wrote {args.out} ({wall:.0f} s)", file=sys.stderr)
    return 0


# -- tables and sentences ----------------------------------------------------------------------------------------
def table_csv(result: SweepResult) -> str:
    """The result table in long form: outcome, the condition's coordinates, n, mean, lo, hi, interval."""
    coords: list[str] = []
    for c in result.conditions:
        coords += [k for k in c.coords if k not in coords]
    rows = []
    for o in result.sweep.outcomes:
        for c in result.conditions:
            e = result[o.key, c]
            rows.append({"outcome": o.key, **{k: c.coords.get(k, "") for k in coords}, "n": e.n, "mean": e.mean,
                         "lo": e.lo, "hi": e.hi, "interval": e.method})
    return common.csv_text(["outcome", *coords, "n", "mean", "lo", "hi", "interval"], rows)


def paired_csv(result: SweepResult) -> str:
    """The paired differences in long form: outcome, arm, reference, pairs, both means, difference and interval."""
    columns = ["outcome", "arm", "reference", "pairs", "reference_mean", "arm_mean", "difference", "lo", "hi",
               "detected", "reference_only", "arm_only", "mcnemar_p"]
    rows = []
    for o in result.sweep.outcomes:
        for arm, cmp in result.paired.get(o.key, {}).items():
            d, m = cmp.difference, cmp.mcnemar
            rows.append({"outcome": o.key, "arm": arm, "reference": result.reference.label, "pairs": d.pairs,
                         "reference_mean": d.reference_mean, "arm_mean": d.other_mean, "difference": d.difference,
                         "lo": d.low, "hi": d.high, "detected": cmp.detected,
                         "reference_only": "" if m is None else m.reference_only,
                         "arm_only": "" if m is None else m.other_only, "mcnemar_p": "" if m is None else m.p})
    return common.csv_text(columns, rows)


def paired_cell(cmp: Paired) -> str:
    """``d [lo, hi]``, bold when the arms differ (:attr:`Paired.detected`); yes/no outcomes add McNemar's counts."""
    d, m = cmp.difference, cmp.mcnemar
    if d.pairs == 0:
        return "- (0 pairs)"
    text = f"{common.fmt(d.difference)} [{common.fmt(d.low)}, {common.fmt(d.high)}]"
    if cmp.detected:
        text = f"**{text}**"
    if m is not None:
        text += f" ({m.reference_only}/{m.other_only}, p {common.fmt(m.p, 2)})"
    return text


def differences_sentences(result: SweepResult) -> list[str]:
    """Which arms differ from the reference, and on what; how many comparisons differ against chance."""
    spec, ref = result.sweep, result.reference
    others = [c for c in result.conditions if c.label != ref.label]
    if not others:
        return []
    total = sum(1 for o in spec.outcomes for c in others if result.paired[o.key][c.label].difference.pairs)
    found = 0
    lines = []
    for c in others:
        hits = [(o, result.paired[o.key][c.label].difference) for o in spec.outcomes
                if result.paired[o.key][c.label].detected]
        found += len(hits)
        if hits:
            what = "; ".join(f"`{o.key}` {'+' if d.difference > 0 else ''}{common.fmt(d.difference)} "
                             f"[{common.fmt(d.low)}, {common.fmt(d.high)}]" for o, d in hits)
            lines.append(f"**{c.label}** differs from {ref.label} in {what}.")
        else:
            lines.append(f"**{c.label}**: no difference from {ref.label} detected on any outcome.")
    lines.append(f"{found} of {total} paired comparisons differ at the 5 % level; with no real difference anywhere "
                 f"about {common.fmt(total / 20, 2)} would by chance alone (not corrected for the number of "
                 "comparisons).")
    return lines


def count(e: common.Estimate) -> str:
    """``k/n`` of a proportion (``-`` when no run defines it)."""
    return "-" if e.n == 0 else f"{round(e.mean * e.n)}/{e.n}"


def proportion_cell(e: common.Estimate) -> str:
    return "- (0 defined)" if e.n == 0 else f"{count(e)} = {common.fmt_estimate(e)}"


def trend(values: Sequence[float], along: str = "", rel: float = 1e-3) -> str:
    """How a sequence moves along the sweep (``along``, e.g. "with dose"): rose, fell, flat or not monotone.

    NaN and None values are skipped; two values within ``rel`` of each other
    (relative) count as equal, so a sentence never calls a change in the
    fourth digit a rise; "(never falling)" / "(never rising)" marks a monotone
    sequence with such ties.
    """
    v = [x for x in values if x is not None and not math.isnan(x)]
    where = f" {along}" if along else ""
    steps = [0 if abs(b - a) <= rel * max(abs(a), abs(b)) else (1 if b > a else -1) for a, b in itertools.pairwise(v)]
    if not any(steps):
        return f"did not change{where}"
    if all(s >= 0 for s in steps):
        return f"rose{where}" + (" (never falling)" if 0 in steps else "")
    if all(s <= 0 for s in steps):
        return f"fell{where}" + (" (never rising)" if 0 in steps else "")
    return f"did not move monotonically{where}"


def span(result: SweepResult, key: str, conditions: Sequence[Condition] | None = None, digits: int = 3) -> str:
    """``a (label) to b (label)``: an outcome at the first and last condition (counts for proportions)."""
    conds = list(result.conditions if conditions is None else conditions)
    proportion = next(o for o in result.sweep.outcomes if o.key == key).proportion

    def show(c: Condition) -> str:
        e = result[key, c]
        return count(e) if proportion else common.fmt(e.mean, digits)

    return f"{show(conds[0])} at {conds[0].label} to {show(conds[-1])} at {conds[-1].label}"


def paragraphs(items: Sequence[str]) -> list[str]:
    out: list[str] = []
    for item in items:
        out += [item, ""]
    return out


def patients(result: SweepResult) -> str:
    """How a setup paragraph names who was treated: the cohort's patients, or the default patient."""
    if result.args.design == "cohort":
        return (f"The {result.args.n} virtual patients of the cohort (each with its own profile, in `results.csv`, "
                "and the default product)")
    return "The default patient and product"


def _unit(args: argparse.Namespace) -> str:
    return "patient" if args.design == "cohort" else "seed"


def seeds_sentence(result: SweepResult) -> str:
    args = result.args
    if args.design == "cohort":
        return (f"a paired virtual trial: {args.n} virtual patients of the ELIANA-like cohort of "
                f"`abm.cohort.sample_patient` (cohort seed {args.seed}), each run in every arm with the same "
                "profile and the same seed (`abm.cohort.patient_seed`, common random numbers); an arm's "
                "overrides replace a profile value they set, and a patient's factors (T-cell fitness, host "
                "cytokine response, division destiny) scale the arm's values. `arm` and `patient_id` in "
                "`results.csv` pair the rows.")
    return (f"**one default patient, {args.n} lattice seeds per arm** (`--design replicate`; replicate r uses seed "
            f"{args.seed} x 1000 + r, the same in every arm): the intervals measure lattice noise, not the spread "
            "between patients, so they say nothing about how often an arm helps a patient.")


# -- notes ------------------------------------------------------------------------------------------------------
def standard_notes(result: SweepResult) -> list[str]:
    """Caveats generated from the runs for the outcomes the sweep reports: censoring, relapse, MRD limit."""
    f = common.fmt
    keys = {o.key for o in result.sweep.outcomes}
    days = result.args.days
    conds = result.conditions
    out = []
    if "cart_persistence_day" in keys:
        cens = {c.label: sum(bool(r.get("cart_persistence_censored")) for r in result.runs(c)) for c in conds}
        never = {c.label: sum(r.get("cart_persistence_day") is None for r in result.runs(c)) for c in conds}
        out.append(
            f"- CAR-T persistence is censored at the end of the run (day {f(days)}): blood CAR-T was still "
            f">= {CART_DETECTION_PER_UL:g}/uL at the end in "
            f"{', '.join(f'{cens[c.label]}/{len(result.runs(c))} ({c.label})' for c in conds)} runs, so for "
            "those the day is a lower bound (it is the last observation); runs never detectable are left out of "
            f"the mean ({', '.join(f'{never[c.label]} at {c.label}' for c in conds)})."
        )
    if "relapse" in keys:
        relapsed = sum(bool(r.get("relapse")) for r in result.results)
        out.append(
            f"- Relapse within {f(days)} days is rarely observable: relapse needs CR first and then blasts back "
            "at >= 5 %, and clinical relapse happens months later (a year-long run is needed). Relapse is defined "
            f"(CR reached) in {', '.join(str(result['relapse', c].n) for c in conds)} runs in the conditions "
            f"above, and {relapsed} run(s) relapsed in all; the keys are reported as the model gives them, not as "
            "a relapse rate."
        )
        for r in result.results:
            if r.get("relapse"):
                crossing = r.get("cr_day28") and (r.get("relapse_day") or 0.0) < RESPONSE_DAY
                back = (" (back below 5 % by day 28: the blast fraction hovers near the CR threshold, so this is "
                        "a threshold crossing rather than a clinical relapse)" if crossing else "")
                out.append(f"- Relapse in {r['arm']}, patient {r['patient_id']} (seed {r['seed']}): CR on day "
                           f"{f(r.get('cr_day'))}, "
                           f"blast fraction >= 5 % again on day {f(r.get('relapse_day'))}, "
                           f"{f(r.get('mrd_day28'))} at day 28{back}.")
    if keys & {"mrd_day28", "mrd_negative_day28"}:
        limits = [r["mrd_detection_limit"] for r in result.results if r.get("mrd_detection_limit") is not None]
        if limits:
            lim = float(np.median(limits))
            extra = (" (above the 1e-4 threshold: MRD-negative means no blast in the window)"
                     if lim > MRD_THRESHOLD else "")
            out.append(f"- MRD detection limit of the window (1 / nucleated cells): median {f(lim)}{extra}.")
    if days < 28.0 - 1e-9:
        out.append(f"- The runs last {f(days)} days, so the day-28 outcomes (CR, MRD, relapse after CR, the 0-28 "
                   "day AUC) are not defined: their cells read `-`.")
    return out


# -- README -----------------------------------------------------------------------------------------------------
def _override_text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return f'"{value}"' if isinstance(value, str) else str(value)


def readme_text(result: SweepResult, prov: Mapping[str, Any]) -> str:
    spec, args, conds = result.sweep, result.args, result.conditions
    f = common.fmt
    lines = [
        f"# {spec.title}",
        "",
        f"Generated by `python -m experiments.{spec.name}`; every number below comes from this run "
        f"(`results.csv`, `{spec.name}.csv`, `paired.csv`, `provenance.json`).",
        "",
    ]
    if args.smoke:
        lines += [f"**Smoke run**: a {spec.smoke_grid} x {spec.smoke_grid} window, {len(conds)} arms, "
                  f"{args.n} patients, {f(args.days)} day(s), to check the machinery. These numbers are not a "
                  "result.", ""]
    if not args.smoke and args.n < spec.default_n:
        lines += [f"**Reduced study**: {args.n} patients per arm instead of {spec.default_n} (to fit the time "
                  "available); the intervals are correspondingly wide.", ""]
    if args.design == "replicate":
        lines += ["**Replicate design**: one default patient with several lattice seeds, not a cohort; the "
                  "intervals below are lattice noise and no difference between arms is a clinical effect.", ""]
    grid = result.results[0].get("grid_size")
    lines += ["## Question", "", spec.question, "", "## Setup", ""]
    lines += paragraphs(spec.setup(result))
    lines += ["Conditions (parameter overrides of each; `time.days` = "
              f"{f(args.days)}, `grid.size` = {grid}):", "", "| condition | overrides |", "|---|---|"]
    for c in conds:
        text = ", ".join(f"`{k}` = {_override_text(v)}" for k, v in c.overrides.items()) or "(defaults)"
        lines.append(f"| {c.label} | {text} |")
    profile = (" and the virtual patient's profile (its columns in `results.csv`)" if args.design == "cohort"
               else "")
    lines += [
        "",
        f"Design: {seeds_sentence(result)} Every other parameter is the default of `abm.params`{profile}; see "
        "`results.csv` for the per-run `dt_min`, `site_um`, `grid_size` and `window_share_of_marrow`.",
        "",
        "Outcomes: " + "; ".join(f"`{o.key}`: {o.label}" + (f" [{o.unit}]" if o.unit else "")
                                 for o in spec.outcomes)
        + ". Summary keys come from `abm.outcomes.summarize` (CRS and ICANS grades are the ASTCT surrogates of "
        "`abm.body`); derived ones are defined by their label.",
        "",
        "Intervals: per arm, proportions are `k/n = p [lo, hi]` with 95 % Wilson score intervals and means "
        "`mean [lo, hi]` with 95 % Student-t intervals over patients (no interval with a single value). Between "
        f"arms, each arm is compared with the reference arm ({result.reference.label}) patient by patient: the mean "
        "paired difference (arm - reference; for a yes/no outcome the difference of rates) with its 95 % "
        "percentile-bootstrap interval, and for a yes/no outcome the discordant pairs (yes only in the reference "
        "/ yes only in the arm) with the exact McNemar p (`abm.paired`).",
        "",
        "## Result",
        "",
    ]
    head = ["outcome", *(c.label for c in conds)]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for o in spec.outcomes:
        cells = [f"{o.label} (`{o.key}`)" + (f" [{o.unit}]" if o.unit else "")]
        for c in conds:
            e = result[o.key, c]
            n_runs = len(result.runs(c))
            cells.append(proportion_cell(e) if o.proportion else
                         common.fmt_estimate(e) + ("" if e.n == n_runs else f" (n={e.n})"))
        lines.append("| " + " | ".join(cells) + " |")
    cpu = [f(float(np.mean([r["cpu_s"] for r in result.runs(c)]))) for c in conds]
    lines.append("| CPU s per run (mean, 1 thread) | " + " | ".join(cpu) + " |")
    others = [c for c in conds if c.label != result.reference.label]
    if others:
        lines += ["", f"## Paired differences against {result.reference.label}", "",
                  "Arm - reference over the patients defined in both; a yes/no outcome adds (yes only in the "
                  "reference / yes only in the arm, exact McNemar p). **Bold**: the arms differ at the 5 % level "
                  "(a mean: its 95 % interval excludes 0; a yes/no outcome: McNemar p < 0.05).", "",
                  "| outcome | " + " | ".join(c.label for c in others) + " |", "|" + "---|" * (len(others) + 1)]
        for o in spec.outcomes:
            lines.append(f"| `{o.key}` | " + " | ".join(paired_cell(result.paired[o.key][c.label])
                                                     for c in others) + " |")
        lines += ["", *differences_sentences(result)]
    lines += ["", "## Finding", "", " ".join(spec.finding(result)), ""]
    if result.analysis.sections:
        lines += [*result.analysis.sections, ""]
    notes = (spec.notes or standard_notes)(result)
    if notes:
        lines += ["## Notes", "", *notes, ""]
    x_text = "side by side" if spec.categorical else f"against {spec.x_label}" + (" (log x)" if spec.x_log else "")
    groups = " Colours are the groups (" + ", ".join(_groups(conds)) + ")." if len(_groups(conds)) > 1 else ""
    lines += [
        "## Figure",
        "",
        f"![{spec.title.lower()}](figure.png)",
        "",
        f"Each outcome per arm, {x_text} (points: one per {_unit(args)}, proportions as 0/1 with jitter; "
        f"{'black' if len(_groups(conds)) == 1 else 'large markers'}: mean or proportion with its 95 % interval), "
        f"and the {spec.time_course[1]} time course per arm (thin: one per {_unit(args)}; thick: mean).{groups}"
        + (f" {spec.figure_note}" if spec.figure_note else ""),
        "",
        "## Files",
        "",
        "- `results.csv`: one row per run (`arm`, `patient_id`, `seed`, the overridden parameters and every "
        "scalar of `summary.json`); `arm` and `patient_id` pair the rows of two arms;",
        f"- `timeseries.csv.gz`: one row per run and observation ({common.series_interval(prov)}): "
        + ", ".join(f"`{s}`" for s in spec.series) + ";",
        f"- `{spec.name}.csv`: the table above in long form (outcome, condition coordinates, n, mean, interval);",
        "- `paired.csv`: the paired differences against the reference arm (outcome, arm, pairs, both means, "
        "difference and interval, discordant pairs, McNemar p);",
        *result.analysis.files,
        "- `provenance.json`, `figure.png`.",
        "",
        f"Wall time of the whole study: {f(prov['wall_s'])} s ({f(prov['wall_s'] / 60)} min) on "
        f"{args.workers} worker process(es).",
        "",
        common.provenance_markdown(prov),
    ]
    return "\n".join(lines)


# -- figure -----------------------------------------------------------------------------------------------------
_GROUP_MAPS = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys")
_FLOOR = 1e-6  # lowest value drawn on a log axis


def _groups(conditions: Sequence[Condition]) -> list[str]:
    return list(dict.fromkeys(c.group for c in conditions))


def _positions(result: SweepResult) -> dict[str, float]:
    if result.sweep.categorical:
        return {c.label: float(i) for i, c in enumerate(result.conditions)}
    return {c.label: float(c.x) for c in result.conditions}


def _colors(result: SweepResult, plt) -> tuple[dict[str, Any], dict[str, Any]]:
    """Colours per condition (time course, points) and per group (estimates)."""
    conds = result.conditions
    groups = _groups(conds)
    if len(groups) == 1:
        per = {c.label: plt.cm.plasma(i / max(1, len(conds) - 1) * 0.85) for i, c in enumerate(conds)}
        return per, {groups[0]: "black"}
    per, by_group = {}, {}
    for g, name in zip(groups, itertools.cycle(_GROUP_MAPS), strict=False):
        members = [c for c in conds if c.group == g]
        cmap = plt.get_cmap(name)
        for i, c in enumerate(members):
            per[c.label] = cmap(0.45 + 0.5 * i / max(1, len(members) - 1))
        by_group[g] = cmap(0.75)
    return per, by_group


def _draw_outcome(ax, result: SweepResult, o: Outcome, pos, colors, group_colors, rng) -> None:
    spec, conds = result.sweep, result.conditions
    groups = _groups(conds)
    xs_all = np.asarray(list(pos.values()))
    width = float(xs_all.max() - xs_all.min()) if xs_all.size > 1 else 1.0
    plotted: list[float] = []
    for gi, g in enumerate(groups):
        shift = gi - (len(groups) - 1) / 2.0
        means, xs = [], []
        for c in (c for c in conds if c.group == g):
            values = [float(v) for v in (o.get(r) for r in result.runs(c)) if v is not None]
            if o.log:
                values = [max(v, _FLOOR) for v in values]
            if spec.x_log:
                x0 = pos[c.label] * math.exp(0.12 * shift)
                x = x0 * np.exp(rng.uniform(-0.08, 0.08, len(values)))
            else:
                step = 0.12 if spec.categorical else 0.025 * width
                x0 = pos[c.label] + step * shift
                x = x0 + rng.uniform(-0.5, 0.5, len(values)) * step
            y = np.asarray(values) + (rng.uniform(-0.03, 0.03, len(values)) if o.proportion else 0.0)
            ax.scatter(x, y, s=14, color=colors[c.label], alpha=0.6, zorder=2)
            plotted += values
            e = result[o.key, c]
            if e.n == 0:
                continue
            mean = max(e.mean, _FLOOR) if o.log else e.mean
            means.append(mean)
            xs.append(x0)
            if e.method != "none":
                lo = max(e.lo, _FLOOR) if o.log else e.lo
                ax.errorbar(x0, mean, yerr=[[max(mean - lo, 0.0)], [max(e.hi - mean, 0.0)]], fmt="o",
                            color=group_colors[g], ms=4, capsize=3, zorder=3)
            else:
                ax.plot(x0, mean, "o", color=group_colors[g], ms=4, zorder=3)
        if xs and not spec.categorical:
            ax.plot(xs, means, color=group_colors[g], lw=0.8, alpha=0.6, zorder=1, label=g or None)
    if spec.x_log:
        ax.set_xscale("log")
        ax.set_xlim(xs_all.min() / 2.0, xs_all.max() * 2.0)
    elif spec.categorical:
        ax.set_xticks(range(len(conds)))
        ax.set_xticklabels([c.label for c in conds], rotation=20, ha="right", fontsize=6)
        ax.set_xlim(-0.6, len(conds) - 0.4)
    else:
        ax.set_xlim(xs_all.min() - 0.1 * width, xs_all.max() + 0.1 * width)
    if not plotted:
        ax.text(0.5, 0.5, "not defined in these runs", transform=ax.transAxes, ha="center", fontsize=8)
    elif o.log:
        # the axis spans the seeds' values; a Student-t interval reaching below them (or below 0) is cut there
        ax.set_yscale("log")
        ax.set_ylim(min(plotted) / 3.0, max(plotted) * 3.0)
    if o.proportion:
        ax.set_ylim(-0.08, 1.08)
    ax.set_title(o.label + (f" [{o.unit}]" if o.unit else ""), fontsize=8)
    if not spec.categorical:
        ax.set_xlabel(spec.x_label, fontsize=8)
    ax.tick_params(which="both", labelsize=7)


def make_figure(result: SweepResult):
    spec, conds = result.sweep, result.conditions
    extra = result.analysis.panels
    panels = len(spec.outcomes) + 1 + len(extra)
    plt, fig, axes = common.panel_grid(panels, ncols=4)
    colors, group_colors = _colors(result, plt)
    pos = _positions(result)
    rng = np.random.default_rng(0)  # jitter of the points only
    for ax, o in zip(axes, spec.outcomes, strict=False):
        _draw_outcome(ax, result, o, pos, colors, group_colors, rng)
    if len(_groups(conds)) > 1:
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=group_colors[g], marker="o", ms=4, label=g) for g in _groups(conds)]
        axes[0].legend(handles=handles, fontsize=6)
    ax = axes[len(spec.outcomes)]
    name, title = spec.time_course
    for c in conds:
        runs = [r for r in result.runs(c) if name in r["series"]]
        if not runs:
            continue
        length = min(len(r["series"][name]) for r in runs)  # a run stopped early is drawn as far as it went
        day = np.asarray(runs[0]["series"]["day"][:length])
        ys = np.array([np.asarray(r["series"][name][:length], dtype=float) for r in runs])
        for y in ys:
            ax.plot(day, y, color=colors[c.label], alpha=0.2, lw=0.7)
        ax.plot(day, ys.mean(axis=0), color=colors[c.label], lw=1.8, label=c.label)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_title(f"{title} (time course)", fontsize=8)
    ax.set_xlabel("day", fontsize=8)
    ax.tick_params(which="both", labelsize=7)
    ax.legend(fontsize=5 if len(conds) > 6 else 6)
    for ax, draw in zip(axes[len(spec.outcomes) + 1:], extra, strict=False):
        draw(ax)
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.suptitle(f"{spec.title}, {result.args.days:g} days (points: {_unit(result.args)}s; mean or proportion "
                 "with 95 % CI)",
                 fontsize=11)
    fig.tight_layout()
    return fig
