"""Unit and statistical tests of the per-site rules, through the cpu backend."""

import dataclasses
import math

import numpy as np
import pytest
from conftest import empty_state, place, quiet_tables

import kernels
from abm.params import Params
from abm.rates import build_tables, per_step_probability
from kernels import Traffic
from kernels import layout as L
from kernels import rules as R
from kernels.rng import threshold

ALWAYS = 2**32


def run(state, tables, steps, backend="cpu", enter=0, exit_=0):
    lat = kernels.Lattice(state, tables, backend=backend)
    for s in range(steps):
        lat.step(s, Traffic(enter_quota=enter, exit_threshold=exit_))
    return lat.pull()


def test_sublattice_order_is_a_permutation():
    order = np.zeros(9, np.int64)
    seen = set()
    for step in range(50):
        R.sublattice_order(3, step, order)
        assert sorted(order) == list(range(9))
        seen.add(tuple(order))
    assert len(seen) > 40  # orders change from step to step


def test_kill_adjacent_blast_pkill_one_always_kills():
    s = empty_state(5)
    place(s, 2, 2, L.CART)
    place(s, 2, 3, L.BLAST, cd19=200)
    t = quiet_tables()
    t.antigen_rates[:] = ALWAYS  # attach and kill with probability 1
    out = run(s, t, 2)
    assert out.cell[2, 3] == L.EMPTY
    assert out.events[L.EV_KILLED + L.BLAST] == 1
    assert out.traits[2, 2, L.KILLS] == 1
    assert out.traits[2, 2, L.STATE] == L.ACTIVE


def test_cd19_negative_blast_is_never_engaged():
    s = empty_state(5)
    place(s, 2, 2, L.CART)
    place(s, 2, 3, L.BLAST, cd19=0)
    t = quiet_tables()
    t.antigen_rates[:] = ALWAYS
    out = run(s, t, 20)
    assert out.cell[2, 3] == L.BLAST
    assert out.traits[2, 2, L.TARGET] == 0


def test_migrating_cart_never_enters_bone_or_sinusoid():
    s = empty_state(12)
    s.tissue[:, :4] = L.BONE
    s.tissue[:, 8:] = L.SINUSOID
    for i in range(0, 12, 2):
        place(s, i, 5, L.CART)
    t = quiet_tables(R_MOVE=ALWAYS)
    lat = kernels.Lattice(s, t, backend="cpu")
    for step in range(300):
        lat.step(step, Traffic())
        assert not np.any(lat.state.cell[:, :4]) and not np.any(lat.state.cell[:, 8:])
    assert np.count_nonzero(lat.pull().cell == L.CART) == 6


def test_blast_division_fills_free_neighbours_and_balances_counts():
    s = empty_state(9)
    place(s, 4, 4, L.BLAST, cd19=100)
    t = quiet_tables()
    t.kind_rates[L.KR_DIVIDE, L.BLAST] = ALWAYS
    out = run(s, t, 30)
    blasts = np.count_nonzero(out.cell == L.BLAST)
    assert blasts == 1 + out.events[L.EV_BORN + L.BLAST]
    assert blasts > 40  # the lattice fills up
    assert np.all(out.traits[out.cell == L.BLAST, L.ANTIGEN] > 0)  # positive parents have positive daughters


def _blast_among(kind, n=7):
    """A blast at the centre of an ``n x n`` lattice packed with cells of ``kind``; blasts always divide."""
    s = empty_state(n)
    s.cell[:] = kind
    place(s, n // 2, n // 2, L.BLAST, cd19=100)
    return s


@pytest.mark.parametrize("victim", [L.NORMAL, L.BCELL])
def test_dividing_blast_without_space_displaces_a_normal_neighbour(victim):
    t = quiet_tables(R_DISPLACE=ALWAYS)
    t.kind_rates[L.KR_DIVIDE, L.BLAST] = ALWAYS
    out = run(_blast_among(victim), t, 1)
    assert np.count_nonzero(out.cell == L.BLAST) == 2  # one division: the daughter acted this step
    assert out.events[L.EV_DISPLACED + victim] == 1
    assert out.events[L.EV_BORN + L.BLAST] == 0
    assert np.count_nonzero(out.cell == victim) == 48 - 1
    assert out.cell[3, 3] == L.BLAST
    assert np.abs(np.argwhere(out.cell == L.BLAST) - 3).max() == 1  # the daughter is a Moore neighbour
    out = run(_blast_among(victim), t, 6)
    blasts = np.count_nonzero(out.cell == L.BLAST)
    assert blasts == 1 + out.events[L.EV_DISPLACED + victim] and blasts > 10


@pytest.mark.parametrize("kind", [L.STROMA, L.CART, L.BLAST])
def test_blast_never_displaces_stroma_cart_or_blasts(kind):
    t = quiet_tables(R_DISPLACE=ALWAYS)
    t.kind_rates[L.KR_DIVIDE, L.BLAST] = ALWAYS
    s = _blast_among(kind)
    out = run(s, t, 5)
    assert np.array_equal(out.cell, s.cell)
    assert not out.events.any()


def test_displacement_is_off_at_probability_zero_and_only_for_blasts():
    t = quiet_tables()
    t.kind_rates[L.KR_DIVIDE, L.BLAST] = ALWAYS
    s = _blast_among(L.NORMAL)
    assert np.array_equal(run(s, t, 5).cell, s.cell)
    t = quiet_tables(R_DISPLACE=ALWAYS)
    t.kind_rates[L.KR_DIVIDE, :] = ALWAYS
    s = empty_state(7)
    s.cell[:] = L.NORMAL
    place(s, 3, 3, L.BCELL, cd19=100)
    out = run(s, t, 5)
    assert np.array_equal(out.cell, s.cell)  # normal cells and B cells only divide into space
    assert not out.events.any()


@pytest.mark.statistical
def test_displacement_probability_matches_its_threshold_statistically():
    """400 blasts, each alone in a 3x3 block of normal cells, one step: displacements ~ Binomial(400, p).

    With p = 0.3 and division certain, the count must lie within 4 binomial
    standard errors of 120.
    """
    p = 0.3
    s = empty_state(60)
    s.cell[:] = L.NORMAL
    for i in range(1, 60, 3):
        for j in range(1, 60, 3):
            place(s, i, j, L.BLAST, cd19=100)
    t = quiet_tables(R_DISPLACE=threshold(p))
    t.kind_rates[L.KR_DIVIDE, L.BLAST] = ALWAYS
    k = run(s, t, 1).events[L.EV_DISPLACED + L.NORMAL]
    assert abs(k - 400 * p) < 4 * math.sqrt(400 * p * (1 - p))


def _blast_growth_rate(displace, seed, n=120, founders=400, days=20):
    """Net growth rate [1/d] of ``founders`` scattered blasts in a packed normal marrow, default kind rates."""
    g = np.random.default_rng(seed)
    s = empty_state(n)
    s.cell[:] = L.NORMAL
    for f in g.choice(n * n, founders, replace=False):
        place(s, f // n, f % n, L.BLAST, cd19=100)
    params = Params.default()
    t = quiet_tables(seed, R_DISPLACE=displace)
    t.kind_rates[:] = build_tables(params, seed).kind_rates
    t.kind_rates[L.KR_CONVERT] = 0
    out = run(s, t, round(days * 24 * 60 / params.time.dt_min))
    return math.log(np.count_nonzero(out.cell == L.BLAST) / founders) / days


@pytest.mark.statistical
def test_blasts_in_a_refilled_marrow_grow_at_their_untreated_rate_only_by_displacing():
    """After remission the marrow is packed with normal cells, which divide ~3x faster than blasts.

    Blasts displacing their normal neighbours grow at ``division - death`` =
    0.065/d (the untreated rate, Br J Haematol 1997); without displacement
    they lose every gap and stay frozen. Four seeds of 400 founders over 20
    days: the mean rate's seed-to-seed SD is ~0.002/d, and colonies touching
    slow it slightly, so the tolerance is 0.01/d.
    """
    params = Params.default()
    untreated = params.blast.division_rate_per_day - params.blast.death_rate_per_day
    grow = np.mean([_blast_growth_rate(ALWAYS, seed) for seed in range(4)])
    frozen = np.mean([_blast_growth_rate(0, seed) for seed in range(4)])
    assert abs(grow - untreated) < 0.01
    assert frozen < 0.01


def test_cart_proliferates_only_when_active_and_within_division_limit():
    s = empty_state(15)
    place(s, 7, 7, L.CART)
    t = quiet_tables(R_PROLIF=ALWAYS, R_MAX_DIVS=3)
    out = run(s, t, 10)
    assert np.count_nonzero(out.cell == L.CART) == 1  # resting: no division
    s = empty_state(15)
    place(s, 7, 7, L.CART)
    s.traits[7, 7, L.STATE] = L.ACTIVE
    s.traits[7, 7, L.TIMER] = 1000
    out = run(s, t, 40)
    carts = out.cell == L.CART
    assert np.all(out.traits[carts, L.DIVS] <= 3)
    assert np.count_nonzero(carts) == out.events[L.EV_BORN + L.CART] + 1
    assert 2 <= np.count_nonzero(carts) <= 8  # at most 2**3 cells after 3 division rounds


def test_no_two_cells_share_a_site_and_empty_sites_carry_no_traits():
    # Dense random lattice, everything switched on: occupancy stays consistent.
    g = np.random.default_rng(0)
    s = empty_state(20)
    kinds = g.choice([0, 1, 2, 3, 5], size=(20, 20), p=[0.2, 0.4, 0.1, 0.1, 0.2])
    for (i, j), k in np.ndenumerate(kinds):
        if k:
            place(s, i, j, int(k), cd19=int(g.integers(0, 256)) if k in (1, 2) else 0)
    total = np.count_nonzero(s.cell)
    t = quiet_tables(R_MOVE=threshold(0.8), R_SWAP=threshold(0.5), R_PROLIF=threshold(0.3), R_MAX_DIVS=4)
    t.antigen_rates[:] = threshold(0.3)
    t.kind_rates[L.KR_DIVIDE, :] = threshold(0.05)
    t.kind_rates[L.KR_DIE, :] = threshold(0.01)
    t.rates[L.R_DISPLACE] = threshold(0.5)
    out = run(s, t, 60)
    ev = out.events
    assert ev[L.EV_DISPLACED : L.EV_DISPLACED + L.N_KINDS].sum() > 0
    born = ev[L.EV_BORN : L.EV_BORN + L.N_KINDS].sum()
    gone = ev[L.EV_DIED : L.EV_DIED + L.N_KINDS].sum() + ev[L.EV_KILLED : L.EV_KILLED + L.N_KINDS].sum()
    assert np.count_nonzero(out.cell) == total + born - gone
    assert not out.traits[out.cell == L.EMPTY].any()


@pytest.mark.statistical
def test_kill_rule_matches_formula_statistically():
    """Engaged T cells kill at p = 1 - exp(-k dt) per step; 400 pairs, first-step kill fraction.

    Each pair is a T cell already engaged with a blast (TARGET set), so step 0
    is one kill trial. With k = 4/h and dt = 2 min, p = 0.1248; the observed
    fraction must lie within 4 binomial standard errors.
    """
    p = per_step_probability(4.0, 2.0 / 60.0)
    s = empty_state(60)
    pairs = 0
    for i in range(0, 60, 3):
        for j in range(0, 58, 3):
            place(s, i, j, L.CART)
            s.traits[i, j, L.TARGET] = 5  # direction 4 (east) + 1
            place(s, i, j + 1, L.BLAST, cd19=255)
            pairs += 1
    t = quiet_tables()
    t.antigen_rates[L.AR_KILL, :] = threshold(p)
    out = run(s, t, 1)
    kills = int(out.events[L.EV_KILLED + L.BLAST])
    se = math.sqrt(pairs * p * (1 - p))
    assert abs(kills - pairs * p) < 4 * se, (kills, pairs * p, se)


@pytest.mark.statistical
def test_death_rule_matches_per_step_probability_statistically():
    # 2,500 blasts with p_die per step; deaths after one step within 4 binomial SE.
    p = 0.05
    s = empty_state(50)
    s.cell[:] = L.BLAST
    s.traits[..., L.ANTIGEN] = 100
    s.traits[..., L.ACTED] = L.UNVISITED
    t = quiet_tables()
    t.kind_rates[L.KR_DIE, L.BLAST] = threshold(p)
    out = run(s, t, 1)
    died = int(out.events[L.EV_DIED + L.BLAST])
    assert abs(died - 2500 * p) < 4 * math.sqrt(2500 * p * (1 - p))


def test_traffic_enters_only_empty_perivascular_sites():
    s = empty_state(10)
    s.tissue[5, :] = L.PERIVASCULAR
    place(s, 5, 0, L.BLAST, cd19=10)
    out = run(s, quiet_tables(), 1, enter=9 * ALWAYS)  # quota of 9 entries for 9 empty portals
    assert np.count_nonzero(out.cell == L.CART) == 9
    assert np.all(out.cell[5, 1:] == L.CART) and out.cell[5, 0] == L.BLAST
    assert out.events[L.EV_ENTERED] == 9


def test_entry_quota_is_met_on_average_however_crowded_the_portals():
    """Expected entries equal the quota whether 10 % or 100 % of portals are free (4 SE, 400 steps)."""
    for free_every in (1, 10):
        s = empty_state(40)
        s.tissue[::2, :] = L.PERIVASCULAR
        for i in range(0, 40, 2):
            for j in range(40):
                if j % free_every:
                    place(s, i, j, L.NORMAL)
        steps, quota = 400, 0.5  # expected entries per step
        t = quiet_tables()
        lat = kernels.Lattice(s, t, backend="cpu")
        entries = 0
        for step in range(steps):
            lat.step(step, Traffic(enter_quota=int(quota * ALWAYS)))
            lat.state.cell[lat.state.cell == L.CART] = L.EMPTY  # keep the portals as they were
            lat.state.traits[lat.state.cell == L.EMPTY] = 0
        entries = int(lat.pull().events[L.EV_ENTERED])
        mean = steps * quota
        assert abs(entries - mean) < 4 * math.sqrt(mean), (free_every, entries)


def test_reservoir_blasts_enter_empty_portals_after_car_t_with_table_levels_and_the_negative_share():
    """Seeding: CAR-T entry first; blasts at the quota's rate, levels from the tables, negatives at their share.

    1,000 steps of 0.5 expected entries on a row of portals emptied after every step; 4 standard errors.
    """
    s = empty_state(40)
    s.tissue[::2, :] = L.PERIVASCULAR
    t = quiet_tables()
    t.entry_levels[0] = np.arange(256) % 200 + 20  # CD19 levels 20..219
    t.entry_levels[1] = 77
    lat = kernels.Lattice(s, t, backend="cpu")
    steps, quota, negative = 1000, 0.5, 0.25
    seen19, seen22, negatives = set(), set(), 0
    for step in range(steps):
        lat.step(step, Traffic(seed_quota=int(quota * ALWAYS), negative_threshold=threshold(negative)))
        st = lat.state
        blasts = st.cell == L.BLAST
        antigen = st.traits[..., L.ANTIGEN][blasts].astype(np.int64)
        seen19 |= set((antigen & 0xFF).tolist())
        seen22 |= set((antigen >> 8).tolist())
        negatives += int(np.count_nonzero((antigen & 0xFF) == 0))
        st.cell[blasts] = L.EMPTY
        st.traits[blasts] = 0
    seeded = int(lat.pull().events[L.EV_SEEDED])
    mean = steps * quota
    assert abs(seeded - mean) < 4 * math.sqrt(mean)
    assert abs(negatives - seeded * negative) < 4 * math.sqrt(seeded * negative * (1 - negative))
    assert seen22 == {77}  # a CD19 CAR: a negative blast keeps its CD22
    assert seen19 - {0} <= set(range(20, 220)) and len(seen19) > 150  # drawn across the table
    # CAR-T entry is decided first: a quota filling every portal leaves no room for blasts
    s = empty_state(10)
    s.tissue[5, :] = L.PERIVASCULAR
    out = run(s, t, 1, enter=10 * ALWAYS)
    assert np.all(out.cell[5] == L.CART)
    lat = kernels.Lattice(out, t, backend="cpu")
    lat.step(1, Traffic(seed_quota=10 * ALWAYS))
    assert lat.pull().events[L.EV_SEEDED] == 0


@pytest.mark.parametrize("backend", ["python", "cpu"])
def test_bad_table_shape_is_rejected_with_name(backend):
    s = empty_state(6)
    t = quiet_tables()
    t.rates = t.rates[:3]
    with pytest.raises(ValueError, match="tables.rates"):
        kernels.Lattice(s, t, backend=backend)


# -- the step's traffic and the layout ------------------------------------------------------------------------
def test_traffic_packs_each_field_into_its_named_slot():
    values = {name: 1000 + slot for slot, name in enumerate(L.TRAFFIC_NAMES)}
    packed = Traffic(**values).packed()
    assert packed.dtype == np.int64 and packed.shape == (L.N_TRAFFIC,)
    assert packed[L.TR_ENTER_QUOTA] == values["enter_quota"]
    assert packed[L.TR_EXIT_THRESHOLD] == values["exit_threshold"]
    assert packed[L.TR_MEMORY_THRESHOLD] == values["memory_threshold"]
    assert packed[L.TR_SEED_QUOTA] == values["seed_quota"]
    assert packed[L.TR_NEGATIVE_THRESHOLD] == values["negative_threshold"]
    assert packed[L.TR_PREEXISTING_THRESHOLD] == values["preexisting_threshold"]
    assert packed[L.TR_MUTATION_THRESHOLD] == values["mutation_threshold"]
    assert packed[L.TR_LINEAGE_THRESHOLD] == values["lineage_threshold"]
    assert set(L.TRAFFIC_NAMES) == {f.name for f in dataclasses.fields(Traffic)}
    # no traffic; a negative blast, were one to enter, would be pre-existing
    assert Traffic().slots() == (0,) * (L.N_TRAFFIC - 3) + (2**32, 2**32, 2**32)


def test_traffic_is_keyword_only():
    with pytest.raises(TypeError):
        Traffic(1, 2)


@pytest.mark.parametrize(("field", "value", "error"), [
    ("exit_threshold", ALWAYS + 1, ValueError),
    ("memory_threshold", -1, ValueError),
    ("negative_threshold", ALWAYS + 1, ValueError),
    ("enter_quota", -1, ValueError),
    ("seed_quota", 2**63, ValueError),
    ("enter_quota", 0.5, TypeError),
    ("exit_threshold", True, TypeError),
])
def test_traffic_out_of_range_or_not_an_integer_is_rejected_with_its_name(field, value, error):
    with pytest.raises(error, match=f"Traffic.{field}"):
        Traffic(**{field: value})


def test_traffic_accepts_numpy_integers_and_the_bounds():
    t = Traffic(enter_quota=np.int64(2**40), exit_threshold=ALWAYS, seed_quota=2**63 - 1)
    assert type(t.enter_quota) is int and t.slots()[L.TR_EXIT_THRESHOLD] == ALWAYS


@pytest.mark.parametrize("backend", ["python", "cpu"])
def test_step_without_a_traffic_object_is_rejected(backend):
    lat = kernels.Lattice(empty_state(6), quiet_tables(), backend=backend)
    with pytest.raises(TypeError, match="kernels.Traffic"):
        lat.step(0, 0)
