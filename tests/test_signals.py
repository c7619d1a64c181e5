"""SIGTERM and SIGHUP stop every command as Ctrl-C does: folder marked, workers stopped, exit 128 + signal."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from abm import io
from abm.cli import main

REPO = Path(__file__).resolve().parent.parent
RUN = ["--set", "grid.size=32", "--set", "time.observe_every_h=6", "--seed", "7", "--quiet"]
TRIAL = ["--n", "6", "--seed", "3", "--days", "2", "--set", "grid.size=40", "--quiet"]


def start(*argv: str, cwd: Path = REPO) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *argv], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def until(condition, proc: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"the command ended before {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"no {what} within {timeout:g} s"
        time.sleep(0.05)


def stop(proc: subprocess.Popen, signum: int) -> tuple[str, str]:
    proc.send_signal(signum)
    try:
        return proc.communicate(timeout=60)
    finally:
        proc.kill()


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for a parent that does not reap counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def status(folder: Path) -> dict:
    try:
        return io.read_status(folder)
    except FileNotFoundError:
        return {}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_run_stopped_by_a_signal_is_marked_interrupted_with_progress_and_exit_128_plus_signal(tmp_path, signum):
    out = tmp_path / "run"
    proc = start("-m", "abm.cli", "run", "--days", "3", "--backend", "python", "--checkpoint-every", "0.5",
                 "--out", str(out), *RUN)
    until(lambda: status(out).get("percent", 0) > 20, proc, "progress in status.json")  # --quiet or not
    running = status(out)
    assert running["state"] == "running" and running["total_steps"] == 2160
    assert running["step"] == running["day"] * 720 and running["checkpoint_day"] >= 0.5
    _, err = stop(proc, signum)
    name = signal.Signals(signum).name
    assert proc.returncode == 128 + signum, err
    done = status(out)
    assert done["state"] == "interrupted" and done["signal"] == name and done["checkpoint_day"] >= 0.5
    assert name in done["reason"] and f"stopped by {name}" in err and "Traceback" not in err
    assert (out / io.CHECKPOINT).exists()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and p.name != io.MARKER]


def test_trial_on_two_workers_stops_them_on_sigterm_without_leaks_and_resumes(tmp_path):
    reference = tmp_path / "reference"
    assert main(["trial", *TRIAL, "--out", str(reference)]) == 0
    out = tmp_path / "trial"
    proc = start("-m", "abm.cli", "trial", *TRIAL, "--workers", "2", "--out", str(out))
    partial = out / "patients.partial.jsonl"
    until(lambda: partial.exists() and partial.read_text().count("\n") >= 1, proc, "a finished patient")
    workers = children(proc.pid)
    assert len(workers) >= 2  # the spawn workers (and the resource tracker)
    started = time.monotonic()
    _, err = stop(proc, signal.SIGTERM)
    assert proc.returncode == 143, err
    assert time.monotonic() - started < 15  # the running patients are not waited for
    assert "leaked" not in err and "Traceback" not in err, err
    deadline = time.monotonic() + 10
    while not all(gone(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(gone(w) for w in workers), "a worker outlived the trial"
    interrupted = status(out)
    assert interrupted["state"] == "interrupted" and interrupted["signal"] == "SIGTERM"
    assert 1 <= interrupted["patients_done"] < 6 and "rerun the same command" in err
    assert main(["trial", *TRIAL, "--workers", "2", "--out", str(out)]) == 0
    assert (out / "patients.csv").read_text() == (reference / "patients.csv").read_text()
    assert json.loads((out / "summary.json").read_text()) == json.loads((reference / "summary.json").read_text())
    assert not partial.exists()


def test_experiment_on_two_workers_stops_on_sigterm_writing_nothing(tmp_path):
    out = tmp_path / "dr"
    proc = start("-m", "experiments.dose_response", "--smoke", "--days", "6", "--workers", "2", "--quiet",
                 "--out", str(out))
    until(lambda: len(children(proc.pid)) >= 3, proc, "the worker processes")
    time.sleep(2.0)  # the workers are simulating
    workers = children(proc.pid)
    _, err = stop(proc, signal.SIGTERM)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM; no results were written" in err and "leaked" not in err and "Traceback" not in err
    # neither the folder nor a staging folder; only the journal of runs finished before the signal (under load a
    # smoke run can finish within the 2 s), which a rerun resumes from (experiments.common.partial_file)
    left = os.listdir(tmp_path)
    assert left in ([], [".dr.cart-abm-partial.jsonl"]), left
    if left:
        from abm.io import read_journal

        assert read_journal(tmp_path / left[0])  # whole records of finished runs
    deadline = time.monotonic() + 10
    while not all(gone(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(gone(w) for w in workers)


GROUP = textwrap.dedent("""
    import sys
    from abm import signals
    from abm.signals import run_in_own_group
    try:
        sys.exit(run_in_own_group(["sh", "-c", "sleep 300 & sleep 300 & wait"], grace_s=5))
    except KeyboardInterrupt as exc:
        sys.exit(128 + signals.signal_number(exc))
""")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_server_child_and_its_whole_process_group_stop_with_the_command(signum):
    """``cart-abm view`` runs solara through run_in_own_group: here a shell with two grandchildren stands in."""
    proc = start("-c", GROUP)
    until(lambda: any(len(children(c)) >= 2 for c in children(proc.pid)), proc, "the server's process group")
    (shell,) = children(proc.pid)
    group = [shell, *children(shell)]
    assert os.getpgid(shell) == shell != os.getpgid(proc.pid)  # a group of its own
    _, err = stop(proc, signum)
    assert proc.returncode == 128 + signum, err
    assert all(gone(pid) for pid in group), "a process of the server's group outlived the command"


def test_cart_abm_view_stops_its_solara_server_on_sigterm(tmp_path):
    pytest.importorskip("solara", reason="the viewer needs the optional viz extra (pip install 'cart-abm[viz]')")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start("-m", "abm.cli", "view", "--port", str(port), cwd=tmp_path)

    def listening() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    until(listening, proc, "the viewer's port", timeout=180)
    (server,) = children(proc.pid)
    _, err = stop(proc, signal.SIGTERM)
    assert proc.returncode == 143, err
    assert gone(server) and not listening()
