"""Numba configuration, in one place (STYLE 7).

Every compiled function in :mod:`kernels` is declared through :func:`jit` or
:func:`jit_parallel`, so the cache and math policy are set here and nowhere
else:

* ``cache=True``: compiled code is kept under ``~/.cache/cart-abm/numba-<hash>``
  (or ``$CART_ABM_CACHE_DIR``), where ``<hash>`` digests every source file of
  :mod:`kernels`. Numba keys a cache entry on the file of the function it
  compiled, not on the files of the functions it inlined, so editing a rule in
  ``rules.py`` would otherwise leave ``cpu.step`` running the old rule.
* ``_nrt=False`` for :func:`jit` (the rules, the random numbers, diffusion):
  these functions never allocate, and without Numba's reference-counting
  runtime a call no longer increments and decrements the count of every array
  it receives (an atomic operation each, on a cache line all threads share).
  At 256^2 those calls were ~30 % of a full step in a ``perf`` profile; the
  step is 10-30 % faster without them (``benchmarks/README.md``).
  :func:`jit_parallel` keeps the runtime (parallel regions use it).
* ``fastmath=False``: the kernels decide with integers (see
  :mod:`kernels.rules`), but any float that does appear must round the same
  way on every backend, so no reassociation or contraction is allowed.
* ``THREADS_PER_BLOCK``: CUDA block shape used by :mod:`kernels.cuda`
  (``CART_ABM_CUDA_BLOCK="4,4"`` overrides it; tests use small blocks so that
  block edges fall inside small lattices).

Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, how CI tests the
``cuda`` backend) simulated kernels cannot call compiled CPU functions, so
:func:`jit` and :func:`jit_parallel` leave functions as plain Python: the whole
process then runs the rules interpreted, with ``uint64`` arithmetic wrapping
modulo 2**64 exactly as compiled code does (NumPy's overflow warning, which
only reports that wrap, is silenced).
"""

from __future__ import annotations

import hashlib
import os
import sys
import warnings
from pathlib import Path

import numba
from numba import config as _numba_config

SIMULATED_CUDA = bool(_numba_config.ENABLE_CUDASIM)


def _cache_dir() -> Path:
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    root = Path(os.environ.get("CART_ABM_CACHE_DIR", Path.home() / ".cache" / "cart-abm"))
    return root / f"numba-{digest.hexdigest()[:16]}"


_numba_config.CACHE_DIR = str(_cache_dir())
if SIMULATED_CUDA:
    warnings.filterwarnings("ignore", message="overflow encountered", category=RuntimeWarning)

CACHE = True
FASTMATH = False
THREADS_PER_BLOCK = tuple(int(x) for x in os.environ.get("CART_ABM_CUDA_BLOCK", "16,16").split(","))


def jit(func=None, *, inline: bool = False):
    """Compile ``func`` with ``numba.njit`` under the project policy.

    The result is an ordinary Numba dispatcher: callable from Python, from
    other jitted functions and, as a device function, from CUDA kernels. It
    is compiled without the reference-counting runtime, so it must not
    allocate or return arrays.

    ``inline=True`` inlines the function into its callers in Numba's IR
    (``inline="always"``; on CUDA it becomes a forced inline, which device
    functions mostly are anyway). For the per-cell rules that the cpu step
    calls for every CAR-T cell in every step (:func:`kernels.rules.act_site`,
    :func:`kernels.rules.act_cart`): a call passes each array as a struct of
    about nine words, ~75 words for those two, which at the default
    patient's peak cost as much as the rules' work (the sublattice passes ran
    1.7x faster inlined, ``benchmarks/README.md``). The step then compiles
    ~7 s slower (once per machine: the cache keeps it).
    """
    options = dict(cache=CACHE, fastmath=FASTMATH, nogil=True, _nrt=False)
    if inline:
        options["inline"] = "always"
    decorator = _interpreted if SIMULATED_CUDA else numba.njit(**options)
    return decorator if func is None else decorator(func)


def jit_parallel(func=None):
    """Compile ``func`` with ``numba.njit(parallel=True)`` under the project policy."""
    decorator = (
        _interpreted if SIMULATED_CUDA else numba.njit(cache=CACHE, fastmath=FASTMATH, nogil=True, parallel=True)
    )
    return decorator if func is None else decorator(func)


def _interpreted(func):
    """Leave ``func`` as Python (simulator mode), keeping the ``py_func`` attribute drivers use."""
    func.py_func = func
    return func


def step_cached() -> bool:
    """Whether this machine holds the compiled cpu step (Numba's cache under this module's folder).

    ``kernels/config.py`` keys the cache folder on the kernels' sources; Numba
    files each function under a subfolder named after its source folder and
    a SHA-1 of that folder's path, with an index ``cpu.step-LINE.pyXY.nbi``.
    """
    source = os.path.dirname(os.path.abspath(__file__))
    sub = f"{os.path.basename(source)}_{hashlib.sha1(source.encode()).hexdigest()}"
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    return any((Path(numba.config.CACHE_DIR) / sub).glob(f"cpu.step-*.{tag}.nbi"))
