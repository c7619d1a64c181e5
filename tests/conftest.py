"""Shared fixtures (small parameter sets, hand-built lattices) and the test tiers.

Every test belongs to exactly one tier (markers declared in ``pyproject.toml``):
``unit`` (one function or class, synthetic inputs, seconds), ``equivalence``
(the same state from two implementations: backends, thread counts, the Mesa
reference, checkpoints), ``statistical`` (a rate or distribution against its
expectation, fixed seeds, stated tolerance), ``regression`` (the golden record)
and ``e2e`` (the command line, experiments, trials and benchmarks as a user
runs them). A test's tier is its own marker when it has one (e.g.
``@pytest.mark.statistical`` in a unit file), else its file's in
:data:`TIER_BY_FILE`; a test file missing there fails the collection.
``slow`` and ``gpu`` mark tests that CI does not or cannot run, on top of the tier.
"""

from __future__ import annotations

import numpy as np
import pytest

from abm.params import Params
from abm.rates import build_tables
from kernels import LatticeState, RuleTables
from kernels import layout as L
from kernels import rules as R

TIERS = ("unit", "equivalence", "statistical", "regression", "e2e")
TIER_BY_FILE = {
    "test_benchmarks.py": "e2e",
    "test_calibration.py": "e2e",
    "test_cd22.py": "unit",
    "test_checkpoint.py": "equivalence",
    "test_cli.py": "e2e",
    "test_cohort.py": "e2e",
    "test_cpu_driver.py": "equivalence",
    "test_diffusion.py": "unit",
    "test_equivalence.py": "equivalence",
    "test_experiments.py": "e2e",
    "test_fuzz.py": "unit",
    "test_golden.py": "regression",
    "test_gpu.py": "equivalence",
    "test_lifecycle.py": "unit",
    "test_mechanisms.py": "unit",
    "test_model.py": "unit",
    "test_outcomes.py": "unit",
    "test_outcomes_clinical.py": "unit",
    "test_output_safety.py": "e2e",
    "test_paired.py": "unit",
    "test_params.py": "unit",
    "test_reference.py": "equivalence",
    "test_resources.py": "unit",
    "test_rng.py": "unit",
    "test_routes.py": "unit",
    "test_rules.py": "unit",
    "test_sensitivity.py": "e2e",
    "test_signals.py": "e2e",
    "test_soak.py": "e2e",
    "test_systemic.py": "unit",
    "test_turnover.py": "unit",
    "test_viewer.py": "unit",
    "test_viewer_browser.py": "e2e",
    "test_viz.py": "unit",
}


def pytest_collection_modifyitems(config, items):
    """Give each test its tier marker: its own, else its file's; refuse a test with none or two."""
    for item in items:
        own = [m.name for m in item.own_markers if m.name in TIERS]
        if len(own) > 1:
            raise pytest.UsageError(f"{item.nodeid}: in tiers {own}; a test belongs to exactly one")
        if not own:
            name = item.path.name
            if name not in TIER_BY_FILE:
                raise pytest.UsageError(f"{name}: not in tests/conftest.py TIER_BY_FILE; give it a tier")
            item.add_marker(TIER_BY_FILE[name])


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


def dividing_blast(l19: int, l22: int, route: int = L.ROUTE_NONE, **rates: int) -> tuple[LatticeState, RuleTables]:
    """A lone blast (CD19 and CD22 levels ``l19``, ``l22``, escape route ``route``) that divides at its next
    visit without level noise, in :func:`quiet_tables` with ``rates`` switched on."""
    s = empty_state(9)
    place(s, 4, 4, L.BLAST, cd19=l19, cd22=l22)
    s.traits[4, 4, L.ROUTE] = route
    t = quiet_tables(**rates)
    t.kind_rates[L.KR_DIVIDE, L.BLAST] = 1 << 32
    t.cd19_noise[:] = 0
    return s, t
