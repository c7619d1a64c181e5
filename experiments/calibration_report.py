"""Calibration report: every clinical target beside the model's value with its 95 % interval.

Simulates a virtual ELIANA-like cohort (``--n`` patients, default 100, from
``abm.cohort.sample_cohort``) with the current defaults (the calibrated values
of ``abm/calibrated.toml``) at the default window for 28 days, and a smaller
follow-up cohort (``--relapse-n`` patients for ``--relapse-days`` days) for
the targets a 28-day run cannot show (those of :data:`abm.calibration.TARGETS`
with a longer horizon): remission and MRD negativity within 3 months (ELIANA's
endpoints) and relapse among responders by 6 and 12 months. For each target
it writes the simulated value, its
95 % interval (Wilson for proportions, a seeded percentile bootstrap for
medians), the target band and its source, and whether the interval reaches the
band.

Outputs in ``--out`` (default ``experiments/results/calibration_report/``):
``table.csv``, ``associations.csv`` (the rank correlation of every patient
factor, covariate or latent, with the CRS and ICANS grades and the CAR-T
peak), ``patients.csv`` (the main cohort), ``relapse_patients.csv``,
``figure.png``, ``provenance.json`` and a generated ``README.md``. Patients
already finished in an interrupted run are read back from the folder's partial
files and not simulated again; ``--rebuild`` rewrites the report from them
without simulating.

    python -m experiments.calibration_report --workers 2        # 100 x 28 d + 20 x 365 d (~25 min on 2 cores)
    python -m experiments.calibration_report --smoke            # seconds; temporary folder
    python -m experiments.calibration_report --rebuild          # the files again from the patients there
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import abm
from abm.calibration import DAY28, TARGETS, Target, responders_within_3mo
from abm.cohort import FACTOR_KIND, appender, read_partial, run_ensemble, sample_cohort
from abm.errors import ParamError
from abm.io import model_fingerprint
from abm.params import Params, read_calibrated
from abm.rows import spearman, wilson
from experiments.common import RESULTS, cli, git_commit, machine, panel_grid, write_figure, write_text

NAME = "calibration_report"


@dataclass
class Row:
    """One line of the report table."""

    target: Target
    value: float | None
    low: float | None
    high: float | None
    n: int
    horizon: str

    @property
    def status(self) -> str:
        if self.value is None:
            return "not measured"
        if self.target.low <= self.value <= self.target.high:
            return "within band"
        if self.low is not None and self.high is not None and self.low <= self.target.high and \
                self.high >= self.target.low:
            return "interval reaches band"
        return "miss"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m experiments.{NAME}", description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="patients in the main cohort (100)")
    p.add_argument("--days", type=float, default=28.0, help="days of the main cohort (28)")
    p.add_argument("--grid", type=int, help="window side (default: the default grid.size)")
    p.add_argument("--relapse-n", type=int, default=20, help="patients in the follow-up cohort (20; 0: none)")
    p.add_argument("--relapse-days", type=float, default=365.0, help="days of the follow-up cohort (365)")
    p.add_argument("--relapse-grid", type=int, default=200, help="window side of the follow-up cohort (200)")
    p.add_argument("--seed", type=int, default=7, help="cohort seed (a different cohort from the calibration's)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes")
    p.add_argument("--scheduler", help="address of a Dask scheduler (instead of local workers)")
    p.add_argument("--out", type=Path, help=f"output folder (default experiments/results/{NAME})")
    p.add_argument("--smoke", action="store_true", help="3 + 2 patients, 32^2 window, 1 day; temporary folder")
    p.add_argument("--rebuild", action="store_true",
                   help="rewrite the tables, figure and README from the patients already in --out, simulating "
                        "nothing (the provenance keeps the commit that simulated them)")
    p.add_argument("--force", action="store_true",
                   help="simulate a cohort again when --out holds one of other settings or another model version")
    return p


def run_cohort(folder: Path, name: str, n: int, seed: int, base: Params, days: float,
               args: argparse.Namespace) -> list[dict[str, Any]]:
    """Simulate (or read back) a cohort; finished patients are kept in ``folder/name/`` across interruptions."""
    sub = folder / name
    sub.mkdir(parents=True, exist_ok=True)
    settings = {"n": n, "seed": seed, "days": days, "params": base.flat(), "model": model_fingerprint()}
    settings_file = sub / "settings.json"
    if settings_file.exists() and json.loads(settings_file.read_text(encoding="utf-8")) != json.loads(
            json.dumps(settings)):
        if not args.force:
            raise ParamError(f"--out {str(folder)!r}: its {name} cohort was simulated with other settings or another "
                             "version of the model; pass --force to simulate it again (its patients are deleted) "
                             "or choose another --out")
        for partial in sub.glob("*.jsonl"):
            partial.unlink()  # other settings or another model: start this cohort again
    write_text(settings_file, json.dumps(settings, sort_keys=True))
    jobs = sample_cohort(n, seed, base, days=days)
    done = read_partial(sub)
    todo = [job for job in jobs if job.index not in done]
    args.simulated += len(todo)
    if todo:
        run_ensemble(todo, base, workers=args.workers, scheduler=args.scheduler, progress=True,
                     on_result=appender(sub))
        done = read_partial(sub)
    return [done[job.index] for job in jobs]


def bootstrap_median(values: list[float], seed: int = 0, resamples: int = 4000) -> tuple[float, float]:
    """Percentile bootstrap 95 % interval of the median (seeded: the same data give the same interval)."""
    x = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    medians = np.median(x[rng.integers(0, len(x), size=(resamples, len(x)))], axis=1)
    return float(np.percentile(medians, 2.5)), float(np.percentile(medians, 97.5))


def estimate(target: Target, rows: list[dict[str, Any]], horizon: str) -> Row:
    """The target's simulated value and 95 % interval from patient rows."""
    value, n = target.measure(rows)
    if value is None:
        return Row(target, None, None, None, n, horizon)
    if target.proportion:
        _, low, high = wilson(round(value * n), n)
        return Row(target, value, low, high, n, horizon)
    low, high = bootstrap_median([r[target.column] for r in rows if r.get(target.column) is not None])
    return Row(target, value, low, high, n, horizon)


def table_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["target", "label", "simulated", "ci95_low", "ci95_high", "n", "band_low", "band_high", "status",
                "horizon", "source"])
    for r in rows:
        w.writerow([r.target.key, r.target.label, _num(r.value), _num(r.low), _num(r.high), r.n, r.target.low,
                    r.target.high, r.status, r.horizon, r.target.source])
    return buf.getvalue()


ASSOCIATION_OUTCOMES = (("crs_max_grade", "CRS grade"), ("icans_max_grade", "ICANS grade"),
                        ("cart_peak_blood_per_ul", "CAR-T peak"))


def associations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Spearman rank correlation (95 % interval) of every patient factor with the CRS and ICANS grades and Cmax.

    The factors are the cohort's profile keys (:data:`abm.cohort.FACTOR_KIND`: covariates a clinic measures
    or sets, and latent factors it cannot see); a factor constant in the cohort has no correlation (None).
    """
    out = []
    for factor, kind in FACTOR_KIND.items():
        for outcome, _ in ASSOCIATION_OUTCOMES:
            c = spearman(rows, factor, outcome)
            out.append({"factor": factor, "kind": kind, "outcome": outcome, "rho": c["rho"],
                        "ci95_low": c["ci95"][0], "ci95_high": c["ci95"][1], "n": c["n"]})
    return out


def strongest(assoc: list[dict[str, Any]], outcome: str) -> dict[str, Any] | None:
    """The factor with the largest absolute rank correlation with ``outcome`` (None if none varies)."""
    known = [a for a in assoc if a["outcome"] == outcome and a["rho"] is not None]
    return max(known, key=lambda a: abs(a["rho"])) if known else None


def associations_markdown(assoc: list[dict[str, Any]]) -> list[str]:
    """The README section: the correlation table and, per toxicity grade, its strongest factor."""
    def cell(a):
        return "constant" if a["rho"] is None else f"{a['rho']:+.2f} [{a['ci95_low']:+.2f}, {a['ci95_high']:+.2f}]"

    by = {(a["factor"], a["outcome"]): a for a in assoc}
    lines = ["", "## What drives toxicity in the cohort", "",
             "Spearman rank correlation [95 % interval, Fisher z] of each patient factor with the highest CRS and "
             "ICANS grades and the blood CAR-T peak over the main cohort. *Covariates* are what a clinic measures "
             "or sets before infusion; *latent* factors are patient or product properties it cannot see. Toxicity "
             "should follow covariates through the mechanisms that make it (issue 23): a latent factor that is the "
             "strongest determinant is a defect of the model, not a finding.", "",
             "| factor | kind | " + " | ".join(label for _, label in ASSOCIATION_OUTCOMES) + " |",
             "|---|---|" + "---|" * len(ASSOCIATION_OUTCOMES)]
    for factor, kind in FACTOR_KIND.items():
        lines.append(f"| `{factor}` | {kind} | "
                     + " | ".join(cell(by[factor, o]) for o, _ in ASSOCIATION_OUTCOMES) + " |")
    lines.append("")
    for outcome, label in ASSOCIATION_OUTCOMES[:2]:
        top = strongest(assoc, outcome)
        if top is None:
            continue
        verdict = ("a latent factor: the model does not yet explain it by what a clinic can see"
                   if top["kind"] == "latent" else "a covariate")
        lines.append(f"- {label}: strongest factor `{top['factor']}` (rho {top['rho']:+.2f}), {verdict}.")
    return lines


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.4g}"


def figure(rows: list[Row]):
    """One panel per unit (rates; days; cells/uL): the target band as a grey bar, the value with its 95 % interval."""
    units = list(dict.fromkeys(r.target.unit for r in rows))
    _, fig, axes = panel_grid(len(units), len(units))
    fig.set_size_inches(6 * len(units), 5.5)
    for ax, unit in zip(axes, units, strict=False):
        subset = [r for r in rows if r.target.unit == unit]
        for y, r in enumerate(subset):
            ax.barh(y, r.target.high - r.target.low, left=r.target.low, height=0.5, color="0.8",
                    label="target band" if y == 0 else None)
            if r.value is not None:
                color = "#009E73" if r.status != "miss" else "#D55E00"
                xerr = [[max(r.value - r.low, 0.0)], [max(r.high - r.value, 0.0)]]  # rounding can cross the value
                ax.errorbar(r.value, y, xerr=xerr, fmt="o", color=color,
                            capsize=3, label=None)
        ax.set_yticks(range(len(subset)), [r.target.label for r in subset], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(unit)
        if unit == "fraction of patients":
            ax.set_xlim(0, 1)
        if unit == "cells/uL":
            ax.set_xscale("log")
        ax.grid(axis="x", alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle("Calibration targets (grey) and the virtual cohort (dot: value, bar: 95 % interval; "
                 "green: reaches the band, orange: misses)", fontsize=10)
    fig.tight_layout()
    return fig


def readme(rows: list[Row], prov: dict[str, Any], assoc: list[dict[str, Any]]) -> str:
    met = [r for r in rows if r.status in ("within band", "interval reaches band")]
    missed = [r for r in rows if r.status == "miss"]
    lines = [
        "# Calibration report",
        "",
        "Generated by `python -m experiments.calibration_report`; do not edit by hand.",
        "",
        f"Virtual ELIANA-like cohort of {prov['n']} patients ({prov['days']:g} days, {prov['grid']}^2 window) and a "
        f"follow-up cohort of {prov['relapse_n']} patients ({prov['relapse_days']:g} days, "
        f"{prov['relapse_grid']}^2 window), all with the calibrated defaults of `abm/calibrated.toml` "
        f"({', '.join(f'`{k}` = {v:g}' for k, v in prov['calibrated'].items()) or 'none yet'}). "
        "CRS and ICANS are graded as ASTCT 2019 surrogates (see `abm/body/toxicity.py`).",
        "",
        f"**{len(met)} of {len(rows)} targets reached** (value in the band, or its 95 % interval overlapping it); "
        f"missed: {', '.join(r.target.label for r in missed) or 'none'}.",
        "",
        "| target | simulated [95 % CI] | n | band | status | source |",
        "|---|---|---:|---|---|---|",
    ]
    for r in rows:
        sim = "not measured" if r.value is None else f"{r.value:.3g} [{r.low:.3g}, {r.high:.3g}]"
        lines.append(f"| {r.target.label} | {sim} | {r.n} | {r.target.low:g}-{r.target.high:g} | {r.status} | "
                     f"{r.target.source} |")
    f = prov.get("follow_up")
    if f:
        relapse = (f"relapse days {', '.join(f'{d:g}' for d in f['relapse_days'])}; "
                   f"{f['antigen_negative']} of {f['relapses']} target-negative" if f["relapses"] else "none relapsed")
        aplasia = f"; B-cell aplasia median {f['aplasia_median_days']:g} days" if f["aplasia_median_days"] else ""
        lines += ["", f"Follow-up cohort (not scored): {f['relapses']} of {f['responders']} responders relapsed "
                  f"within {prov['relapse_days']:g} days ({relapse}){aplasia}."]
    m = prov.get("mrd_residue")
    if m and m["positive"]:
        lines += ["", f"Day-28 MRD of the main cohort's {m['responders']} responders: {m['positive']} positive "
                  f"(>= 0.01 %), of which {m['few_blasts']} hold at most {FEW_BLASTS} blasts in the window. A window "
                  "cannot measure below one blast in its nucleated cells (`mrd_detection_limit`, median "
                  f"{m['limit_median']:.2g} among responders; see `abm/outcomes.py`)."]
    if prov.get("cart_peak_blood_per_ul"):
        q = prov["cart_peak_blood_per_ul"]
        lines += ["", f"Blood CAR-T peak (Cmax) quartiles in the main cohort: {q[0]:,.0f}, {q[1]:,.0f}, "
                  f"{q[2]:,.0f} cells/uL."]
    lines += [
        "",
        "![calibration figure](figure.png)",
        *associations_markdown(assoc),
        "",
        "## Provenance",
        "",
        f"- cart-abm {prov['cart_abm_version']}, commit `{prov['git_commit']}`; command `{prov['command']}`",
        f"- cohort seed {prov['seed']} (calibration used another cohort); date (UTC) {prov['date_utc']}; "
        f"wall time {prov['wall_s']:.0f} s with {prov['workers']} worker(s) for the {prov['simulated']} patients "
        f"this invocation simulated" + (" (the others were finished by an earlier, interrupted invocation and read "
                                         "back)" if prov["simulated"] < prov["n"] + prov["relapse_n"] else ""),
        f"- machine: {prov['machine']['cpu']}, {prov['machine']['cpu_count']} CPUs; Python "
        f"{prov['machine']['python']}, NumPy {prov['machine']['numpy']}, Numba {prov['machine']['numba']}, "
        f"Mesa {prov['machine']['mesa']}",
    ]
    if prov.get("rebuilt"):
        lines.append(f"- tables and README rebuilt from these patients at commit `{prov['rebuilt']['git_commit']}` "
                     f"({prov['rebuilt']['date_utc']}; `--rebuild`, nothing simulated)")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.n, args.days, args.grid, args.relapse_n, args.relapse_days, args.relapse_grid = 3, 1.0, 32, 2, 1.0, 32
        args.out = args.out or Path(tempfile.mkdtemp(prefix="cart-abm-calibration-report-"))
    out = args.out or RESULTS / NAME
    if args.rebuild:
        return rebuild(out)
    for name, value, low in (("--n", args.n, 1), ("--relapse-n", args.relapse_n, 0), ("--workers", args.workers, 1)):
        if value < low:
            print(f"error: {name} = {value}: expected at least {low}", file=sys.stderr)
            return 2
    t0 = time.perf_counter()
    args.simulated = 0  # patients this invocation runs (run_cohort counts them; resumed ones are read back)
    try:
        base = Params.default()
        if args.grid is not None:
            base = base.replace({"grid.size": args.grid})
        rows_main = run_cohort(out, "main", args.n, args.seed, base, args.days, args)
        rows_follow = []
        if args.relapse_n:
            follow = base.replace({"grid.size": args.relapse_grid})
            rows_follow = run_cohort(out, "follow_up", args.relapse_n, args.seed + 1, follow, args.relapse_days, args)
    except ParamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    prov = {
        "experiment": NAME, "cart_abm_version": abm.__version__, "git_commit": git_commit(),
        "command": " ".join(["python -m experiments.calibration_report", *(sys.argv[1:] if argv is None else argv)]),
        "n": args.n, "days": args.days, "grid": base["grid.size"], "relapse_n": args.relapse_n,
        "relapse_days": args.relapse_days, "relapse_grid": args.relapse_grid, "seed": args.seed,
        "workers": args.workers, "calibrated": read_calibrated(), "smoke": args.smoke,
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "wall_s": time.perf_counter() - t0,
        "simulated": args.simulated,
        "machine": machine(),
    }
    write_report(out, rows_main, rows_follow, prov)
    return 0


def rebuild(out: Path) -> int:
    """``--rebuild``: the report's files from the patients and provenance already in ``out``, simulating nothing."""
    try:
        prov = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"error: --rebuild needs a finished report in {str(out)!r}: {exc}", file=sys.stderr)
        return 2
    cohorts = [read_partial(out / name) if (out / name).is_dir() else {} for name in ("main", "follow_up")]
    if len(cohorts[0]) != prov["n"] or len(cohorts[1]) != prov["relapse_n"]:
        print(f"error: {str(out)!r} holds {len(cohorts[0])} + {len(cohorts[1])} patients, its provenance "
              f"{prov['n']} + {prov['relapse_n']}", file=sys.stderr)
        return 2
    rows_main, rows_follow = ([rows[k] for k in sorted(rows)] for rows in cohorts)
    prov["rebuilt"] = {"git_commit": git_commit(), "date_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
    write_report(out, rows_main, rows_follow, prov)
    return 0


def write_report(out: Path, rows_main: list[dict[str, Any]], rows_follow: list[dict[str, Any]],
                 prov: dict[str, Any]) -> None:
    """Score the targets and write every file of the report (``prov`` gains the cohort summaries)."""
    table = [estimate(t, rows_main, f"{prov['days']:g} d, {prov['grid']}^2") for t in TARGETS
             if t.horizon_days <= DAY28]
    table += [estimate(t, rows_follow, f"{prov['relapse_days']:g} d, {prov['relapse_grid']}^2")
              for t in TARGETS if t.horizon_days > DAY28]
    prov["cart_peak_blood_per_ul"] = _quartiles([r.get("cart_peak_blood_per_ul") for r in rows_main])
    prov["follow_up"] = follow_up_summary(rows_follow)
    prov["mrd_residue"] = mrd_residue(rows_main)
    assoc = associations(rows_main)
    write_text(out / "table.csv", table_csv(table))
    write_text(out / "associations.csv", pd.DataFrame(assoc).to_csv(index=False, float_format="%.4g"))
    write_text(out / "patients.csv", _patients_csv(rows_main))
    write_text(out / "relapse_patients.csv", _patients_csv(rows_follow))
    write_figure(out / "figure.png", figure(table))
    write_text(out / "provenance.json", json.dumps(prov, indent=2, allow_nan=False) + "\n")
    write_text(out / "README.md", readme(table, prov, assoc))
    print(f"wrote {out}", file=sys.stderr)


def follow_up_summary(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Relapses of the follow-up cohort's responders and B-cell aplasia.

    Responders as the relapse targets count them (:func:`abm.calibration.responders_within_3mo`): when
    they relapsed and how many relapses lacked the product's target; and the median B-cell aplasia of all
    patients. Descriptive: no target is scored on it.
    """
    if not rows:
        return None
    responders = responders_within_3mo(rows)
    relapsed = [r for r in responders if r.get("relapse")]
    aplasia = [float(r["b_cell_aplasia_days"]) for r in rows if r.get("b_cell_aplasia_days") is not None]
    return {
        "responders": len(responders),
        "relapses": len(relapsed),
        "relapse_days": sorted(float(r["relapse_day"]) for r in relapsed),
        "antigen_negative": sum(bool(r.get("relapse_antigen_negative")) for r in relapsed),
        "aplasia_median_days": float(np.median(aplasia)) if aplasia else None,
    }


FEW_BLASTS = 3  # "a few blasts": the residue a window's one-cell detection limit makes positive


def mrd_residue(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """How many day-28 responders are MRD-positive, and how many of those by at most :data:`FEW_BLASTS` blasts.

    The window's blast count is ``mrd_day28 / mrd_detection_limit`` (the limit is one over its nucleated
    cells). ``None`` when the rows lack the limit (a cohort from before it was recorded).
    """
    responders = [r for r in rows if r.get("cr_day28")]
    if not responders or any(r.get("mrd_detection_limit") is None for r in responders):
        return None
    positive = [r for r in responders if not r.get("mrd_negative_day28")]
    blasts = [round(float(r["mrd_day28"]) / float(r["mrd_detection_limit"])) for r in positive]
    return {
        "responders": len(responders),
        "positive": len(positive),
        "few_blasts": sum(b <= FEW_BLASTS for b in blasts),
        "limit_median": float(np.median([float(r["mrd_detection_limit"]) for r in responders])),
    }


def _quartiles(values: list[float | None]) -> list[float] | None:
    x = [float(v) for v in values if v is not None]
    return [float(q) for q in np.percentile(x, [25, 50, 75])] if x else None


def _patients_csv(rows: list[dict[str, Any]]) -> str:
    return pd.DataFrame(rows).to_csv(index=False) if rows else ""  # as `cart-abm trial` writes patients.csv


if __name__ == "__main__":
    sys.exit(cli(main))
