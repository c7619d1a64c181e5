"""Virtual trials: cohort sampling, executor independence (processes, Dask), resume, rates."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from abm import cohort
from abm.cli import main
from abm.params import Params
from abm.rows import wilson

TINY = ["--days", "0.5", "--set", "grid.size=24", "--set", "time.observe_every_h=6", "--quiet"]


def read(folder):
    return (folder / "patients.csv").read_text(), json.loads((folder / "summary.json").read_text())


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("trial") / "serial"
    assert main(["trial", "--n", "4", "--seed", "9", "--workers", "1", "--out", str(out), *TINY]) == 0
    return read(out)


def test_patients_are_the_same_whatever_n_and_order():
    base = Params.default()
    small = cohort.sample_cohort(3, 5, base)
    large = cohort.sample_cohort(10, 5, base)
    assert [j.overrides for j in small] == [j.overrides for j in large[:3]]
    assert len({j.seed for j in large}) == 10


def test_cohort_distributions_match_their_documented_centres():
    jobs = cohort.sample_cohort(400, 1, Params.default())
    df = pd.DataFrame([j.overrides for j in jobs])
    assert 0.6 < df["patient.marrow_blast_fraction"].mean() < 0.76  # Beta mean 0.68 (clipped)
    assert 28 < df["patient.weight_kg"].median() < 42  # log-normal median 35 kg
    assert 0.7 < (df["patient.cd19_negative_fraction"] == 0).mean() < 0.9  # 80 % have none
    light = df["patient.weight_kg"] <= 50
    assert df.loc[light, "product.dose_per_kg"].between(0.2e6, 5e6).all()


def test_patient_spreads_are_centred_on_the_default_and_off_at_zero():
    base = Params.default().replace({"serum.il6_production_sd_log10": 0.3, "serum.il6_production_pg_ml_per_day": 10.0,
                                     "cart.max_divisions_sd": 2.0, "cart.max_divisions": 11})
    df = pd.DataFrame([j.overrides for j in cohort.sample_cohort(400, 1, base)])
    logs = df["serum.il6_production_pg_ml_per_day"].apply(math.log10)
    assert abs(logs.mean() - 1.0) < 3 * 0.3 / math.sqrt(400)  # log-normal, median 10 (3 standard errors)
    assert 0.26 < logs.std() < 0.34  # SD 0.3 log10 (~3.5 standard errors of an SD from 400 draws)
    divisions = df["cart.max_divisions"]
    assert divisions.map(type).eq(int).all()
    assert abs(divisions.mean() - 11) < 3 * 2.0 / math.sqrt(400) and 1.7 < divisions.std() < 2.35  # rounded
    flat = cohort.sample_cohort(5, 1, Params.default().replace({"serum.il6_production_sd_log10": 0.0,
                                                               "cart.max_divisions_sd": 0.0}))
    assert all("serum.il6_production_pg_ml_per_day" not in j.overrides and "cart.max_divisions" not in j.overrides
               for j in flat)


def test_product_memory_share_is_logit_normal_around_the_default_and_off_at_zero():
    """400 products at SD 0.7 on the logit scale around 30 %: centre and spread within ~3 standard errors; the
    draw comes last in the covariate stream, so every other key of a patient is what it was without it."""
    base = Params.default().replace({"cart.memory_fraction_sd_logit": 0.7})
    spread = [j.overrides for j in cohort.sample_cohort(400, 1, base)]
    logits = pd.Series([math.log(p["cart.memory_fraction"] / (1 - p["cart.memory_fraction"])) for p in spread])
    assert abs(logits.mean() - math.log(0.3 / 0.7)) < 3 * 0.7 / math.sqrt(400)
    assert 0.6 < logits.std() < 0.8
    flat = [j.overrides for j in cohort.sample_cohort(400, 1, Params.default())]
    assert all("cart.memory_fraction" not in p for p in flat)
    assert [{k: v for k, v in p.items() if k != "cart.memory_fraction"} for p in spread] == flat


def test_fixed_keys_override_the_distribution():
    jobs = cohort.sample_cohort(5, 1, Params.default(), {"product.dose_per_kg": 1e6})
    assert {j.overrides["product.dose_per_kg"] for j in jobs} == {1e6}


def test_two_workers_give_identical_results(tmp_path, serial):
    out = tmp_path / "two"
    assert main(["trial", "--n", "4", "--seed", "9", "--workers", "2", "--out", str(out), *TINY]) == 0
    assert read(out) == serial


def test_dask_local_cluster_gives_identical_results(tmp_path, serial):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        out = tmp_path / "dask"
        assert main(["trial", "--n", "4", "--seed", "9", "--scheduler", cluster.scheduler_address,
                     "--out", str(out), *TINY]) == 0
    assert read(out) == serial


def test_interrupted_trial_resumes_without_redoing_finished_patients(tmp_path, serial, monkeypatch):
    out = tmp_path / "resume"
    calls = []
    failed = []
    real = cohort.run_patient

    def flaky(job, base):
        calls.append(job.index)
        if job.index == 2 and not failed:
            failed.append(job.index)
            raise RuntimeError("worker lost")
        return real(job, base)

    monkeypatch.setattr(cohort, "run_patient", flaky)
    with pytest.raises(RuntimeError):
        main(["trial", "--n", "4", "--seed", "9", "--out", str(out), *TINY])
    assert json.loads((out / "status.json").read_text())["state"] == "failed"
    assert not (out / "summary.json").exists()
    calls.clear()
    assert main(["trial", "--n", "4", "--seed", "9", "--out", str(out), *TINY]) == 0
    assert calls == [2, 3]  # patients 0 and 1 were not simulated again
    assert read(out) == serial


def test_resuming_with_other_settings_is_refused(tmp_path, capsys, monkeypatch):
    out = tmp_path / "r"
    monkeypatch.setattr(cohort, "run_patient", lambda job, base: (_ for _ in ()).throw(RuntimeError("stop")))
    with pytest.raises(RuntimeError):
        main(["trial", "--n", "2", "--seed", "1", "--out", str(out), *TINY])
    assert main(["trial", "--n", "3", "--seed", "1", "--out", str(out), *TINY]) == 2
    assert "other settings" in capsys.readouterr().err
    # the same settings with another version of the model's code: refused too (no mixed patients)
    from abm import io

    monkeypatch.setattr(io, "model_fingerprint", lambda: "another-model")
    assert main(["trial", "--n", "2", "--seed", "1", "--out", str(out), *TINY]) == 2
    assert "another version of the model" in capsys.readouterr().err


def test_model_fingerprint_follows_the_code(tmp_path, monkeypatch):
    from abm import io

    first = io.model_fingerprint()
    assert first == io.model_fingerprint() and len(first) == 16
    copy = tmp_path / "abm" / "io.py"  # the same files under another root, one byte changed
    root = Path(io.__file__).resolve().parent.parent
    for sub in ("abm", "kernels"):
        for path in (root / sub).rglob("*.py"):
            target = tmp_path / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    (tmp_path / "abm" / "calibrated.toml").write_bytes((Path(io.__file__).parent / "calibrated.toml").read_bytes())
    monkeypatch.setattr(io, "__file__", str(copy))
    assert io.model_fingerprint() == first
    nested = tmp_path / "abm" / "body" / "kinetics.py"  # a module of a subpackage counts too
    nested.write_bytes(nested.read_bytes() + b"# changed\n")
    second = io.model_fingerprint()
    assert second != first
    copy.write_bytes(copy.read_bytes() + b"# changed\n")
    assert io.model_fingerprint() not in (first, second)


def test_unreachable_scheduler_and_bad_arguments_exit_2(tmp_path, capsys):
    assert main(["trial", "--n", "2", "--scheduler", "tcp://127.0.0.1:9", "--out", str(tmp_path / "a"),
                 *TINY]) == 2
    assert "scheduler" in capsys.readouterr().err
    assert main(["trial", "--n", "0", "--out", str(tmp_path / "b"), *TINY]) == 2
    assert main(["trial", "--n", "2", "--set", "grid.sizee=3", "--out", str(tmp_path / "c"), *TINY]) == 2


def test_summary_rates_and_wilson_intervals(serial):
    _, summary = serial
    assert summary["n"] == 4
    for key in ("cr_rate", "mrd_negative_rate", "crs_any_rate", "crs_grade3plus_rate", "icans_any_rate",
                "icans_grade3plus_rate", "relapse_rate", "antigen_negative_relapse_fraction"):
        assert set(summary[key]) == {"rate", "ci95", "n"}
    p, low, high = wilson(8, 10)
    assert p == 0.8 and math.isclose(low, 0.4902, abs_tol=1e-4) and math.isclose(high, 0.9433, abs_tol=1e-4)
    assert wilson(0, 0) == (None, None, None)
    assert wilson(10, 10)[1:] == (pytest.approx(0.7225, abs=1e-4), 1.0)


def test_dask_worker_killed_mid_trial_does_not_change_results(tmp_path):
    """SIGKILL one of two Dask workers while patients run: Dask reschedules, rows stay identical."""
    import os
    import signal
    import threading
    import time

    distributed = pytest.importorskip("distributed")
    args = ["--n", "4", "--seed", "3", "--days", "3", "--set", "grid.size=40", "--quiet"]
    reference = tmp_path / "reference"
    assert main(["trial", *args, "--out", str(reference)]) == 0
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        out = tmp_path / "dask"
        codes = []
        runner = threading.Thread(target=lambda: codes.append(main(
            ["trial", *args, "--scheduler", cluster.scheduler_address, "--out", str(out)])))
        runner.start()
        deadline = time.monotonic() + 120
        victim = None
        while victim is None and time.monotonic() < deadline:  # wait until a worker is busy with a patient
            busy = [w for w, tasks in client.processing().items() if tasks]
            if busy:
                victim = client.run(os.getpid, workers=[busy[0]])[busy[0]]
            time.sleep(0.05)
        assert victim is not None, "no worker ever picked up a patient"
        os.kill(victim, signal.SIGKILL)
        runner.join(timeout=300)
        assert not runner.is_alive() and codes == [0]
    assert read(out) == read(reference)
