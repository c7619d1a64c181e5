"""Issue 23's mechanisms of the body, each in isolation: antigen competition, the myeloid compartment, IL-1 and
the endothelial susceptibility of ICANS (abm/body/kinetics.py, abm/body/compartment.py).

They are declared off (0) by default until the issue-23/28 recalibration; these tests turn each on alone.
"""

from __future__ import annotations

import itertools
import math

import pytest

from abm.body import Body, WindowReadout
from abm.body.kinetics import MY
from abm.errors import SimulationError
from abm.params import Params

CAPACITY = 65_536
PORTALS = 10**9
HOUR = 1.0 / 24.0
ELIANA_CD19 = 0.68 * 1.05e10 * 30.0 + 6e9  # [cells]
# a product that expands ~1,000-fold; no therapy unless a test asks for it
BASE = {"cart.max_divisions": 13, "therapy.tocilizumab_grade": 0, "therapy.steroids_grade": 0}
MYELOID = {"myeloid.il6_pg_ml_per_day": 2000.0}


def make_body(**overrides) -> Body:
    return Body(Params({**BASE, **overrides}), CAPACITY, PORTALS)


def run(body: Body, cd19: float, days: float, t0: float = 0.0, dt: float = HOUR) -> list[dict]:
    """Advance with a constant body CD19+ load; the observables after each step."""
    r = WindowReadout(int(round(cd19 * body.window_share)), 0, 0, 0, 0, 0.0, 0)
    rows = []
    for i in range(int(round(days / dt))):
        body.advance(t0 + i * dt, dt, r)
        rows.append({"t": t0 + (i + 1) * dt, **body.observe()})
    return rows


def excess(rows: list[dict], il6_0: float = 2.0) -> list[float]:
    return [r["serum_il6_pg_ml"] - il6_0 for r in rows]


# -- myeloid compartment -------------------------------------------------------------------------
def test_myeloid_compartment_stays_at_rest_without_antigen():
    rows = run(make_body(**MYELOID), 0.0, 5.0)
    assert all(r["myeloid_activation"] == 0.0 for r in rows)
    assert max(abs(e) for e in excess(rows)) < 1e-9


def test_myeloid_activation_rises_with_car_t_activation_then_resolves_at_its_rate():
    body = make_body(**MYELOID, **{"myeloid.resolution_per_day": 0.7})
    on = run(body, ELIANA_CD19, 4.0)
    assert 0.05 < on[-1]["myeloid_activation"] < 1.0
    assert all(b["myeloid_activation"] >= a["myeloid_activation"] for a, b in itertools.pairwise(on))
    off = run(body, 0.0, 2.0, t0=4.0)  # antigen gone: no drive, first-order resolution
    day = round(1.0 / HOUR)
    assert off[2 * day - 1]["myeloid_activation"] / off[day - 1]["myeloid_activation"] == pytest.approx(
        math.exp(-0.7), rel=1e-6)


def test_killed_cells_activate_the_myeloid_compartment_without_any_car_t_activation():
    """The danger signal of pyroptotic targets alone (no antigen, no product): a constant body-wide kill flux F
    gives dY/dt = k_on D/(D+1)(1-Y) - k_off Y with D = F / K_K, so Y tends to its closed-form steady state;
    without the drive (K_K = 0) the same kills leave it at rest."""
    k_on, k_off, half = 2.0, 0.7, 1e10
    body = make_body(**MYELOID, **{"myeloid.half_drive_kills_per_day": half, "myeloid.activation_per_day": k_on,
                                   "myeloid.resolution_per_day": k_off, "product.dose_per_kg": 1e4})
    flux = 3e10  # cells a day, body-wide
    r = WindowReadout(0, 0, 0, 0, 0, 0.0, 0, kills_per_day=flux * body.window_share)
    for i in range(24 * 10):
        body.advance(i * HOUR, HOUR, r)
    d = flux / half
    steady = k_on * d / (d + 1) / (k_on * d / (d + 1) + k_off)
    assert body.y[MY] == pytest.approx(steady, rel=1e-3)
    assert body.observe()["serum_il6_pg_ml"] > 2.0 + 0.5 * 2000.0 * steady / body.k_el
    rest = make_body(**MYELOID, **{"product.dose_per_kg": 1e4})
    for i in range(24 * 10):
        rest.advance(i * HOUR, HOUR, r)
    assert rest.y[MY] == 0.0


def test_the_window_reports_its_kills_a_day_over_the_coupling_interval():
    from abm.model import MarrowModel
    from kernels import layout as L

    model = MarrowModel(seed=3, backend="cpu", **{"grid.size": 32})
    assert model.readout.kills_per_day == 0.0  # the first readout has no interval
    model.lattice._row_events[0, L.EV_KILLED + L.BLAST] += 9  # as if a step had counted these kills
    model.lattice._row_events[1, L.EV_KILLED + L.BCELL] += 3
    interval = model.coupling_steps * model.dt_min / 1440.0
    assert model.read_window().kills_per_day == pytest.approx(12 / interval, rel=1e-12)


def test_myeloid_il6_adds_to_serum_il6_in_proportion_to_the_monocyte_count():
    only_myeloid = {**MYELOID, "serum.il6_production_pg_ml_per_day": 0.0}
    low = excess(run(make_body(**only_myeloid), ELIANA_CD19, 4.0))
    high = excess(run(make_body(**only_myeloid, **{"patient.monocytes_per_nl": 0.8}), ELIANA_CD19, 4.0))
    none = excess(run(make_body(**{**only_myeloid, "myeloid.il6_pg_ml_per_day": 0.0}), ELIANA_CD19, 4.0))
    assert max(abs(e) for e in none) < 1e-9 and low[-1] > 10.0
    assert high[-1] / low[-1] == pytest.approx(2.0, rel=1e-6)  # linear in the myeloid capacity


def test_tocilizumab_blocks_il6_signalling_not_myeloid_activation_and_raises_serum_il6():
    untreated = run(make_body(**MYELOID), ELIANA_CD19, 8.0)
    treated = run(make_body(**MYELOID, **{"therapy.tocilizumab_grade": 1}), ELIANA_CD19, 8.0)
    assert treated[-1]["tocilizumab_doses"] > 0
    assert [r["myeloid_activation"] for r in treated] == [r["myeloid_activation"] for r in untreated]
    assert treated[-1]["serum_il6_pg_ml"] > untreated[-1]["serum_il6_pg_ml"]
    assert treated[-1]["il6_signal_pg_ml"] < untreated[-1]["il6_signal_pg_ml"]


def test_steroids_cut_myeloid_activation():
    untreated = run(make_body(**MYELOID), ELIANA_CD19, 8.0)
    treated = run(make_body(**MYELOID, **{"therapy.steroids_grade": 1}), ELIANA_CD19, 8.0)
    assert any(r["steroids_on"] for r in treated)
    assert treated[-1]["myeloid_activation"] < untreated[-1]["myeloid_activation"]


# -- ICANS: myeloid IL-1 and the endothelium -------------------------------------------------------
def test_myeloid_il1_drives_icans_without_any_il6():
    no_il6 = {"serum.il6_production_pg_ml_per_day": 0.0, "myeloid.il1_icans_pg_ml": 3000.0}
    rows = run(make_body(**no_il6), ELIANA_CD19, 6.0)
    assert max(abs(e) for e in excess(rows)) < 1e-9
    assert rows[-1]["icans_effect_pg_ml"] > 100.0
    silent = run(make_body(**{**no_il6, "myeloid.il1_icans_pg_ml": 0.0}), ELIANA_CD19, 6.0)
    assert max(r["icans_effect_pg_ml"] for r in silent) < 1e-9


@pytest.mark.parametrize("sensitivity", [0.5, 1.0, 2.0])
def test_endothelial_susceptibility_scales_the_icans_drive_by_the_ang2_ang1_ratio(sensitivity):
    on = {"icans.endothelial_sensitivity": sensitivity}
    ref = run(make_body(**on), ELIANA_CD19, 6.0)
    high = run(make_body(**on, **{"patient.ang2_ang1_ratio": 3.0}), ELIANA_CD19, 6.0)
    assert ref[-1]["icans_effect_pg_ml"] > 1.0
    assert [r["serum_il6_pg_ml"] for r in high] == [r["serum_il6_pg_ml"] for r in ref]  # CRS untouched
    assert high[-1]["icans_effect_pg_ml"] / ref[-1]["icans_effect_pg_ml"] == pytest.approx(3.0**sensitivity,
                                                                                           rel=1e-9)
    off = run(make_body(**{"patient.ang2_ang1_ratio": 3.0}), ELIANA_CD19, 6.0)  # sensitivity 0: all alike
    base = run(make_body(), ELIANA_CD19, 6.0)
    assert [r["icans_effect_pg_ml"] for r in off] == [r["icans_effect_pg_ml"] for r in base]


# -- antigen competition -------------------------------------------------------------------------
def peak(cd19: float, dose_per_kg: float, targets_per_cart: float) -> float:
    rows = run(make_body(**{"product.dose_per_kg": dose_per_kg, "body.targets_per_cart": targets_per_cart}),
               cd19, 30.0, dt=0.25)
    return max(r["body_cart_cells"] for r in rows)


def test_competition_makes_the_peak_follow_the_antigen_load_more_than_the_dose():
    """Ten-fold dose and ten-fold load: without competition the dose sets the peak (x10) and the load barely
    (x1.1, stimulation is saturated); the more targets each CAR-T cell ties up, the more the load and the less
    the dose sets it (measured: c = 10 gives x4.4 / x4.4, c = 50 x2.7 / x5.8)."""
    dose, load = [], []
    for c in (0.0, 10.0, 50.0):
        full = peak(ELIANA_CD19, 3e6, c)
        dose.append(full / peak(ELIANA_CD19, 3e5, c))
        load.append(full / peak(ELIANA_CD19 / 10.0, 3e6, c))
    assert dose[0] == pytest.approx(10.0, rel=1e-6) and load[0] < 1.2
    assert dose[0] > dose[1] > dose[2] and dose[2] < 3.0
    assert load[0] < load[1] < load[2] and load[2] > 5.0


# -- dilution ------------------------------------------------------------------------------------------
def test_diluted_il6_of_the_same_cells_falls_with_weight():
    """Same activated cells (the dose per patient fixed), twice the weight: half the T-cell IL-6 production."""
    cells = {"serum.myeloid_amplification": 0.0, "serum.diluted_by_weight": True}
    light = run(make_body(**cells, **{"patient.weight_kg": 30.0, "product.dose_per_kg": 3e6}), ELIANA_CD19, 3.0)
    heavy = run(make_body(**cells, **{"patient.weight_kg": 60.0, "product.dose_per_kg": 1.5e6}), ELIANA_CD19, 3.0)
    assert excess(heavy)[-1] / excess(light)[-1] == pytest.approx(0.5, rel=1e-3)
    undiluted = run(make_body(**{**cells, "serum.diluted_by_weight": False, "patient.weight_kg": 60.0,
                                 "product.dose_per_kg": 1.5e6}), ELIANA_CD19, 3.0)
    assert excess(undiluted)[-1] == pytest.approx(excess(light)[-1], rel=1e-3)


# -- the antigen the CAR responds to ---------------------------------------------------------------------
def test_mean_response_follows_density_affinity_and_costimulation():
    from abm.rates import mean_response, response_at

    point = Params({"patient.cd19_sd_log10": 0.0, "patient.cd19_median_molecules": 3000.0})
    assert mean_response(point) == pytest.approx(float(response_at(point, 3000.0)), rel=1e-12)
    dim, bright = (mean_response(Params({"patient.cd19_median_molecules": m})) for m in (1500.0, 20000.0))
    tight, loose = (mean_response(Params({"patient.cd19_median_molecules": 3000.0, "product.affinity_kd_nM": kd}))
                    for kd in (0.33, 14.3))
    cd28 = mean_response(Params({"patient.cd19_median_molecules": 3000.0, "product.costimulation": "CD28"}))
    assert dim < bright < 1.0 and loose < tight < cd28


def test_signal_weighted_load_stimulates_less_when_the_car_responds_less():
    def final(signal_share: float, mode: str) -> dict:
        body = make_body(**{"body.antigen_signal": mode})
        cells = int(round(ELIANA_CD19 * body.window_share))
        r = WindowReadout(cells, 0, 0, 0, 0, 0.0, 0, target_signal=signal_share * cells)
        for i in range(5 * 24):
            body.advance(i * HOUR, HOUR, r)
        return body.observe()

    full, dim = final(1.0, "response"), final(0.02, "response")
    assert final(0.02, "count") == final(1.0, "count")  # 'count' ignores the signal
    assert full == pytest.approx(final(1.0, "count"), rel=1e-12)  # a full response is the count
    assert dim["body_cart_cells"] < full["body_cart_cells"] and dim["serum_il6_pg_ml"] < full["serum_il6_pg_ml"]
    with pytest.raises(SimulationError, match="target_signal"):
        make_body(**{"body.antigen_signal": "response"}).advance(0.0, HOUR, WindowReadout(1, 0, 0, 0, 0, 0.0, 0))


def test_window_target_signal_is_the_response_weighted_count_of_its_target_cells():
    from abm.model import MarrowModel
    from abm.rates import antigen_response, target_levels
    from kernels import layout as L

    model = MarrowModel(Params({"grid.size": 32, "time.days": 0.1}), seed=3, backend="python")
    r = model.read_window()
    s = model.state
    levels = target_levels(s.traits[..., L.ANTIGEN], model.target_mode)
    positive = (levels > 0) & ((s.cell == L.BLAST) | (s.cell == L.BCELL))
    assert r.cd19_cells == int(positive.sum()) > 0
    assert r.target_signal == pytest.approx(float(antigen_response(model.params)[levels[positive]].sum()), rel=1e-12)
    assert 0.0 < r.target_signal < r.cd19_cells


# -- homeostatic cytokines after lymphodepletion --------------------------------------------------------
def test_surge_without_car_t_fades_with_its_half_life():
    body = make_body(**{"lymphodepletion.boost_shape": "consumed", "lymphodepletion.cytokine_half_life_days": 4.0,
                        "lymphodepletion.consumption_per_day": 0.0, "lymphodepletion.proliferation_boost": 3.0})
    rows = run(body, 0.0, 8.0)
    assert rows[round(4.0 / HOUR) - 1]["homeostatic_boost"] == pytest.approx(1.0 + 2.0 * 0.5, rel=1e-9)
    assert rows[-1]["homeostatic_boost"] == pytest.approx(1.0 + 2.0 * 0.25, rel=1e-9)


def test_a_larger_dose_uses_the_surge_up_sooner_so_expansion_grows_less_than_the_dose():
    consumed = {"lymphodepletion.boost_shape": "consumed", "lymphodepletion.consumption_per_day": 1.0,
                "lymphodepletion.proliferation_boost": 2.0}

    def day7(dose: float, **extra) -> dict:
        return run(make_body(**{"product.dose_per_kg": dose, **extra}), ELIANA_CD19, 7.0)[-1]

    low, high = day7(3e5, **consumed), day7(3e6, **consumed)
    assert high["homeostatic_boost"] < low["homeostatic_boost"] < 2.0
    assert 1.0 < high["body_cart_cells"] / low["body_cart_cells"] < 9.0
    step_ratio = day7(3e6)["body_cart_cells"] / day7(3e5)["body_cart_cells"]
    assert step_ratio == pytest.approx(10.0, rel=1e-6)  # the fixed boost: proportional


def test_surge_survives_a_checkpoint():
    on = {"lymphodepletion.boost_shape": "consumed"}
    body = make_body(**on)
    run(body, ELIANA_CD19, 3.0)
    copy = make_body(**on)
    copy.restore(body.state())
    assert run(copy, ELIANA_CD19, 2.0, t0=3.0) == run(body, ELIANA_CD19, 2.0, t0=3.0)


def test_window_proliferation_follows_the_fading_surge_on_its_grid():
    from abm.model import MarrowModel

    model = MarrowModel(Params({"grid.size": 32, "time.days": 2.0, "lymphodepletion.boost_shape": "consumed",
                                "lymphodepletion.cytokine_half_life_days": 1.0}), seed=3, backend="python")
    model.run()
    boost = model.body.homeostatic_boost(model.day)
    assert 1.0 < boost < 1.5 * 0.3 + 1.0  # about a quarter of the surge is left after two half-lives
    factor = model.factors[0]  # set at the last coupling, on the 1/128 grid
    assert factor * 128.0 == round(factor * 128.0) and abs(factor - boost) < 1.0 / 64.0


# -- binding kinetics --------------------------------------------------------------------------------------
FMC63, CAT = 0.33, 14.3  # K_D [nM] (Ghorashian 2019)


def test_off_rate_is_kd_times_kon_and_proofreading_is_off_by_default():
    from abm.rates import off_rate_per_s, signalling_fraction

    p = Params({"product.affinity_kd_nM": CAT, "product.kon_per_M_s": 2e5})
    assert off_rate_per_s(p) == pytest.approx(14.3e-9 * 2e5, rel=1e-12)
    assert signalling_fraction(p) == 1.0


def test_proofreading_penalises_fast_off_rates_only():
    from abm.rates import signalling_fraction

    on = {"cart.proofreading_steps": 2.67, "cart.proofreading_rate_per_s": 0.01}
    tight, loose = (signalling_fraction(Params({**on, "product.affinity_kd_nM": kd})) for kd in (FMC63, CAT))
    k_off = CAT * 1e-9 * 2e5
    assert loose == pytest.approx((0.01 / (0.01 + k_off)) ** 2.67, rel=1e-12)
    assert loose < tight < 1.0 and tight > 0.98  # FMC63's bonds outlast every step; CAT's often do not


def test_a_faster_off_rate_shortens_the_dwell_and_weaker_signalling_kills_less_and_exhausts_later():
    from abm.rates import build_tables, detach_rate_per_h, exhaustion_engagements
    from kernels import layout as L

    dwell = {"cart.detach_per_unbinding": 0.1}
    fast, slow = (Params({**dwell, "product.affinity_kd_nM": kd}) for kd in (CAT, FMC63))
    assert detach_rate_per_h(fast) > detach_rate_per_h(slow) > Params.default()["cart.detach_rate_per_h"]
    assert 1.0 / detach_rate_per_h(fast) < 1.0 / detach_rate_per_h(slow)  # mean dwell without a kill
    assert build_tables(fast, 1).rates[L.R_DETACH] > build_tables(slow, 1).rates[L.R_DETACH]
    assert detach_rate_per_h(Params({"product.affinity_kd_nM": CAT})) == Params.default()["cart.detach_rate_per_h"]
    proof = {"cart.proofreading_steps": 2.67, "cart.proofreading_rate_per_s": 0.01, "product.affinity_kd_nM": CAT}
    weak, full = Params(proof), Params({"product.affinity_kd_nM": CAT})
    assert (build_tables(weak, 1).antigen_rates[L.AR_KILL] <= build_tables(full, 1).antigen_rates[L.AR_KILL]).all()
    assert build_tables(weak, 1).antigen_rates[L.AR_KILL, 200] < build_tables(full, 1).antigen_rates[L.AR_KILL, 200]
    assert (build_tables(weak, 1).antigen_rates[L.AR_ATTACH] == build_tables(full, 1).antigen_rates[L.AR_ATTACH]).all()
    assert exhaustion_engagements(weak) > exhaustion_engagements(full)


def test_weaker_signalling_releases_less_il6_per_activated_cell():
    proof = {"cart.proofreading_steps": 2.67, "cart.proofreading_rate_per_s": 0.01, "product.affinity_kd_nM": CAT}
    weak = run(make_body(**proof), ELIANA_CD19, 3.0)
    full = run(make_body(**{"product.affinity_kd_nM": CAT}), ELIANA_CD19, 3.0)
    assert [r["body_cart_cells"] for r in weak] == [r["body_cart_cells"] for r in full]  # expansion alike
    assert 0.0 < excess(weak)[-1] < excess(full)[-1]


# -- CRP: the marker of IL-6 signalling -----------------------------------------------------------------------
def test_crp_rises_with_il6_signalling_and_falls_under_tocilizumab_at_its_half_life():
    untreated = run(make_body(**MYELOID), ELIANA_CD19, 8.0)
    treated = run(make_body(**MYELOID, **{"therapy.tocilizumab_grade": 1, "therapy.tocilizumab_blockade": 1.0}),
                  ELIANA_CD19, 8.0)
    assert run(make_body(), 0.0, 2.0)[-1]["crp_mg_l"] == pytest.approx(1.0, rel=1e-9)  # no signal: baseline
    assert untreated[-1]["crp_mg_l"] > 50.0
    first = next(i for i, r in enumerate(treated) if r["tocilizumab_doses"] > 0)
    assert treated[-1]["serum_il6_pg_ml"] > untreated[-1]["serum_il6_pg_ml"]  # IL-6 rises, its signal stops...
    day = round(1.0 / HOUR)  # ... and CRP decays to baseline with its 19-h half-life
    above = [treated[first + k * day]["crp_mg_l"] - 1.0 for k in (1, 2)]
    assert above[1] / above[0] == pytest.approx(0.5 ** (24.0 / 19.0), rel=1e-6)
    assert treated[-1]["crp_mg_l"] < untreated[-1]["crp_mg_l"]


def test_crp_survives_a_checkpoint():
    body = make_body(**MYELOID)
    run(body, ELIANA_CD19, 3.0)
    copy = make_body(**MYELOID)
    copy.restore(body.state())
    assert copy.crp == body.crp > 1.0
