"""Shared fixtures: small parameter sets and hand-built lattices."""

from __future__ import annotations

import numpy as np
import pytest

from abm.params import Params
from abm.rates import build_tables
from kernels import LatticeState, RuleTables
from kernels import layout as L
from kernels import rules as R

SMALL = {
    "grid.size": 18,
    "time.days": 1.0,
    "time.observe_every_h": 2.0,
    "product.dose_per_kg": 5e8,
    "traffic.marrow_entry_rate_per_day": 50.0,
    "patient.marrow_cellularity": 0.6,
}


@pytest.fixture
def small_params() -> Params:
    """An 18 x 18 window with enough CAR-T traffic to exercise every rule within a day."""
    return Params.default().replace(SMALL)


def empty_state(n: int, coarsen: int = 4) -> LatticeState:
    """An all-marrow, all-empty n x n lattice."""
    m = -(-n // coarsen)
    return LatticeState(
        cell=np.zeros((n, n), np.uint8),
        tissue=np.zeros((n, n), np.uint8),
        traits=np.zeros((n, n, L.N_TRAITS), np.uint16),
        fields=np.zeros((L.N_FIELDS, m, m), np.int64),
        events=np.zeros(L.N_EVENTS, np.int64),
    )


def place(state: LatticeState, i: int, j: int, kind: int, cd19: int = 0, cd22: int = 0) -> None:
    """Put a fresh cell of ``kind`` at ``(i, j)`` with CD19 and CD22 levels ``cd19`` and ``cd22`` (0..255)."""
    state.cell[i, j] = kind
    state.traits[i, j, :] = 0
    state.traits[i, j, L.ANTIGEN] = R.pack(cd19, cd22)
    state.traits[i, j, L.ACTED] = L.UNVISITED


def quiet_tables(seed: int = 1, **rates: int) -> RuleTables:
    """Tables where nothing happens unless switched on: all thresholds 0, no fields."""
    t = build_tables(Params.default(), seed)
    t.kind_rates[:] = 0
    t.antigen_rates[:] = 0
    t.rates[:] = 0
    t.rates[L.R_ACTIVE_STEPS] = 10
    t.rates[L.R_EXHAUST_STIM] = L.TRAIT_MAX  # never exhaust
    t.field_rates[:] = 0
    for name, value in rates.items():
        t.rates[getattr(R, name)] = value
    return t
