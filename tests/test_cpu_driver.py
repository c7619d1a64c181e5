"""The cpu driver's inline hot paths (kernels/cpu.py) equal the rule functions they stand for."""

from __future__ import annotations

import numpy as np
from conftest import empty_state, place, quiet_tables

from kernels import cpu
from kernels import rules as R
from kernels.diffusion import diffuse_voxel, secrete_voxel
from kernels.rng import draw, key_of


def test_visit_thresholds_with_one_draw_equal_needs_visit_for_every_kind():
    g = np.random.default_rng(3)
    n = 12
    cell = g.integers(0, R.N_KINDS, size=(n, n)).astype(np.uint8)
    kind_rates = np.zeros((R.N_KIND_RATES, R.N_KINDS), dtype=np.int64)
    kind_rates[:, 1:4] = g.integers(0, 1 << 30, size=(R.N_KIND_RATES, 3))
    visit = np.zeros(R.N_KINDS, dtype=np.int64)
    cpu.visit_thresholds(kind_rates, visit)
    key = key_of(5)
    for step in range(20):
        for i in range(n):
            for j in range(n):
                fast = draw(key, step, i * n + j, R.P_DIE) < visit[cell[i, j]]
                assert fast == R.needs_visit(i, j, cell, kind_rates, key, step)


def test_diffuse_row_equals_diffuse_voxel_on_random_fields():
    g = np.random.default_rng(4)
    for m in (1, 2, 7):
        src = g.integers(0, 1 << 50, size=(m, m)).astype(np.int64)
        rate_row = np.zeros(R.N_FIELD_RATES, dtype=np.int64)
        rate_row[R.FR_DIFFUSE] = g.integers(0, 1 << 14)
        rate_row[R.FR_DECAY] = g.integers(0, 1 << 20)
        expected = np.zeros_like(src)
        got = np.zeros_like(src)
        for vi in range(m):
            for vj in range(m):
                diffuse_voxel(vi, vj, src, expected, rate_row)
            cpu.diffuse_row(vi, src, got, rate_row[R.FR_DIFFUSE], rate_row[R.FR_DECAY])
        assert np.array_equal(got, expected)


def test_step_secretion_equals_secrete_voxel_for_every_field():
    import kernels

    s = empty_state(10, coarsen=4)
    g = np.random.default_rng(5)
    for _ in range(30):
        i, j = g.integers(0, 10, size=2)
        place(s, int(i), int(j), int(g.choice([R.STROMA, R.CART, R.BLAST])))
    s.traits[..., R.STATE] = np.where(s.cell == R.CART, g.integers(0, 3, size=(10, 10)), 0)
    s.traits[..., R.ACTED] = R.stamp(0)  # nobody acts: only secretion changes the state
    t = quiet_tables()
    t.field_rates[:, R.FR_SECRETE_ACTIVE_CART] = [7, 11]
    t.field_rates[:, R.FR_SECRETE_STROMA] = [13, 17]
    expected = s.fields.copy()
    for f in range(R.N_FIELDS):
        for vi in range(3):
            for vj in range(3):
                secrete_voxel(vi, vj, s.cell, s.traits, expected[f], t.field_rates[f], 4)
    lat = kernels.Lattice(s, t, backend="cpu", threads=1)
    lat.step(0, 0, 0)
    assert np.array_equal(lat.pull().fields, expected)
