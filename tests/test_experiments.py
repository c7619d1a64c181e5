"""End-to-end and unit tests of the experiment scripts (``python -m experiments.<name>``).

The smoke runs are seconds long; nothing here asserts a scientific result.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from abm import paired  # noqa: E402
from abm.errors import ParamError  # noqa: E402
from abm.params import Params  # noqa: E402
from abm.rows import wilson  # noqa: E402
from experiments import common, predictor, sweep, window_convergence  # noqa: E402  (experiments/ is at the root)

OUTPUTS = ("results.csv", "timeseries.csv.gz", "convergence.csv", "figure.png", "provenance.json", "README.md")
# columns that legitimately differ between two identical runs
TIMING_COLUMNS = ("wall_s", "cpu_s")


def experiment(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.window_convergence", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def read_csv(path: Path) -> list[dict[str, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict[int, Path]:
    """The smoke study run twice, on 1 and on 2 worker processes."""
    out = {}
    for workers in (1, 2):
        folder = tmp_path_factory.mktemp(f"wc{workers}")
        proc = experiment("--smoke", "--quiet", "--workers", str(workers), "--out", str(folder))
        assert proc.returncode == 0, proc.stderr
        out[workers] = folder
    return out


def test_window_convergence_smoke_writes_every_output(smoke):
    folder = smoke[1]
    for name in OUTPUTS:
        assert (folder / name).is_file(), name
        assert not list(folder.glob(f".{Path(name).stem}.*")), "a temporary file was left behind"
    assert (folder / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    readme = (folder / "README.md").read_text(encoding="utf-8")
    for heading in ("## Question", "## Setup", "## Result", "## Recommended default window", "## Provenance"):
        assert heading in readme
    assert "Smoke run" in readme and "Wilson" in readme and "Student-t" in readme
    prov = json.loads((folder / "provenance.json").read_text(encoding="utf-8"))
    assert prov["seeds"] == [0, 1] and prov["smoke"] and prov["sizes"] == list(window_convergence.SMOKE_SIZES)
    assert prov["recommended_side"] in window_convergence.SMOKE_SIZES
    assert prov["cart_abm_version"] and prov["machine"]["cpu_count"] >= 1


def test_window_convergence_smoke_csv_has_one_row_per_run_with_parameters_and_outcomes(smoke):
    rows = read_csv(smoke[1] / "results.csv")
    sizes = window_convergence.SMOKE_SIZES
    assert len(rows) == len(sizes) * 2
    required = {"arm", "patient_id", "seed", "grid.size", "window_sites", "mrd_day28", "cr_day28",
                "cart_peak_blood_per_ul", "cart_peak_day", "crs_max_grade", "icans_max_grade", "b_cell_aplasia_days",
                "kills", "cart_peak_window", "blast_fraction_final", "wall_s", "version"}
    assert required <= rows[0].keys()
    assert [int(r["grid.size"]) for r in rows] == [s for s in sizes for _ in range(2)]
    assert [int(r["seed"]) for r in rows] == [0, 1] * len(sizes)  # same seeds at every side
    series = read_csv(smoke[1] / "timeseries.csv.gz")
    assert {"arm", "patient_id", "seed", "day", "blast_fraction", "cart", "blood_cart_per_ul"} <= series[0].keys()
    conv = read_csv(smoke[1] / "convergence.csv")
    assert {r["outcome"] for r in conv} == {o.key for o in window_convergence.OUTCOMES}


def test_window_convergence_results_do_not_depend_on_worker_count(smoke):
    one, two = (read_csv(smoke[w] / "results.csv") for w in (1, 2))
    strip = [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in one]
    assert strip == [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in two]
    assert (smoke[1] / "timeseries.csv.gz").read_bytes() == (smoke[2] / "timeseries.csv.gz").read_bytes()
    assert (smoke[1] / "convergence.csv").read_text() == (smoke[2] / "convergence.csv").read_text()


def test_window_convergence_unreachable_scheduler_exits_2_with_clear_message(tmp_path):
    proc = experiment("--smoke", "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "x"), timeout=60)
    assert proc.returncode == 2
    assert "cannot reach a Dask scheduler" in proc.stderr and "tcp://127.0.0.1:9" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x" / "README.md").exists()


@pytest.mark.parametrize("args", [("--n", "0"), ("--workers", "0"), ("--days", "-1"), ("--sizes", "48"),
                                  ("--sizes", "a,b"), ("--seed", "-3"), ("--series-every", "0")])
def test_window_convergence_bad_option_exits_2_and_writes_nothing(tmp_path, capsys, args):
    status = common.cli(window_convergence.main, ["--smoke", "--quiet", *args, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and args[0] in err
    assert not (tmp_path / "x").exists()


# -- the shared module -------------------------------------------------------------------------------------------
def test_series_every_keeps_the_observations_at_whole_multiples_of_its_hours():
    day = [k / 4 for k in range(9)]  # every 6 h for two days
    runs = [{"arm": "a", "patient_id": p, "seed": p, "series": {"day": day, "x": list(range(9))}} for p in (0, 1)]
    header, every = common.timeseries_rows(runs)
    assert header == ["arm", "patient_id", "seed", "day", "x"] and len(every) == 18
    _, daily = common.timeseries_rows(runs, 24.0)
    assert [(r["patient_id"], r["day"], r["x"]) for r in daily] == [(p, d, 4 * d) for p in (0, 1) for d in (0, 1, 2)]
    _, half = common.timeseries_rows(runs, 12.0)
    assert [r["day"] for r in half if r["patient_id"] == 0] == [0, 0.5, 1, 1.5, 2]


def test_parse_args_smoke_never_defaults_to_committed_results():
    parser = common.make_parser("demo", "demo", n=5, days=28.0)
    smoke = common.parse_args(parser, ["--smoke"], smoke_n=2, smoke_days=1.0)
    assert (smoke.n, smoke.days) == (2, 1.0) and common.RESULTS not in smoke.out.parents
    full = common.parse_args(parser, [])
    assert (full.n, full.days, full.out) == (5, 28.0, common.RESULTS / "demo")


def test_seed_for_is_base_times_1000_plus_replicate():
    assert [common.seed_for(7, r) for r in (0, 1, 999)] == [7000, 7001, 7999]
    with pytest.raises(ParamError):
        common.seed_for(0, 1000)


def test_t_critical_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 10, 30, 31, 50, 200):
        assert common.t_critical_975(df) == pytest.approx(stats.t.ppf(0.975, df), rel=2e-5)


def test_wilson_interval_known_values():
    _, lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.27753, abs=1e-5)
    _, lo, hi = wilson(5, 10)
    assert (lo, hi) == pytest.approx((0.23659, 0.76341), abs=1e-5)


def test_mean_interval_student_t_and_single_value():
    e = common.mean_interval([1.0, 2.0, 3.0])
    assert e.mean == 2.0 and e.method == "t"
    assert (e.lo, e.hi) == pytest.approx((2.0 - 4.302653 / math.sqrt(3), 2.0 + 4.302653 / math.sqrt(3)))
    one = common.mean_interval([4.0])
    assert one.mean == 4.0 and one.method == "none" and math.isnan(one.lo)


def test_compare_means_tolerance_is_max_of_2se_relative_and_floor():
    ref = common.Estimate(1.0, 0.9, 1.1, 0.0, 3, "t")
    assert common.compare_means(ref, common.Estimate(1.09, 1.0, 1.2, 0.0, 3, "t")).agree  # within 10 %
    assert not common.compare_means(ref, common.Estimate(1.2, 1.1, 1.3, 0.0, 3, "t")).agree
    assert common.compare_means(ref, common.Estimate(1.2, 1.1, 1.3, 0.0, 3, "t"), abs_tol=0.25).agree
    noisy = common.Estimate(1.5, 0.0, 3.0, 0.3, 3, "t")
    c = common.compare_means(ref, noisy)
    assert c.tolerance == pytest.approx(0.6) and c.agree


def test_run_all_returns_job_order_for_any_worker_count_and_on_a_dask_cluster():
    distributed = pytest.importorskip("distributed")
    jobs = [common.Job(f"s{size}", {"grid.size": size}, r, common.seed_for(3, r), 0.25, series=("cart",))
            for size in (16, 12) for r in range(2)]
    inline, _ = common.run_all(jobs, workers=1, progress=False)
    pooled, _ = common.run_all(jobs, workers=2, progress=False)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        dask, _ = common.run_all(jobs, progress=False, scheduler=cluster.scheduler_address)
    for other in (pooled, dask):
        assert [(r["arm"], r["patient_id"], r["seed"]) for r in other] == [
            (j.arm, j.patient_id, j.seed) for j in jobs]
        for a, b in zip(inline, other, strict=True):
            a, b = dict(a), dict(b)
            for key in TIMING_COLUMNS:
                a.pop(key), b.pop(key)
            assert a == b


def test_run_all_resumes_from_the_runs_kept_beside_out_and_never_reuses_a_changed_run(tmp_path, monkeypatch):
    from abm import cohort

    out = tmp_path / "study"
    jobs = [common.Job("a", {"grid.size": 12}, r, common.seed_for(4, r), 0.1, series=("cart",)) for r in range(3)]
    first, _ = common.run_all(jobs[:2], progress=False, resume=out)  # a study stopped after two runs
    partial = common.partial_file(out)
    assert len(partial.read_text().splitlines()) == 2
    calls = []
    real = cohort.run_condition
    monkeypatch.setattr(cohort, "run_condition", lambda *a: calls.append(a) or real(*a))
    changed = [*jobs[:1], common.Job("a", {"grid.size": 14}, 1, jobs[1].seed, 0.1, series=("cart",)), jobs[2]]
    resumed, _ = common.run_all(changed, progress=False, resume=out)
    assert [c[1] for c in calls] == [jobs[1].seed, jobs[2].seed]  # the changed run and the missing one
    fresh, _ = common.run_all(jobs[:1], progress=False)
    strip = lambda r: {k: v for k, v in r.items() if k not in TIMING_COLUMNS}  # noqa: E731
    assert strip(resumed[0]) == strip(fresh[0]) == strip(first[0])  # a kept run reads back as it was
    assert [r["patient_id"] for r in resumed] == [0, 1, 2]


def test_a_study_whose_out_has_no_parent_yet_keeps_its_runs(tmp_path):
    """The default smoke folder's parent does not exist on a fresh machine: the journal beside --out makes it."""
    out = tmp_path / "not" / "yet" / "study"
    jobs = [common.Job("a", {"grid.size": 12}, 0, common.seed_for(4, 0), 0.05, series=("cart",))]
    common.run_all(jobs, progress=False, resume=out)
    assert len(common.partial_file(out).read_text().splitlines()) == 1


def test_atomic_write_leaves_no_temporary_file_on_failure(tmp_path):
    def boom(fh):
        fh.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        common.atomic_write(tmp_path / "x.csv", boom)
    assert list(tmp_path.iterdir()) == []


# -- dose_response ----------------------------------------------------------------------------------------------
def test_dose_response_smoke_end_to_end(tmp_path):
    from experiments import dose_response

    out = tmp_path / "dr"
    proc = subprocess.run([sys.executable, "-m", "experiments.dose_response", "--smoke", "--quiet", "--out",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in ("results.csv", "timeseries.csv.gz", "dose_response.csv", "figure.png", "provenance.json",
                 "README.md"):
        assert (out / name).is_file(), name
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_csv(out / "results.csv")
    doses = dose_response.SMOKE_DOSES
    assert len(rows) == len(doses) * 2  # one row per run: 2 doses x 2 seeds
    assert {"product.dose_per_kg", "cr_day28", "crs_max_grade", "icans_max_grade", "cart_peak_blood_per_ul",
            "cart_persistence_day", "b_cell_aplasia_days", "relapse"} <= rows[0].keys()
    assert [float(r["product.dose_per_kg"]) for r in rows] == [d for d in doses for _ in range(2)]
    assert [r["seed"] for r in rows] == [r["seed"] for r in rows[:2]] * len(doses)  # the same patients at every dose
    assert len({r["patient.weight_kg"] for r in rows}) == 2
    assert {int(r["grid.size"]) for r in rows} == {dose_response.SMOKE_GRID}
    readme = (out / "README.md").read_text(encoding="utf-8")
    for heading in ("## Question", "## Setup", "## Result", "## Finding", "## Provenance"):
        assert heading in readme
    assert "Smoke run" in readme and "Wilson" in readme and "rarely observable" in readme
    prov = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    assert prov["smoke"] and prov["doses_per_kg"] == list(doses) and prov["runs"] == len(rows)


@pytest.mark.parametrize("args", [("--doses", "1e6"), ("--doses", "a,b"), ("--doses", "1e6,-1"), ("--n", "0")])
def test_dose_response_bad_option_exits_2_and_writes_nothing(tmp_path, capsys, args):
    from experiments import dose_response

    status = common.cli(dose_response.main, ["--smoke", "--quiet", *args, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and args[0] in err
    assert not (tmp_path / "x").exists()


# -- the sweep experiments (experiments/sweep.py) ------------------------------------------------------------------
SWEEP_REQUIRED = {"arm", "patient_id", "seed", "grid.size", "window_sites", "crs_max_grade",
                  "cart_peak_blood_per_ul", "wall_s", "version"}
SWEEP_HEADINGS = ("## Question", "## Setup", "## Result", "## Finding", "## Figure", "## Files", "## Provenance")
# experiment -> (overridden parameter columns every row has, outcome keys of its long table)
SWEEPS = {
    "fractionation": (("schedule.days", "schedule.fractions"),
                      {"severe_crs", "icans_any", "cr_day28", "cart_peak_blood_per_ul", "dose_given"}),
    "car_design": (("product.affinity_kd_nM", "product.costimulation"),
                   {"cr_day28", "severe_crs", "cart_peak_blood_per_ul", "exhausted_fraction_final",
                    "cart_persistence_day", "blood_cart_final_per_ul"}),
    "tumor_burden": (("patient.marrow_blast_fraction",),
                     {"cr_day28", "mrd_day28", "mrd_negative_day28", "severe_crs", "icans_any",
                      "cart_peak_blood_per_ul"}),
    "niche_protection": (("niche.kill_protection",), {"mrd_day28", "blasts_day28", "cr_day28", "relapse"}),
    "antigen_escape": (("patient.cd19_negative_fraction", "blast.cd19_loss_per_division", "product.target",
                        "cart.trogocytosis_fraction", "product.transduced_blasts"),
                       {"cr_day28", "relapse", "relapse_day", "relapse_antigen_negative", "mrd_day28",
                        "relapse_downregulation", "relapse_masking", "relapse_lineage"}),
    "crs_management": (("therapy.tocilizumab_grade", "therapy.steroids_grade", "patient.weight_kg",
                        "product.dose_per_kg"),
                       {"crs_max_grade", "icans_max_grade", "cr_day28", "cart_peak_blood_per_ul", "cart_auc_28"}),
}


def run_sweep_smoke(name: str, folder: Path, *extra: str) -> tuple:
    import importlib

    module = importlib.import_module(f"experiments.{name}")
    status = common.cli(module.main, ["--smoke", "--quiet", "--workers", "1", "--out", str(folder), *extra])
    assert status == 0
    return module


@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_sweep_experiment_smoke_writes_every_output(tmp_path, name):
    module = run_sweep_smoke(name, tmp_path)
    spec = module.SWEEP
    for file in ("results.csv", "timeseries.csv.gz", f"{name}.csv", "paired.csv", "figure.png", "provenance.json",
                 "README.md"):
        assert (tmp_path / file).is_file(), file
    assert (tmp_path / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    args = common.parse_args(sweep.build_parser(spec), ["--smoke"], smoke_n=spec.smoke_n, smoke_days=spec.smoke_days)
    conditions = spec.conditions(args)
    rows = read_csv(tmp_path / "results.csv")
    assert len(rows) == len(conditions) * spec.smoke_n  # one row per run
    parameters, outcomes = SWEEPS[name]
    assert SWEEP_REQUIRED | set(parameters) <= rows[0].keys()
    assert [r["arm"] for r in rows] == [c.label for c in conditions for _ in range(spec.smoke_n)]
    assert [int(r["patient_id"]) for r in rows] == list(range(spec.smoke_n)) * len(conditions)
    first = [(r["seed"], r["patient.weight_kg"]) for r in rows[:spec.smoke_n]]
    assert [(r["seed"], r["patient.weight_kg"]) for r in rows] == first * len(conditions)  # the same patients
    assert {int(r["grid.size"]) for r in rows} == {spec.smoke_grid}
    table = read_csv(tmp_path / f"{name}.csv")
    keys = {o.key for o in spec.outcomes}
    assert {r["outcome"] for r in table} == keys and outcomes <= keys
    assert len(table) == len(spec.outcomes) * len(conditions)
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    for heading in SWEEP_HEADINGS:
        assert heading in readme, heading
    assert "Smoke run" in readme and "Wilson" in readme and spec.question in readme
    reference = sweep.reference_of(spec, conditions)
    assert f"## Paired differences against {reference.label}" in readme and "McNemar" in readme
    pairs = read_csv(tmp_path / "paired.csv")
    assert len(pairs) == len(spec.outcomes) * (len(conditions) - 1)
    assert {r["reference"] for r in pairs} == {reference.label} and reference.label not in {r["arm"] for r in pairs}
    assert not common.partial_file(tmp_path).exists()  # the kept runs are in the study's folder now
    prov = json.loads((tmp_path / "provenance.json").read_text(encoding="utf-8"))
    assert prov["design"] == "cohort" and prov["reference_arm"] == reference.label
    assert prov["smoke"] and prov["runs"] == len(rows) and [c["label"] for c in prov["conditions"]] == [
        c.label for c in conditions]


def test_crs_management_smoke_pairs_patients_and_writes_predictor(tmp_path):
    from experiments import crs_management

    run_sweep_smoke("crs_management", tmp_path)
    rows = read_csv(tmp_path / "results.csv")
    n = crs_management.SWEEP.smoke_n
    by_policy = [rows[i * n:(i + 1) * n] for i in range(len(crs_management.POLICIES))]
    for arm in by_policy[1:]:  # the same virtual patient (profile and seed) under every policy
        assert [(r["seed"], r["patient.weight_kg"], r["product.dose_per_kg"]) for r in arm] == [
            (r["seed"], r["patient.weight_kg"], r["product.dose_per_kg"]) for r in by_policy[0]]
    assert len({r["patient.weight_kg"] for r in by_policy[0]}) > 1  # patients vary
    predictor_rows = read_csv(tmp_path / "predictor.csv")
    assert [r["split"] for r in predictor_rows] == ["train"] * (n // 2) + ["test"] * (n - n // 2)
    assert "log10_serum_il6_pg_ml_day1" in predictor_rows[0]
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    assert "## CRS predictor" in readme and "ROC AUC" in readme
    prov = json.loads((tmp_path / "provenance.json").read_text(encoding="utf-8"))
    assert prov["predictor"]["n_train"] == n // 2 and prov["predictor"]["feature_days"] == [1.0]


@pytest.mark.parametrize(("name", "args"), [("car_design", ("--kds", "0.33")), ("car_design", ("--kds", "0.33,5000")),
                                            ("tumor_burden", ("--burdens", "a,b")),
                                            ("niche_protection", ("--levels", "0,1.5")),
                                            ("fractionation", ("--n", "0"))])
def test_sweep_bad_option_exits_2_and_writes_nothing(tmp_path, capsys, name, args):
    import importlib

    module = importlib.import_module(f"experiments.{name}")
    status = common.cli(module.main, ["--smoke", "--quiet", *args, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert status == 2 and err.startswith("error: ") and args[0] in err
    assert not (tmp_path / "x").exists()


def demo_sweep(**kw) -> sweep.Sweep:
    return sweep.Sweep(name="demo", title="Demo", description="demo", question="?",
                       conditions=lambda args: [sweep.Condition("a", {"niche.kill_protection": 0.1}, {"x": 0.1}),
                                                sweep.Condition("b", {"niche.kill_protection": 0.9,
                                                                      "product.dose_per_kg": 1e6}, {"x": 0.9})],
                       outcomes=(sweep.CR, sweep.BLOOD_PEAK), setup=lambda r: [], finding=lambda r: [], **kw)


def test_sweep_cohort_design_gives_every_arm_the_same_patients_and_seeds():
    from abm.cohort import patient_seed, sample_patient

    spec = demo_sweep(grid=None)
    args = common.parse_args(sweep.build_parser(spec), ["--n", "3", "--seed", "2"])
    jobs = sweep.jobs_for(spec, args, spec.conditions(args))
    assert [(j.arm, j.patient_id) for j in jobs] == [(c, r) for c in "ab" for r in range(3)]
    assert [j.seed for j in jobs] == [patient_seed(2, r) for r in range(3)] * 2  # the patients' own seeds
    profiles = [sample_patient(2, r, Params.default()) for r in range(3)]
    # arm a: the cohort's patients unchanged; arm b: the same patients with the dose the arm sets
    for j, profile in zip(jobs, profiles * 2, strict=True):
        for key, value in profile.items():
            expected = 1e6 if (j.arm == "b" and key == "product.dose_per_kg") else value
            assert j.overrides[key] == expected, (j.arm, key)
    assert [j.overrides["niche.kill_protection"] for j in jobs] == [0.1] * 3 + [0.9] * 3
    assert len({j.overrides["patient.weight_kg"] for j in jobs}) == 3  # patients differ
    bad = sweep.Condition("c", {"niche.kill_protection": 2.0}, {})
    with pytest.raises(ParamError, match="niche.kill_protection"):
        sweep.jobs_for(spec, args, [bad])
    with pytest.raises(ParamError, match="distinct labels"):
        sweep.jobs_for(spec, args, [bad, bad])
    assert all("grid.size" not in j.overrides for j in jobs)  # no grid set: the default window


def test_sweep_replicate_design_is_one_default_patient_on_paired_seeds():
    spec = demo_sweep()
    args = common.parse_args(sweep.build_parser(spec), ["--n", "3", "--seed", "2", "--design", "replicate"])
    jobs = sweep.jobs_for(spec, args, spec.conditions(args))
    assert [(j.arm, j.seed) for j in jobs] == [(c, 2000 + r) for c in "ab" for r in range(3)]
    assert all("patient.weight_kg" not in j.overrides for j in jobs)  # the default patient
    assert {j.overrides["grid.size"] for j in jobs} == {sweep.COHORT_GRID}


def test_paired_estimates_pair_by_patient_and_compare_against_the_reference():
    """Known inputs: arm b reaches CR in 6 patients the reference misses and loses none; its peak is the
    reference's plus 10 in every patient."""
    conditions = demo_sweep().conditions(None)
    ref_cr = [True] * 10 + [False] * 10
    b_cr = [True] * 16 + [False] * 4
    results = ([{"arm": "a", "patient_id": p, "cr_day28": ref_cr[p], "cart_peak_blood_per_ul": 100.0 + p}
                for p in range(20)]
               + [{"arm": "b", "patient_id": p, "cr_day28": b_cr[p], "cart_peak_blood_per_ul": 110.0 + p}
                  for p in reversed(range(20))])  # row order does not matter: patient_id pairs the rows
    est = sweep.paired_estimates((sweep.CR, sweep.BLOOD_PEAK), conditions, conditions[0], results)
    assert set(est["cr_day28"]) == {"b"}
    cr = est["cr_day28"]["b"]
    assert cr.difference.pairs == 20 and cr.difference.difference == pytest.approx(0.3)
    assert (cr.mcnemar.reference_only, cr.mcnemar.other_only) == (0, 6)
    assert cr.mcnemar.p == pytest.approx(2 * 0.5**6)  # exact: both tails of Binomial(6, 1/2) at 0 and 6
    assert cr.detected  # McNemar p = 0.031
    few = sweep.Paired(cr.difference, paired.McNemar(0, 4, 2 * 0.5**4))  # 4/0 discordant: p = 0.125
    assert few.difference.detected and not few.detected  # a yes/no outcome follows McNemar, not the bootstrap
    peak = est["cart_peak_blood_per_ul"]["b"]
    assert peak.mcnemar is None
    assert (peak.difference.difference, peak.difference.low, peak.difference.high) == (10.0, 10.0, 10.0)
    assert peak.detected


def test_sweep_window_is_the_spec_grid_unless_smoke_or_grid_option():
    spec = sweep.Sweep(name="demo", title="Demo", description="demo", question="?",
                       conditions=lambda args: [sweep.Condition("a", {}, {})], outcomes=(sweep.CR,),
                       setup=lambda r: [], finding=lambda r: [], grid=200, smoke_grid=24)
    parser = sweep.build_parser(spec)
    for argv, side in (([], 200), (["--smoke"], 24), (["--grid", "96"], 96), (["--smoke", "--grid", "40"], 40)):
        args = common.parse_args(parser, argv)
        assert {j.overrides["grid.size"] for j in sweep.jobs_for(spec, args, spec.conditions(args))} == {side}
    with pytest.raises(ParamError, match="grid.size"):
        args = common.parse_args(parser, ["--grid", "3"])
        sweep.jobs_for(spec, args, spec.conditions(args))


def test_sweep_parse_values_uses_the_declared_range():
    assert sweep.parse_values(None, "--kds", (1.0, 2.0), key="product.affinity_kd_nM") == (1.0, 2.0)
    assert sweep.parse_values("3,0.5", "--kds", (), key="product.affinity_kd_nM") == (0.5, 3.0)
    for text in ("1", "1,1", "0.001,1", "1,nan", "x,1"):
        with pytest.raises(ParamError, match="--kds"):
            sweep.parse_values(text, "--kds", (), key="product.affinity_kd_nM")


def test_sweep_trend_words_and_relative_ties():
    assert sweep.trend([1.0, 2.0, 3.0], "with dose") == "rose with dose"
    assert sweep.trend([3.0, 3.0, 1.0]) == "fell (never rising)"
    assert sweep.trend([28.7, 28.70001]) == "did not change"
    assert sweep.trend([1.0, 3.0, 2.0]) == "did not move monotonically"
    assert sweep.trend([math.nan, 1.0, 1.0]) == "did not change"


def test_sweep_series_value_reads_the_nearest_observation_or_none():
    run = {"series": {"day": [0.0, 0.25, 0.5, 0.75, 1.0], "blasts": [5, 4, 3, 2, 1]}}
    assert sweep.series_value(run, "blasts", 0.5) == 3.0
    assert sweep.series_value(run, "blasts", 0.55) == 3.0
    assert sweep.series_value(run, "blasts", 28.0) is None
    assert sweep.series_value(run, "cart", 0.5) is None
    assert sweep.series_final(run, "blasts") == 1.0


# -- the predictor (experiments/predictor.py) ------------------------------------------------------------------------
def test_roc_auc_separable_reversed_ties_and_known_case():
    labels = [0, 0, 0, 1, 1]
    assert predictor.roc_auc([0.1, 0.2, 0.3, 0.8, 0.9], labels) == 1.0
    assert predictor.roc_auc([0.9, 0.8, 0.7, 0.2, 0.1], labels) == 0.0
    assert predictor.roc_auc([0.5, 0.5, 0.5, 0.5, 0.5], labels) == 0.5
    # hand count: positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of 4 pairs ordered -> 0.75
    assert predictor.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    # a tie between a positive and a negative counts one half: (1 + 0.5) / 2
    assert predictor.roc_auc([0.2, 0.5, 0.5], [0, 0, 1]) == 0.75
    assert math.isnan(predictor.roc_auc([0.1, 0.2], [1, 1]))


def test_roc_curve_runs_from_origin_to_one_and_its_area_is_the_auc():
    scores, labels = [0.1, 0.4, 0.35, 0.8, 0.6, 0.2], [0, 0, 1, 1, 1, 0]
    fpr, tpr = predictor.roc_curve(scores, labels)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(predictor.roc_auc(scores, labels))


def test_logistic_binary_feature_recovers_the_group_rates():
    # unpenalised maximum likelihood with one 0/1 feature reproduces each group's event rate: 1/4 and 3/4
    x = np.array([[0.0]] * 4 + [[1.0]] * 4)
    y = np.array([0, 0, 0, 1, 0, 1, 1, 1])
    model = predictor.fit_logistic(x, y, penalty=0.0)
    assert model.probability([[0.0], [1.0]]) == pytest.approx([0.25, 0.75], abs=1e-9)


def test_logistic_uninformative_feature_gives_the_base_rate_and_zero_weight():
    model = predictor.fit_logistic(np.full((5, 1), 3.0), [0, 1, 1, 1, 1], penalty=0.0)
    assert model.intercept == pytest.approx(math.log(4.0)) and model.coef[0] == 0.0
    assert model.probability([[3.0]]) == pytest.approx([0.8])


def test_logistic_separable_data_stays_finite_with_a_penalty_and_ranks_perfectly():
    x = np.array([[0.0, 1.0], [1.0, 0.5], [2.0, 0.0], [3.0, 1.0], [4.0, 0.2], [5.0, 0.9]])
    y = np.array([0, 0, 0, 1, 1, 1])
    model = predictor.fit_logistic(x, y, penalty=1.0)
    assert np.all(np.isfinite(model.coef)) and model.coef[0] > 0
    assert predictor.roc_auc(model.probability(x), y) == 1.0
    # without the penalty the weights of separable data run away (the likelihood has no maximum)
    assert predictor.fit_logistic(x, y, penalty=0.0).coef[0] > 5 * model.coef[0]
    with pytest.raises(ValueError, match="both classes"):
        predictor.fit_logistic(x, np.zeros(6), penalty=1.0)


def test_logistic_matches_a_known_model_on_simulated_data():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 2))
    truth = 1.0 / (1.0 + np.exp(-(-0.5 + 1.5 * x[:, 0] - 1.0 * x[:, 1])))
    y = (rng.random(4000) < truth).astype(int)
    model = predictor.fit_logistic(x, y, penalty=0.0)
    assert model.probability(x) == pytest.approx(truth, abs=0.05)


def test_antigen_escape_tracks_target_negative_blasts_and_ends_with_a_dual_car(tmp_path):
    module = run_sweep_smoke("antigen_escape", tmp_path)
    rows = read_csv(tmp_path / "results.csv")
    assert {r["product.target"] for r in rows} == {"CD19", "CD22", "CD19/CD22"}
    assert rows[-1]["product.target"] == "CD19/CD22"
    series = read_csv(tmp_path / "timeseries.csv.gz")
    assert {"blasts_cd19neg", "blasts_target_neg"} <= series[0].keys()
    # 1 % CD19-negative blasts at infusion: a CD19 CAR sees them as target-negative, a dual CAR (1 % CD22-
    # negative too, independently) does not
    first = {r["arm"]: r for r in series if float(r["day"]) == 0.0 and r["patient_id"] == "0"}
    conditions = module.SWEEP.conditions(common.parse_args(sweep.build_parser(module.SWEEP), ["--smoke"]))
    labels = [c.label for c in conditions]
    assert labels[1] == "CD19 CAR, pre-existing CD19-"
    assert float(first[labels[0]]["blasts_target_neg"]) < float(first[labels[1]]["blasts_target_neg"])
    assert float(first[labels[-1]]["blasts_target_neg"]) < float(first[labels[1]]["blasts_target_neg"])
    # each single-route arm turns on its own route only; the product arms share one escape pressure
    routes = ("patient.cd19_negative_fraction", "blast.cd19_loss_per_division", "blast.lineage_switch_per_division",
              "cart.trogocytosis_fraction", "product.transduced_blasts")
    reference = conditions[0].overrides
    for c, key in zip(conditions[1:6], routes, strict=True):
        assert [k for k in routes if c.overrides[k] != reference[k]] == [key], c.label
    assert len({tuple(sorted((k, v) for k, v in c.overrides.items() if k != "product.target"))
                for c in conditions[-3:]}) == 1


def test_relapse_notes_call_only_a_pre_day_28_return_below_5_percent_a_threshold_crossing():
    """A relapse after a day-28 CR is a relapse; only blasts >= 5 % before day 28 and below again at day 28 are a
    threshold crossing (the note once called every relapse after a day-28 CR one)."""
    from types import SimpleNamespace

    from experiments.sweep import standard_notes

    class Result:
        sweep = SimpleNamespace(outcomes=[SimpleNamespace(key="relapse")])
        args = SimpleNamespace(days=90.0)
        conditions = (SimpleNamespace(label="a"),)
        results = (
            {"arm": "a", "patient_id": 0, "seed": 0, "relapse": True, "cr_day": 8.0, "relapse_day": 70.0,
             "cr_day28": True, "mrd_day28": 0.003},
            {"arm": "a", "patient_id": 1, "seed": 1, "relapse": True, "cr_day": 8.0, "relapse_day": 20.0,
             "cr_day28": True, "mrd_day28": 0.04},
        )

        def __getitem__(self, key):
            return SimpleNamespace(n=2)

    notes = [n for n in standard_notes(Result()) if n.startswith("- Relapse in")]
    assert len(notes) == 2
    assert "threshold crossing" not in notes[0] and "threshold crossing" in notes[1]


def test_git_commit_is_dirty_for_code_changes_but_not_for_rewritten_results(tmp_path):
    repo, plain = tmp_path / "repo", tmp_path / "plain"
    (repo / "experiments" / "results" / "study").mkdir(parents=True)
    plain.mkdir()

    def git(*args):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)

    git("init", "-q")
    (repo / "experiments" / "results" / "study" / "README.md").write_text("old result\n")
    (repo / "model.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", "start")
    head = common.git_commit(repo)
    assert head is not None and len(head) == 40
    (repo / "experiments" / "results" / "study" / "README.md").write_text("new result\n")  # a study rerun
    assert common.git_commit(repo) == head
    (repo / "model.py").write_text("x = 2\n")
    assert common.git_commit(repo) == head + "-dirty"
    assert common.git_commit(plain) is None  # outside git


def test_spearman_known_values_and_interval():
    from abm.rows import spearman

    rows = [{"x": i, "y": i * i} for i in range(20)] + [{"x": None, "y": 1.0}]
    c = spearman(rows, "x", "y")
    assert c["rho"] == 1.0 and c["n"] == 20 and c["ci95"] == [1.0, 1.0]
    rows = [{"x": x, "y": y} for x, y in zip([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [2, 1, 4, 3, 6, 5, 8, 7, 10, 9],
                                             strict=True)]
    c = spearman(rows, "x", "y")
    assert c["rho"] == pytest.approx(1 - 6 * 10 / (10 * 99))  # each neighbour pair swapped: sum d^2 = 10
    half = 1.959963984540054 * math.sqrt((1 + c["rho"] ** 2 / 2) / 7)
    assert c["ci95"] == pytest.approx([math.tanh(math.atanh(c["rho"]) - half), math.tanh(math.atanh(c["rho"]) + half)])
    assert spearman([{"x": 1, "y": i} for i in range(9)], "x", "y")["rho"] is None  # x constant
    assert spearman(rows[:3], "x", "y")["rho"] is None  # too few rows


def test_spearman_null_interval_covers_zero_at_nominal_rate():
    """Independent x, y: the 95 % interval misses 0 in about 5 % of 400 cohorts of 40 (binomial 99.9 %: <= 36)."""
    from abm.rows import spearman

    rng = np.random.default_rng(11)
    misses = 0
    for _ in range(400):
        rows = [{"x": a, "y": b} for a, b in rng.normal(size=(40, 2))]
        lo, hi = spearman(rows, "x", "y")["ci95"]
        misses += not lo <= 0.0 <= hi
    assert 5 <= misses <= 36
