"""Run a small model on one backend and save its final state (used by test_equivalence.py).

Usage: python tests/equivalence_run.py BACKEND THREADS DAYS OUT.npz
(run in a subprocess so NUMBA_ENABLE_CUDASIM can be set before Numba loads).
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from conftest import SMALL

from abm.model import MarrowModel
from abm.params import Params


def run(backend: str, threads: int | None, days: float) -> dict[str, np.ndarray]:
    params = Params.default().replace({**SMALL, "time.days": days})
    model = MarrowModel(params, seed=11, backend=backend, threads=threads, check_invariants=True).run()
    return model.state.arrays()


if __name__ == "__main__":
    backend, threads, days, out = sys.argv[1], int(sys.argv[2]) or None, float(sys.argv[3]), sys.argv[4]
    np.savez(out, **run(backend, threads, days))
