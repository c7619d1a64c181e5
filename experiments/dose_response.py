"""Dose response: CAR-T dose from 0.1 to 10 x 10^6 cells/kg against response, toxicity and kinetics.

Runs the default patient and product with ``product.dose_per_kg`` at each
dose of the grid (default 1e5, 3e5, 1e6, 3e6, 1e7 cells/kg; the default
product is 3e6/kg), ``n`` seeds each, the same seeds at every dose (paired),
for 28 days, and reports per dose: CR and MRD-negative rates at day 28, the
day-28 MRD, severe CRS (grade >= 3), ICANS (any, grade >= 3), the blood CAR-T
peak and its day, CAR-T persistence, B-cell aplasia and relapse.

Run ``python -m experiments.dose_response`` (full study; see ``--help``), or
``--smoke`` for a seconds-long check of the machinery.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from abm.errors import ParamError
from abm.outcomes import CART_DETECTION_PER_UL, MRD_THRESHOLD
from experiments import common

NAME = "dose_response"
DEFAULT_N = 3
DOSES = (1e5, 3e5, 1e6, 3e6, 1e7)
SMOKE_DOSES = (3e5, 3e6)
SMOKE_GRID = 32
SMOKE_DAYS = 1.0
QUESTION = (
    "How do day-28 remission, severe CRS, ICANS, the blood CAR-T peak and persistence, B-cell aplasia and "
    "relapse change with the CAR-T dose, from 0.1 to 10 x 10^6 cells/kg?"
)


@dataclass(frozen=True)
class Outcome:
    """One reported outcome: how to read it from a run, and whether it is a proportion."""

    key: str
    label: str
    get: Callable[[Mapping[str, Any]], Any]
    proportion: bool = False
    unit: str = ""
    log: bool = False  # log y axis in the figure


def _ge(key: str, grade: int) -> Callable[[Mapping[str, Any]], Any]:
    return lambda r: None if r.get(key) is None else r[key] >= grade


OUTCOMES: tuple[Outcome, ...] = (
    Outcome("cr_day28", "CR at day 28 (blast fraction < 5 %)", lambda r: r.get("cr_day28"), proportion=True),
    Outcome("mrd_negative_day28", "MRD-negative at day 28 (< 0.01 %)", lambda r: r.get("mrd_negative_day28"),
            proportion=True),
    Outcome("mrd_day28", "marrow blast fraction at day 28 (MRD)", lambda r: r.get("mrd_day28"), log=True),
    Outcome("severe_crs", "severe CRS (max grade >= 3)", _ge("crs_max_grade", 3), proportion=True),
    Outcome("crs_max_grade", "CRS maximum grade (ASTCT 0-4)", lambda r: r.get("crs_max_grade")),
    Outcome("icans_any", "ICANS, any grade (max grade >= 1)", _ge("icans_max_grade", 1), proportion=True),
    Outcome("icans_severe", "ICANS grade >= 3", _ge("icans_max_grade", 3), proportion=True),
    Outcome("icans_max_grade", "ICANS maximum grade (ASTCT 0-4)", lambda r: r.get("icans_max_grade")),
    Outcome("cart_peak_blood_per_ul", "blood CAR-T peak (Cmax)", lambda r: r.get("cart_peak_blood_per_ul"),
            unit="cells/uL", log=True),
    Outcome("cart_peak_day", "day of the blood CAR-T peak (Tmax)", lambda r: r.get("cart_peak_day"), unit="d"),
    Outcome("cart_persistence_day", f"last day with blood CAR-T >= {CART_DETECTION_PER_UL:g}/uL",
            lambda r: r.get("cart_persistence_day"), unit="d"),
    Outcome("b_cell_aplasia_days", "B-cell aplasia (window B cells < 10 % of day 0)",
            lambda r: r.get("b_cell_aplasia_days"), unit="d"),
    Outcome("relapse", "relapse after CR (among runs that reached CR)", lambda r: r.get("relapse"),
            proportion=True),
)


def dose_label(dose: float) -> str:
    return f"{dose / 1e6:g}e6/kg"


def build_parser():
    parser = common.make_parser(NAME, __doc__, n=DEFAULT_N, days=28.0, workers=2)
    parser.add_argument("--doses", default=None,
                        help="comma-separated doses in cells/kg (default: 1e5,3e5,1e6,3e6,1e7; smoke: 3e5,3e6)")
    return parser


def parse_doses(text: str | None, smoke: bool) -> tuple[float, ...]:
    if text is None:
        return SMOKE_DOSES if smoke else DOSES
    try:
        doses = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ParamError(f"--doses = {text!r}: expected comma-separated numbers such as 1e5,1e6,1e7") from None
    if len(doses) < 2 or len(set(doses)) != len(doses) or any(not (math.isfinite(d) and d > 0) for d in doses):
        raise ParamError(f"--doses = {text!r}: expected at least two distinct positive doses in cells/kg")
    return tuple(sorted(doses))


def jobs_for(doses: Sequence[float], n: int, base_seed: int, days: float, smoke: bool) -> list[common.Job]:
    """Every (dose, replicate) run; replicate r uses the same seed at every dose (paired design)."""
    extra = {"grid.size": SMOKE_GRID} if smoke else {}
    return [common.Job(dose_label(d), {"product.dose_per_kg": float(d), **extra}, r,
                       common.seed_for(base_seed, r), days)
            for d in doses for r in range(n)]


# -- analysis ------------------------------------------------------------------------------------------------
def _by_dose(results: Sequence[Mapping[str, Any]], dose: float) -> list[Mapping[str, Any]]:
    return [r for r in results if r["overrides"]["product.dose_per_kg"] == dose]


def _unit(x: float) -> float:
    """A Wilson bound with its floating-point noise at 0 and 1 removed (1e-17 instead of 0)."""
    return 0.0 if x < 1e-12 else 1.0 if x > 1.0 - 1e-12 else x


def estimates(results, doses) -> dict[str, dict[float, common.Estimate]]:
    """Per outcome and dose: mean (Student-t) or proportion (Wilson) with its 95 % interval."""
    out: dict[str, dict[float, common.Estimate]] = {}
    for o in OUTCOMES:
        out[o.key] = {}
        for d in doses:
            values = [o.get(r) for r in _by_dose(results, d)]
            if o.proportion:
                e = common.proportion_interval(values)
                # Wilson bounds of 0/n or n/n come out as +-1e-17 in floating point: clamp to [0, 1]
                out[o.key][d] = common.Estimate(e.mean, _unit(e.lo), _unit(e.hi), e.se, e.n, e.method) if e.n else e
            else:
                out[o.key][d] = common.mean_interval(float(v) for v in values if v is not None)
    return out


def _count(e: common.Estimate) -> str:
    if e.n == 0:
        return "-"
    return f"{round(e.mean * e.n)}/{e.n}"


def _prop_cell(e: common.Estimate) -> str:
    if e.n == 0:
        return "- (0 defined)"
    return f"{_count(e)} = {common.fmt_estimate(e)}"


def finding(est, doses, n: int) -> list[str]:
    """One or two sentences generated from the numbers."""
    f = common.fmt
    cr = est["cr_day28"]
    crs = est["severe_crs"]
    peak = est["cart_peak_blood_per_ul"]
    lines = []
    defined = [d for d in doses if cr[d].n > 0]
    if not defined:
        lines.append("Day-28 response is not defined for runs shorter than 28 days, so no response finding.")
    else:
        most = [d for d in defined if cr[d].mean > 0.5]
        if most:
            lines.append(f"CR at day 28 was reached in most seeds at {', '.join(dose_label(d) for d in most)} "
                         f"({', '.join(_count(cr[d]) for d in most)}), and in "
                         f"{', '.join(_count(cr[d]) for d in defined if d not in most) or 'no other'} seeds at the "
                         f"other doses; the lowest dose with CR in most seeds is {dose_label(min(most))}.")
        else:
            lines.append(f"No dose reached CR at day 28 in most seeds (CR: "
                         f"{', '.join(f'{dose_label(d)} {_count(cr[d])}' for d in defined)}).")
    rates = [crs[d].mean for d in doses if crs[d].n > 0]
    if rates:
        if all(b >= a for a, b in itertools.pairwise(rates)) and rates[-1] > rates[0]:
            trend = "rose with dose (never falling)"
        elif all(b <= a for a, b in itertools.pairwise(rates)) and rates[-1] < rates[0]:
            trend = "fell with dose"
        elif max(rates) == min(rates):
            trend = "did not change with dose"
        else:
            trend = "did not move monotonically with dose"
        grade = est["crs_max_grade"]
        peaks = [peak[d].mean for d in doses]
        ratio = peaks[-1] / peaks[0] if peaks[0] > 0 else math.nan
        lines.append(f"The severe-CRS rate {trend}, from {_count(crs[doses[0]])} at {dose_label(doses[0])} to "
                     f"{_count(crs[doses[-1]])} at {dose_label(doses[-1])} (mean CRS maximum grade "
                     f"{f(grade[doses[0]].mean)} to {f(grade[doses[-1]].mean)}); the mean blood CAR-T peak went from "
                     f"{f(peaks[0])} to {f(peaks[-1])} cells/uL ({f(ratio)}x for a "
                     f"{f(doses[-1] / doses[0])}x dose range).")
    return lines


def notes(results, est, doses, days: float) -> list[str]:
    """Caveats generated from the runs: censoring, undefined relapse."""
    f = common.fmt
    out = []
    cens = {d: sum(bool(r.get("cart_persistence_censored")) for r in _by_dose(results, d)) for d in doses}
    never = {d: sum(r.get("cart_persistence_day") is None for r in _by_dose(results, d)) for d in doses}
    out.append(
        f"- CAR-T persistence is censored at the end of the run (day {f(days)}): blood CAR-T was still "
        f">= {CART_DETECTION_PER_UL:g}/uL at the end in "
        f"{', '.join(f'{cens[d]}/{len(_by_dose(results, d))} ({dose_label(d)})' for d in doses)} runs, so for "
        "those the day is a lower bound (it is the last observation); runs never detectable are left out of the "
        f"mean ({', '.join(f'{never[d]} at {dose_label(d)}' for d in doses)})."
    )
    rel = est["relapse"]
    relapsed = sum(bool(r.get("relapse")) for r in results)
    out.append(
        f"- Relapse within {f(days)} days is rarely observable: relapse needs CR first and then blasts back "
        "at >= 5 %, and clinical relapse happens months later (a year-long run is needed). Relapse is defined "
        f"(CR reached) in {', '.join(f'{rel[d].n}' for d in doses)} runs at the doses above, and "
        f"{relapsed} run(s) relapsed in all; the keys are reported as the model gives them, not as a relapse rate."
    )
    for r in results:
        if r.get("relapse"):
            back = " (back below 5 % by day 28: the blast fraction hovers near the CR threshold, so this is " \
                   "a threshold crossing rather than a clinical relapse)" if r.get("cr_day28") else ""
            out.append(f"- Relapse in {r['condition']} seed {r['seed']}: CR on day {f(r.get('cr_day'))}, blast "
                       f"fraction >= 5 % again on day {f(r.get('relapse_day'))}, {f(r.get('mrd_day28'))} at day "
                       f"28{back}.")
    limits = [r.get("mrd_detection_limit") for r in results if r.get("mrd_detection_limit") is not None]
    if limits:
        lim = float(np.median(limits))
        extra = (" (above the 1e-4 threshold: MRD-negative means no blast in the window)"
                 if lim > MRD_THRESHOLD else "")
        out.append(f"- MRD detection limit of the window (1 / nucleated cells): median {f(lim)}{extra}.")
    return out


# -- figure ----------------------------------------------------------------------------------------------------
def make_figure(results, doses, est, days: float):
    panels = len(OUTCOMES) + 1
    plt, fig, axes = common.panel_grid(panels, ncols=4)
    colors = {d: plt.cm.plasma(i / max(1, len(doses) - 1) * 0.85) for i, d in enumerate(doses)}
    rng = np.random.default_rng(0)  # jitter of the points only
    for ax, o in zip(axes, OUTCOMES, strict=False):
        means, xs, plotted = [], [], 0
        for d in doses:
            values = [o.get(r) for r in _by_dose(results, d)]
            values = [float(v) for v in values if v is not None]
            if o.log:
                values = [max(v, 1e-6) for v in values]
            x = d * np.exp(rng.uniform(-0.12, 0.12, len(values)))
            y = np.asarray(values) + (rng.uniform(-0.03, 0.03, len(values)) if o.proportion else 0.0)
            ax.scatter(x, y, s=14, color=colors[d], alpha=0.6, zorder=2)
            plotted += len(values)
            e = est[o.key][d]
            if e.n == 0:
                continue
            mean = max(e.mean, 1e-6) if o.log else e.mean
            means.append(mean)
            xs.append(d)
            if e.method != "none":
                lo = max(e.lo, 1e-6) if o.log else e.lo
                ax.errorbar(d, mean, yerr=[[max(mean - lo, 0.0)], [max(e.hi - mean, 0.0)]], fmt="o",
                            color="black", ms=4, capsize=3, zorder=3)
            else:
                ax.plot(d, mean, "o", color="black", ms=4, zorder=3)
        if xs:
            ax.plot(xs, means, color="black", lw=0.8, alpha=0.6, zorder=1)
        ax.set_xscale("log")
        ax.set_xlim(min(doses) / 2.0, max(doses) * 2.0)
        if not plotted:
            ax.text(0.5, 0.5, "not defined in these runs", transform=ax.transAxes, ha="center", fontsize=8)
        elif o.log:
            ax.set_yscale("log")
        if o.proportion:
            ax.set_ylim(-0.08, 1.08)
        ax.set_title(o.label + (f" [{o.unit}]" if o.unit else ""), fontsize=8)
        ax.set_xlabel("dose [cells/kg]", fontsize=8)
        ax.tick_params(labelsize=7)
    ax = axes[len(OUTCOMES)]
    for d in doses:
        runs = _by_dose(results, d)
        day = np.asarray(runs[0]["series"]["day"])
        ys = np.array([np.asarray(r["series"]["blood_cart_per_ul"]) for r in runs])
        for y in ys:
            ax.plot(day, y, color=colors[d], alpha=0.2, lw=0.7)
        ax.plot(day, ys.mean(axis=0), color=colors[d], lw=1.8, label=dose_label(d))
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_title("blood CAR-T [cells/uL] (time course)", fontsize=8)
    ax.set_xlabel("day", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.suptitle(f"Dose response, {days:g} days (points: seeds; black: mean or proportion with 95 % CI)",
                 fontsize=11)
    fig.tight_layout()
    return fig


# -- README ----------------------------------------------------------------------------------------------------
def readme_text(args, results, doses, est, prov) -> str:
    f = common.fmt
    lines = [
        "# Dose response",
        "",
        "Generated by `python -m experiments.dose_response`; every number below comes from this run "
        "(`results.csv`, `dose_response.csv`, `provenance.json`).",
        "",
    ]
    if args.smoke:
        lines += [f"**Smoke run**: a {SMOKE_GRID} x {SMOKE_GRID} window, {len(doses)} doses, {f(args.days)} "
                  "day(s), to check the machinery. These numbers are not a result.", ""]
    if not args.smoke and args.n < DEFAULT_N:
        lines += [f"**Reduced study**: {args.n} seeds per dose instead of {DEFAULT_N} (to fit the time "
                  "available); the intervals are correspondingly wide.", ""]
    grid = results[0].get("grid_size")
    lines += [
        "## Question",
        "",
        QUESTION,
        "",
        "## Setup",
        "",
        f"The default patient and product (all parameters at their defaults, `time.days = {f(args.days)}`, "
        f"`grid.size = {grid}`), with `product.dose_per_kg` set to each dose of the grid "
        f"{', '.join(f'{d:.1e}' for d in doses)} cells/kg; {args.n} seeds per dose, the same seeds at every dose "
        f"(paired; replicate r uses seed {args.seed} x 1000 + r). The default product dose is 3e6/kg "
        "(tisagenlecleucel label 0.2-5.0e6/kg for <= 50 kg).",
        "",
        "Parameters: every other parameter is the default of `abm.params` (see `results.csv` for the per-run "
        "`dt_min`, `site_um`, `grid_size` and `window_share_of_marrow`).",
        "",
        "Outcomes (from `abm.outcomes.summarize`): `cr_day28` (blast fraction < 5 % at day 28), "
        "`mrd_negative_day28` (< 1e-4), `mrd_day28`, severe CRS = `crs_max_grade >= 3`, ICANS any = "
        "`icans_max_grade >= 1`, ICANS severe = `icans_max_grade >= 3` (ASTCT surrogates of `abm.systemic`), "
        "`cart_peak_blood_per_ul` and `cart_peak_day`, `cart_persistence_day`, `b_cell_aplasia_days`, "
        "`relapse` (defined only after CR).",
        "",
        "Intervals: proportions are `k/n = p [lo, hi]` with 95 % Wilson score intervals; means are "
        "`mean [lo, hi]` with 95 % Student-t intervals over seeds (no interval with a single value). The "
        "design is paired, but the intervals here are per dose, not of paired differences.",
        "",
        "## Result",
        "",
    ]
    head = ["outcome", *(dose_label(d) for d in doses)]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for o in OUTCOMES:
        cells = [f"{o.label} (`{o.key}`)" + (f" [{o.unit}]" if o.unit else "")]
        for d in doses:
            e = est[o.key][d]
            cells.append(_prop_cell(e) if o.proportion else
                         (common.fmt_estimate(e) + ("" if e.n == len(_by_dose(results, d)) else f" (n={e.n})")))
        lines.append("| " + " | ".join(cells) + " |")
    cpu = {d: float(np.mean([r["cpu_s"] for r in _by_dose(results, d)])) for d in doses}
    lines.append("| CPU s per run (mean, 1 thread) | " + " | ".join(f(cpu[d]) for d in doses) + " |")
    lines += ["", "## Finding", "", " ".join(finding(est, doses, args.n)), "", "## Notes", ""]
    lines += notes(results, est, doses, args.days)
    lines += [
        "",
        "## Figure",
        "",
        "![dose response](figure.png)",
        "",
        "Each outcome against the dose (log x; points: one per seed, proportions as 0/1 with jitter; black: mean "
        "or proportion with its 95 % interval), and the blood CAR-T time course per dose (thin: seeds; thick: "
        "mean).",
        "",
        "## Files",
        "",
        "- `results.csv`: one row per run (condition = dose, replicate, seed, `product.dose_per_kg` and every "
        "scalar of `summary.json`);",
        "- `timeseries.csv`: one row per run and observation (6 h);",
        "- `dose_response.csv`: the table above in long form (outcome, dose, n, mean, interval);",
        "- `provenance.json`, `figure.png`.",
        "",
        f"Wall time of the whole study: {f(prov['wall_s'])} s ({f(prov['wall_s'] / 60)} min) on "
        f"{args.workers} worker process(es).",
        "",
        common.provenance_markdown(prov),
    ]
    return "\n".join(lines)


def table_csv(est, doses) -> str:
    rows = []
    for o in OUTCOMES:
        for d in doses:
            e = est[o.key][d]
            rows.append({"outcome": o.key, "dose_per_kg": d, "n": e.n, "mean": e.mean, "lo": e.lo, "hi": e.hi,
                         "interval": e.method})
    return common.csv_text(list(rows[0]), rows)


# -- main ------------------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    args = common.parse_args(build_parser(), argv, smoke_n=2, smoke_days=SMOKE_DAYS)
    doses = parse_doses(args.doses, args.smoke)
    jobs = jobs_for(doses, args.n, args.seed, args.days, args.smoke)
    print(f"{NAME}: {len(jobs)} runs (doses {', '.join(f'{d:g}' for d in doses)} /kg x {args.n} seeds, "
          f"{args.days:g} days) on {args.workers} worker(s) -> {args.out}", file=sys.stderr)
    results, wall = common.run_all(jobs, args.workers, progress=not args.quiet)
    est = estimates(results, doses)
    prov = common.provenance(args, results, wall, argv)
    prov["doses_per_kg"] = list(doses)
    readme = readme_text(args, results, doses, est, prov)
    common.write_results(args.out, results, figure=make_figure(results, doses, est, args.days), readme=readme,
                         provenance=prov, extra_csv={"dose_response.csv": table_csv(est, doses)})
    print(f"{NAME}: wrote {args.out} ({wall:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(common.cli(main))
