"""Issue 28's escape routes, each in isolation: the route a blast carries (its STATE slot), how it gets it in the
window (pre-existing, mutation in a division, lineage switch, reseeding from the reservoir), the reservoir's route
compartments, and ``relapse_route``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import dividing_blast, empty_state, place, quiet_tables

import kernels
from abm.body import Body, WindowReadout
from abm.body.kinetics import RK, RL, RM, RN, RP
from abm.cohort import RELAPSE_ROUTES, trial_summary
from abm.marrow import build_window
from abm.model import ROUTE_COLUMNS, MarrowModel
from abm.outcomes import relapse_route
from abm.params import Params
from abm.rates import cd19_levels
from kernels import Traffic
from kernels import layout as L
from kernels import rules as R

ALWAYS = 2**32


def run(state, tables, steps, traffic=None):
    lat = kernels.Lattice(state, tables, backend="cpu", threads=1)
    for s in range(steps):
        lat.step(s, traffic or Traffic())
    return lat.pull()


def blasts(out) -> list[tuple[int, int]]:
    """(ANTIGEN, ROUTE) of every blast, sorted."""
    where = out.cell == L.BLAST
    return sorted(zip(out.traits[where, L.ANTIGEN].tolist(), out.traits[where, L.ROUTE].tolist(), strict=True))


# -- the window ----------------------------------------------------------------------------------------------
def test_without_loss_or_switch_no_blast_takes_a_route():
    s, t = dividing_blast(100, 150)
    assert blasts(run(s, t, 1)) == [(R.pack(100, 150), L.ROUTE_NONE)] * 2


def test_a_daughter_that_loses_the_target_in_a_division_takes_the_mutation_route():
    s, t = dividing_blast(100, 150, R_LOSS=ALWAYS)
    assert blasts(run(s, t, 1)) == sorted([(R.pack(100, 150), L.ROUTE_NONE), (R.pack(0, 150), L.ROUTE_MUTATION)])
    # CD22 loss under a CD19 CAR is no loss of the target: no route
    s, t = dividing_blast(100, 150, R_LOSS_CD22=ALWAYS)
    assert blasts(run(s, t, 1)) == sorted([(R.pack(100, 150), L.ROUTE_NONE), (R.pack(100, 0), L.ROUTE_NONE)])


def test_a_negative_blast_passes_its_route_on_unchanged():
    s, t = dividing_blast(0, 150, route=L.ROUTE_PREEXISTING, R_LOSS=ALWAYS)
    assert blasts(run(s, t, 1)) == [(R.pack(0, 150), L.ROUTE_PREEXISTING)] * 2


@pytest.mark.parametrize("mode", [L.TARGET_CD19, L.TARGET_CD22, L.TARGET_BOTH])
def test_a_lineage_switched_daughter_carries_neither_antigen_under_any_car(mode):
    s, t = dividing_blast(100, 150, R_SWITCH=ALWAYS, R_TARGET_MODE=mode)
    assert blasts(run(s, t, 1)) == sorted([(R.pack(100, 150), L.ROUTE_NONE), (0, L.ROUTE_LINEAGE)])


def test_lineage_switch_needs_a_kmt2a_rearrangement():
    from abm.rates import build_tables

    on = {"blast.lineage_switch_per_division": 0.01}
    assert build_tables(Params(on), 1).rates[L.R_SWITCH] == 0
    assert build_tables(Params({**on, "patient.kmt2a_rearranged": True}), 1).rates[L.R_SWITCH] == \
        kernels.threshold(0.01)


@pytest.mark.parametrize("target", ["CD19", "CD22", "CD19/CD22"])
def test_the_marrow_labels_its_target_negative_blasts_pre_existing(target):
    p = Params({"grid.size": 64, "patient.cd19_negative_fraction": 0.3, "patient.cd22_negative_fraction": 0.3,
                "product.target": target})
    s = build_window(p, np.random.default_rng(5))
    from abm.rates import target_levels, target_mode

    negative = (s.cell == L.BLAST) & (target_levels(s.traits[..., L.ANTIGEN], target_mode(p)) == 0)
    assert negative.sum() > 20
    assert (s.traits[negative, L.ROUTE] == L.ROUTE_PREEXISTING).all()
    assert (s.traits[~negative & (s.cell != L.CART), L.ROUTE] == 0).all()


@pytest.mark.parametrize(("preexisting", "mutation", "lineage", "route"), [
    (ALWAYS, ALWAYS, ALWAYS, L.ROUTE_PREEXISTING), (0, ALWAYS, ALWAYS, L.ROUTE_MUTATION),
    (0, 0, ALWAYS, L.ROUTE_LINEAGE), (0, 0, 0, L.ROUTE_MASKING)])
def test_a_negative_reservoir_blast_enters_with_the_route_the_thresholds_give(preexisting, mutation, lineage, route):
    s = empty_state(8)
    s.tissue[:, 0] = L.PERIVASCULAR
    t = quiet_tables(R_TARGET_MODE=L.TARGET_CD19)
    traffic = Traffic(seed_quota=8 * ALWAYS, negative_threshold=ALWAYS, preexisting_threshold=preexisting,
                      mutation_threshold=mutation, lineage_threshold=lineage)
    out = run(s, t, 1, traffic)
    seeded = out.cell == L.BLAST
    assert seeded.sum() > 0 and (out.traits[seeded, L.ROUTE] == route).all()
    assert (cd19_levels(out.traits[seeded, L.ANTIGEN]) == 0).all()
    if route == L.ROUTE_LINEAGE:
        assert (out.traits[seeded, L.ANTIGEN] == 0).all()


def test_routes_are_the_same_on_the_python_and_cpu_backends():
    p = Params({"grid.size": 32, "time.days": 2.0, "patient.cd19_negative_fraction": 0.1,
                "blast.cd19_loss_per_division": 0.05, "blast.lineage_switch_per_division": 0.01,
                "patient.kmt2a_rearranged": True, "blast.division_rate_per_day": 1.5})
    states = []
    for backend in ("python", "cpu"):
        model = MarrowModel(p, seed=4, backend=backend, threads=1)
        model.run()
        states.append(model.state.traits.copy())
    assert np.array_equal(*states)
    routes = states[0][..., L.ROUTE][model.state.cell == L.BLAST]
    assert {L.ROUTE_PREEXISTING, L.ROUTE_MUTATION, L.ROUTE_LINEAGE} <= set(routes.tolist())


# -- the reservoir ---------------------------------------------------------------------------------------------
def body(**overrides) -> Body:
    return Body(Params({"relapse.reservoir_fraction": 0.02, "patient.cd19_negative_fraction": 0.01,
                        **overrides}), 65_536, 10**9, seed=3)


def test_reservoir_keeps_pre_existing_and_acquired_negatives_apart_and_switches_only_with_kmt2a():
    hour = 1.0 / 24.0
    b = body(**{"blast.cd19_loss_per_division": 1e-3})
    s = body(**{"blast.lineage_switch_per_division": 1e-3, "patient.kmt2a_rearranged": True})
    for x in (b, s):
        x.schedule = []
        r = WindowReadout(10_000, 10_000, 10_000, 0, 0, 0.0, 0)
        for k in range(24 * 20):
            x.advance(k * hour, hour, r)
    assert b.y[RN] > 0 and b.y[RM] > 0 and b.y[RL] == 0.0
    assert s.y[RL] > 0 and s.y[RL] < s.y[RP]
    o = b.observe()
    assert o["reservoir_target_neg_cells"] == pytest.approx(o["reservoir_route_preexisting_cells"]
                                                            + o["reservoir_route_mutation_cells"], rel=1e-12)
    _, _, preexisting, mutation, _ = b.reseeding(hour)
    assert 0 < preexisting < mutation == pytest.approx(ALWAYS, rel=1e-9)  # no lineage share
    assert preexisting / ALWAYS == pytest.approx(b.y[RN] / (b.y[RN] + b.y[RM]), rel=1e-6)


# -- relapse_route ------------------------------------------------------------------------------------------------
def frame(**last) -> pd.DataFrame:
    rows = [{"day": 0.0, "blast_fraction": 0.7, "blasts": 700, "blasts_target_neg": 0},
            {"day": 20.0, "blast_fraction": 0.0, "blasts": 0, "blasts_target_neg": 0},
            {"day": 200.0, "blast_fraction": 0.2, **last}]
    df = pd.DataFrame(rows).fillna(0)
    for column in ROUTE_COLUMNS:
        df[column] = df.get(column, 0)
    return df.fillna(0)


def test_relapse_route_names_the_commonest_route_of_a_negative_relapse():
    assert relapse_route(frame(blasts=100, blasts_target_neg=10, blasts_route_mutation=10)) == "antigen-positive"
    assert relapse_route(frame(blasts=100, blasts_target_neg=90, blasts_route_mutation=60,
                               blasts_route_preexisting=30)) == "mutation"
    assert relapse_route(frame(blasts=100, blasts_target_neg=90, blasts_route_lineage=90)) == "lineage"
    assert relapse_route(frame(blasts=100, blasts_target_neg=90)) == "unknown"
    no_relapse = frame(blasts=0, blasts_target_neg=0)
    no_relapse.loc[2, "blast_fraction"] = 0.0
    assert relapse_route(no_relapse) is None


def test_trial_summary_counts_relapses_by_route():
    rows = [{"relapse": True, "relapse_route": "mutation"}, {"relapse": True, "relapse_route": "antigen-positive"},
            {"relapse": True, "relapse_route": "mutation"}, {"relapse": False, "relapse_route": None}]
    routes = trial_summary(rows)["relapse_routes"]
    assert set(routes) == set(RELAPSE_ROUTES)
    assert routes["mutation"]["rate"] == pytest.approx(2 / 3) and routes["mutation"]["n"] == 3
    assert routes["lineage"]["rate"] == 0.0


def test_the_cohort_draws_kmt2a_rearrangements_at_their_prevalence_from_their_own_stream():
    """2,000 patients: the KMT2A share within a binomial 99.9 % band of 13/231; the other draws are unchanged."""
    from abm.cohort import KMT2A_PREVALENCE, sample_patient

    base = Params.default()
    profiles = [sample_patient(9, i, base) for i in range(2000)]
    share = np.mean([p["patient.kmt2a_rearranged"] for p in profiles])
    sd = np.sqrt(KMT2A_PREVALENCE * (1 - KMT2A_PREVALENCE) / 2000)
    assert abs(share - KMT2A_PREVALENCE) < 3.3 * sd
    assert all(isinstance(p["patient.kmt2a_rearranged"], bool) for p in profiles[:10])


def test_relapse_route_names_down_regulated_and_masked_relapses():
    # most blasts carry the target, but less than their genes make: a target-dim relapse by trogocytosis
    assert relapse_route(frame(blasts=100, blasts_target_neg=10, blasts_route_downregulation=60)) == "downregulation"
    assert relapse_route(frame(blasts=100, blasts_target_neg=10, blasts_route_downregulation=40)) == \
        "antigen-positive"
    assert relapse_route(frame(blasts=100, blasts_target_neg=95, blasts_route_masking=95)) == "masking"


# -- trogocytosis: stripping, re-expression, the T cell's acquired antigen, fratricide --------------------------
TROG = {"R_TROG_LEVELS": 10, "R_TROG_OFFSET": 33}


def engaging_pair(l19: int, l22: int = 0, **rates: int):
    """A CAR-T cell at (4, 4) that engages the blast at (4, 5) at its first step (attach certain, no kill)."""
    s = empty_state(9)
    place(s, 4, 4, L.CART)
    place(s, 4, 5, L.BLAST, cd19=l19, cd22=l22)
    t = quiet_tables(**rates)
    t.antigen_rates[L.AR_ATTACH] = ALWAYS
    t.antigen_rates[L.AR_ATTACH, 0] = 0
    return s, t


@pytest.mark.parametrize(("mode", "stripped"), [(L.TARGET_CD19, (190, 150)), (L.TARGET_CD22, (200, 140)),
                                                 (L.TARGET_BOTH, (190, 140))])
def test_an_engagement_strips_the_bound_antigen_which_the_cell_keeps_as_a_deficit(mode, stripped):
    s, t = engaging_pair(200, 150, R_TARGET_MODE=mode, **TROG)
    out = run(s, t, 1)
    b = out.traits[4, 5]
    assert (R.cd19_level(b[L.ANTIGEN]), R.cd22_level(b[L.ANTIGEN])) == stripped
    assert (R.cd19_level(b[L.DEFICIT]), R.cd22_level(b[L.DEFICIT])) == (200 - stripped[0], 150 - stripped[1])
    assert b[L.ROUTE] == L.ROUTE_DOWNREGULATION
    # the T cell carries what it took, 33 levels (the stripped share of the molecules) below the target's level
    taken = out.traits[4, 4, L.ANTIGEN]
    assert (R.cd19_level(taken), R.cd22_level(taken)) == tuple(
        level - 33 if level != left else 0 for level, left in zip((200, 150), stripped, strict=True))


def test_without_trogocytosis_an_engagement_takes_nothing():
    s, t = engaging_pair(200, 150)
    out = run(s, t, 3)
    assert out.traits[4, 5, L.ANTIGEN] == R.pack(200, 150) and out.traits[4, 5, L.DEFICIT] == 0
    assert out.traits[4, 5, L.ROUTE] == L.ROUTE_NONE and out.traits[4, 4, L.ANTIGEN] == 0


def test_a_stripped_cell_re_expresses_its_antigen_and_leaves_the_route():
    s = empty_state(9)
    place(s, 4, 4, L.BLAST, cd19=190)
    s.traits[4, 4, L.DEFICIT] = R.pack(10, 0)
    s.traits[4, 4, L.ROUTE] = L.ROUTE_DOWNREGULATION
    t = quiet_tables(R_RECOVER=ALWAYS)
    half = run(s.copy(), t, 4)
    assert half.traits[4, 4, L.ANTIGEN] == R.pack(194, 0) and half.traits[4, 4, L.DEFICIT] == R.pack(6, 0)
    assert half.traits[4, 4, L.ROUTE] == L.ROUTE_DOWNREGULATION
    out = run(s, t, 15)
    assert out.traits[4, 4, L.ANTIGEN] == R.pack(200, 0) and out.traits[4, 4, L.DEFICIT] == 0
    assert out.traits[4, 4, L.ROUTE] == L.ROUTE_NONE


def test_a_daughter_keeps_the_deficit_of_an_antigen_it_did_not_lose():
    s, t = dividing_blast(100, 150, R_LOSS=ALWAYS, R_TARGET_MODE=L.TARGET_BOTH)
    s.traits[4, 4, L.DEFICIT] = R.pack(20, 30)
    s.traits[4, 4, L.ROUTE] = L.ROUTE_DOWNREGULATION
    out = run(s, t, 1)
    where = out.cell == L.BLAST
    got = sorted(zip(out.traits[where, L.ANTIGEN].tolist(), out.traits[where, L.DEFICIT].tolist(),
                     out.traits[where, L.ROUTE].tolist(), strict=True))
    # the daughter lost CD19 (with its deficit) and keeps CD22 and its deficit: still down-regulated
    assert got == sorted([(R.pack(100, 150), R.pack(20, 30), L.ROUTE_DOWNREGULATION),
                          (R.pack(0, 150), R.pack(0, 30), L.ROUTE_DOWNREGULATION)])


def test_a_car_t_cell_carrying_antigen_is_killed_by_another_and_loses_it_as_it_sheds():
    def pair(antigen: int, **rates: int):
        s = empty_state(9)
        place(s, 4, 4, L.CART)
        place(s, 4, 5, L.CART, cd19=antigen)
        t = quiet_tables(**rates)
        t.antigen_rates[:] = ALWAYS
        t.antigen_rates[:, 0] = 0
        return s, t

    out = run(*pair(150), 2)
    assert out.events[L.EV_KILLED + L.CART] == 1 and (out.cell == L.CART).sum() == 1  # fratricide
    assert run(*pair(0), 4).events[L.EV_KILLED + L.CART] == 0
    s, t = pair(3, R_SHED=ALWAYS)
    t.antigen_rates[:] = 0  # no engagement: shedding alone
    out = run(s, t, 2)
    assert out.traits[4, 5, L.ANTIGEN] == R.pack(1, 0)
    assert run(s, t, 5).traits[4, 5, L.ANTIGEN] == 0


def test_trogocytosis_rates_follow_the_share_stripped_and_the_binder():
    from abm.errors import ParamError
    from abm.rates import LEVELS_PER_DECADE, stripped_share, trogocytosis_rates

    off = Params.default()
    assert stripped_share(off) == 0.0 and trogocytosis_rates(off) == (0, 0, 0, 0, 0)
    tight = Params({"cart.trogocytosis_fraction": 0.3, "product.affinity_kd_nM": 0.01})
    loose = tight.replace({"product.affinity_kd_nM": 10.0})  # K_D = cart.kd_ref_nM: half the bonds
    assert stripped_share(loose) == pytest.approx(stripped_share(tight) / 2 * (1 + 0.01 / 10), rel=1e-12)
    levels, frac, offset, recover, shed = trogocytosis_rates(tight)
    share = stripped_share(tight)
    assert levels + frac / ALWAYS == pytest.approx(-LEVELS_PER_DECADE * np.log10(1 - share), abs=1e-9)
    assert offset == round(-LEVELS_PER_DECADE * np.log10(share))
    assert trogocytosis_rates(loose)[0] < levels
    dt_h = tight.time.dt_min / 60
    assert recover / ALWAYS == pytest.approx(LEVELS_PER_DECADE * dt_h / tight.blast.antigen_recovery_h, abs=1 / ALWAYS)
    assert shed / ALWAYS == pytest.approx(LEVELS_PER_DECADE * np.log10(2) * dt_h / 12.0, abs=1 / ALWAYS)
    with pytest.raises(ParamError, match="blast.antigen_recovery_h"):
        trogocytosis_rates(tight.replace({"blast.antigen_recovery_h": 3.0, "time.dt_min": 10.0}))


def test_trogocytosis_down_regulates_window_blasts_and_slows_the_reservoir_s_killing():
    """A short run with strong trogocytosis: down-regulated blasts appear, the readout's stripped response,
    which scales the reservoir's killing, falls below 1 (it is exactly 1 without trogocytosis), and CAR-T
    cells carrying stripped antigen are killed by others (``cart_fratricide``; none without)."""
    p = Params({"grid.size": 64, "time.days": 4.0, "cart.trogocytosis_fraction": 0.5,
                "body.marrow_homing_rate_per_day": 50.0})
    seen = []
    model = MarrowModel(p, seed=2, backend="cpu", threads=1)
    model.run(after_step=lambda m: seen.append((m.readout.stripped_response, m.body.kill_scale)))
    df = model.datacollector.get_model_vars_dataframe()
    assert df["blasts_route_downregulation"].max() > 0
    assert min(r for r, _ in seen) < 1.0 and all(r == k for r, k in seen)
    off = MarrowModel(p.replace({"cart.trogocytosis_fraction": 0.0}), seed=2, backend="cpu", threads=1)
    off.run(after_step=lambda m: seen.append(m.readout.stripped_response))
    assert seen[-1] == 1.0 and off.datacollector.get_model_vars_dataframe()["blasts_route_downregulation"].max() == 0
    # CAR-T cells that carry stripped antigen are killed by others: the observable is the window's event count
    assert df["cart_fratricide"].iloc[-1] == model.state.events[L.EV_KILLED + L.CART] > 0
    assert off.datacollector.get_model_vars_dataframe()["cart_fratricide"].max() == 0


# -- masking: a blast transduced with the CAR in manufacturing -----------------------------------------------------
def test_a_masked_blast_never_binds():
    s = empty_state(8)
    s.tissue[:, 0] = L.PERIVASCULAR
    t = quiet_tables(R_TARGET_MODE=L.TARGET_CD19)
    traffic = Traffic(seed_quota=8 * ALWAYS, negative_threshold=ALWAYS, preexisting_threshold=0,
                      mutation_threshold=0, lineage_threshold=0)
    out = run(s, t, 1, traffic)
    masked = out.cell == L.BLAST
    assert masked.sum() > 0 and (out.traits[masked, L.ROUTE] == L.ROUTE_MASKING).all()
    out.cell[:, 1] = L.CART  # CAR-T cells beside every masked blast, certain to attach and kill any target
    out.traits[:, 1, :] = 0
    t.antigen_rates[:] = ALWAYS
    t.antigen_rates[:, 0] = 0
    after = run(out, t, 5)
    assert after.events[L.EV_KILLED + L.BLAST] == 0 and (after.traits[:, 1, L.TARGET] == 0).all()


def test_transduced_blasts_enter_the_reservoir_with_the_dose_and_home_as_masked():
    hour = 1.0 / 24.0
    b = body(**{"product.transduced_blasts": 10.0, "schedule.days": [0.0, 1.0],
                "schedule.fractions": [0.3, 0.7]})
    r = WindowReadout(10_000, 10_000, 10_000, 0, 0, 0.0, 0)
    b.advance(0.0, hour, r)
    assert 0 < b.y[RK] <= 5  # the first fraction's 3 cells, a step of small-number noise later
    for k in range(1, 30):
        b.advance(k * hour, hour, r)
    o = b.observe()
    assert o["reservoir_route_masking_cells"] == b.y[RK] > 0
    assert o["reservoir_target_neg_cells"] == pytest.approx(b.y[RM] + b.y[RN] + b.y[RL] + b.y[RK], rel=1e-12)
    *_, lineage = b.reseeding(hour)
    negative = b.y[RM] + b.y[RN] + b.y[RL] + b.y[RK]
    assert lineage / ALWAYS == pytest.approx((negative - b.y[RK]) / negative, rel=1e-6)
    assert body().y[RK] == 0.0


def test_the_cohort_draws_masked_products_at_their_prevalence():
    from abm.cohort import MASKING_PREVALENCE, sample_patient

    base = Params.default()
    profiles = [sample_patient(9, i, base) for i in range(3000)]
    count = sum(p["product.transduced_blasts"] for p in profiles)
    assert set(p["product.transduced_blasts"] for p in profiles) <= {0.0, 1.0}
    assert abs(count - 3000 * MASKING_PREVALENCE) < 3.3 * np.sqrt(3000 * MASKING_PREVALENCE)  # Poisson 99.9 %
