"""Tests of ``python -m experiments.sensitivity`` (Morris screening); nothing here asserts a scientific result."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("SALib")

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from abm.errors import ParamError  # noqa: E402
from abm.params import SCHEMA, Params  # noqa: E402
from experiments import common, sensitivity  # noqa: E402

OUTPUTS = ("results.csv", "timeseries.csv.gz", "morris.csv", "figure.png", "provenance.json", "README.md")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sensitivity") / "smoke"
    assert sensitivity.main(["--smoke", "--quiet", "--workers", "1", "--out", str(out)]) == 0
    return out


def test_smoke_writes_every_output(smoke):
    for name in OUTPUTS:
        assert (smoke / name).is_file(), name
        assert (smoke / name).stat().st_size > 0, name


def test_smoke_rows_are_k_plus_one_times_r_times_the_patients(smoke):
    k, r, patients = len(sensitivity.SMOKE_PARAMS), 2, 2
    rows = read_csv(smoke / "results.csv")
    assert len(rows) == (k + 1) * r * patients
    for key in sensitivity.SMOKE_PARAMS:
        assert key in rows[0]
    assert {row["grid_size"] for row in rows} == {str(sensitivity.SMOKE_GRID)}
    by_point: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        by_point.setdefault(row["arm"], []).append((row["patient_id"], row["seed"]))
    assert len(by_point) == (k + 1) * r and len({tuple(v) for v in by_point.values()}) == 1  # the same patients
    prov = json.loads((smoke / "provenance.json").read_text(encoding="utf-8"))
    assert prov["runs"] == (k + 1) * r * patients and prov["design"]["patients_per_point"] == patients


def test_smoke_morris_table_has_mu_star_per_outcome(smoke):
    rows = read_csv(smoke / "morris.csv")
    assert {"outcome", "parameter", "rank", "mu_star", "mu_star_conf", "mu", "sigma"} <= set(rows[0])
    outcomes = {o.key for o in sensitivity.outcomes_for(2.0)}
    assert {row["outcome"] for row in rows} == outcomes
    for o in outcomes:
        sub = [row for row in rows if row["outcome"] == o]
        assert sorted(row["parameter"] for row in sub) == sorted(sensitivity.SMOKE_PARAMS)
        mu_star = [float(row["mu_star"]) for row in sub]
        assert all(math.isfinite(m) and m >= 0 for m in mu_star)
        assert mu_star == sorted(mu_star, reverse=True)  # ranked
    readme = (smoke / "README.md").read_text(encoding="utf-8")
    assert "Smoke run" in readme and "mu*" in readme and "## Provenance" in readme


@pytest.mark.parametrize("bound", sensitivity.BOUNDS, ids=lambda b: b.key)
def test_default_bounds_inside_schema_range(bound):
    param = next((p for p in SCHEMA if p.key == bound.key), None)
    assert param is not None, bound.key
    assert bound.low < bound.high
    if param.low is not None:
        assert bound.low >= param.low
    if param.high is not None:
        assert bound.high <= param.high
    assert bound.low <= param.default <= bound.high  # a band around the default
    assert (param.type is int) == bound.integer
    # every value the design can produce is accepted by the parameter validation
    lo, hi = bound.space()
    for x in np.linspace(lo, hi, 7):
        Params.default().replace({bound.key: bound.value(float(x))})


def test_design_values_in_bounds_and_jobs_share_seed():
    X = sensitivity.design(sensitivity.BOUNDS, 2, 4, 0)
    k = len(sensitivity.BOUNDS)
    assert X.shape == ((k + 1) * 2, k)
    jobs = sensitivity.jobs_for(sensitivity.BOUNDS, X, common.seed_for(0, 0), 28.0, 200)
    assert len(jobs) == (k + 1) * 2 and len({j.seed for j in jobs}) == 1
    for job in jobs:
        for b in sensitivity.BOUNDS:
            v = job.overrides[b.key]
            assert b.low <= v <= b.high
            assert isinstance(v, int) == b.integer


def test_cohort_jobs_put_the_same_patients_at_every_point_and_the_point_wins():
    bounds = tuple(b for b in sensitivity.BOUNDS if b.key in ("patient.marrow_blast_fraction", "cart.kill_rate_per_h"))
    X = sensitivity.design(bounds, 2, 4, 0)
    jobs = sensitivity.jobs_for(bounds, X, 99, 28.0, 200, patients=3, cohort_seed=5)
    assert len(jobs) == len(X) * 3
    for n, x in enumerate(X):
        point = jobs[3 * n: 3 * n + 3]
        assert [j.patient_id for j in point] == [0, 1, 2] and len({j.arm for j in point}) == 1
        assert [j.seed for j in point] == [j.seed for j in jobs[:3]] and 99 not in {j.seed for j in point}
        for j in point:
            for b, v in zip(bounds, x, strict=True):
                assert j.overrides[b.key] == b.value(float(v))
            assert j.overrides["patient.weight_kg"] == jobs[j.patient_id].overrides["patient.weight_kg"]
    one = sensitivity.jobs_for(bounds, X, 99, 28.0, 200)
    assert len(one) == len(X) and {j.seed for j in one} == {99}  # the one-patient design


def test_point_means_average_each_points_patients():
    o = next(o for o in sensitivity.outcomes_for(28.0) if o.key == "crs_max_grade")
    rows = [{"crs_max_grade": g} for g in (0, 2, 4, 4, 1, 3)]
    assert sensitivity.point_means(o, rows, 3).tolist() == [1.0, 4.0, 2.0]


def test_bad_params_option_is_refused():
    with pytest.raises(ParamError):
        sensitivity.select_bounds("cart.kill_rate_per_h,no.such_key", smoke=False)


def test_unreachable_scheduler_exits_2_with_clear_message(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.sensitivity", "--smoke", "--scheduler",
                           "tcp://127.0.0.1:9", "--out", str(tmp_path / "x")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "cannot reach a Dask scheduler" in proc.stderr and "Traceback" not in proc.stderr


def test_runs_of_half_a_year_also_analyse_relapse():
    assert "relapse" not in {o.key for o in sensitivity.outcomes_for(28.0)}
    outs = {o.key: o for o in sensitivity.outcomes_for(sensitivity.RELAPSE_DAYS)}
    assert {"relapse", "event_free_days"} <= set(outs)
    free = outs["event_free_days"]
    assert sensitivity.outcome_value(free, {"cr_day": None, "relapse": None, "days": 180.0}) == 0.0
    assert sensitivity.outcome_value(free, {"cr_day": 9.0, "relapse": True, "relapse_day": 120.0, "days": 180}) == 120
    assert sensitivity.outcome_value(free, {"cr_day": 9.0, "relapse": False, "relapse_day": None, "days": 180}) == 180
    assert math.isnan(sensitivity.outcome_value(outs["relapse"], {"relapse": None}))
