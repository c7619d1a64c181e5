"""Per-site rules shared by every backend.

Everything here is a Numba ``@jit`` function on arrays and integers. The
``python`` backend calls them from plain Python loops, the ``cpu`` backend from
``prange`` loops and the ``cuda`` backend from kernels (Numba compiles ``@jit``
functions as CUDA device functions), so the biology is written once.

The arrays, codes, slots and table rows the rules read and write (cell kinds,
tissue codes, traits, antigen levels, event codes, random-number purposes, rate
rows) are defined in :mod:`kernels.layout`, which documents them.

Determinism and conflicts
-------------------------
Every random decision draws from :func:`kernels.rng.draw` keyed by
``(key, step, site, purpose)``; probabilities are integer thresholds
(``draw < threshold``), so decisions are exact integer comparisons.

Conflicts (two cells claiming one empty site, two T cells killing one blast)
are excluded by **sublattice updates**: a step visits the sites in nine passes,
one per offset ``(oy, ox)`` in ``{0,1,2}**2``; pass ``(oy, ox)`` visits the
sites ``(oy + 3a, ox + 3b)``. A visited site reads and writes only its own 3x3
Moore neighbourhood, and two sites of one pass are at least 3 apart, so the
sites of a pass never touch the same site and can run in any order or in
parallel. The order of the nine passes is a permutation drawn from
``(key, step)`` (:func:`sublattice_order`), so no direction is favoured. A
cell that moved or was born during the step carries ``ACTED`` = this step and
is skipped if a later pass reaches it; a cell displaced by a swap keeps its
turn only if its new site has not been visited yet (it may lose one step,
never gain one). The lattice has closed (no-flux) edges.

The result of a step is therefore a function of the state, the seed and the
step number only: bit-identical on every backend and thread count.

Events
------
Each action returns at most one event code (``EV_NONE`` = 0 for none; the
codes are listed in :mod:`kernels.layout`); the drivers add them to counters,
so counts per kind balance exactly.
"""

from __future__ import annotations

import numpy as np

from kernels.config import jit
from kernels.layout import (
    ACTED,
    ACTIVE,
    ANTIGEN,
    AR_ATTACH,
    AR_KILL,
    BCELL,
    BLAST,
    CART,
    CD22_SHIFT,
    DEFICIT,
    DIVS,
    EFFECTOR,
    EMPTY,
    EV_BCELL_MADE,
    EV_BORN,
    EV_DIED,
    EV_DISPLACED,
    EV_ENTERED,
    EV_EXHAUSTED,
    EV_EXITED,
    EV_KILLED,
    EV_NONE,
    EV_SEEDED,
    EXHAUSTED,
    KILLS,
    KR_CONVERT,
    KR_DIE,
    KR_DIVIDE,
    LEVEL_MASK,
    MEMORY,
    N_LEVELS,
    N_TRAITS,
    NICHE,
    NORMAL,
    OCCUPIABLE,
    P_AICD,
    P_ATTACH,
    P_CHEMO,
    P_DETACH,
    P_DIE,
    P_DIR,
    P_DISPLACE,
    P_ENTER,
    P_EXHAUST,
    P_EXIT,
    P_GROUP,
    P_KILL,
    P_LOSS,
    P_LOSS_CD22,
    P_MEMORY,
    P_MOVE,
    P_NOISE,
    P_NOISE_CD22,
    P_ORDER,
    P_PHENO,
    P_PLACE,
    P_PROLIF,
    P_RECOVER,
    P_SEED,
    P_SEED_LEVEL,
    P_SEED_NEG,
    P_SEED_ROUTE,
    P_SHED,
    P_SLOT,
    P_SWAP,
    P_SWITCH,
    P_TARGET,
    P_TROG,
    PHENO,
    R_ACTIVE_STEPS,
    R_AICD,
    R_BCELL_CD22_LEVEL,
    R_BCELL_LEVEL,
    R_CHEMO,
    R_DETACH,
    R_DISPLACE,
    R_EXHAUST_DIE,
    R_EXHAUST_STIM,
    R_LOSS,
    R_LOSS_CD22,
    R_MAX_DIVS,
    R_MEMORY,
    R_MEMORY_DIE,
    R_MOVE,
    R_PROLIF,
    R_RECOVER,
    R_SHED,
    R_SWAP,
    R_SWITCH,
    R_TARGET_MODE,
    R_TROG_FRAC,
    R_TROG_LEVELS,
    R_TROG_OFFSET,
    RESTING,
    ROUTE,
    ROUTE_DOWNREGULATION,
    ROUTE_LINEAGE,
    ROUTE_MASKING,
    ROUTE_MUTATION,
    ROUTE_NONE,
    ROUTE_PREEXISTING,
    STATE,
    STIM,
    STROMA,
    TARGET,
    TARGET_CD19,
    TARGET_CD22,
    TIMER,
    TRAIT_MAX,
    TV_BOUND,
    TV_CDF,
    TV_GROUP,
)
from kernels.rng import TWO32, below, draw, pick


@jit
def neighbour(i, j, d):
    """Site reached from ``(i, j)`` in Moore direction ``d`` in 0..7 (row-major, centre skipped)."""
    m = d + (d >= 4)
    return i + m // 3 - 1, j + m % 3 - 1


@jit
def inside(n, i, j):
    """True if ``(i, j)`` lies on an ``n x n`` lattice."""
    return 0 <= i < n and 0 <= j < n


@jit
def is_free(cell, tissue, i, j):
    """True if a cell may be placed at ``(i, j)``: on the lattice, occupiable, empty."""
    n = cell.shape[0]
    return inside(n, i, j) and tissue[i, j] <= OCCUPIABLE and cell[i, j] == EMPTY


@jit
def cd19_level(v):
    """CD19 level (0..255) of an ``ANTIGEN`` value: its low byte."""
    return np.int64(v) & LEVEL_MASK


@jit
def cd22_level(v):
    """CD22 level (0..255) of an ``ANTIGEN`` value: its high byte."""
    return (np.int64(v) >> CD22_SHIFT) & LEVEL_MASK


@jit
def pack(l19, l22):
    """The ``ANTIGEN`` value of a cell with CD19 level ``l19`` and CD22 level ``l22`` (each 0..255)."""
    return (np.int64(l22) << CD22_SHIFT) | np.int64(l19)


@jit
def target_level(v, mode):
    """Antigen level that a CAR with target choice ``mode`` sees on a cell whose ``ANTIGEN`` value is ``v``.

    ``TARGET_CD19``: the CD19 level; ``TARGET_CD22``: the CD22 level;
    ``TARGET_BOTH`` (a tandem or bispecific OR-gate CAR): the higher of the
    two. Simplification: an OR-gate CAR is triggered by either antigen, and
    here it responds as if to the denser one alone; the two antigens do not
    add up, and the same density response (``antigen_rates``, one table) is
    assumed for both binders.
    """
    l19 = cd19_level(v)
    if mode == TARGET_CD19:
        return l19
    l22 = cd22_level(v)
    if mode == TARGET_CD22:
        return l22
    return max(l19, l22)


@jit
def is_target(cell, traits, i, j, mode):
    """True if the cell at ``(i, j)`` carries the CAR's target (see :func:`target_level`).

    A blast or B cell by its own antigen; a CAR-T cell by antigen it took from
    one by trogocytosis (:func:`strip`), so other CAR-T cells kill it
    (fratricide, Hamieh 2019). Every other cell has an ``ANTIGEN`` of 0.
    """
    k = cell[i, j]
    return (k == BLAST or k == BCELL or k == CART) and target_level(traits[i, j, ANTIGEN], mode) > 0


@jit
def strip(traits, ti, tj, blast, mode, rates, key, step, site):
    """Trogocytosis: the engaging CAR-T cell takes target antigen off the blast or B cell at ``(ti, tj)``.

    Each antigen the CAR binds (``mode``) loses ``rates[R_TROG_LEVELS]``
    levels (one more with probability ``rates[R_TROG_FRAC]``; 0 at least),
    which its ``DEFICIT`` slot keeps, so the cell re-expresses them later
    (:func:`recover`); a stripped ``blast`` without another route gets
    ``ROUTE_DOWNREGULATION``. Returns the ``ANTIGEN`` value the
    stripped molecules make on the T cell: each stripped antigen at the
    target's level before the strip less ``rates[R_TROG_OFFSET]`` (the
    stripped share of the molecules; level 0 when fewer than ten are left).
    """
    levels = rates[R_TROG_LEVELS]
    if below(key, step, site, P_TROG, rates[R_TROG_FRAC]):
        levels += 1
    l19, l22, d19, d22 = levels_of(traits, ti, tj)
    t19 = np.int64(0)
    t22 = np.int64(0)
    offset = rates[R_TROG_OFFSET]
    if mode != TARGET_CD22 and l19 > 0:
        t19 = max(l19 - offset, 0)
        left = max(l19 - levels, 0)
        d19 += l19 - left
        l19 = left
    if mode != TARGET_CD19 and l22 > 0:
        t22 = max(l22 - offset, 0)
        left = max(l22 - levels, 0)
        d22 += l22 - left
        l22 = left
    set_levels(traits, ti, tj, l19, l22, d19, d22)
    if blast and traits[ti, tj, ROUTE] == ROUTE_NONE and (d19 > 0 or d22 > 0):
        traits[ti, tj, ROUTE] = ROUTE_DOWNREGULATION
    return pack(t19, t22)


@jit
def recover(traits, i, j):
    """Re-expression after trogocytosis: one level of each stripped antigen comes back (its deficit less one).

    A blast whose deficit is gone leaves ``ROUTE_DOWNREGULATION`` (a B cell never has it).
    """
    l19, l22, d19, d22 = levels_of(traits, i, j)
    if d19 > 0:
        d19 -= 1
        l19 = min(l19 + 1, N_LEVELS - 1)
    if d22 > 0:
        d22 -= 1
        l22 = min(l22 + 1, N_LEVELS - 1)
    set_levels(traits, i, j, l19, l22, d19, d22)
    settle_route(traits, i, j)


@jit
def levels_of(traits, i, j):
    """The cell's CD19 and CD22 levels and its trogocytosis deficit of each: ``(l19, l22, d19, d22)``."""
    v = traits[i, j, ANTIGEN]
    d = traits[i, j, DEFICIT]
    return cd19_level(v), cd22_level(v), cd19_level(d), cd22_level(d)


@jit
def set_levels(traits, i, j, l19, l22, d19, d22):
    """Write a cell's CD19 and CD22 levels and deficits (the inverse of :func:`levels_of`)."""
    traits[i, j, ANTIGEN] = pack(l19, l22)
    traits[i, j, DEFICIT] = pack(d19, d22)


@jit
def settle_route(traits, i, j):
    """A down-regulated cell (``ROUTE_DOWNREGULATION``) without a deficit left carries its target again: no route."""
    if traits[i, j, ROUTE] == ROUTE_DOWNREGULATION and traits[i, j, DEFICIT] == 0:
        traits[i, j, ROUTE] = ROUTE_NONE


@jit
def inherit_level(level, noise, u):
    """Daughter's antigen level: ``level`` plus ``noise[u >> 24]`` (``u`` a 32-bit draw), kept in ``1..255``."""
    return min(max(level + noise[u >> 24], 1), N_LEVELS - 1)


@jit
def clear(cell, traits, i, j):
    """Remove the cell at ``(i, j)``."""
    cell[i, j] = EMPTY
    for t in range(N_TRAITS):
        traits[i, j, t] = 0


@jit
def copy_cell(cell, traits, si, sj, di, dj):
    """Copy the cell at ``(si, sj)`` with all its traits to ``(di, dj)``."""
    cell[di, dj] = cell[si, sj]
    for t in range(N_TRAITS):
        traits[di, dj, t] = traits[si, sj, t]


@jit
def swap_cells(cell, traits, ai, aj, bi, bj):
    """Exchange the cells (and traits) at two sites."""
    k = cell[ai, aj]
    cell[ai, aj] = cell[bi, bj]
    cell[bi, bj] = k
    for t in range(N_TRAITS):
        v = traits[ai, aj, t]
        traits[ai, aj, t] = traits[bi, bj, t]
        traits[bi, bj, t] = v


@jit
def stamp(step):
    """The ``ACTED`` value of a cell that acted (or appeared) in ``step``: ``1 + step mod 65535``.

    Never 0 (:data:`kernels.layout.UNVISITED`). A CAR-T cell acts every step, so its stale
    stamp never equals the current one; a tissue cell that has not acted for a multiple of
    65535 steps (91 days at 2-min steps) carries the current stamp and would skip an action
    it is drawn for in that one step (a chance of ~1e-3 per such step; accepted).
    """
    return 1 + step % TRAIT_MAX


@jit
def bump(traits, i, j, t):
    """Add one to a counting trait, saturating at its maximum."""
    v = traits[i, j, t]
    if v < TRAIT_MAX:
        traits[i, j, t] = v + 1


@jit
def nth_direction(mask, m):
    """The ``m``-th (from 0) direction whose bit is set in the 8-bit ``mask``, in direction order; -1 if none."""
    for d in range(8):
        if (mask >> d) & 1:
            if m == 0:
                return d
            m -= 1
    return -1


@jit
def free_neighbour(cell, tissue, i, j, key, step, site, purpose):
    """A uniformly chosen free Moore neighbour as direction 0..7, or -1 if none."""
    count = 0
    mask = 0
    for d in range(8):
        ni, nj = neighbour(i, j, d)
        if is_free(cell, tissue, ni, nj):
            count += 1
            mask |= 1 << d
    if count == 0:
        return -1
    return nth_direction(mask, pick(key, step, site, purpose, count))


@jit
def displaceable_neighbour(cell, i, j, key, step, site):
    """A uniformly chosen Moore neighbour holding a normal hematopoietic cell (``NORMAL`` or ``BCELL``), or -1."""
    n = cell.shape[0]
    count = 0
    mask = 0
    for d in range(8):
        ni, nj = neighbour(i, j, d)
        if inside(n, ni, nj) and (cell[ni, nj] == NORMAL or cell[ni, nj] == BCELL):
            count += 1
            mask |= 1 << d
    if count == 0:
        return -1
    return nth_direction(mask, pick(key, step, site, P_PLACE, count))


@jit
def sublattice_order(key, step, order):
    """Fill ``order[0:9]`` with a permutation of the nine sublattices for ``step``.

    Fisher-Yates shuffle driven by :func:`kernels.rng.draw`; sublattice ``k``
    has offset ``(k // 3, k % 3)``.
    """
    for k in range(9):
        order[k] = k
    for k in range(8, 0, -1):
        r = pick(key, step, k, P_ORDER, k + 1)
        v = order[k]
        order[k] = order[r]
        order[r] = v


@jit
def act_tissue_cell(i, j, u, cell, tissue, traits, kind_rates, cd19_noise, rates, key, step):
    """Blast, B cell or other marrow cell: die, or divide into a free neighbour.

    ``u`` is the site's decision value, uniform on ``[0, turnover[TV_BOUND])``
    (:func:`needs_visit`; see :mod:`kernels.turnover`). It decides the competing events, whose table probabilities
    (rows ``KR_DIE``, ``KR_DIVIDE``, ``KR_CONVERT``) are checked to sum to at
    most 1: death if ``u < die``; else an attempt to divide if
    ``u < die + divide`` (it happens if a neighbour is free; a blast with no
    free neighbour displaces, with probability ``rates[R_DISPLACE]``, a
    uniformly chosen ``NORMAL`` or ``BCELL`` neighbour, which leaves the
    window: leukemic growth is not held back by normal hematopoiesis, while
    normal cells divide only into space); else, for
    another hematopoietic cell, becoming a normal B cell (CD19 level
    ``rates[R_BCELL_LEVEL]``, CD22 level ``rates[R_BCELL_CD22_LEVEL]``) if
    ``u < die + divide + convert``.
    A blast daughter inherits CD19 with a level change drawn from
    ``cd19_noise`` (256 entries, indexed by 8 random bits), and loses it
    altogether with probability ``rates[R_LOSS]`` (antigen escape); an
    antigen-negative parent has antigen-negative daughters. CD22 is inherited
    the same way and independently: its own draws (``P_LOSS_CD22``,
    ``P_NOISE_CD22``), made only for a CD22+ parent, the same noise table, and
    loss ``rates[R_LOSS_CD22]``; so a blast without CD22 draws and decides
    exactly what it did before CD22 existed. With probability
    ``rates[R_SWITCH]`` (drawn only when it is not 0) the daughter switches
    to the myeloid lineage: it loses CD19 and CD22 and its route
    (``traits[ROUTE]``, the blast's ``STATE`` slot) becomes
    ``ROUTE_LINEAGE``; a daughter that lost the product's target otherwise
    gets ``ROUTE_MUTATION``; every other daughter keeps its mother's route.
    A daughter inherits its mother's trogocytosis ``DEFICIT`` (levels it will
    re-express) for every antigen it did not lose. Before all this, a cell
    with a deficit re-expresses one level of it with probability
    ``rates[R_RECOVER]`` (:func:`recover`): drivers visit such a cell every
    step (:func:`needs_visit`).
    """
    n = cell.shape[0]
    site = i * n + j
    kind = cell[i, j]
    if traits[i, j, DEFICIT] != 0 and below(key, step, site, P_RECOVER, rates[R_RECOVER]):
        recover(traits, i, j)
    die = kind_rates[KR_DIE, kind]
    if u < die:
        clear(cell, traits, i, j)
        return EV_DIED + kind
    divide = die + kind_rates[KR_DIVIDE, kind]
    if u >= divide:
        if u < divide + kind_rates[KR_CONVERT, kind]:
            cell[i, j] = BCELL
            traits[i, j, ANTIGEN] = pack(rates[R_BCELL_LEVEL], rates[R_BCELL_CD22_LEVEL])
            return EV_BCELL_MADE
        return EV_NONE
    d = free_neighbour(cell, tissue, i, j, key, step, site, P_PLACE)
    displacing = d < 0
    if displacing:
        if kind != BLAST or not below(key, step, site, P_DISPLACE, rates[R_DISPLACE]):
            return EV_NONE
        d = displaceable_neighbour(cell, i, j, key, step, site)
        if d < 0:
            return EV_NONE
    di, dj = neighbour(i, j, d)
    event = EV_DISPLACED + cell[di, dj] if displacing else EV_BORN + kind
    copy_cell(cell, traits, i, j, di, dj)
    traits[di, dj, ACTED] = stamp(step)
    if kind == BLAST:
        v = traits[i, j, ANTIGEN]
        l19, l22, d19, d22 = levels_of(traits, i, j)
        if l19 > 0:
            if below(key, step, site, P_LOSS, rates[R_LOSS]):
                l19 = 0
                d19 = 0
            else:
                l19 = inherit_level(l19, cd19_noise, draw(key, step, site, P_NOISE))
        if l22 > 0:
            if below(key, step, site, P_LOSS_CD22, rates[R_LOSS_CD22]):
                l22 = 0
                d22 = 0
            else:
                l22 = inherit_level(l22, cd19_noise, draw(key, step, site, P_NOISE_CD22))
        if rates[R_SWITCH] > 0 and below(key, step, site, P_SWITCH, rates[R_SWITCH]):
            l19 = 0
            l22 = 0
            d19 = 0
            d22 = 0
            traits[di, dj, ROUTE] = ROUTE_LINEAGE
        set_levels(traits, di, dj, l19, l22, d19, d22)
        mode = rates[R_TARGET_MODE]
        route = traits[di, dj, ROUTE]
        if ((route == ROUTE_NONE or route == ROUTE_DOWNREGULATION) and target_level(v, mode) > 0
                and target_level(traits[di, dj, ANTIGEN], mode) == 0):
            traits[di, dj, ROUTE] = ROUTE_MUTATION
        settle_route(traits, di, dj)
    return event


@jit
def engage(traits, i, j, d, rates, key, step, site):
    """Stimulate the CAR-T cell at ``(i, j)`` by engaging the target in direction ``d``.

    Returns an event: the cell may die of activation-induced death
    (``rates[R_AICD]``), or, on reaching ``rates[R_EXHAUST_STIM]``
    engagements, die (``rates[R_EXHAUST_DIE]``) or exhaust. Otherwise it
    becomes an ACTIVE effector (a memory cell is re-activated) holding the
    target.
    """
    bump(traits, i, j, STIM)
    if below(key, step, site, P_AICD, rates[R_AICD]):
        return EV_DIED + CART
    if traits[i, j, STIM] >= rates[R_EXHAUST_STIM]:
        if below(key, step, site, P_EXHAUST, rates[R_EXHAUST_DIE]):
            return EV_DIED + CART
        traits[i, j, STATE] = EXHAUSTED
        traits[i, j, TIMER] = 0
        return EV_EXHAUSTED
    traits[i, j, TARGET] = d + 1
    traits[i, j, PHENO] = EFFECTOR
    traits[i, j, STATE] = ACTIVE
    traits[i, j, TIMER] = rates[R_ACTIVE_STEPS]
    return EV_NONE


@jit
def antigen_row(tissue, i, j, row):
    """Row of the antigen table for a target at ``(i, j)``: the protected one on a niche site."""
    return row + 2 if tissue[i, j] == NICHE else row


@jit(inline=True)
def act_cart(i, j, cell, tissue, traits, chemokine, coarsen, kind_rates, antigen_rates, rates, key, step):
    """One CAR-T cell: die, kill or stay engaged, divide, convert to memory, engage, or migrate.

    In order, stopping at the first that applies:

    1. death with probability ``kind_rates[KR_DIE, CART]`` (effector or
       exhausted) or ``rates[R_MEMORY_DIE]`` (memory);
    2. the activation timer runs down (ACTIVE -> RESTING when it reaches 0);
    The ``level`` of a target is its :func:`target_level` for the CAR's
    target choice ``rates[R_TARGET_MODE]``; a blast or B cell whose level is
    0 is not a target.

    3. if engaged: kill the target with probability
       ``antigen_rates[AR_KILL, level]`` (``AR_KILL_NICHE`` for a target on a
       niche site): the target's site empties, the cell counts a kill and stays
       ACTIVE for ``rates[R_ACTIVE_STEPS]``; else detach with probability
       ``rates[R_DETACH]``. An engaged cell does nothing else; a target that
       has gone releases it;
    4. an ACTIVE cell with divisions left divides into a free neighbour with
       probability ``rates[R_PROLIF]``: both cells count the division and
       keep half the mother's engagement count (assumption: the exhaustion
       load is shared by the daughters; without it a lineage could never
       out-divide its own stimulation), the daughter starts with no kills;
    5. a RESTING effector becomes a memory cell with probability ``rates[R_MEMORY]``;
    6. a cell that is not exhausted and has target neighbours picks one at
       random and engages it with probability ``antigen_rates[AR_ATTACH, level]``
       (``AR_ATTACH_NICHE`` on a niche site); see :func:`engage` for
       stimulation, activation-induced death and exhaustion. Engaging a blast
       or B cell strips antigen off it (trogocytosis, :func:`strip`, when
       ``rates[R_TROG_*]`` are not 0): the cell keeps the denser of what it
       carried and what it took, per antigen, and loses one level of each
       with probability ``rates[R_SHED]`` per step (before step 2); while it
       carries the CAR's target, other CAR-T cells engage and kill it like
       any target (fratricide), and each such engagement counts towards
       their exhaustion;
    7. otherwise migrate with probability ``rates[R_MOVE]`` to one of the 8
       neighbours: up the chemokine gradient with probability ``rates[R_CHEMO]``
       (ties at random), else uniformly. An empty marrow site is taken; a
       blast, B cell or other marrow cell is swapped with probability
       ``rates[R_SWAP]``; bone, sinusoid, stroma and T cells block the move.
    """
    n = cell.shape[0]
    site = i * n + j
    mode = rates[R_TARGET_MODE]
    memory = traits[i, j, PHENO] == MEMORY
    die = rates[R_MEMORY_DIE] if memory else kind_rates[KR_DIE, CART]
    if below(key, step, site, P_DIE, die):
        clear(cell, traits, i, j)
        return EV_DIED + CART
    taken = traits[i, j, ANTIGEN]
    if taken != 0 and below(key, step, site, P_SHED, rates[R_SHED]):
        traits[i, j, ANTIGEN] = pack(max(cd19_level(taken) - 1, 0), max(cd22_level(taken) - 1, 0))
    state = traits[i, j, STATE]
    timer = traits[i, j, TIMER]
    if timer > 0:
        traits[i, j, TIMER] = timer - 1
        if timer == 1 and state == ACTIVE:
            traits[i, j, STATE] = RESTING
            state = RESTING
    engaged = np.int64(traits[i, j, TARGET])
    if engaged > 0:
        ti, tj = neighbour(i, j, engaged - 1)
        if is_target(cell, traits, ti, tj, mode):
            kill = antigen_rates[antigen_row(tissue, ti, tj, AR_KILL), target_level(traits[ti, tj, ANTIGEN], mode)]
            if below(key, step, site, P_KILL, kill):
                victim = cell[ti, tj]
                clear(cell, traits, ti, tj)
                traits[i, j, TARGET] = 0
                bump(traits, i, j, KILLS)
                traits[i, j, STATE] = ACTIVE
                traits[i, j, TIMER] = rates[R_ACTIVE_STEPS]
                return EV_KILLED + victim
            if below(key, step, site, P_DETACH, rates[R_DETACH]):
                traits[i, j, TARGET] = 0
            return EV_NONE
        traits[i, j, TARGET] = 0
    if (
        state == ACTIVE
        and traits[i, j, DIVS] < rates[R_MAX_DIVS]
        and below(key, step, site, P_PROLIF, rates[R_PROLIF])
    ):
        d = free_neighbour(cell, tissue, i, j, key, step, site, P_PLACE)
        if d >= 0:
            di, dj = neighbour(i, j, d)
            bump(traits, i, j, DIVS)
            traits[i, j, STIM] = traits[i, j, STIM] // 2
            copy_cell(cell, traits, i, j, di, dj)
            traits[di, dj, ACTED] = stamp(step)
            traits[di, dj, KILLS] = 0
            return EV_BORN + CART
    if state == RESTING and not memory and below(key, step, site, P_MEMORY, rates[R_MEMORY]):
        traits[i, j, PHENO] = MEMORY
        return EV_NONE
    if state != EXHAUSTED:
        targets = 0
        mask = 0
        for d in range(8):
            ni, nj = neighbour(i, j, d)
            if inside(n, ni, nj) and is_target(cell, traits, ni, nj, mode):
                targets += 1
                mask |= 1 << d
        if targets > 0:
            d = nth_direction(mask, pick(key, step, site, P_TARGET, targets))
            ni, nj = neighbour(i, j, d)
            level = target_level(traits[ni, nj, ANTIGEN], mode)
            attach = antigen_rates[antigen_row(tissue, ni, nj, AR_ATTACH), level]
            if below(key, step, site, P_ATTACH, attach):
                e = engage(traits, i, j, d, rates, key, step, site)
                if e == EV_DIED + CART:
                    clear(cell, traits, i, j)
                elif e == EV_NONE and cell[ni, nj] != CART and (rates[R_TROG_LEVELS] > 0 or rates[R_TROG_FRAC] > 0):
                    got = strip(traits, ni, nj, cell[ni, nj] == BLAST, mode, rates, key, step, site)
                    had = traits[i, j, ANTIGEN]
                    traits[i, j, ANTIGEN] = pack(max(cd19_level(had), cd19_level(got)),
                                                 max(cd22_level(had), cd22_level(got)))
                return e
            return EV_NONE
    if not below(key, step, site, P_MOVE, rates[R_MOVE]):
        return EV_NONE
    if below(key, step, site, P_CHEMO, rates[R_CHEMO]):
        d = uphill(chemokine, coarsen, i, j, n, key, step, site)
    else:
        d = pick(key, step, site, P_DIR, 8)
    ti, tj = neighbour(i, j, d)
    if not inside(n, ti, tj) or tissue[ti, tj] > OCCUPIABLE:
        return EV_NONE
    other = cell[ti, tj]
    if other == EMPTY:
        copy_cell(cell, traits, i, j, ti, tj)
        clear(cell, traits, i, j)
        traits[ti, tj, ACTED] = stamp(step)
    elif (other == BLAST or other == BCELL or other == NORMAL) and below(
        key, step, site, P_SWAP, rates[R_SWAP]
    ):
        swap_cells(cell, traits, i, j, ti, tj)
        traits[ti, tj, ACTED] = stamp(step)
    return EV_NONE


@jit
def uphill(field, coarsen, i, j, n, key, step, site):
    """Direction 0..7 of an on-lattice neighbour whose field voxel holds the most.

    Ties (always the case inside a flat region or a voxel) are broken
    uniformly at random, so a flat field gives an unbiased random walk.
    """
    best_value = np.int64(-1)
    ties = 0
    mask = 0
    for d in range(8):
        ni, nj = neighbour(i, j, d)
        if inside(n, ni, nj):
            v = field[ni // coarsen, nj // coarsen]
            if v > best_value:
                best_value = v
                ties = 1
                mask = 1 << d
            elif v == best_value:
                ties += 1
                mask |= 1 << d
    return nth_direction(mask, pick(key, step, site, P_DIR, ties))


@jit(inline=True)
def act_site(i, j, u, cell, tissue, traits, chemokine, coarsen, kind_rates, antigen_rates, cd19_noise, rates, key,
             step):
    """Visit site ``(i, j)`` in a sublattice pass (``u``: a tissue cell's decision value); returns an event code."""
    kind = cell[i, j]
    if kind == EMPTY or kind == STROMA or traits[i, j, ACTED] == stamp(step):
        return EV_NONE
    traits[i, j, ACTED] = stamp(step)
    if kind == CART:
        return act_cart(i, j, cell, tissue, traits, chemokine, coarsen, kind_rates, antigen_rates, rates, key, step)
    return act_tissue_cell(i, j, u, cell, tissue, traits, kind_rates, cd19_noise, rates, key, step)


@jit
def candidate_mask(key, step, first, turnover):
    """Which sites of a turnover group are candidates this step: bit ``r`` for its ``r``-th site.

    ``first`` is the flat index of the group's first site (it keys the
    draws). The count is drawn from the group's binomial distribution
    function ``turnover[TV_CDF:]``, the sites as a uniform subset of that size
    by Floyd's algorithm (see :mod:`kernels.turnover`).
    """
    group = turnover[TV_GROUP]
    u = draw(key, step, first, P_GROUP)
    c = 0
    while u >= turnover[TV_CDF + c]:
        c += 1
    mask = np.int64(0)
    for t in range(group - c, group):
        r = pick(key, step, first, P_SLOT + t - (group - c), t + 1)
        if (mask >> r) & 1:
            r = t
        mask |= np.int64(1) << r
    return mask


@jit
def decision_value(key, step, site, b):
    """A candidate's decision value: its ``P_DIE`` draw scaled to ``[0, b)``."""
    return np.int64((np.uint64(draw(key, step, site, P_DIE)) * np.uint64(b)) >> np.uint64(32))


@jit
def needs_visit(i, j, cell, traits, kind_rates, rates, turnover, key, step):
    """The value to pass :func:`act_site` for ``(i, j)`` this step, or -1 if nothing can happen there.

    Empty and stromal sites never act; a CAR-T cell always does (0). A blast,
    B cell or other marrow cell acts only if its site is a candidate of its
    turnover group (:func:`candidate_mask`; the group is ``turnover[TV_GROUP]``
    consecutive sites of its row in its sublattice) and its decision value is
    below its kind's ``die + divide + convert`` (:mod:`kernels.turnover`;
    with ``turnover[TV_GROUP]`` = 0, the per-site scheme, every site is a candidate).
    Skipping leaves the dynamics unchanged (the ``ACTED`` stamp of a
    non-moving cell that does nothing is never read). A blast or B cell with
    a trogocytosis ``DEFICIT`` acts every step while ``rates[R_RECOVER]`` is
    not 0 (to re-express its antigen, :func:`act_tissue_cell`): it gets
    ``turnover[TV_BOUND]``, which decides no turnover event, where it would
    otherwise be skipped.
    """
    k = cell[i, j]
    if k == CART:
        return 0
    if k == EMPTY or k == STROMA:
        return -1
    # a stripped cell that re-expresses its antigen acts every step, with no turnover event unless drawn for one
    idle = turnover[TV_BOUND] if rates[R_RECOVER] > 0 and traits[i, j, DEFICIT] != 0 else -1
    n = cell.shape[0]
    group = turnover[TV_GROUP]
    if group > 0:  # else the per-site scheme: every site is a candidate, its draw its value (bound 2**32)
        r = (j // 3) % group  # j // 3: the site's index in its row of its sublattice
        if not (candidate_mask(key, step, i * n + j - 3 * r, turnover) >> r) & 1:
            return idle
    v = decision_value(key, step, i * n + j, turnover[TV_BOUND])
    return v if v < kind_rates[KR_DIE, k] + kind_rates[KR_DIVIDE, k] + kind_rates[KR_CONVERT, k] else idle


@jit
def enter_threshold(quota, empty_portals):
    """Per-site entry threshold that spreads ``quota / 2**32`` expected entries over the empty portals."""
    if empty_portals == 0:
        return 0
    return min(quota // empty_portals, 1 << 32)


@jit
def traffic_site(i, j, cell, tissue, traits, enter_thr, memory_thr, exit_threshold, seed_thr, negative_thr,
                 preexisting_thr, mutation_thr, lineage_thr, entry_levels, mode, key, step):
    """Blood traffic at a perivascular site: a CAR-T cell or a blast enters an empty one, a free CAR-T cell leaves.

    Drivers visit only the perivascular sites (``portals``). Before the visits
    they count the empty portals and set ``enter_thr`` and ``seed_thr`` with
    :func:`enter_threshold`, so the expected numbers of entries equal the
    host's quotas (blood CAR-T homing to this window; reservoir blasts
    homing to it) however many portals are occupied. An entering CAR-T cell
    is a memory cell with probability ``memory_thr / 2**32`` (the memory share
    of blood CAR-T), else a resting effector. An entering blast takes its CD19
    and CD22 levels from the quantile tables ``entry_levels[0]`` and
    ``entry_levels[1]`` (one random byte each); with probability
    ``negative_thr / 2**32`` it lacks the product's target (``mode``: the
    target levels are 0) and then carries an escape route (``ROUTE``): the
    pre-existing one with probability ``preexisting_thr / 2**32``, else the
    mutation route below ``mutation_thr / 2**32`` (cumulative), else the
    lineage switch below ``lineage_thr / 2**32``, which also takes both
    antigens away, else masking (a blast transduced with the CAR in
    manufacturing, whose own CAR hides the target: Ruella 2018) (one more
    draw, ``P_SEED_ROUTE``, made only for a negative blast). CAR-T entry is decided
    first. A cell engaged with a target does not leave.
    """
    n = cell.shape[0]
    site = i * n + j
    kind = cell[i, j]
    if kind == EMPTY:
        if below(key, step, site, P_ENTER, enter_thr):
            clear(cell, traits, i, j)
            cell[i, j] = CART
            traits[i, j, ACTED] = stamp(step)
            if below(key, step, site, P_PHENO, memory_thr):
                traits[i, j, PHENO] = MEMORY
            return EV_ENTERED
        if below(key, step, site, P_SEED, seed_thr):
            u = draw(key, step, site, P_SEED_LEVEL)
            l19 = entry_levels[0, u & LEVEL_MASK]
            l22 = entry_levels[1, (u >> CD22_SHIFT) & LEVEL_MASK]
            route = ROUTE_NONE
            if below(key, step, site, P_SEED_NEG, negative_thr):
                if mode != TARGET_CD22:
                    l19 = 0
                if mode != TARGET_CD19:
                    l22 = 0
                route = ROUTE_PREEXISTING
                if preexisting_thr < TWO32:
                    u = draw(key, step, site, P_SEED_ROUTE)
                    if u >= preexisting_thr:
                        route = (ROUTE_MUTATION if u < mutation_thr else ROUTE_LINEAGE if u < lineage_thr
                                 else ROUTE_MASKING)
                if route == ROUTE_LINEAGE:
                    l19 = 0
                    l22 = 0
            clear(cell, traits, i, j)
            cell[i, j] = BLAST
            traits[i, j, ROUTE] = route
            traits[i, j, ANTIGEN] = pack(l19, l22)
            traits[i, j, ACTED] = stamp(step)
            return EV_SEEDED
    elif kind == CART and traits[i, j, TARGET] == 0:
        if below(key, step, site, P_EXIT, exit_threshold):
            clear(cell, traits, i, j)
            return EV_EXITED
    return EV_NONE
