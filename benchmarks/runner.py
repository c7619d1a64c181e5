"""Running cases: one case in this process (:func:`run_case`) or a fresh one, a session (:func:`run`), patients.

:class:`_Runner` advances the Mesa reference, a kernel backend or a limit
kernel by whole steps; :func:`run_case` times it and returns a result row;
:func:`run` runs every case of a session, each in a spawned process, and
returns the result document; :func:`patient_runs` times whole default
patients (``cart-abm run``) as a user runs them.
"""

from __future__ import annotations

import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.machine import load_1m, machine_info, peak_rss_mib, rss_mib
from benchmarks.registry import RULE_SETS, Case, Config, registry, scenario
from benchmarks.report import document


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
        for k in range(self.next_step, self.next_step + steps):
            self.model.step(k, self.traffic)
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


def run_case(case: Case, config: Config, steps: int | None = None) -> dict[str, Any]:
    """Measure one case in this process; returns a result row (see :data:`benchmarks.report.ROW_KEYS`).

    ``steps``: steps per timed run; ``None`` chooses them from a timed step (``config.target_s``, within
    ``config.min_steps`` and ``config.max_steps``).
    """
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
    if steps is None:
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


def _run_isolated(case: Case, config: Config, steps: int | None) -> dict[str, Any]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(run_case, case, config, steps).result()


def run(config: Config, cases: list[Case] | None = None, progress=None,
        patients: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Run a session: every case of :func:`registry` (or ``cases``); returns the result document."""
    skipped: list[str] = []
    if cases is None:
        cases, skipped = registry(config)
    rows = []
    steps_of: dict[tuple[Any, ...], int] = {}  # the thread counts of one case time the same steps (same phase)
    for case in cases:
        if progress is not None:
            progress(f"running {case.name} ...")
        group = (case.impl, case.backend, case.rules, case.size)
        steps = steps_of.get(group)
        row = _run_isolated(case, config, steps) if config.isolate else run_case(case, config, steps)
        steps_of.setdefault(group, row["steps"])
        rows.append(row)
        if progress is not None:
            progress(f"  {row['site_updates_per_s']:.3g} site-updates/s, {row['step_ms_median']:.3g} ms/step")
    return document(config, rows, skipped, patients or [])


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
