"""Real-GPU checks (``pytest -m gpu tests/test_gpu.py``; skipped without a CUDA GPU).

The determinism contract on hardware: the ``cuda`` backend gives the ``cpu``
backend's state bit for bit, on the small test window, on a window whose side
is not a multiple of the block edge, on the default 400 x 400 window of the
full model, and with a dual CD19/CD22 CAR and the escape routes (the packed antigen trait, trogocytosis
with fratricide, lineage switch, masked reservoir blasts: ``equivalence_run.CASES["dual"]``).
``benchmarks/gpu_check.sh`` runs this file on a GPU machine.
"""

import numpy as np
import pytest
from conftest import SMALL
from equivalence_run import CASES

from abm.model import MarrowModel
from abm.params import Params
from kernels import cuda as kcuda

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not kcuda.usable(), reason="no CUDA GPU")]


def final_state(backend: str, overrides: dict) -> tuple[dict, object]:
    params = Params.default().replace(overrides)
    model = MarrowModel(params, seed=11, backend=backend, check_invariants=True).run()
    return model.state.arrays(), model.datacollector.get_model_vars_dataframe()


@pytest.mark.parametrize("overrides", [
    {**SMALL, "time.days": 0.5},
    {**SMALL, "grid.size": 203, "time.days": 0.5},
    {"time.days": 1.0},
    {**SMALL, **CASES["dual"], "time.days": 0.5},
], ids=["small", "odd-203", "default-400", "dual-target"])
def test_real_gpu_matches_cpu(overrides):
    gpu, gpu_obs = final_state("cuda", overrides)
    cpu, cpu_obs = final_state("cpu", overrides)
    for name in cpu:
        assert np.array_equal(gpu[name], cpu[name]), f"{name} differs"
    assert gpu_obs.equals(cpu_obs), "observations differ"
