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
    from kernels import layout as L

    ev = cpu_state["events"]
    assert ev[L.EV_ENTERED] > 0 and ev[L.EV_KILLED + L.BLAST] > 0 and ev[L.EV_BORN + L.BLAST] > 0


def test_cuda_simulator_matches_cpu(tmp_path):
    """The CUDA kernels under Numba's simulator (4 x 4 blocks) give the cpu state bit for bit."""
    days = 0.1
    out = tmp_path / "cuda.npz"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "CART_ABM_CUDA_BLOCK": "4,4"}
    subprocess.run([sys.executable, str(HERE / "equivalence_run.py"), "cuda", "0", str(days), str(out)],
                   check=True, env=env, timeout=600)
    with np.load(out) as cuda_state:
        assert_identical(dict(cuda_state), run("cpu", 2, days))


# -- a dual CD19/CD22 CAR: the packed ANTIGEN trait, target_level and CD22 inheritance on every backend ----------
@pytest.fixture(scope="module")
def dual_cpu_state():
    return run("cpu", 1, 0.5, "dual")


def test_dual_target_python_backend_matches_cpu(dual_cpu_state):
    assert_identical(run("python", None, 0.5, "dual"), dual_cpu_state)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 Numba threads")
def test_dual_target_cpu_two_threads_matches_one_thread(dual_cpu_state):
    assert_identical(run("cpu", 2, 0.5, "dual"), dual_cpu_state)


def test_dual_target_run_exercises_both_antigens(dual_cpu_state):
    from kernels import layout as L

    s = dual_cpu_state
    antigen = s["traits"][..., L.ANTIGEN].astype(np.int64)
    blasts = s["cell"] == L.BLAST
    cd19, cd22 = antigen & 0xFF, antigen >> 8
    assert np.any(blasts & (cd19 > 0) & (cd22 > 0)) and np.any(blasts & (cd19 == 0) & (cd22 > 0))
    assert np.any(blasts & (cd19 > 0) & (cd22 == 0))
    ev = s["events"]
    assert ev[L.EV_KILLED + L.BLAST] > 0 and ev[L.EV_BORN + L.BLAST] > 20 and ev[L.EV_SEEDED] > 5
    assert ev[L.EV_DISPLACED + L.NORMAL] > 0  # blasts displacing normal cells take part
    # the escape routes take part: stripped cells, CAR-T cells carrying antigen and killed by others, switches
    routes = np.bincount(s["traits"][..., L.ROUTE][blasts], minlength=L.N_ROUTES)
    assert routes[L.ROUTE_DOWNREGULATION] > 0 and routes[L.ROUTE_LINEAGE] > 0 and routes[L.ROUTE_MUTATION] > 0
    assert np.any((s["cell"] == L.CART) & (antigen > 0)) and ev[L.EV_KILLED + L.CART] > 0


def test_dual_target_cuda_simulator_matches_cpu(tmp_path):
    """The dual-target case under the CUDA simulator (4 x 4 blocks) gives the cpu state bit for bit.

    36 steps (the simulator interprets every rule): enough for blast divisions, kills, a displacement and
    trogocytosis (stripped blasts, CAR-T cells carrying antigen) in this case.
    """
    from kernels import layout as L

    days = 0.05
    out = tmp_path / "cuda_dual.npz"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "CART_ABM_CUDA_BLOCK": "4,4"}
    subprocess.run([sys.executable, str(HERE / "equivalence_run.py"), "cuda", "0", str(days), str(out), "dual"],
                   check=True, env=env, timeout=600)
    cpu_state = run("cpu", 2, days, "dual")
    ev = cpu_state["events"]
    assert ev[L.EV_KILLED + L.BLAST] > 0 and ev[L.EV_BORN + L.BLAST] > 0 and ev[L.EV_SEEDED] > 0
    traits, cell = cpu_state["traits"], cpu_state["cell"]
    assert np.any((traits[..., L.DEFICIT] > 0) & (cell == L.BLAST))  # trogocytosis and re-expression run
    assert np.any((traits[..., L.ANTIGEN] > 0) & (cell == L.CART))
    assert ev[L.EV_DISPLACED : L.EV_DISPLACED + L.N_KINDS].sum() > 0
    with np.load(out) as cuda_state:
        assert_identical(dict(cuda_state), cpu_state)
