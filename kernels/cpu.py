"""Numba CPU driver: one lattice step as ``prange`` loops over the shared rules.

The same function, run as plain Python through ``step.py_func``, is the
``python`` backend (the readable oracle): ``prange`` is then ``range`` and each
rule call goes to the same compiled rule. Blood traffic touches only the
perivascular sites (a few % of the lattice), by slabs of rows in parallel.

The sweep: nine sublattice passes in one wave
    A step is defined as nine passes, one per sublattice, in a random order
    (:func:`kernels.rules.sublattice_order`); the CUDA driver runs them so.
    Updating a site reads and writes only its 3 x 3 neighbourhood, so two
    updates can affect each other only if their rows differ by at most
    ``REACH`` = 2 (same-pass updates never do). Any order of the updates that
    keeps every such pair in pass order gives the same lattice, bit for bit.
    This driver uses one that visits memory once per step instead of nine
    times:

    * a *wave*: the ``k``-th pass updates row ``i`` at time ``t = i + LAG * k``
      (``LAG`` = 3 > ``REACH``), so a task sweeps down its rows once with the
      nine passes trailing each other by three rows; the 25-odd rows in flight
      stay in the core's cache (at 1024^2, 27 rows of traits are ~0.5 MB), and
      the row the wave reaches next is read ahead once per cache line so that
      the hardware streams it in;
    * *slabs* for threads: rows are cut into slabs of ``slab_rows`` (>= 35).
      Phase 0 runs every slab's wave in parallel, the ``k``-th pass leaving out
      ``REACH * k`` rows at each inner edge (a trapezoid); phase 1 runs the
      left-out zones around every boundary in parallel (``REACH * k`` rows each
      side for pass ``k``). A pair of conflicting updates then either lies in
      one task (kept in order by the wave) or in phase 0 then phase 1 in pass
      order: an update left to phase 1 is never more than ``REACH`` rows from a
      later pass done in phase 0 (``tests/test_cpu_driver.py`` checks every
      slab height against one slab).

    At 1024^2 with the default patient's peak CAR-T density the nine
    separate passes spent most of their time waiting on cache misses in the
    traits array (``benchmarks/README.md`` has the profile). Every task owns
    the event-counter rows it updates, so counts are exact and independent of
    the thread count. Fields use row-parallel loops over the voxel grid.

Performance (see ``benchmarks/README.md`` for the measurements)
    Numba does not inline a call to another ``@jit`` function that takes
    arrays into a ``prange`` body; each such call passes every array as a
    struct of about nine words, and (unless the callee is compiled without
    Numba's runtime, as :func:`kernels.config.jit` now does) increments and
    decrements the array's reference count, an atomic operation on a cache
    line that all threads share. Per site that cost more than the rule itself.
    So the per-site and per-voxel hot paths call only functions of scalars,
    or rules that Numba inlines (:func:`kernels.rules.act_site` and
    :func:`kernels.rules.act_cart`, ``jit(inline=True)``):

    * the sublattice passes do :func:`kernels.rules.needs_visit` inline: a
      CAR-T cell acts every step; tissue cells are drawn by turnover group
      (:mod:`kernels.turnover`: one draw per group of 32 sites of a pass row,
      then only the rare candidates), and :func:`kernels.rules.act_site` is
      called only for the sites that act;
    * work follows the active cells: before the passes, :func:`scan_row`
      writes a bit mask per block of ``BLOCK`` = 32 columns of each row with
      a bit for each CAR-T cell (and, while stripped cells recover, a second
      mask for those), in vectorized loops; a pass row visits only the set
      bits of its sublattice (:data:`THIRDS`, :func:`lowest_bit`), and
      secretion only the sites within one site of a CAR-T cell
      (:func:`near_car_t`), so the cost of the passes follows the CAR-T cells,
      not the area. That is exact, not an approximation: a CAR-T cell that has
      not acted in this step sits where it sat before the passes (only its own
      move takes a CAR-T cell from its site, and it has then acted), a cell
      stripped in the step is the neighbour of such a CAR-T cell, and at the
      end of the step every CAR-T cell is within one site of where a CAR-T
      cell sat before the passes (it moved or placed a daughter one site).
      The stroma, which no rule makes, moves or removes, is counted per voxel
      once by the :class:`kernels.Lattice`;
    * blood traffic makes the draws of :func:`kernels.rules.traffic_site`'s
      first test inline and calls it only where a cell enters or leaves;
    * secretion adds each secreting cell's rate to its voxel
      (:func:`kernels.diffusion.secrete_voxel`'s sums, all fields in one pass);
    * diffusion computes :func:`kernels.diffusion.diffuse_voxel`'s stencil from
      scalars, branch-free in the interior of a row so that it vectorizes
      (:func:`kernels.diffusion.stencil`), all fields in one pass per sub-step.

    ``tests/test_cpu_driver.py`` keeps the inline forms equal to the rule
    functions (the CUDA driver still calls those), and the equivalence tests
    compare the backends bit for bit.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from kernels.config import jit, jit_parallel
from kernels.diffusion import stencil
from kernels.layout import (
    ACTIVE,
    BCELL,
    BLAST,
    CART,
    DEFICIT,
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
    N_TRAITS,
    P_DIE,
    P_ENTER,
    P_EXIT,
    P_SEED,
    R_RECOVER,
    R_TARGET_MODE,
    STATE,
    STROMA,
    TARGET,
    TR_ENTER_QUOTA,
    TR_EXIT_THRESHOLD,
    TR_LINEAGE_THRESHOLD,
    TR_MEMORY_THRESHOLD,
    TR_MUTATION_THRESHOLD,
    TR_NEGATIVE_THRESHOLD,
    TR_PREEXISTING_THRESHOLD,
    TR_SEED_QUOTA,
    TV_BOUND,
    TV_GROUP,
)
from kernels.rng import draw
from kernels.rules import (
    act_site,
    candidate_mask,
    decision_value,
    enter_threshold,
    needs_visit,
    sublattice_order,
    traffic_site,
)

REACH = 2  # two updates conflict (their 3 x 3 neighbourhoods overlap) only if their rows differ by <= REACH
LAG = 3  # rows the wave of pass k + 1 trails that of pass k; must exceed REACH
MIN_SLAB_ROWS = 2 * REACH * 8 + REACH + 1  # 35: the trapezoids partition the rows, boundary zones stay apart
SLAB_ROWS = 40  # default rows per slab
TOUCH_STRIDE = max(1, 64 // (2 * N_TRAITS))  # sites per 64-byte cache line of traits


@jit
def pass_rows(n, lo, hi, phase, k):
    """Rows ``[first, last)`` that the ``k``-th sublattice pass updates in one task of the sweep.

    Phase 0, slab ``[lo, hi)``: the slab less ``REACH * k`` rows at each edge
    it shares with another slab. Phase 1, the boundary row ``lo == hi``:
    ``REACH * k`` rows on either side of it (what phase 0 left out).
    """
    if phase == 0:
        first = lo + REACH * k if lo > 0 else 0
        last = hi - REACH * k if hi < n else n
        return first, last
    return max(lo - REACH * k, 0), min(hi + REACH * k, n)


@jit
def visit_thresholds(kind_rates, out):
    """Fill ``out[kind]`` with the kind's ``die + divide + convert``: 0 for empty, stromal and CAR-T sites.

    The table form of the tissue branch of :func:`kernels.rules.needs_visit`:
    a candidate site acts iff its decision value is below ``out[kind]``
    (CAR-T cells are visited apart, every step).
    """
    for k in range(N_KINDS):
        if k == EMPTY or k == STROMA or k == CART:
            out[k] = 0
        else:
            out[k] = kind_rates[KR_DIE, k] + kind_rates[KR_DIVIDE, k] + kind_rates[KR_CONVERT, k]


@jit
def diffuse_row(vi, src, dst, d_q, k_q):
    """:func:`kernels.diffusion.diffuse_voxel` for every voxel of row ``vi``: reads ``src``, writes ``dst``.

    ``d_q`` and ``k_q`` are the field's ``FR_DIFFUSE`` and ``FR_DECAY`` rates. The interior voxels of the row
    run in one loop without edge tests, which LLVM vectorizes (:func:`kernels.diffusion.stencil` has no
    branch); the two end voxels are done apart. A missing neighbour reads the voxel itself (no flux).
    """
    m = src.shape[0]
    w = src.shape[1]
    vi = np.int64(vi)  # a prange index may come as uint64, and uint64 - 1 types as a float
    up = vi - 1 if vi > 0 else vi
    down = vi + 1 if vi < m - 1 else vi
    for vj in range(1, w - 1):
        dst[vi, vj] = stencil(src[vi, vj], src[up, vj], src[down, vj], src[vi, vj - 1], src[vi, vj + 1], d_q, k_q)
    for vj in range(0, w, max(w - 1, 1)):  # the first and the last voxel (one voxel if w == 1)
        u = src[vi, vj]
        left = src[vi, vj - 1] if vj > 0 else u
        right = src[vi, vj + 1] if vj < w - 1 else u
        dst[vi, vj] = stencil(u, src[up, vj], src[down, vj], left, right, d_q, k_q)


BLOCK = 32  # columns per block of a row: one bit each in a uint32 mask (:func:`scan_row`)
THIRDS = (0x49249249, 0x92492492, 0x24924924)  # bits j of a block with j % 3 == 0, 1, 2
DE_BRUIJN = 0x077CB531  # (lowest bit * DE_BRUIJN) >> 27 indexes LOWEST_BIT (Leiserson, Prokop & Randall 1998)
LOWEST_BIT = (0, 1, 28, 2, 29, 14, 24, 3, 30, 22, 20, 15, 25, 17, 4, 8,
              31, 27, 13, 23, 21, 19, 16, 7, 26, 12, 18, 6, 11, 5, 10, 9)


def mask_shape(n: int) -> tuple[int, int, int]:
    """Shape of the ``masks`` workspace of :func:`step` for an ``n x n`` lattice."""
    return 2, n, -(-n // BLOCK)


@jit(inline=True)
def lowest_bit(m):
    """Index (0..31) of the lowest set bit of a non-zero 32-bit mask ``m`` (an int64)."""
    return LOWEST_BIT[(((m & -m) * DE_BRUIJN) & 0xFFFFFFFF) >> 27]


@jit
def scan_row(i, cell, traits, masks, recovering):
    """Fill ``masks[:, i, :]`` before the passes: where in row ``i`` the cells are that act every step.

    Bit ``j`` of ``masks[0, i, b]`` is set if column ``b * BLOCK + j`` holds a CAR-T cell; of ``masks[1, i, b]``
    if it holds a blast or B cell with a trogocytosis ``DEFICIT`` (only looked for when ``recovering``). The
    CAR-T masks are built in loops of fixed length, which LLVM vectorizes (~0.3 ns a site).
    """
    n = cell.shape[1]
    full = n // BLOCK
    for b in range(full):
        m = np.uint32(0)
        for j in range(BLOCK):
            m |= np.uint32(cell[i, b * BLOCK + j] == CART) << np.uint32(j)
        masks[0, i, b] = m
    if full < masks.shape[2]:
        m = np.uint32(0)
        for j in range(full * BLOCK, n):
            m |= np.uint32(cell[i, j] == CART) << np.uint32(j - full * BLOCK)
        masks[0, i, full] = m
    for b in range(masks.shape[2]):
        masks[1, i, b] = 0
    if recovering:
        for j in range(n):
            x = cell[i, j]
            if (x == BLAST or x == BCELL) and traits[i, j, DEFICIT] != 0:
                masks[1, i, j // BLOCK] |= np.uint32(1) << np.uint32(j % BLOCK)


@jit(inline=True)
def near_car_t(masks, i, b, n):
    """Mask of the columns of block ``b`` of row ``i`` within one site of a CAR-T cell of ``masks[0]``."""
    nb = masks.shape[2]
    v = np.int64(0)
    left = np.int64(0)
    right = np.int64(0)
    for r in range(max(i - 1, 0), min(i + 2, n)):
        v |= np.int64(masks[0, r, b])
        if b > 0:
            left |= np.int64(masks[0, r, b - 1])
        if b + 1 < nb:
            right |= np.int64(masks[0, r, b + 1])
    d = v | (v << 1) | (v >> 1) | ((left >> (BLOCK - 1)) & 1) | ((right & 1) << (BLOCK - 1))
    width = min(BLOCK, n - b * BLOCK)
    return d & ((np.int64(1) << width) - 1)


@jit_parallel
def step(
    cell,
    tissue,
    traits,
    fields,
    scratch,
    masks,
    stroma,
    order,
    portals,
    gates,
    coarsen,
    chemokine_field,
    kind_rates,
    antigen_rates,
    cd19_noise,
    rates,
    field_rates,
    entry_levels,
    turnover,
    traffic,
    key,
    step_index,
    events,
    slab_rows,
):
    """Advance the lattice and fields by one step, in place.

    Parameters
    ----------
    cell, tissue : uint8[n, n]
    traits : uint16[n, n, N_TRAITS]
    fields, scratch : int64[N_FIELDS, m, m], ``m = ceil(n / coarsen)``
    masks : uint32[2, n, nb], workspace: where the cells are that act every step, a bit per site (:func:`mask_shape`)
    stroma : int64[m, m], the stromal cells of every voxel (no rule makes, moves or removes one; the
        :class:`kernels.Lattice` counts them once)
    order : int64[9 + N_KINDS], workspace: the sublattice order, then the visit thresholds
    portals : int64[p], flat indices of the perivascular sites (sorted)
    gates : int64[p], workspace: the portals where a cell may enter or leave this step
    coarsen : int, sites per voxel side
    chemokine_field : int, which field steers chemotaxis
    kind_rates : int64[N_KIND_RATES, N_KINDS]; antigen_rates : int64[N_ANTIGEN_RATES, 256]
    cd19_noise : int64[256]; rates : int64[N_RATES]; field_rates : int64[N_FIELDS, N_FIELD_RATES]
    entry_levels : int64[2, 256], CD19 and CD22 levels of entering reservoir blasts (quantile tables)
    turnover : int64[N_TURNOVER], how tissue sites are drawn for turnover (:mod:`kernels.turnover`)
    traffic : int64[N_TRAFFIC], this step's blood traffic: CAR-T cells and reservoir blasts entering and
        CAR-T cells leaving (the ``TR_*`` slots of :mod:`kernels.layout`; :class:`kernels.Traffic` packs it)
    key, step_index : int
    events : int64[n, N_EVENTS], per-row event counters (accumulated)
    slab_rows : int, rows per slab of the sweep, >= ``MIN_SLAB_ROWS`` (any value gives the same result)
    """
    n = cell.shape[0]
    # blood traffic: a portal's decisions touch only its own site, so slabs of rows run in parallel (each owns
    # the event rows of its portals). The first loop counts the empty portals and lists, in the slab's part of
    # ``gates``, the portals where something can happen (empty: a cell may enter; a CAR-T cell: it may leave)
    flat = cell.reshape(cell.size)
    slabs = max(1, n // slab_rows)
    empty = np.zeros(slabs, dtype=np.int64)
    listed = np.zeros(slabs, dtype=np.int64)
    for b in prange(slabs):
        first = np.searchsorted(portals, (b * n // slabs) * n)
        q = first
        for p in range(first, np.searchsorted(portals, ((b + 1) * n // slabs) * n)):
            c = flat[portals[p]]
            if c == EMPTY or c == CART:
                gates[q] = portals[p]
                q += 1
                if c == EMPTY:
                    empty[b] += 1
        listed[b] = q - first
    empty_portals = empty.sum()
    threshold = enter_threshold(traffic[TR_ENTER_QUOTA], empty_portals)
    seed_threshold = enter_threshold(traffic[TR_SEED_QUOTA], empty_portals)
    mode = rates[R_TARGET_MODE]
    exit_threshold = traffic[TR_EXIT_THRESHOLD]
    memory_threshold = traffic[TR_MEMORY_THRESHOLD]
    negative_threshold = traffic[TR_NEGATIVE_THRESHOLD]
    preexisting_threshold = traffic[TR_PREEXISTING_THRESHOLD]
    mutation_threshold = traffic[TR_MUTATION_THRESHOLD]
    lineage_threshold = traffic[TR_LINEAGE_THRESHOLD]
    for b in prange(slabs):
        first = np.searchsorted(portals, (b * n // slabs) * n)
        for q in range(first, first + listed[b]):
            site = gates[q]
            i = site // n
            j = site - i * n
            # the draws traffic_site makes first, inline: it is called only for the portals where something happens
            if cell[i, j] == EMPTY:
                if not ((threshold > 0 and draw(key, step_index, site, P_ENTER) < threshold)
                        or (seed_threshold > 0 and draw(key, step_index, site, P_SEED) < seed_threshold)):
                    continue
            elif traits[i, j, TARGET] != 0 or draw(key, step_index, site, P_EXIT) >= exit_threshold:
                continue
            e = traffic_site(i, j, cell, tissue, traits, threshold, memory_threshold, exit_threshold, seed_threshold,
                             negative_threshold, preexisting_threshold, mutation_threshold, lineage_threshold,
                             entry_levels, mode, key, step_index)
            if e:
                events[i, e] += 1
    sublattice_order(key, step_index, order[:9])
    visit = order[9:]
    visit_thresholds(kind_rates, visit)
    group = turnover[TV_GROUP]
    bound = turnover[TV_BOUND]
    recovering = rates[R_RECOVER] > 0
    # where the cells are that act every step (CAR-T cells; stripped cells while they recover): found here, after
    # traffic, so that the passes visit only them and the turnover candidates
    for i in prange(n):
        scan_row(i, cell, traits, masks, recovering)
    nb = masks.shape[2]
    chemokine = fields[chemokine_field]
    for phase in range(2):
        # phase 0: every slab's trapezoid; phase 1: the zone around every boundary between two slabs
        for b in prange(slabs - phase):
            lo = (b + phase) * n // slabs
            hi = (b + 1) * n // slabs
            for t in range(lo, hi + (LAG + REACH) * 8):
                ahead = t + 2
                if ahead < n:
                    # read one trait per cache line of the CAR-T blocks of the row the wave reaches next, so that
                    # the hardware streams them in instead of the CAR-T cells missing on them one by one
                    touched = np.int64(0)  # int64 in Python mode too (a uint16 sum would overflow)
                    for blk in range(nb):
                        if masks[0, ahead, blk] != 0:
                            for j in range(blk * BLOCK, min((blk + 1) * BLOCK, n), TOUCH_STRIDE):
                                touched += traits[ahead, j, 0]
                    if touched < 0:  # never: keeps the loads
                        events[ahead, 0] += 0
                for k in range(9):
                    i = t - LAG * k
                    first, last = pass_rows(n, lo, hi, phase, k)
                    if i < first or i >= last or (i - order[k] // 3) % 3 != 0:
                        continue
                    # the sites of this pass in row i: ox, ox + 3, ...; the order within a pass is free
                    ox = order[k] % 3
                    # the cells that act every step, from the masks: CAR-T cells where they sat before the passes
                    # (one that has not acted has not moved), and while stripped cells recover, those and every
                    # site next to a CAR-T cell (where one may be stripped in this step); the per-site scheme
                    # visits every site
                    for blk in range(nb):
                        if group == 0:
                            bits = (np.int64(1) << min(BLOCK, n - blk * BLOCK)) - 1
                        elif recovering:
                            bits = near_car_t(masks, i, blk, n) | np.int64(masks[1, i, blk])
                        else:
                            bits = np.int64(masks[0, i, blk])
                        bits &= THIRDS[(ox - blk * BLOCK) % 3]
                        while bits != 0:
                            j = blk * BLOCK + lowest_bit(bits)
                            bits &= bits - 1
                            c = cell[i, j]
                            u = np.int64(-1)
                            if c == CART:
                                u = 0
                            elif recovering and (c == BLAST or c == BCELL) and traits[i, j, DEFICIT] != 0:
                                # rare (stripped by trogocytosis): the rule itself, candidate or not
                                u = needs_visit(i, j, cell, traits, kind_rates, rates, turnover, key, step_index)
                            elif group == 0 and visit[c] > 0:  # the per-site scheme: one draw per tissue site
                                u = draw(key, step_index, i * n + j, P_DIE)
                                if u >= visit[c]:
                                    u = -1
                            if u >= 0:
                                e = act_site(
                                    i, j, u, cell, tissue, traits, chemokine, coarsen,
                                    kind_rates, antigen_rates, cd19_noise, rates, key, step_index,
                                )
                                if e:
                                    events[i, e] += 1
                    members = (n - ox + 2) // 3 if group > 0 else 0
                    for g0 in range(0, members, max(group, 1)):
                        mask = candidate_mask(key, step_index, i * n + ox + 3 * g0, turnover)
                        r = 0
                        while mask != 0:
                            if mask & 1 and g0 + r < members:
                                j = ox + 3 * (g0 + r)
                                c = cell[i, j]
                                if visit[c] > 0:
                                    v = decision_value(key, step_index, i * n + j, bound)
                                    if v < visit[c]:
                                        e = act_site(
                                            i, j, v, cell, tissue, traits, chemokine, coarsen,
                                            kind_rates, antigen_rates, cd19_noise, rates, key, step_index,
                                        )
                                        if e:
                                            events[i, e] += 1
                            mask >>= 1
                            r += 1
    secrete = False
    for f in range(fields.shape[0]):
        if field_rates[f, FR_SECRETE_ACTIVE_CART] != 0 or field_rates[f, FR_SECRETE_STROMA] != 0:
            secrete = True
    m = fields.shape[1]
    n_fields = fields.shape[0]
    if secrete:
        # per voxel row: the stromal cells (counted by the Lattice: no rule moves them), then the ACTIVE CAR-T
        # cells, looked for within one site of where one sat at the start of the step (a CAR-T cell moves or places
        # a daughter one site at most), each adding its rate to its voxel: kernels.diffusion.secrete_voxel's sums
        for vi in prange(m):
            for f in range(n_fields):
                rate = field_rates[f, FR_SECRETE_STROMA]
                if rate != 0:
                    for vj in range(m):
                        fields[f, vi, vj] += stroma[vi, vj] * rate
            for i in range(vi * coarsen, min((vi + 1) * coarsen, n)):
                for b in range(nb):
                    bits = near_car_t(masks, i, b, n)
                    while bits != 0:
                        j = b * BLOCK + lowest_bit(bits)
                        bits &= bits - 1
                        if cell[i, j] == CART and traits[i, j, STATE] == ACTIVE:
                            for f in range(n_fields):
                                fields[f, vi, j // coarsen] += field_rates[f, FR_SECRETE_ACTIVE_CART]
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
