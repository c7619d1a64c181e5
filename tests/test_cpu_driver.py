"""The cpu driver's inline hot paths (kernels/cpu.py) equal the rule functions they stand for."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import empty_state, place, quiet_tables

from kernels import Traffic, cpu
from kernels import layout as L
from kernels import rules as R
from kernels.diffusion import diffuse_voxel, secrete_voxel
from kernels.turnover import table


def test_visit_thresholds_are_the_tissue_totals_and_zero_for_other_kinds():
    g = np.random.default_rng(3)
    kind_rates = g.integers(0, 1 << 30, size=(L.N_KIND_RATES, L.N_KINDS)).astype(np.int64)
    visit = np.full(L.N_KINDS, -1, dtype=np.int64)
    cpu.visit_thresholds(kind_rates, visit)
    for k in range(L.N_KINDS):
        expected = 0 if k in (L.EMPTY, L.STROMA, L.CART) else kind_rates[:, k].sum()
        assert visit[k] == expected, k


def test_diffuse_row_equals_diffuse_voxel_on_random_fields():
    g = np.random.default_rng(4)
    for m in (1, 2, 7):
        src = g.integers(0, 1 << 50, size=(m, m)).astype(np.int64)
        rate_row = np.zeros(L.N_FIELD_RATES, dtype=np.int64)
        rate_row[L.FR_DIFFUSE] = g.integers(0, 1 << 14)
        rate_row[L.FR_DECAY] = g.integers(0, 1 << 20)
        expected = np.zeros_like(src)
        got = np.zeros_like(src)
        for vi in range(m):
            for vj in range(m):
                diffuse_voxel(vi, vj, src, expected, rate_row)
            cpu.diffuse_row(vi, src, got, rate_row[L.FR_DIFFUSE], rate_row[L.FR_DECAY])
        assert np.array_equal(got, expected)


@pytest.mark.parametrize("n", [5, 32, 70])
def test_the_masks_hold_every_car_t_and_stripped_cell_and_near_car_t_their_neighbours(n):
    g = np.random.default_rng(n)
    cell = g.choice([L.EMPTY, L.NORMAL, L.BLAST, L.BCELL, L.CART], p=[0.5, 0.3, 0.1, 0.08, 0.02],
                    size=(n, n)).astype(np.uint8)
    traits = np.zeros((n, n, L.N_TRAITS), dtype=np.uint16)
    traits[..., L.DEFICIT] = g.random((n, n)) < 0.05
    masks = np.full(cpu.mask_shape(n), 0xFFFF, dtype=np.uint32)
    columns = np.arange(masks.shape[2] * cpu.BLOCK)
    for recovering in (False, True):
        for i in range(n):
            cpu.scan_row(i, cell, traits, masks, recovering)
        bits = ((masks[..., None].astype(np.int64) >> np.arange(cpu.BLOCK)) & 1).reshape(2, n, -1)
        assert not bits[..., n:].any()
        stripped = ((cell == L.BLAST) | (cell == L.BCELL)) & (traits[..., L.DEFICIT] != 0) & recovering
        assert np.array_equal(bits[0, :, :n], cell == L.CART)
        assert np.array_equal(bits[1, :, :n], stripped)
        padded = np.pad(cell == L.CART, 1)
        near = np.zeros((n, n), dtype=bool)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                near |= padded[1 + di:n + 1 + di, 1 + dj:n + 1 + dj]
        for i in range(n):
            got = [cpu.near_car_t(masks, i, b, n) for b in range(masks.shape[2])]
            got = (np.array(got, dtype=np.int64)[:, None] >> np.arange(cpu.BLOCK) & 1).ravel()
            assert np.array_equal(got[:n], near[i]) and not got[n:].any()
    for m in (1, 2, 6, 1 << 31, 0xFFFFFFFF, 0x80000100):
        assert cpu.lowest_bit(np.int64(m)) == (m & -m).bit_length() - 1
    for k, third in enumerate(cpu.THIRDS):
        assert third == sum(1 << j for j in columns[:cpu.BLOCK] if j % 3 == k)


def test_the_stroma_per_voxel_counts_every_stromal_cell_once():
    import kernels

    g = np.random.default_rng(8)
    cell = np.where(g.random((10, 10)) < 0.3, L.STROMA, L.NORMAL).astype(np.uint8)
    counts = kernels.stroma_per_voxel(cell, 4)
    assert counts.shape == (3, 3) and counts.sum() == np.count_nonzero(cell == L.STROMA)
    assert counts[2, 1] == np.count_nonzero(cell[8:, 4:8] == L.STROMA)


def test_step_secretion_equals_secrete_voxel_for_every_field():
    import kernels

    s = empty_state(10, coarsen=4)
    g = np.random.default_rng(5)
    for _ in range(30):
        i, j = g.integers(0, 10, size=2)
        place(s, int(i), int(j), int(g.choice([L.STROMA, L.CART, L.BLAST])))
    s.traits[..., L.STATE] = np.where(s.cell == L.CART, g.integers(0, 3, size=(10, 10)), 0)
    s.traits[..., L.ACTED] = R.stamp(0)  # nobody acts: only secretion changes the state
    t = quiet_tables()
    t.field_rates[:, L.FR_SECRETE_ACTIVE_CART] = [7, 11]
    t.field_rates[:, L.FR_SECRETE_STROMA] = [13, 17]
    expected = s.fields.copy()
    for f in range(L.N_FIELDS):
        for vi in range(3):
            for vj in range(3):
                secrete_voxel(vi, vj, s.cell, s.traits, expected[f], t.field_rates[f], 4)
    lat = kernels.Lattice(s, t, backend="cpu", threads=1)
    lat.step(0, Traffic())
    assert np.array_equal(lat.pull().fields, expected)


def _busy_window(n: int, seed: int = 11):
    """A default marrow window of n x n sites, three in four blasts removed, CAR-T cells on 10 % of the free sites.

    With full rule tables: the CAR-T cells move, swap, engage, kill and divide from the first step.
    """
    from abm.marrow import build_window
    from abm.params import Params
    from abm.rates import build_tables
    from abm.reference import free_sites, place_cart, random_free_sites

    params = Params.default().replace({"grid.size": n})
    g = np.random.default_rng(seed)
    state = build_window(params, g)
    removed = (state.cell == L.BLAST) & (g.random(state.cell.shape) < 0.75)
    state.cell[removed] = L.EMPTY
    state.traits[removed] = 0
    count = round(0.1 * free_sites(state).size)
    place_cart(state, random_free_sites(state, count, np.random.default_rng(seed + 1)))
    return state, build_tables(params, seed)


def _nine_passes(state, tables, step):
    """The definition of a step's sweep: nine whole-lattice sublattice passes in order, one site at a time."""
    n = state.cell.shape[0]
    order = np.zeros(9, np.int64)
    R.sublattice_order(tables.key, step, order)
    chemokine = state.fields[tables.chemokine_field]
    turnover = table(tables.kind_rates)
    for k in order:
        for i in range(k // 3, n, 3):
            for j in range(k % 3, n, 3):
                u = R.needs_visit(i, j, state.cell, state.traits, tables.kind_rates, tables.rates, turnover, tables.key,
                                  step)
                if u >= 0:
                    e = R.act_site(i, j, u, state.cell, state.tissue, state.traits, chemokine, tables.coarsen,
                                   tables.kind_rates, tables.antigen_rates, tables.cd19_noise, tables.rates,
                                   tables.key, step)
                    state.events[e] += e != 0


def test_wave_over_slabs_equals_nine_whole_lattice_passes():
    """The cpu sweep (several slabs, so both phases run) gives the lattice the nine passes define, bit for bit."""
    import kernels

    n = 2 * cpu.MIN_SLAB_ROWS + 9  # two slabs of the minimum height: boundary zones as large as they can be
    state, tables = _busy_window(n)
    tables.field_rates[:] = 0  # no secretion or diffusion: the step is the sweep (traffic gets no quota below)
    expected = state.copy()
    initial = state.cell.copy()
    lattice = kernels.Lattice(state, tables, backend="cpu", threads=2, slab_rows=cpu.MIN_SLAB_ROWS)
    for step in range(8):
        _nine_passes(expected, tables, step)
        lattice.step(step, Traffic())
    got = lattice.pull()
    changed = np.count_nonzero(expected.cell != initial)
    assert changed > 200, f"the check needs a busy lattice ({changed} sites changed)"
    for name in ("cell", "traits", "events"):
        assert np.array_equal(getattr(got, name), getattr(expected, name)), name


def test_slab_height_and_thread_count_do_not_change_a_full_step():
    import kernels

    n = 150
    results = []
    for slab_rows, threads in ((n, 1), (cpu.MIN_SLAB_ROWS, 1), (cpu.MIN_SLAB_ROWS, 2), (47, 2), (cpu.SLAB_ROWS, 2)):
        state, tables = _busy_window(n)
        lattice = kernels.Lattice(state, tables, backend="cpu", threads=threads, slab_rows=slab_rows)
        for step in range(8):
            traffic = Traffic(enter_quota=1 << 33, exit_threshold=int(tables.rates[L.R_EXIT]), memory_threshold=1 << 30,
                              seed_quota=1 << 31, negative_threshold=1 << 30)
            lattice.step(step, traffic)
        results.append(lattice.pull())
    for other in results[1:]:
        for name in ("cell", "traits", "fields", "events"):
            assert np.array_equal(getattr(other, name), getattr(results[0], name)), name


def test_slab_rows_below_the_minimum_are_refused():
    import kernels

    state, tables = _busy_window(40)
    with pytest.raises(ValueError, match="slab_rows = 34"):
        kernels.Lattice(state, tables, backend="cpu", slab_rows=cpu.MIN_SLAB_ROWS - 1)
