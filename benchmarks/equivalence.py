"""Two numerical schemes on the same virtual patients: does any outcome differ? (a paired virtual trial)

Usage (from the repository root)::

    python -m benchmarks.equivalence --n 40 --workers 2 --out benchmarks/results/turnover-equivalence

runs ``cart-abm trial`` twice on one cohort, the same ``--seed`` (so the same
patients, profiles and patient seeds), once with ``--key`` at each of its two
``--values`` (default ``grid.turnover``: ``site``, the per-site coin of earlier
versions, is the reference; ``group`` the scheme of :mod:`kernels.turnover`).
Each trial folder is resumable, so an interrupted comparison continues where
it stopped. Then every outcome of ``patients.csv`` is compared patient by
patient (:mod:`abm.paired`, the statistics of every paired comparison):
both arms' means (rates, for a yes/no outcome, with Wilson 95 % intervals),
the mean paired difference with its bootstrap 95 % interval and, for a yes/no
outcome, the exact McNemar test on the discordant pairs. An outcome *agrees* when the interval of its difference
holds 0; with ~15 outcomes, about one interval in 20 misses 0 by chance
alone. Writes ``<out>/README.md`` (the table), ``<out>/comparison.json`` and
the two trial folders ``<out>/<value>/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from abm import paired
from abm.rows import wilson

OUTCOMES = (
    "cr_day28", "mrd_negative_day28", "mrd_day28", "crs_max_grade", "crs_onset_day", "icans_max_grade",
    "icans_onset_day", "cart_peak_blood_per_ul", "cart_peak_day", "b_cell_aplasia_days", "relapse",
    "relapse_day", "tocilizumab_doses", "steroids_given", "blast_fraction_day0",
)
BINARY = ("cr_day28", "mrd_negative_day28", "relapse", "steroids_given")


def _value(text: str) -> float | None:
    if text in ("", "None", "nan"):
        return None
    if text in ("True", "False"):
        return float(text == "True")
    return float(text)


def read_patients(folder: Path) -> dict[int, dict[str, float | None]]:
    with open(folder / "patients.csv", newline="") as f:
        return {int(r["patient"]): {k: _value(r.get(k, "")) for k in OUTCOMES} for r in csv.DictReader(f)}


def _rate(x: np.ndarray) -> dict[str, Any]:
    p, low, high = wilson(int(x.sum()), len(x))
    return {"k": int(x.sum()), "n": len(x), "rate": p, "low": low, "high": high}


def compare(reference: dict[int, dict], other: dict[int, dict]) -> list[dict[str, Any]]:
    """One row per outcome: the paired comparison of ``other`` against ``reference`` (see the module docstring)."""
    patients = sorted(set(reference) & set(other))
    rows = []
    for key in OUTCOMES:
        pairs = [(reference[p][key], other[p][key]) for p in patients
                 if reference[p][key] is not None and other[p][key] is not None]
        row: dict[str, Any] = {"outcome": key, "pairs": len(pairs),
                               "missing_in_one_arm": sum((reference[p][key] is None) != (other[p][key] is None)
                                                         for p in patients)}
        if pairs:
            a = [x for x, _ in pairs]
            b = [y for _, y in pairs]
            d = paired.paired_difference(a, b)
            row["reference_mean"], row["other_mean"] = d.reference_mean, d.other_mean
            row["difference"], row["low"], row["high"] = d.difference, d.low, d.high
            row["agrees"] = not d.detected
            if key in BINARY:
                row["reference_rate"] = _rate(np.array(a))
                row["other_rate"] = _rate(np.array(b))
                m = paired.mcnemar(a, b)
                row["discordant"] = [m.reference_only, m.other_only]
                row["mcnemar_p"] = m.p
        rows.append(row)
    return rows


def _fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def report(rows: list[dict[str, Any]], key: str, values: tuple[str, str], n: int, days: float, seed: int) -> str:
    agree = sum(bool(r.get("agrees")) for r in rows if "agrees" in r)
    compared = sum("agrees" in r for r in rows)
    lines = [
        f"# Paired comparison: `{key}` = `{values[1]}` against `{values[0]}`", "",
        f"`python -m benchmarks.equivalence --key {key} --values {','.join(values)} --n {n} --days {days:g} "
        f"--seed {seed}`: the same {n} virtual patients (cohort seed {seed}, default parameters, {days:g} days) in "
        f"both arms. Difference = `{values[1]}` - `{values[0]}`, mean over patients with its bootstrap 95 % "
        "interval; yes/no outcomes also give both rates (Wilson 95 %) and the exact McNemar p on the discordant "
        "pairs.", "",
        f"**{agree} of {compared} outcomes agree** (the interval of the difference holds 0; about 1 in 20 would "
        "miss by chance alone).", "",
        f"| outcome | pairs | {values[0]} | {values[1]} | difference [95 % CI] | agrees | McNemar p |",
        "|---|---:|---:|---:|---|---|---:|",
    ]
    for r in rows:
        if "agrees" not in r:
            lines.append(f"| {r['outcome']} | 0 | - | - | - | - | - |")
            continue
        if "reference_rate" in r:
            ref = f"{r['reference_rate']['k']}/{r['reference_rate']['n']}"
            oth = f"{r['other_rate']['k']}/{r['other_rate']['n']}"
            p = _fmt(r["mcnemar_p"])
        else:
            ref, oth, p = _fmt(r["reference_mean"]), _fmt(r["other_mean"]), "-"
        lines.append(f"| {r['outcome']} | {r['pairs']} | {ref} | {oth} | {_fmt(r['difference'])} "
                     f"[{_fmt(r['low'])}, {_fmt(r['high'])}] | {'yes' if r['agrees'] else '**no**'} | {p} |")
    lines += ["", "Outcomes missing in a patient (no CRS, so no onset day; no relapse, so no relapse day) are "
              "compared over the patients that have them in both arms (`pairs`)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.equivalence", description=__doc__.split("\n\n")[0])
    ap.add_argument("--key", default="grid.turnover", help="the parameter that differs between the arms")
    ap.add_argument("--values", default="site,group", help="reference,other (default site,group)")
    ap.add_argument("--n", type=int, default=40, help="virtual patients (default 40)")
    ap.add_argument("--days", type=float, default=28.0)
    ap.add_argument("--seed", type=int, default=1, help="cohort seed (default 1)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="a parameter for both arms (repeatable)")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    from abm.cli import main as cart_abm

    values = tuple(args.values.split(","))
    if len(values) != 2:
        ap.error(f"--values {args.values!r}: expected two values, reference,other")
    for value in values:
        folder = args.out / value
        if not (folder / "patients.csv").exists():
            extra = [x for o in args.overrides for x in ("--set", o)]
            code = cart_abm(["trial", "--n", str(args.n), "--days", str(args.days), "--seed", str(args.seed),
                             "--workers", str(args.workers), "--set", f"{args.key}={value}", *extra,
                             "--out", str(folder)])
            if code:
                return code
    rows = compare(read_patients(args.out / values[0]), read_patients(args.out / values[1]))
    (args.out / "comparison.json").write_text(json.dumps(
        {"key": args.key, "values": values, "n": args.n, "days": args.days, "seed": args.seed, "outcomes": rows},
        indent=2) + "\n")
    text = report(rows, args.key, values, args.n, args.days, args.seed)
    (args.out / "README.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
