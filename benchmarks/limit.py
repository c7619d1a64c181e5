"""The "limit" kernel: the least work any lattice step has to do, the roofline a step is measured against.

One pass over the lattice that reads and writes every state array once
(``cell``, ``tissue``, the nine ``traits`` of a site, every field voxel) and
draws one counter-based random number per site with :func:`kernels.rng.draw`,
the generator of the real step. It does nothing biological: every value is
stored back XOR ``(draw & flip)``, with ``flip`` a run-time argument the
benchmarks pass as 0, so the arrays end where they started but the compiler
cannot drop the loads, the stores or the draw. It is compiled with the project's Numba policy
(:func:`kernels.config.jit_parallel`: same cache, same ``fastmath=False``), as
one ``prange`` over rows, so its thread count is set the same way as ``cpu``'s.

It lives here, not in :mod:`kernels`, because nothing but the benchmarks runs
it; :func:`cuda_limit` is its CUDA twin for ``--gpu`` sessions.
"""

from __future__ import annotations

from numba import cuda, prange

from kernels.config import jit_parallel
from kernels.layout import N_TRAITS, P_DIE
from kernels.rng import draw

P_LIMIT = P_DIE  # same purpose as the visit test of a real step (the draw's cost does not depend on it)


@jit_parallel
def limit_step(cell, tissue, traits, fields, key, step_index, flip):
    """Read and write every state array once and draw once per site; the arrays are left unchanged.

    Parameters
    ----------
    cell, tissue : uint8[n, n]
    traits : uint16[n, n, N_TRAITS]
    fields : int64[N_FIELDS, m, m]
    key, step_index : int
    flip : int, 0 (leave the arrays as they are)
    """
    n = cell.shape[0]
    for i in prange(n):
        for j in range(n):
            bit = draw(key, step_index, i * n + j, P_LIMIT) & flip
            cell[i, j] = cell[i, j] ^ bit
            tissue[i, j] = tissue[i, j] ^ bit
            for t in range(N_TRAITS):
                traits[i, j, t] = traits[i, j, t] ^ bit
    m = fields.shape[1]
    for vi in prange(m):
        for f in range(fields.shape[0]):
            for vj in range(m):
                fields[f, vi, vj] = fields[f, vi, vj] ^ flip


@cuda.jit(cache=True)
def _cuda_limit(cell, tissue, traits, key, step_index, flip):
    j, i = cuda.grid(2)  # x along a row, so that a warp reads contiguous memory
    n = cell.shape[0]
    if i < n and j < n:
        bit = draw(key, step_index, i * n + j, P_LIMIT) & flip
        cell[i, j] = cell[i, j] ^ bit
        tissue[i, j] = tissue[i, j] ^ bit
        for t in range(N_TRAITS):
            traits[i, j, t] = traits[i, j, t] ^ bit


def cuda_limit():
    """The CUDA limit kernel (compiled on first launch): one thread per site, :func:`limit_step`'s lattice work.

    The fields (1/16 of the sites at the default ``coarsen``) are left out.
    """
    return _cuda_limit
