"""Build a marrow window: bone, sinusoids, stroma and the patient's cells.

Geometry
    Trabecular bone is the upper tail of a smooth Gaussian random field
    (correlation length ``~12 sites``), so it forms plates and struts; the
    threshold is the quantile that gives ``grid.bone_fraction``. Sinusoids are
    a thin band around the median of a second, independent field (curvilinear
    vessels) inside the non-bone space, sized to ``grid.sinusoid_fraction``.
    Marrow sites Moore-adjacent to a sinusoid are ``PERIVASCULAR``: CAR-T cells
    enter and leave the window there. Marrow pockets that bone (and sinusoid)
    close off from the window's main marrow space (its largest Moore-connected
    component; cells move between Moore neighbours) are filled with bone: in
    one layer the thresholded field leaves such pockets (~0.5 % of the marrow,
    up to ~3 %), which in three dimensions would be connected to the rest of
    the marrow. Kept, they held blasts no CAR-T cell could reach: CAR-T cells
    enter a pocket only through its own perivascular sites, and only through
    an empty one, so a pocket packed with blasts stays sealed; at day 28 such
    pockets held most of the residual blasts of MRD-positive responders
    (issue 4). The bone fraction is therefore ``grid.bone_fraction`` plus the
    filled pockets.
    Other marrow sites Moore-adjacent to a
    stromal niche cell are ``NICHE``: CD19+ cells there are protected
    (``niche.kill_protection``).
Cells
    Stromal niche cells occupy ``grid.stroma_fraction`` of marrow sites at
    random; of the rest, ``patient.marrow_cellularity`` hold cells: blasts with
    probability ``patient.marrow_blast_fraction``, else normal B cells with
    probability ``patient.bcell_fraction``, else other hematopoietic cells.
    Blast CD19 density is log-normal around ``patient.cd19_median_molecules``
    (spread ``patient.cd19_sd_log10``); a fraction
    ``patient.cd19_negative_fraction`` of blasts is CD19-negative. When CD22
    is tracked (:func:`abm.rates.cd22_tracked`: the product targets CD22, or
    ``patient.cd22_tracking = "always"``) blasts also carry CD22, log-normal
    around ``patient.cd22_median_molecules`` (spread ``patient.cd22_sd_log10``,
    independent of CD19) with a CD22-negative fraction
    ``patient.cd22_negative_fraction``, and B cells carry
    ``bcell.cd22_molecules``; otherwise no cell carries CD22. With
    ``lymphodepletion.enabled``, only ``lymphodepletion.normal_cell_survival``
    of the normal (non-blast) cells are left at infusion (fludarabine and
    cyclophosphamide spare no lineage; blasts are assumed chemo-refractory in
    relapsed/refractory disease). No CAR-T cell is in the window before the
    infusion.

Simplification: the geometry is statistical (no imaging data), in one cell
layer, with closed edges. The window is built on the host from a NumPy
generator seeded by the run seed, once, so it is the same for every backend.
The CD22 levels come from a second, independent generator
(:func:`cd22_generator`) and never from the first, so everything else in the
window, CD19 included, is the same whether or not CD22 is tracked.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from abm.params import Params
from abm.rates import cd22_tracked, molecules_to_level, pack_levels, target_levels, target_mode
from kernels import LatticeState
from kernels import layout as L

CORRELATION_SITES = 12.0
CD22_STREAM = 0xCD22  # spawn key of the CD22 generator (cd22_generator)


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
    tissue = np.full((n, n), L.MARROW, dtype=np.uint8)
    length = min(CORRELATION_SITES, n / 4.0)
    bone_f = params.grid.bone_fraction
    if bone_f > 0:
        field = smooth_field(rng, n, length)
        cut = np.quantile(field, 1.0 - bone_f)
        tissue[field > cut] = L.BONE
    sin_f = params.grid.sinusoid_fraction
    if sin_f > 0:
        field = np.abs(smooth_field(rng, n, length))
        open_sites = tissue == L.MARROW
        target = sin_f * n * n
        if target >= 1 and open_sites.sum() > target:
            cut = np.quantile(field[open_sites], target / open_sites.sum())
            tissue[open_sites & (field <= cut)] = L.SINUSOID
    tissue[moore_adjacent(tissue == L.SINUSOID) & (tissue == L.MARROW)] = L.PERIVASCULAR
    if (tissue == L.PERIVASCULAR).any():
        tissue[closed_pockets(tissue)] = L.BONE
    return tissue


def closed_pockets(tissue: np.ndarray) -> np.ndarray:
    """Marrow sites with no Moore path through marrow to the main marrow space.

    The main space is the largest Moore-connected marrow component with a
    perivascular site (where CAR-T cells enter). A pocket is closed even when
    it holds perivascular sites of its own: see the module docstring. Without
    any perivascular site, all marrow is closed.
    """
    marrow = (tissue == L.MARROW) | (tissue == L.PERIVASCULAR)
    labels, _ = ndimage.label(marrow, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    entered = np.zeros_like(sizes, dtype=bool)
    entered[labels[tissue == L.PERIVASCULAR]] = True
    if not entered.any():
        return marrow
    main = int(np.argmax(np.where(entered, sizes, -1)))
    return marrow & (labels != main)


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


def cd22_generator(rng: np.random.Generator) -> np.random.Generator:
    """An independent generator for the initial CD22 levels, derived from ``rng``'s seed without drawing from it.

    Its seed sequence is ``rng``'s with :data:`CD22_STREAM` appended to the
    spawn key, so it depends only on the seed ``rng`` was created from (not on
    how much of ``rng`` has been used) and ``rng`` itself is left untouched.
    """
    seq = rng.bit_generator.seed_seq
    if not isinstance(seq, np.random.SeedSequence):
        raise ValueError("build_window: rng has no seed sequence to derive the CD22 stream from; pass cd22_rng")
    return np.random.default_rng(np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, CD22_STREAM)))


def build_window(
    params: Params, rng: np.random.Generator, cd22_rng: np.random.Generator | None = None
) -> LatticeState:
    """The initial lattice state of a patient's marrow window.

    ``rng`` draws everything but the CD22 levels; those come from
    ``cd22_rng`` (default :func:`cd22_generator` of ``rng``), and only when
    CD22 is tracked.
    """
    n = params.grid.size
    tissue = build_tissue(params, rng)
    cell = np.zeros((n, n), dtype=np.uint8)
    traits = np.zeros((n, n, L.N_TRAITS), dtype=np.uint16)
    occupiable = tissue <= L.OCCUPIABLE
    u = rng.random((n, n))
    stroma = occupiable & (tissue == L.MARROW) & (u < params.grid.stroma_fraction)
    cell[stroma] = L.STROMA
    tissue[moore_adjacent(stroma) & (tissue == L.MARROW) & ~stroma] = L.NICHE
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
    cell[blast] = L.BLAST
    cell[bcell] = L.BCELL
    cell[normal] = L.NORMAL
    log_density = np.log10(p.cd19_median_molecules) + p.cd19_sd_log10 * rng.standard_normal((n, n))
    blast_level = molecules_to_level(10.0**log_density)
    negative = rng.random((n, n)) < p.cd19_negative_fraction
    blast_level[negative] = 0
    cd19 = np.where(blast, blast_level, 0)
    cd19[bcell] = int(molecules_to_level(params.bcell.cd19_molecules))
    cd22 = np.zeros((n, n), dtype=np.int64)
    if cd22_tracked(params):
        g = cd22_generator(rng) if cd22_rng is None else cd22_rng
        log_density = np.log10(p.cd22_median_molecules) + p.cd22_sd_log10 * g.standard_normal((n, n))
        blast_level = molecules_to_level(10.0**log_density)
        blast_level[g.random((n, n)) < p.cd22_negative_fraction] = 0
        cd22 = np.where(blast, blast_level, 0)
        cd22[bcell] = int(molecules_to_level(params.bcell.cd22_molecules))
    traits[..., L.ANTIGEN] = pack_levels(cd19, cd22)
    # blasts without the product's target before infusion: the pre-existing escape route (issue 28)
    negative = blast & (target_levels(traits[..., L.ANTIGEN], target_mode(params)) == 0)
    traits[negative, L.ROUTE] = L.ROUTE_PREEXISTING
    m = -(-n // params.grid.coarsen)
    return LatticeState(
        cell=cell,
        tissue=tissue,
        traits=traits,
        fields=np.zeros((L.N_FIELDS, m, m), dtype=np.int64),
        events=np.zeros(L.N_EVENTS, dtype=np.int64),
    )
