"""CD22, the second antigen: packing, the CAR's target choice, CD22 inheritance and loss, window, model, outcomes.

The CD19-only behaviour (default product) must stay bit-identical to the model
before CD22 existed; the golden record and the equivalence tests guard that,
and the tests here check the pieces: CD22 draws do not disturb CD19 draws or
decisions, and the CD19 part of the window does not depend on CD22.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL, dividing_blast, empty_state, place, quiet_tables

import kernels
from abm import rates
from abm.marrow import build_window, cd22_generator
from abm.model import MarrowModel
from abm.outcomes import antigen_relapse, clinical_outcomes
from abm.params import Params
from abm.reference import ReferenceModel, core_tables
from abm.reference import target_level as reference_target_level
from kernels import Traffic
from kernels import layout as L
from kernels import rules as R

ALWAYS = 2**32
MODES = (L.TARGET_CD19, L.TARGET_CD22, L.TARGET_BOTH)


def run(state, tables, steps):
    lat = kernels.Lattice(state, tables, backend="cpu", threads=1)
    for s in range(steps):
        lat.step(s, Traffic())
    return lat.pull()


def car_tables(mode: int, **rates_: int):
    """Quiet tables with the given target mode; attach and kill always (at every level but 0)."""
    t = quiet_tables(R_TARGET_MODE=mode, **rates_)
    t.antigen_rates[:] = ALWAYS
    return t


# -- packing and target levels -----------------------------------------------------------------------------------
def test_pack_and_unpack_round_trip_every_level_pair():
    for l19 in range(L.N_LEVELS):
        for l22 in (0, 1, 77, 254, 255):
            v = R.pack(l19, l22)
            assert 0 <= v <= L.TRAIT_MAX
            assert R.cd19_level(v) == l19 and R.cd22_level(v) == l22
    assert R.pack(123, 0) == 123  # no CD22: the value is the CD19 level, as the old CD19 slot held


def test_host_array_helpers_equal_the_kernel_helpers_on_every_value():
    values = np.arange(1 << 16, dtype=np.uint16)
    l19, l22 = rates.cd19_levels(values), rates.cd22_levels(values)
    assert np.array_equal(rates.pack_levels(l19, l22), values)
    for v in range(0, 1 << 16, 97):  # kernel scalars on a sample
        assert R.cd19_level(np.uint16(v)) == l19[v] and R.cd22_level(np.uint16(v)) == l22[v]
        for mode in MODES:
            assert R.target_level(np.uint16(v), mode) == rates.target_levels(values[v : v + 1], mode)[0]
            assert reference_target_level(v, mode) == rates.target_levels(values[v : v + 1], mode)[0]


@pytest.mark.parametrize(("l19", "l22", "expected"), [
    (200, 0, (200, 0, 200)),
    (0, 90, (0, 90, 90)),
    (40, 90, (40, 90, 90)),
    (180, 90, (180, 90, 180)),
    (0, 0, (0, 0, 0)),
])
def test_target_level_per_mode(l19, l22, expected):
    v = np.uint16(R.pack(l19, l22))
    assert tuple(int(R.target_level(v, mode)) for mode in MODES) == expected


def test_pack_levels_rejects_levels_out_of_range():
    with pytest.raises(ValueError, match="cd22"):
        rates.pack_levels(3, 256)


def test_bad_target_mode_is_rejected_by_the_wrapper():
    t = quiet_tables(R_TARGET_MODE=3)
    with pytest.raises(ValueError, match="R_TARGET_MODE"):
        kernels.Lattice(empty_state(6), t, backend="cpu")


# -- engagement by target choice ---------------------------------------------------------------------------------
def lone_pair(l19: int, l22: int):
    s = empty_state(5)
    place(s, 2, 2, L.CART)
    place(s, 2, 3, L.BLAST, cd19=l19, cd22=l22)
    return s


def test_cd22_car_never_engages_a_cd19_positive_cd22_negative_blast():
    out = run(lone_pair(200, 0), car_tables(L.TARGET_CD22), 20)
    assert out.cell[2, 3] == L.BLAST and out.traits[2, 2, L.TARGET] == 0 and out.traits[2, 2, L.STIM] == 0


def test_cd22_car_engages_and_kills_a_cd19_negative_cd22_positive_blast():
    out = run(lone_pair(0, 150), car_tables(L.TARGET_CD22), 2)
    assert out.cell[2, 3] == L.EMPTY and out.events[L.EV_KILLED + L.BLAST] == 1


def test_cd19_car_ignores_cd22_on_a_cd19_negative_blast():
    out = run(lone_pair(0, 150), car_tables(L.TARGET_CD19), 20)
    assert out.cell[2, 3] == L.BLAST and out.traits[2, 2, L.STIM] == 0


@pytest.mark.parametrize(("l19", "l22"), [(200, 0), (0, 150), (60, 150)])
def test_dual_car_engages_a_blast_carrying_either_antigen(l19, l22):
    out = run(lone_pair(l19, l22), car_tables(L.TARGET_BOTH), 2)
    assert out.cell[2, 3] == L.EMPTY and out.events[L.EV_KILLED + L.BLAST] == 1


def test_dual_car_never_engages_a_double_negative_blast_or_normal_cell():
    s = lone_pair(0, 0)
    place(s, 1, 2, L.NORMAL, cd19=200, cd22=200)  # antigen on a non-B cell is never a target
    out = run(s, car_tables(L.TARGET_BOTH), 20)
    assert out.cell[2, 3] == L.BLAST and out.cell[1, 2] == L.NORMAL and out.traits[2, 2, L.STIM] == 0


@pytest.mark.parametrize(("mode", "killed"), [(L.TARGET_CD19, False), (L.TARGET_CD22, True), (L.TARGET_BOTH, True)])
def test_attach_and_kill_read_the_level_of_the_target_antigen(mode, killed):
    """CD19 level 50, CD22 level 200; attach and kill happen only at level 200: only a CAR seeing CD22 kills."""
    t = quiet_tables(R_TARGET_MODE=mode)
    t.antigen_rates[:, 200] = ALWAYS
    out = run(lone_pair(50, 200), t, 5)
    assert (out.cell[2, 3] == L.EMPTY) == killed


def test_cd22_car_kills_cd22_positive_b_cells():
    s = empty_state(5)
    place(s, 2, 2, L.CART)
    place(s, 2, 3, L.BCELL, cd19=0, cd22=180)
    out = run(s, car_tables(L.TARGET_CD22), 2)
    assert out.events[L.EV_KILLED + L.BCELL] == 1


# -- inheritance, loss and B lymphopoiesis -----------------------------------------------------------------------
def daughters(out):
    return sorted(int(v) for v in out.traits[out.cell == L.BLAST, L.ANTIGEN])


def test_cd22_loss_makes_cd22_negative_daughters_that_keep_cd19():
    s, t = dividing_blast(100, 150, R_LOSS_CD22=ALWAYS)
    out = run(s, t, 1)
    assert daughters(out) == sorted([R.pack(100, 150), R.pack(100, 0)])


def test_cd19_loss_keeps_cd22():
    s, t = dividing_blast(100, 150, R_LOSS=ALWAYS)
    out = run(s, t, 1)
    assert daughters(out) == sorted([R.pack(100, 150), R.pack(0, 150)])


def test_cd22_level_drifts_with_the_noise_table_and_stays_in_range():
    s, t = dividing_blast(100, 254, R_LOSS=0)
    t.cd19_noise[:] = 3
    out = run(s, t, 1)
    assert daughters(out) == sorted([R.pack(100, 254), R.pack(103, 255)])


def test_cd22_negative_parents_have_cd22_negative_daughters():
    s, t = dividing_blast(100, 0)
    t.cd19_noise[:] = 0
    out = run(s, t, 30)
    antigen = out.traits[out.cell == L.BLAST, L.ANTIGEN]
    assert antigen.size > 40 and np.all(rates.cd22_levels(antigen) == 0)


def test_cd22_draws_leave_cd19_decisions_unchanged():
    """A growing clone: CD22 loss on or off changes the CD22 levels only, never a cell, a CD19 level or an event."""
    def grow(loss22):
        s = empty_state(16)
        place(s, 8, 8, L.BLAST, cd19=120, cd22=120)
        t = quiet_tables(R_LOSS=int(0.2 * ALWAYS), R_LOSS_CD22=loss22)
        t.kind_rates[L.KR_DIVIDE, L.BLAST] = int(0.3 * ALWAYS)
        return run(s, t, 40)

    a, b = grow(0), grow(ALWAYS // 2)
    assert np.array_equal(a.cell, b.cell) and np.array_equal(a.events, b.events)
    assert np.array_equal(rates.cd19_levels(a.traits[..., L.ANTIGEN]), rates.cd19_levels(b.traits[..., L.ANTIGEN]))
    assert not np.array_equal(a.traits, b.traits)


def test_new_b_cells_carry_the_b_cell_cd22_level():
    s = empty_state(6)
    for j in range(6):
        place(s, 2, j, L.NORMAL)
    t = quiet_tables(R_BCELL_LEVEL=180, R_BCELL_CD22_LEVEL=120)
    t.kind_rates[L.KR_CONVERT, L.NORMAL] = ALWAYS
    out = run(s, t, 1)
    assert np.all(out.cell[2] == L.BCELL) and np.all(out.traits[2, :, L.ANTIGEN] == R.pack(180, 120))


# -- parameters and tables -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(("target", "tracking", "mode", "tracked"), [
    ("CD19", "target", L.TARGET_CD19, False),
    ("CD19", "always", L.TARGET_CD19, True),
    ("CD22", "target", L.TARGET_CD22, True),
    ("CD19/CD22", "target", L.TARGET_BOTH, True),
])
def test_tables_carry_target_mode_and_b_cell_cd22_only_when_tracked(target, tracking, mode, tracked):
    p = Params.default().replace({"product.target": target, "patient.cd22_tracking": tracking})
    t = rates.build_tables(p, 1)
    assert t.rates[L.R_TARGET_MODE] == mode and rates.cd22_tracked(p) == tracked
    expected = int(rates.molecules_to_level(p.bcell.cd22_molecules)) if tracked else 0
    assert t.rates[L.R_BCELL_CD22_LEVEL] == expected
    assert t.rates[L.R_LOSS_CD22] == rates.threshold(p.blast.cd22_loss_per_division)


def test_unknown_product_target_is_rejected():
    from abm.errors import ParamError

    with pytest.raises(ParamError, match="product.target"):
        Params({"product.target": "CD20"})


# -- the window ------------------------------------------------------------------------------------------------------
def test_window_holds_no_cd22_unless_tracked():
    s = build_window(Params.default().replace({"grid.size": 48}), np.random.default_rng(4))
    assert not np.any(rates.cd22_levels(s.traits[..., L.ANTIGEN]))


def test_tracking_cd22_leaves_the_rest_of_the_window_unchanged():
    base = {"grid.size": 96, "patient.cd19_negative_fraction": 0.1, "patient.cd22_negative_fraction": 0.2}
    p0 = Params.default().replace(base)
    p1 = p0.replace({"product.target": "CD19/CD22"})
    rng0, rng1 = np.random.default_rng(7), np.random.default_rng(7)
    w0, w1 = build_window(p0, rng0), build_window(p1, rng1)
    assert rng0.random() == rng1.random()  # the window's generator is used alike
    assert np.array_equal(w0.cell, w1.cell) and np.array_equal(w0.tissue, w1.tissue)
    assert np.array_equal(w0.traits[..., L.ANTIGEN], rates.cd19_levels(w1.traits[..., L.ANTIGEN]))
    others = [t for t in range(L.N_TRAITS) if t not in (L.ANTIGEN, L.ROUTE)]  # the route depends on the target
    assert np.array_equal(w0.traits[..., others], w1.traits[..., others])


def test_tracked_window_cd22_levels_follow_the_patient_profile():
    p = Params.default().replace({"grid.size": 160, "product.target": "CD22", "patient.cd22_negative_fraction": 0.25,
                                  "lymphodepletion.enabled": False})
    s = build_window(p, np.random.default_rng(2))
    antigen = s.traits[..., L.ANTIGEN]
    blasts, bcells = s.cell == L.BLAST, s.cell == L.BCELL
    cd22 = rates.cd22_levels(antigen)
    negative = np.mean(cd22[blasts] == 0)
    assert abs(negative - 0.25) < 0.03
    median = np.median(rates.level_to_molecules(cd22[blasts & (cd22 > 0)]))
    assert abs(np.log10(median) - np.log10(p.patient.cd22_median_molecules)) < 0.05
    assert np.all(cd22[bcells] == rates.molecules_to_level(p.bcell.cd22_molecules))
    assert not np.any(cd22[~(blasts | bcells)])


def test_cd22_generator_depends_on_the_seed_only_and_leaves_the_generator_alone():
    a, b = np.random.default_rng(5), np.random.default_rng(5)
    b.random(100)  # used: the CD22 stream does not depend on how far
    assert cd22_generator(a).random() == cd22_generator(b).random()
    assert cd22_generator(a).random() != np.random.default_rng(6).random()
    c = np.random.default_rng(5)
    cd22_generator(c)
    assert c.random() == np.random.default_rng(5).random()


# -- the model and outcomes --------------------------------------------------------------------------------------
def small_model(days: float = 0.5, **overrides) -> MarrowModel:
    params = Params.default().replace({**SMALL, "time.days": days, **overrides})
    return MarrowModel(params, seed=3, backend="cpu", threads=1).run()


def test_tracking_cd22_under_a_cd19_car_changes_no_cd19_result():
    """patient.cd22_tracking = "always" with a CD19 CAR: every CD19 quantity as without CD22 (CD22 has own draws)."""
    extra = {"patient.cd19_negative_fraction": 0.2, "blast.division_rate_per_day": 1.5,
             "blast.cd22_loss_per_division": 0.1}
    off = small_model(**extra)
    on = small_model(**extra, **{"patient.cd22_tracking": "always"})
    a, b = off.state, on.state
    assert np.array_equal(a.cell, b.cell) and np.array_equal(a.fields, b.fields)
    assert np.array_equal(a.events, b.events) and np.array_equal(a.traits[..., 1:], b.traits[..., 1:])
    assert np.array_equal(a.traits[..., L.ANTIGEN], rates.cd19_levels(b.traits[..., L.ANTIGEN]))
    assert np.any(rates.cd22_levels(b.traits[..., L.ANTIGEN])[b.cell == L.BLAST])
    da = off.datacollector.get_model_vars_dataframe()
    db = on.datacollector.get_model_vars_dataframe()
    assert "blasts_cd22neg" not in da.columns and "blasts_cd22neg" in db.columns
    assert da.equals(db[da.columns])


@pytest.mark.parametrize("target", ["CD19", "CD22", "CD19/CD22"])
def test_observed_target_negative_blasts_match_the_product(target):
    model = small_model(0.1, **{"product.target": target, "patient.cd19_negative_fraction": 0.3,
                                "patient.cd22_negative_fraction": 0.3})
    obs = model.observation()
    s = model.state
    antigen = s.traits[..., L.ANTIGEN][s.cell == L.BLAST]
    l19, l22 = rates.cd19_levels(antigen), rates.cd22_levels(antigen)
    expected = {"CD19": l19 == 0, "CD22": l22 == 0, "CD19/CD22": (l19 == 0) & (l22 == 0)}[target]
    assert obs["blasts_target_neg"] == int(expected.sum())
    assert obs["blasts_cd19neg"] == int((l19 == 0).sum())
    if target != "CD19":
        assert obs["blasts_cd22neg"] == int((l22 == 0).sum())
        assert model.blast_cd22_molecules().size == antigen.size


def test_body_antigen_load_counts_the_product_target():
    model = MarrowModel(Params.default().replace({**SMALL, "product.target": "CD22",
                                                  "patient.cd22_negative_fraction": 0.5}), seed=3, backend="cpu")
    s = model.state
    positive = (rates.cd22_levels(s.traits[..., L.ANTIGEN]) > 0) & ((s.cell == L.BLAST) | (s.cell == L.BCELL))
    assert model.read_window().cd19_cells == int(positive.sum())


def relapse_frame(target_neg, cd19neg, cd22neg):
    fractions = [0.7, 0.01, 0.2]
    blasts = [int(f * 1000) for f in fractions]
    return pd.DataFrame({"day": [0.0, 10.0, 20.0], "blast_fraction": fractions, "blasts": blasts,
                         "blasts_cd19neg": cd19neg, "blasts_target_neg": target_neg, "blasts_cd22neg": cd22neg})


def test_relapse_antigen_negative_means_negative_for_the_product_target():
    # a CD22 CAR relapse that is CD22-negative but CD19-positive
    df = relapse_frame(target_neg=[0, 0, 150], cd19neg=[0, 0, 0], cd22neg=[0, 0, 150])
    assert clinical_outcomes(df)["relapse_antigen_negative"] is True
    assert antigen_relapse(df) == {"relapse_cd19_negative": False, "relapse_cd22_negative": True}
    df = relapse_frame(target_neg=[0, 0, 0], cd19neg=[0, 0, 150], cd22neg=[0, 0, 0])
    assert clinical_outcomes(df)["relapse_antigen_negative"] is False
    assert antigen_relapse(df) == {"relapse_cd19_negative": True, "relapse_cd22_negative": False}


def test_antigen_relapse_is_null_without_relapse():
    df = relapse_frame([0, 0, 0], [0, 0, 0], [0, 0, 0])
    df.loc[2, "blast_fraction"] = 0.0
    assert antigen_relapse(df) == {"relapse_cd19_negative": None, "relapse_cd22_negative": None}


def test_summary_gains_antigen_relapse_keys_only_when_cd22_is_tracked():
    from abm.outcomes import summarize

    plain = summarize(small_model(0.1))
    tracked = summarize(small_model(0.1, **{"product.target": "CD19/CD22"}))
    assert "relapse_cd22_negative" not in plain
    assert set(tracked) - set(plain) == {"relapse_cd19_negative", "relapse_cd22_negative"}


# -- the plain-Mesa reference ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("mode", "killed"), [(L.TARGET_CD19, False), (L.TARGET_CD22, True), (L.TARGET_BOTH, True)])
def test_reference_honours_the_target_choice(mode, killed):
    s = empty_state(8)
    place(s, 3, 4, L.BLAST, cd19=0, cd22=200)
    p = Params.default().replace({"grid.size": 8})
    t = core_tables(p, 1)
    t.kind_rates[:] = 0
    t.rates[L.R_MOVE] = 0
    t.rates[L.R_TARGET_MODE] = mode
    t.antigen_rates[:] = ALWAYS
    model = ReferenceModel(p, 1, state=s, tables=t, cart_sites=[(3, 3)])
    for _ in range(3):
        model.step()
    assert (model.counts()[L.BLAST] == 0) == killed


def test_reference_keeps_both_antigens_through_division_and_export():
    s = empty_state(8)
    place(s, 4, 4, L.BLAST, cd19=100, cd22=150)
    p = Params.default().replace({"grid.size": 8})
    t = core_tables(p, 1)
    t.kind_rates[:] = 0
    t.kind_rates[L.KR_DIVIDE, L.BLAST] = ALWAYS
    t.cd19_noise[:] = 2
    model = ReferenceModel(p, 1, state=s, tables=t)
    model.step()
    out = model.to_state()
    assert sorted(int(v) for v in out.traits[out.cell == L.BLAST, L.ANTIGEN]) == [R.pack(100, 150), R.pack(102, 152)]


def test_checkpoint_from_before_the_target_column_resumes():
    """A checkpoint written before ``blasts_target_neg`` existed resumes; the column is empty for its rows."""
    params = Params.default().replace({**SMALL, "time.days": 0.25})
    model = MarrowModel(params, seed=3, backend="cpu", threads=1).run()
    saved = model.checkpoint()
    rows = len(saved["meta"]["model_vars"]["day"])
    del saved["meta"]["model_vars"]["blasts_target_neg"]
    resumed = MarrowModel.from_checkpoint(params.replace({"time.days": 0.5}), saved["arrays"], saved["meta"],
                                          backend="cpu")
    df = resumed.run().datacollector.get_model_vars_dataframe()
    assert df["blasts_target_neg"].iloc[:rows].isna().all() and df["blasts_target_neg"].iloc[rows:].notna().all()
