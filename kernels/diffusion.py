"""Cytokine and chemokine fields: secretion, diffusion, decay in exact integer arithmetic.

Grid
    A field lives on a coarse grid of voxels, each ``coarsen x coarsen``
    lattice sites (default 4 x 4 sites = 40 x 40 um). Cytokines diffuse over
    tens of sites within their lifetime (IL-6: sqrt(D / k) ~ 100-500 um), so
    the coarse grid resolves them while costing ``1 / coarsen**2`` of a lattice
    pass per sub-step, as PhysiCell's 20 um voxels do for point cells.

Fixed point
    Values are ``int64`` counts of ``QUANTUM`` (1e-9 of the field's unit, e.g.
    pg/mL). Integer arithmetic is exact and identical on every backend, so a
    field can steer decisions (chemotaxis) without breaking bit-identity.

Scheme (one sub-step of length ``dt_sub``; five-point explicit stencil)::

    flux(j -> v) = sign(u_j - u_v) * floor(|u_j - u_v| * D_q / 2**SHIFT)
    u_v'         = u_v + sum over the 4 neighbours j of flux(j -> v)
    u_v''        = u_v' - floor(u_v' * K_q / 2**DECAY_SHIFT)

with ``D_q = round(D dt_sub / h**2 * 2**SHIFT)`` and
``K_q = round((1 - exp(-k dt_sub)) * 2**DECAY_SHIFT)``. Each flux is antisymmetric
(truncation toward zero), so diffusion conserves mass exactly; edges are
no-flux. The scheme is stable and keeps ``u >= 0`` when
``D dt_sub / h**2 <= 1/4``; the host picks the number of sub-steps so that the
ratio stays at or below ``MAX_RATIO`` (0.2). Truncation loses less than one
quantum per voxel per sub-step, and decay stops below ``2**DECAY_SHIFT / K_q``
quanta (about 2e-7 pg/mL for IL-6 at the defaults). Products are formed by
:func:`mul_shift` without overflow for values up to ``2**55`` quanta
(3.6e7 field units), far above any physiological concentration.

Secretion
    Once per step, before diffusion, each voxel adds ``FR_SECRETE_ACTIVE_CART``
    quanta for every ACTIVE CAR-T cell and ``FR_SECRETE_STROMA`` for every
    stromal cell among its sites (a gather: no two threads write one voxel).
"""

from __future__ import annotations

from kernels.config import jit
from kernels.layout import (
    ACTIVE,
    CART,
    FR_DECAY,
    FR_DIFFUSE,
    FR_SECRETE_ACTIVE_CART,
    FR_SECRETE_STROMA,
    STATE,
    STROMA,
)

QUANTUM = 1e-9
SHIFT = 16
DECAY_SHIFT = 30
MAX_QUANTA = 1 << 55
MAX_RATIO = 0.2


@jit
def secrete_voxel(vi, vj, cell, traits, field, rate_row, coarsen):
    """Add this step's secretion of the sites of voxel ``(vi, vj)`` to ``field``."""
    n = cell.shape[0]
    active = 0
    stroma = 0
    for i in range(vi * coarsen, min((vi + 1) * coarsen, n)):
        for j in range(vj * coarsen, min((vj + 1) * coarsen, n)):
            k = cell[i, j]
            if k == CART and traits[i, j, STATE] == ACTIVE:
                active += 1
            elif k == STROMA:
                stroma += 1
    field[vi, vj] += active * rate_row[FR_SECRETE_ACTIVE_CART] + stroma * rate_row[FR_SECRETE_STROMA]


@jit
def mul_shift(x, k, s):
    """``floor(x * k / 2**s)`` for ``0 <= x < 2**55``, ``0 <= k <= 2**s <= 2**30``, without int64 overflow."""
    return (x >> s) * k + (((x & ((1 << s) - 1)) * k) >> s)


@jit
def flux(u_from, u_to, d_q):
    """Quanta moving from a voxel holding ``u_from`` into one holding ``u_to`` (antisymmetric).

    Written with a select on the sign rather than a branch, so that a row loop over it vectorizes
    (:func:`kernels.cpu.diffuse_row`).
    """
    diff = u_from - u_to
    f = mul_shift(abs(diff), d_q, SHIFT)
    return f if diff >= 0 else -f


@jit
def stencil(u, up, down, left, right, d_q, k_q):
    """One sub-step's value of a voxel holding ``u`` with these four neighbours (a missing neighbour: ``u``).

    Diffusion (``d_q`` = ``FR_DIFFUSE``), then decay (``k_q`` = ``FR_DECAY``).
    """
    total = u + flux(up, u, d_q) + flux(down, u, d_q) + flux(left, u, d_q) + flux(right, u, d_q)
    return total - mul_shift(total, k_q, DECAY_SHIFT)


@jit
def diffuse_voxel(vi, vj, src, dst, rate_row):
    """One diffusion + decay sub-step for voxel ``(vi, vj)``: reads ``src``, writes ``dst`` (no-flux edges)."""
    m = src.shape[0]
    u = src[vi, vj]
    up = src[vi - 1, vj] if vi > 0 else u
    down = src[vi + 1, vj] if vi < m - 1 else u
    left = src[vi, vj - 1] if vj > 0 else u
    right = src[vi, vj + 1] if vj < src.shape[1] - 1 else u
    dst[vi, vj] = stencil(u, up, down, left, right, rate_row[FR_DIFFUSE], rate_row[FR_DECAY])
