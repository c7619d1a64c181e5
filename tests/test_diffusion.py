"""Fixed-point diffusion: conservation, positivity, decay, symmetry."""

import math

import numpy as np
from conftest import empty_state, place, quiet_tables

import kernels
from abm.params import Params
from abm.rates import field_rates
from kernels import Traffic
from kernels import layout as L
from kernels.diffusion import DECAY_SHIFT, MAX_RATIO, SHIFT


def field_tables(diffuse_ratio=0.2, decay_p=0.0, substeps=1):
    t = quiet_tables()
    t.field_rates[:, L.FR_DIFFUSE] = int(round(diffuse_ratio * (1 << SHIFT)))
    t.field_rates[:, L.FR_DECAY] = int(round(decay_p * (1 << DECAY_SHIFT)))
    t.field_rates[:, L.FR_SUBSTEPS] = substeps
    return t


def spread(state, tables, steps):
    lat = kernels.Lattice(state, tables, backend="cpu")
    for s in range(steps):
        lat.step(s, Traffic())
    return lat.pull().fields


def test_diffusion_conserves_mass_exactly_and_stays_non_negative():
    s = empty_state(40)
    g = np.random.default_rng(1)
    s.fields[:] = g.integers(0, 10**12, size=s.fields.shape)
    before = s.fields.sum(axis=(1, 2))
    out = spread(s, field_tables(substeps=3), 20)
    assert np.array_equal(out.sum(axis=(1, 2)), before)
    assert out.min() >= 0


def test_diffusion_point_source_spreads_symmetrically():
    s = empty_state(44)  # 11 x 11 voxels
    s.fields[L.F_IL6, 5, 5] = 10**15
    out = spread(s, field_tables(), 10)[L.F_IL6]
    assert np.array_equal(out, out[::-1, :]) and np.array_equal(out, out[:, ::-1]) and np.array_equal(out, out.T)
    assert out[5, 5] == out.max() and out[5, 6] > out[5, 7] > 0


def test_decay_halves_the_field_at_the_half_life():
    params = Params.default().replace({"il6.half_life_h": 1.0, "time.dt_min": 2.0})
    table, _ = field_rates(params, 2.0)
    t = quiet_tables()
    t.field_rates[:] = table
    t.field_rates[:, L.FR_SECRETE_ACTIVE_CART] = 0
    t.field_rates[:, L.FR_SECRETE_STROMA] = 0
    s = empty_state(16)
    s.fields[L.F_IL6] = 10**12
    out = spread(s, t, 30)  # 60 minutes
    assert math.isclose(out[L.F_IL6].mean() / 1e12, 0.5, rel_tol=1e-4)


def test_substeps_keep_ratio_within_stable_range():
    params = Params.default().replace({"il6.diffusion_um2_per_s": 500.0, "time.dt_min": 5.0})
    table, substeps = field_rates(params, 5.0)
    assert substeps[L.F_IL6] > 1
    assert table[L.F_IL6, L.FR_DIFFUSE] <= MAX_RATIO * (1 << SHIFT) + 1


def test_active_cart_secretes_into_its_voxel():
    s = empty_state(8, coarsen=4)
    place(s, 5, 6, L.CART)
    s.traits[5, 6, L.STATE] = L.ACTIVE
    s.traits[5, 6, L.TIMER] = 100
    t = quiet_tables()
    t.field_rates[L.F_IL6, L.FR_SECRETE_ACTIVE_CART] = 1000
    out = spread(s, t, 1)
    assert out[L.F_IL6, 1, 1] == 1000 and out[L.F_IL6].sum() == 1000
