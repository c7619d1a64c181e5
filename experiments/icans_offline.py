"""ICANS shape from recorded effect peaks: score an ICE scale and steepness without rerunning patients.

The ICANS grade is a monotone function of the running maximum of the effect
compartment ``C`` (:func:`abm.body.icans_surrogate`), so the any-grade and
grade >= 3 rates of a cohort for any ICE half-effect level ``K`` and
steepness ``n`` follow from each patient's peak ``C``.

``python -m experiments.icans_offline scan --n N --out PEAKS.json [--set KEY=VALUE ...] [--workers K]``
    runs the first ``N`` patients of the calibration cohort (seed 2018,
    200^2, 28 d; :func:`abm.cohort.sample_cohort`) and writes each one's peak
    ``C`` (observations every ``time.observe_every_h``), CRS and ICANS grades,
    steroids and peak serum IL-6.
``python -m experiments.icans_offline fit PEAKS.json``
    prints the rates over a grid of ``K`` x ``n``, the 25 best by the ICANS
    targets' band-scaled miss, and for each ``n`` the range of ``K`` that puts
    both targets in their bands (any grade 0.22-0.40, grade >= 3 0.09-0.15;
    :data:`abm.calibration.TARGETS`).

Recorded peaks and what they gave are in
``experiments/results/calibration/icans_offline/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from abm.body import ICE_ZERO, icans_surrogate
from abm.cohort import Job, Task, run_tasks, sample_cohort
from abm.params import Params, parse_assignment

COHORT_SEED = 2018
ANY_BAND, SEVERE_BAND = (0.22, 0.40), (0.09, 0.15)


def peak_effect(job: Job, base: dict[str, Any]) -> dict[str, Any]:
    """One patient's peak ICANS effect ``C`` [pg/mL], grades, steroids and peak serum IL-6."""
    from abm.model import MarrowModel

    params = Params(base).replace({**job.overrides, "time.days": job.days})
    model = MarrowModel(params, seed=job.seed, backend="cpu", threads=1).run()
    df = model.datacollector.get_model_vars_dataframe()
    return {"patient": job.index, "c_peak": float(df["icans_effect_pg_ml"].max()),
            "icans": int(model.body.icans_peak), "crs": int(model.body.crs_peak),
            "steroids": bool(model.body.steroids_given), "il6_peak": float(df["serum_il6_pg_ml"].max())}


def scan(n: int, overrides: dict[str, Any], workers: int) -> list[dict[str, Any]]:
    base = Params.default().replace({"grid.size": 200, "time.days": 28.0, **overrides})
    jobs = sample_cohort(n, COHORT_SEED, base, days=28.0)
    tasks = [Task(f"icans-peak-{j.index}", peak_effect, (j, base.flat())) for j in jobs]
    return run_tasks(tasks, workers=workers, progress=True, unit="patient")


def rates(c_peaks: np.ndarray, half: float, hill: float) -> tuple[float, float]:
    """Any-grade and grade >= 3 ICANS shares for ICE half-effect ``half`` [pg/mL] and steepness ``hill``."""
    grades = np.array([icans_surrogate(c, half, 1.5 * half * ICE_ZERO ** (1 / hill), hill)[1] for c in c_peaks])
    return float((grades >= 1).mean()), float((grades >= 3).mean())


def fit(rows: Sequence[dict[str, Any]]) -> str:
    c = np.array([r["c_peak"] for r in rows])
    lines = [f"n {len(c)}, recorded grades >= 1 / >= 3: {np.mean([r['icans'] >= 1 for r in rows]):.3f} / "
             f"{np.mean([r['icans'] >= 3 for r in rows]):.3f}"]
    scored = []
    for hill in (1.5, 2, 2.5, 3, 3.5, 4, 5, 5.131):
        for half in np.geomspace(100, 3000, 61):
            a, s = rates(c, half, hill)
            miss = (max(0, ANY_BAND[0] - a, a - ANY_BAND[1]) ** 2 / 0.05**2
                    + max(0, SEVERE_BAND[0] - s, s - SEVERE_BAND[1]) ** 2 / 0.04**2)
            scored.append((miss, abs(a - 0.31) + abs(s - 0.12), hill, round(float(half), 1), a, s))
    scored.sort()
    lines += ["miss, distance to band centres, n, K, any, >= 3:", *(str(b) for b in scored[:25])]
    for hill in (2, 2.5, 3, 3.5, 4, 5.131):
        inside = [b[3] for b in scored if b[2] == hill and b[0] == 0]
        lines.append(f"n {hill}: in-band K range {(min(inside), max(inside)) if inside else None}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.icans_offline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("scan", help="record peak effects of the calibration cohort")
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    s.add_argument("--workers", type=int, default=2)
    f = sub.add_parser("fit", help="score ICE scale x steepness on recorded peaks")
    f.add_argument("peaks", type=Path)
    args = parser.parse_args(argv)
    if args.command == "scan":
        rows = scan(args.n, dict(parse_assignment(a) for a in args.overrides), args.workers)
        args.out.write_text(json.dumps(rows), encoding="utf-8")
        print(f"wrote {args.out} ({len(rows)} patients)")
    else:
        print(fit(json.loads(args.peaks.read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    from experiments.common import cli

    sys.exit(cli(main))
