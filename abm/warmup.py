"""First-run compilation: compile (or load) the kernels before a run's progress bar or an ensemble's workers start.

The first run on a machine compiles the Numba kernels (about :data:`COMPILE_S`
s); :func:`warm_up_kernels` says so on stderr and does it on a tiny copy of the
lattice, so a progress bar's ETA leaves it out and ensemble workers load the
compiled step from the cache instead of each compiling it.
"""

from __future__ import annotations

import sys
import time

import kernels
from abm.errors import ParamError
from abm.params import Params

COMPILE_S = 35  # a cold compile of the cpu step: 25-35 s measured on the 2-core CI machine (2026-12, rules inlined)


def warm_up_kernels(model) -> None:
    """Compile (or load) the cpu step on a 16 x 16 copy of a corner of ``model``'s lattice.

    The run's own arrays are not touched and every decision of a step is a
    counter-based draw, so the run is the same with or without this. When the
    compiled cache is cold this says so on stderr: the first run on a machine
    spends ~:data:`COMPILE_S` s here, before the progress bar starts.
    """
    import numpy as np

    if model.backend != "cpu":
        return
    cold = not kernels.step_cached()
    if cold:
        print(f"cart-abm: compiling kernels (once per machine, about {COMPILE_S} s)...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    s, tables = model.state, model.tables
    n = s.cell.shape[0]
    side = min(n, tables.coarsen * -(-16 // tables.coarsen))
    m = -(-side // tables.coarsen)
    corner = kernels.LatticeState(
        np.ascontiguousarray(s.cell[:side, :side]), np.ascontiguousarray(s.tissue[:side, :side]),
        np.ascontiguousarray(s.traits[:side, :side]), np.ascontiguousarray(s.fields[:, :m, :m]), s.events.copy(),
    )
    kernels.Lattice(corner, tables, backend="cpu", threads=1).step(0, kernels.Traffic())
    if cold:
        print(f"cart-abm: compiled in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)


def warm_up_cold_kernels(params: Params) -> None:
    """When the compiled cache is cold, compile the cpu step here, announced, before an ensemble starts its workers."""
    from abm.model import MarrowModel

    if kernels.step_cached():
        return
    try:
        tiny = MarrowModel(params.replace({"grid.size": 16}), seed=0, backend="cpu", threads=1)
    except (ParamError, ValueError):  # a base that needs a larger window: the workers compile instead
        return
    warm_up_kernels(tiny)
