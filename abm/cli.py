"""Command line: cart-abm run | resume | trial | animate | view | params | experiment | bench.

Exit status: 0 success; 2 bad input (unknown key, wrong type, out of range,
malformed file, unusable backend, an ``--out`` that holds an earlier output
without ``--force`` or cannot be written), with one message naming the
option or field, the value and what is allowed, and no output folder; 1 a
run that failed; 128 + the signal's number after Ctrl-C (130), SIGTERM (143)
or SIGHUP (129), with the folder marked ``interrupted``.
``experiment`` and ``bench`` are registered by the experiments and benchmarks
packages (:func:`command_plugins`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

import abm
from abm import folders, signals, warmup
from abm.errors import CartAbmError, ParamError, SimulationError
from abm.params import Params
from kernels import BACKENDS, BackendError

DEFAULT_SNAPSHOT_MIN = 360.0
ANNOUNCE_MEMORY_BYTES = 300 * 10**6  # a run estimated this far above the fixed baseline says what it will use
COMMAND_GROUP = "cart_abm.commands"  # entry-point group of subcommands registered by other packages
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(min|m|h|d)?\s*$")


def parse_duration_min(text: str) -> float:
    """``"30"``, ``"30min"``, ``"6h"``, ``"1d"`` -> minutes (a bare number is minutes)."""
    match = _DURATION.match(text)
    if not match:
        raise ParamError(f"--snapshot-every = {text!r}: expected a duration such as 30min, 6h or 1d")
    value = float(match.group(1))
    unit = match.group(2) or "min"
    minutes = value * {"min": 1.0, "m": 1.0, "h": 60.0, "d": 1440.0}[unit]
    if minutes <= 0:
        raise ParamError(f"--snapshot-every = {text!r}: expected a positive duration")
    return minutes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cart-abm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"cart-abm {abm.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="simulate one patient and write summary, time series, plots")
    run.add_argument("--config", type=Path, help="TOML parameter file")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                     help="override one parameter (TOML value; repeatable)")
    run.add_argument("--days", type=float, help="run length in days (sets time.days)")
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument("--backend", choices=BACKENDS, default="auto")
    run.add_argument("--threads", type=int, help="CPU threads for the cpu backend (default: all)")
    run.add_argument("--out", type=Path, default=Path("cart-abm-run"),
                     help="output folder, new or empty (default ./cart-abm-run)")
    run.add_argument("--force", action="store_true",
                     help="replace an earlier cart-abm output in --out (swapped in when the new run is complete)")
    run.add_argument("--animate", action="store_true", help="also write marrow.gif")
    run.add_argument("--snapshot-every", metavar="DURATION",
                     help="keep a lattice snapshot this often, e.g. 30min, 6h (default 6h with --animate)")
    run.add_argument("--checkpoint-every", type=float, metavar="DAYS",
                     help="write DIR/checkpoint.npz this often (simulated days) so the run can be resumed")
    run.add_argument("--check-invariants", action="store_true",
                     help="verify the lattice invariants after every step (slow; stops with the step and cause)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    resume = sub.add_parser("resume", help="continue a run from DIR/checkpoint.npz")
    resume.add_argument("dir", type=Path, help="run folder written with --checkpoint-every")
    resume.add_argument("--days", type=float, help="new total length in days (default: the run's own)")
    resume.add_argument("--backend", choices=BACKENDS, default="auto")
    resume.add_argument("--threads", type=int, help="CPU threads for the cpu backend (default: all)")
    resume.add_argument("--check-invariants", action="store_true", help="verify the lattice invariants every step")
    resume.add_argument("--quiet", action="store_true", help="no progress bar")
    trial = sub.add_parser("trial", help="a virtual clinical trial: N patients from the ELIANA-like cohort")
    trial.add_argument("--n", type=int, required=True, help="number of virtual patients")
    trial.add_argument("--config", type=Path, help="TOML parameter file (the base every patient starts from)")
    trial.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                       help="fix a parameter for every patient, overriding the cohort's distribution (repeatable)")
    trial.add_argument("--days", type=float, help="days per patient (sets time.days)")
    trial.add_argument("--seed", type=int, default=0, help="cohort seed (patient seeds derive from it)")
    where = trial.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="run on an existing Dask scheduler, e.g. tcp://host:8786")
    trial.add_argument("--out", type=Path, required=True, help="trial folder (an unfinished one is resumed)")
    trial.add_argument("--force", action="store_true",
                       help="replace an earlier cart-abm output in --out (swapped in when the trial is complete)")
    trial.add_argument("--quiet", action="store_true", help="no progress bar")
    animate = sub.add_parser("animate", help="animate a finished run from its snapshots.npz")
    animate.add_argument("dir", type=Path, help="run folder written with --animate or --snapshot-every")
    animate.add_argument("--format", dest="fmt", choices=("gif", "mp4"), default="gif")
    animate.add_argument("--fps", type=float, default=8.0, help="frames per second (default 8)")
    animate.add_argument("--field", choices=("il6", "none"), default="il6", help="overlay the IL-6 field or nothing")
    animate.add_argument("--out", type=Path, help="output file (default DIR/marrow.gif or DIR/marrow.mp4)")
    animate.add_argument("--zoom", type=int, help="pixels per site edge (default: the map at least 400 px wide)")
    animate.add_argument("--quiet", action="store_true", help="no progress bar")
    listing = sub.add_parser("params", help="list the parameters: key, default, unit, allowed values")
    listing.add_argument("words", nargs="*", metavar="WORD",
                         help="only keys or descriptions containing every WORD (case-insensitive)")
    listing.add_argument("--sources", action="store_true", help="also print each parameter's description and source")
    view = sub.add_parser("view", help="interactive marrow page in the browser (needs the viz extra)")
    view.add_argument("--port", type=int, default=8765)
    view.add_argument("--host", default="127.0.0.1")
    view.add_argument("--open", action="store_true", help="open a browser tab")
    for parser_, handler in ((run, command_run), (resume, command_resume), (trial, command_trial),
                             (animate, command_animate), (listing, command_params), (view, command_view)):
        parser_.set_defaults(handler=handler)  # every subcommand, built in or registered, dispatches the same way
    for register in command_plugins():
        register(sub)
    return parser


def command_plugins() -> list:
    """The ``register(subparsers)`` functions other packages add as entry points in :data:`COMMAND_GROUP`.

    ``cart-abm experiment`` (:mod:`experiments.cli`) and ``cart-abm bench``
    (:mod:`benchmarks.cli`) come in this way, so ``abm`` never imports the
    packages that build on it. Each registered subparser sets ``handler``, a
    function of the parsed arguments that returns the exit status. A plugin
    whose package cannot be imported is left out (its command is then
    unknown), not an error of every other command.
    """
    from importlib.metadata import entry_points

    plugins = []
    for point in sorted(entry_points(group=COMMAND_GROUP), key=lambda p: p.name):
        try:
            plugins.append(point.load())
        except ImportError:
            continue
    return plugins


def command_trial(args: argparse.Namespace) -> int:
    from abm import cohort, io
    from abm.outcomes import RESPONSE_DAY
    from abm.params import parse_assignment

    base = Params.from_toml(args.config) if args.config else Params.default()
    if args.days is not None:
        base = base.replace({"time.days": args.days})
    if args.workers < 1:
        raise ParamError(f"--workers = {args.workers}: expected at least 1")
    if not 0 <= args.seed < 2**63:
        raise ParamError(f"--seed = {args.seed}: expected an integer in [0, 2**63)")
    fixed = dict(parse_assignment(a) for a in args.overrides)
    jobs = cohort.sample_cohort(args.n, args.seed, base, fixed)
    spec = {"n": args.n, "seed": args.seed, "fixed": fixed, "base": base.flat(), "profile": "eliana",
            "model": io.model_fingerprint()}
    destination = Path(args.out).absolute()
    folders.check_writable(destination, "--out")

    def unfinished(folder: Path) -> bool:
        return (folder / folders.TRIAL_SPEC).is_file() and folders.status_state(folder) != "complete"

    def same_settings(folder: Path) -> bool:
        previous = json.loads((folder / folders.TRIAL_SPEC).read_text(encoding="utf-8"))
        return previous == json.loads(json.dumps(spec))

    if unfinished(destination) and (same_settings(destination) or not args.force):
        if not same_settings(destination):
            raise ParamError(f"--out {str(destination)!r} holds an unfinished trial with other settings or another "
                             "version of the model; repeat its settings to resume it, choose another --out, or "
                             "pass --force to replace it")
        out = folders.Output(destination, destination)  # resumed in place, --force or not: the results are the same
    else:
        out = folders.plan_output(destination, force=args.force)
        if not (out.staged and unfinished(out.path) and same_settings(out.path)):  # else resume the replacement
            io.write_json(folders.create_output(out) / folders.TRIAL_SPEC, spec)
    folder = out.path
    done = cohort.read_partial(folder)
    todo = [job for job in jobs if job.index not in done]
    folders.remove_temporaries(folder)
    resume = "rerun the same command" + (" (with --force)" if out.staged else "") + " to resume"
    io.write_status(folder, "running", patients_done=len(done), patients=args.n)
    started = time.perf_counter()
    try:
        if todo and args.scheduler is None:
            warmup.warm_up_cold_kernels(base)  # once here, so the workers load the compiled step from the cache
        new = cohort.run_ensemble(todo, base, workers=args.workers, scheduler=args.scheduler,
                                  progress=not args.quiet, on_result=cohort.appender(folder))
    except KeyboardInterrupt as exc:
        name = signals.signal_name(exc)
        io.write_status(folder, "interrupted", signal=name, patients_done=len(cohort.read_partial(folder)),
                        patients=args.n, reason=f"stopped by {name}; {resume}")
        exc.hint = f"{folder} is marked 'interrupted'; {resume}"
        raise
    except Exception as exc:
        io.write_status(folder, "failed", reason=f"{type(exc).__name__}: {exc}; {resume}")
        raise
    rows = sorted([*done.values(), *new], key=lambda r: r["patient"])
    import pandas as pd

    io.write_text(folder / "patients.csv", pd.DataFrame(rows).to_csv(index=False))
    summary = {**cohort.trial_summary(rows), "version": abm.__version__, "seed": args.seed,
               "days": base["time.days"], "fixed": fixed, "profile": "eliana"}
    io.write_json(folder / "summary.json", summary)
    io.write_status(folder, "complete", patients=args.n, wall_s=round(time.perf_counter() - started, 3))
    (folder / cohort.PARTIAL).unlink(missing_ok=True)  # patients.csv holds every row now
    folder = folders.commit_output(out)
    cr = summary["cr_rate"]["rate"]
    if cr is not None:
        cr_text = f"CR rate {round(cr, 3)}"
    elif base["time.days"] < RESPONSE_DAY:
        cr_text = f"CR rate n/a (runs shorter than {RESPONSE_DAY:g} days)"
    else:
        cr_text = "CR rate n/a"
    print(f"cart-abm: wrote {folder} ({args.n} patients; {cr_text})")
    return 0


def command_animate(args: argparse.Namespace) -> int:
    from abm import viz

    run_dir = Path(args.dir)
    target = Path(args.out) if args.out is not None else run_dir / f"marrow.{args.fmt}"
    option = "--out" if args.out is not None else "DIR"
    if args.out is not None and target.is_dir():
        raise ParamError(f"--out {str(target)!r}: is a folder; expected a file name ending in .{args.fmt}")
    if args.out is not None and not target.parent.is_dir():
        raise ParamError(f"--out {str(target)!r}: the folder {str(target.parent)!r} does not exist "
                         "(or is not a folder); create it first or choose another --out")
    if target.parent.is_dir():
        _check_can_write_in(target.parent, target, option)
    try:
        path = viz.animate_run(args.dir, fmt=args.fmt, fps=args.fps, field=args.field, out=args.out,
                               progress=not args.quiet, zoom=args.zoom)
    except (ValueError, RuntimeError) as exc:
        raise ParamError(str(exc)) from None
    except OSError as exc:
        if exc.filename is None or Path(exc.filename).parent != target.parent:
            raise
        raise ParamError(f"{option} {str(target)!r}: cannot write it ({exc.strerror or exc})") from None
    print(f"cart-abm: wrote {path}")
    return 0


def _check_can_write_in(folder: Path, target: Path, option: str) -> None:
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(prefix=".cart-abm-probe-", dir=folder)
    except OSError as exc:
        raise ParamError(f"{option} {str(target)!r}: cannot write in {str(folder)!r} ({exc.strerror or exc}); "
                         "choose a folder you can write to") from None
    os.close(fd)
    os.unlink(probe)


def command_params(args: argparse.Namespace) -> int:
    """Print every parameter (or those matching all ``args.words``): key, default, unit, allowed values."""
    from abm.params import SCHEMA

    words = [w.lower() for w in args.words]
    shown = [p for p in SCHEMA if all(w in f"{p.key} {p.description}".lower() for w in words)]
    if not shown:
        raise ParamError(f"no parameter matches {' '.join(args.words)!r}; `cart-abm params` lists all {len(SCHEMA)}")
    width = max(len(p.key) for p in shown)
    for p in shown:
        print(f"{p.key:<{width}}  {p.default!r}  ({p.allowed()})")
        if args.sources:
            print(f"{'':<{width}}  {p.description}\n{'':<{width}}  source: {p.source}")
    return 0


def command_view(args: argparse.Namespace) -> int:
    try:
        from abm import viewer
    except ImportError as exc:
        raise ParamError(str(exc)) from None
    if not 0 < args.port < 65536:
        raise ParamError(f"--port = {args.port}: expected 1-65535")
    return viewer.serve(port=args.port, host=args.host, open_browser=args.open)


def resolve_params(args: argparse.Namespace) -> Params:
    params = Params.from_toml(args.config) if args.config else Params.default()
    params = params.with_overrides(args.overrides)
    if args.days is not None:
        params = params.replace({"time.days": args.days})
    return params


def check_memory(params: Params, snapshot_every_min: float | None) -> int:
    """Refuse, before anything is allocated, a run this machine cannot hold; announce a large one.

    :func:`abm.resources.check_run_memory` raises the ``ParamError`` (exit
    status 2) and returns the estimate [B], which this returns. "Large" is
    more than :data:`ANNOUNCE_MEMORY_BYTES` above the fixed cost of Python,
    the libraries and Numba (``abm.resources.BASELINE_BYTES``), which every
    run pays.
    """
    from abm import resources

    estimate = resources.check_run_memory(params, snapshots=resources.snapshot_count(params, snapshot_every_min))
    if estimate - resources.BASELINE_BYTES > ANNOUNCE_MEMORY_BYTES:
        print(f"cart-abm: this run will use about {estimate / 1e6:,.0f} MB", file=sys.stderr, flush=True)
    return estimate


def command_run(args: argparse.Namespace) -> int:
    from abm import io
    from abm.model import MarrowModel

    params = resolve_params(args)
    if not 0 <= args.seed < 2**63:
        raise ParamError(f"--seed = {args.seed}: expected an integer in [0, 2**63)")
    if args.threads is not None and args.threads < 1:
        raise ParamError(f"--threads = {args.threads}: expected an integer >= 1")
    check_checkpoint_every(args.checkpoint_every)
    snapshot_min = parse_duration_min(args.snapshot_every) if args.snapshot_every else None
    if args.animate and snapshot_min is None:
        snapshot_min = DEFAULT_SNAPSHOT_MIN
    if snapshot_min is not None and snapshot_min < params.time.dt_min:
        raise ParamError(f"--snapshot-every = {args.snapshot_every}: expected at least time.dt_min "
                         f"({params.time.dt_min:g} min)")
    out = folders.plan_output(args.out, force=args.force)  # before anything is built or simulated
    check_memory(params, snapshot_min)
    model = MarrowModel(params, seed=args.seed, backend=args.backend, threads=args.threads,
                        snapshot_every_min=snapshot_min, check_invariants=args.check_invariants)
    folder = folders.create_output(out)
    io.write_text(folder / "params.toml", params.to_toml())
    options = {"checkpoint_every_days": args.checkpoint_every, "animate": args.animate}
    if out.staged:
        options["replaces"] = str(out.destination)
    return simulate(model, folder, options, progress=not args.quiet)


def command_resume(args: argparse.Namespace) -> int:
    from abm import io
    from abm.model import MarrowModel

    folder = Path(args.dir)
    status = io.read_status(folder)
    if folders.folder_kind(folder) != "run":
        raise ParamError(f"{str(folder)!r} is not a cart-abm run folder (cart-abm resume continues runs; rerun "
                         "the same cart-abm trial command to resume a trial)")
    if status.get("state") == "complete" and args.days is None:
        raise ParamError(f"{str(folder)!r} is a complete run; give --days N to extend it")
    folders.remove_temporaries(folder)
    params = Params.from_toml(folder / "params.toml")
    arrays, meta = io.read_checkpoint(folder)
    done_days = meta["lattice_step"] * params.time.dt_min / 1440.0
    if args.days is not None:
        if args.days < done_days:
            raise ParamError(f"--days = {args.days:g}: expected at least the {done_days:g} days already simulated")
        params = params.replace({"time.days": args.days})
    every = meta.get("snapshot_every")
    check_memory(params, None if every is None else every * params.time.dt_min)
    model = MarrowModel.from_checkpoint(params, arrays, meta, backend=args.backend, threads=args.threads)
    model.check_invariants_each_step = args.check_invariants
    io.write_text(folder / "params.toml", params.to_toml())
    options = {"checkpoint_every_days": status.get("checkpoint_every_days"), "animate": status.get("animate", False),
               "resumed_from_day": done_days}
    if status.get("replaces"):
        options["replaces"] = status["replaces"]  # a --force replacement, swapped in once it is complete
    return simulate(model, folder, options, progress=not args.quiet, checkpoint_day=done_days)


def check_checkpoint_every(days: float | None) -> None:
    if days is not None and not (days > 0 and math.isfinite(days)):
        raise ParamError(f"--checkpoint-every = {days}: expected a positive number of days")


def simulate(model, folder: Path, options: dict, progress: bool, checkpoint_day: float | None = None) -> int:
    """Run ``model`` to its end in ``folder``, checkpointing as asked, then write every output.

    ``status.json`` says ``running`` during the run, with ``day``, ``step``,
    ``total_steps`` and ``percent`` brought up to date at every observation
    (also without a progress bar), ``complete`` after the last output
    (``summary.json``) is in place, and ``failed`` or ``interrupted`` (with
    the reason, the signal and the last checkpoint day) otherwise. Every run
    ends with a ``checkpoint.npz``, so ``cart-abm resume DIR --days N`` can
    extend it. ``options["replaces"]`` names the folder a ``--force`` run
    replaces once it is complete (:func:`abm.folders.replace_folder`).
    """
    from abm import io

    every = options.get("checkpoint_every_days")
    replaces = options.get("replaces")
    clock = {"next": model.day + every if every else math.inf, "checkpoint_day": checkpoint_day}

    def status(state: str, **extra) -> None:
        done = {"day": round(model.day, 6), "step": model.lattice_step, "total_steps": model.total_steps,
                "percent": round(100.0 * model.lattice_step / max(model.total_steps, 1), 2)}
        if clock["checkpoint_day"] is not None:
            done["checkpoint_day"] = clock["checkpoint_day"]
        io.write_status(folder, state, **options, **done, **extra)

    def after_step(m) -> None:
        if m.running and m.day >= clock["next"] - 1e-9:
            io.write_checkpoint(folder, m.checkpoint())
            clock["checkpoint_day"] = m.day
            clock["next"] = m.day + every
        status("running")

    try:
        status("running")
        warmup.warm_up_kernels(model)  # before the progress bar, so that its ETA leaves the compilation out
        started = time.perf_counter()
        model.run(progress=progress, after_step=after_step)
        wall = time.perf_counter() - started
        io.write_checkpoint(folder, model.checkpoint())  # every finished run can be extended with resume --days
        clock["checkpoint_day"] = model.day
        write_outputs(model, folder, wall, animate=options.get("animate", False), progress=progress)
        folders.remove_temporaries(folder)
    except KeyboardInterrupt as exc:
        name = signals.signal_name(exc)
        day = clock["checkpoint_day"]
        if day is not None:
            hint = f"`cart-abm resume {folder}` continues from day {day:g}"
        else:
            hint = "no checkpoint was written yet (--checkpoint-every DAYS makes a run resumable)"
        status("interrupted", signal=name, reason=f"stopped by {name}; {hint}")
        exc.hint = f"{folder} is marked 'interrupted'; {hint}"
        raise
    except Exception as exc:
        status("failed", reason=f"{type(exc).__name__}: {exc}")
        raise
    options.pop("replaces", None)
    status("complete")
    if replaces:
        folder = folders.commit_output(folders.Output(Path(replaces), Path(folder)))
    print(f"cart-abm: wrote {folder} ({wall:.1f} s, {model.lattice_step} steps on {model.backend})")
    return 0


def write_outputs(model, folder: Path, wall: float, animate: bool, progress: bool) -> None:
    """Every output file of a finished run; ``summary.json`` last."""
    from abm import io, viz
    from abm.outcomes import summarize

    params = model.params
    summary = summarize(model, wall_s=wall)
    df = model.datacollector.get_model_vars_dataframe()
    io.write_text(folder / "timeseries.csv", df.to_csv(index=False))
    s = model.state
    io.write_npz(
        folder / "final_state.npz",
        {**s.arrays(), "trait_names": np.array(_trait_names()), "dt_min": model.dt_min, "site_um": params.grid.site_um,
         "coarsen": params.grid.coarsen, "field_quantum": _field_quantum(), "lattice_step": model.lattice_step,
         "seed": model.seed},
    )
    viz.plot_timecourse(df, folder / "timecourse.png", title=f"cart-abm seed {model.seed}")
    if model.snapshots:
        io.write_npz(
            folder / "snapshots.npz",
            {"day": np.array([f["day"] for f in model.snapshots]),
             "view": np.stack([f["view"] for f in model.snapshots]),
             "il6": np.stack([f["il6"] for f in model.snapshots]), "site_um": params.grid.site_um},
        )
    if animate:
        viz.write_gif(model.snapshots, folder / "marrow.gif", site_um=params.grid.site_um, timecourse=df,
                      progress=progress)
    io.write_json(folder / "summary.json", summary)


def _trait_names() -> list[str]:
    from kernels import layout

    return list(layout.TRAIT_NAMES)


def _field_quantum() -> float:
    from kernels import QUANTUM

    return QUANTUM


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with signals.stop_on_signals():
            return args.handler(args)
    except (ParamError, BackendError, FileExistsError, FileNotFoundError) as exc:
        print(f"cart-abm: error: {exc}", file=sys.stderr)
        return 2
    except (SimulationError, CartAbmError) as exc:
        print(f"cart-abm: run failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        hint = getattr(exc, "hint", None)
        print(f"cart-abm: stopped by {signals.signal_name(exc)}" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 128 + signals.signal_number(exc)


if __name__ == "__main__":
    sys.exit(main())
