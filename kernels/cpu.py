"""Numba CPU driver: one lattice step as ``prange`` loops over the shared rules.

The same function, run as plain Python through ``step.py_func``, is the
``python`` backend (the readable oracle): ``prange`` is then ``range`` and each
rule call goes to the same compiled rule. Parallel loops run over rows of one
sublattice (or of the voxel grid); every iteration owns its row of the event
counters, so counts are exact and independent of the thread count. Blood
traffic touches only the perivascular sites (a few % of the lattice) and runs
serially.

Performance (see ``benchmarks/README.md`` for the measurements)
    Numba does not inline a call to another ``@jit`` function that takes
    arrays into a ``prange`` body; each such call passes every array as a
    struct of about nine words and increments and decrements the array's
    reference count, an atomic operation on a cache line that all threads
    share. Per site that cost more than the rule itself (and made two threads
    fight over the reference counts). So the per-site and per-voxel hot paths
    call only functions of scalars:

    * the sublattice passes test :func:`kernels.rules.needs_visit` inline
      (:func:`visit_thresholds` once per step, then one :func:`kernels.rng.draw`
      per occupied site) and call :func:`kernels.rules.act_site` only for the
      sites that act (CAR-T cells and the rare dying / dividing tissue cell);
    * secretion counts the secreting cells of a voxel once for every field
      (:func:`kernels.diffusion.secrete_voxel`'s sum, all fields in one pass);
    * diffusion computes :func:`kernels.diffusion.diffuse_voxel`'s stencil from
      scalars (:func:`kernels.diffusion.flux`, :func:`kernels.diffusion.mul_shift`),
      all fields in one pass per sub-step.

    ``tests/test_cpu_driver.py`` keeps the inline forms equal to the rule
    functions (the CUDA driver still calls those), and the equivalence tests
    compare the backends bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from kernels.config import jit, jit_parallel
from kernels.diffusion import DECAY_SHIFT, flux, mul_shift
from kernels.rng import draw
from kernels.rules import (
    ACTIVE,
    CART,
    EMPTY,
    FR_DECAY,
    FR_DIFFUSE,
    FR_SECRETE_ACTIVE_CART,
    FR_SECRETE_STROMA,
    FR_SUBSTEPS,
    KR_CONVERT,
    KR_DIE,
    KR_DIVIDE,
    N_KINDS,
    P_DIE,
    R_TARGET_MODE,
    STATE,
    STROMA,
    act_site,
    enter_threshold,
    sublattice_order,
    traffic_site,
)

ALWAYS = np.int64(1) << 40  # a visit threshold above every draw (draws are < 2**32)


@jit
def visit_thresholds(kind_rates, out):
    """Fill ``out[kind]`` so that a site needs a visit iff ``draw(key, step, site, P_DIE) < out[kind]``.

    The table form of :func:`kernels.rules.needs_visit`: 0 for empty and
    stromal sites, above every draw for CAR-T cells, ``die + divide + convert``
    for the other kinds.
    """
    for k in range(N_KINDS):
        if k == EMPTY or k == STROMA:
            out[k] = 0
        elif k == CART:
            out[k] = ALWAYS
        else:
            out[k] = kind_rates[KR_DIE, k] + kind_rates[KR_DIVIDE, k] + kind_rates[KR_CONVERT, k]


@jit
def diffuse_row(vi, src, dst, d_q, k_q):
    """:func:`kernels.diffusion.diffuse_voxel` for every voxel of row ``vi``: reads ``src``, writes ``dst``.

    ``d_q`` and ``k_q`` are the field's ``FR_DIFFUSE`` and ``FR_DECAY`` rates.
    """
    m = src.shape[0]
    for vj in range(src.shape[1]):
        u = src[vi, vj]
        total = u
        if vi > 0:
            total += flux(src[vi - 1, vj], u, d_q)
        if vi < m - 1:
            total += flux(src[vi + 1, vj], u, d_q)
        if vj > 0:
            total += flux(src[vi, vj - 1], u, d_q)
        if vj < src.shape[1] - 1:
            total += flux(src[vi, vj + 1], u, d_q)
        dst[vi, vj] = total - mul_shift(total, k_q, DECAY_SHIFT)


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
    entry_levels,
    enter_quota,
    memory_threshold,
    exit_threshold,
    seed_quota,
    negative_threshold,
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
    order : int64[9 + N_KINDS], workspace: the sublattice order, then the visit thresholds
    portals : int64[p], flat indices of the perivascular sites (sorted)
    coarsen : int, sites per voxel side
    chemokine_field : int, which field steers chemotaxis
    kind_rates : int64[N_KIND_RATES, N_KINDS]; antigen_rates : int64[N_ANTIGEN_RATES, 256]
    cd19_noise : int64[256]; rates : int64[N_RATES]; field_rates : int64[N_FIELDS, N_FIELD_RATES]
    entry_levels : int64[2, 256], CD19 and CD22 levels of entering reservoir blasts (quantile tables)
    enter_quota, memory_threshold, exit_threshold : int, blood CAR-T traffic this step
    seed_quota, negative_threshold : int, reservoir blasts entering this step (see traffic_site)
    key, step_index : int
    events : int64[n, N_EVENTS], per-row event counters (accumulated)
    """
    n = cell.shape[0]
    empty_portals = 0
    for p in range(portals.shape[0]):
        if cell[portals[p] // n, portals[p] % n] == 0:
            empty_portals += 1
    threshold = enter_threshold(enter_quota, empty_portals)
    seed_threshold = enter_threshold(seed_quota, empty_portals)
    mode = rates[R_TARGET_MODE]
    for p in range(portals.shape[0]):
        i = portals[p] // n
        j = portals[p] % n
        e = traffic_site(i, j, cell, tissue, traits, threshold, memory_threshold, exit_threshold, seed_threshold,
                         negative_threshold, entry_levels, mode, key, step_index)
        if e:
            events[i, e] += 1
    sublattice_order(key, step_index, order[:9])
    visit = order[9:]
    visit_thresholds(kind_rates, visit)
    chemokine = fields[chemokine_field]
    for k in range(9):
        oy = order[k] // 3
        ox = order[k] % 3
        for a in prange((n - oy + 2) // 3):
            i = oy + 3 * a
            for j in range(ox, n, 3):
                if draw(key, step_index, i * n + j, P_DIE) < visit[cell[i, j]]:
                    e = act_site(
                        i, j, cell, tissue, traits, chemokine, coarsen,
                        kind_rates, antigen_rates, cd19_noise, rates, key, step_index,
                    )
                    if e:
                        events[i, e] += 1
    secrete = False
    for f in range(fields.shape[0]):
        if field_rates[f, FR_SECRETE_ACTIVE_CART] != 0 or field_rates[f, FR_SECRETE_STROMA] != 0:
            secrete = True
    m = fields.shape[1]
    n_fields = fields.shape[0]
    if secrete:
        for vi in prange(m):
            for vj in range(m):
                active = 0
                stroma = 0
                for i in range(vi * coarsen, min((vi + 1) * coarsen, n)):
                    for j in range(vj * coarsen, min((vj + 1) * coarsen, n)):
                        c = cell[i, j]
                        if c == CART and traits[i, j, STATE] == ACTIVE:
                            active += 1
                        elif c == STROMA:
                            stroma += 1
                for f in range(n_fields):
                    fields[f, vi, vj] += (
                        active * field_rates[f, FR_SECRETE_ACTIVE_CART] + stroma * field_rates[f, FR_SECRETE_STROMA]
                    )
    substeps = 0
    for f in range(n_fields):
        substeps = max(substeps, field_rates[f, FR_SUBSTEPS])
    for s in range(substeps):
        # sub-step s of every field that has one: fields[f] -> scratch[f] on even s, back on odd s
        for vi in prange(m):
            for f in range(n_fields):
                if s < field_rates[f, FR_SUBSTEPS]:
                    if s % 2 == 0:
                        diffuse_row(vi, fields[f], scratch[f], field_rates[f, FR_DIFFUSE], field_rates[f, FR_DECAY])
                    else:
                        diffuse_row(vi, scratch[f], fields[f], field_rates[f, FR_DIFFUSE], field_rates[f, FR_DECAY])
    odd = False
    for f in range(n_fields):
        if field_rates[f, FR_SUBSTEPS] % 2 == 1:
            odd = True
    if odd:
        for vi in prange(m):
            for f in range(n_fields):
                if field_rates[f, FR_SUBSTEPS] % 2 == 1:
                    for vj in range(m):
                        fields[f, vi, vj] = scratch[f, vi, vj]
