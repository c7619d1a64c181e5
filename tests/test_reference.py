"""The plain-Mesa reference (abm.reference) against the kernels and against exact expectations.

Unit tests check the reference's bookkeeping; statistical tests run the
reference and the ``cpu`` backend from identical starting states with the same
per-step probabilities and check that they agree in distribution (the update
orders differ: random-sequential vs sublattice, so states are not identical).
Every statistical check is a two-sided normal interval of ``Z`` standard errors
on fixed seeds.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from conftest import empty_state, place

import kernels
from abm.params import Params
from abm.reference import (
    OFFSETS,
    CarTCell,
    ReferenceModel,
    core_tables,
    place_cart,
    random_free_sites,
)
from kernels import LatticeState, Traffic
from kernels import layout as L
from kernels import rules as R
from kernels.rng import threshold

ALWAYS = 1 << 32
Z = 4.0  # tolerance of every statistical check, in standard errors (two-sided p ~ 6e-5)
LEVEL = 200  # CD19 level of hand-placed targets (~13,500 molecules: near-saturating response)


# -- helpers -------------------------------------------------------------------
def params(n: int) -> Params:
    """Default parameters for an n x n window (the smallest allowed window for tiny hand-built lattices)."""
    return Params.default().replace({"grid.size": max(n, 8)})


def quiet_tables(n: int, seed: int = 1):
    """Core tables where nothing happens unless switched on."""
    t = core_tables(params(n), seed)
    t.kind_rates[:] = 0
    t.antigen_rates[:] = 0
    t.rates[:] = 0
    t.rates[L.R_ACTIVE_STEPS] = 10
    t.rates[L.R_EXHAUST_STIM] = L.TRAIT_MAX
    return t


def run_kernel(state: LatticeState, tables, steps: int) -> LatticeState:
    """Step the cpu backend on one thread (results do not depend on threads; one thread is robust on a busy machine).

    Numba's thread count is process-wide and ``Lattice(threads=...)`` leaves it set, so it is restored afterwards.
    """
    before = numba.get_num_threads()
    try:
        lattice = kernels.Lattice(state, tables, backend="cpu", threads=1)
        for s in range(steps):
            lattice.step(s, Traffic())
        return lattice.pull()
    finally:
        numba.set_num_threads(before)


def run_reference(state: LatticeState, tables, steps: int, seed: int) -> ReferenceModel:
    model = ReferenceModel(params(state.cell.shape[0]), seed, state=state, tables=tables)
    for _ in range(steps):
        model.step()
    return model


def counts_of(state: LatticeState) -> np.ndarray:
    return np.bincount(state.cell.ravel(), minlength=L.N_KINDS).astype(np.int64)


def assert_balanced(model: ReferenceModel, initial: np.ndarray) -> None:
    """Counts per kind equal initial + born - died - killed (no traffic in the reference)."""
    ev = model.events
    expected = initial + ev[L.EV_BORN : L.EV_BORN + L.N_KINDS] - ev[L.EV_DIED : L.EV_DIED + L.N_KINDS]
    expected = expected - ev[L.EV_KILLED : L.EV_KILLED + L.N_KINDS]
    assert model.counts()[1:].tolist() == expected[1:].tolist()


def welch_z(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    return abs(a.mean() - b.mean()) / se if se > 0 else float(a.mean() != b.mean()) * math.inf


# -- unit tests ------------------------------------------------------------------
def test_reference_from_window_round_trips_cells_and_counts():
    p = params(24)
    model = ReferenceModel(p, seed=3)
    state = model.to_state()
    from abm.marrow import build_window

    window = build_window(p, np.random.default_rng(3))
    assert np.array_equal(state.cell, window.cell)
    assert np.array_equal(state.tissue, window.tissue)
    assert np.array_equal(state.traits[..., L.ANTIGEN], window.traits[..., L.ANTIGEN])
    assert model.counts().tolist() == counts_of(window).tolist()
    assert model.counts().dtype == np.int64 and model.counts().shape == (L.N_KINDS,)


def test_reference_bone_and_sinusoid_stay_empty_and_counts_balance():
    p = params(24)
    model = ReferenceModel(p, seed=5, n_cart=20)
    initial = model.counts()
    assert initial[L.CART] == 20
    for _ in range(30):
        model.step()
    s = model.to_state()
    assert not np.any((s.tissue > L.OCCUPIABLE) & (s.cell != L.EMPTY))
    assert_balanced(model, initial)


def test_reference_same_seed_same_trajectory_different_seed_differs():
    def final(seed):
        model = ReferenceModel(params(20), seed=seed, n_cart=15)
        for _ in range(40):
            model.step()
        return model.to_state()

    a, b, c = final(9), final(9), final(10)
    assert np.array_equal(a.cell, b.cell) and np.array_equal(a.traits, b.traits)
    assert not np.array_equal(a.cell, c.cell)


def test_reference_rejects_tables_with_chemotaxis():
    p = params(16)
    t = core_tables(p, 1)
    t.rates[L.R_CHEMO] = threshold(0.2)
    with pytest.raises(ValueError, match="R_CHEMO"):
        ReferenceModel(p, 1, tables=t)


def test_core_tables_switch_off_everything_but_the_core_rules():
    from abm.rates import build_tables

    p = params(16).replace({"cart.trogocytosis_fraction": 0.2, "blast.lineage_switch_per_division": 1e-3,
                            "patient.kmt2a_rearranged": True})
    full, core = build_tables(p, 1), core_tables(p, 1)
    assert core.rates[L.R_CHEMO] == 0 and not np.any(core.field_rates[:, L.FR_SUBSTEPS])
    assert not np.any(core.field_rates[:, [L.FR_SECRETE_ACTIVE_CART, L.FR_SECRETE_STROMA]])
    trogocytosis = [L.R_TROG_LEVELS, L.R_TROG_FRAC, L.R_TROG_OFFSET, L.R_RECOVER, L.R_SHED]
    assert np.all(full.rates[trogocytosis] > 0) and not np.any(core.rates[trogocytosis])
    assert full.rates[L.R_SWITCH] > 0 == core.rates[L.R_SWITCH]
    off = {L.R_CHEMO, L.R_AICD, L.R_EXHAUST_STIM, L.R_MEMORY, L.R_LOSS, L.R_LOSS_CD22, L.R_DISPLACE, L.R_SWITCH,
           *trogocytosis}
    keep = [r for r in range(L.N_RATES) if r not in off]
    assert np.array_equal(core.rates[keep], full.rates[keep])
    assert core.rates[L.R_EXHAUST_STIM] == L.TRAIT_MAX and core.rates[L.R_AICD] == 0 == core.rates[L.R_DISPLACE]
    assert np.array_equal(core.kind_rates[[L.KR_DIE, L.KR_DIVIDE]], full.kind_rates[[L.KR_DIE, L.KR_DIVIDE]])
    assert not np.any(core.kind_rates[L.KR_CONVERT])
    assert np.array_equal(core.antigen_rates[[L.AR_ATTACH, L.AR_KILL]], full.antigen_rates[[L.AR_ATTACH, L.AR_KILL]])
    assert np.array_equal(core.antigen_rates[L.AR_KILL_NICHE], full.antigen_rates[L.AR_KILL])


def test_cart_sites_and_place_cart_reject_occupied_sites():
    s = empty_state(8)
    place(s, 2, 2, L.BLAST, LEVEL)
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        place_cart(s, [(2, 2)])
    with pytest.raises(ValueError, match=r"\(2, 2\)"):
        ReferenceModel(params(8), 1, state=s, tables=quiet_tables(8), cart_sites=[(2, 2)])
    with pytest.raises(ValueError, match="free sites"):
        random_free_sites(s, 64, np.random.default_rng(0))


def test_reference_kill_adjacent_blast_pkill_one_always_kills():
    s = empty_state(5)
    place(s, 2, 3, L.BLAST, LEVEL)
    t = quiet_tables(5)
    t.antigen_rates[:] = ALWAYS
    model = ReferenceModel(params(5), 1, state=s, tables=t, cart_sites=[(2, 2)])
    model.step()  # engage
    (cart,) = model.agents_by_type[CarTCell]
    assert cart.target == (0, 1) and cart.state == L.ACTIVE and cart.stim == 1
    model.step()  # kill
    assert model.counts()[L.BLAST] == 0
    assert cart.kills == 1 and cart.target is None and cart.timer == 10
    assert model.events[L.EV_KILLED + L.BLAST] == 1


def test_reference_cart_swaps_with_marrow_cell_when_swap_is_certain():
    s = empty_state(3)
    for i in range(3):
        for j in range(3):
            if (i, j) != (1, 1):
                place(s, i, j, L.NORMAL)
    t = quiet_tables(3)
    t.rates[L.R_MOVE] = ALWAYS
    t.rates[L.R_SWAP] = ALWAYS
    model = ReferenceModel(params(3), 1, state=s, tables=t, cart_sites=[(1, 1)])
    model.step()
    (cart,) = model.agents_by_type[CarTCell]
    assert cart.cell.coordinate != (1, 1)
    assert model.to_state().cell[1, 1] == L.NORMAL
    assert model.counts()[L.NORMAL] == 8


def test_reference_active_cart_proliferates_into_free_neighbour_and_inherits_traits():
    s = empty_state(5)
    place_cart(s, [(2, 2)])
    s.traits[2, 2, L.STATE] = L.ACTIVE
    s.traits[2, 2, L.TIMER] = 5
    s.traits[2, 2, L.STIM] = 3
    t = quiet_tables(5)
    t.rates[L.R_PROLIF] = ALWAYS
    t.rates[L.R_MAX_DIVS] = 1
    model = ReferenceModel(params(5), 1, state=s, tables=t)
    model.step()
    model.step()  # divisions exhausted: no third cell
    out = model.to_state()
    cart = out.cell == L.CART
    assert cart.sum() == 2
    assert out.traits[..., L.DIVS][cart].tolist() == [1, 1]
    assert out.traits[..., L.STIM][cart].tolist() == [1, 1]  # the engagement count is shared at division


# -- statistical agreement -------------------------------------------------------
def kill_only_lattice(blocks: int) -> tuple[LatticeState, list[tuple[int, int]]]:
    """CAR-T cells at the centres of 3 x 3 blocks, every other site a CD19+ blast.

    Each T cell has exactly 8 targets of its own, so the T cells are independent.
    """
    n = 3 * blocks
    s = empty_state(n)
    for i in range(n):
        for j in range(n):
            place(s, i, j, L.BLAST, LEVEL)
    centres = [(3 * a + 1, 3 * b + 1) for a in range(blocks) for b in range(blocks)]
    for i, j in centres:
        s.cell[i, j] = L.EMPTY
        s.traits[i, j, :] = 0
    place_cart(s, centres)
    return s, centres


def kill_count_distribution(p_attach: float, p_kill: float, p_detach: float, steps: int, targets: int = 8):
    """Exact distribution of one T cell's kills after ``steps`` steps (Markov chain of act_cart)."""
    free = np.zeros(targets + 1)
    engaged = np.zeros(targets + 1)
    free[0] = 1.0
    for _ in range(steps):
        new_free = np.zeros_like(free)
        new_engaged = np.zeros_like(engaged)
        # free: engage with p_attach while targets remain (after the last kill it would migrate: off)
        attach = np.where(np.arange(targets + 1) < targets, p_attach, 0.0)
        new_engaged += free * attach
        new_free += free * (1 - attach)
        # engaged: kill, else detach, else stay
        new_free[1:] += engaged[:-1] * p_kill
        new_free += engaged * (1 - p_kill) * p_detach
        new_engaged += engaged * (1 - p_kill) * (1 - p_detach)
        free, engaged = new_free, new_engaged
    return free + engaged


@pytest.mark.statistical
def test_kill_only_kills_per_cart_agree_with_kernel_and_exact_expectation():
    blocks, steps, replicates = 12, 100, 3  # 144 independent T cells per replicate
    tables = quiet_tables(3 * blocks)
    full = core_tables(params(3 * blocks), 1)
    tables.antigen_rates[:] = full.antigen_rates
    tables.rates[L.R_DETACH] = full.rates[L.R_DETACH]
    p_attach = tables.antigen_rates[L.AR_ATTACH, LEVEL] / ALWAYS
    p_kill = tables.antigen_rates[L.AR_KILL, LEVEL] / ALWAYS
    p_detach = tables.rates[L.R_DETACH] / ALWAYS
    pmf = kill_count_distribution(p_attach, p_kill, p_detach, steps)
    k = np.arange(pmf.size)
    mean, var = float(pmf @ k), float(pmf @ k**2 - (pmf @ k) ** 2)
    assert 1.0 < mean < 6.0  # the scenario exercises several kill cycles, far from saturation

    kernel_kills, reference_kills = [], []
    for rep in range(replicates):
        state, centres = kill_only_lattice(blocks)
        tables.seed = 100 + rep
        out = run_kernel(state.copy(), tables, steps)
        kernel_kills.extend(int(out.traits[i, j, L.KILLS]) for i, j in centres)
        model = run_reference(state, tables, steps, seed=200 + rep)
        reference_kills.extend(agent.kills for agent in model.agents_by_type[CarTCell])
        killed = model.events[L.EV_KILLED + L.BLAST]
        assert killed == sum(reference_kills[-len(centres) :])
    for name, kills in (("kernel", kernel_kills), ("reference", reference_kills)):
        kills = np.asarray(kills)
        se = math.sqrt(var / kills.size)
        assert abs(kills.mean() - mean) < Z * se, f"{name}: mean kills {kills.mean():.3f} vs exact {mean:.3f}"
        # the probability of no kill at all, a binomial proportion
        p0 = pmf[0]
        assert abs(np.mean(kills == 0) - p0) < Z * math.sqrt(p0 * (1 - p0) / kills.size), name
    se_diff = math.sqrt(2 * var / len(kernel_kills))
    assert abs(np.mean(kernel_kills) - np.mean(reference_kills)) < Z * se_diff


def observe(state: LatticeState) -> list[float]:
    """The quantities in :data:`OBSERVED`, from a lattice state."""
    ev, cell, traits = state.events, state.cell, state.traits
    blasts = cell == L.BLAST
    return [
        *counts_of(state)[[L.BLAST, L.BCELL, L.CART]],
        ev[L.EV_BORN + L.BLAST], ev[L.EV_DIED + L.BLAST], ev[L.EV_KILLED + L.BLAST], ev[L.EV_BORN + L.CART],
        traits[..., L.STIM][cell == L.CART].sum(), traits[..., L.ANTIGEN][blasts].mean() if blasts.any() else 0.0,
    ]


OBSERVED = ("blasts", "B cells", "CAR-T", "blasts born", "blasts died", "blasts killed", "CAR-T born",
            "CAR-T stimulations", "mean blast CD19 level")


def compare_replicates(state_for, tables_for, steps: int, replicates: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Run both implementations on the same starting states; rows of :func:`observe` per replicate."""
    kernel, reference = [], []
    for rep in range(replicates):
        state, tables = state_for(rep), tables_for(rep)
        kernel.append(observe(run_kernel(state.copy(), tables, steps)))
        model = run_reference(state, tables, steps, seed=seed + rep)
        assert_balanced(model, counts_of(state))
        reference.append(observe(model.to_state()))
    return np.array(kernel, float), np.array(reference, float)


def assert_agree(kernel: np.ndarray, reference: np.ndarray, columns: tuple[int, ...]) -> None:
    for col in columns:
        k, r = kernel[:, col], reference[:, col]
        z = welch_z(k, r)
        assert z < Z, f"{OBSERVED[col]}: kernel {k.mean():.2f} vs reference {r.mean():.2f} (z = {z:.2f})"


@pytest.mark.statistical
def test_blast_growth_with_free_neighbourhood_agrees_with_kernel():
    """64 spaced blasts divide (p = 0.05) and die (p = 0.01) for 40 steps; 30 replicates a side."""
    n, steps, replicates = 32, 40, 30
    s = empty_state(n)
    for a in range(8):
        for b in range(8):
            place(s, 4 * a + 1, 4 * b + 1, L.BLAST, LEVEL)
    tables = quiet_tables(n)
    tables.kind_rates[L.KR_DIE, L.BLAST] = threshold(0.01)
    tables.kind_rates[L.KR_DIVIDE, L.BLAST] = threshold(0.05)
    tables.cd19_noise[:] = core_tables(params(n), 1).cd19_noise

    def tables_for(rep):
        tables.seed = 300 + rep
        return tables

    kernel, reference = compare_replicates(lambda rep: s, tables_for, steps, replicates, seed=400)
    # without crowding the mean would be 64 * ((1 - 0.01) * (1 + 0.05)) ** 40 ~ 380; crowding keeps it lower
    assert 150 < kernel[:, 0].mean() < 380
    assert_agree(kernel, reference, (0, 3, 4, 8))


@pytest.mark.statistical
def test_core_rules_from_a_marrow_window_agree_with_kernel():
    """Every core rule at once: 24 x 24 windows with 24 CAR-T cells, fast CAR-T proliferation, 150 steps."""
    n, steps, replicates, n_cart = 24, 150, 16, 24
    p = params(n)
    from abm.marrow import build_window

    def state_for(rep):
        state = build_window(p, np.random.default_rng(500 + rep))
        place_cart(state, random_free_sites(state, n_cart, np.random.default_rng(600 + rep)))
        return state

    def tables_for(rep):
        tables = core_tables(p, 700 + rep)
        tables.rates[L.R_PROLIF] = threshold(0.02)
        tables.rates[L.R_MOVE] = threshold(0.5)
        return tables

    kernel, reference = compare_replicates(state_for, tables_for, steps, replicates, seed=800)
    assert kernel[:, 5].mean() > 20 and kernel[:, 6].mean() > 5  # kills and CAR-T divisions happen
    assert_agree(kernel, reference, (0, 1, 2, 5, 6, 7))


def test_offsets_follow_kernel_direction_order():
    for d, offset in enumerate(OFFSETS):
        assert R.neighbour(5, 5, d) == (5 + offset[0], 5 + offset[1])
