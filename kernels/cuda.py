"""Numba CUDA driver: the shared rules as CUDA kernels, state resident on the device.

:class:`CudaLattice` copies the state to the device once, launches one kernel
per phase (traffic, the nine sublattice passes, secretion, diffusion
sub-steps) each step, and copies back only when asked to observe. Event
counters use integer atomics, which are exact and order-independent.

Works on a real GPU and under Numba's simulator (``NUMBA_ENABLE_CUDASIM=1``),
which is how CI tests it.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
from numba import cuda

from kernels.config import THREADS_PER_BLOCK
from kernels.diffusion import diffuse_voxel, secrete_voxel
from kernels.layout import (
    EMPTY,
    FR_SUBSTEPS,
    R_TARGET_MODE,
    TR_ENTER_QUOTA,
    TR_EXIT_THRESHOLD,
    TR_LINEAGE_THRESHOLD,
    TR_MEMORY_THRESHOLD,
    TR_MUTATION_THRESHOLD,
    TR_NEGATIVE_THRESHOLD,
    TR_PREEXISTING_THRESHOLD,
    TR_SEED_QUOTA,
)
from kernels.rules import act_site, enter_threshold, needs_visit, sublattice_order, traffic_site
from kernels.turnover import table as turnover_table

if TYPE_CHECKING:
    from kernels import Traffic

# The one-block counter reset and the portal kernels are small on purpose; Numba's low-occupancy warning on
# every such launch says nothing a user can act on.
warnings.filterwarnings("ignore", message=".*Grid size .* will likely result in GPU under-utilization")


def usable() -> bool:
    """True when a real CUDA GPU can run kernels (the simulator does not count)."""
    try:
        return bool(cuda.is_available()) and not _simulated()
    except Exception:
        return False


def _simulated() -> bool:
    from numba import config

    return bool(config.ENABLE_CUDASIM)


@cuda.jit(cache=True)
def _zero_kernel(count):
    if cuda.grid(1) == 0:
        count[0] = 0


@cuda.jit(cache=True)
def _count_empty_portals_kernel(cell, portals, count):
    p = cuda.grid(1)
    n = cell.shape[0]
    if p < portals.shape[0] and cell[portals[p] // n, portals[p] % n] == EMPTY:
        cuda.atomic.add(count, 0, 1)


@cuda.jit(cache=True)
def _traffic_kernel(cell, tissue, traits, portals, count, traffic, entry_levels, mode, key, step_index, events):
    """Blood traffic at every portal; ``traffic`` is the int64 ``TR_*`` vector passed by value, as a tuple."""
    p = cuda.grid(1)
    n = cell.shape[0]
    if p < portals.shape[0]:
        threshold = enter_threshold(traffic[TR_ENTER_QUOTA], count[0])
        seed_threshold = enter_threshold(traffic[TR_SEED_QUOTA], count[0])
        e = traffic_site(portals[p] // n, portals[p] % n, cell, tissue, traits, threshold,
                         traffic[TR_MEMORY_THRESHOLD], traffic[TR_EXIT_THRESHOLD], seed_threshold,
                         traffic[TR_NEGATIVE_THRESHOLD], traffic[TR_PREEXISTING_THRESHOLD],
                         traffic[TR_MUTATION_THRESHOLD], traffic[TR_LINEAGE_THRESHOLD], entry_levels, mode, key,
                         step_index)
        if e:
            cuda.atomic.add(events, e, 1)


@cuda.jit(cache=True)
def _pass_kernel(
    cell, tissue, traits, chemokine, coarsen, kind_rates, antigen_rates, cd19_noise, rates, turnover, key, step_index,
    oy, ox, events,
):
    b, a = cuda.grid(2)  # x, the fastest thread index, runs along a row: neighbouring threads, neighbouring sites
    i = oy + 3 * a
    j = ox + 3 * b
    n = cell.shape[0]
    if i < n and j < n:
        u = needs_visit(i, j, cell, traits, kind_rates, rates, turnover, key, step_index)
        if u >= 0:
            e = act_site(
                i, j, u, cell, tissue, traits, chemokine, coarsen, kind_rates, antigen_rates, cd19_noise, rates, key,
                step_index,
            )
            if e:
                cuda.atomic.add(events, e, 1)


@cuda.jit(cache=True)
def _secrete_kernel(cell, traits, field, rate_row, coarsen):
    vj, vi = cuda.grid(2)
    if vi < field.shape[0] and vj < field.shape[1]:
        secrete_voxel(vi, vj, cell, traits, field, rate_row, coarsen)


@cuda.jit(cache=True)
def _diffuse_kernel(src, dst, rate_row):
    vj, vi = cuda.grid(2)
    if vi < src.shape[0] and vj < src.shape[1]:
        diffuse_voxel(vi, vj, src, dst, rate_row)


def _grid(cols: int, rows: int, threads: tuple[int, int]) -> tuple[int, int]:
    """Blocks covering ``cols`` x ``rows`` threads; x (the fastest thread index) runs along a row."""
    return (max(1, -(-cols // threads[0])), max(1, -(-rows // threads[1])))


class CudaLattice:
    """Device-resident lattice state and the per-step launch sequence.

    Launch configurations are built once here: a step is ~19 launches, and at
    1024^2 or less their host-side cost, not the GPU, sets the step time.
    """

    def __init__(self, state, tables, portals, turnover_scheme="group", threads_per_block=THREADS_PER_BLOCK):
        self.turnover_scheme = turnover_scheme
        tp = self.threads = tuple(threads_per_block)
        self.d_portals = cuda.to_device(portals)
        self.n_portals = int(portals.shape[0])
        self.d_count = cuda.to_device(np.zeros(1, dtype=np.int64))
        n = self.n = state.cell.shape[0]
        self.d_cell = cuda.to_device(state.cell)
        self.d_tissue = cuda.to_device(state.tissue)
        self.d_traits = cuda.to_device(state.traits)
        self.d_fields = [cuda.to_device(np.ascontiguousarray(f)) for f in state.fields]
        self.d_scratch = [cuda.device_array_like(f) for f in self.d_fields]
        self.d_events = cuda.to_device(np.zeros_like(state.events))
        self.base_events = state.events.copy()
        self.order = np.zeros(9, dtype=np.int64)
        self.key = tables.key
        self.update_tables(tables)
        flat = tp[0] * tp[1]
        portal_blocks = max(1, -(-self.n_portals // flat))
        self._zero = _zero_kernel[1, 1]
        self._count = _count_empty_portals_kernel[portal_blocks, flat]
        self._traffic = _traffic_kernel[portal_blocks, flat]
        self._passes = [
            _pass_kernel[_grid((n - k % 3 + 2) // 3, (n - k // 3 + 2) // 3, tp), tp] for k in range(9)
        ]
        m = self.d_fields[0].shape[0]
        self._secrete = _secrete_kernel[_grid(m, m, tp), tp]
        self._diffuse = _diffuse_kernel[_grid(m, m, tp), tp]

    def update_tables(self, tables) -> None:
        """Put every rate table on the device (at the start, and when therapy or a boost changed them)."""
        self.tables = tables
        self.d_kind_rates = cuda.to_device(tables.kind_rates)
        self.d_antigen_rates = cuda.to_device(tables.antigen_rates)
        self.d_cd19_noise = cuda.to_device(tables.cd19_noise)
        self.d_rates = cuda.to_device(tables.rates)
        self.d_turnover = cuda.to_device(turnover_table(tables.kind_rates, self.turnover_scheme))
        self.d_entry_levels = cuda.to_device(tables.entry_levels)
        self.target_mode = int(tables.rates[R_TARGET_MODE])
        self.d_field_rates = [cuda.to_device(np.ascontiguousarray(r)) for r in tables.field_rates]
        self.substeps = [int(r[FR_SUBSTEPS]) for r in tables.field_rates]

    def step(self, step_index: int, traffic: Traffic) -> None:
        """Launch one step; ``traffic`` is the step's :class:`kernels.Traffic` (validated by its constructor)."""
        t = self.tables
        if self.n_portals:
            self._zero(self.d_count)  # on the device: a host copy here would wait for the previous step
            self._count(self.d_cell, self.d_portals, self.d_count)
            # the traffic slots go as a tuple of kernel arguments (by value): an array would be a host copy
            self._traffic(
                self.d_cell, self.d_tissue, self.d_traits, self.d_portals, self.d_count, traffic.slots(),
                self.d_entry_levels, self.target_mode, self.key, step_index, self.d_events,
            )
        sublattice_order(self.key, step_index, self.order)
        chemokine = self.d_fields[t.chemokine_field]
        for k in self.order:
            oy, ox = int(k) // 3, int(k) % 3
            self._passes[k](
                self.d_cell, self.d_tissue, self.d_traits, chemokine, t.coarsen, self.d_kind_rates,
                self.d_antigen_rates, self.d_cd19_noise, self.d_rates, self.d_turnover, self.key, step_index, oy, ox,
                self.d_events,
            )
        for f in range(len(self.d_fields)):
            rate_row = self.d_field_rates[f]
            self._secrete(self.d_cell, self.d_traits, self.d_fields[f], rate_row, t.coarsen)
            for _ in range(self.substeps[f]):
                self._diffuse(self.d_fields[f], self.d_scratch[f], rate_row)
                self.d_fields[f], self.d_scratch[f] = self.d_scratch[f], self.d_fields[f]

    def pull(self, state) -> None:
        """Copy the device state into the host arrays of ``state``."""
        cuda.synchronize()
        self.d_cell.copy_to_host(state.cell)
        self.d_traits.copy_to_host(state.traits)
        for f, d in enumerate(self.d_fields):
            state.fields[f] = d.copy_to_host()
        state.events[:] = self.base_events + self.d_events.copy_to_host()
