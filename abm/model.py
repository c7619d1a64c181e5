"""MarrowModel: a Mesa model that owns the lattice arrays and calls the kernels.

One Mesa step (``model.step()``) is one *observation interval*
(``time.observe_every_h``, default 6 h): it advances ``steps_per_observation``
lattice steps of ``time.dt_min`` each, then records a row in the
``DataCollector``. This keeps ``mesa.batch_run`` and the DataCollector cheap
(one row per interval, not per minute) while the kernels run at the
biological time step. ``model.running`` turns false at ``time.days``.

The lattice state (:class:`kernels.LatticeState`) is the truth; there are no
agent objects (see :mod:`abm.reference` for the plain-Mesa version of the core
rules). Everything random is keyed by ``seed``: the initial window comes from
``model.rng`` (Mesa's NumPy generator seeded with ``rng=seed``), every later
decision from the counter-based generator in :mod:`kernels.rng`.

Antigens: the lattice's ``ANTIGEN`` trait holds a CD19 and a CD22 level
(:mod:`kernels.layout`). The observables count blasts negative for CD19
(``blasts_cd19neg``), for the product's target (``blasts_target_neg``: no
CD19 for a CD19 CAR, no CD22 for a CD22 CAR, neither for a dual CAR) and,
when CD22 is tracked (:func:`abm.rates.cd22_tracked`), for CD22
(``blasts_cd22neg``), and blasts by escape route (``blasts_route_<name>`` for the names of
``kernels.layout.ROUTE_NAMES`` but "none": a blast's ``ROUTE``, issue 28). The body's antigen load
(``WindowReadout.cd19_cells``) counts the cells carrying the product's target; with trogocytosis the
readout's ``stripped_response`` tells the body how much of its blasts' target the CAR-T cells stripped.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import mesa
import numpy as np

import kernels
from abm.body import Body, WindowReadout
from abm.errors import SimulationError
from abm.marrow import build_window
from abm.params import Params
from abm.rates import (
    MINUTES_PER_DAY,
    antigen_response,
    build_tables,
    cd19_levels,
    cd22_levels,
    cd22_tracked,
    level_to_molecules,
    pack_levels,
    stripped_share,
    target_levels,
    target_mode,
)
from kernels import MAX_QUANTA, QUANTUM, Traffic, threshold, window_census
from kernels import layout as L

CHECKPOINT_FORMAT = "cart-abm-checkpoint-1"

VIEW_CODES = {
    "empty": 0,
    "bone": 1,
    "sinusoid": 2,
    "stroma": 3,
    "normal": 4,
    "bcell": 5,
    "blast_cd19pos": 6,
    "blast_cd19neg": 7,
    "cart_resting": 8,
    "cart_active": 9,
    "niche": 10,
    "cart_memory": 11,
    "cart_exhausted": 12,
}


class MarrowModel(mesa.Model):
    """A patient's marrow window under CAR-T therapy.

    Parameters
    ----------
    params : Params, optional
        Full parameter set (default: :meth:`Params.default`).
    seed : int
        Seed of everything random in the run, ``0 <= seed < 2**63``.
    backend : str
        ``auto``, ``python``, ``cpu`` or ``cuda`` (see :func:`kernels.select_backend`).
    threads : int, optional
        Numba threads for the ``cpu`` backend.
    snapshot_every_min : float, optional
        Keep a compact picture of the lattice this often (for animations).
    check_invariants : bool
        Verify the lattice invariants after every lattice step (slow; for tests).
    state : LatticeState, optional
        Start from this lattice instead of building a window (used by
        :meth:`from_checkpoint`; no initial observation is recorded).
    **overrides
        Parameter keys with dots (``**{"grid.size": 64}``), as ``mesa.batch_run`` passes them.
    """

    def __init__(
        self,
        params: Params | None = None,
        *,
        seed: int = 0,
        backend: str = "auto",
        threads: int | None = None,
        snapshot_every_min: float | None = None,
        check_invariants: bool = False,
        state: kernels.LatticeState | None = None,
        **overrides: Any,
    ):
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or not 0 <= seed < 2**63:
            raise ValueError(f"seed = {seed!r}: expected an integer in [0, 2**63)")
        super().__init__(rng=int(seed))
        params = params or Params.default()
        if overrides:
            params = params.replace(overrides)
        self.params = params
        self.seed = int(seed)
        self.dt_min = params.time.dt_min
        self.total_steps = int(round(params.time.days * MINUTES_PER_DAY / self.dt_min))
        if self.total_steps >= 1 << 28:
            raise ValueError(f"time.days / time.dt_min gives {self.total_steps} steps; at most 2**28 are allowed")
        self.steps_per_observation = max(1, int(round(params.time.observe_every_h * 60.0 / self.dt_min)))
        self.tables = build_tables(params, self.seed)
        self.target_mode = target_mode(params)
        self.response = antigen_response(params)  # the CAR's response to each antigen level (the body's signal)
        self.cd22_tracked = cd22_tracked(params)
        self.trogocytosis = stripped_share(params) > 0.0
        restoring = state is not None
        if state is None:
            state = build_window(params, self.rng)
        self.lattice = kernels.Lattice(state, self.tables, backend=backend, threads=threads,
                                       turnover_scheme=params.grid.turnover)
        self.backend = self.lattice.backend
        capacity = int(np.count_nonzero(state.tissue <= L.OCCUPIABLE))
        self.body = Body(params, capacity, int(np.count_nonzero(state.tissue == L.PERIVASCULAR)), self.seed)
        self.exit_threshold = int(self.tables.rates[L.R_EXIT])
        self.coupling_steps = max(1, int(round(params.time.coupling_min / self.dt_min)))
        self.factors = (1.0, 1.0)
        self.readout = self.read_window()
        self.lattice_step = 0
        self.initial_counts = np.bincount(state.cell.ravel(), minlength=L.N_KINDS).astype(np.int64)
        self.initial_stroma = state.cell == L.STROMA
        self.check_invariants_each_step = check_invariants
        self.snapshot_every = None
        if snapshot_every_min is not None:
            if snapshot_every_min < self.dt_min:
                raise ValueError(f"snapshot_every_min = {snapshot_every_min}: expected at least time.dt_min")
            self.snapshot_every = max(1, int(round(snapshot_every_min / self.dt_min)))
        self.snapshots: list[dict[str, Any]] = []
        self.observables = OBSERVABLES + (CD22_OBSERVABLES if self.cd22_tracked else ()) + tuple(self.body.observe())
        self.datacollector = mesa.DataCollector(
            model_reporters={name: _reporter(name) for name in self.observables}
        )
        self._observed: dict[str, float] = {}
        if not restoring:
            self._observe()
            if self.snapshot_every is not None:
                self._snapshot()

    # -- clock -----------------------------------------------------------
    @property
    def day(self) -> float:
        return self.lattice_step * self.dt_min / MINUTES_PER_DAY

    @property
    def state(self) -> kernels.LatticeState:
        """The lattice state, brought up to date on the host."""
        return self.lattice.pull()

    def step(self) -> None:
        """Advance one observation interval (or to the end of the run) and record it."""
        if not self.running:
            return
        every = self.steps_per_observation  # observations fall on multiples of it (and at the end of the run)
        end = min((self.lattice_step // every + 1) * every, self.total_steps)
        while self.lattice_step < end:
            self.advance_lattice()
        self._observe()
        if self.lattice_step >= self.total_steps:
            self.running = False

    def advance_lattice(self) -> None:
        """One lattice step: the body (re-reading the window every coupling interval), then the kernels."""
        dt_day = self.dt_min / MINUTES_PER_DAY
        coupling = self.lattice_step % self.coupling_steps == 0
        if coupling:
            self.readout = self.read_window()
        quota = self.body.advance(self.day, dt_day, self.readout)
        if coupling:
            self.apply_controls()
        memory = threshold(min(max(self.body.blood_memory_fraction(), 0.0), 1.0))
        seeds, negative, preexisting, mutation, lineage = self.body.reseeding(dt_day)
        traffic = Traffic(enter_quota=quota, exit_threshold=self.exit_threshold, memory_threshold=memory,
                          seed_quota=seeds, negative_threshold=negative, preexisting_threshold=preexisting,
                          mutation_threshold=mutation, lineage_threshold=lineage)
        self.lattice.step(self.lattice_step, traffic)
        self.lattice_step += 1
        if self.check_invariants_each_step:
            self.check_invariants()
        if self.snapshot_every is not None and self.lattice_step % self.snapshot_every == 0:
            self._snapshot()

    def read_window(self) -> WindowReadout:
        """What the body learns from the window (see :class:`abm.body.WindowReadout`)."""
        s = self.state
        counts = np.zeros(L.N_KINDS, dtype=np.int64)
        positive = np.zeros(L.N_LEVELS, dtype=np.int64)  # blasts and B cells carrying the target, by its level
        cart_active = window_census(s.cell, s.traits, self.target_mode, counts, positive)
        ev = s.events
        kills = int(ev[L.EV_KILLED + L.BLAST] + ev[L.EV_KILLED + L.BCELL])
        previous = getattr(self, "readout", None)  # None at the first readout
        interval = self.coupling_steps * self.dt_min / MINUTES_PER_DAY
        return WindowReadout(
            cd19_cells=int(positive.sum()),
            target_signal=self._weighted(positive),
            stripped_response=self._stripped_response(s) if self.trogocytosis else 1.0,
            blasts=int(counts[L.BLAST]),
            nucleated=int(counts[L.BLAST] + counts[L.BCELL] + counts[L.NORMAL]),
            cart=int(counts[L.CART]),
            cart_active=int(cart_active),
            il6_mean_pg_ml=float(s.fields[L.F_IL6].mean()) * QUANTUM,
            kills=kills,
            kills_per_day=(kills - previous.kills) / interval if previous is not None else 0.0,
        )

    def _signal(self, levels: np.ndarray) -> float:
        """Cells at these target ``levels`` weighted by the CAR's response to each."""
        return self._weighted(np.bincount(levels, minlength=L.N_LEVELS))

    def _weighted(self, cells_by_level: np.ndarray) -> float:
        """Cells counted by target level (``N_LEVELS`` entries) weighted by the CAR's response to each."""
        return math.fsum(cells_by_level * self.response)

    def _stripped_response(self, s: kernels.LatticeState) -> float:
        """The window's blasts' response to their target now, over that to it before trogocytosis (1: none)."""
        blasts = s.cell == L.BLAST
        antigen = s.traits[..., L.ANTIGEN][blasts]
        deficit = s.traits[..., L.DEFICIT][blasts]
        whole = target_levels(pack_levels(np.minimum(cd19_levels(antigen) + cd19_levels(deficit), L.N_LEVELS - 1),
                                          np.minimum(cd22_levels(antigen) + cd22_levels(deficit), L.N_LEVELS - 1)),
                              self.target_mode)
        before = self._signal(whole)
        return self._signal(target_levels(antigen, self.target_mode)) / before if before > 0.0 else 1.0

    def apply_controls(self) -> None:
        """Rebuild the rate tables if steroids or the lymphodepletion boost changed the CAR-T factors."""
        controls = self.body.controls()
        boost = self.body.homeostatic_boost(self.day)
        if self.body.consumed:  # a fading surge on a grid of 1/128: the tables are rebuilt at most ~60 times
            boost = round(boost * 128.0) / 128.0
        factors = (controls.proliferation_factor * boost, controls.activation_factor)
        if factors != self.factors:
            self.factors = factors
            self.tables = build_tables(self.params, self.seed, *factors)
            self.lattice.update_tables(self.tables)

    def run(self, progress: bool = False, after_step: Callable[[MarrowModel], None] | None = None) -> MarrowModel:
        """Run to ``time.days``, optionally with a progress bar and a callback after each observation."""
        from tqdm.auto import tqdm

        with tqdm(total=self.total_steps, initial=self.lattice_step, unit="step", disable=not progress,
                  desc="simulating") as bar:
            while self.running:
                before = self.lattice_step
                self.step()
                bar.update(self.lattice_step - before)
                if after_step is not None:
                    after_step(self)
        return self

    # -- observation -------------------------------------------------------
    def counts(self) -> np.ndarray:
        """Cells of each kind in the window (int64[N_KINDS])."""
        return np.bincount(self.state.cell.ravel(), minlength=L.N_KINDS).astype(np.int64)

    def _route_counts(self, blasts: np.ndarray) -> dict[str, int]:
        """Blasts by escape route (``blasts_route_<name>``; the route of a blast is its ``STATE`` slot)."""
        routes = np.bincount(self.state.traits[..., L.ROUTE][blasts], minlength=L.N_ROUTES)
        return {column: int(routes[r]) for r, column in enumerate(ROUTE_COLUMNS, start=1)}

    def _observe(self) -> None:
        s = self.state
        counts = np.bincount(s.cell.ravel(), minlength=L.N_KINDS)
        blasts = s.cell == L.BLAST
        nucleated = int(counts[L.BLAST] + counts[L.BCELL] + counts[L.NORMAL])
        cart = s.cell == L.CART
        il6 = s.fields[L.F_IL6]
        if s.fields.max(initial=0) >= MAX_QUANTA or s.fields.min(initial=0) < 0:
            raise SimulationError(
                f"a field left its exact range [0, 2**55 quanta) by lattice step {self.lattice_step} (day "
                f"{self.day:g}): secretion is too high for the decay; lower il6/cxcl12 secretion or raise decay"
            )
        ev = s.events
        antigen = s.traits[..., L.ANTIGEN]
        self._observed = {
            "day": self.day,
            "blasts": int(counts[L.BLAST]),
            "blasts_cd19neg": int(np.count_nonzero(blasts & (cd19_levels(antigen) == 0))),
            "blasts_target_neg": int(np.count_nonzero(blasts & (target_levels(antigen, self.target_mode) == 0))),
            **self._route_counts(blasts),
            "bcells": int(counts[L.BCELL]),
            "normal": int(counts[L.NORMAL]),
            "cart": int(counts[L.CART]),
            "cart_active": int(np.count_nonzero(cart & (s.traits[..., L.STATE] == L.ACTIVE))),
            "cart_exhausted": int(np.count_nonzero(cart & (s.traits[..., L.STATE] == L.EXHAUSTED))),
            "cart_memory": int(np.count_nonzero(cart & (s.traits[..., L.PHENO] == L.MEMORY))),
            "blast_fraction": float(counts[L.BLAST] / nucleated) if nucleated else 0.0,
            "il6_mean_pg_ml": float(il6.mean()) * QUANTUM,
            "il6_max_pg_ml": float(il6.max()) * QUANTUM,
            **self.body.observe(),
            "kills": int(ev[L.EV_KILLED + L.BLAST] + ev[L.EV_KILLED + L.BCELL]),
            "cart_fratricide": int(ev[L.EV_KILLED + L.CART]),  # CAR-T cells killed for antigen they took
            "cart_entered": int(ev[L.EV_ENTERED]),
            "cart_exited": int(ev[L.EV_EXITED]),
            "cart_born": int(ev[L.EV_BORN + L.CART]),
            "bcells_made": int(ev[L.EV_BCELL_MADE]),
            "blasts_seeded": int(ev[L.EV_SEEDED]),
        }
        if self.cd22_tracked:
            self._observed["blasts_cd22neg"] = int(np.count_nonzero(blasts & (cd22_levels(antigen) == 0)))
        self.datacollector.collect(self)

    def observation(self) -> dict[str, float]:
        """The latest recorded observables."""
        return dict(self._observed)

    def _snapshot(self) -> None:
        self.snapshots.append({"day": self.day, "view": self.view(), "il6": self.il6_pg_ml().astype(np.float32)})

    def il6_pg_ml(self) -> np.ndarray:
        """IL-6 field on the voxel grid [pg/mL]."""
        return self.state.fields[L.F_IL6] * QUANTUM

    def view(self) -> np.ndarray:
        """Compact picture of the window (uint8[n, n] of :data:`VIEW_CODES`)."""
        s = self.state
        v = np.zeros(s.cell.shape, dtype=np.uint8)
        v[s.tissue == L.NICHE] = VIEW_CODES["niche"]
        v[s.tissue == L.BONE] = VIEW_CODES["bone"]
        v[s.tissue == L.SINUSOID] = VIEW_CODES["sinusoid"]
        v[s.cell == L.STROMA] = VIEW_CODES["stroma"]
        v[s.cell == L.NORMAL] = VIEW_CODES["normal"]
        v[s.cell == L.BCELL] = VIEW_CODES["bcell"]
        cd19 = cd19_levels(s.traits[..., L.ANTIGEN])
        v[(s.cell == L.BLAST) & (cd19 > 0)] = VIEW_CODES["blast_cd19pos"]
        v[(s.cell == L.BLAST) & (cd19 == 0)] = VIEW_CODES["blast_cd19neg"]
        cart = s.cell == L.CART
        state = s.traits[..., L.STATE]
        v[cart] = VIEW_CODES["cart_resting"]
        v[cart & (s.traits[..., L.PHENO] == L.MEMORY)] = VIEW_CODES["cart_memory"]
        v[cart & (state == L.EXHAUSTED)] = VIEW_CODES["cart_exhausted"]
        v[cart & (state == L.ACTIVE)] = VIEW_CODES["cart_active"]
        return v

    def blast_cd19_molecules(self) -> np.ndarray:
        """CD19 molecules per cell of every blast in the window."""
        s = self.state
        return level_to_molecules(cd19_levels(s.traits[..., L.ANTIGEN][s.cell == L.BLAST]))

    def blast_cd22_molecules(self) -> np.ndarray:
        """CD22 molecules per cell of every blast in the window (all 0 when CD22 is not tracked)."""
        s = self.state
        return level_to_molecules(cd22_levels(s.traits[..., L.ANTIGEN][s.cell == L.BLAST]))

    # -- checkpoints -----------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue this run bit for bit: arrays and JSON-able metadata.

        Taken at an observation boundary (after :meth:`step`), so the
        DataCollector is in step with the lattice.
        """
        s = self.state
        arrays = {f"state_{name}": a for name, a in s.arrays().items()}
        arrays["initial_counts"] = self.initial_counts
        if self.snapshots:
            arrays["snapshot_day"] = np.array([f["day"] for f in self.snapshots])
            arrays["snapshot_view"] = np.stack([f["view"] for f in self.snapshots])
            arrays["snapshot_il6"] = np.stack([f["il6"] for f in self.snapshots])
        meta = {
            "format": CHECKPOINT_FORMAT,
            "seed": self.seed,
            "lattice_step": self.lattice_step,
            "mesa_steps": self.steps,
            "running": self.running,
            "snapshot_every": self.snapshot_every,
            "body": self.body.state(),
            "readout": asdict(self.readout),
            "factors": list(self.factors),
            "observed": self._observed,
            "model_vars": {k: list(v) for k, v in self.datacollector.model_vars.items()},
        }
        return {"arrays": arrays, "meta": meta}

    @classmethod
    def from_checkpoint(
        cls, params: Params, arrays: dict[str, np.ndarray], meta: dict[str, Any], *, backend: str = "auto",
        threads: int | None = None,
    ) -> MarrowModel:
        """Rebuild a model from :meth:`checkpoint` output (``params`` with ``time.days`` possibly extended)."""
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise SimulationError(f"checkpoint format {meta.get('format')!r}; this version reads {CHECKPOINT_FORMAT}")
        names = ("cell", "tissue", "traits", "fields", "events")
        state = kernels.LatticeState(*(np.ascontiguousarray(arrays[f"state_{n}"]) for n in names))
        every = meta["snapshot_every"]
        model = cls(params, seed=meta["seed"], backend=backend, threads=threads, state=state,
                    snapshot_every_min=None if every is None else every * params.time.dt_min)
        model.lattice_step = int(meta["lattice_step"])
        model.steps = int(meta["mesa_steps"])
        model.initial_counts = np.asarray(arrays["initial_counts"], dtype=np.int64)
        model.body.restore(meta["body"])
        model.readout = WindowReadout(**meta["readout"])
        model.factors = tuple(meta["factors"])
        model.tables = build_tables(params, model.seed, *model.factors)
        model.lattice.update_tables(model.tables)
        model._observed = dict(meta["observed"])
        for name, values in meta["model_vars"].items():
            model.datacollector.model_vars[name] = list(values)
        rows = len(meta["model_vars"].get("day", []))
        for name in model.observables:
            if name not in meta["model_vars"]:  # a column added after the checkpoint was written
                model.datacollector.model_vars[name] = [None] * rows
        days = model.datacollector.model_vars.get("day") or [None]
        if (model.lattice_step % model.steps_per_observation and model.lattice_step < model.total_steps
                and days[-1] == model.day):
            # the final checkpoint of a shorter run whose end fell between observations: its last row is that
            # end; a longer run observes on the regular grid only, so the extension drops it (bit-identical)
            for values in model.datacollector.model_vars.values():
                del values[-1]
            model.steps -= 1
        if "snapshot_day" in arrays:
            model.snapshots = [
                {"day": float(d), "view": v, "il6": f}
                for d, v, f in zip(arrays["snapshot_day"], arrays["snapshot_view"], arrays["snapshot_il6"], strict=True)
            ]
        model.running = model.lattice_step < model.total_steps
        return model

    # -- invariants ----------------------------------------------------------
    def check_invariants(self) -> None:
        """Raise :class:`SimulationError` if the lattice breaks an invariant.

        Checked: kinds and tissue codes are valid; no cell sits in bone or a
        sinusoid; traits of empty sites are zero; counts per kind equal the
        initial counts plus births and entries minus deaths, kills, exits and
        displacements (blasts gain those and the seeded); stromal cells stay
        where they were (the cpu step counts them per voxel once,
        :func:`kernels.stroma_per_voxel`); fields are non-negative.
        """
        s = self.state
        where = f"at lattice step {self.lattice_step}"
        if s.cell.max() >= L.N_KINDS or s.tissue.max() > L.SINUSOID:
            raise SimulationError(f"invalid cell kind or tissue code {where}")
        if np.any((s.tissue > L.OCCUPIABLE) & (s.cell != L.EMPTY)):
            raise SimulationError(f"a cell sits in bone or a sinusoid {where}")
        if np.any(s.traits[s.cell == L.EMPTY]):
            raise SimulationError(f"an empty site carries traits {where}")
        counts = np.bincount(s.cell.ravel(), minlength=L.N_KINDS)
        ev = s.events
        expected = self.initial_counts + ev[L.EV_BORN : L.EV_BORN + L.N_KINDS] - ev[L.EV_DIED : L.EV_DIED + L.N_KINDS]
        expected = expected - ev[L.EV_KILLED : L.EV_KILLED + L.N_KINDS]
        expected[L.CART] += ev[L.EV_ENTERED] - ev[L.EV_EXITED]
        expected[L.BLAST] += ev[L.EV_SEEDED]
        displaced = ev[L.EV_DISPLACED : L.EV_DISPLACED + L.N_KINDS]
        expected = expected - displaced
        expected[L.BLAST] += displaced.sum()
        expected[L.NORMAL] -= ev[L.EV_BCELL_MADE]
        expected[L.BCELL] += ev[L.EV_BCELL_MADE]
        if np.any(counts[1:] != expected[1:]):
            raise SimulationError(f"counts {counts[1:].tolist()} != bookkeeping {expected[1:].tolist()} {where}")
        if not np.array_equal(s.cell == L.STROMA, self.initial_stroma):
            raise SimulationError(f"a stromal cell appeared, moved or went {where}")
        if np.any(s.fields < 0):
            raise SimulationError(f"negative field value {where}")


ROUTE_COLUMNS = tuple(f"blasts_route_{name}" for name in L.ROUTE_NAMES[1:])

OBSERVABLES = (
    "day",
    "blasts",
    "blasts_cd19neg",
    "blasts_target_neg",
    *ROUTE_COLUMNS,
    "bcells",
    "normal",
    "cart",
    "cart_active",
    "cart_exhausted",
    "cart_memory",
    "blast_fraction",
    "il6_mean_pg_ml",
    "il6_max_pg_ml",
    "kills",
    "cart_fratricide",
    "cart_entered",
    "cart_exited",
    "cart_born",
    "bcells_made",
    "blasts_seeded",
)


CD22_OBSERVABLES = ("blasts_cd22neg",)  # recorded only when CD22 is tracked (abm.rates.cd22_tracked)


def _reporter(name: str):
    def report(model: MarrowModel) -> float:
        return model._observed[name]

    report.__name__ = name
    return report
