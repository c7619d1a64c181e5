"""What the body reads from the window every coupling interval, counted in one compiled pass over the lattice.

:meth:`abm.model.MarrowModel.read_window` needs the cells of each kind, the
target levels of the blasts and B cells that carry the CAR's target and the
ACTIVE CAR-T cells. Done with NumPy that was a dozen whole-lattice
temporaries per readout (~1.5 ms at 400^2, a readout every 30 steps: ~15 % of
a quiet step); one loop over the sites does it in a fraction of that.

This is host-side code for every backend (the state is pulled first), so it
is compiled with ``numba.njit`` itself, also under the CUDA simulator, and
repeats the three-line target-level rule of :func:`kernels.rules.target_level`
(``tests/test_model.py`` checks it against the NumPy form).
"""

from __future__ import annotations

import numba
import numpy as np

from kernels.layout import ACTIVE, ANTIGEN, BCELL, BLAST, CART, CD22_SHIFT, LEVEL_MASK, STATE, TARGET_CD19, TARGET_CD22


@numba.njit(cache=True, nogil=True)
def window_census(cell, traits, mode, kinds, levels):
    """Count the window's cells by kind and its target-carrying cells by level; return its ACTIVE CAR-T cells.

    Fills ``kinds[k]`` (cells of kind ``k``) and ``levels[l]`` (blasts and B cells whose target level is
    ``l > 0``; ``levels[0]`` stays 0). ``mode`` is the CAR's target choice (``rates[R_TARGET_MODE]``);
    ``kinds`` and ``levels`` are int64 arrays of ``N_KINDS`` and ``N_LEVELS`` entries, zeroed here.
    """
    kinds[:] = 0
    levels[:] = 0
    active = 0
    for i in range(cell.shape[0]):
        for j in range(cell.shape[1]):
            k = cell[i, j]
            kinds[k] += 1
            if k == BLAST or k == BCELL:
                v = np.int64(traits[i, j, ANTIGEN])
                l19 = v & LEVEL_MASK
                l22 = (v >> CD22_SHIFT) & LEVEL_MASK
                level = l19 if mode == TARGET_CD19 else l22 if mode == TARGET_CD22 else max(l19, l22)
                if level > 0:
                    levels[level] += 1
            elif k == CART and traits[i, j, STATE] == ACTIVE:
                active += 1
    return active
