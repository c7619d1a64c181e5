"""Benchmarks: the plain-Mesa reference, the kernel backends and the limit kernel, on core rules and the full model.

A benchmark is a registry of cases (:func:`registry`), a runner
(:func:`run_case`, :func:`run`), comparisons with bootstrap intervals
(:func:`comparisons`, :func:`targets`, :func:`compare`), writers
(:func:`write`: JSON, Markdown, PNG plots) and patient wall-clock timings
(:func:`patient_runs`); ``python -m benchmarks`` ties them together (see
``benchmarks/README.md`` for the CLI and the result schema).

What is measured
    *Site-updates per second*: lattice sites times lattice steps divided by the
    wall time of those steps. Every case starts from the default patient window
    of ``grid.size = size`` built by :func:`abm.marrow.build_window` from the
    seed, with CAR-T cells at a fraction of its free sites, under one of two
    rule sets:

    ``core``
        :func:`abm.reference.core_tables`: no fields, no chemotaxis, no blood
        traffic, no life cycle beyond kill and divide; what the Mesa reference
        implements, so the two do the same work.
    ``full``
        :func:`abm.rates.build_tables` defaults: both fields secreted and
        diffused, chemotaxis, activation-induced death, exhaustion, memory,
        CD19 loss, B lymphopoiesis, and blood traffic at a fixed entry quota
        (:data:`FULL_ENTRIES_PER_SITE_STEP`) with the default exit rate.
    The ``limit`` kernel (:mod:`benchmarks.limit`) is the roofline: one pass
    that reads and writes every state array once and draws once per site.
How
    Each case runs in a fresh process (so the peak RSS is the case's own and
    no JIT state or thread setting leaks between cases). Two warm-up steps run
    outside the timed region: the first includes JIT compilation (or loading
    the compiled cache), the second estimates the step time that sizes the
    timed runs. Then ``repeats`` runs of ``steps`` steps each are timed; the
    row keeps every run's step time, and reports their median and range.
    Repeats continue the same run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 2
STARVED = 0.85  # a case whose process got less CPU time per thread and wall second than this was competing
RESULTS_DIR = Path(__file__).resolve().parent / "results"
IMPLEMENTATIONS = ("reference", "cpu", "cuda", "limit")
BACKENDS = ("mesa", "cpu", "cuda")
RULE_SETS = ("core", "full")
FULL_CART_PER_SITE = 0.064  # CAR-T per site in ``full`` cases: the default patient's peak (2562 in 200^2, day 14)
FULL_ENTRIES_PER_SITE_STEP = 5e-7  # expected CAR-T entries per site and step in ``full`` cases
FULL_MEMORY_SHARE = 0.3  # share of entering CAR-T cells that are memory cells in ``full`` cases
BOOTSTRAP_RESAMPLES = 2000

ROW_KEYS = (
    "case", "impl", "backend", "rules", "size", "sites", "threads", "seed", "n_cart", "steps", "repeats",
    "setup_s", "warmup_s", "compile_s", "step_ms_median", "step_ms_min", "step_ms_max", "step_ms_samples",
    "site_updates_per_s", "site_updates_per_s_min", "site_updates_per_s_max", "spread_pct",
    "peak_rss_mib", "rss_baseline_mib", "rss_end_mib", "bytes_per_site", "peak_bytes_per_site",
    "counts_initial", "counts_final", "cpu_per_wall", "load_1m_start", "load_1m_end", "created_utc",
)
MACHINE_KEYS = (
    "platform", "machine", "cpu_model", "cpu_count", "cpu_affinity", "numba_threads", "threading_layer",
    "gpu", "cuda_simulated", "python", "numpy", "numba", "mesa", "cart_abm", "git_commit", "git_dirty",
)

# (name, comparison kind, size, rules, bound, "min" or "max"): how each issue-#7 target is checked.
TARGETS = (
    ("cpu >= 200x the Mesa reference, core rules, 256^2", "vs_reference", 256, "core", 200.0, "min"),
    ("full step <= 4x the limit kernel, 1024^2", "vs_limit", 1024, "full", 4.0, "max"),
    ("2 threads >= 1.6x 1 thread, full step, 1024^2", "threads", 1024, "full", 1.6, "min"),
    ("peak memory <= 100 bytes/site, full model, 2048^2", "memory", 2048, "full", 100.0, "max"),
    ("cuda >= 1e10 site-updates/s, full step, 4096^2", "cuda_rate", 4096, "full", 1e10, "min"),
    ("cuda >= 30x cpu (all threads), full step, 4096^2", "cuda_vs_cpu", 4096, "full", 30.0, "min"),
    ("default 28-day patient <= 60 s (warm cache)", "patient", 28, "warm", 60.0, "max"),
    ("cold compile <= 30 s", "patient", 0, "compile", 30.0, "max"),
    ("365-day patient <= 300 s (warm cache)", "patient", 365, "warm", 300.0, "max"),
)


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


def max_threads() -> int:
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


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


def cuda_simulated() -> bool:
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def cuda_usable() -> bool:
    """A real GPU, or Numba's CUDA simulator when it is switched on (for smoke tests; rows say which)."""
    try:
        from kernels import cuda
    except Exception:
        return False
    return cuda.usable() or cuda_simulated()


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


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    """Machine and software versions, recorded in every row."""
    import mesa
    import numba

    try:
        from importlib.metadata import version

        cart_abm = version("cart-abm")
    except Exception:
        cart_abm = None
    cpu_model = platform.processor() or None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run in this process yet
        layer = None
    gpu = None
    if not cuda_simulated():
        try:
            from numba import cuda

            if cuda.is_available():
                gpu = cuda.get_current_device().name
                gpu = gpu.decode() if isinstance(gpu, bytes) else str(gpu)
        except Exception:
            gpu = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "numba_threads": int(numba.config.NUMBA_NUM_THREADS),
        "threading_layer": layer,
        "gpu": gpu,
        "cuda_simulated": cuda_simulated(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "mesa": mesa.__version__,
        "cart_abm": cart_abm,
        "git_commit": _git("rev-parse", "--short", "HEAD") or None,
        "git_dirty": None if status is None else bool(status),
    }


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far [MiB]."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20  # kB on Linux, bytes on macOS


def rss_mib(pid: int | str = "self") -> float:
    """Current resident set size of process ``pid`` [MiB].

    Where ``/proc`` cannot tell: this process's peak, another process's 0 (it has exited).
    """
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mib() if pid == "self" else 0.0


def scenario(size: int, config: Config, rules: str = "core"):
    """The window, the rule tables, the CAR-T count and the traffic arguments of a case.

    Returns ``params, state, tables, n_cart, traffic`` where ``traffic`` is
    ``(enter_quota, exit_threshold, memory_threshold)`` for
    :meth:`kernels.Lattice.step` (all 0 for ``core``).
    """
    from abm.marrow import build_window
    from abm.params import Params
    from abm.rates import build_tables
    from abm.reference import core_tables, free_sites, place_cart, random_free_sites
    from kernels import rules as R
    from kernels.rng import threshold

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
        return params, state, core_tables(params, config.seed), n_cart, (0, 0, 0)
    tables = build_tables(params, config.seed)
    quota = round(FULL_ENTRIES_PER_SITE_STEP * size * size * 2**32)
    traffic = (quota, int(tables.rates[R.R_EXIT]), threshold(FULL_MEMORY_SHARE))
    return params, state, tables, n_cart, traffic


class _Runner:
    """Uniform ``advance(steps)`` over the reference, the kernel backends and the limit kernels."""

    def __init__(self, case: Case, config: Config):
        rules = case.rules if case.rules in RULE_SETS else "core"  # the limit kernel's work does not depend on it
        params, state, tables, self.n_cart, self.traffic = scenario(case.size, config, rules)
        self.counts_initial = np.bincount(state.cell.ravel(), minlength=6).astype(int).tolist()
        self.case = case
        self.state = state
        self.next_step = 0
        t0 = time.perf_counter()
        if case.impl == "reference":
            from abm.reference import ReferenceModel

            self.model = ReferenceModel(params, config.seed, state=state, tables=tables)
        elif case.impl == "limit":
            self.key = tables.key
            if case.backend == "cuda":
                from numba import cuda

                from benchmarks.limit import cuda_limit
                from kernels.config import THREADS_PER_BLOCK

                self.kernel = cuda_limit()
                self.device = [cuda.to_device(a) for a in (state.cell, state.tissue, state.traits)]
                tp = THREADS_PER_BLOCK
                self.launch = ((-(-case.size // tp[0]), -(-case.size // tp[1])), tp)
            else:
                import numba

                numba.set_num_threads(case.threads)
        else:
            import kernels

            threads = case.threads if case.impl == "cpu" else None
            self.model = kernels.Lattice(state, tables, backend=case.impl, threads=threads)
        self.setup_s = time.perf_counter() - t0

    def advance(self, steps: int) -> None:
        case = self.case
        if case.impl == "reference":
            for _ in range(steps):
                self.model.step()
            return
        if case.impl == "limit":
            if case.backend == "cuda":
                from numba import cuda

                grid, tp = self.launch
                for k in range(self.next_step, self.next_step + steps):
                    self.kernel[grid, tp](*self.device, self.key, k, 0)
                cuda.synchronize()
            else:
                from benchmarks.limit import limit_step

                s = self.state
                for k in range(self.next_step, self.next_step + steps):
                    limit_step(s.cell, s.tissue, s.traits, s.fields, self.key, k, 0)
            self.next_step += steps
            return
        quota, exit_threshold, memory = self.traffic
        for k in range(self.next_step, self.next_step + steps):
            self.model.step(k, quota, exit_threshold, memory)
        self.next_step += steps
        if case.impl == "cuda":
            from numba import cuda

            cuda.synchronize()

    def counts(self) -> list[int]:
        if self.case.impl == "reference":
            return self.model.counts().tolist()
        if self.case.impl == "limit":
            if self.case.backend == "cuda":
                self.device[0].copy_to_host(self.state.cell)
            return np.bincount(self.state.cell.ravel(), minlength=6).astype(int).tolist()
        return np.bincount(self.model.pull().cell.ravel(), minlength=6).astype(int).tolist()


def load_1m() -> float | None:
    """One-minute load average of the machine (``None`` where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def run_case(case: Case, config: Config) -> dict[str, Any]:
    """Measure one case in this process; returns a result row (see ``ROW_KEYS``)."""
    import abm.marrow  # imported before the RSS baseline, so that the baseline holds the modules, not the lattice
    import kernels  # noqa: F401

    if case.impl == "reference":
        import abm.reference  # noqa: F401
    load_start = load_1m()
    rss_baseline = rss_mib()
    runner = _Runner(case, config)
    t0 = time.perf_counter()
    runner.advance(1)
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    runner.advance(1)
    estimate_s = max(time.perf_counter() - t0, 1e-7)
    steps = min(max(math.ceil(config.target_s / estimate_s), config.min_steps), config.max_steps)
    per_step = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(config.repeats):
        t0 = time.perf_counter()
        runner.advance(steps)
        per_step.append((time.perf_counter() - t0) / steps)
    cpu_per_wall = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    rss_end = rss_mib()
    peak = peak_rss_mib()
    sites = case.size * case.size
    median = statistics.median(per_step)
    row = {
        "case": case.name,
        "impl": case.impl,
        "backend": case.backend,
        "rules": case.rules,
        "size": case.size,
        "sites": sites,
        "threads": case.threads,
        "seed": config.seed,
        "n_cart": runner.n_cart,
        "steps": steps,
        "repeats": config.repeats,
        "setup_s": runner.setup_s,
        "warmup_s": warmup_s,
        "compile_s": max(warmup_s - median, 0.0),
        "step_ms_median": median * 1e3,
        "step_ms_min": min(per_step) * 1e3,
        "step_ms_max": max(per_step) * 1e3,
        "step_ms_samples": [x * 1e3 for x in per_step],
        "site_updates_per_s": sites / median,
        "site_updates_per_s_min": sites / max(per_step),
        "site_updates_per_s_max": sites / min(per_step),
        "spread_pct": 100.0 * (max(per_step) - min(per_step)) / median,
        "peak_rss_mib": peak,
        "rss_baseline_mib": rss_baseline,
        "rss_end_mib": rss_end,
        "bytes_per_site": max(rss_end - rss_baseline, 0.0) * 2**20 / sites,
        "peak_bytes_per_site": max(peak - rss_baseline, 0.0) * 2**20 / sites,
        "counts_initial": runner.counts_initial,
        "counts_final": runner.counts(),
        "cpu_per_wall": cpu_per_wall,
        "load_1m_start": load_start,
        "load_1m_end": load_1m(),
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return {**row, **machine_info()}


def _run_isolated(case: Case, config: Config) -> dict[str, Any]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_case, case, config).result()


def run(config: Config, cases: list[Case] | None = None, progress=None,
        patients: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run a session: every case of :func:`registry` (or ``cases``); returns the result document."""
    skipped: list[str] = []
    if cases is None:
        cases, skipped = registry(config)
    rows = []
    for case in cases:
        if progress is not None:
            progress(f"running {case.name} ...")
        row = _run_isolated(case, config) if config.isolate else run_case(case, config)
        rows.append(row)
        if progress is not None:
            progress(f"  {row['site_updates_per_s']:.3g} site-updates/s, {row['step_ms_median']:.3g} ms/step")
    return document(config, rows, skipped, patients or [])


def document(config: Config, rows: list[dict[str, Any]], skipped: list[str],
             patients: list[dict[str, Any]]) -> dict[str, Any]:
    """The result document of a session (``benchmarks/README.md``, schema version 2)."""
    comps = comparisons(rows)
    machine = machine_info()
    if machine["threading_layer"] is None:  # this process ran no parallel region; the case processes did
        machine["threading_layer"] = next((r["threading_layer"] for r in rows if r["threading_layer"]), None)
    return {
        "schema_version": SCHEMA_VERSION,
        "mode": config.mode,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": asdict(config),
        "machine": machine,
        "rows": rows,
        "comparisons": comps,
        "patients": patients,
        "targets": targets(rows, comps, patients),
        "skipped": skipped,
    }


# -- comparisons -----------------------------------------------------------------
def bootstrap_ratio(num: list[float], den: list[float], seed: int = 0,
                    resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float, float]:
    """``median(num) / median(den)`` and its bootstrap 95 % interval (percentile method).

    Each resample draws both sample lists with replacement; with one sample
    on a side that side is fixed (the interval then reflects the other only).
    """
    a = np.asarray(num, dtype=float)
    b = np.asarray(den, dtype=float)
    ratio = float(np.median(a) / np.median(b))
    rng = np.random.default_rng(seed)
    ra = np.median(a[rng.integers(0, a.size, size=(resamples, a.size))], axis=1)
    rb = np.median(b[rng.integers(0, b.size, size=(resamples, b.size))], axis=1)
    lo, hi = np.percentile(ra / rb, [2.5, 97.5])
    return ratio, float(lo), float(hi)


def _rates(row: dict[str, Any]) -> list[float]:
    """Site-updates/s of each timed run of a row."""
    return [row["sites"] / (ms * 1e-3) for ms in row["step_ms_samples"]]


def comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speed ratios between rows of one session, each with a bootstrap 95 % interval.

    Kinds (``ratio`` is always "how many times", > 1 better except for ``vs_limit``):

    ``vs_reference``
        ``cpu`` / ``cuda`` site-updates/s over the Mesa reference's (core rules, same size).
    ``vs_limit``
        step time over the ``limit`` kernel's at the same size and threads (``cuda`` against the CUDA limit).
    ``threads``
        ``cpu`` site-updates/s at ``t`` threads over 1 thread (same size and rules).
    ``cuda_vs_cpu``
        ``cuda`` site-updates/s over ``cpu`` at its most threads (same size and rules).
    """
    out = []

    def add(kind, row, base, num, den):
        ratio, lo, hi = bootstrap_ratio(num, den)
        out.append({"kind": kind, "size": row["size"], "rules": row["rules"], "case": row["case"],
                    "baseline": base["case"], "threads": row["threads"], "ratio": ratio, "ci_low": lo, "ci_high": hi})

    by_case = {r["case"]: r for r in rows}
    for r in rows:
        if r["impl"] not in ("cpu", "cuda"):
            continue
        ref = by_case.get(f"reference-{r['size']}-core")
        if ref is not None and r["rules"] == "core":
            add("vs_reference", r, ref, _rates(r), _rates(ref))
        limit = by_case.get(f"limit-{r['size']}-t{r['threads']}" if r["impl"] == "cpu" else f"limit-cuda-{r['size']}")
        if limit is not None:
            add("vs_limit", r, limit, r["step_ms_samples"], limit["step_ms_samples"])
        if r["impl"] == "cpu" and r["threads"] > 1:
            one = by_case.get(f"cpu-{r['size']}-t1-{r['rules']}")
            if one is not None:
                add("threads", r, one, _rates(r), _rates(one))
        if r["impl"] == "cuda":
            cpus = [c for c in rows if c["impl"] == "cpu" and c["size"] == r["size"] and c["rules"] == r["rules"]]
            if cpus:
                best = max(cpus, key=lambda c: c["threads"])
                add("cuda_vs_cpu", r, best, _rates(r), _rates(best))
    return out


def targets(rows: list[dict[str, Any]], comps: list[dict[str, Any]],
            patients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue-#7 targets (:data:`TARGETS`) with what this session measured; ``holds`` is null if not measured."""
    out = []
    for name, kind, size, rules, bound, sense in TARGETS:
        measured = lo = hi = None
        where = None
        if kind in ("vs_reference", "vs_limit", "threads", "cuda_vs_cpu"):
            cands = [c for c in comps if c["kind"] == kind and c["size"] == size and c["rules"] == rules]
            if kind == "threads":
                cands = [c for c in cands if c["threads"] == 2]
            if kind in ("vs_reference", "vs_limit") and cands:
                top = max(c["threads"] for c in cands)  # the backend as users run it: all threads
                cands = [c for c in cands if c["threads"] == top]
            if cands:
                c = cands[0]
                measured, lo, hi, where = c["ratio"], c["ci_low"], c["ci_high"], f"{c['case']} / {c['baseline']}"
        elif kind == "cuda_rate":
            cands = [r for r in rows if r["impl"] == "cuda" and r["size"] == size and r["rules"] == rules]
            if cands:
                measured, where = cands[0]["site_updates_per_s"], cands[0]["case"]
                lo, hi = cands[0]["site_updates_per_s_min"], cands[0]["site_updates_per_s_max"]
        elif kind == "memory":
            cands = [r for r in rows if r["impl"] == "cpu" and r["size"] == size and r["rules"] == rules]
            if cands:
                r = max(cands, key=lambda c: c["threads"])
                measured, where = r["peak_bytes_per_site"], r["case"]
        elif kind == "patient":
            for p in patients:
                if rules == "compile" and p.get("compile_s") is not None:
                    measured, where = p["compile_s"], p["label"]
                elif rules == "warm" and p["cache"] == "warm" and p["days"] == size:
                    measured, where = p["wall_s"], p["label"]
        holds = None if measured is None else (measured >= bound if sense == "min" else measured <= bound)
        out.append({"target": name, "bound": bound, "sense": sense, "measured": measured, "ci_low": lo,
                    "ci_high": hi, "where": where, "holds": holds})
    return out


# -- patients --------------------------------------------------------------------
def _timed(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall


def patient_runs(days: tuple[float, ...], cold: bool = True, threads: int | None = None,
                 progress=None) -> list[dict[str, Any]]:
    """Wall time of whole default patients (``cart-abm run --quiet``), as a user runs them.

    For each entry of ``days``: one run with the compiled cache already warm
    (a 0.01-day run fills it first). With ``cold``, a 0.01-day run against an
    empty ``CART_ABM_CACHE_DIR`` and the same run warm: their difference is
    the cold compile time (``compile_s`` of the ``cold`` record). Each record:
    ``label, days, cache (warm|cold), wall_s, threads, compile_s, command``.
    """
    script = Path(sys.executable).with_name("cart-abm")
    exe = [str(script)] if script.exists() else ["cart-abm"]
    extra = [] if threads is None else ["--threads", str(threads)]
    out: list[dict[str, Any]] = []

    def shown(cmd: list[str]) -> str:
        return " ".join(["cart-abm", *cmd[1:]])

    with tempfile.TemporaryDirectory(prefix="cart-abm-bench-") as tmp:
        env = dict(os.environ)
        tiny = [*exe, "run", "--quiet", "--days", "0.01", "--out", f"{tmp}/tiny", *extra]
        _timed(tiny, env)  # fills the normal cache if it was empty
        warm_tiny = _timed(tiny, env)
        if cold:
            if progress is not None:
                progress("running a 0.01-day patient with an empty compile cache ...")
            cold_tiny = _timed(tiny, {**env, "CART_ABM_CACHE_DIR": f"{tmp}/empty-cache"})
            out.append({"label": "0.01-day patient, empty cache", "days": 0.01, "cache": "cold", "wall_s": cold_tiny,
                        "threads": threads, "compile_s": max(cold_tiny - warm_tiny, 0.0),
                        "command": "CART_ABM_CACHE_DIR=<empty dir> " + shown(tiny)})
            out.append({"label": "0.01-day patient, warm cache", "days": 0.01, "cache": "warm", "wall_s": warm_tiny,
                        "threads": threads, "compile_s": None, "command": shown(tiny)})
        for d in days:
            if progress is not None:
                progress(f"running a {d:g}-day patient ...")
            cmd = [*exe, "run", "--quiet", "--days", f"{d:g}", "--out", f"{tmp}/d{d:g}", *extra]
            wall = _timed(cmd, env)
            out.append({"label": f"{d:g}-day patient, warm cache", "days": d, "cache": "warm", "wall_s": wall,
                        "threads": threads, "compile_s": None, "command": shown(cmd)})
            if progress is not None:
                progress(f"  {wall:.1f} s")
    return out


# -- validation ------------------------------------------------------------------
def validate(doc: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first field that breaks the result schema (``benchmarks/README.md``)."""
    for key, kind in (("schema_version", int), ("mode", str), ("created_utc", str), ("config", dict),
                      ("machine", dict), ("rows", list), ("comparisons", list), ("patients", list),
                      ("targets", list), ("skipped", list)):
        if not isinstance(doc.get(key), kind):
            raise ValueError(f"result.{key}: expected {kind.__name__}, got {type(doc.get(key)).__name__}")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"result.schema_version: {doc['schema_version']} != {SCHEMA_VERSION}")
    missing = [k for k in MACHINE_KEYS if k not in doc["machine"]]
    if missing:
        raise ValueError(f"result.machine: missing {', '.join(missing)}")
    for i, row in enumerate(doc["rows"]):
        missing = [k for k in (*ROW_KEYS, *MACHINE_KEYS) if k not in row]
        if missing:
            raise ValueError(f"rows[{i}]: missing {', '.join(missing)}")
        if row["impl"] not in IMPLEMENTATIONS:
            raise ValueError(f"rows[{i}].impl: {row['impl']!r} not one of {IMPLEMENTATIONS}")
        if row["backend"] not in BACKENDS:
            raise ValueError(f"rows[{i}].backend: {row['backend']!r} not one of {BACKENDS}")
        if row["rules"] not in (*RULE_SETS, "-"):
            raise ValueError(f"rows[{i}].rules: {row['rules']!r} not one of {RULE_SETS} or '-'")
        for k in ("site_updates_per_s", "step_ms_median", "warmup_s", "compile_s", "setup_s", "peak_rss_mib",
                  "bytes_per_site", "peak_bytes_per_site"):
            if not (isinstance(row[k], float | int) and math.isfinite(row[k]) and row[k] >= 0):
                raise ValueError(f"rows[{i}].{k}: expected a finite non-negative number, got {row[k]!r}")
        if not row["step_ms_min"] <= row["step_ms_median"] <= row["step_ms_max"]:
            raise ValueError(f"rows[{i}]: step_ms_min <= step_ms_median <= step_ms_max does not hold")
        if len(row["step_ms_samples"]) != row["repeats"]:
            raise ValueError(f"rows[{i}].step_ms_samples: expected {row['repeats']} samples (one per repeat)")
        if len(row["counts_initial"]) != 6 or len(row["counts_final"]) != 6:
            raise ValueError(f"rows[{i}].counts_*: expected 6 counts per kind")
    for i, c in enumerate(doc["comparisons"]):
        for k in ("kind", "size", "rules", "case", "baseline", "threads", "ratio", "ci_low", "ci_high"):
            if k not in c:
                raise ValueError(f"comparisons[{i}]: missing {k}")
        if not (isinstance(c["ratio"], float | int) and math.isfinite(c["ratio"]) and c["ci_low"] <= c["ci_high"]):
            raise ValueError(f"comparisons[{i}]: expected a finite ratio and ci_low <= ci_high")
    for i, p in enumerate(doc["patients"]):
        for k in ("label", "days", "cache", "wall_s", "threads", "compile_s", "command"):
            if k not in p:
                raise ValueError(f"patients[{i}]: missing {k}")
    for i, t in enumerate(doc["targets"]):
        for k in ("target", "bound", "sense", "measured", "ci_low", "ci_high", "where", "holds"):
            if k not in t:
                raise ValueError(f"targets[{i}]: missing {k}")


# -- writers ---------------------------------------------------------------------
def _si(x: float) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _label(r: dict[str, Any]) -> str:
    if r["impl"] == "reference":
        return "Mesa reference"
    if r["impl"] == "limit":
        return f"limit kernel, {r['threads']} thread{'s' if r['threads'] > 1 else ''}" if r["backend"] == "cpu" \
            else "limit kernel, cuda"
    if r["impl"] == "cpu":
        return f"cpu, {r['threads']} thread{'s' if r['threads'] > 1 else ''}"
    return r["impl"]


_KIND_TEXT = {
    "vs_reference": "x the Mesa reference",
    "vs_limit": "x the limit kernel's step time",
    "threads": "x 1 thread",
    "cuda_vs_cpu": "x cpu (most threads)",
}


def markdown(doc: dict[str, Any]) -> str:
    """The result document as a Markdown report: machine, measurements, comparisons, patients, targets."""
    m = doc["machine"]
    c = doc["config"]
    gpu = m["gpu"] or ("Numba CUDA simulator" if m["cuda_simulated"] else "none")
    lines = [
        f"# cart-abm benchmark ({doc['mode']}, {doc['created_utc']})",
        "",
        f"Machine: {m['cpu_model'] or m['machine']}, {m['cpu_count']} CPUs ({m['cpu_affinity']} usable, "
        f"numba threads {m['numba_threads']}, threading layer {m['threading_layer']}), GPU: {gpu}, {m['platform']}.  ",
        f"Software: Python {m['python']}, NumPy {m['numpy']}, Numba {m['numba']}, Mesa {m['mesa']}, "
        f"cart-abm {m['cart_abm']} (commit {m['git_commit']}{', uncommitted changes' if m['git_dirty'] else ''}).  ",
        f"Scenario: default patient window, seed {c['seed']}; core rules with CAR-T at {c['cart_fraction']:.0%} of "
        f"free sites, full model with CAR-T on {FULL_CART_PER_SITE:.1%} of all sites; {c['repeats']} timed runs "
        "per case, median [min-max].",
    ]
    if doc["rows"]:
        lines += [
            "",
            "| implementation | rules | size | steps x runs | step ms | site-updates/s | compile s | CPU/wall "
            "| bytes/site (end, peak) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in doc["rows"]:
            lines.append(
                f"| {_label(r)} | {r['rules']} | {r['size']}^2 | {r['steps']} x {r['repeats']} | "
                f"{r['step_ms_median']:.3g} [{r['step_ms_min']:.3g}-{r['step_ms_max']:.3g}] | "
                f"{_si(r['site_updates_per_s'])} [{_si(r['site_updates_per_s_min'])}-"
                f"{_si(r['site_updates_per_s_max'])}] | {r['compile_s']:.3g} | {r['cpu_per_wall']:.2f} | "
                f"{r['bytes_per_site']:.0f}, {r['peak_bytes_per_site']:.0f} |"
            )
    if doc["comparisons"]:
        lines += ["", "Ratios (median over median of the timed runs; bootstrap 95 % interval):", "",
                  "| kind | rules | size | case | baseline | ratio [95 % CI] |", "|---|---|---:|---|---|---:|"]
        for x in doc["comparisons"]:
            lines.append(f"| {_KIND_TEXT[x['kind']]} | {x['rules']} | {x['size']}^2 | {x['case']} | {x['baseline']} "
                         f"| {x['ratio']:.3g} [{x['ci_low']:.3g}-{x['ci_high']:.3g}] |")
    if doc["patients"]:
        lines += ["", "Whole patients (`cart-abm run`, default parameters, wall clock including start-up):", "",
                  "| run | wall s | compile s | command |", "|---|---:|---:|---|"]
        for p in doc["patients"]:
            comp = "-" if p["compile_s"] is None else f"{p['compile_s']:.1f}"
            lines.append(f"| {p['label']} | {p['wall_s']:.1f} | {comp} | `{p['command']}` |")
    measured = [t for t in doc["targets"] if t["measured"] is not None]
    if measured:
        lines += ["", "Targets (issue #7):", "", "| target | measured [range] | holds |", "|---|---:|---|"]
        for t in measured:
            rng = "" if t["ci_low"] is None else f" [{t['ci_low']:.3g}-{t['ci_high']:.3g}]"
            lines.append(f"| {t['target']} | {t['measured']:.3g}{rng} | {'yes' if t['holds'] else '**no**'} |")
    if doc["skipped"]:
        lines += ["", "Not measured: " + "; ".join(doc["skipped"]) + "."]
    starved = [r["case"] for r in doc["rows"]
               if r["backend"] != "cuda" and r["cpu_per_wall"] < STARVED * r["threads"]]
    if starved:
        lines += [
            "",
            f"Warning: {', '.join(starved)} got less than {STARVED:.0%} of a CPU per thread during the timed runs "
            "(other processes competed for the CPUs); their numbers understate the implementation.",
        ]
    return "\n".join(lines) + "\n"


def plots(doc: dict[str, Any], out: Path, name: str) -> list[Path]:
    """``<name>-throughput.png`` (site-updates/s vs size) and ``<name>-threads.png`` (speed-up vs threads)."""
    if not doc["rows"]:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    series: dict[str, list[tuple[int, float, float, float]]] = {}
    for r in doc["rows"]:
        label = _label(r) + ("" if r["rules"] == "-" else f", {r['rules']}")
        series.setdefault(label, []).append(
            (r["size"], r["site_updates_per_s"], r["site_updates_per_s_min"], r["site_updates_per_s_max"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, pts in series.items():
        pts.sort()
        x = [p[0] for p in pts]
        y = np.array([p[1] for p in pts])
        err = np.array([[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]])
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label,
                    linestyle="--" if label.startswith("limit") else "-")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("window side (sites)")
    ax.set_ylabel("site-updates / s")
    ax.set_title(f"Throughput vs size ({doc['mode']}, {doc['machine']['cpu_model'] or ''})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / f"{name}-throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    scaling = [x for x in doc["comparisons"] if x["kind"] == "threads"]
    if scaling:
        fig, ax = plt.subplots(figsize=(6, 4))
        groups: dict[str, list[dict[str, Any]]] = {}
        for x in scaling:
            groups.setdefault(f"{x['size']}^2, {x['rules']}", []).append(x)
        top = 1
        for label, pts in groups.items():
            pts.sort(key=lambda p: p["threads"])
            t = [1] + [p["threads"] for p in pts]
            y = [1.0] + [p["ratio"] for p in pts]
            lo = [0.0] + [p["ratio"] - p["ci_low"] for p in pts]
            hi = [0.0] + [p["ci_high"] - p["ratio"] for p in pts]
            ax.errorbar(t, y, yerr=[lo, hi], marker="o", capsize=3, label=label)
            top = max(top, max(t))
        ax.plot([1, top], [1, top], color="grey", linestyle=":", label="ideal")
        ax.set_xlabel("threads")
        ax.set_ylabel("speed-up over 1 thread")
        ax.set_title("cpu backend: speed-up vs threads (bootstrap 95 % CI)", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{name}-threads.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write(doc: dict[str, Any], out: Path, name: str, with_plots: bool = True) -> list[Path]:
    """Write ``<out>/<name>.json``, ``<out>/<name>.md`` and the plots; returns their paths."""
    validate(doc)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    json_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown(doc), encoding="utf-8")
    return [json_path, md_path, *(plots(doc, out, name) if with_plots else [])]


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Markdown table of the cases two result documents share: site-updates/s new over old, bootstrap 95 % CI."""
    before = {r["case"]: r for r in old["rows"]}
    lines = ["| case | old site-updates/s | new site-updates/s | new / old [95 % CI] |", "|---|---:|---:|---:|"]
    for r in new["rows"]:
        o = before.get(r["case"])
        if o is not None:
            ratio, lo, hi = bootstrap_ratio(_rates(r), _rates(o))
            lines.append(f"| {r['case']} | {_si(o['site_updates_per_s'])} | {_si(r['site_updates_per_s'])} | "
                         f"{ratio:.2f} [{lo:.2f}-{hi:.2f}] |")
    return "\n".join(lines) + "\n"


def load(path: Path) -> dict[str, Any]:
    """Read a result file; schema-1 files (before ``rules`` and per-run samples) are upgraded for comparing."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if doc.get("schema_version") == 1:
        for r in doc["rows"]:
            r.setdefault("rules", "core")
            r.setdefault("step_ms_samples", [r["step_ms_median"]])
            if r["impl"] == "cpu":
                r["case"] = f"{r['case']}-core"
            elif r["impl"] in ("reference", "cuda"):
                r["case"] = f"{r['case']}-core"
        return doc
    validate(doc)
    return doc


def config_for(mode: str, **changes: Any) -> Config:
    """The preset of ``mode`` with some fields changed (``None`` values are ignored)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    return replace(MODES[mode], **{k: v for k, v in changes.items() if v is not None})
