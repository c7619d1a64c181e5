"""What every experiment script shares: command line, runs, statistics, outputs, provenance.

An experiment is a list of :class:`Job` (an arm label, parameter overrides,
a patient index and its seed), run by :func:`run_all`, analysed,
and written with :func:`write_results`. A script looks like::

    parser = common.make_parser("dose_response", __doc__, n=5, days=28.0, smoke_days=2.0)
    def main(argv=None):
        args = common.parse_args(parser, argv)        # ParamError -> exit status 2
        jobs = [common.Job(f"dose={d:g}", {"product.dose_per_kg": d}, r, common.seed_for(args.seed, r), args.days)
                for d in doses for r in range(args.n)]
        results, wall = common.run_all(jobs, args.workers, resume=args.out)
        ...                                             # analyse, make the figure, write the README text
        common.write_results(args.out, results, figure=fig, readme=text, provenance=common.provenance(...))
    if __name__ == "__main__":
        sys.exit(common.cli(main))

Command line (:func:`make_parser`)
    ``--smoke`` (seconds-long version for CI: tiny windows, a few days),
    ``--n`` (patients per arm), ``--seed`` (cohort or base seed),
    ``--workers`` (local processes), ``--days``, ``--out`` (default
    ``experiments/results/<name>/``; with ``--smoke`` a folder in the system
    temporary directory, so a smoke run never overwrites committed results),
    ``--force`` (replace the results of an earlier study in ``--out``) and
    ``--scheduler ADDRESS`` (run on an existing Dask cluster instead of
    local processes; an unreachable scheduler is exit status 2).

Output folder (:func:`parse_args`, before any run)
    A new or empty ``--out`` is fine. A folder holding the results of an
    earlier study (its ``provenance.json`` names the experiment) is refused
    with exit status 2 unless ``--force``; a smoke study's folder (its
    provenance says ``smoke``) and the default smoke folder are never results
    and are replaced without it. Any other non-empty folder is refused, with
    ``--force`` too. A folder that cannot be created or written is exit
    status 2 naming ``--out`` and the operating system's reason.

Seeds
    Patient ``r`` (0-based) of *every* arm runs with the same seed: in a
    cohort design (:mod:`experiments.sweep`) the seed and profile of virtual
    patient ``r`` of the cohort (:func:`abm.cohort.sample_patient`,
    :func:`abm.cohort.patient_seed`); in a replicate design of one default
    patient ``seed_for(base, r) = base * 1000 + r``. Arms are therefore
    compared on the same patients and seeds (paired designs, common random
    numbers), ``--n`` is at most 1000 and a base seed names a disjoint block
    of 1000 seeds.

Execution and determinism
    :func:`run_all` runs each job as one model run on the ``cpu`` backend with
    one Numba thread: with ``--workers 1`` in this process, otherwise in a
    :class:`concurrent.futures.ProcessPoolExecutor` with the ``spawn`` start
    method (one thread per process, so processes never oversubscribe the
    cores); with ``--scheduler`` on the cluster's workers, as
    :func:`abm.cohort.run_condition` tasks. A run depends only on its
    parameters and seed (the model's determinism contract), and results are
    returned in job order, so they do not depend on ``--workers`` or the
    executor.

Resuming
    With ``resume=OUT``, every finished run is appended (one JSON line,
    flushed and fsynced) to ``PARENT/.NAME.cart-abm-partial.jsonl`` beside
    the study's ``--out``, keyed by everything that decides its result (arm,
    patient, seed, overrides, days, observables, backend and the model's
    fingerprint). A study stopped or failed part way and started again with
    the same command skips the runs already there; the file is removed when
    the study's folder is written (:func:`write_results`). A changed model or
    option changes the key, so a stale run is never reused.

Outputs (:func:`write_results`)
    ``results.csv`` (one row per run: arm, patient_id, seed, the
    overridden parameters, ``window_sites`` and every scalar outcome of
    :func:`abm.outcomes.summarize`), ``timeseries.csv.gz`` (long format: one row
    per run and observation), ``figure.png``, ``provenance.json`` and
    ``README.md``. They are written into a staging folder beside ``--out``
    (``.NAME.cart-abm-new-XXXXXXXX``, ``README.md`` last), which then replaces
    ``--out`` in two renames (:func:`abm.folders.replace_folder`): an interrupted
    study leaves the earlier results whole. The numbers in the README are
    generated from the run, never typed.

Signals
    Ctrl-C, SIGTERM and SIGHUP stop a study (:func:`cli`): the workers are
    stopped, nothing is written, and the exit status is 128 plus the
    signal's number (130, 143, 129).

Intervals
    Proportions: Wilson score 95 % interval (:func:`abm.rows.wilson`). Means:
    Student-t 95 % interval ``mean +- t(0.975, n-1) * sd / sqrt(n)``
    (:func:`mean_interval`); no interval for a single value.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import abm
from abm import cohort, folders, signals
from abm.errors import ParamError
from abm.io import append_journal, atomic_write, read_journal, results_root, write_gzip_text
from abm.rows import Z95, wilson

ROOT = Path(__file__).resolve().parent.parent
RESULTS = results_root(Path(__file__).parent, "cart-abm-results")
SEEDS_PER_BASE = 1000
TIMESERIES = "timeseries.csv.gz"  # the long time series of a study, one row per run and observation
# observables of the DataCollector kept per run for time-course figures (``timeseries.csv.gz``)
RUN_KEYS = ("arm", "patient_id", "seed")  # the first columns of results.csv: what pairs the rows of two arms
DEFAULT_SERIES = ("blast_fraction", "blasts", "cart", "bcells", "blood_cart_per_ul", "kills")
# two-sided 95 % Student-t critical values t(0.975, df), df = 1..30 (standard tables)
_T975 = (
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157, 2.228139,
    2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922, 2.093024, 2.085963,
    2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831, 2.048407, 2.045230, 2.042272,
)


# -- command line --------------------------------------------------------------------------------------
def make_parser(name: str, description: str, *, n: int, days: float, workers: int = 1) -> argparse.ArgumentParser:
    """The shared command line of ``python -m experiments.<name>`` (a script may add options)."""
    parser = argparse.ArgumentParser(prog=f"python -m experiments.{name}", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(experiment=name)
    parser.add_argument("--smoke", action="store_true",
                        help="seconds-long version for CI (tiny windows, short runs); not a result")
    parser.add_argument("--n", type=int, default=None, help=f"patients (or seeds) per arm (default {n})")
    parser.add_argument("--seed", type=int, default=0,
                        help="cohort (or base) seed: patient r of every arm gets the same profile and seed "
                             "(default 0)")
    parser.add_argument("--workers", type=int, default=workers,
                        help=f"local processes, one Numba thread each (default {workers})")
    parser.add_argument("--days", type=float, default=None, help=f"simulated days per run (default {days:g})")
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output folder (default experiments/results/{name}/)")
    parser.add_argument("--force", action="store_true",
                        help="replace the results of an earlier study in --out (swapped in when the new ones are "
                             "written)")
    parser.add_argument("--scheduler", metavar="ADDRESS", default=None,
                        help="run on an existing Dask cluster (scheduler address, e.g. tcp://host:8786) "
                             "instead of local processes; results are the same")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--series-every", metavar="HOURS", type=float, default=None,
                        help="write every HOURS of each run's time series to timeseries.csv.gz (a multiple of the "
                             "observation interval, time.observe_every_h; default: every observation); the "
                             "figures use them all")
    parser.set_defaults(default_n=n, default_days=days)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None, *, smoke_n: int = 2,
               smoke_days: float = 2.0) -> argparse.Namespace:
    """Parse and validate; fill ``n``, ``days`` and ``out`` defaults (smoke or full). Raises :class:`ParamError`."""
    args = parser.parse_args(argv)
    if args.n is None:
        args.n = smoke_n if args.smoke else args.default_n
    if args.days is None:
        args.days = smoke_days if args.smoke else args.default_days
    if not 1 <= args.n <= SEEDS_PER_BASE:
        raise ParamError(f"--n = {args.n}: expected an integer in [1, {SEEDS_PER_BASE}]")
    if not 0 <= args.seed <= (2**63 - 1) // SEEDS_PER_BASE - 1:
        raise ParamError(f"--seed = {args.seed}: expected an integer in [0, {(2**63 - 1) // SEEDS_PER_BASE - 1}]")
    if not 1 <= args.workers <= 256:
        raise ParamError(f"--workers = {args.workers}: expected an integer in [1, 256]")
    if not (math.isfinite(args.days) and args.days > 0):
        raise ParamError(f"--days = {args.days}: expected a positive number of days")
    every = getattr(args, "series_every", None)
    if every is not None and not (math.isfinite(every) and every > 0):
        raise ParamError(f"--series-every = {every}: expected a positive number of hours")
    smoke_default = args.out is None and args.smoke
    if args.out is None:
        args.out = smoke_folder(args.experiment) if args.smoke else RESULTS / args.experiment
    args.out = Path(args.out)
    check_out(args.out, force=getattr(args, "force", False) or smoke_default)
    return args


def smoke_folder(experiment: str) -> Path:
    """The default ``--out`` of ``--smoke``: a folder in the system temporary directory, never a result."""
    return Path(tempfile.gettempdir()) / "cart-abm-experiments" / f"{experiment}-smoke"


_REPLACEABLE: set[Path] = set()  # --out folders parse_args has cleared for write_results to replace


def check_out(out: Path, *, force: bool = False) -> None:
    """Apply the output-folder policy (module docstring) to ``out``; raises :class:`ParamError`, writes nothing.

    A folder it accepts may then be replaced by :func:`write_results`.
    """
    out = Path(out).absolute()
    folders.check_writable(out, "--out")
    folders.check_writable(out.parent, "--out")  # the new results are built beside it, then swapped in
    if out.exists() and not folders.is_empty_folder(out):
        if folders.folder_kind(out) is None:
            raise ParamError(f"--out {str(out)!r} exists and is not a cart-abm output folder; choose another --out "
                             "(--force replaces only folders cart-abm wrote)")
        if not (force or _is_smoke_study(out)):
            raise ParamError(folders.refusal(out, "--out"))
    _REPLACEABLE.add(out)


def _is_smoke_study(folder: Path) -> bool:
    try:
        prov = json.loads((Path(folder) / "provenance.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(prov, dict) and prov.get("smoke") is True


def cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Call an experiment's ``main``; bad input gives exit status 2 with one message, as ``cart-abm`` does.

    Ctrl-C, SIGTERM and SIGHUP stop it (:func:`abm.signals.stop_on_signals`: the
    workers are stopped, nothing is written) with exit status 128 plus the
    signal's number.
    """
    try:
        with signals.stop_on_signals():
            return main(argv)
    except ParamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"stopped by {signals.signal_name(exc)}; no results were written", file=sys.stderr)
        return 128 + signals.signal_number(exc)


def seed_for(base: int, replicate: int) -> int:
    """Seed of replicate ``replicate`` of one patient under base seed ``base``: ``base * 1000 + replicate``."""
    if not 0 <= replicate < SEEDS_PER_BASE:
        raise ParamError(f"replicate {replicate}: expected 0 <= replicate < {SEEDS_PER_BASE}")
    return base * SEEDS_PER_BASE + replicate


# -- runs ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """One model run: an arm (label and parameter overrides), a patient index and its seed."""

    arm: str
    overrides: Mapping[str, Any]
    patient_id: int
    seed: int
    days: float
    backend: str = "cpu"
    series: tuple[str, ...] = field(default=DEFAULT_SERIES)
    cost: float = 1.0  # relative run time; costlier jobs start first (balances workers, never changes results)


def run_condition(params_overrides: Mapping[str, Any], seed: int, days: float, backend: str = "cpu",
                  series: Sequence[str] = DEFAULT_SERIES) -> dict[str, Any]:
    """One run of the default patient with ``params_overrides``: :func:`abm.cohort.run_condition`."""
    return cohort.run_condition(dict(params_overrides), seed, days, backend, tuple(series))


def _label(job: Job, result: dict[str, Any]) -> dict[str, Any]:
    return {"arm": job.arm, "patient_id": job.patient_id, **result}


def partial_file(out: Path) -> Path:
    """``PARENT/.NAME.cart-abm-partial.jsonl``: the finished runs of a study of ``out`` not yet written."""
    out = Path(out).absolute()
    return out.parent / f".{out.name}.cart-abm-partial.jsonl"


def job_key(job: Job, model: str) -> str:
    """Everything that decides a run's result, as one string (``model``: :func:`abm.io.model_fingerprint`)."""
    return json.dumps({"arm": job.arm, "patient_id": job.patient_id, "seed": job.seed,
                       "overrides": {k: job.overrides[k] for k in sorted(job.overrides)}, "days": job.days,
                       "backend": job.backend, "series": list(job.series), "model": model},
                      sort_keys=True, default=str)


def read_partial(path: Path) -> dict[str, dict[str, Any]]:
    """Finished runs in a partial file, by :func:`job_key` (a line torn by a crash is ignored: that run reruns)."""
    done: dict[str, dict[str, Any]] = {}
    for entry in read_journal(path):
        if isinstance(entry, dict) and "key" in entry and "result" in entry:
            done[entry["key"]] = entry["result"]
    return done


def run_all(jobs: Sequence[Job], workers: int = 1, progress: bool = True, scheduler: str | None = None,
            resume: Path | None = None) -> tuple[list[dict[str, Any]], float]:
    """Run every job; return ``(results in job order, wall seconds)``, independent of the executor.

    Each job is one :func:`abm.cohort.run_condition` task of
    :func:`abm.cohort.run_tasks` (the ensemble runner trials and calibration
    use too): ``scheduler`` runs them on that Dask cluster's workers (which
    need cart-abm installed); otherwise ``workers == 1`` runs in this
    process and more use that many ``spawn`` processes, starting the
    costliest jobs (:attr:`Job.cost`) first. The first failure cancels what
    has not started and is raised. ``resume`` (the study's ``--out``) keeps
    every finished run in :func:`partial_file` and skips the runs already
    there (module docstring, "Resuming").
    """
    from abm.io import model_fingerprint

    jobs = list(jobs)
    model = model_fingerprint()
    keys = [job_key(job, model) for job in jobs]
    path = None if resume is None else partial_file(resume)
    done = {} if path is None else read_partial(path)
    todo = [i for i, key in enumerate(keys) if key not in done]
    if len(todo) < len(jobs):
        print(f"resuming: {len(jobs) - len(todo)} of {len(jobs)} runs already done ({path})", file=sys.stderr)
    tasks = [cohort.Task(f"cart-abm-{job.arm}-{job.patient_id}-{job.seed}", cohort.run_condition,
                         (dict(job.overrides), job.seed, job.days, job.backend, tuple(job.series)),
                         label=f"run {job.arm!r} patient {job.patient_id} (seed {job.seed})", cost=job.cost)
             for job in (jobs[i] for i in todo)]

    def keep(k: int, result: dict[str, Any]) -> None:
        append_journal(path, {"key": keys[todo[k]], "result": result}, allow_nan=True)

    started = time.perf_counter()
    if tasks and scheduler is None and any(job.backend == "cpu" for job in jobs):
        from abm.params import Params
        from abm.warmup import warm_up_cold_kernels

        warm_up_cold_kernels(Params.default())  # announced, once, before the workers would each compile
    new = cohort.run_tasks(tasks, workers=workers, scheduler=scheduler, progress=progress,
                           on_result=None if path is None else keep)
    results = [done.get(key) for key in keys]
    for i, result in zip(todo, new, strict=True):
        results[i] = result
    return [_label(job, result) for job, result in zip(jobs, results, strict=True)], time.perf_counter() - started


# -- statistics --------------------------------------------------------------------------------------------
def t_critical_975(df: int) -> float:
    """Two-sided 95 % Student-t critical value ``t(0.975, df)`` (table to df 30, Cornish-Fisher beyond)."""
    if df < 1:
        raise ValueError(f"df = {df}: expected at least 1")
    if df <= len(_T975):
        return _T975[df - 1]
    z = Z95
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


@dataclass(frozen=True)
class Estimate:
    """A mean (or proportion) with its 95 % interval; ``lo``/``hi`` are NaN when there is none."""

    mean: float
    lo: float
    hi: float
    se: float
    n: int
    method: str  # "t", "wilson" or "none"


def mean_interval(values: Iterable[float]) -> Estimate:
    """Mean with a Student-t 95 % interval (NaN values are dropped; no interval for n < 2)."""
    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = x.size
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0, "none")
    mean = float(x.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, math.nan, 1, "none")
    se = float(x.std(ddof=1) / math.sqrt(n))
    half = t_critical_975(n - 1) * se
    return Estimate(mean, mean - half, mean + half, se, n, "t")


def proportion_interval(values: Iterable[Any]) -> Estimate:
    """Proportion of true values with a Wilson 95 % interval (None/NaN dropped)."""
    x = [bool(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan, 0, "none")
    p, lo, hi = wilson(sum(x), n)
    return Estimate(p, lo, hi, math.sqrt(p * (1 - p) / n), n, "wilson")


@dataclass(frozen=True)
class Comparison:
    """A condition's mean against a reference mean, with the tolerance it was judged by."""

    difference: float  # mean - reference mean
    se: float  # standard error of the difference (unpaired)
    tolerance: float  # max(2 SE, rel * |reference mean|, abs_tol)
    agree: bool


def compare_means(reference: Estimate, other: Estimate, rel: float = 0.10, abs_tol: float = 0.0) -> Comparison:
    """Agreement rule: ``|mean - reference| <= max(2 SE_diff, rel * |reference|, abs_tol)``.

    ``SE_diff = sqrt(SE_ref^2 + SE_other^2)`` (unpaired; a missing SE counts
    as 0). Agreement at a small ``n`` means no difference was detected at that
    resolution, not that the conditions are equivalent.
    """
    diff = other.mean - reference.mean
    se = math.sqrt(sum(s * s for s in (reference.se, other.se) if not math.isnan(s)))
    tol = max(2.0 * se, rel * abs(reference.mean), abs_tol)
    return Comparison(diff, se, tol, bool(abs(diff) <= tol))


def fmt(x: Any, digits: int = 3) -> str:
    """A number for a generated README: ``digits`` significant digits, ``-`` for missing values."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, bool | np.bool_):
        return str(bool(x)).lower()
    if isinstance(x, int | np.integer):
        return str(int(x))
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 10 ** digits or abs(x) < 1e-3:
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def fmt_estimate(e: Estimate, digits: int = 3) -> str:
    """``mean [lo, hi]`` (or the bare mean without an interval)."""
    if e.method == "none":
        return fmt(e.mean, digits)
    return f"{fmt(e.mean, digits)} [{fmt(e.lo, digits)}, {fmt(e.hi, digits)}]"


# -- outputs -----------------------------------------------------------------------------------------------
def panel_grid(panels: int, ncols: int):
    """A headless Matplotlib figure with at least ``panels`` axes, ``ncols`` a row; returns ``(plt, fig, axes)``.

    ``axes`` is flat; every experiment's figure starts here.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nrows = -(-panels // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.0 * ncols, 3.3 * nrows))
    return plt, fig, axes.ravel()


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text))


def write_figure(path: Path, figure) -> None:
    """Save a Matplotlib figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    fmt_name = Path(path).suffix.lstrip(".") or "png"
    atomic_write(path, lambda fh: figure.savefig(fh, format=fmt_name, dpi=120, bbox_inches="tight"), binary=True)
    plt.close(figure)


def _cell(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return ";".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return ""
    return value


def result_rows(results: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """CSV columns and rows: arm, patient_id, seed, overridden parameters, then every scalar outcome."""
    override_keys: list[str] = []
    outcome_keys: list[str] = []
    for r in results:
        override_keys += [k for k in r["overrides"] if k not in override_keys]
        outcome_keys += [k for k in r if k not in outcome_keys and k not in (*RUN_KEYS, "overrides", "series")]
    columns = [*RUN_KEYS, *override_keys, *outcome_keys]
    rows = []
    for r in results:
        row = {k: r[k] for k in RUN_KEYS}
        row.update({k: _cell(r["overrides"].get(k)) for k in override_keys})
        row.update({k: _cell(r.get(k)) for k in outcome_keys})
        rows.append(row)
    return columns, rows


def csv_text(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def timeseries_rows(results: Sequence[Mapping[str, Any]],
                    every_h: float | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """Long-format time series: arm, patient_id, seed, day, then each recorded observable.

    ``every_h``: only the observations at whole multiples of ``every_h`` hours (day 0 among them); ``None``: all.
    """
    names: list[str] = []
    for r in results:
        names += [k for k in r["series"] if k != "day" and k not in names]
    rows = []
    for r in results:
        s = r["series"]
        for i, day in enumerate(s.get("day", [])):
            if every_h is not None:
                multiple = day * 24.0 / every_h
                if abs(multiple - round(multiple)) > 1e-6:
                    continue
            row = {**{k: r[k] for k in RUN_KEYS}, "day": day}
            row.update({k: s[k][i] for k in names if k in s})
            rows.append(row)
    return [*RUN_KEYS, "day", *names], rows


def git_commit(root: Path = ROOT) -> str | None:
    """The checkout's commit, or None outside git.

    ``-dirty`` is appended when tracked files other than ``experiments/results/``
    differ from it: a study rewrites its own committed results while it runs,
    which must not mark its provenance dirty.
    """
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)experiments/results"], cwd=root, capture_output=True, text=True, timeout=10)
        return head.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def machine() -> dict[str, Any]:
    """Where the runs ran: OS, CPU model and count, Python and key library versions."""
    import mesa
    import numba

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
            "mesa": mesa.__version__}


def provenance(args: argparse.Namespace, results: Sequence[Mapping[str, Any]], wall_s: float,
               argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Version, commit, command, seeds, date, wall time and machine of an experiment run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    return {
        "experiment": args.experiment,
        "cart_abm_version": abm.__version__,
        "git_commit": git_commit(),
        "command": " ".join([f"python -m experiments.{args.experiment}", *argv]),
        "smoke": bool(args.smoke),
        "n": args.n,
        "base_seed": args.seed,
        "seeds": sorted({int(r["seed"]) for r in results}),
        "days": args.days,
        "workers": args.workers,
        "backend": sorted({str(r.get("backend")) for r in results}),
        "threads_per_run": 1,
        "dt_min": sorted({float(r["dt_min"]) for r in results if r.get("dt_min") is not None}),
        "site_um": sorted({float(r["site_um"]) for r in results if r.get("site_um") is not None}),
        "runs": len(results),
        "date_utc": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "wall_s": round(wall_s, 1),
        "run_wall_s_total": round(sum(float(r.get("wall_s") or 0.0) for r in results), 1),
        "series_every_h": getattr(args, "series_every", None),
        "machine": machine(),
    }


def series_interval(prov: Mapping[str, Any]) -> str:
    """How often ``timeseries.csv.gz`` holds an observation, in words (``--series-every`` or every one)."""
    every = prov.get("series_every_h")
    return "every observation, 6 h by default" if every is None else f"every {fmt(every)} h"


def provenance_markdown(prov: Mapping[str, Any]) -> str:
    """The provenance section of a generated README."""
    m = prov["machine"]
    lines = [
        "## Provenance",
        "",
        f"- cart-abm {prov['cart_abm_version']}, commit `{prov['git_commit'] or 'unknown (not a git checkout)'}`",
        f"- command: `{prov['command']}`" + (" (smoke: not a result)" if prov["smoke"] else ""),
        f"- seeds: {', '.join(str(s) for s in prov['seeds'])} "
        + (f"(patient r's own seed, `abm.cohort.patient_seed({prov['base_seed']}, r)`; cohort seed "
           f"{prov['base_seed']})" if prov.get("design") == "cohort" else
           f"(replicate r uses base seed x 1000 + r; base seed {prov['base_seed']})"),
        f"- {prov['runs']} runs of {fmt(prov['days'])} days, dt = {', '.join(fmt(x) for x in prov['dt_min'])} min, "
        f"site = {', '.join(fmt(x) for x in prov['site_um'])} um, backend {', '.join(prov['backend'])} with "
        f"{prov['threads_per_run']} thread per run, {prov['workers']} worker process(es)",
        f"- date (UTC): {prov['date_utc']}; wall time {fmt(prov['wall_s'])} s "
        f"(sum of per-run simulation times {fmt(prov['run_wall_s_total'])} s)",
        f"- machine: {m['cpu']}, {m['cpu_count']} CPUs, {m['platform']}; Python {m['python']}, NumPy {m['numpy']}, "
        f"Numba {m['numba']}, Mesa {m['mesa']}",
        "",
    ]
    return "\n".join(lines)


def write_results(out: Path, results: Sequence[Mapping[str, Any]], *, figure, readme: str,
                  provenance: Mapping[str, Any], extra_csv: Mapping[str, str] | None = None,
                  series_every_h: float | None = None) -> Path:
    """Write every output of an experiment as the folder ``out``, each file atomically, ``README.md`` last.

    ``results.csv``, ``timeseries.csv.gz`` (the long time series, gzip: the
    largest output, kept small in the repository; every ``series_every_h``
    hours of it, :func:`timeseries_rows`), any ``extra_csv`` texts
    (name -> CSV text), ``figure.png``, ``provenance.json``, then
    ``README.md``, all in a staging folder beside ``out`` that then replaces
    ``out`` whole (:func:`abm.folders.replace_folder`; nothing of an earlier
    folder is kept). ``out`` must be new or empty, or cleared by
    :func:`parse_args` (:func:`check_out`: ``--force``, a smoke folder);
    otherwise :class:`ParamError`.
    """
    out = Path(out).absolute()
    if out not in _REPLACEABLE:
        check_out(out)
    staging = folders.make_staging_folder(out)
    try:
        write_text(staging / "results.csv", csv_text(*result_rows(results)))
        write_gzip_text(staging / TIMESERIES, csv_text(*timeseries_rows(results, series_every_h)))
        for name, text in (extra_csv or {}).items():
            write_text(staging / name, text)
        write_figure(staging / "figure.png", figure)
        write_text(staging / "provenance.json", json.dumps(provenance, indent=2, allow_nan=False) + "\n")
        write_text(staging / "README.md", readme)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    folders.replace_folder(staging, out)  # if this fails, the complete results stay in the staging folder
    partial_file(out).unlink(missing_ok=True)  # its runs are in the study's folder now
    return out
