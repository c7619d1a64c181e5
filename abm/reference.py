"""The core rules written the plain Mesa way: one ``CellAgent`` object per cell.

This module is the slow, obviously correct counterpart of the kernels (STYLE 8)
and the baseline of ``python -m benchmarks``. It keeps the *core rules* only:

* CAR-T cells (:class:`CarTCell`): natural death, the activation timer,
  kill or detach while engaged, proliferation while activated, engagement of a
  neighbour carrying the CAR's target antigen (CD19, CD22 or either, as the
  tables' ``R_TARGET_MODE`` says), migration to one of the 8 neighbours including the swap with
  a marrow cell;
* blasts, normal B cells and other marrow cells (:class:`TissueCell`): death,
  and division into a free neighbour (a blast daughter's CD19 level drifts, and
  its CD22 level if it has one);
* stromal cells (:class:`StromalCell`) occupy a site and do nothing.

Left out on purpose: cytokine / chemokine fields, chemotaxis, and the blood
compartment with CAR-T traffic through sinusoids. Instead CAR-T cells are
seeded at given sites or at random free sites. To compare like with like, run
the kernels with :func:`core_tables` (fields and chemotaxis off) and
``enter_threshold = exit_threshold = 0``.

Same probabilities
    Per-step probabilities are taken from the integer tables of
    :func:`abm.rates.build_tables` (``threshold / 2**32``), so the reference and
    the kernels draw every decision with the same probability.
Same order of a cell's decisions
    :meth:`CarTCell.step` follows :func:`kernels.rules.act_cart` and
    :meth:`TissueCell.step` follows :func:`kernels.rules.act_tissue_cell`
    line by line (death, timer, engaged kill / detach, proliferate, engage,
    migrate), with an engagement stored, as in the kernels, as the direction
    of the target rather than the target itself.
Different update order
    Agents act in random-sequential order (``self.agents.shuffle_do("step")``,
    a fresh shuffle every step) instead of the nine sublattice passes of
    :mod:`kernels.rules`. Cells born during a step first act in the next step,
    as in the kernels; a cell displaced by a swap keeps its turn (in the
    kernels it may lose it). The two implementations therefore agree in
    distribution, not bit for bit; ``tests/test_reference.py`` checks the
    agreement statistically.

Randomness comes only from the model's generators (``self.random`` for
decisions, ``self.rng`` only through Mesa), seeded by ``rng=seed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import mesa
import numpy as np
from mesa.discrete_space import CellAgent, OrthogonalMooreGrid

from abm.marrow import build_window
from abm.params import Params
from abm.rates import build_tables
from kernels import LatticeState, RuleTables
from kernels import layout as L

TWO32 = float(1 << 32)

# Moore offsets in the kernels' direction order (kernels.rules.neighbour): direction d is OFFSETS[d].
OFFSETS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
DIRECTION = {offset: d for d, offset in enumerate(OFFSETS)}
TARGET_KINDS = (L.BLAST, L.BCELL)
SWAPPABLE_KINDS = (L.BLAST, L.BCELL, L.NORMAL)


def core_tables(params: Params, seed: int) -> RuleTables:
    """Rule tables for the core rules only: :func:`abm.rates.build_tables` with the rest switched off.

    Off: secretion, diffusion sub-steps and decay of every field; chemotaxis
    (``R_CHEMO``); the CAR-T life cycle beyond killing and dividing
    (activation-induced death, exhaustion, memory conversion); CD19 and CD22 loss and lineage switch;
    trogocytosis (and with it fratricide); blasts displacing normal cells; B lymphopoiesis; niche
    protection (the niche rows equal the open ones).
    Unchanged: death, division, attach, kill, detach, migrate, swap,
    proliferation. Use these tables on the kernel side when comparing with
    :class:`ReferenceModel`.
    """
    tables = build_tables(params, seed)
    tables.field_rates[:, L.FR_SUBSTEPS] = 0
    tables.field_rates[:, L.FR_SECRETE_ACTIVE_CART] = 0
    tables.field_rates[:, L.FR_SECRETE_STROMA] = 0
    tables.rates[L.R_CHEMO] = 0
    tables.rates[L.R_AICD] = 0
    tables.rates[L.R_EXHAUST_STIM] = L.TRAIT_MAX
    tables.rates[L.R_MEMORY] = 0
    tables.rates[L.R_LOSS] = 0
    tables.rates[L.R_LOSS_CD22] = 0
    tables.rates[L.R_SWITCH] = 0
    tables.rates[[L.R_TROG_LEVELS, L.R_TROG_FRAC, L.R_TROG_OFFSET, L.R_RECOVER, L.R_SHED]] = 0
    tables.rates[L.R_DISPLACE] = 0
    tables.kind_rates[L.KR_CONVERT, :] = 0
    tables.antigen_rates[L.AR_ATTACH_NICHE] = tables.antigen_rates[L.AR_ATTACH]
    tables.antigen_rates[L.AR_KILL_NICHE] = tables.antigen_rates[L.AR_KILL]
    return tables


def free_sites(state: LatticeState) -> np.ndarray:
    """Flat indices of the sites a cell may be placed on (marrow or perivascular, empty), ascending."""
    open_ = (state.tissue <= L.OCCUPIABLE) & (state.cell == L.EMPTY)
    return np.flatnonzero(open_)


def random_free_sites(state: LatticeState, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``count`` distinct free sites ``(i, j)`` drawn uniformly with ``rng``.

    Raises
    ------
    ValueError
        If fewer than ``count`` sites are free.
    """
    sites = free_sites(state)
    if count < 0 or count > sites.size:
        raise ValueError(f"count = {count}: expected 0 <= count <= {sites.size} (the free sites of the window)")
    chosen = np.sort(rng.choice(sites, size=count, replace=False))
    n = state.cell.shape[1]
    return [(int(s // n), int(s % n)) for s in chosen]


def place_cart(state: LatticeState, sites: Iterable[tuple[int, int]]) -> None:
    """Put a resting, unengaged CAR-T cell at each of ``sites`` (in place).

    The cells get ``ACTED = UNVISITED``, like the cells of a freshly built
    window, so that they act in the first step whatever its number.

    Raises
    ------
    ValueError
        If a site is off the lattice, not marrow, or occupied.
    """
    n = state.cell.shape[0]
    for i, j in sites:
        if not (0 <= i < n and 0 <= j < n) or state.tissue[i, j] > L.OCCUPIABLE or state.cell[i, j] != L.EMPTY:
            raise ValueError(f"site ({i}, {j}) is not a free marrow site of the {n} x {n} window")
        state.cell[i, j] = L.CART
        state.traits[i, j, :] = 0
        state.traits[i, j, L.ACTED] = L.UNVISITED


def target_level(antigen: int, mode: int) -> int:
    """The level a CAR with target choice ``mode`` sees on ``antigen``: :func:`kernels.rules.target_level` in Python."""
    cd19 = antigen & L.LEVEL_MASK
    if mode == L.TARGET_CD19:
        return cd19
    cd22 = antigen >> L.CD22_SHIFT
    if mode == L.TARGET_CD22:
        return cd22
    return max(cd19, cd22)


def _occupant(site) -> MarrowCell | None:
    """Return the agent at a Mesa grid cell, or ``None`` when it is empty."""
    agents = site.agents
    return agents[0] if agents else None


def _is_open(site) -> bool:
    """Tell whether a cell may be placed at a Mesa grid cell (marrow tissue, empty)."""
    return site.tissue <= L.OCCUPIABLE and site.is_empty


class MarrowCell(CellAgent):
    """A cell occupying one site of the window.

    Parameters
    ----------
    model : ReferenceModel
    site : mesa.discrete_space.Cell
        The grid cell it occupies (capacity one).
    antigen : int
        The kernels' ``ANTIGEN`` trait: CD19 level (low byte) and CD22 level
        (high byte), each 0..255 (0 = antigen-negative; see :mod:`kernels.layout`).

    Attributes
    ----------
    level : int
        The antigen level the CAR sees (:func:`target_level` for the model's
        target choice), fixed for the cell's life.
    """

    kind = L.EMPTY

    def __init__(self, model: ReferenceModel, site, antigen: int = 0):
        super().__init__(model)
        self.antigen = int(antigen)
        self.level = target_level(self.antigen, model.target_mode)
        self.cell = site

    def is_target(self) -> bool:
        """Tell whether a CAR-T cell can engage this cell (a blast or B cell carrying the CAR's target)."""
        return self.kind in TARGET_KINDS and self.level > 0

    def free_neighbour(self):
        """Choose a free Moore neighbour (grid cell) uniformly; ``None`` if none is free."""
        free = [site for site in self.cell.connections.values() if _is_open(site)]
        return self.random.choice(free) if free else None

    def die(self, code: int) -> None:
        """Leave the window, recording event ``code`` (an ``EV_*`` offset plus the kind)."""
        self.model.record(code)
        self.remove()


class StromalCell(MarrowCell):
    """A stromal niche cell: occupies its site and does nothing (it secretes CXCL12 only in the full model)."""

    kind = L.STROMA

    def step(self) -> None:
        return


class TissueCell(MarrowCell):
    """A blast, normal B cell or other marrow cell: die, or divide into a free neighbour.

    Mirrors :func:`kernels.rules.act_tissue_cell`: death with probability
    ``p_die[kind]`` first, else division with probability ``p_divide[kind]``
    if a neighbour is free. A CD19+ blast daughter's CD19 level changes by a
    draw from the ``cd19_noise`` table, clipped to ``1..255``; then a CD22+
    blast daughter's CD22 level by a second draw (none without CD22).
    """

    def step(self) -> None:
        if self.cell is None:  # removed earlier in this step
            return
        model = self.model
        rand = self.random.random
        kind = self.kind
        if rand() < model.p_die[kind]:
            self.die(L.EV_DIED + kind)
            return
        if not rand() < model.p_divide[kind]:
            return
        site = self.free_neighbour()
        if site is None:
            return
        antigen = self.antigen
        if kind == L.BLAST:
            cd19, cd22 = antigen & L.LEVEL_MASK, antigen >> L.CD22_SHIFT
            if cd19 > 0:
                cd19 = min(max(cd19 + model.cd19_noise[self.random.randrange(256)], 1), L.N_LEVELS - 1)
            if cd22 > 0:
                cd22 = min(max(cd22 + model.cd19_noise[self.random.randrange(256)], 1), L.N_LEVELS - 1)
            antigen = cd19 | cd22 << L.CD22_SHIFT
        type(self)(model, site, antigen=antigen)
        model.record(L.EV_BORN + kind)


class Blast(TissueCell):
    """A leukemic blast (CD19 level from the patient profile, possibly 0)."""

    kind = L.BLAST


class BCell(TissueCell):
    """A normal B cell (CD19+; killed by CAR-T cells: B-cell aplasia)."""

    kind = L.BCELL


class NormalCell(TissueCell):
    """Another hematopoietic marrow cell (CD19-negative)."""

    kind = L.NORMAL


class CarTCell(MarrowCell):
    """A CAR-T cell with the kernels' per-cell traits as attributes.

    Attributes
    ----------
    state : int
        ``RESTING`` or ``ACTIVE``.
    target : tuple of int or None
        Offset ``(di, dj)`` of the engaged target, or ``None``.
    stim, kills, divs : int
        Engagements, kills and divisions in the lineage (saturating at ``TRAIT_MAX``).
    timer : int
        Steps of activation left.
    """

    kind = L.CART

    def __init__(self, model: ReferenceModel, site, *, state: int = L.RESTING, stim: int = 0, kills: int = 0,
                 divs: int = 0, timer: int = 0):
        super().__init__(model, site, antigen=0)
        self.state = state
        self.target: tuple[int, int] | None = None
        self.stim = stim
        self.kills = kills
        self.divs = divs
        self.timer = timer

    def activate(self) -> None:
        """Become ACTIVE for ``active_steps`` steps."""
        self.state = L.ACTIVE
        self.timer = self.model.active_steps

    def step(self) -> None:
        """Die, kill or stay engaged, proliferate, engage a target, or migrate (first that applies)."""
        if self.cell is None:
            return
        model = self.model
        rand = self.random.random
        # 1. natural death
        if rand() < model.p_die[L.CART]:
            self.die(L.EV_DIED + L.CART)
            return
        # 2. activation timer
        if self.timer > 0:
            self.timer -= 1
            if self.timer == 0:
                self.state = L.RESTING
        # 3. engaged: kill or detach; a target that has gone releases the cell
        if self.target is not None:
            victim = _occupant(self.cell.connections[self.target])
            if victim is not None and victim.is_target():
                if rand() < model.p_kill[victim.level]:
                    victim.die(L.EV_KILLED + victim.kind)
                    self.target = None
                    self.kills = min(self.kills + 1, L.TRAIT_MAX)
                    self.activate()
                elif rand() < model.p_detach:
                    self.target = None
                return
            self.target = None
        # 4. proliferate while activated
        if self.state == L.ACTIVE and self.divs < model.max_divs and rand() < model.p_prolif:
            site = self.free_neighbour()
            if site is not None:
                self.divs = min(self.divs + 1, L.TRAIT_MAX)
                self.stim //= 2  # the daughters share the exhaustion load, as in kernels.rules.act_cart
                CarTCell(model, site, state=self.state, stim=self.stim, kills=0, divs=self.divs, timer=self.timer)
                model.record(L.EV_BORN + L.CART)
                return
        # 5. engage a neighbour carrying the target antigen
        targets = []
        for offset, site in self.cell.connections.items():
            other = _occupant(site)
            if other is not None and other.is_target():
                targets.append((offset, other))
        if targets:
            offset, other = self.random.choice(targets)
            if rand() < model.p_attach[other.level]:
                self.target = offset
                self.stim = min(self.stim + 1, L.TRAIT_MAX)
                self.activate()
            return
        # 6. migrate to a random neighbour; swap with a marrow cell in the way
        if not rand() < model.p_move:
            return
        site = self.cell.connections.get(OFFSETS[self.random.randrange(8)])
        if site is None or site.tissue > L.OCCUPIABLE:
            return
        other = _occupant(site)
        if other is None:
            self.move_to(site)
        elif other.kind in SWAPPABLE_KINDS and rand() < model.p_swap:
            here = self.cell
            other.cell = None
            self.move_to(site)
            other.move_to(here)


AGENT_CLASSES = {L.BLAST: Blast, L.BCELL: BCell, L.NORMAL: NormalCell, L.STROMA: StromalCell, L.CART: CarTCell}


class ReferenceModel(mesa.Model):
    """Plain-Mesa marrow window with the core rules (one agent object per cell).

    Parameters
    ----------
    params : Params
        Parameters: ``grid.size`` sets the window (unless ``state`` is given,
        whose shape then wins), ``time.dt_min`` the step, the rest the rates
        through the tables.
    seed : int
        Seed of the model's generators (``mesa.Model(rng=seed)``) and, unless
        ``state`` / ``tables`` are given, of the window and the tables.
    state : LatticeState, optional
        Initial lattice to convert into agents (not modified). Default:
        :func:`abm.marrow.build_window` with ``np.random.default_rng(seed)``.
        Traits other than ANTIGEN and the CAR-T ones (``STATE``, ``TARGET``,
        ``STIM``, ``KILLS``, ``DIVS``, ``TIMER``) are ignored, a blast's escape
        route (its ``STATE``) too: the reference has no antigen loss, lineage
        switch or reseeding, so its blasts never take a route.
    tables : RuleTables, optional
        Rule tables whose thresholds give the probabilities. Default:
        :func:`core_tables` of ``params`` and ``seed``. Field tables are
        ignored; ``rates[R_CHEMO]`` must be 0 (the reference has no
        chemotaxis).
    cart_sites : sequence of (int, int), optional
        Sites that get a resting CAR-T cell.
    n_cart : int
        Further CAR-T cells at free sites drawn with ``self.random``.

    Attributes
    ----------
    grid : OrthogonalMooreGrid
        ``n x n``, closed edges, capacity one; every grid cell carries its
        tissue code as ``cell.tissue``. Bone and sinusoid cells stay empty.
    events : numpy.ndarray
        int64[N_EVENTS] cumulative event counts, laid out as in :mod:`kernels.layout`.
    lattice_step : int
        Steps taken.
    """

    def __init__(
        self,
        params: Params,
        seed: int,
        *,
        state: LatticeState | None = None,
        tables: RuleTables | None = None,
        cart_sites: Sequence[tuple[int, int]] = (),
        n_cart: int = 0,
    ):
        super().__init__(rng=seed)
        self.params = params
        self.seed = seed
        if state is None:
            state = build_window(params, np.random.default_rng(seed))
        if tables is None:
            tables = core_tables(params, seed)
        if tables.rates[L.R_CHEMO] != 0:
            raise ValueError(
                f"tables.rates[R_CHEMO] = {int(tables.rates[L.R_CHEMO])}: the reference has no chemotaxis; "
                "expected 0 (use abm.reference.core_tables)"
            )
        self.n = int(state.cell.shape[0])
        self.dt_min = params.time.dt_min
        self._set_probabilities(tables)
        self._events = [0] * L.N_EVENTS
        self.lattice_step = 0
        self.grid = OrthogonalMooreGrid((self.n, self.n), torus=False, capacity=1, random=self.random)
        self._populate(state)
        for i, j in cart_sites:
            site = self.grid[(int(i), int(j))]
            if not _is_open(site):
                raise ValueError(f"cart_sites: ({i}, {j}) is not a free marrow site of the {self.n} x {self.n} window")
            CarTCell(self, site)
        if n_cart:
            self.seed_cart(n_cart)

    def _set_probabilities(self, tables: RuleTables) -> None:
        self.p_die = [int(t) / TWO32 for t in tables.kind_rates[L.KR_DIE]]
        self.p_divide = [int(t) / TWO32 for t in tables.kind_rates[L.KR_DIVIDE]]
        self.p_attach = [int(t) / TWO32 for t in tables.antigen_rates[L.AR_ATTACH]]
        self.p_kill = [int(t) / TWO32 for t in tables.antigen_rates[L.AR_KILL]]
        self.cd19_noise = [int(v) for v in tables.cd19_noise]
        self.target_mode = int(tables.rates[L.R_TARGET_MODE])
        rates = tables.rates
        self.p_move = int(rates[L.R_MOVE]) / TWO32
        self.p_swap = int(rates[L.R_SWAP]) / TWO32
        self.p_detach = int(rates[L.R_DETACH]) / TWO32
        self.p_prolif = int(rates[L.R_PROLIF]) / TWO32
        self.max_divs = int(rates[L.R_MAX_DIVS])
        self.active_steps = int(rates[L.R_ACTIVE_STEPS])

    def _populate(self, state: LatticeState) -> None:
        tissue = state.tissue
        cell = state.cell
        traits = state.traits
        for site in self.grid.all_cells:
            i, j = site.coordinate
            site.tissue = int(tissue[i, j])
        for i, j in zip(*np.nonzero(cell), strict=True):
            kind = int(cell[i, j])
            site = self.grid[(int(i), int(j))]
            if site.tissue > L.OCCUPIABLE:
                raise ValueError(f"state: a cell of kind {kind} sits in bone or a sinusoid at ({i}, {j})")
            t = traits[i, j]
            if kind == L.CART:
                agent = CarTCell(self, site, state=int(t[L.STATE]), stim=int(t[L.STIM]), kills=int(t[L.KILLS]),
                                 divs=int(t[L.DIVS]), timer=int(t[L.TIMER]))
                if t[L.TARGET]:
                    agent.target = OFFSETS[int(t[L.TARGET]) - 1]
            elif kind in AGENT_CLASSES:
                AGENT_CLASSES[kind](self, site, antigen=int(t[L.ANTIGEN]))
            else:
                raise ValueError(f"state: unknown cell kind {kind} at ({i}, {j})")

    def seed_cart(self, count: int) -> None:
        """Put ``count`` resting CAR-T cells at distinct free sites drawn uniformly with ``self.random``.

        Raises
        ------
        ValueError
            If fewer than ``count`` sites are free.
        """
        free = [site for site in self.grid.all_cells if _is_open(site)]
        if count < 0 or count > len(free):
            raise ValueError(f"n_cart = {count}: expected 0 <= n_cart <= {len(free)} (the free sites of the window)")
        for site in self.random.sample(free, count):
            CarTCell(self, site)

    def record(self, code: int) -> None:
        """Count one event (``EV_*`` offset plus kind, as in :mod:`kernels.layout`)."""
        self._events[code] += 1

    @property
    def events(self) -> np.ndarray:
        return np.array(self._events, dtype=np.int64)

    def step(self) -> None:
        """One lattice step of ``time.dt_min``: every agent acts once, in a fresh random order."""
        self.agents.shuffle_do("step")
        self.lattice_step += 1

    def counts(self) -> np.ndarray:
        """Cells of each kind in the window (int64[N_KINDS]; ``EMPTY`` counts every site without a cell)."""
        counts = np.zeros(L.N_KINDS, dtype=np.int64)
        for agent_type, agents in self.agents_by_type.items():
            counts[agent_type.kind] += len(agents)
        counts[L.EMPTY] = self.n * self.n - int(counts.sum())
        return counts

    def to_state(self) -> LatticeState:
        """Export the window as a :class:`kernels.LatticeState`, ready to continue on a kernel backend.

        Traits are laid out as in :mod:`kernels.layout`; every cell gets
        ``ACTED = UNVISITED`` (as in a freshly built window) and the fields are zero.
        """
        n = self.n
        cell = np.zeros((n, n), dtype=np.uint8)
        tissue = np.zeros((n, n), dtype=np.uint8)
        traits = np.zeros((n, n, L.N_TRAITS), dtype=np.uint16)
        for site in self.grid.all_cells:
            tissue[site.coordinate] = site.tissue
        for agent in self.agents:
            i, j = agent.cell.coordinate
            cell[i, j] = agent.kind
            traits[i, j, L.ANTIGEN] = agent.antigen
            traits[i, j, L.ACTED] = L.UNVISITED
            if agent.kind == L.CART:
                traits[i, j, L.STATE] = agent.state
                traits[i, j, L.TARGET] = 0 if agent.target is None else DIRECTION[agent.target] + 1
                traits[i, j, L.STIM] = agent.stim
                traits[i, j, L.KILLS] = agent.kills
                traits[i, j, L.DIVS] = agent.divs
                traits[i, j, L.TIMER] = agent.timer
        coarsen = self.params.grid.coarsen
        m = -(-n // coarsen)
        return LatticeState(
            cell=cell,
            tissue=tissue,
            traits=traits,
            fields=np.zeros((L.N_FIELDS, m, m), dtype=np.int64),
            events=self.events,
        )
