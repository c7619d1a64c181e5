"""Run a small model on one backend and save its final state (used by test_equivalence.py).

Usage: python tests/equivalence_run.py BACKEND THREADS DAYS OUT.npz [CASE]
(run in a subprocess so NUMBA_ENABLE_CUDASIM can be set before Numba loads).
CASE is a key of CASES (default ``default``).
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from conftest import SMALL

from abm.model import MarrowModel
from abm.params import Params

CASES = {
    "default": {},
    # a dual CD19/CD22 CAR against blasts with both antigens, some negative for one of them, losing either at
    # division often enough that the CD22 inheritance and loss paths run, and with CAR-T homing fast enough
    # that killing starts within the CUDA simulator's 0.1 day
    "dual": {
        "body.marrow_homing_rate_per_day": 100.0,
        "body.marrow_share": 0.5,
        "product.target": "CD19/CD22",
        "patient.cd19_negative_fraction": 0.3,
        "patient.cd22_negative_fraction": 0.3,
        "blast.cd19_loss_per_division": 0.05,
        "blast.cd22_loss_per_division": 0.05,
        "blast.division_rate_per_day": 1.5,
        "bcell.production_per_day": 0.2,
        # reservoir blasts entering through the portals (the seeding path, with its negative share)
        "relapse.reservoir_fraction": 0.5,
        "relapse.reseed_rate_per_day": 1.0,
        # the escape routes (issue 28): trogocytosis strong and fast enough that stripping, re-expression,
        # the T cells' acquired antigen and fratricide all happen; lineage switch; masked blasts from the product
        "cart.trogocytosis_fraction": 0.6,
        "blast.antigen_recovery_h": 3.0,
        "cart.acquired_antigen_half_life_h": 1.0,
        "patient.kmt2a_rearranged": True,
        "blast.lineage_switch_per_division": 0.01,
        "product.transduced_blasts": 1e6,
    },
}


# the seed of each case: one whose short run exercises every path its tests check (a displacement included)
SEEDS = {"default": 11, "dual": 7}


def run(backend: str, threads: int | None, days: float, case: str = "default") -> dict[str, np.ndarray]:
    params = Params.default().replace({**SMALL, **CASES[case], "time.days": days})
    model = MarrowModel(params, seed=SEEDS[case], backend=backend, threads=threads, check_invariants=True).run()
    return model.state.arrays()


if __name__ == "__main__":
    backend, threads, days, out = sys.argv[1], int(sys.argv[2]) or None, float(sys.argv[3]), sys.argv[4]
    case = sys.argv[5] if len(sys.argv) > 5 else "default"
    np.savez(out, **run(backend, threads, days, case))
