"""Global sensitivity (Morris elementary effects) of remission, CRS and MRD to the main uncertain parameters.

``python -m experiments.sensitivity`` samples ``r`` Morris trajectories
(SALib, ``--n`` = r, ``--levels`` grid levels) over the parameters of
:data:`BOUNDS` (each narrowed to a plausible band around its default inside
its sourced range in :data:`abm.params.SCHEMA`; log-uniform where the band
spans a factor of 4 or more), runs a virtual cohort at every point
(``--patients`` P, default 8: ``(k + 1) * r * P`` runs) and reports, per
outcome (its cohort mean: a rate for a yes/no outcome), Morris' ``mu*`` (mean
absolute elementary effect: overall influence), ``mu`` and ``sigma``
(non-linearity or interactions), with SALib's bootstrap 95 % interval of
``mu*``. Elementary effects are per unit of the normalised range (the whole
band = 1; log10 space for log-uniform parameters), so ``mu*`` of different
parameters is comparable within an outcome.

The cohort is the same at every point (patient ``i`` is
``abm.cohort.sample_patient(--seed, i)`` with its own seed, the point's
parameter values overriding the patient's where both set a key): common
random numbers, so an elementary effect is the change of the parameter over
the same patients and not a change of patients or of the stochastic
realisation. ``--patients 1`` is the earlier one-patient design: the default
patient at every point, all runs with seed ``--seed`` x 1000 (it measures one
patient's lattice, not a cohort). The default window is ``grid.size = 200`` (the
converged window is 400; 200 is about 4x cheaper and adequate for ranking
parameters), for 28 days. Requires SALib (``pip install SALib``).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from abm.errors import ParamError
from abm.params import SCHEMA
from experiments import common

NAME = "sensitivity"
DEFAULT_GRID = 200
SMOKE_GRID = 32
SMOKE_PARAMS = ("product.dose_per_kg", "cart.kill_rate_per_h", "patient.marrow_blast_fraction")


@dataclass(frozen=True)
class Bound:
    """Sampling band of one parameter (``log``: log-uniform; ``integer``: rounded after sampling)."""

    key: str
    low: float
    high: float
    log: bool
    why: str
    integer: bool = False

    def space(self) -> tuple[float, float]:
        """Bounds in the sampling space (log10 for log-uniform parameters)."""
        return (math.log10(self.low), math.log10(self.high)) if self.log else (self.low, self.high)

    def value(self, x: float) -> float | int:
        """Parameter value of sampling-space coordinate ``x``."""
        v = 10.0**x if self.log else float(x)
        v = min(max(v, self.low), self.high)  # guard against rounding at the band's edges
        return int(round(v)) if self.integer else v


BOUNDS: tuple[Bound, ...] = (
    Bound("cart.proliferation_rate_per_day", 0.5, 1.5, False,
          "doubling ~0.5-1.4 d around Stein 2019's 0.78 d"),
    Bound("cart.kill_rate_per_h", 1.0, 12.0, True,
          "kill within ~5-60 min (Cazaux 2019 ~25 min, PhysiCell 15 min)"),
    Bound("cart.exhaustion_engagements", 10, 40, True,
          "half to twice Weigelin 2021's ~20 engagements (ARCADE uses 10)", integer=True),
    Bound("cart.antigen_threshold_molecules", 500.0, 8000.0, True,
          "a factor 4 around Majzner 2020's ~2,000 molecules/cell"),
    Bound("body.antigen_half_saturation_cells", 1e9, 1e11, True,
          "a decade either side of the default assumption"),
    Bound("body.marrow_share", 0.1, 0.4, False,
          "marrow ~10 % of lymphocytes (Westermann & Pabst 1992) to 2x the default concentration"),
    Bound("serum.il6_production_pg_ml_per_day", 1.0, 300.0, True,
          "its calibration range (abm/calibration.py)"),
    Bound("serum.myeloid_amplification", 1.0, 20.0, True,
          "its calibration range (abm/calibration.py)"),
    Bound("niche.kill_protection", 0.0, 0.8, False,
          "none to strong stromal protection (the calibration range; the calibrated default is 0.07)"),
    Bound("patient.marrow_blast_fraction", 0.3, 0.9, False,
          "the spread of marrow blasts in ELIANA-like cohorts around the mean 68 %"),
    Bound("product.dose_per_kg", 2e5, 5e6, True,
          "tisagenlecleucel label 0.2-5.0e6/kg"),
    Bound("relapse.reservoir_kill_per_day", 1e-4, 0.1, True,
          "its calibration range (abm/calibration.py): how well CAR-T cells reach leukemia outside the window"),
)

RELAPSE_DAYS = 180.0  # runs at least this long also analyse relapse


@dataclass(frozen=True)
class Outcome:
    key: str
    label: str
    source: str  # summary key it is read from


def outcomes_for(days: float) -> tuple[Outcome, ...]:
    """The analysed outcomes; runs shorter than 28 days use the end of the run instead of day 28.

    Runs of :data:`RELAPSE_DAYS` or more add relapse within the run (0/1; skipped when some run never reaches
    remission) and the event-free days (to relapse, or to the end of the run; 0 without remission).
    """
    if days >= 28.0:
        relapse = (
            Outcome("relapse", "relapse within the run (0/1)", "relapse"),
            Outcome("event_free_days", "days to relapse or to the end of the run (0 without remission)", "cr_day"),
        ) if days >= RELAPSE_DAYS else ()
        return (
            Outcome("cr_day28", "complete remission at day 28 (0/1)", "mrd_day28"),
            Outcome("mrd_day28", "marrow blast fraction at day 28 (MRD surrogate)", "mrd_day28"),
            Outcome("log10_mrd_day28", "log10 day-28 blast fraction (floored at the window's detection limit)",
                    "mrd_day28"),
            Outcome("crs_max_grade", "maximal CRS grade (ASTCT 0-4)", "crs_max_grade"),
            Outcome("severe_crs", "severe CRS: crs_max_grade >= 3 (0/1)", "crs_max_grade"),
            *relapse,
        )
    return (
        Outcome("cr_end", "blast fraction < 5 % at the end of the run (0/1)", "blast_fraction_final"),
        Outcome("mrd_end", "marrow blast fraction at the end of the run", "blast_fraction_final"),
        Outcome("log10_mrd_end", "log10 end-of-run blast fraction (floored at one cell in the window)",
                "blast_fraction_final"),
        Outcome("crs_max_grade", "maximal CRS grade (ASTCT 0-4)", "crs_max_grade"),
        Outcome("severe_crs", "severe CRS: crs_max_grade >= 3 (0/1)", "crs_max_grade"),
    )


def outcome_value(o: Outcome, r: Mapping[str, Any]) -> float:
    if o.key == "event_free_days":
        if r.get("cr_day") is None:
            return 0.0
        return float(r["relapse_day"] if r.get("relapse") else r["days"])
    v = r.get(o.source)
    if v is None:
        return math.nan
    v = float(v)
    if o.key.startswith("cr_"):
        return float(v < 0.05)
    if o.key.startswith("log10_"):
        floor = r.get("mrd_detection_limit") or (1.0 / max(1, int(r.get("window_sites") or 1)))
        return math.log10(max(v, float(floor)))
    if o.key == "severe_crs":
        return float(v >= 3)
    return v


# -- command line ------------------------------------------------------------------------------------------
def build_parser():
    parser = common.make_parser(NAME, __doc__, n=4, days=28.0, workers=2)
    for action in parser._actions:
        if action.dest == "n":
            action.help = "Morris trajectories r ((k+1)*r runs; default 4, smoke 2)"
        if action.dest == "seed":
            action.help = "base seed: every run uses seed*1000, and the trajectory sampler uses it too (default 0)"
    parser.add_argument("--levels", type=int, default=4, help="Morris grid levels (default 4)")
    parser.add_argument("--patients", type=int, default=None,
                        help="virtual patients at every design point (default 8, smoke 2; 1: the default patient "
                             "alone, the one-patient design)")
    parser.add_argument("--grid-size", type=int, default=None,
                        help=f"window side grid.size (default {DEFAULT_GRID}, smoke {SMOKE_GRID})")
    parser.add_argument("--params", default=None,
                        help="comma-separated subset of the parameter keys (default: all of the bound table; "
                             "smoke: " + ", ".join(SMOKE_PARAMS) + ")")
    return parser


def select_bounds(spec: str | None, smoke: bool) -> tuple[Bound, ...]:
    by_key = {b.key: b for b in BOUNDS}
    if spec is None:
        return tuple(by_key[k] for k in SMOKE_PARAMS) if smoke else BOUNDS
    keys = [k.strip() for k in spec.split(",") if k.strip()]
    unknown = [k for k in keys if k not in by_key]
    if unknown or len(set(keys)) != len(keys) or len(keys) < 2:
        raise ParamError(f"--params = {spec!r}: expected at least 2 distinct keys of {', '.join(by_key)}")
    return tuple(by_key[k] for k in keys)


# -- design ----------------------------------------------------------------------------------------------------
def problem(bounds: Sequence[Bound]) -> dict[str, Any]:
    return {"num_vars": len(bounds), "names": [b.key for b in bounds], "bounds": [list(b.space()) for b in bounds]}


def design(bounds: Sequence[Bound], r: int, levels: int, seed: int) -> np.ndarray:
    """Morris trajectories in the sampling space, ``(k + 1) * r`` rows."""
    from SALib.sample import morris as morris_sample

    return morris_sample.sample(problem(bounds), N=r, num_levels=levels, seed=seed)


def jobs_for(bounds: Sequence[Bound], X: np.ndarray, seed: int, days: float, grid: int,
             patients: int = 1, cohort_seed: int = 0) -> list[common.Job]:
    """``patients`` runs per design point (arm ``t<trajectory>p<point>``), point by point.

    One patient: the default patient with ``seed``. More: patient ``i`` of cohort ``cohort_seed`` (its profile and
    seed, the same at every point); the point's values override the profile's.
    """
    from abm.cohort import patient_seed, sample_patient
    from abm.params import Params

    base = Params.default()
    cohort = [(sample_patient(cohort_seed, i, base), patient_seed(cohort_seed, i))
              for i in range(patients if patients > 1 else 0)]  # one patient: the default patient, no profile
    k = len(bounds)
    jobs = []
    for n, x in enumerate(X):
        point = {b.key: b.value(float(v)) for b, v in zip(bounds, x, strict=True)}
        t, p = divmod(n, k + 1)
        if patients == 1:
            jobs.append(common.Job(f"t{t}p{p}", {"grid.size": grid, **point}, t, seed, days))
            continue
        for i, (profile, patient) in enumerate(cohort):
            jobs.append(common.Job(f"t{t}p{p}", {**profile, "grid.size": grid, **point}, i, patient, days))
    return jobs


def point_means(o: Outcome, results: Sequence[Mapping[str, Any]], points: int) -> np.ndarray:
    """The outcome's mean over each design point's runs (the rows come point by point, as :func:`jobs_for`)."""
    per = len(results) // points
    values = np.array([outcome_value(o, r) for r in results], dtype=float).reshape(points, per)
    return values.mean(axis=1)


def analyse(bounds: Sequence[Bound], X: np.ndarray, results: Sequence[Mapping[str, Any]], outs: Sequence[Outcome],
            levels: int, seed: int) -> dict[str, dict[str, Any]]:
    """Per outcome: SALib's Morris indices (or ``{"skipped": reason}``)."""
    from SALib.analyze import morris as morris_analyze

    out: dict[str, dict[str, Any]] = {}
    for o in outs:
        Y = point_means(o, results, len(X))
        if not np.all(np.isfinite(Y)):
            out[o.key] = {"skipped": f"{int((~np.isfinite(Y)).sum())} design points with a run without a value"}
            continue
        res = morris_analyze.analyze(problem(bounds), X, Y, num_levels=levels, conf_level=0.95,
                                     print_to_console=False, seed=seed)
        out[o.key] = {
            "mu": np.asarray(res["mu"], dtype=float), "mu_star": np.asarray(res["mu_star"], dtype=float),
            "sigma": np.asarray(res["sigma"], dtype=float),
            "mu_star_conf": np.asarray(res["mu_star_conf"], dtype=float),
            "y_min": float(Y.min()), "y_max": float(Y.max()), "y_mean": float(Y.mean()),
        }
    return out


def order(res: Mapping[str, Any]) -> list[int]:
    return sorted(range(len(res["mu_star"])), key=lambda i: -res["mu_star"][i])


def morris_csv(bounds: Sequence[Bound], outs: Sequence[Outcome], an: Mapping[str, Mapping[str, Any]]) -> str:
    rows = []
    for o in outs:
        res = an[o.key]
        if "skipped" in res:
            continue
        for rank, i in enumerate(order(res), start=1):
            rows.append({"outcome": o.key, "parameter": bounds[i].key, "rank": rank,
                         "mu_star": float(res["mu_star"][i]), "mu_star_conf": float(res["mu_star_conf"][i]),
                         "mu": float(res["mu"][i]), "sigma": float(res["sigma"][i])})
    cols = ["outcome", "parameter", "rank", "mu_star", "mu_star_conf", "mu", "sigma"]
    return common.csv_text(cols, rows)


def overall_ranking(bounds: Sequence[Bound], an: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, float]]:
    """Parameters by mu* normalised to each outcome's largest mu*, averaged over the analysed outcomes."""
    scores = np.zeros(len(bounds))
    used = 0
    for res in an.values():
        if "skipped" in res or not np.max(res["mu_star"]) > 0:
            continue
        scores += res["mu_star"] / np.max(res["mu_star"])
        used += 1
    if used:
        scores /= used
    return sorted(((b.key, float(s)) for b, s in zip(bounds, scores, strict=True)), key=lambda t: -t[1])


# -- figure ----------------------------------------------------------------------------------------------------
def make_figure(bounds, outs, an, args):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [o for o in outs if "skipped" not in an[o.key]]
    ncols = min(3, max(1, len(shown)))
    nrows = max(1, -(-len(shown) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.5 * ncols, (0.35 * len(bounds) + 1.6) * nrows), squeeze=False)
    axes = axes.ravel()
    for ax in axes[len(shown):]:
        ax.set_visible(False)
    for ax, o in zip(axes, shown, strict=False):
        res = an[o.key]
        idx = order(res)[::-1]  # largest at the top
        y = np.arange(len(idx))
        ax.barh(y, res["mu_star"][idx], xerr=res["mu_star_conf"][idx], color="tab:blue", alpha=0.8,
                capsize=2, label="mu* (95 % bootstrap CI)")
        ax.plot(res["sigma"][idx], y, "D", color="tab:red", ms=4, label="sigma")
        ax.set_yticks(y, [bounds[i].key for i in idx], fontsize=7)
        ax.set_title(o.key, fontsize=9)
        ax.set_xlabel("elementary effect per normalised range", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.legend(fontsize=6, loc="lower right")
    if not shown:
        axes[0].set_visible(True)
        axes[0].text(0.5, 0.5, "no outcome could be analysed", ha="center", va="center")
    fig.suptitle(f"Morris sensitivity: r = {args.n} trajectories, k = {len(bounds)}, grid.size = {args.grid_size}, "
                 f"{args.days:g} days", fontsize=10)
    fig.tight_layout()
    return fig


# -- README ----------------------------------------------------------------------------------------------------
def schema_range(key: str) -> tuple[Any, Any, Any]:
    p = next(p for p in SCHEMA if p.key == key)
    return p.default, p.low, p.high


def readme_text(args, bounds, outs, an, results, ranking, prov) -> str:
    f = common.fmt
    k, r = len(bounds), args.n
    cpu = [float(x["cpu_s"]) for x in results]
    lines = ["# Sensitivity (Morris elementary effects)", "",
             "Generated by `python -m experiments.sensitivity`; every number below comes from this run "
             "(`results.csv`, `morris.csv`, `provenance.json`).", ""]
    if args.smoke:
        lines += ["**Smoke run**: tiny window, short run, few parameters, to check the machinery. These numbers are "
                  "not a result.", ""]
    lines += [
        "## Question", "",
        "Which uncertain parameters move day-28 remission, the MRD surrogate and severe CRS most, over plausible "
        "bands around their defaults? (Global screening: Morris' method ranks parameters; it does not quantify "
        "variance shares.)", "",
        "## Setup", "",
        f"Morris design (SALib): k = {k} parameters, r = {r} trajectories, {args.levels} levels, so "
        f"(k + 1) x r = {(k + 1) * r} design points" + (
            f", each run on the default patient and product ({len(results)} runs)" if args.patients == 1 else
            f", each run on the same {args.patients} virtual patients ({len(results)} runs; an outcome at a point is "
            "its mean over them, a rate for a yes/no outcome)") +
        f", {f(args.days)} days each, `grid.size = {args.grid_size}`" + (
            " (the converged window is 400; 200 is about 4x cheaper and adequate for ranking parameters, not for "
            "absolute outcome levels)" if args.grid_size == DEFAULT_GRID else "") + ". " + (
            f"Every run uses the same seed ({common.seed_for(args.seed, 0)}): common random numbers over one "
            "patient's lattice, so the ranking holds for the default patient only"
            if args.patients == 1 else
            f"Patient i is `abm.cohort.sample_patient({args.seed}, i)` with its own seed at every point (the point's "
            "values override its profile): common random numbers, so an elementary effect is the parameter step "
            "over the same patients") +
        f"; the trajectory sampler is seeded with {args.seed}.", "",
        "Bands: each parameter is sampled within its sourced range in `abm/params/schema.py` (SCHEMA), narrowed to a "
        "plausible band around the default; log-uniform (sampled uniformly in log10) where marked. "
        "`cart.exhaustion_engagements` is an integer: sampled values are rounded (the analysis uses the unrounded "
        "design point).", "",
        "| parameter | default | schema range | band | scale | why |", "|---|---|---|---|---|---|",
    ]
    for b in bounds:
        d, lo, hi = schema_range(b.key)
        lines.append(f"| `{b.key}` | {f(d)} | [{f(lo)}, {f(hi)}] | [{f(b.low)}, {f(b.high)}] | "
                     f"{'log-uniform' if b.log else 'uniform'}{', integer' if b.integer else ''} | {b.why} |")
    lines += [
        "", "Outcomes:", "",
        *[f"- `{o.key}`: {o.label}" for o in outs],
        "",
        "Relapse: a relapse needs a remission and a later rise within the run. Runs of "
        f"{RELAPSE_DAYS:g} days or more analyse it directly (`relapse`, `event_free_days`); in shorter runs the "
        "day-28 blast fraction (`mrd_day28`, and its log10, floored at the window's one-cell detection limit) is "
        "the best available relapse-related outcome (MRD at day 28 predicts relapse clinically).", "",
        "Indices: `mu*` = mean |elementary effect| (overall influence), `mu` = mean signed effect (direction), "
        "`sigma` = SD of the effects (non-linearity or interactions); effects are per unit of the normalised band "
        "(the whole band = 1; in log10 for log-uniform parameters), so within an outcome the parameters are "
        "comparable. `mu* CI` is SALib's bootstrap 95 % interval half-width. With r = "
        f"{r}, each index rests on {r} effects: the ranking of the top parameters is informative, close "
        "ranks are not.", "",
        f"Cost: {len(results)} runs, {f(float(np.mean(cpu)))} CPU s per run (mean, 1 thread), wall time "
        f"{f(prov['wall_s'] / 60)} min on {args.workers} worker process(es).", "",
        "## Result", "",
    ]
    top = ", ".join(f"`{key}` ({s:.2f})" for key, s in ranking[:5])
    per = "; ".join(f"{o.key}: `{bounds[order(an[o.key])[0]].key}`" for o in outs if "skipped" not in an[o.key]
                    and np.max(an[o.key]["mu_star"]) > 0)
    lines += [f"**Ranking.** Averaging mu* normalised to each outcome's largest, the most influential parameters "
              f"are {top}" + (f"; the top parameter per outcome is {per}." if per else "."), ""]
    for o in outs:
        res = an[o.key]
        lines += [f"### `{o.key}`", "", o.label + ".", ""]
        if "skipped" in res:
            lines += [f"Not analysed: {res['skipped']}.", ""]
            continue
        lines += [f"Over the design: min {f(res['y_min'])}, mean {f(res['y_mean'])}, max {f(res['y_max'])}.", ""]
        if not np.max(res["mu_star"]) > 0:
            lines += ["The outcome did not change over the design: every elementary effect is 0.", ""]
        lines += ["| rank | parameter | mu* | mu* CI (+-) | mu | sigma | sigma / mu* |",
                  "|---|---|---|---|---|---|---|"]
        for rank, i in enumerate(order(res), start=1):
            ms = res["mu_star"][i]
            lines.append(f"| {rank} | `{bounds[i].key}` | {f(ms)} | {f(res['mu_star_conf'][i])} | "
                         f"{f(res['mu'][i])} | {f(res['sigma'][i])} | {f(res['sigma'][i] / ms) if ms > 0 else '-'} |")
        lines.append("")
    lines += [
        "## Figure", "", "![Morris mu* per outcome](figure.png)", "",
        "Per outcome, parameters ranked by mu* (bars, with the bootstrap 95 % interval) and sigma (red diamonds); "
        "sigma comparable to mu* means a non-linear or interacting effect.", "",
        "## Files", "",
        "- `results.csv`: one row per run (arm `t<trajectory>p<point>`, patient_id, seed, the parameter values as "
        "run, and every scalar outcome);",
        "- `morris.csv`: the tables above in long form (outcome, parameter, rank, mu_star, mu_star_conf, mu, sigma);",
        "- `timeseries.csv.gz`, `provenance.json`, `figure.png`.", "",
        common.provenance_markdown(prov),
    ]
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    args = common.parse_args(build_parser(), argv, smoke_n=2, smoke_days=2.0)
    if args.grid_size is None:
        args.grid_size = SMOKE_GRID if args.smoke else DEFAULT_GRID
    if not 8 <= args.grid_size <= 16384:
        raise ParamError(f"--grid-size = {args.grid_size}: expected an integer in [8, 16384]")
    if not 2 <= args.levels <= 20 or args.levels % 2:
        raise ParamError(f"--levels = {args.levels}: expected an even integer in [2, 20]")
    bounds = select_bounds(args.params, args.smoke)
    try:
        import SALib  # noqa: F401
    except ImportError as exc:
        raise ParamError("SALib is not installed: pip install SALib (or the project's test extra)") from exc
    if args.patients is None:
        args.patients = 2 if args.smoke else 8
    if args.patients < 1:
        raise ParamError(f"--patients = {args.patients}: expected at least 1")
    X = design(bounds, args.n, args.levels, args.seed)
    seed = common.seed_for(args.seed, 0)
    jobs = jobs_for(bounds, X, seed, args.days, args.grid_size, args.patients, args.seed)
    print(f"{NAME}: {len(jobs)} runs (k = {len(bounds)}, r = {args.n}, {args.patients} patient(s) a point, grid "
          f"{args.grid_size}, {args.days:g} days) "
          f"on {args.workers} worker(s) -> {args.out}", file=sys.stderr)
    results, wall = common.run_all(jobs, args.workers, progress=not args.quiet, scheduler=args.scheduler)
    outs = outcomes_for(args.days)
    an = analyse(bounds, X, results, outs, args.levels, args.seed)
    ranking = overall_ranking(bounds, an)
    prov = common.provenance(args, results, wall, argv)
    prov["design"] = {"method": "morris", "trajectories": args.n, "levels": args.levels, "grid_size": args.grid_size,
                      "patients_per_point": args.patients, "cohort_seed": args.seed if args.patients > 1 else None,
                      "same_seed_all_runs": seed if args.patients == 1 else None, "sampler_seed": args.seed,
                      "bounds": [{"key": b.key, "low": b.low, "high": b.high, "log": b.log} for b in bounds]}
    readme = readme_text(args, bounds, outs, an, results, ranking, prov)
    common.write_results(args.out, results, figure=make_figure(bounds, outs, an, args), readme=readme,
                         provenance=prov, extra_csv={"morris.csv": morris_csv(bounds, outs, an)},
                         series_every_h=args.series_every)
    print(f"{NAME}: wrote {args.out} ({wall:.0f} s); top: {', '.join(k for k, _ in ranking[:3])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(common.cli(main))
