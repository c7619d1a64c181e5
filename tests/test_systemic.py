"""Unit tests of the body compartment (abm/body/) with synthetic window readouts; no lattice."""

import itertools
import json
import math

import numpy as np
import pytest

from abm.body import (
    IL6,
    MT,
    Body,
    WindowReadout,
    astct_crs_grade,
    crs_surrogates,
    icans_surrogate,
)
from abm.body.kinetics import MY, NEURO, RESERVOIR, RK, RL, RM, RN, RP, derivative
from abm.errors import ParamError, SimulationError
from abm.params import Params
from kernels.rng import TWO32

CAPACITY = 65_536  # a 256 x 256 window
PORTALS = 10**9  # no entry-quota guard in these tests
HOUR = 1.0 / 24.0
ELIANA_CD19 = 0.68 * 1.05e10 * 30.0 + 6e9  # blasts of a 68 % marrow + B cells, 30 kg [cells]


# a product that expands ~1,000-fold in an ELIANA-like patient (Stein 2019), whatever the calibrated default
EXPANDING = {"cart.max_divisions": 13}


# a patient whose CRS reaches tocilizumab and steroids (the uncalibrated cytokine response)
SEVERE = {"serum.il6_production_pg_ml_per_day": 80.0, "serum.myeloid_amplification": 9.0,
          "serum.il6_division_decay": 1.0}
# the uncalibrated ICANS response, which such a patient reaches
UNCALIBRATED_ICANS = {"icans.ice_half_il6_pg_ml": 1500.0, "icans.ice_hill": 2.0, "icans.delay_days": 2.0}


def make_body(**overrides) -> Body:
    return Body(Params({**EXPANDING, **overrides}), CAPACITY, PORTALS)


def readout(body: Body, body_cd19_cells: float) -> WindowReadout:
    """A window readout whose CD19+ count stands for ``body_cd19_cells`` in the whole marrow."""
    return WindowReadout(int(round(body_cd19_cells * body.window_share)), 0, 0, 0, 0, 0.0, 0)


def run_constant(body: Body, cd19: float, days: float, dt: float = HOUR, t0: float = 0.0) -> list[dict]:
    rows = []
    steps = int(round(days / dt))
    r = readout(body, cd19)
    for i in range(steps):
        body.advance(t0 + i * dt, dt, r)
        rows.append({"t": t0 + (i + 1) * dt, **body.observe()})
    return rows


def run_toy_killing(body: Body, days: float, kill_per_effector_day: float = 1.0, dt: float = HOUR) -> list[dict]:
    """Body coupled to a toy marrow: CD19+ cells grow 6.5 %/d and are killed by body effectors.

    kill rate [cells/d] = kappa * E * A / (A + 1e10): each effector kills ``kappa`` targets a day when
    targets abound (SCIENCE.md: 1-20 kills per T cell per day in the marrow; most body effectors are not
    in the marrow, hence kappa ~ 1).
    """
    blasts, bcells = 0.68 * 1.05e10 * 30.0, 6e9
    rows = []
    for i in range(int(round(days / dt))):
        r = readout(body, blasts + bcells)
        r.blasts = int(round(blasts * body.window_share))  # seeds the reservoir at the first step
        body.advance(i * dt, dt, r)
        effectors = body.effectors_blood + body.effectors_tissue
        total = blasts + bcells
        killed = kill_per_effector_day * effectors * total / (total + 1e10) * dt
        survive = 1.0 - min(killed / total, 1.0) if total > 0 else 1.0
        blasts *= survive * math.exp(0.065 * dt)
        bcells *= survive
        rows.append({"t": (i + 1) * dt, "cd19": blasts + bcells, **body.observe()})
    return rows


# -- infusion and mass balance ------------------------------------------------------------
def test_infuse_fractionated_schedule_adds_exactly_the_dose_on_each_day():
    body = make_body(**{"schedule.days": [0.0, 1.0, 2.0], "schedule.fractions": [0.1, 0.3, 0.6],
                        "cart.death_rate_per_day": 0.0, "cart.memory_death_rate_per_day": 0.0})
    dose = 3e6 * 30.0
    rows = run_constant(body, 0.0, 3.0)
    for day, cumulative in ((1.0, 0.1), (2.0, 0.4), (3.0, 1.0)):
        row = rows[int(round(day / HOUR)) - 1]  # state at the end of the day, before the next infusion
        assert row["cart_infused_cells"] == pytest.approx(cumulative * dose, rel=1e-12)
        # no death, no antigen: the pool is exactly what was infused (exchange and conversion conserve cells)
        assert row["body_cart_cells"] == pytest.approx(cumulative * dose, rel=1e-9)


def test_infuse_splits_memory_fraction_and_fills_blood_first():
    body = make_body(**{"cart.memory_fraction": 0.3})
    body.advance(0.0, 1e-9, readout(body, 0.0))
    o = body.observe()
    dose = 3e6 * 30.0
    assert o["body_cart_memory_cells"] == pytest.approx(0.3 * dose, rel=1e-6)
    assert o["blood_cart_per_ul"] == pytest.approx(dose / (70.0 * 30.0 * 1000.0), rel=1e-6)


def test_blood_settles_at_blood_fraction_of_the_pool():
    body = make_body(**{"cart.death_rate_per_day": 0.0, "cart.memory_death_rate_per_day": 0.0,
                        "body.blood_fraction": 0.05})
    rows = run_constant(body, 0.0, 40.0, dt=0.25)
    blood_cells = rows[-1]["blood_cart_per_ul"] * 70.0 * 30.0 * 1000.0
    assert blood_cells / rows[-1]["body_cart_cells"] == pytest.approx(0.05, rel=1e-3)


def test_entry_quota_feeds_the_window_towards_its_share_of_marrow_car_t():
    from dataclasses import replace

    body = make_body(**{"body.marrow_share": 0.2})
    r = readout(body, 0.0)
    body.advance(0.0, 1.0, r)  # infuse, and let a day of distribution to tissue pass
    dt = 2.0 / 1440.0
    quota = body.advance(1.0, dt, r)
    target = 0.2 * (body.effectors_tissue + body.y[MT]) * body.window_share  # body.marrow_share = 0.2
    assert target > 0
    expected = 2.0 * (target - r.cart) * dt  # body.marrow_homing_rate_per_day = 2
    assert quota / TWO32 == pytest.approx(expected, abs=1 / TWO32)
    full = replace(r, cart=int(target) + 1)
    assert body.advance(1.0 + dt, dt, full) == 0  # a window at or above its share takes no one in


def test_entry_quota_beyond_portals_raises():
    body = Body(Params(), CAPACITY, 1)
    with pytest.raises(SimulationError, match="perivascular"):
        body.advance(0.0, 1.0, readout(body, 0.0))


# -- expansion and contraction --------------------------------------------------------------
def test_expand_with_antigen_and_not_without():
    with_antigen = run_constant(make_body(), ELIANA_CD19, 7.0)[-1]["body_cart_cells"]
    without = run_constant(make_body(), 0.0, 7.0)[-1]["body_cart_cells"]
    dose = 3e6 * 30.0
    assert with_antigen > 300 * dose
    assert without < dose


def test_cd28_expands_faster_and_keeps_less_memory():
    cd28 = run_constant(make_body(**{"product.costimulation": "CD28"}), ELIANA_CD19, 5.0)[-1]
    bb = run_constant(make_body(), ELIANA_CD19, 5.0)[-1]
    assert cd28["body_cart_cells"] > bb["body_cart_cells"]
    assert (cd28["body_cart_memory_cells"] / cd28["body_cart_cells"]
            < bb["body_cart_memory_cells"] / bb["body_cart_cells"])


def test_contraction_is_biphasic_with_the_parameter_half_lives():
    """No antigen: effectors decay at d_E + mu, memory at d_M (RK4 error far below 0.1 %)."""
    p = Params()
    body = make_body()
    rows = run_constant(body, 0.0, 400.0, dt=1.0)
    fast = math.log(2) / (p.cart.death_rate_per_day + p.cart.memory_conversion_per_day)
    slow = math.log(2) / p.cart.memory_death_rate_per_day

    def half_life(key_fn, a, b):
        ya, yb = key_fn(rows[a - 1]), key_fn(rows[b - 1])
        return (b - a) * math.log(2) / math.log(ya / yb)

    effectors = lambda r: r["body_cart_cells"] - r["body_cart_memory_cells"]  # noqa: E731
    assert half_life(effectors, 5, 25) == pytest.approx(fast, rel=1e-3)
    assert half_life(lambda r: r["body_cart_memory_cells"], 250, 400) == pytest.approx(slow, rel=1e-3)
    assert abs(fast - 4.3) < 0.5 and abs(slow - 220) < 5  # the SCIENCE.md phases (Stein 2019)


def test_peak_day_and_fold_expansion_for_an_eliana_like_patient():
    rows = run_toy_killing(make_body(), 40.0)
    peak = max(rows, key=lambda r: r["blood_cart_per_ul"])
    assert 7.0 <= peak["t"] <= 16.0
    fold = max(r["body_cart_cells"] for r in rows) / (3e6 * 30.0)
    assert 300 <= fold <= 30_000  # order 10^3 (Stein 2019: ~3,900, wide spread)
    assert rows[-1]["cd19"] < 1e3  # antigen cleared, B-cell aplasia


def test_division_limit_ends_expansion_under_persistent_antigen():
    """Antigen that is never cleared: the pool peaks and contracts, the later and higher the more divisions.

    Without a limit (60 divisions) it grows all along, the unbounded expansion that stopped an untreated
    virtual patient on the traffic guard.
    """
    def run(divisions, days=40.0):
        return run_constant(make_body(**{"cart.max_divisions": divisions, "therapy.steroids_grade": 0,
                                         "therapy.tocilizumab_grade": 0}), ELIANA_CD19, days, dt=0.25)

    def peak(rows):
        return max(rows, key=lambda r: r["body_cart_cells"])

    few, more, endless = run(6), run(9), run(60, days=12.0)
    assert 3.0 <= peak(few)["t"] < peak(more)["t"] <= 14.0
    dose = 3e6 * 30.0
    for rows, divisions in ((few, 6), (more, 9)):
        assert peak(rows)["body_cart_cells"] < 2**divisions * dose  # at most 2^K-fold (memory recall aside)
        assert rows[-1]["body_cart_cells"] < 0.1 * peak(rows)["body_cart_cells"]
        assert rows[-1]["body_cart_terminal_fraction"] > 0.9
    assert peak(few)["body_cart_cells"] < peak(more)["body_cart_cells"]
    assert peak(endless)["t"] == endless[-1]["t"]  # still growing at day 12


def test_recalled_memory_starts_a_fresh_program_and_re_expands():
    """After a first expansion and contraction, returning antigen re-expands the pool from memory."""
    body = make_body(**{"therapy.steroids_grade": 0, "therapy.tocilizumab_grade": 0})
    first = run_constant(body, ELIANA_CD19, 20.0, dt=0.25)
    rest = run_constant(body, 0.0, 60.0, dt=0.25, t0=20.0)
    again = run_constant(body, 1e10, 20.0, dt=0.25, t0=80.0)
    low = rest[-1]["body_cart_cells"]
    assert low < 0.1 * max(r["body_cart_cells"] for r in first)
    assert max(r["body_cart_cells"] for r in again) > 10 * low


def test_no_randomness_same_inputs_same_outputs():
    a = run_toy_killing(make_body(), 10.0)
    b = run_toy_killing(make_body(), 10.0)
    assert a == b


# -- residual disease outside the window ------------------------------------------------------------
def window_with_blasts(body: Body, blasts: int) -> WindowReadout:
    return WindowReadout(blasts, blasts, blasts, 0, 0, 0.0, 0)


NEGATIVE = {"relapse.reservoir_fraction": 0.02, "patient.cd19_negative_fraction": 0.01}


def test_reservoir_starts_as_its_fraction_of_the_body_blasts_with_the_patient_negative_share():
    """The window's blasts scale to the body's; the patient's CD19-negative fraction splits them."""
    body = make_body(**NEGATIVE)
    body.advance(0.0, HOUR, window_with_blasts(body, 10_000))
    obs = body.observe()  # an hour of growth later (0.3 %)
    assert obs["reservoir_target_pos_cells"] == pytest.approx(0.02 * 9_900 / body.window_share, rel=5e-3)
    assert obs["reservoir_target_neg_cells"] == pytest.approx(0.02 * 100 / body.window_share, rel=5e-3)
    # only the first readout seeds it, and a checkpoint keeps that
    copy = make_body(**NEGATIVE)
    copy.restore(json.loads(json.dumps(body.state())))
    copy.advance(HOUR, HOUR, window_with_blasts(copy, 50_000))
    body.advance(HOUR, HOUR, window_with_blasts(body, 50_000))
    assert copy.observe() == body.observe()
    assert body.observe()["reservoir_target_pos_cells"] < 1.01 * obs["reservoir_target_pos_cells"]


@pytest.mark.parametrize(("target", "share"), [("CD19", 0.01), ("CD22", 0.2), ("CD19/CD22", 0.002)])
def test_reservoir_negative_share_is_that_of_the_product_target(target, share):
    """A dual CAR misses only blasts negative for both antigens, drawn independently in the marrow."""
    body = make_body(**NEGATIVE, **{"product.target": target, "patient.cd22_negative_fraction": 0.2})
    body.schedule = []
    body.advance(0.0, 1e-9, window_with_blasts(body, 10_000))
    obs = body.observe()
    total = obs["reservoir_target_pos_cells"] + obs["reservoir_target_neg_cells"]
    assert obs["reservoir_target_neg_cells"] / total == pytest.approx(share, rel=1e-6)


@pytest.mark.statistical
def test_a_small_pre_existing_negative_subclone_seeds_whole_founders_with_its_expected_number():
    """A subclone of 1e-7 of the blasts, which the window cannot hold, puts ~60 founders in the reservoir:
    rounded at random to whole cells with its mean (200 bodies, 4 SE of the mean)."""
    p = {"relapse.reservoir_fraction": 0.002, "patient.cd19_negative_fraction": 1e-7}
    founders = []
    for seed in range(200):
        body = Body(Params({**EXPANDING, **p}), CAPACITY, PORTALS, seed)
        body.schedule = []
        body.advance(0.0, 1e-9, window_with_blasts(body, 60_000))
        founders.append(body.observe()["reservoir_target_neg_cells"])
    expected = 0.002 * 60_000 / body.window_share * 1e-7
    assert 10 < expected < 100 and all(f == int(f) for f in founders)
    assert np.mean(founders) == pytest.approx(expected, abs=4 * math.sqrt(expected / 200))


def test_reservoir_without_car_t_grows_logistically_and_turns_target_negative_by_loss():
    p = Params().replace({"relapse.reseed_rate_per_day": 0.0, "blast.cd19_loss_per_division": 1e-3})
    body = Body(p, CAPACITY, PORTALS)
    body.schedule = []  # no infusion
    rows = []
    body.advance(0.0, 1.0, window_with_blasts(body, 1_000))
    for day in range(1, 400):
        body.advance(float(day), 1.0, window_with_blasts(body, 1_000))
        rows.append(body.observe())
    growth = p.blast.division_rate_per_day - p.blast.death_rate_per_day
    total = [r["reservoir_target_pos_cells"] + r["reservoir_target_neg_cells"] for r in rows]
    assert total[10] / total[0] == pytest.approx(math.exp(10 * growth), rel=0.02)  # early: exponential
    room = p.relapse.reservoir_fraction * p.patient.marrow_cells_per_kg * p.patient.weight_kg
    assert total[-1] == pytest.approx(room, rel=1e-3)  # late: its room
    negative = rows[-1]["reservoir_target_neg_cells"] / total[-1]
    assert 0.0 < negative < 1.0  # loss makes target-negative blasts, which then grow like the rest


def test_target_negative_reservoir_fed_a_few_cells_a_day_forms_from_surviving_founders():
    """Loss feeding ``R_-`` by a few cells a day (the calibrated CD19 loss) makes whole founders.

    (Before the small-number reservoir, every step's fraction of a cell was taken for extinction and ``R_-``
    stayed 0 for good.) The same seed gives the same reservoir; another seed, another one.
    """
    p = Params().replace({"relapse.reseed_rate_per_day": 0.0, "blast.cd19_loss_per_division": 2e-6})
    negative = []
    for seed in (0, 0, 1):
        body = Body(p, CAPACITY, PORTALS, seed)
        body.schedule = []  # no infusion
        for k in range(10 * 24):
            body.advance(k * HOUR, HOUR, window_with_blasts(body, 1_000))
        negative.append(body.observe()["reservoir_target_neg_cells"])
    assert negative[0] == negative[1] and negative[0] != negative[2]
    assert all(n > 0 and n == int(n) for n in negative)  # whole cells, below STOCHASTIC_CELLS
    # founders arrive at loss x division rate x R+ a day (~19 here); about half survive and grow a little
    founders = p.blast.division_rate_per_day * 2e-6 * body.observe()["reservoir_target_pos_cells"] * 10
    assert founders > 50 and 0.2 * founders < min(negative) and max(negative) < 5 * founders


def bare_reservoir(seed: int, **overrides) -> Body:
    return Body(Params().replace(overrides), CAPACITY, PORTALS, seed)


@pytest.mark.parametrize("route", [RM, RK], ids=["mutation", "masking"])
def test_a_one_cell_reservoir_clone_survives_with_the_birth_death_probability(route):
    """A single target-negative blast (one that lost the target, or a masked one from the product):
    P(alive at t) = (b - d) / (b - d exp(-(b - d) t)) for a linear birth-death process (births b = division
    rate, deaths d = death + homing); 1000 clones, 4 SE."""
    body = bare_reservoir(7)
    b = body.blast_division
    d = b - body.blast_growth + body.reseed
    t, h = 40.0, 0.05
    alive = 0
    for _ in range(1000):
        body.y[NEURO] = body.y[RP] = body.y[RN] = body.y[RL] = body.y[RM] = body.y[RK] = 0.0
        body.y[route] = 1.0
        body._small_reservoir(tuple(float(c == route) for c in RESERVOIR), round(t / h), h, 0.0)
        alive += body.y[route] > 0
    expected = (b - d) / (b - d * math.exp(-(b - d) * t))
    assert 0.5 < expected < 0.6
    assert alive / 1000 == pytest.approx(expected, abs=4 * math.sqrt(expected * (1 - expected) / 1000))


@pytest.mark.statistical
def test_the_small_number_reservoir_keeps_the_mean_of_the_equations():
    """500 target-positive cells under killing, with a loss large enough to make negatives: the means of
    R+ and R- after 5 days match the linear equations' solution (300 runs, 4 SE)."""
    body = bare_reservoir(11, **{"blast.cd19_loss_per_division": 0.05})
    kill, t, h = 0.3, 5.0, 0.01
    g, r, lam = body.blast_growth, body.reseed, body.target_loss
    pos, neg = [], []
    for _ in range(300):
        body._small_reservoir((500.0, 0.0, 0.0, 0.0, 0.0), round(t / h), h, kill)
        pos.append(body.y[RP])
        neg.append(body.y[RM])
    a = g - r - kill - lam  # dR+/dt = a R+;  dR-/dt = (g - r) R- + lam R+
    mean_pos = 500.0 * math.exp(a * t)
    mean_neg = 500.0 * lam * (math.exp(a * t) - math.exp((g - r) * t)) / (a - (g - r))
    for values, mean in ((pos, mean_pos), (neg, mean_neg)):
        se = float(np.std(values)) / math.sqrt(len(values))
        assert float(np.mean(values)) == pytest.approx(mean, abs=4 * se)
    assert mean_neg > 5  # the loss does make negatives


def test_reservoir_is_cleared_by_an_expanding_pool_and_goes_extinct_below_one_cell():
    strong = run_toy_killing(make_body(**{"relapse.reservoir_kill_per_day": 1.0}), 30.0)
    weak = run_toy_killing(make_body(**{"relapse.reservoir_kill_per_day": 1e-5}), 30.0)
    assert strong[-1]["reservoir_target_pos_cells"] == 0.0  # extinct, exactly
    assert weak[-1]["reservoir_target_pos_cells"] > weak[0]["reservoir_target_pos_cells"]
    # the fastest killing the range allows, with quarter-day steps: sub-steps keep RK4 stable (no sign flips)
    fastest = run_toy_killing(make_body(**{"relapse.reservoir_kill_per_day": 10.0}), 30.0, dt=0.25)
    values = [r["reservoir_target_pos_cells"] for r in fastest]
    assert all(math.isfinite(v) and v >= 0.0 for v in values) and values[-1] == 0.0


def test_reseeding_quota_is_the_window_share_of_the_homing_reservoir():
    p = Params().replace({"relapse.reservoir_fraction": 0.05, "relapse.reseed_rate_per_day": 0.1,
                          "patient.cd19_negative_fraction": 0.25})
    body = Body(p, CAPACITY, PORTALS)
    body.advance(0.0, HOUR, window_with_blasts(body, 10_000))
    quota, negative, preexisting, *_ = body.reseeding(HOUR)
    obs = body.observe()
    reservoir = obs["reservoir_target_pos_cells"] + obs["reservoir_target_neg_cells"]
    assert quota == round(0.1 * reservoir * body.window_share * HOUR * TWO32)
    assert negative / TWO32 == pytest.approx(0.25, rel=1e-3)
    assert preexisting / TWO32 == pytest.approx(1.0, rel=1e-9)  # every negative one pre-existing (no loss yet)
    assert make_body(**{"relapse.reservoir_fraction": 0.0}).reseeding(HOUR) == (0, 0, TWO32, TWO32, TWO32)


# -- CRS and ICANS grading --------------------------------------------------------------------
THRESHOLDS = (30.0, 150.0, 600.0, 2500.0)


@pytest.mark.parametrize(("signal", "grade"), [
    (0.0, 0), (29.9, 0), (30.0, 1), (149.0, 1), (150.0, 2), (599.0, 2), (600.0, 3), (2499.0, 3), (2500.0, 4),
    (1e5, 4),
])
def test_crs_grade_thresholds(signal, grade):
    temperature, severity = crs_surrogates(signal, THRESHOLDS)
    assert astct_crs_grade(temperature, severity, masked=False) == grade


def test_crs_grade_is_monotone_in_signal_and_reaches_every_grade():
    grades = []
    for i in range(2000):
        signal = 10 ** (i / 400)  # 1 to 1e5 pg/mL
        grades.append(astct_crs_grade(*crs_surrogates(signal, THRESHOLDS), masked=False))
    assert all(b >= a for a, b in itertools.pairwise(grades))
    assert set(grades) == {0, 1, 2, 3, 4}


def test_crs_fever_is_38_c_at_threshold_and_masked_fever_still_grades_hypotension():
    assert crs_surrogates(30.0, THRESHOLDS)[0] == pytest.approx(38.0)
    assert crs_surrogates(1e9, THRESHOLDS)[0] < 40.0 + 1e-9
    assert astct_crs_grade(37.0, 2, masked=False) == 0  # no fever, untreated: not CRS
    assert astct_crs_grade(37.0, 2, masked=True) == 3  # after tocilizumab: graded by hypotension/hypoxia


@pytest.mark.parametrize(("half", "hill"), [(1500.0, 1.0), (1500.0, 2.0), (4669.0, 3.326), (500.0, 6.0)])
def test_every_icans_grade_is_reached_in_order_whatever_the_ice_scale(half, hill):
    body = make_body(**{"icans.ice_half_il6_pg_ml": half, "icans.ice_hill": hill})
    seen = [icans_surrogate(half * 10 ** (i / 200), half, body.unarousable, hill)[1] for i in range(-600, 600)]
    assert all(b >= a for a, b in itertools.pairwise(seen))
    assert set(seen) == {0, 1, 2, 3, 4}  # grade 3 (ICE 0-2, arousable) comes before unarousable


def test_icans_grade_follows_ice_score():
    assert icans_surrogate(0.0, 1500.0, 6000.0) == (10, 0)
    seen = []
    for i in range(700):
        ice, grade = icans_surrogate(10.0 * i, 1500.0, 6000.0)
        expected = 0 if ice == 10 else 1 if ice >= 7 else 2 if ice >= 3 else 3
        assert grade == (4 if 10.0 * i >= 6000.0 else expected)
        seen.append(grade)
    assert all(b >= a for a, b in itertools.pairwise(seen))
    assert set(seen) == {0, 1, 2, 3, 4}


def test_crs_starts_before_icans_in_an_eliana_like_patient():
    # an ICANS scale this patient reaches (the calibrated one makes ICANS rare): the mechanism, not the rate
    # no reservoir: "antigen gone" means the window's blasts killed and no sanctuary disease left to stimulate
    rows = run_toy_killing(make_body(**SEVERE, **UNCALIBRATED_ICANS, **{"relapse.reservoir_fraction": 0.0}), 30.0)
    crs_onset = next(r["t"] for r in rows if r["crs_grade"] >= 1)
    icans_onset = next(r["t"] for r in rows if r["icans_grade"] >= 1)
    assert 1.0 <= crs_onset <= 7.0  # SCIENCE.md: median day 3
    assert icans_onset > crs_onset
    assert rows[-1]["crs_grade"] == 0 and rows[-1]["icans_grade"] == 0  # resolves once antigen is gone


@pytest.mark.parametrize("decay", [1.0, 0.6])
def test_il6_production_per_cell_falls_by_the_division_decay_with_each_division(decay):
    body = make_body(**{"serum.il6_division_decay": decay, "serum.myeloid_amplification": 0.0})
    body.antigen = 1e15  # saturating stimulation
    rates = body._rates(0.0)
    stage = body.tissue_e.start

    def production(divisions: int) -> float:
        y = [0.0] * body.n_state
        y[IL6] = body.il6_0  # at baseline: d(IL-6)/dt is the CAR-T-driven production alone
        y[stage + divisions] = 1e9
        return derivative(y, rates)[IL6]

    fresh = production(0)
    assert fresh > 0.0
    for divisions in (1, 3, body.max_divs):
        assert production(divisions) == pytest.approx(fresh * decay**divisions, rel=1e-12)


def test_division_decay_brings_il6_forward_relative_to_its_peak():
    """With decay the early, little-divided pool weighs more: IL-6 is nearer its peak on day 3 (CRS onset)."""
    def early_share(decay: float) -> float:
        rows = run_toy_killing(make_body(**{"serum.il6_division_decay": decay, "therapy.tocilizumab_grade": 0,
                                            "therapy.steroids_grade": 0}), 14.0)
        excess = [r["serum_il6_pg_ml"] - rows[0]["serum_il6_pg_ml"] for r in rows]
        return excess[int(round(3.0 / HOUR)) - 1] / max(excess)

    assert early_share(0.6) > 3 * early_share(1.0)


# -- therapy ------------------------------------------------------------------------------------
def test_tocilizumab_at_trigger_lowers_crs_grade_and_raises_serum_il6():
    base = {"therapy.steroids_grade": 0, **SEVERE}
    with_toci = run_constant(make_body(**base, **{"therapy.tocilizumab_grade": 2}), ELIANA_CD19, 6.0)
    without = run_constant(make_body(**base, **{"therapy.tocilizumab_grade": 0}), ELIANA_CD19, 6.0)
    first = next(i for i, r in enumerate(with_toci) if r["tocilizumab_doses"] > 0)
    assert with_toci[first]["crs_grade"] >= 2 > with_toci[first - 1]["crs_grade"]  # given at the trigger grade
    assert without[-1]["tocilizumab_doses"] == 0
    later = range(first + 1, len(with_toci))
    assert max(with_toci[i]["crs_grade"] for i in later) < max(without[i]["crs_grade"] for i in later)
    assert all(with_toci[i]["crs_grade"] <= without[i]["crs_grade"] for i in later)
    # receptor blockade removes IL-6 clearance: serum IL-6 rises, its signal falls
    assert with_toci[first + 3]["serum_il6_pg_ml"] > without[first + 3]["serum_il6_pg_ml"]
    assert with_toci[first + 3]["il6_signal_pg_ml"] < without[first + 3]["il6_signal_pg_ml"]


def test_tocilizumab_never_exceeds_max_doses_nor_redoses_early():
    body = make_body(**SEVERE, **{"therapy.tocilizumab_max_doses": 3, "therapy.tocilizumab_grade": 2})
    rows = run_constant(body, ELIANA_CD19, 10.0)
    doses = [r["tocilizumab_doses"] for r in rows]
    assert max(doses) == 3
    given = [rows[i]["t"] for i in range(1, len(rows)) if doses[i] > doses[i - 1]]
    assert all(b - a >= 8.0 / 24.0 - 1e-9 for a, b in itertools.pairwise(given))


def test_steroids_lower_controls_and_icans():
    base = {"therapy.tocilizumab_grade": 2, **SEVERE}
    body = make_body(**base, **{"therapy.steroids_grade": 3})
    with_steroids, factors = [], []
    r = readout(body, ELIANA_CD19)
    for i in range(int(10 / HOUR)):
        body.advance(i * HOUR, HOUR, r)
        with_steroids.append(body.observe())
        factors.append(body.controls())
    without = run_constant(make_body(**base, **{"therapy.steroids_grade": 0}), ELIANA_CD19, 10.0)
    on = [i for i, o in enumerate(with_steroids) if o["steroids_on"]]
    assert on, "steroids never started"
    p = Params()
    assert factors[on[0]].proliferation_factor == p.therapy.steroid_proliferation_factor < 1.0
    assert factors[on[0]].activation_factor == p.therapy.steroid_activation_factor < 1.0
    assert factors[0].proliferation_factor == factors[0].activation_factor == 1.0
    later = range(on[0] + 24, len(without))
    assert all(with_steroids[i]["icans_effect_pg_ml"] < without[i]["icans_effect_pg_ml"] for i in later)
    assert max(o["icans_grade"] for o in with_steroids) <= max(o["icans_grade"] for o in without)
    assert with_steroids[-1]["icans_grade"] < without[-1]["icans_grade"]
    assert without[-1]["steroids_on"] == 0


def test_steroids_stop_after_duration_once_grades_fall():
    # the uncalibrated, more inflammatory IL-6 and ICANS settings, so that the toy patient reaches the steroid
    # grade and its grades fall within the month
    rows = run_toy_killing(make_body(**SEVERE, **UNCALIBRATED_ICANS), 30.0)
    assert any(r["steroids_on"] for r in rows)
    assert rows[-1]["steroids_on"] == 0


# -- checkpoints ----------------------------------------------------------------------------------
def test_state_restore_continues_bit_for_bit():
    def drive(body, start, stop):
        out = []
        for i in range(start, stop):
            cd19 = ELIANA_CD19 * math.exp(-0.3 * i * HOUR)
            out.append((body.advance(i * HOUR, HOUR, readout(body, cd19)), body.observe(), body.controls()))
        return out

    original = make_body(**SEVERE)
    drive(original, 0, 24 * 6)  # into CRS, tocilizumab and steroids
    assert original.observe()["tocilizumab_doses"] > 0
    saved = json.loads(json.dumps(original.state()))
    copy = make_body(**SEVERE)
    copy.restore(saved)
    assert copy.observe() == original.observe()
    assert drive(copy, 24 * 6, 24 * 12) == drive(original, 24 * 6, 24 * 12)


def test_restore_rejects_a_state_of_another_shape():
    body = make_body()
    state = body.state()
    state["y"] = state["y"][:-2]
    with pytest.raises(SimulationError, match="variables"):
        body.restore(state)


def test_restore_reads_states_from_before_the_myeloid_compartment_the_escape_routes_and_masking():
    body = make_body()
    body.y[MY], body.y[RN], body.y[RM], body.y[RL], body.y[RK] = 0.25, 7.0, 3.0, 2.0, 1.0
    state = body.state()
    old = [v for i, v in enumerate(state["y"]) if i not in (MY, RM, RL, RK)]  # the layout before all three
    body.restore({**state, "y": old})
    assert body.y[MY] == body.y[RM] == body.y[RL] == body.y[RK] == 0.0 and body.y[RN] == 7.0  # pre-existing
    assert body.y[:MY] == state["y"][:MY] and body.y[RK + 1:] == state["y"][RK + 1:]
    between = [v for i, v in enumerate(state["y"]) if i not in (RM, RL, RK)]  # with the myeloid compartment
    body.restore({**state, "y": between})
    assert body.y[MY] == 0.25 and body.y[RM] == body.y[RL] == body.y[RK] == 0.0
    routes = [v for i, v in enumerate(state["y"]) if i != RK]  # with the escape routes, before masking
    body.restore({**state, "y": routes})
    assert body.y[:RK] == state["y"][:RK] and body.y[RK] == 0.0 and body.y[RK + 1:] == state["y"][RK + 1:]


# -- parameters -------------------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [
    {"crs.fever_il6_pg_ml": 30.0, "crs.grade2_il6_pg_ml": 20.0},  # below the fever threshold
    {"crs.grade3_il6_pg_ml": 3000.0},  # above grade 4
    {"crs.grade4_il6_pg_ml": 600.0},  # equal to grade 3
])
def test_inconsistent_toxicity_thresholds_rejected(overrides):
    with pytest.raises(ParamError, match="expected"):
        make_body(**overrides)


@pytest.mark.parametrize(("key", "value"), [
    ("therapy.tocilizumab_grade", 5), ("therapy.steroids_grade", -1), ("therapy.tocilizumab_grade", 2.5),
    ("body.blood_fraction", 0.0), ("serum.il6_half_life_h", 0.1), ("therapy.tocilizumab_blockade", 1.5),
])
def test_out_of_range_body_params_rejected(key, value):
    with pytest.raises(ParamError, match=key.replace(".", r"\.")):
        Params({key: value})


def test_window_without_marrow_rejected():
    with pytest.raises(SimulationError, match="window_capacity"):
        Body(Params(), 0, 0)


# -- dose hold on CRS ----------------------------------------------------------------------------
def test_later_fractions_are_held_while_crs_is_at_the_hold_grade():
    split = {"schedule.days": [0.0, 4.0, 8.0], "schedule.fractions": [0.1, 0.3, 0.6],
             **SEVERE, **UNCALIBRATED_ICANS, "therapy.tocilizumab_grade": 2, "crs.fever_il6_pg_ml": 30.0}
    given = make_body(**split)
    held = make_body(**split, **{"schedule.hold_crs_grade": 1})
    dose = 3e6 * 30.0
    assert run_constant(given, ELIANA_CD19, 10.0)[-1]["cart_infused_cells"] == pytest.approx(dose)
    rows = run_constant(held, ELIANA_CD19, 10.0)
    grade_at = {round(r["t"], 6): r["crs_grade"] for r in rows}  # grade when the step starting then begins
    assert grade_at[4.0] == 0 and grade_at[8.0] >= 1  # CRS starts between the second and third fractions
    expected = 0.1 + sum(f for day, f in ((4.0, 0.3), (8.0, 0.6)) if grade_at[day] < 1)
    assert rows[-1]["cart_infused_cells"] == pytest.approx(expected * dose)
    assert held.held == sum(1 for day in (4.0, 8.0) if grade_at[day] >= 1)


def test_held_fractions_survive_a_checkpoint():
    split = {"schedule.days": [0.0, 4.0], "schedule.fractions": [0.5, 0.5], "schedule.hold_crs_grade": 1,
             **SEVERE, "serum.il6_production_pg_ml_per_day": 300.0}
    body = make_body(**split)
    run_constant(body, ELIANA_CD19, 5.0)
    copy = make_body(**split)
    copy.restore(json.loads(json.dumps(body.state())))
    assert copy.held == body.held == 1
    state = body.state()
    del state["held"]  # a checkpoint written before the hold existed
    copy.restore(state)
    assert copy.held == 0


def test_running_maximum_grades_keep_every_step_and_survive_a_checkpoint():
    # no reservoir, so that CRS resolves once the window's blasts are gone
    toy = {**SEVERE, "crs.fever_il6_pg_ml": 30.0, "relapse.reservoir_fraction": 0.0}
    body = make_body(**toy)
    rows = run_toy_killing(body, 30.0)
    running_crs = running_icans = 0
    for r in rows:
        running_crs, running_icans = max(running_crs, r["crs_grade"]), max(running_icans, r["icans_grade"])
        assert (r["crs_grade_max"], r["icans_grade_max"]) == (running_crs, running_icans)
    assert rows[-1]["crs_grade"] == 0 < rows[-1]["crs_grade_max"]  # resolved, but the peak is remembered
    copy = make_body(**toy)
    copy.restore(json.loads(json.dumps(body.state())))
    assert copy.observe()["crs_grade_max"] == rows[-1]["crs_grade_max"]
