"""Output folders are never replaced silently; --force swaps atomically; every bad --out is exit 2 with the reason."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from abm import folders, io, signals
from abm.cli import main
from abm.errors import ParamError

FAST = ["--set", "grid.size=24", "--set", "time.observe_every_h=6", "--quiet", "--backend", "cpu"]
TINY_TRIAL = ["--days", "0.5", "--set", "grid.size=24", "--set", "time.observe_every_h=6", "--quiet"]
REPO = Path(__file__).resolve().parent.parent


def summary_bytes(folder: Path) -> bytes:
    return (folder / "summary.json").read_bytes()


@pytest.fixture
def finished_run(tmp_path):
    out = tmp_path / "runs" / "default"
    assert main(["run", "--days", "0.5", "--out", str(out), *FAST]) == 0
    return out


# -- cart-abm run ----------------------------------------------------------------------------------------------------
def test_run_refuses_a_finished_run_naming_out_force_and_resume(finished_run, capsys):
    before = summary_bytes(finished_run)
    assert main(["run", "--set", "grid.size=32", "--days", "0.1", "--out", str(finished_run), *FAST]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "--force" in err and f"cart-abm resume {finished_run} --days N" in err
    assert "complete cart-abm run (0.5 days)" in err
    assert summary_bytes(finished_run) == before and io.read_status(finished_run)["state"] == "complete"


def test_run_refuses_an_unfinished_run_and_points_to_resume(finished_run, capsys):
    io.write_status(finished_run, "interrupted", checkpoint_day=0.25, reason="stopped by SIGTERM")
    assert main(["run", "--days", "0.1", "--out", str(finished_run), *FAST]) == 2
    err = capsys.readouterr().err
    assert f"continue it with `cart-abm resume {finished_run}`" in err and "--force" in err
    assert "last checkpoint at day 0.25" in err


def test_run_force_replaces_a_run_whole_and_leaves_nothing_beside_it(finished_run):
    assert main(["run", "--set", "grid.size=32", "--days", "0.25", "--out", str(finished_run), "--force",
                 *FAST[2:]]) == 0
    assert "size = 32" in (finished_run / "params.toml").read_text()
    assert json.loads(summary_bytes(finished_run))["days"] == pytest.approx(0.25)
    assert io.read_status(finished_run)["state"] == "complete" and "replaces" not in io.read_status(finished_run)
    assert [p.name for p in finished_run.parent.iterdir()] == ["default"]  # no staging or old folder left


def test_force_never_replaces_a_folder_cart_abm_did_not_write(tmp_path, capsys):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    assert main(["run", "--days", "0.1", "--out", str(mine), "--force", *FAST]) == 2
    assert "not a cart-abm output folder" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["chapter1.tex"] and sorted(os.listdir(tmp_path)) == ["thesis"]


def test_an_empty_existing_folder_is_used_as_it_is(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["run", "--days", "0.1", "--out", str(empty), *FAST]) == 0
    assert io.read_status(empty)["state"] == "complete"


def test_a_killed_force_replacement_keeps_the_old_run_and_resumes_into_place(finished_run):
    """kill -9 while --force runs: the old run stays whole; resuming the staging folder finishes and swaps it in."""
    before = summary_bytes(finished_run)
    staging = folders.staging_folder(finished_run)
    proc = subprocess.Popen(
        [sys.executable, "-m", "abm.cli", "run", "--days", "3", "--backend", "python", "--checkpoint-every", "0.25",
         "--out", str(finished_run), "--force", *FAST[:-2]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while not (staging / io.CHECKPOINT).exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint in the staging folder"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert summary_bytes(finished_run) == before and io.read_status(finished_run)["state"] == "complete"
    assert io.read_status(staging)["replaces"] == str(finished_run)
    assert main(["resume", str(staging), "--backend", "cpu", "--quiet"]) == 0
    assert json.loads(summary_bytes(finished_run))["days"] == pytest.approx(3.0)
    assert [p.name for p in finished_run.parent.iterdir()] == ["default"]


def test_replace_folder_failing_between_renames_puts_the_old_folder_back(tmp_path, monkeypatch):
    old, new = tmp_path / "out", tmp_path / ".out.cart-abm-new"
    old.mkdir()
    (old / io.MARKER).write_text("")
    (old / "a").write_text("old")
    new.mkdir()
    (new / "a").write_text("new")
    real = os.rename
    calls = []

    def flaky(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(os, "rename", flaky)
    with pytest.raises(OSError):
        folders.replace_folder(new, old)
    assert (old / "a").read_text() == "old" and (new / "a").read_text() == "new"
    monkeypatch.setattr(os, "rename", real)
    folders.replace_folder(new, old)
    assert (old / "a").read_text() == "new" and sorted(os.listdir(tmp_path)) == ["out"]


def test_replace_folder_leaves_a_folder_that_is_no_longer_ours_alone(tmp_path):
    new, there = tmp_path / ".out.cart-abm-new", tmp_path / "out"
    new.mkdir()
    there.mkdir()
    (there / "thesis.tex").write_text("precious")
    with pytest.raises(ParamError, match="left alone"):
        folders.replace_folder(new, there)
    assert (there / "thesis.tex").read_text() == "precious" and new.is_dir()


def test_signals_wait_for_the_swap_to_finish(tmp_path):
    old, new = tmp_path / "out", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (new / "a").write_text("new")
    with signals.stop_on_signals():
        with pytest.raises(signals.Interrupted) as caught, signals.signals_held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # the handler has run: held, not raised
            assert not (old / "a").exists()
            folders.replace_folder(new, old)
            assert (old / "a").read_text() == "new"
    assert caught.value.signum == signal.SIGTERM


def test_temporaries_are_removed_and_only_they(tmp_path):
    for name in (".checkpoint.k2j4x9q_.npz", ".summary.ab12cd34.json", io.MARKER, "summary.json", ".notes"):
        (tmp_path / name).write_text("x")
    assert sorted(folders.remove_temporaries(tmp_path)) == [".checkpoint.k2j4x9q_.npz", ".summary.ab12cd34.json"]
    assert sorted(os.listdir(tmp_path)) == [io.MARKER, ".notes", "summary.json"]


# -- cart-abm trial --------------------------------------------------------------------------------------------------
def test_trial_refuses_a_complete_trial_and_force_replaces_it(tmp_path, capsys):
    out = tmp_path / "trial"
    assert main(["trial", "--n", "2", "--out", str(out), *TINY_TRIAL]) == 0
    assert "CR rate n/a (runs shorter than 28 days)" in capsys.readouterr().out
    assert sorted(os.listdir(out)) == sorted([io.MARKER, "trial.json", "status.json", "patients.csv",
                                              "summary.json"])  # no patients.partial.jsonl once complete
    before = summary_bytes(out)
    assert main(["trial", "--n", "3", "--out", str(out), *TINY_TRIAL]) == 2
    err = capsys.readouterr().err
    assert "complete cart-abm trial (2 patients)" in err and "--out" in err and "--force" in err
    assert summary_bytes(out) == before
    assert main(["trial", "--n", "3", "--out", str(out), "--force", *TINY_TRIAL]) == 0
    assert json.loads(summary_bytes(out))["n"] == 3 and sorted(os.listdir(tmp_path)) == ["trial"]


def test_trial_force_over_an_unfinished_trial_of_other_settings_replaces_it(tmp_path, monkeypatch, capsys):
    from abm import cohort

    out = tmp_path / "t"
    real = cohort.run_patient
    monkeypatch.setattr(cohort, "run_patient", lambda job, base: (_ for _ in ()).throw(RuntimeError("stop")))
    with pytest.raises(RuntimeError):
        main(["trial", "--n", "2", "--seed", "1", "--out", str(out), *TINY_TRIAL])
    monkeypatch.setattr(cohort, "run_patient", real)
    assert main(["trial", "--n", "3", "--seed", "1", "--out", str(out), *TINY_TRIAL]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["trial", "--n", "3", "--seed", "1", "--out", str(out), "--force", *TINY_TRIAL]) == 0
    assert json.loads(summary_bytes(out))["n"] == 3


# -- experiments -----------------------------------------------------------------------------------------------------
def committed_study(folder: Path) -> bytes:
    """A folder as a committed full study leaves it (provenance names the experiment; not a smoke run)."""
    folder.mkdir(parents=True)
    (folder / "README.md").write_text("# dose response\n")
    prov = {"experiment": "dose_response", "cart_abm_version": "0", "smoke": False, "date_utc": "2026-11-29T05:07:16Z"}
    (folder / "provenance.json").write_text(json.dumps(prov))
    return (folder / "README.md").read_bytes()


def test_experiment_refuses_an_earlier_study_unless_force(tmp_path, monkeypatch, capsys):
    from experiments import common, dose_response

    monkeypatch.chdir(REPO)
    out = tmp_path / "dose_response"
    readme = committed_study(out)
    assert common.cli(dose_response.main, ["--smoke", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "study 'dose_response' of 2026-11-29T05:07:16Z" in err and "--out" in err and "--force" in err
    assert (out / "README.md").read_bytes() == readme
    assert common.cli(dose_response.main, ["--smoke", "--quiet", "--out", str(out), "--force"]) == 0
    assert json.loads((out / "provenance.json").read_text())["smoke"] is True
    assert sorted(os.listdir(tmp_path)) == ["dose_response"]
    # a smoke study is never a result: the next smoke run replaces it without --force
    assert common.cli(dose_response.main, ["--smoke", "--quiet", "--out", str(out)]) == 0
    # a folder that is not a study is refused, --force or not
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    assert common.cli(dose_response.main, ["--smoke", "--quiet", "--out", str(tmp_path / "notes"), "--force"]) == 2
    assert "not a cart-abm output folder" in capsys.readouterr().err


def test_write_results_refuses_a_study_folder_parse_args_did_not_clear(tmp_path):
    from experiments import common

    out = tmp_path / "study"
    committed_study(out)
    with pytest.raises(ParamError, match="--force"):
        common.write_results(out, [], figure=None, readme="", provenance={})


def test_the_default_smoke_folder_is_replaced_without_force(tmp_path, monkeypatch):
    from experiments import common

    monkeypatch.setattr(common.tempfile, "gettempdir", lambda: str(tmp_path))
    parser = common.make_parser("demo", "demo", n=5, days=28.0)
    default = common.smoke_folder("demo")
    committed_study(default)  # even a folder that looks like a result: the default smoke folder never is one
    assert common.parse_args(parser, ["--smoke"]).out == default


# -- every bad --out is exit 2 with the option and the operating system's reason ---------------------------------------
def bad_outs(tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [("/proc/x", "No such file or directory"), (str(a_file / "sub"), "is a file, not a folder"),
             (str(a_file), "exists and is a file")]
    if not os.access("/sys", os.W_OK) or os.geteuid() == 0:  # /sys takes no new folders, root or not
        cases.append(("/sys/x", "not permitted" if os.geteuid() == 0 else "Permission denied"))
    return cases


@pytest.mark.parametrize("command", ["run", "trial", "experiment", "bench"])
def test_bad_out_exits_2_naming_the_option_and_the_reason(tmp_path, capsys, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    for out, reason in bad_outs(tmp_path):
        argv = {"run": ["run", "--days", "0.1", *FAST], "trial": ["trial", "--n", "1", *TINY_TRIAL],
                "experiment": ["experiment", "dose_response", "--smoke", "--quiet"],
                "bench": ["bench", "--smoke", "--no-plots"]}[command]
        assert main([*argv, "--out", out]) == 2, out
        err = capsys.readouterr().err
        assert f"--out {out!r}" in err and reason in err, err
    assert sorted(os.listdir(tmp_path)) == ["a_file"]  # nothing written, no probe left


def test_animate_bad_out_exits_2_naming_the_option_and_the_reason(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", "--days", "0.25", "--snapshot-every", "6h", "--out", str(run), *FAST]) == 0
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out, reason in [("/proc/x.gif", "cannot write in '/proc'"), (str(a_file / "x.gif"), "does not exist"),
                        (str(run), "is a folder")]:
        assert main(["animate", str(run), "--out", out, "--quiet"]) == 2, out
        err = capsys.readouterr().err
        assert f"--out {out!r}" in err and reason in err, err


def test_bad_out_from_the_console_prints_one_line_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "abm.cli", "run", "--out", "/proc/x", "--days", "0.1", *FAST],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "cart-abm: error: --out '/proc/x': cannot create a folder in '/proc' (No such file or directory); "
        "choose a folder you can write to"]
