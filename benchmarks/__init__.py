"""Benchmarks: the plain-Mesa reference against the kernel backends on the same core rules.

A benchmark is a registry of cases (:func:`registry`), a runner
(:func:`run_case`, :func:`run`), writers (:func:`write_json`,
:func:`write_markdown`) and a comparer (:func:`compare`); ``python -m
benchmarks`` ties them together (see ``benchmarks/README.md`` for the CLI and
the result schema).

What is measured
    *Site-updates per second*: lattice sites times lattice steps divided by the
    wall time of those steps. Every case runs the same scenario: the default
    patient window of ``grid.size = size`` built by :func:`abm.marrow.build_window`
    from the seed, with CAR-T cells at ``cart_fraction`` of its free sites
    (the same sites for every implementation), under the *core rules* only
    (:func:`abm.reference.core_tables`: no fields, no chemotaxis, no blood
    traffic), so the Mesa reference and the kernels do the same work.
How
    Each case runs in a fresh process (so the peak RSS is the case's own and
    no JIT state or thread setting leaks between cases). Two warm-up steps run
    outside the timed region: the first includes JIT compilation (or loading
    the compiled cache), the second estimates the step time that sizes the
    timed runs. Then ``repeats`` runs of ``steps`` steps each are timed; the
    row reports their median and range. Repeats continue the same run.
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
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
TARGET_SPEEDUP = 50.0  # cpu site-updates/s over the reference's, at the same size
STARVED = 0.85  # a case whose process got less CPU time per thread and wall second than this was competing
RESULTS_DIR = Path(__file__).resolve().parent / "results"
IMPLEMENTATIONS = ("reference", "cpu", "cuda")

ROW_KEYS = (
    "case", "impl", "backend", "size", "sites", "threads", "seed", "n_cart", "steps", "repeats",
    "setup_s", "warmup_s", "compile_s", "step_ms_median", "step_ms_min", "step_ms_max",
    "site_updates_per_s", "site_updates_per_s_min", "site_updates_per_s_max", "spread_pct",
    "peak_rss_mib", "counts_initial", "counts_final", "cpu_per_wall", "load_1m_start", "load_1m_end", "created_utc",
)
MACHINE_KEYS = (
    "platform", "machine", "cpu_model", "cpu_count", "cpu_affinity", "numba_threads",
    "python", "numpy", "numba", "mesa", "cart_abm", "git_commit",
)


@dataclass(frozen=True)
class Config:
    """How a benchmark session runs.

    Attributes
    ----------
    mode : str
        ``smoke``, ``quick`` or ``full``.
    sizes : tuple of int
        Window sides to measure (sites).
    repeats : int
        Timed runs per case.
    target_s : float
        Wall time aimed at per timed run; sets ``steps`` from the warm-up.
    min_steps, max_steps : int
        Bounds of ``steps`` per timed run.
    seed : int
        Seed of the window, the CAR-T sites and every run.
    cart_fraction : float
        CAR-T cells seeded per free site of the window (at least one cell).
    isolate : bool
        Run each case in a fresh process.
    """

    mode: str = "quick"
    sizes: tuple[int, ...] = (128, 512)
    repeats: int = 5
    target_s: float = 0.5
    min_steps: int = 2
    max_steps: int = 200
    seed: int = 20240601
    cart_fraction: float = 0.01
    isolate: bool = True


MODES = {
    "smoke": Config(mode="smoke", sizes=(16,), repeats=2, target_s=0.01, min_steps=1, max_steps=3),
    "quick": Config(),
    "full": Config(mode="full", sizes=(128, 512, 1024), repeats=7, target_s=2.0, max_steps=1000),
}


@dataclass(frozen=True)
class Case:
    """One measurement: an implementation at a size (and a thread count for ``cpu``)."""

    impl: str
    size: int
    threads: int = 1

    @property
    def name(self) -> str:
        suffix = f"-t{self.threads}" if self.impl == "cpu" else ""
        return f"{self.impl}-{self.size}{suffix}"


def max_threads() -> int:
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def cuda_usable() -> bool:
    try:
        from kernels import cuda
    except Exception:
        return False
    return cuda.usable()


def registry(config: Config) -> tuple[list[Case], list[str]]:
    """The cases of a session and the reasons for any left out.

    Per size: the Mesa reference, ``cpu`` at 1 thread, ``cpu`` at all threads
    (if more than one) and ``cuda`` when a GPU is usable.
    """
    cases: list[Case] = []
    skipped: list[str] = []
    top = max_threads()
    gpu = cuda_usable()
    for size in config.sizes:
        cases.append(Case("reference", size))
        cases.append(Case("cpu", size, 1))
        if top > 1:
            cases.append(Case("cpu", size, top))
        if gpu:
            cases.append(Case("cuda", size))
    if top == 1:
        skipped.append("cpu at all threads: numba sees one thread")
    if not gpu:
        skipped.append("cuda: no usable CUDA GPU")
    return cases, skipped


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
        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "numba_threads": int(numba.config.NUMBA_NUM_THREADS),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "mesa": mesa.__version__,
        "cart_abm": cart_abm,
        "git_commit": commit,
    }


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far [MiB]."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20  # kB on Linux, bytes on macOS


def scenario(size: int, config: Config):
    """The benchmark window, its core-rule tables and the CAR-T count (same for every implementation)."""
    from abm.marrow import build_window
    from abm.params import Params
    from abm.reference import core_tables, free_sites, place_cart, random_free_sites

    params = Params.default().replace({"grid.size": size})
    state = build_window(params, np.random.default_rng(config.seed))
    n_cart = max(1, round(config.cart_fraction * free_sites(state).size))
    place_cart(state, random_free_sites(state, n_cart, np.random.default_rng(config.seed + 1)))
    return params, state, core_tables(params, config.seed), n_cart


class _Runner:
    """Uniform ``advance(steps)`` over the reference and the kernel backends."""

    def __init__(self, case: Case, config: Config):
        params, state, tables, self.n_cart = scenario(case.size, config)
        self.counts_initial = np.bincount(state.cell.ravel(), minlength=6).astype(int).tolist()
        self.case = case
        self.next_step = 0
        t0 = time.perf_counter()
        if case.impl == "reference":
            from abm.reference import ReferenceModel

            self.model = ReferenceModel(params, config.seed, state=state, tables=tables)
        else:
            import kernels

            threads = case.threads if case.impl == "cpu" else None
            self.model = kernels.Lattice(state, tables, backend=case.impl, threads=threads)
        self.setup_s = time.perf_counter() - t0

    def advance(self, steps: int) -> None:
        if self.case.impl == "reference":
            for _ in range(steps):
                self.model.step()
            return
        for k in range(self.next_step, self.next_step + steps):
            self.model.step(k, 0, 0)
        self.next_step += steps
        if self.case.impl == "cuda":
            from numba import cuda

            cuda.synchronize()

    def counts(self) -> list[int]:
        if self.case.impl == "reference":
            return self.model.counts().tolist()
        return np.bincount(self.model.pull().cell.ravel(), minlength=6).astype(int).tolist()


def load_1m() -> float | None:
    """One-minute load average of the machine (``None`` where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def run_case(case: Case, config: Config) -> dict[str, Any]:
    """Measure one case in this process; returns a result row (see ``ROW_KEYS``)."""
    load_start = load_1m()
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
    sites = case.size * case.size
    median = statistics.median(per_step)
    row = {
        "case": case.name,
        "impl": case.impl,
        "backend": "mesa" if case.impl == "reference" else case.impl,
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
        "site_updates_per_s": sites / median,
        "site_updates_per_s_min": sites / max(per_step),
        "site_updates_per_s_max": sites / min(per_step),
        "spread_pct": 100.0 * (max(per_step) - min(per_step)) / median,
        "peak_rss_mib": peak_rss_mib(),
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


def run(config: Config, cases: list[Case] | None = None, progress=None) -> dict[str, Any]:
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
    return {
        "schema_version": SCHEMA_VERSION,
        "mode": config.mode,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": asdict(config),
        "machine": machine_info(),
        "target_speedup": TARGET_SPEEDUP,
        "rows": rows,
        "ratios": ratios(rows),
        "skipped": skipped,
    }


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speed-up of every kernel row over the reference row of the same size."""
    reference = {r["size"]: r for r in rows if r["impl"] == "reference"}
    out = []
    for r in rows:
        ref = reference.get(r["size"])
        if r["impl"] == "reference" or ref is None:
            continue
        speedup = r["site_updates_per_s"] / ref["site_updates_per_s"]
        out.append({
            "size": r["size"],
            "case": r["case"],
            "impl": r["impl"],
            "threads": r["threads"],
            "site_updates_per_s": r["site_updates_per_s"],
            "reference_site_updates_per_s": ref["site_updates_per_s"],
            "speedup": speedup,
            "meets_target": speedup >= TARGET_SPEEDUP,
        })
    return out


def validate(doc: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first field that breaks the result schema (``benchmarks/README.md``)."""
    for key, kind in (("schema_version", int), ("mode", str), ("created_utc", str), ("config", dict),
                      ("machine", dict), ("rows", list), ("ratios", list), ("skipped", list)):
        if not isinstance(doc.get(key), kind):
            raise ValueError(f"result.{key}: expected {kind.__name__}, got {type(doc.get(key)).__name__}")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"result.schema_version: {doc['schema_version']} != {SCHEMA_VERSION}")
    for i, row in enumerate(doc["rows"]):
        missing = [k for k in (*ROW_KEYS, *MACHINE_KEYS) if k not in row]
        if missing:
            raise ValueError(f"rows[{i}]: missing {', '.join(missing)}")
        if row["impl"] not in IMPLEMENTATIONS:
            raise ValueError(f"rows[{i}].impl: {row['impl']!r} not one of {IMPLEMENTATIONS}")
        for k in ("site_updates_per_s", "step_ms_median", "warmup_s", "compile_s", "setup_s", "peak_rss_mib"):
            if not (isinstance(row[k], float | int) and math.isfinite(row[k]) and row[k] >= 0):
                raise ValueError(f"rows[{i}].{k}: expected a finite non-negative number, got {row[k]!r}")
        if not row["step_ms_min"] <= row["step_ms_median"] <= row["step_ms_max"]:
            raise ValueError(f"rows[{i}]: step_ms_min <= step_ms_median <= step_ms_max does not hold")
        if len(row["counts_initial"]) != 6 or len(row["counts_final"]) != 6:
            raise ValueError(f"rows[{i}].counts_*: expected 6 counts per kind")
    for i, r in enumerate(doc["ratios"]):
        for k in ("size", "case", "impl", "threads", "speedup", "meets_target"):
            if k not in r:
                raise ValueError(f"ratios[{i}]: missing {k}")


# -- writers ---------------------------------------------------------------------
def _si(x: float) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _label(r: dict[str, Any]) -> str:
    if r["impl"] == "reference":
        return "Mesa reference"
    if r["impl"] == "cpu":
        return f"cpu, {r['threads']} thread{'s' if r['threads'] > 1 else ''}"
    return r["impl"]


def markdown(doc: dict[str, Any]) -> str:
    """The result document as a Markdown report: machine, measurements, speed-ups."""
    m = doc["machine"]
    c = doc["config"]
    lines = [
        f"# cart-abm benchmark ({doc['mode']}, {doc['created_utc']})",
        "",
        f"Machine: {m['cpu_model'] or m['machine']}, {m['cpu_count']} CPUs ({m['cpu_affinity']} usable, "
        f"numba threads {m['numba_threads']}), {m['platform']}.  ",
        f"Software: Python {m['python']}, NumPy {m['numpy']}, Numba {m['numba']}, Mesa {m['mesa']}, "
        f"cart-abm {m['cart_abm']} (commit {m['git_commit']}).  ",
        f"Scenario: default patient window, core rules only (no fields, chemotaxis or blood traffic), "
        f"CAR-T at {c['cart_fraction']:.0%} of free sites, seed {c['seed']}; {c['repeats']} timed runs per case, "
        "median [min-max].",
        "",
        "| implementation | size | steps x runs | step ms | site-updates/s | warm-up s | setup s | CPU/wall "
        "| peak RSS MiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        lines.append(
            f"| {_label(r)} | {r['size']}^2 | {r['steps']} x {r['repeats']} | "
            f"{r['step_ms_median']:.3g} [{r['step_ms_min']:.3g}-{r['step_ms_max']:.3g}] | "
            f"{_si(r['site_updates_per_s'])} [{_si(r['site_updates_per_s_min'])}-{_si(r['site_updates_per_s_max'])}] | "
            f"{r['warmup_s']:.3g} | {r['setup_s']:.3g} | {r['cpu_per_wall']:.2f} | {r['peak_rss_mib']:.0f} |"
        )
    if doc["ratios"]:
        kernel_labels = list(dict.fromkeys(_label(r) for r in doc["rows"] if r["impl"] != "reference"))
        lines += [
            "",
            "Speed-up over the Mesa reference at the same size "
            f"(site-updates/s ratio; target >= {doc['target_speedup']:g}x):",
            "",
            "| size | Mesa reference | " + " | ".join(kernel_labels) + " |",
            "|---:|---:|" + "---:|" * len(kernel_labels),
        ]
        for size in dict.fromkeys(r["size"] for r in doc["ratios"]):
            by_label = {_label(r): r for r in doc["ratios"] if r["size"] == size}
            cells = []
            for label in kernel_labels:
                r = by_label.get(label)
                cells.append("-" if r is None else f"{_si(r['site_updates_per_s'])} ({r['speedup']:.1f}x)")
            ref = next(r for r in doc["ratios"] if r["size"] == size)["reference_site_updates_per_s"]
            lines.append(f"| {size}^2 | {_si(ref)} | " + " | ".join(cells) + " |")
    if doc["skipped"]:
        lines += ["", "Not measured: " + "; ".join(doc["skipped"]) + "."]
    starved = [r["case"] for r in doc["rows"] if r["impl"] != "cuda" and r["cpu_per_wall"] < STARVED * r["threads"]]
    if starved:
        lines += [
            "",
            f"Warning: {', '.join(starved)} got less than {STARVED:.0%} of a CPU per thread during the timed runs "
            "(other processes competed for the CPUs); their numbers understate the implementation.",
        ]
    return "\n".join(lines) + "\n"


def write(doc: dict[str, Any], out: Path, name: str) -> tuple[Path, Path]:
    """Write ``<out>/<name>.json`` and ``<out>/<name>.md``; returns their paths."""
    validate(doc)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    json_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown(doc), encoding="utf-8")
    return json_path, md_path


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Markdown table of site-updates/s of the cases two result documents share, new over old."""
    before = {r["case"]: r for r in old["rows"]}
    lines = ["| case | old site-updates/s | new site-updates/s | new / old |", "|---|---:|---:|---:|"]
    for r in new["rows"]:
        o = before.get(r["case"])
        if o is not None:
            lines.append(
                f"| {r['case']} | {_si(o['site_updates_per_s'])} | {_si(r['site_updates_per_s'])} | "
                f"{r['site_updates_per_s'] / o['site_updates_per_s']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def config_for(mode: str, **changes: Any) -> Config:
    """The preset of ``mode`` with some fields changed (``None`` values are ignored)."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    return replace(MODES[mode], **{k: v for k, v in changes.items() if v is not None})
