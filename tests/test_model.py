"""MarrowModel: invariants, Mesa integration, reproducibility, marrow construction."""

import mesa
import numpy as np
import pytest

from abm.marrow import build_tissue, build_window, closed_pockets
from abm.model import OBSERVABLES, MarrowModel
from abm.params import Params
from kernels import layout as L


def test_invariants_hold_every_step(small_params):
    model = MarrowModel(small_params, seed=2, backend="cpu", check_invariants=True)
    model.run()
    assert model.lattice_step == model.total_steps == 720
    assert model.observation()["kills"] > 0


def test_datacollector_has_one_row_per_observation(small_params):
    model = MarrowModel(small_params, seed=2, backend="cpu").run()
    df = model.datacollector.get_model_vars_dataframe()
    assert list(df.columns) == list(model.observables)
    assert set(OBSERVABLES) < set(df.columns) and {"blood_cart_per_ul", "crs_grade", "icans_grade"} < set(df.columns)
    assert len(df) == 1 + 12  # initial row + 24 h / 2 h
    assert df["day"].iloc[-1] == pytest.approx(1.0)


def test_same_seed_same_result_different_seed_differs(small_params):
    a = MarrowModel(small_params, seed=5, backend="cpu").run().state
    b = MarrowModel(small_params, seed=5, backend="cpu").run().state
    c = MarrowModel(small_params, seed=6, backend="cpu").run().state
    assert np.array_equal(a.cell, b.cell) and np.array_equal(a.traits, b.traits)
    assert not np.array_equal(a.cell, c.cell)


def test_works_with_mesa_batch_run():
    results = mesa.batch_run(
        MarrowModel,
        parameters={"seed": [1, 2], "backend": "cpu", "grid.size": 16, "time.days": 0.5,
                    "product.dose_per_kg": [3e6, 3e8]},
        iterations=1, max_steps=100, display_progress=False,
    )
    assert len(results) == 4
    assert {"seed", "blasts", "cart", "il6_mean_pg_ml", "product.dose_per_kg"} <= set(results[0])


@pytest.mark.parametrize("mode", [L.TARGET_CD19, L.TARGET_CD22, L.TARGET_BOTH])
def test_window_census_counts_what_the_numpy_form_counts(mode):
    from abm.rates import target_levels
    from kernels.census import window_census

    g = np.random.default_rng(mode)
    cell = g.integers(0, L.N_KINDS, size=(23, 23)).astype(np.uint8)
    traits = g.integers(0, 1 << 16, size=(23, 23, L.N_TRAITS)).astype(np.uint16)
    traits[..., L.STATE] = g.integers(0, 4, size=(23, 23))
    kinds = np.full(L.N_KINDS, 7, dtype=np.int64)
    levels = np.full(L.N_LEVELS, 7, dtype=np.int64)
    active = window_census(cell, traits, mode, kinds, levels)
    assert np.array_equal(kinds, np.bincount(cell.ravel(), minlength=L.N_KINDS))
    level = target_levels(traits[..., L.ANTIGEN], mode)
    positive = (level > 0) & ((cell == L.BLAST) | (cell == L.BCELL))
    assert np.array_equal(levels, np.bincount(level[positive], minlength=L.N_LEVELS))
    assert active == np.count_nonzero((cell == L.CART) & (traits[..., L.STATE] == L.ACTIVE))


def test_window_matches_patient_profile():
    params = Params.default().replace({"grid.size": 128, "patient.marrow_blast_fraction": 0.4,
                                       "patient.cd19_negative_fraction": 0.1, "lymphodepletion.enabled": False})
    s = build_window(params, np.random.default_rng(0))
    n = 128 * 128
    assert abs(np.mean(s.tissue == L.BONE) - 0.2) < 0.02
    assert abs(np.mean(s.tissue == L.SINUSOID) - 0.05) < 0.01
    assert np.all(s.cell[s.tissue >= L.BONE] == L.EMPTY)
    nucleated = np.isin(s.cell, (L.BLAST, L.BCELL, L.NORMAL)).sum()
    blasts = s.cell == L.BLAST
    assert abs(blasts.sum() / nucleated - 0.4) < 0.03
    negative = (s.traits[..., L.ANTIGEN] == 0) & blasts
    assert abs(negative.sum() / blasts.sum() - 0.1) < 0.03
    assert np.all(s.traits[s.cell == L.BCELL, L.ANTIGEN] > 0)
    assert (s.tissue == L.PERIVASCULAR).sum() > 0 and n > 0


def test_bad_seed_rejected():
    with pytest.raises(ValueError, match="seed"):
        MarrowModel(seed=-1, backend="cpu", **{"grid.size": 8})


def test_snapshots_taken_at_cadence(small_params):
    model = MarrowModel(small_params, seed=2, backend="cpu", snapshot_every_min=120).run()
    assert len(model.snapshots) == 13
    assert model.snapshots[0]["view"].shape == (18, 18)
    assert model.snapshots[-1]["day"] == pytest.approx(1.0)


def test_lymphodepletion_spares_blasts_and_thins_normal_cells():
    base = {"grid.size": 128, "patient.marrow_blast_fraction": 0.4}
    off = build_window(Params.default().replace({**base, "lymphodepletion.enabled": False}), np.random.default_rng(0))
    on = build_window(Params.default().replace({**base, "lymphodepletion.normal_cell_survival": 0.6}),
                      np.random.default_rng(0))
    assert np.array_equal(on.cell == L.BLAST, off.cell == L.BLAST)
    for kind in (L.NORMAL, L.BCELL):
        ratio = np.sum(on.cell == kind) / np.sum(off.cell == kind)
        assert abs(ratio - 0.6) < 0.05


def test_niche_sites_surround_stroma_and_hold_cells():
    s = build_window(Params.default().replace({"grid.size": 96}), np.random.default_rng(1))
    from abm.marrow import moore_adjacent

    near_stroma = moore_adjacent(s.cell == L.STROMA) & (s.cell != L.STROMA)
    assert np.any(s.tissue == L.NICHE)
    assert np.all(near_stroma[s.tissue == L.NICHE])  # every niche site touches stroma
    assert not np.any(near_stroma & (s.tissue == L.MARROW))  # and every marrow site touching stroma is niche
    assert np.any(np.isin(s.cell[s.tissue == L.NICHE], (L.BLAST, L.BCELL, L.NORMAL)))


def test_every_marrow_site_is_reachable_from_a_sinusoid():
    tissue = np.full((7, 7), L.MARROW, dtype=np.uint8)
    tissue[0, :] = L.SINUSOID
    tissue[1, :] = L.PERIVASCULAR
    tissue[3:6, 2:5] = L.BONE
    tissue[4, 3] = L.MARROW  # a one-site pocket inside bone
    assert np.argwhere(closed_pockets(tissue)).tolist() == [[4, 3]]
    tissue[5, 4] = L.MARROW  # a diagonal opening: cells move between Moore neighbours, so it is reachable
    tissue[6, 5] = L.MARROW
    assert not closed_pockets(tissue).any()
    for seed in range(5):  # generated windows keep none; the bone fraction is as asked plus the filled pockets
        t = build_tissue(Params.default().replace({"grid.size": 200}), np.random.default_rng(seed))
        assert not closed_pockets(t).any()
        assert 0.195 < (t == L.BONE).mean() < 0.23


def test_a_pocket_with_its_own_sinusoid_is_closed():
    """CAR-T cells would enter it only through its own portals, which its blasts keep full (issue 4)."""
    tissue = np.full((9, 9), L.MARROW, dtype=np.uint8)
    tissue[0, :] = L.SINUSOID
    tissue[1, :] = L.PERIVASCULAR
    tissue[3:9, 3:9] = L.BONE
    tissue[5:8, 5:8] = L.MARROW  # a 3 x 3 pocket in bone ...
    tissue[6, 6] = L.SINUSOID  # ... around a sinusoid of its own
    tissue[5:8, 5:8][tissue[5:8, 5:8] == L.MARROW] = L.PERIVASCULAR
    closed = closed_pockets(tissue)
    assert closed.sum() == 8 and closed[5:8, 5:8].sum() == 8
    tissue[1, :] = L.MARROW  # no perivascular site in the main space: a window CAR-T cells cannot enter
    tissue[0, :] = L.BONE
    closed = closed_pockets(tissue)  # the main space is now the pocket, the largest component CAR-T cells enter
    assert not closed[5:8, 5:8].any() and closed.sum() == (tissue == L.MARROW).sum()
