"""Pure compute on arrays: the validated wrapper over every backend.

``abm`` uses only what is exported here (``__all__``), never the submodules
behind it:

* :class:`LatticeState` and :class:`RuleTables`: the arrays a step reads and writes;
* :class:`Traffic`: one step's blood traffic, validated once;
* :func:`select_backend`: ``auto | python | cpu | cuda`` to a concrete backend;
* :class:`Lattice`: checks shapes and dtypes once, then steps the state on the
  chosen backend and hands it back for observation;
* :mod:`kernels.layout`: the codes, slots and table rows of the arrays;
* from :mod:`kernels.rng`: :func:`threshold` (probability to integer
  threshold), :data:`TWO32` and :func:`draw_reference` (the generator in pure Python);
* from :mod:`kernels.diffusion`: the fixed-point constants ``QUANTUM``,
  ``SHIFT``, ``DECAY_SHIFT``, ``MAX_QUANTA`` and ``MAX_RATIO``;
* :func:`window_census` (:mod:`kernels.census`): the window's cells by kind and
  its target-carrying cells by level, in one compiled pass;
* :func:`stroma_per_voxel`: the stromal cells of every field voxel.

Determinism contract: for the same state, tables, traffic, seed and step
numbers, every backend and thread count produces bit-identical arrays (see
:mod:`kernels.rules` for how).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from kernels import layout, turnover
from kernels.census import window_census
from kernels.config import step_cached
from kernels.diffusion import DECAY_SHIFT, MAX_QUANTA, MAX_RATIO, QUANTUM, SHIFT
from kernels.rng import TWO32, draw_reference, threshold

__all__ = [
    "BACKENDS",
    "DECAY_SHIFT",
    "MAX_QUANTA",
    "MAX_RATIO",
    "QUANTUM",
    "SHIFT",
    "SMALL_LATTICE_SITES",
    "TWO32",
    "BackendError",
    "Lattice",
    "LatticeState",
    "RuleTables",
    "Traffic",
    "draw_reference",
    "layout",
    "select_backend",
    "step_cached",
    "stroma_per_voxel",
    "threshold",
    "validate",
    "window_census",
]

BACKENDS = ("auto", "python", "cpu", "cuda")
SMALL_LATTICE_SITES = 256 * 256


class BackendError(RuntimeError):
    """A backend was asked for that this machine cannot run."""


@dataclass
class LatticeState:
    """The whole lattice: per-site arrays, coarse fields and cumulative event counts."""

    cell: np.ndarray  # uint8[n, n]
    tissue: np.ndarray  # uint8[n, n]
    traits: np.ndarray  # uint16[n, n, N_TRAITS]; ANTIGEN packs the CD19 and CD22 levels
    fields: np.ndarray  # int64[N_FIELDS, m, m]
    events: np.ndarray  # int64[N_EVENTS]

    def copy(self) -> LatticeState:
        return LatticeState(*(getattr(self, f.name).copy() for f in fields(self)))

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class RuleTables:
    """Integer rate tables and constants for a run (see the ``*_RATES`` rows in :mod:`kernels.layout`)."""

    kind_rates: np.ndarray  # int64[N_KIND_RATES, N_KINDS], thresholds
    antigen_rates: np.ndarray  # int64[N_ANTIGEN_RATES, N_LEVELS], thresholds
    cd19_noise: np.ndarray  # int64[256], level change of a blast daughter (CD19, and CD22 with its own draw)
    rates: np.ndarray  # int64[N_RATES], R_TARGET_MODE included
    field_rates: np.ndarray  # int64[N_FIELDS, N_FIELD_RATES]
    coarsen: int
    chemokine_field: int
    seed: int
    # int64[2, 256]: CD19 (row 0) and CD22 (row 1) levels of reservoir blasts entering the window, as quantile
    # tables indexed by a random byte; all 0 where no blasts enter (abm.rates.entry_level_tables)
    entry_levels: np.ndarray = field(default_factory=lambda: np.zeros((2, 256), dtype=np.int64))

    @property
    def key(self) -> np.uint64:
        """Generator key of :attr:`seed` (:func:`kernels.rng.key_of`)."""
        from kernels.rng import key_of

        return key_of(self.seed)


MAX_QUOTA = (1 << 63) - 1  # a quota (expected entries times 2**32) is an int64; any real one is far below


@dataclass(frozen=True, kw_only=True)
class Traffic:
    """One lattice step's blood traffic through the perivascular sites, as integers.

    Keyword-only, checked once when made, and packed for the kernels into the
    int64 vector ``traffic[N_TRAFFIC]`` (the ``TR_*`` slots of :mod:`kernels.layout`).
    The default, ``Traffic()``, is a step without traffic.

    Attributes
    ----------
    enter_quota : int
        Expected number of CAR-T cells entering the window this step times
        ``2**32``, spread over the empty perivascular sites; in ``[0, 2**63)``.
    exit_threshold : int
        Per-step exit probability of a free CAR-T cell on a perivascular site
        times ``2**32``; in ``[0, 2**32]``.
    memory_threshold : int
        Probability (times ``2**32``) that an entering CAR-T cell is a memory cell; in ``[0, 2**32]``.
    seed_quota : int
        Expected number of reservoir blasts entering this step times ``2**32``; in ``[0, 2**63)``.
    negative_threshold : int
        Probability (times ``2**32``) that an entering blast lacks the product's target; in ``[0, 2**32]``.
    preexisting_threshold, mutation_threshold, lineage_threshold : int
        Cumulative probabilities (times ``2**32``) that a target-negative entering blast escaped by the
        pre-existing route, or by it or the mutation route, or by one of them or the lineage switch (the
        rest carry the CAR, which masks the target); in ``[0, 2**32]``. The default (``2**32``, 0 unset)
        makes every negative blast pre-existing.
    """

    enter_quota: int = 0
    exit_threshold: int = 0
    memory_threshold: int = 0
    seed_quota: int = 0
    negative_threshold: int = 0
    preexisting_threshold: int = TWO32
    mutation_threshold: int = TWO32
    lineage_threshold: int = TWO32

    def __post_init__(self) -> None:
        for name in layout.TRAFFIC_NAMES:
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, (bool, np.bool_)):
                raise TypeError(f"Traffic.{name} = {value!r}: expected an integer")
            if name.endswith("_quota"):
                if not 0 <= value <= MAX_QUOTA:
                    raise ValueError(f"Traffic.{name} = {value!r}: expected an integer in [0, 2**63)")
            elif not 0 <= value <= TWO32:
                raise ValueError(f"Traffic.{name} = {value!r}: expected an integer in [0, 2**32]")
            object.__setattr__(self, name, int(value))

    def slots(self) -> tuple[int, ...]:
        """The values in slot order (``slots()[TR_ENTER_QUOTA]`` is :attr:`enter_quota`, ...)."""
        return tuple(getattr(self, name) for name in layout.TRAFFIC_NAMES)

    def packed(self) -> np.ndarray:
        """The int64[N_TRAFFIC] vector the kernels read."""
        return np.array(self.slots(), dtype=np.int64)


_STATE_SPEC = {
    "cell": (np.uint8, 2),
    "tissue": (np.uint8, 2),
    "traits": (np.uint16, 3),
    "fields": (np.int64, 3),
    "events": (np.int64, 1),
}
_TABLE_SPEC = {
    "kind_rates": (layout.N_KIND_RATES, layout.N_KINDS),
    "antigen_rates": (layout.N_ANTIGEN_RATES, layout.N_LEVELS),
    "cd19_noise": (256,),
    "rates": (layout.N_RATES,),
    "field_rates": (layout.N_FIELDS, layout.N_FIELD_RATES),
    "entry_levels": (2, 256),
}


def validate(state: LatticeState, tables: RuleTables) -> None:
    """Raise ``ValueError`` naming the array if shapes or dtypes are inconsistent."""
    for name, (dtype, ndim) in _STATE_SPEC.items():
        a = getattr(state, name)
        if a.dtype != dtype or a.ndim != ndim or not a.flags.c_contiguous:
            raise ValueError(
                f"state.{name}: expected C-contiguous {np.dtype(dtype)} with {ndim} dims, got {a.dtype} {a.shape}"
            )
    n = state.cell.shape[0]
    m = -(-n // tables.coarsen)
    expected = {
        "cell": (n, n),
        "tissue": (n, n),
        "traits": (n, n, layout.N_TRAITS),
        "fields": (layout.N_FIELDS, m, m),
        "events": (layout.N_EVENTS,),
    }
    for name, shape in expected.items():
        if getattr(state, name).shape != shape:
            raise ValueError(f"state.{name}: expected shape {shape}, got {getattr(state, name).shape}")
    if n * n > 1 << 28:
        raise ValueError(f"lattice of {n} x {n} sites exceeds the 2**28 sites the RNG counter holds")
    for name, shape in _TABLE_SPEC.items():
        a = getattr(tables, name)
        if a.dtype != np.int64 or a.shape != shape:
            raise ValueError(f"tables.{name}: expected int64 {shape}, got {a.dtype} {a.shape}")
    if np.any(tables.kind_rates < 0) or np.any(tables.kind_rates.sum(axis=0) > 1 << 32):
        raise ValueError("tables.kind_rates: thresholds must be >= 0 and die + divide at most 2**32 per kind")
    if np.any(tables.antigen_rates < 0) or np.any(tables.antigen_rates > 1 << 32):
        raise ValueError("tables.antigen_rates: thresholds must lie in [0, 2**32]")
    mode = int(tables.rates[layout.R_TARGET_MODE])
    if mode not in (layout.TARGET_CD19, layout.TARGET_CD22, layout.TARGET_BOTH):
        raise ValueError(f"tables.rates[R_TARGET_MODE]: {mode} is not TARGET_CD19, TARGET_CD22 or TARGET_BOTH (0-2)")
    for slot in ("R_BCELL_LEVEL", "R_BCELL_CD22_LEVEL"):
        level = int(tables.rates[getattr(layout, slot)])
        if not 0 <= level < layout.N_LEVELS:
            raise ValueError(f"tables.rates[{slot}]: antigen level {level} not in [0, {layout.N_LEVELS})")
    if not 0 <= tables.chemokine_field < layout.N_FIELDS:
        raise ValueError(f"tables.chemokine_field: {tables.chemokine_field} not in [0, {layout.N_FIELDS})")
    if tables.coarsen < 1:
        raise ValueError(f"tables.coarsen: {tables.coarsen} must be >= 1")


def stroma_per_voxel(cell: np.ndarray, coarsen: int) -> np.ndarray:
    """The stromal cells of every ``coarsen x coarsen`` voxel of ``cell`` (int64[m, m], ``m = ceil(n / coarsen)``).

    The cpu step reads these counts for the stroma's secretion instead of finding the cells every step: no rule
    makes, moves or removes a stromal cell, so a :class:`Lattice` counts them once, when it is made. A stromal
    cell written into its state from outside afterwards is not seen by that secretion (the cuda backend, which
    keeps the whole state on the device, sees no outside write at all); make a new ``Lattice`` instead.
    """
    n = cell.shape[0]
    m = -(-n // coarsen)
    padded = np.zeros((m * coarsen, m * coarsen), dtype=np.int64)
    padded[:n, :n] = cell == layout.STROMA
    return padded.reshape(m, coarsen, m, coarsen).sum(axis=(1, 3))


def select_backend(name: str) -> str:
    """Resolve ``auto`` and check that the named backend can run here."""
    if name not in BACKENDS:
        raise BackendError(f"backend {name!r} is not one of {', '.join(BACKENDS)}")
    if name == "auto":
        from kernels import cuda

        return "cuda" if cuda.usable() else "cpu"
    if name == "cuda":
        from numba import config

        from kernels import cuda

        if not (cuda.usable() or config.ENABLE_CUDASIM):
            raise BackendError("backend 'cuda' needs a CUDA GPU (or NUMBA_ENABLE_CUDASIM=1); none is usable here")
    return name


class Lattice:
    """A lattice state bound to a backend.

    Parameters
    ----------
    state : LatticeState
        Host arrays; for ``python`` and ``cpu`` they are stepped in place, for
        ``cuda`` they are copied to the device and refreshed by :meth:`pull`.
    tables : RuleTables
    backend : str
        ``auto``, ``python``, ``cpu`` or ``cuda``.
    threads : int or None
        Numba threads for ``cpu``. Default: all Numba threads, except on
        lattices under ``SMALL_LATTICE_SITES`` (256 x 256; the default
        200 x 200 window included) where one thread is faster: each step has
        ten or more parallel regions whose start-up costs about as much as
        the work they share, and waiting on a descheduled thread is ruinous
        on a busy machine (``benchmarks/README.md`` has the measurements).
        Set before every step, so lattices do not leak settings.
    slab_rows : int or None
        Rows per slab of the ``cpu``/``python`` sweep (see :mod:`kernels.cpu`),
        at least ``kernels.cpu.MIN_SLAB_ROWS``; default ``kernels.cpu.SLAB_ROWS``.
        The result does not depend on it (tests vary it); only the speed does.
    turnover_scheme : str
        ``group`` (default): tissue cells' death, division and conversion are drawn by group of sites;
        ``site``: one draw per tissue site per step, as before (the reference; equal in distribution,
        slower). See :mod:`kernels.turnover`.
    """

    def __init__(self, state: LatticeState, tables: RuleTables, backend: str = "auto", threads: int | None = None,
                 slab_rows: int | None = None, turnover_scheme: str = "group"):
        from kernels import cpu

        validate(state, tables)
        if slab_rows is None:
            slab_rows = cpu.SLAB_ROWS
        if not cpu.MIN_SLAB_ROWS <= slab_rows:
            raise ValueError(f"slab_rows = {slab_rows!r}: expected an integer >= {cpu.MIN_SLAB_ROWS}")
        self.slab_rows = int(slab_rows)
        self.backend = select_backend(backend)
        self.state = state
        self.tables = tables
        self.threads = threads
        self._order = np.zeros(9 + layout.N_KINDS, dtype=np.int64)  # sublattice order, then visit thresholds
        self.turnover_scheme = turnover_scheme
        self._turnover = turnover.table(tables.kind_rates, turnover_scheme)
        self._portals = np.flatnonzero(state.tissue.ravel() == layout.PERIVASCULAR).astype(np.int64)
        self._key = tables.key
        self._traffic = np.zeros(layout.N_TRAFFIC, dtype=np.int64)
        self._device = None
        if self.backend == "cuda":
            from kernels.cuda import CudaLattice

            self._device = CudaLattice(state, tables, self._portals, turnover_scheme)
        else:  # the host drivers' workspaces (the CUDA driver keeps its own on the device)
            self._gates = np.zeros_like(self._portals)
            self._scratch = np.zeros_like(state.fields)
            self._masks = np.zeros(cpu.mask_shape(state.cell.shape[0]), dtype=np.uint32)
            self._stroma = stroma_per_voxel(state.cell, tables.coarsen)
            self._row_events = np.zeros((state.cell.shape[0], layout.N_EVENTS), dtype=np.int64)
            self._base_events = state.events.copy()
        if self.backend == "cpu":
            import numba

            available = numba.config.NUMBA_NUM_THREADS
            if threads is not None and not 1 <= threads <= available:
                raise BackendError(f"threads={threads} not in [1, {available}]")
            if threads is None:
                threads = 1 if state.cell.size < SMALL_LATTICE_SITES else available
        self.threads = threads

    def update_tables(self, tables: RuleTables) -> None:
        """Use new rate tables from the next step on (same shapes; e.g. therapy changed a rate)."""
        validate(self.state, tables)
        if tables.seed != self.tables.seed:
            raise ValueError("update_tables: the seed of a running lattice cannot change")
        self.tables = tables
        self._turnover = turnover.table(tables.kind_rates, self.turnover_scheme)
        if self._device is not None:
            self._device.update_tables(tables)

    def step(self, step_index: int, traffic: Traffic) -> None:
        """Advance one step: blood traffic, nine sublattice passes (as one wave on ``cpu``), fields.

        Parameters
        ----------
        step_index : int
            The step's number, ``0 <= step_index < 2**28`` (it keys every random decision of the step).
        traffic : Traffic
            This step's blood traffic (``Traffic()`` for none).
        """
        if not isinstance(traffic, Traffic):
            raise TypeError(f"traffic = {traffic!r}: expected a kernels.Traffic")
        if self._device is not None:
            self._device.step(step_index, traffic)
            return
        from kernels import cpu

        self._traffic[:] = traffic.slots()
        s, t = self.state, self.tables
        args = (
            s.cell, s.tissue, s.traits, s.fields, self._scratch, self._masks, self._stroma, self._order, self._portals,
            self._gates, t.coarsen,
            t.chemokine_field, t.kind_rates, t.antigen_rates, t.cd19_noise, t.rates, t.field_rates, t.entry_levels,
            self._turnover, self._traffic, self._key, step_index, self._row_events, self.slab_rows,
        )
        if self.backend == "python":
            cpu.step.py_func(*args)
            return
        import numba

        numba.set_num_threads(self.threads)
        cpu.step(*args)

    def pull(self) -> LatticeState:
        """Bring the state up to date on the host and return it."""
        if self._device is not None:
            self._device.pull(self.state)
        else:
            self.state.events[:] = self._base_events + self._row_events.sum(axis=0)
        return self.state
