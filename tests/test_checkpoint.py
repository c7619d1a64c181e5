"""Checkpoint and resume: bit-identical continuation, also after kill -9 or SIGTERM, extension of any run."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from io import StringIO

import numpy as np
import pytest

from abm import io
from abm.cli import main

# reservoir blasts reseed the window (tens a day) so that resuming carries the reservoir and its entries too
COMMON = ["--set", "grid.size=32", "--set", "time.observe_every_h=6", "--set", "product.dose_per_kg=3e8",
          "--set", "traffic.marrow_entry_rate_per_day=20", "--set", "relapse.reservoir_fraction=0.2",
          "--set", "relapse.reseed_rate_per_day=0.5", "--seed", "7", "--quiet"]


def outputs(folder):
    with np.load(folder / "final_state.npz") as f:
        state = {k: f[k] for k in ("cell", "tissue", "traits", "fields", "events")}
    summary = json.loads((folder / "summary.json").read_text())
    summary.pop("wall_s")
    summary.pop("backend")
    return state, (folder / "timeseries.csv").read_text(), summary


def assert_same_run(a, b):
    for name in a[0]:
        assert np.array_equal(a[0][name], b[0][name]), name
    assert a[1] == b[1]
    assert a[2] == b[2]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt") / "whole"
    assert main(["run", "--days", "3", "--backend", "cpu", "--out", str(out), "--checkpoint-every", "0.5",
                 *COMMON]) == 0
    assert io.read_status(out)["state"] == "complete"
    whole = outputs(out)
    last = list(csv.DictReader(StringIO(whole[1])))[-1]
    assert int(last["blasts_seeded"]) > 10
    return whole


def test_resume_extends_a_run_bit_identically(tmp_path, uninterrupted):
    out = tmp_path / "split"
    assert main(["run", "--days", "1.5", "--backend", "cpu", "--out", str(out), "--checkpoint-every", "0.5",
                 *COMMON]) == 0
    assert main(["resume", str(out), "--days", "3", "--backend", "cpu", "--quiet"]) == 0
    assert_same_run(outputs(out), uninterrupted)


def wait_for(path, proc, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"run ended before {path.name} appeared"
        assert time.monotonic() < deadline, f"no {path.name} within {timeout:g} s"
        time.sleep(0.05)


# a complete run folder holds exactly these (README.md "What a run writes"); no temporaries, no partial files
CONTRACT = {io.MARKER, "status.json", "params.toml", "summary.json", "timeseries.csv", "timecourse.png",
            "final_state.npz", io.CHECKPOINT}


def test_every_finished_run_extends_bit_identically_without_checkpoint_every(tmp_path, uninterrupted):
    out = tmp_path / "plain"
    assert main(["run", "--days", "1.5", "--backend", "cpu", "--out", str(out), *COMMON]) == 0
    assert {p.name for p in out.iterdir()} == CONTRACT  # the final checkpoint is what an extension needs
    assert main(["resume", str(out), "--days", "3", "--backend", "cpu", "--quiet"]) == 0
    assert_same_run(outputs(out), uninterrupted)
    assert {p.name for p in out.iterdir()} == CONTRACT


def test_extending_a_run_that_ended_between_observations_is_bit_identical(tmp_path, uninterrupted):
    """1.3 days end 1.2 h after the 6-hourly observation at 30 h; the longer run never observes at 31.2 h."""
    out = tmp_path / "offgrid"
    assert main(["run", "--days", "1.3", "--backend", "cpu", "--out", str(out), *COMMON]) == 0
    days = [float(r["day"]) for r in csv.DictReader(StringIO((out / "timeseries.csv").read_text()))]
    assert days[-1] == pytest.approx(1.3) and days[-2] == pytest.approx(1.25)
    assert main(["resume", str(out), "--days", "3", "--backend", "cpu", "--quiet"]) == 0
    assert_same_run(outputs(out), uninterrupted)


def test_sigterm_marks_interrupted_keeps_the_checkpoint_and_resumes_bit_identically(tmp_path, uninterrupted):
    out = tmp_path / "term"
    proc = subprocess.Popen(
        [sys.executable, "-m", "abm.cli", "run", "--days", "3", "--backend", "python", "--out", str(out),
         "--checkpoint-every", "0.5", *COMMON], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        wait_for(out / io.CHECKPOINT, proc)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    status = io.read_status(out)
    assert status["state"] == "interrupted" and status["signal"] == "SIGTERM" and status["checkpoint_day"] == 0.5
    assert "cart-abm resume" in err and "Traceback" not in err
    assert (out / io.CHECKPOINT).exists() and not (out / "summary.json").exists()
    assert main(["resume", str(out), "--backend", "cpu", "--quiet"]) == 0
    assert_same_run(outputs(out), uninterrupted)


def test_resume_after_kill_9_on_another_backend_is_bit_identical(tmp_path, uninterrupted):
    """Kill the slow python backend after its first checkpoint, resume on cpu, compare."""
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "abm.cli", "run", "--days", "3", "--backend", "python", "--out", str(out),
         "--checkpoint-every", "0.5", *COMMON],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while not (out / io.CHECKPOINT).exists():
            assert proc.poll() is None, "run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert io.read_status(out)["state"] == "running"
    assert not (out / "summary.json").exists()  # an interrupted folder never looks complete
    (out / ".checkpoint.k2j4x9q_.npz").write_bytes(b"half a checkpoint")  # what a kill mid-write leaves
    assert main(["resume", str(out), "--backend", "cpu", "--quiet"]) == 0
    assert io.read_status(out)["state"] == "complete"
    assert_same_run(outputs(out), uninterrupted)
    assert {p.name for p in out.iterdir()} == CONTRACT


def test_checkpoint_holds_no_pickle(tmp_path):
    out = tmp_path / "r"
    assert main(["run", "--days", "0.5", "--backend", "cpu", "--out", str(out), "--checkpoint-every", "0.25",
                 *COMMON]) == 0
    with np.load(out / io.CHECKPOINT, allow_pickle=False) as data:
        assert all(data[name].dtype != object for name in data.files)


def test_resume_errors_exit_2(tmp_path, capsys):
    out = tmp_path / "plain"
    assert main(["run", "--days", "0.25", "--backend", "cpu", "--out", str(out), *COMMON]) == 0
    capsys.readouterr()
    assert main(["resume", str(out), "--quiet"]) == 2
    assert "complete run; give --days N" in capsys.readouterr().err
    assert main(["resume", str(out), "--days", "0.1", "--quiet"]) == 2
    assert "--days = 0.1" in capsys.readouterr().err
    (out / io.CHECKPOINT).unlink()
    assert main(["resume", str(out), "--days", "1", "--quiet"]) == 2
    assert "checkpoint.npz" in capsys.readouterr().err
    assert main(["resume", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "status.json" in capsys.readouterr().err
    assert main(["run", "--days", "1", "--checkpoint-every", "0", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "--checkpoint-every" in capsys.readouterr().err


def test_failed_run_is_marked_failed(tmp_path, monkeypatch):
    from abm import cli

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cli, "write_outputs", broken)
    out = tmp_path / "f"
    with pytest.raises(RuntimeError):
        cli.main(["run", "--days", "0.1", "--backend", "cpu", "--out", str(out), *COMMON])
    status = io.read_status(out)
    assert status["state"] == "failed" and "disk on fire" in status["reason"]
    assert not (out / "summary.json").exists()
