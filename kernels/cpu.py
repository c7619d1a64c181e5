"""Numba CPU driver: one lattice step as ``prange`` loops over the shared rules.

The same function, run as plain Python through ``step.py_func``, is the
``python`` backend (the readable oracle): ``prange`` is then ``range`` and each
rule call goes to the same compiled rule. Parallel loops run over rows of one
sublattice (or of the voxel grid); every iteration owns its row of the event
counters, so counts are exact and independent of the thread count. Blood
traffic touches only the perivascular sites (a few % of the lattice) and runs
serially.
"""

from __future__ import annotations

from numba import prange

from kernels.config import jit_parallel
from kernels.diffusion import diffuse_voxel, secrete_voxel
from kernels.rules import FR_SUBSTEPS, act_site, enter_threshold, needs_visit, sublattice_order, traffic_site


@jit_parallel
def step(
    cell,
    tissue,
    traits,
    fields,
    scratch,
    order,
    portals,
    coarsen,
    chemokine_field,
    kind_rates,
    antigen_rates,
    cd19_noise,
    rates,
    field_rates,
    enter_quota,
    memory_threshold,
    exit_threshold,
    key,
    step_index,
    events,
):
    """Advance the lattice and fields by one step, in place.

    Parameters
    ----------
    cell, tissue : uint8[n, n]
    traits : uint16[n, n, N_TRAITS]
    fields, scratch : int64[N_FIELDS, m, m], ``m = ceil(n / coarsen)``
    order : int64[9], workspace for the sublattice order
    portals : int64[p], flat indices of the perivascular sites (sorted)
    coarsen : int, sites per voxel side
    chemokine_field : int, which field steers chemotaxis
    kind_rates : int64[N_KIND_RATES, N_KINDS]; antigen_rates : int64[N_ANTIGEN_RATES, 256]
    cd19_noise : int64[256]; rates : int64[N_RATES]; field_rates : int64[N_FIELDS, N_FIELD_RATES]
    enter_threshold, exit_threshold : int, thresholds for blood traffic this step
    key, step_index : int
    events : int64[n, N_EVENTS], per-row event counters (accumulated)
    """
    n = cell.shape[0]
    empty_portals = 0
    for p in range(portals.shape[0]):
        if cell[portals[p] // n, portals[p] % n] == 0:
            empty_portals += 1
    threshold = enter_threshold(enter_quota, empty_portals)
    for p in range(portals.shape[0]):
        i = portals[p] // n
        j = portals[p] % n
        e = traffic_site(i, j, cell, tissue, traits, threshold, memory_threshold, exit_threshold, key, step_index)
        if e:
            events[i, e] += 1
    sublattice_order(key, step_index, order)
    chemokine = fields[chemokine_field]
    for k in range(9):
        oy = order[k] // 3
        ox = order[k] % 3
        for a in prange((n - oy + 2) // 3):
            i = oy + 3 * a
            for j in range(ox, n, 3):
                if needs_visit(i, j, cell, kind_rates, key, step_index):
                    e = act_site(
                        i, j, cell, tissue, traits, chemokine, coarsen,
                        kind_rates, antigen_rates, cd19_noise, rates, key, step_index,
                    )
                    if e:
                        events[i, e] += 1
    m = fields.shape[1]
    for f in range(fields.shape[0]):
        src = fields[f]
        dst = scratch[f]
        rate_row = field_rates[f]
        for vi in prange(m):
            for vj in range(m):
                secrete_voxel(vi, vj, cell, traits, src, rate_row, coarsen)
        for _ in range(rate_row[FR_SUBSTEPS]):
            for vi in prange(m):
                for vj in range(m):
                    diffuse_voxel(vi, vj, src, dst, rate_row)
            src, dst = dst, src
        if rate_row[FR_SUBSTEPS] % 2 == 1:
            for vi in prange(m):
                for vj in range(m):
                    fields[f, vi, vj] = scratch[f, vi, vj]
