"""What a benchmark session measures: its configuration, its cases and the scenario each case starts from.

:class:`Config` and its presets (:data:`MODES`, :func:`config_for`) say how a
session runs; :func:`registry` turns a configuration into the :class:`Case`
list (and the reasons for cases left out); :func:`scenario` builds the
window, rule tables and traffic arguments a case runs on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from benchmarks.machine import cuda_usable, max_threads

IMPLEMENTATIONS = ("reference", "cpu", "cuda", "limit")
BACKENDS = ("mesa", "cpu", "cuda")
RULE_SETS = ("core", "full")
FULL_CART_PER_SITE = 0.064  # CAR-T per site in ``full`` cases: the default patient's peak (2562 in 200^2, day 14)
FULL_ENTRIES_PER_SITE_STEP = 5e-7  # expected CAR-T entries per site and step in ``full`` cases
FULL_MEMORY_SHARE = 0.3  # share of entering CAR-T cells that are memory cells in ``full`` cases


@dataclass(frozen=True)
class Config:
    """How a benchmark session runs.

    Attributes
    ----------
    mode : str
        ``smoke``, ``quick``, ``full``, ``gpu`` or ``gpu-smoke``.
    sizes : tuple of int
        Window sides measured on the CPU (reference, ``cpu``, ``limit``).
    cuda_sizes : tuple of int
        Window sides measured with ``cuda`` (when a GPU, or the simulator, is usable).
    rules : tuple of str
        Rule sets (``core``, ``full``).
    threads : tuple of int
        ``cpu`` and ``limit`` thread counts; empty: 1 and every power of two up to all Numba threads, and all.
    reference_max_size : int
        Largest size the (slow) Mesa reference runs at; 0: never.
    repeats : int
        Timed runs per case.
    target_s : float
        Wall time aimed at per timed run; sets ``steps`` from the warm-up.
    min_steps, max_steps : int
        Bounds of ``steps`` per timed run.
    seed : int
        Seed of the window, the CAR-T sites and every run.
    cart_fraction : float
        CAR-T cells seeded per free site in ``core`` cases (at least one cell);
        ``full`` cases use :data:`FULL_CART_PER_SITE` of all sites.
    isolate : bool
        Run each case in a fresh process.
    """

    mode: str = "quick"
    sizes: tuple[int, ...] = (128, 256, 512, 1024)
    cuda_sizes: tuple[int, ...] = ()
    rules: tuple[str, ...] = RULE_SETS
    threads: tuple[int, ...] = ()
    reference_max_size: int = 512
    repeats: int = 5
    target_s: float = 0.5
    min_steps: int = 2
    max_steps: int = 200
    seed: int = 20240601
    cart_fraction: float = 0.01
    isolate: bool = True


MODES = {
    "smoke": Config(mode="smoke", sizes=(16,), repeats=3, target_s=0.01, min_steps=1, max_steps=3),
    "quick": Config(),
    "full": Config(mode="full", sizes=(128, 256, 512, 1024, 2048, 4096), repeats=7, target_s=2.0, max_steps=1000),
    "gpu": Config(mode="gpu", sizes=(1024, 4096), cuda_sizes=(1024, 2048, 4096, 8192), rules=("full",),
                  reference_max_size=0, repeats=7, target_s=1.0, max_steps=2000),
    "gpu-smoke": Config(mode="gpu-smoke", sizes=(16,), cuda_sizes=(16, 24), rules=("full",), reference_max_size=0,
                        repeats=3, target_s=0.01, min_steps=1, max_steps=2),
}


def config_for(mode: str, **changes: Any) -> Config:
    """The preset of ``mode`` with some fields changed (``None`` values are ignored)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    return replace(MODES[mode], **{k: v for k, v in changes.items() if v is not None})


@dataclass(frozen=True)
class Case:
    """One measurement: an implementation on a backend at a size, thread count and rule set."""

    impl: str
    size: int
    threads: int = 1
    rules: str = "core"
    backend: str = ""

    def __post_init__(self):
        if not self.backend:
            default = {"reference": "mesa", "cpu": "cpu", "cuda": "cuda", "limit": "cpu"}[self.impl]
            object.__setattr__(self, "backend", default)

    @property
    def name(self) -> str:
        if self.impl == "limit":
            return f"limit-{self.size}-t{self.threads}" if self.backend == "cpu" else f"limit-cuda-{self.size}"
        if self.impl == "cpu":
            return f"cpu-{self.size}-t{self.threads}-{self.rules}"
        return f"{self.impl}-{self.size}-{self.rules}"


def thread_counts(config: Config) -> tuple[int, ...]:
    """The ``cpu`` thread counts of a session (see :attr:`Config.threads`)."""
    top = max_threads()
    if config.threads:
        return tuple(t for t in config.threads if 1 <= t <= top)
    counts = {1, top}
    t = 2
    while t < top:
        counts.add(t)
        t *= 2
    return tuple(sorted(counts))


def registry(config: Config) -> tuple[list[Case], list[str]]:
    """The cases of a session and the reasons for any left out.

    Per CPU size: the Mesa reference on core rules (up to ``reference_max_size``),
    ``cpu`` on every rule set at every thread count, and the ``limit`` kernel at
    every thread count. Per CUDA size (when a GPU is usable): ``cuda`` on every
    rule set and the CUDA ``limit`` kernel.
    """
    cases: list[Case] = []
    skipped: list[str] = []
    threads = thread_counts(config)
    for size in config.sizes:
        if "core" in config.rules and size <= config.reference_max_size:
            cases.append(Case("reference", size, 1, "core"))
        for rules in config.rules:
            for t in threads:
                cases.append(Case("cpu", size, t, rules))
        for t in threads:
            cases.append(Case("limit", size, t, "-", "cpu"))
    if config.cuda_sizes:
        if cuda_usable():
            for size in config.cuda_sizes:
                for rules in config.rules:
                    cases.append(Case("cuda", size, 1, rules))
                cases.append(Case("limit", size, 1, "-", "cuda"))
        else:
            skipped.append("cuda: no usable CUDA GPU")
    elif not cuda_usable():
        skipped.append("cuda: no usable CUDA GPU")
    big = [s for s in config.sizes if s > config.reference_max_size]
    if big and "core" in config.rules:
        skipped.append(f"Mesa reference above {config.reference_max_size}^2 (sizes {', '.join(map(str, big))}): "
                       "too slow to be worth the minutes")
    if max_threads() == 1:
        skipped.append("cpu at more than one thread: numba sees one thread")
    return cases, skipped


def scenario(size: int, config: Config, rules: str = "core"):
    """The window, the rule tables, the CAR-T count and the traffic arguments of a case.

    Returns ``params, state, tables, n_cart, traffic`` where ``traffic`` is
    the :class:`kernels.Traffic` for :meth:`kernels.Lattice.step` (no traffic
    for ``core``).
    """
    from abm.marrow import build_window
    from abm.params import Params
    from abm.rates import build_tables
    from abm.reference import core_tables, free_sites, place_cart, random_free_sites
    from kernels import Traffic, threshold
    from kernels import layout as L

    if rules not in RULE_SETS:
        raise ValueError(f"rules {rules!r}: expected one of {', '.join(RULE_SETS)}")
    params = Params.default().replace({"grid.size": size})
    state = build_window(params, np.random.default_rng(config.seed))
    if rules == "core":
        n_cart = max(1, round(config.cart_fraction * free_sites(state).size))
    else:
        n_cart = min(max(1, round(FULL_CART_PER_SITE * size * size)), free_sites(state).size)
    place_cart(state, random_free_sites(state, n_cart, np.random.default_rng(config.seed + 1)))
    if rules == "core":
        return params, state, core_tables(params, config.seed), n_cart, Traffic()
    tables = build_tables(params, config.seed)
    quota = round(FULL_ENTRIES_PER_SITE_STEP * size * size * 2**32)
    traffic = Traffic(enter_quota=quota, exit_threshold=int(tables.rates[L.R_EXIT]),
                      memory_threshold=threshold(FULL_MEMORY_SHARE))
    return params, state, tables, n_cart, traffic
