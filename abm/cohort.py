"""Virtual patients and ensembles: cohorts like ELIANA's, run on local processes or a Dask cluster.

Virtual patients
    :func:`sample_cohort` draws ``n`` patients from documented distributions
    (below), each with its own seed derived from the cohort seed and its index,
    so patient ``k`` is the same whatever ``n``, the worker count or the
    executor. ``fixed`` (the CLI's ``--set``) overrides a key for every patient.

    ELIANA-like profile (pediatric / young adult relapsed or refractory B-ALL,
    tisagenlecleucel-like 4-1BB product; Maude 2018 NEJM 378:439):

    ==========================================  ==========================================================
    ``patient.weight_kg``                        log-normal, median 35 kg, geometric SD 1.5, in [10, 110]
                                                 (assumption from the median age of 11 y, range 3-23)
    ``patient.marrow_blast_fraction``            Beta with mean 0.68, SD 0.25, in [0.05, 0.97]
                                                 (ELIANA: mean ~68 %, median 74 %, range 5-99 %)
    ``patient.cd19_median_molecules``            log-normal, median 1e4, SD 0.3 log10, in [1e3, 1e5]
                                                 (Majzner 2020: B-ALL CD19 spans ~1e3-1e4.5)
    ``patient.cd19_negative_fraction``           0 for 80 % of patients, else log-uniform in [1e-6, 1e-4]
                                                 (assumption: pre-existing CD19-negative subclones in some
                                                 (Orlando 2018 Nat Med 24:1504), mostly below flow MRD at
                                                 day 28 after their ~6-fold growth, as every ELIANA
                                                 responder was MRD-negative (Maude 2018))
    ``cart.proliferation_rate_per_day``          default x log-normal factor, SD 0.2 (T-cell fitness;
                                                 assumption: product expansion capacity varies)
    ``product.dose_per_kg``                      <= 50 kg: log-normal median 3e6/kg in [0.2e6, 5e6];
                                                 > 50 kg: 0.1-2.5e8 cells total, median 1e8 (label)
    ``serum.il6_production_pg_ml_per_day``       default x 10**(``serum.il6_production_sd_log10`` x N(0, 1))
                                                 (host cytokine response; calibrated spread)
    ``cart.max_divisions``                      default + ``cart.max_divisions_sd`` x N(0, 1), rounded, in
                                                 [1, 60] (the product's division destiny; calibrated spread)
    ``patient.monocytes_per_nl``                 log-normal, median 0.4, geometric SD 2, in [0.02, 4]
                                                 (assumption: monocytopenia is common in a leukemic marrow;
                                                 no pediatric pre-lymphodepletion distribution found)
    ``patient.ang2_ang1_ratio``                  log-normal, median 1 (the reference), geometric SD 2, in
                                                 [0.05, 20] (assumption: Gust 2017 Cancer Discov 7:1404 and
                                                 Hay 2017 Blood 130:2295 report pre-lymphodepletion endothelial
                                                 activation in some patients; its spread is not verified)
    ==========================================  ==========================================================

    ``patient.kmt2a_rearranged``                 true with probability 13/231 (Leahy 2022 Blood 139:2173:
                                                 KMT2A-rearranged infant ALL among 231 CAR-T-treated children
                                                 and young adults; a lower bound)
    ``product.transduced_blasts``                1 with probability 1/369, else 0 (a leukemic blast
                                                 transduced in manufacturing: Ruella 2018 Nat Med 24:1499;
                                                 ``MASKING_PREVALENCE``)
    ``cart.memory_fraction``                     logit-normal around the default, SD
                                                 ``cart.memory_fraction_sd_logit`` (0, every product at the
                                                 default, until the recalibration; Fraietta 2018)

    The last five are the covariates of issue 23's and 28's mechanisms (the
    myeloid compartment, the endothelial susceptibility of ICANS, lineage
    switch, epitope masking, the product's memory share); they are drawn from a stream of their own, so
    the other draws of a patient are those of cohorts from before them, and
    the first three act only once the recalibration turns their mechanisms on
    (``myeloid.*``, ``icans.endothelial_sensitivity``,
    ``blast.lineage_switch_per_division``); a masked blast acts in any patient
    who draws one.

Executors
    ``workers`` local processes (``spawn``; each patient on the ``cpu``
    backend with one Numba thread, since parallel regions collapse when
    processes share cores), or an existing Dask distributed scheduler by
    address. Rows are ordered by patient index, so results do not depend on
    the executor or the number of workers.

Resumable trials
    Each finished patient is appended to ``DIR/patients.partial.jsonl`` (one
    JSON line, flushed and fsynced); a trial restarted on the same folder skips
    the patients already there. The final ``patients.csv`` and ``summary.json``
    are written atomically when every patient is done; the partial file is
    then deleted. Ctrl-C, SIGTERM or SIGHUP stop the workers at once
    (:func:`run_tasks`) and keep every finished patient.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from abm.errors import ParamError
from abm.io import append_journal, read_journal
from abm.params import BY_KEY, Params
from abm.rows import grade_at_least, rate

PARTIAL = "patients.partial.jsonl"
# KMT2A-rearranged leukemia among CAR-T-treated children and young adults: 13 KMT2A-rearranged infant ALL of 231
# patients (Leahy 2022 Blood 139:2173; non-infant KMT2A-r are not counted there, so a lower bound)
KMT2A_PREVALENCE = 13 / 231
# a product carrying one CAR-transduced leukemic blast (epitope masking): the single case of Ruella 2018 Nat Med
# 24:1499 among the CTL019-treated patients of its centres, put there at 1 of 369 (assumption: that denominator,
# quoted from the paper's discussion, was not verified here; the rate is rare, not zero)
MASKING_PREVALENCE = 1 / 369
# the values of summary.json's relapse_route (abm.outcomes.relapse_route)
RELAPSE_ROUTES = ("antigen-positive", "preexisting", "mutation", "lineage", "downregulation", "masking", "unknown")
PROFILE_KEYS = (
    "patient.weight_kg",
    "patient.marrow_blast_fraction",
    "patient.cd19_median_molecules",
    "patient.cd19_negative_fraction",
    "cart.proliferation_rate_per_day",
    "product.dose_per_kg",
    "serum.il6_production_pg_ml_per_day",
    "cart.max_divisions",
    "patient.monocytes_per_nl",
    "patient.ang2_ang1_ratio",
    "patient.kmt2a_rearranged",
    "product.transduced_blasts",
    "cart.memory_fraction",
)
# what each profile key stands for: a covariate a clinic measures or sets before infusion, or a latent
# (unobserved) patient or product factor; the calibration report ranks both against toxicity (issue 23)
FACTOR_KIND = {
    "patient.weight_kg": "covariate",
    "patient.marrow_blast_fraction": "covariate",
    "patient.cd19_median_molecules": "covariate",  # flow cytometry of the blasts
    "patient.cd19_negative_fraction": "latent",  # mostly below flow MRD before infusion
    "cart.proliferation_rate_per_day": "latent",  # T-cell fitness
    "product.dose_per_kg": "covariate",
    "serum.il6_production_pg_ml_per_day": "latent",  # the host cytokine response
    "cart.max_divisions": "latent",  # the product's proliferative capacity
    "patient.monocytes_per_nl": "covariate",  # blood count before lymphodepletion
    "patient.ang2_ang1_ratio": "covariate",  # serum angiopoietins before lymphodepletion
    "patient.kmt2a_rearranged": "covariate",  # leukemia cytogenetics
    "product.transduced_blasts": "latent",  # one leukemic cell among the product's T cells is not seen
    "cart.memory_fraction": "covariate",  # product phenotype by flow cytometry at release
}
OUTCOME_KEYS = (
    "cr_day28",
    "mrd_day28",
    "mrd_negative_day28",
    "mrd_detection_limit",
    "crs_max_grade",
    "crs_onset_day",
    "icans_max_grade",
    "icans_onset_day",
    "cart_peak_blood_per_ul",
    "cart_peak_day",
    "b_cell_aplasia_days",
    "relapse",
    "relapse_day",
    "relapse_antigen_negative",
    "relapse_route",
    "cr_within_3mo",
    "mrd_negative_within_3mo",
    "tocilizumab_doses",
    "steroids_given",
    "blast_fraction_day0",
)


@dataclass(frozen=True)
class Job:
    """One virtual patient to simulate: index, seed and every parameter override."""

    index: int
    seed: int
    overrides: dict[str, Any]
    days: float


def patient_seed(cohort_seed: int, index: int) -> int:
    """Seed of patient ``index`` in a cohort: a SplitMix64 hash, so neighbours are unrelated."""
    from kernels import draw_reference

    return (draw_reference(cohort_seed, 0, index, 250) << 31) | draw_reference(cohort_seed, 1, index, 250) >> 1


def sample_patient(cohort_seed: int, index: int, base: Params) -> dict[str, Any]:
    """Profile overrides of patient ``index`` (see the module docstring for the distributions)."""
    rng = np.random.default_rng([cohort_seed, index, 0xC0407])
    weight = float(np.clip(35.0 * 1.5 ** rng.standard_normal(), 10.0, 110.0))
    mean, sd = 0.68, 0.25
    k = mean * (1 - mean) / sd**2 - 1
    blasts = float(np.clip(rng.beta(mean * k, (1 - mean) * k), 0.05, 0.97))
    cd19 = float(np.clip(10 ** (4.0 + 0.3 * rng.standard_normal()), 1e3, 1e5))
    negative = 0.0 if rng.random() < 0.8 else float(10 ** rng.uniform(-6.0, -4.0))
    fitness = float(np.exp(0.2 * rng.standard_normal()))
    if weight <= 50.0:
        dose = float(np.clip(3e6 * 1.6 ** rng.standard_normal(), 0.2e6, 5e6))
    else:
        dose = float(np.clip(1e8 * 1.6 ** rng.standard_normal(), 0.1e8, 2.5e8)) / weight
    cytokine_z = rng.standard_normal()
    divisions_z = rng.standard_normal()
    profile = {
        "patient.weight_kg": round(weight, 3),
        "patient.marrow_blast_fraction": round(blasts, 5),
        "patient.cd19_median_molecules": round(cd19, 1),
        "patient.cd19_negative_fraction": negative,
        "cart.proliferation_rate_per_day": round(base["cart.proliferation_rate_per_day"] * fitness, 5),
        "product.dose_per_kg": round(dose, 1),
    }
    spread = base["serum.il6_production_sd_log10"]
    if spread > 0:  # without a spread every patient keeps the base value exactly
        il6 = base["serum.il6_production_pg_ml_per_day"] * 10 ** (spread * cytokine_z)
        high = BY_KEY["serum.il6_production_pg_ml_per_day"].high
        profile["serum.il6_production_pg_ml_per_day"] = min(float(f"{il6:.5g}"), high)
    spread = base["cart.max_divisions_sd"]
    if spread > 0:
        high = BY_KEY["cart.max_divisions"].high
        profile["cart.max_divisions"] = int(min(max(round(base["cart.max_divisions"] + spread * divisions_z), 1), high))
    covariates = np.random.default_rng([cohort_seed, index, 0xC0408])  # issue 23/28 covariates: own stream
    profile["patient.monocytes_per_nl"] = round(float(np.clip(0.4 * 2.0 ** covariates.standard_normal(), 0.02, 4.0)), 4)
    profile["patient.ang2_ang1_ratio"] = round(float(np.clip(2.0 ** covariates.standard_normal(), 0.05, 20.0)), 4)
    profile["patient.kmt2a_rearranged"] = bool(covariates.random() < KMT2A_PREVALENCE)
    profile["product.transduced_blasts"] = 1.0 if covariates.random() < MASKING_PREVALENCE else 0.0
    memory_z = covariates.standard_normal()
    spread = base["cart.memory_fraction_sd_logit"]
    memory = base["cart.memory_fraction"]
    if spread > 0 and 0.0 < memory < 1.0:  # without a spread every product keeps the base share exactly
        logit = math.log(memory / (1.0 - memory)) + spread * memory_z
        profile["cart.memory_fraction"] = round(1.0 / (1.0 + math.exp(-logit)), 4)
    return profile


def sample_cohort(n: int, cohort_seed: int, base: Params, fixed: dict[str, Any] | None = None,
                  days: float | None = None) -> list[Job]:
    """``n`` virtual patients; ``fixed`` keys override the cohort distribution for everyone."""
    if n < 1:
        raise ParamError(f"--n = {n}: expected at least one patient")
    fixed = dict(fixed or {})
    for key in fixed:
        if key not in BY_KEY:
            raise ParamError(f"unknown parameter {key!r}")
    jobs = []
    for index in range(n):
        overrides = {**sample_patient(cohort_seed, index, base), **fixed}
        base.replace(overrides)  # validate now, not in a worker
        jobs.append(Job(index, patient_seed(cohort_seed, index), overrides,
                        base["time.days"] if days is None else days))
    return jobs


def run_patient(job: Job, base: dict[str, Any]) -> dict[str, Any]:
    """Simulate one patient (cpu backend, one thread) and return its profile and outcomes."""
    from abm.model import MarrowModel
    from abm.outcomes import summarize

    params = Params(base).replace({**job.overrides, "time.days": job.days})
    model = MarrowModel(params, seed=job.seed, backend="cpu", threads=1)
    summary = summarize(model.run())
    row = {"patient": job.index, "seed": job.seed, **{k: job.overrides.get(k, params[k]) for k in PROFILE_KEYS}}
    row["follow_up_days"] = job.days
    row.update({k: summary.get(k) for k in OUTCOME_KEYS})
    return row


@dataclass(frozen=True)
class Task:
    """One call ``fn(*args)`` of an ensemble: importable ``fn``, picklable ``args``.

    ``key`` names it on a Dask cluster (unique within an ensemble); ``label``
    names it in a failure message; costlier tasks (``cost``, relative run
    time) start first on a local pool, which balances workers and never
    changes results.
    """

    key: str
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    label: str = ""
    cost: float = 1.0


def run_tasks(tasks: Sequence[Task], *, workers: int = 1, scheduler: str | None = None, progress: bool = False,
              unit: str = "run", on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """Run every task and return the results in task order, whatever the executor: the one ensemble runner.

    ``scheduler`` (a Dask scheduler address) runs the tasks on that cluster;
    otherwise ``workers == 1`` runs them in this process, in order, and more
    use that many ``spawn`` processes (at most one per task), costliest first.
    ``on_result(i, result)`` is called in this process as task ``i``
    finishes (trials append it to their resumable partial file). The first
    failure in a pool cancels what has not started, stops the workers and
    is raised as a ``RuntimeError`` naming the task; in this process the
    error itself is raised. Ctrl-C, SIGTERM or SIGHUP (a ``KeyboardInterrupt``,
    see :func:`abm.signals.stop_on_signals`) stops the workers the same way, or
    cancels this ensemble's tasks on a Dask cluster, and is raised again;
    what ``on_result`` has seen is kept.
    """
    from tqdm.auto import tqdm

    tasks = list(tasks)
    results: list[Any] = [None] * len(tasks)
    with tqdm(total=len(tasks), unit=unit, desc=f"{unit}s", disable=not progress, file=sys.stderr) as bar:

        def collect(i: int, result: Any) -> None:
            results[i] = result
            if on_result is not None:
                on_result(i, result)
            bar.update(1)

        if scheduler:
            run_on_dask(scheduler, [(t.key, t.fn, t.args) for t in tasks], collect)
        elif workers <= 1 or len(tasks) <= 1:
            for i, task in enumerate(tasks):
                collect(i, task.fn(*task.args))
        else:
            _run_pool(tasks, workers, collect)
    return results


def _run_pool(tasks: list[Task], workers: int, collect: Callable[[int, Any], None]) -> None:
    pool = ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=get_context("spawn"),
                               initializer=_worker_leaves_signals_to_the_parent)
    try:
        order = sorted(range(len(tasks)), key=lambda i: -tasks[i].cost)  # stable: task order among equals
        pending = {pool.submit(tasks[i].fn, *tasks[i].args): i for i in order}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)  # the progress bar moves with every task
            for future in done:
                i = pending.pop(future)
                error = future.exception()
                if error is not None:
                    raise RuntimeError(f"{tasks[i].label or tasks[i].key} failed: {type(error).__name__}: {error}"
                                       ) from error
                collect(i, future.result())
    except BaseException:
        _stop_pool(pool)  # a failure, Ctrl-C, SIGTERM or SIGHUP: nothing more is worth waiting for
        raise
    pool.shutdown(wait=True)


def _worker_leaves_signals_to_the_parent() -> None:
    """Pool workers ignore Ctrl-C and SIGHUP, which a terminal sends to its whole process group.

    The parent decides: it marks its folder, then stops the workers with
    SIGTERM. A stopped worker runs no clean-up, so it must hold no named
    semaphore: tqdm's bars (a model's, even disabled) would create a
    ``multiprocessing.RLock`` in each worker, which the resource tracker then
    reports as leaked; a thread lock serves a worker's bars as well.
    """
    import signal
    import threading

    from tqdm import tqdm

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    tqdm.set_lock(threading.RLock())


def _stop_pool(pool: ProcessPoolExecutor, grace_s: float = 10.0) -> None:
    """Cancel what has not started, SIGTERM the workers (SIGKILL after ``grace_s``), and shut the pool down.

    The pool's queues and their semaphores are released in this process, so
    no ``resource_tracker`` warns of leaked semaphores at exit.
    """
    import time

    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()
    pool.shutdown(wait=True)


def run_ensemble(
    jobs: list[Job],
    base: Params,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = False,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every patient (:func:`run_patient` tasks of :func:`run_tasks`); rows come back ordered by patient index.

    ``on_result(row)`` is called in the parent process as each patient
    finishes (used to append to the resumable partial file).
    """
    jobs = sorted(jobs, key=lambda j: j.index)
    base_dict = base.flat()
    tasks = [Task(f"cart-abm-patient-{job.index}-{job.seed}", run_patient, (job, base_dict),
                  label=f"patient {job.index} (seed {job.seed})") for job in jobs]
    return run_tasks(tasks, workers=workers, scheduler=scheduler, progress=progress, unit="patient",
                     on_result=None if on_result is None else lambda _, row: on_result(row))


def run_on_dask(address: str, calls: list[tuple[str, Callable[..., Any], tuple[Any, ...]]],
                collect: Callable[[int, Any], None]) -> None:
    """Run ``fn(*args)`` for each ``(key, fn, args)`` on the Dask scheduler at ``address``.

    ``collect(i, result)`` is called in this process as call ``i`` finishes
    (in completion order; callers order the results). ``fn`` must be importable
    on the workers (a function of the installed ``abm`` package). A task whose
    worker dies is rescheduled by Dask on another worker (the scheduler's
    ``allowed-failures``); an error raised by ``fn`` is raised here.
    """
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError:  # pragma: no cover - distributed is a dependency
        raise ParamError("--scheduler needs the 'distributed' package: pip install distributed") from None
    try:
        client = Client(address, timeout="10s")
    except OSError as exc:
        raise ParamError(f"--scheduler {address!r}: cannot reach a Dask scheduler ({exc})") from None
    futures: dict[Any, int] = {}
    try:
        futures = {client.submit(fn, *args, key=key, pure=False): i for i, (key, fn, args) in enumerate(calls)}
        for future in dask_completed(list(futures)):
            collect(futures[future], future.result())
    except BaseException:
        client.cancel(list(futures))  # interrupted or failed: the cluster drops what is left of this ensemble
        raise
    finally:
        client.close()


def run_condition(params_overrides: dict[str, Any], seed: int, days: float, backend: str = "cpu",
                  series: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run the default patient with ``params_overrides`` for ``days`` and return its outcomes.

    Returns the :func:`abm.outcomes.summarize` dict (``wall_s`` is the
    simulation time of this run; ``cpu_s`` its CPU time, which other load on
    the machine does not inflate) plus ``overrides`` (a copy of
    ``params_overrides``), ``window_sites`` (sites of the window that can hold
    a cell) and ``series`` (``{"day": [...], name: [...]}`` for each observable
    in ``series`` that the run records). One Numba thread on ``cpu``; picklable
    arguments, so it runs in worker processes and on Dask workers (the
    experiment scripts' unit of work, see ``experiments/common.py``).
    """
    import time

    from abm.model import MarrowModel
    from abm.outcomes import summarize

    params = Params.default().replace({**params_overrides, "time.days": float(days)})
    started, cpu = time.perf_counter(), time.process_time()
    model = MarrowModel(params, seed=int(seed), backend=backend, threads=1 if backend == "cpu" else None)
    model.run()
    wall = time.perf_counter() - started
    out = summarize(model, wall_s=wall)
    out["cpu_s"] = round(time.process_time() - cpu, 3)
    p = model.params
    out["window_sites"] = int(round(model.body.window_share * p.patient.marrow_cells_per_kg * p.patient.weight_kg))
    out["overrides"] = dict(params_overrides)
    df = model.datacollector.get_model_vars_dataframe()
    out["series"] = {name: df[name].astype(float).tolist() for name in ("day", *series) if name in df.columns}
    return out


# -- trial folders ---------------------------------------------------------------------------------
def read_partial(folder: Path) -> dict[int, dict[str, Any]]:
    """Rows of patients already finished in ``folder`` (a torn last line is ignored)."""
    return {int(row["patient"]): row for row in read_journal(Path(folder) / PARTIAL)}


def appender(folder: Path) -> Callable[[dict[str, Any]], None]:
    """A callback that appends one finished patient to the partial file, durably."""
    path = Path(folder) / PARTIAL
    return lambda row: append_journal(path, row)


# -- summary statistics ----------------------------------------------------------------------------
def trial_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rates with Wilson 95 % intervals, as ``cart-abm trial`` writes them."""
    relapses = [r for r in rows if r.get("relapse")]
    return {
        "n": len(rows),
        "cr_rate": rate(rows, lambda r: r.get("cr_day28")),
        "mrd_negative_rate": rate(rows, lambda r: r.get("mrd_negative_day28")),
        "crs_any_rate": rate(rows, grade_at_least("crs_max_grade", 1)),
        "crs_grade3plus_rate": rate(rows, grade_at_least("crs_max_grade", 3)),
        "icans_any_rate": rate(rows, grade_at_least("icans_max_grade", 1)),
        "icans_grade3plus_rate": rate(rows, grade_at_least("icans_max_grade", 3)),
        "relapse_rate": rate(rows, lambda r: r.get("relapse")),  # None (never in CR) is left out
        "antigen_negative_relapse_fraction": rate(relapses, lambda r: r.get("relapse_antigen_negative")),
        # relapses by escape route (issue 28), each with its share of the relapses and its Wilson interval
        "relapse_routes": {route: rate(relapses, lambda r, route=route: r.get("relapse_route") == route)
                           for route in RELAPSE_ROUTES},
    }
