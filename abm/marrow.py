"""Build a marrow window: bone, sinusoids, stroma and the patient's cells.

Geometry
    Trabecular bone is the upper tail of a smooth Gaussian random field
    (correlation length ``~12 sites``), so it forms plates and struts; the
    threshold is the quantile that gives ``grid.bone_fraction``. Sinusoids are
    a thin band around the median of a second, independent field (curvilinear
    vessels) inside the non-bone space, sized to ``grid.sinusoid_fraction``.
    Marrow sites Moore-adjacent to a sinusoid are ``PERIVASCULAR``: CAR-T cells
    enter and leave the window there. Other marrow sites Moore-adjacent to a
    stromal niche cell are ``NICHE``: CD19+ cells there are protected
    (``niche.kill_protection``).
Cells
    Stromal niche cells occupy ``grid.stroma_fraction`` of marrow sites at
    random; of the rest, ``patient.marrow_cellularity`` hold cells: blasts with
    probability ``patient.marrow_blast_fraction``, else normal B cells with
    probability ``patient.bcell_fraction``, else other hematopoietic cells.
    Blast CD19 density is log-normal around ``patient.cd19_median_molecules``
    (spread ``patient.cd19_sd_log10``); a fraction
    ``patient.cd19_negative_fraction`` of blasts is CD19-negative. With
    ``lymphodepletion.enabled``, only ``lymphodepletion.normal_cell_survival``
    of the normal (non-blast) cells are left at infusion (fludarabine and
    cyclophosphamide spare no lineage; blasts are assumed chemo-refractory in
    relapsed/refractory disease). No CAR-T cell is in the window before the
    infusion.

Simplification: the geometry is statistical (no imaging data), in one cell
layer, with closed edges. The window is built on the host from a NumPy
generator seeded by the run seed, once, so it is the same for every backend.
"""

from __future__ import annotations

import numpy as np

from abm.params import Params
from abm.rates import molecules_to_level
from kernels import LatticeState
from kernels import rules as R

CORRELATION_SITES = 12.0


def smooth_field(rng: np.random.Generator, n: int, length: float) -> np.ndarray:
    """Gaussian random field on an ``n x n`` grid with correlation length ``length`` sites."""
    noise = rng.standard_normal((n, n))
    k = np.fft.fftfreq(n)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    spectrum = np.exp(-2.0 * (np.pi * length) ** 2 * k2 / 4.0)
    field = np.fft.ifft2(np.fft.fft2(noise) * spectrum).real
    return (field - field.mean()) / (field.std() + 1e-12)


def build_tissue(params: Params, rng: np.random.Generator) -> np.ndarray:
    """Tissue codes (uint8[n, n]): MARROW, PERIVASCULAR, BONE, SINUSOID (NICHE is added with the stroma)."""
    n = params.grid.size
    tissue = np.full((n, n), R.MARROW, dtype=np.uint8)
    length = min(CORRELATION_SITES, n / 4.0)
    bone_f = params.grid.bone_fraction
    if bone_f > 0:
        field = smooth_field(rng, n, length)
        cut = np.quantile(field, 1.0 - bone_f)
        tissue[field > cut] = R.BONE
    sin_f = params.grid.sinusoid_fraction
    if sin_f > 0:
        field = np.abs(smooth_field(rng, n, length))
        open_sites = tissue == R.MARROW
        target = sin_f * n * n
        if target >= 1 and open_sites.sum() > target:
            cut = np.quantile(field[open_sites], target / open_sites.sum())
            tissue[open_sites & (field <= cut)] = R.SINUSOID
    tissue[moore_adjacent(tissue == R.SINUSOID) & (tissue == R.MARROW)] = R.PERIVASCULAR
    return tissue


def moore_adjacent(mask: np.ndarray) -> np.ndarray:
    """Sites with at least one of their 8 neighbours in ``mask`` (closed edges)."""
    n0, n1 = mask.shape
    near = np.zeros_like(mask)
    padded = np.pad(mask, 1)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            if di or dj:
                near |= padded[1 + di : n0 + 1 + di, 1 + dj : n1 + 1 + dj]
    return near


def build_window(params: Params, rng: np.random.Generator) -> LatticeState:
    """The initial lattice state of a patient's marrow window."""
    n = params.grid.size
    tissue = build_tissue(params, rng)
    cell = np.zeros((n, n), dtype=np.uint8)
    traits = np.zeros((n, n, R.N_TRAITS), dtype=np.uint16)
    occupiable = tissue <= R.OCCUPIABLE
    u = rng.random((n, n))
    stroma = occupiable & (tissue == R.MARROW) & (u < params.grid.stroma_fraction)
    cell[stroma] = R.STROMA
    tissue[moore_adjacent(stroma) & (tissue == R.MARROW) & ~stroma] = R.NICHE
    free = occupiable & ~stroma
    occupied = free & (rng.random((n, n)) < params.patient.marrow_cellularity)
    p = params.patient
    kind_u = rng.random((n, n))
    blast = occupied & (kind_u < p.marrow_blast_fraction)
    rest = occupied & ~blast
    bcell = rest & (rng.random((n, n)) < p.bcell_fraction)
    normal = rest & ~bcell
    if params.lymphodepletion.enabled:
        spared = rng.random((n, n)) < params.lymphodepletion.normal_cell_survival
        bcell &= spared
        normal &= spared
    cell[blast] = R.BLAST
    cell[bcell] = R.BCELL
    cell[normal] = R.NORMAL
    log_density = np.log10(p.cd19_median_molecules) + p.cd19_sd_log10 * rng.standard_normal((n, n))
    blast_level = molecules_to_level(10.0**log_density)
    negative = rng.random((n, n)) < p.cd19_negative_fraction
    blast_level[negative] = 0
    traits[..., R.CD19] = np.where(blast, blast_level, 0)
    traits[..., R.CD19][bcell] = int(molecules_to_level(params.bcell.cd19_molecules))
    m = -(-n // params.grid.coarsen)
    return LatticeState(
        cell=cell,
        tissue=tissue,
        traits=traits,
        fields=np.zeros((R.N_FIELDS, m, m), dtype=np.int64),
        events=np.zeros(R.N_EVENTS, dtype=np.int64),
    )
