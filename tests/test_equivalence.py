"""The determinism contract: same seed, bit-identical state on every backend and thread count."""

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from equivalence_run import run

HERE = Path(__file__).parent


def assert_identical(a, b):
    for name in a:
        assert np.array_equal(a[name], b[name]), f"{name} differs"


@pytest.fixture(scope="module")
def cpu_state():
    return run("cpu", 1, 0.5)


def test_python_backend_matches_cpu(cpu_state):
    assert_identical(run("python", None, 0.5), cpu_state)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_cpu_two_threads_matches_one_thread(cpu_state):
    assert_identical(run("cpu", 2, 0.5), cpu_state)


def test_run_is_active_enough_to_mean_something(cpu_state):
    from kernels import rules as R

    ev = cpu_state["events"]
    assert ev[R.EV_ENTERED] > 0 and ev[R.EV_KILLED + R.BLAST] > 0 and ev[R.EV_BORN + R.BLAST] > 0


def test_cuda_simulator_matches_cpu(tmp_path):
    """The CUDA kernels under Numba's simulator (4 x 4 blocks) give the cpu state bit for bit."""
    days = 0.1
    out = tmp_path / "cuda.npz"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "CART_ABM_CUDA_BLOCK": "4,4"}
    subprocess.run([sys.executable, str(HERE / "equivalence_run.py"), "cuda", "0", str(days), str(out)],
                   check=True, env=env, timeout=600)
    with np.load(out) as cuda_state:
        assert_identical(dict(cuda_state), run("cpu", 2, days))
