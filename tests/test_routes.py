"""Issue 28's escape routes, each in isolation: the route a blast carries (its STATE slot), how it gets it in the
window (pre-existing, mutation in a division, lineage switch, reseeding from the reservoir), the reservoir's route
compartments, and ``relapse_route``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import dividing_blast, empty_state, quiet_tables

import kernels
from abm.body import Body, WindowReadout
from abm.body.kinetics import RL, RM, RN, RP
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


@pytest.mark.parametrize(("preexisting", "mutation", "route"), [
    (ALWAYS, ALWAYS, L.ROUTE_PREEXISTING), (0, ALWAYS, L.ROUTE_MUTATION), (0, 0, L.ROUTE_LINEAGE)])
def test_a_negative_reservoir_blast_enters_with_the_route_the_thresholds_give(preexisting, mutation, route):
    s = empty_state(8)
    s.tissue[:, 0] = L.PERIVASCULAR
    t = quiet_tables(R_TARGET_MODE=L.TARGET_CD19)
    traffic = Traffic(seed_quota=8 * ALWAYS, negative_threshold=ALWAYS, preexisting_threshold=preexisting,
                      mutation_threshold=mutation)
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
    _, _, preexisting, mutation = b.reseeding(hour)
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
