"""CAR-T life cycle, niche protection, antigen loss and B lymphopoiesis: rule units and host tables."""

import math

import numpy as np
import pytest
from conftest import empty_state, place, quiet_tables

import kernels
from abm.params import Params
from abm.rates import antigen_response, build_tables, exhaustion_engagements
from kernels import Traffic
from kernels import layout as L
from kernels.rng import threshold

ALWAYS = 2**32


def run(state, tables, steps, enter=0, memory=0):
    lat = kernels.Lattice(state, tables, backend="cpu")
    for s in range(steps):
        lat.step(s, Traffic(enter_quota=enter, memory_threshold=memory))
    return lat.pull()


def engaging_pair(s, i, j, level=200):
    place(s, i, j, L.CART)
    place(s, i, j + 1, L.BLAST, cd19=level)


def test_cart_exhausts_after_threshold_engagements_and_never_engages_again():
    s = empty_state(6)
    engaging_pair(s, 2, 2)
    t = quiet_tables(R_DETACH=ALWAYS)  # engage, fail to kill, let go, engage again ...
    t.antigen_rates[L.AR_ATTACH] = ALWAYS
    t.rates[L.R_EXHAUST_STIM] = 3
    out = run(s, t, 40)
    assert out.traits[2, 2, L.STATE] == L.EXHAUSTED
    assert out.traits[2, 2, L.STIM] == 3 and out.traits[2, 2, L.TARGET] == 0
    assert out.events[L.EV_EXHAUSTED] == 1 and out.cell[2, 3] == L.BLAST


@pytest.mark.statistical
def test_exhaustion_apoptosis_fraction_statistically():
    # 300 cells reach the threshold at their first engagement; half should die (4 binomial SE).
    s = empty_state(60)
    cells = 0
    for i in range(0, 60, 3):
        for j in range(0, 57, 4):
            engaging_pair(s, i, j)
            cells += 1
    t = quiet_tables()
    t.antigen_rates[L.AR_ATTACH] = ALWAYS
    t.rates[L.R_EXHAUST_STIM] = 1
    t.rates[L.R_EXHAUST_DIE] = threshold(0.5)
    out = run(s, t, 1)
    died = int(out.events[L.EV_DIED + L.CART])
    assert died + int(out.events[L.EV_EXHAUSTED]) == cells
    assert abs(died - cells / 2) < 4 * math.sqrt(cells / 4)


def test_activation_induced_death_at_engagement():
    s = empty_state(6)
    engaging_pair(s, 2, 2)
    t = quiet_tables(R_AICD=ALWAYS)
    t.antigen_rates[L.AR_ATTACH] = ALWAYS
    out = run(s, t, 1)
    assert out.cell[2, 2] == L.EMPTY and out.events[L.EV_DIED + L.CART] == 1


def test_resting_effector_becomes_memory_and_memory_reactivates_on_antigen():
    s = empty_state(8)
    place(s, 4, 4, L.CART)
    out = run(s, quiet_tables(R_MEMORY=ALWAYS), 1)
    assert out.traits[4, 4, L.PHENO] == L.MEMORY
    place(s, 4, 5, L.BLAST, cd19=200)
    t = quiet_tables()
    t.antigen_rates[L.AR_ATTACH] = ALWAYS
    out = run(out, t, 2)  # step 0 again: the cell already acted in it; it engages in step 1
    assert out.traits[4, 4, L.PHENO] == L.EFFECTOR and out.traits[4, 4, L.STATE] == L.ACTIVE


def test_memory_cells_use_their_own_death_rate():
    s = empty_state(20)
    for i in range(20):
        for j in range(20):
            place(s, i, j, L.CART)
            s.traits[i, j, L.PHENO] = L.MEMORY if (i + j) % 2 else L.EFFECTOR
    t = quiet_tables(R_MEMORY_DIE=ALWAYS)
    out = run(s, t, 1)
    assert np.all(out.cell[(np.add.outer(np.arange(20), np.arange(20)) % 2) == 1] == L.EMPTY)
    assert np.count_nonzero(out.cell == L.CART) == 200


def test_niche_protects_targets_from_killing():
    s = empty_state(8)
    engaging_pair(s, 2, 2)
    engaging_pair(s, 5, 2)
    s.tissue[5, 3] = L.NICHE
    t = quiet_tables()
    t.antigen_rates[L.AR_ATTACH] = ALWAYS
    t.antigen_rates[L.AR_ATTACH_NICHE] = ALWAYS
    t.antigen_rates[L.AR_KILL] = ALWAYS
    t.antigen_rates[L.AR_KILL_NICHE] = 0
    out = run(s, t, 10)
    assert out.cell[2, 3] == L.EMPTY and out.cell[5, 3] == L.BLAST


def test_cd19_loss_makes_negative_daughters():
    s = empty_state(9)
    place(s, 4, 4, L.BLAST, cd19=150)
    t = quiet_tables(R_LOSS=ALWAYS)
    t.kind_rates[L.KR_DIVIDE, L.BLAST] = ALWAYS
    out = run(s, t, 1)
    blasts = out.cell == L.BLAST
    assert blasts.sum() == 2
    assert sorted(out.traits[blasts, L.ANTIGEN].tolist()) == [0, 150]


def test_b_lymphopoiesis_turns_normal_cells_into_b_cells_with_bookkeeping():
    s = empty_state(10)
    for j in range(10):
        place(s, 3, j, L.NORMAL)
    t = quiet_tables(R_BCELL_LEVEL=180)
    t.kind_rates[L.KR_CONVERT, L.NORMAL] = ALWAYS
    out = run(s, t, 1)
    assert np.all(out.cell[3] == L.BCELL) and np.all(out.traits[3, :, L.ANTIGEN] == 180)
    assert out.events[L.EV_BCELL_MADE] == 10


def test_entering_cells_take_the_memory_share():
    s = empty_state(10)
    s.tissue[5, :] = L.PERIVASCULAR
    out = run(s, quiet_tables(), 1, enter=10 * ALWAYS, memory=ALWAYS)
    assert np.all(out.traits[5, :, L.PHENO] == L.MEMORY)


def test_kind_rates_that_exceed_one_event_per_step_are_rejected():
    s = empty_state(6)
    t = quiet_tables()
    t.kind_rates[L.KR_DIE, L.BLAST] = ALWAYS
    t.kind_rates[L.KR_DIVIDE, L.BLAST] = 1
    with pytest.raises(ValueError, match="kind_rates"):
        kernels.Lattice(s, t, backend="cpu")


# -- host tables: costimulation and affinity ---------------------------------------------------


def test_cd28_needs_less_antigen_exhausts_sooner_and_remembers_less():
    bb = Params.default()
    cd28 = bb.replace({"product.costimulation": "CD28"})
    low = 100  # a low antigen level (~400 molecules)
    assert antigen_response(cd28)[low] > antigen_response(bb)[low]
    assert exhaustion_engagements(cd28) < exhaustion_engagements(bb)
    t_bb, t_cd28 = build_tables(bb, 1), build_tables(cd28, 1)
    assert t_cd28.rates[L.R_PROLIF] > t_bb.rates[L.R_PROLIF]
    assert t_cd28.rates[L.R_MEMORY] < t_bb.rates[L.R_MEMORY]


def test_low_affinity_binder_needs_more_antigen_and_exhausts_later():
    fmc63 = Params.default()
    cat = fmc63.replace({"product.affinity_kd_nM": 14.3})
    assert np.all(antigen_response(cat)[1:] < antigen_response(fmc63)[1:])
    assert exhaustion_engagements(cat) > exhaustion_engagements(fmc63)


def test_niche_rows_scale_with_protection_and_factors_scale_rates():
    p = Params.default().replace({"niche.kill_protection": 0.5})
    t = build_tables(p, 1)
    top = L.N_LEVELS - 1
    assert t.antigen_rates[L.AR_KILL_NICHE, top] < t.antigen_rates[L.AR_KILL, top]
    slow = build_tables(p, 1, proliferation_factor=0.5, activation_factor=0.5)
    assert slow.rates[L.R_PROLIF] < t.rates[L.R_PROLIF]
    assert slow.antigen_rates[L.AR_KILL, top] < t.antigen_rates[L.AR_KILL, top]


def test_division_shares_the_engagement_count_and_resets_daughter_kills():
    s = empty_state(7)
    place(s, 3, 3, L.CART)
    s.traits[3, 3, L.STATE] = L.ACTIVE
    s.traits[3, 3, L.TIMER] = 100
    s.traits[3, 3, L.STIM] = 7
    s.traits[3, 3, L.KILLS] = 5
    out = run(s, quiet_tables(R_PROLIF=ALWAYS, R_MAX_DIVS=1), 1)
    carts = out.cell == L.CART
    assert carts.sum() == 2
    assert sorted(out.traits[carts, L.STIM].tolist()) == [3, 3]
    assert sorted(out.traits[carts, L.KILLS].tolist()) == [0, 5]
