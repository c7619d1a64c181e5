"""Calibrate the uncertain parameters to the clinical targets; write ``abm/calibrated.toml``.

Method: Optuna's TPE sampler (multivariate, seeded) minimises
:func:`abm.calibration.loss` over the ranges of :data:`abm.calibration.PRIORS`.
Each trial simulates the same ELIANA-like virtual cohort (``--n`` patients from
``abm.cohort.sample_cohort`` with cohort seed ``--seed``: common random
numbers, so two trials differ by their parameters, not by their patients) for
28 days and scores the cohort's rates against the target bands. The first
trial is the sourced defaults (before any calibration) and the second the
current defaults (the previous calibration, when there is one), so the result
can only improve on both.

Cost and the window: a trial at the default 400 x 400 window costs ~35 s per
patient-core; the search runs at ``--grid`` (default 200 x 200, ~4x cheaper)
and ``experiments/calibration_report.py`` checks the fitted values on 100+
patients at the default window. ``window_convergence`` shows what 200 x 200
changes (CAR-T density ~15 % high), so the report, not the search, is the
evidence.

The study is stored in ``--out/study.journal`` (Optuna's journal file), so an
interrupted calibration resumes where it stopped: run the same command again.

``--only KEY,KEY,...`` searches a subset of the fitted keys, keeping the others
at the current calibration (its first trial), e.g. the CRS and ICANS keys on a
28-day cohort after a year-long relapse profile. ``--targets KEY,KEY,...``
scores only those targets (:data:`abm.calibration.TARGETS` keys; all are still
measured and written), so that such a subset is fitted to the data that inform
it: a miss it cannot change (MRD-negativity among CR at day 28, set by the
window's CAR-T search) would otherwise outweigh them through the noise of a
few patients.

A profile (``--profile KEY=V1,V2,...``) is a one-parameter step after a search:
the current calibration is evaluated on the same cohort with the fitted ``KEY``
set to each value in turn, and the value with the lowest loss is written
(every other value kept), with the scan in ``--out/profile-KEY.json``. It is
how a parameter newly added to :data:`abm.calibration.PRIORS` enters the
calibration without a new search over all of them; the next full search
refits it jointly. Repeating ``--profile`` scans the grid of all combinations
of two or more keys that act together (``profile-KEY1+KEY2.json``).

    python -m experiments.calibrate --trials 30 --n 24 --workers 2
    python -m experiments.calibrate --profile cart.chemotaxis_bias=0,0.05,0.1,0.2 --n 20 --workers 2
    python -m experiments.calibrate --profile relapse.reservoir_kill_per_day=0.0005,0.02 \
        --profile blast.cd19_loss_per_division=1e-9,2.4e-6 --n 12 --days 365 --workers 2
    python -m experiments.calibrate --only serum.il6_production_pg_ml_per_day,crs.grade3_il6_pg_ml --trials 20
    python -m experiments.calibrate --profile serum.il6_production_pg_ml_per_day=125,150,175 \
        --targets crs_any_rate,crs_grade3plus_rate,crs_onset_median_day --n 24 --workers 2
    python -m experiments.calibrate --smoke          # seconds; writes to a temporary folder
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from abm.calibration import PRIOR_BY_KEY, PRIORS, TARGET_BY_KEY, TARGETS, Prior, loss, measure
from abm.errors import ParamError
from abm.io import write_json, write_text
from abm.params import CALIBRATED_TOML, UNCALIBRATED_DEFAULTS, Params


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m experiments.calibrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, help="parameter sets to try, the defaults included (30; smoke 2)")
    p.add_argument("--n", type=int, help="virtual patients per trial (24; smoke 2)")
    p.add_argument("--seed", type=int, default=2018, help="cohort seed (patients and their seeds) and sampler seed")
    p.add_argument("--grid", type=int, default=200, help="window side during the search (200)")
    p.add_argument("--days", type=float, default=28.0, help="simulated days per patient (28)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes")
    p.add_argument("--scheduler", help="address of a Dask scheduler (instead of local workers)")
    p.add_argument("--out", type=Path, help="study folder (default experiments/results/calibration)")
    p.add_argument("--write", type=Path, default=CALIBRATED_TOML,
                   help="where to write the calibrated values (default abm/calibrated.toml)")
    p.add_argument("--profile", metavar="KEY=V1,V2,...", action="append",
                   help="instead of a search: the current calibration with one fitted KEY at each value (same "
                        "cohort); writes the best value; repeat it for the grid over several keys")
    p.add_argument("--only", metavar="KEY,KEY,...",
                   help="search only these fitted keys, keeping the others at the current calibration (a refit of "
                        "the keys a shorter cohort measures, e.g. the CRS and ICANS ones with --days 28)")
    p.add_argument("--targets", metavar="KEY,KEY,...",
                   help="score only these targets (abm.calibration.TARGETS keys; all are still measured), e.g. the "
                        "toxicity targets when fitting the IL-6 keys")
    p.add_argument("--smoke", action="store_true", help="2 trials of 2 patients, 32^2 window, 1 day; temp folder")
    return p


def uncalibrated_defaults() -> dict[str, float]:
    """The schema's sourced defaults of the fitted keys, clipped into their ranges (the first trial)."""
    return {p.key: _clip(p, UNCALIBRATED_DEFAULTS[p.key]) for p in PRIORS}


def current_defaults() -> dict[str, float]:
    """The fitted keys' current defaults (a previous calibration, if any), clipped into their ranges."""
    defaults = Params.default()
    return {p.key: _clip(p, defaults[p.key]) for p in PRIORS}


def _clip(prior: Prior, value: float) -> float | int:
    """``value`` within the prior's range (a whole number for an integer prior)."""
    clipped = min(max(float(value), prior.low), prior.high)
    return int(round(clipped)) if prior.integer else clipped


def evaluate(values: dict[str, float], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Simulate the calibration cohort with ``values``; one row per patient."""
    from abm.cohort import run_ensemble, sample_cohort

    base = Params.default().replace({**values, "grid.size": args.grid, "time.days": args.days})
    jobs = sample_cohort(args.n, args.seed, base, days=args.days)
    return run_ensemble(jobs, base, workers=args.workers, scheduler=args.scheduler)


def toml_text(values: dict[str, float], method: str, best_number: int, best_loss: float,
              measured: dict[str, Any], args: argparse.Namespace, study_trials: int, trial_s: float,
              history: list[str] | None = None) -> str:
    """``abm/calibrated.toml``: the values, their ranges and sources, and how well they fit.

    ``history``: the earlier calibration steps this one started from, oldest first (a profile keeps
    every value but the scanned ones from the calibration before it).
    """
    lines = [
        "# Calibrated parameter values: the defaults of abm.params.Params (see abm/calibration.py).",
        "# Written by `python -m experiments.calibrate`; change it only by rerunning the calibration.",
        "",
        "[calibration]",
        f"method = {json.dumps(method)}",
        f"trials = {study_trials}",
        f"best_trial = {best_number}",
        f"loss = {best_loss:.6g}",
        f"patients_per_trial = {args.n}",
        f"cohort_seed = {args.seed}",
        f"grid_size = {args.grid}",
        f"days = {args.days:g}",
        f'date = "{datetime.now(UTC).date().isoformat()}"',
        f"trial_wall_s_total = {trial_s:.0f}",
        f"history = {json.dumps(history or [])}",
        "",
        "[values]",
    ]
    for p in PRIORS:
        lines.append(f'"{p.key}" = {_round(values[p.key])}')
    lines += ["", "# range searched and its source, per key"]
    for p in PRIORS:
        lines += ["", f'[ranges."{p.key}"]', f"low = {p.low:g}", f"high = {p.high:g}",
                  f"log = {str(p.log).lower()}", f"source = {json.dumps(p.source)}"]
    lines += ["", "# the calibration cohort's value of each target it measures at the best trial (band: low-high;",
              "# the targets beyond its follow-up are left out)"]
    for t in TARGETS:
        if t.key not in measured:
            continue
        m = measured[t.key]
        value = "nan" if m.get("value") is None else f"{m['value']:.4g}"
        lines += ["", f"[fit.{t.key}]", f"value = {value}", f"n = {m.get('n', 0)}", f"low = {t.low:g}",
                  f"high = {t.high:g}", f"miss = {m.get('miss', float('nan')):.3g}"]
    return "\n".join(lines) + "\n"


def _round(x: float | int) -> str:
    return str(x) if isinstance(x, int) else f"{float(f'{x:.4g}')!r}"


def _optuna_version() -> str:
    import optuna

    return optuna.__version__


def parse_profile(text: str) -> tuple[str, list[float | int]]:
    """``KEY=V1,V2,...`` -> the fitted key and its values (checked against the key's range)."""
    key, sep, listed = text.partition("=")
    prior = PRIOR_BY_KEY.get(key.strip())
    if not sep or prior is None:
        raise ValueError(f"{text!r}: expected KEY=V1,V2,... with KEY one of the fitted parameters "
                         f"({', '.join(PRIOR_BY_KEY)})")
    try:
        values = [float(v) for v in listed.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{listed!r}: expected comma-separated numbers") from None
    if not values:
        raise ValueError(f"{text!r}: no values")
    for v in values:
        if not prior.low <= v <= prior.high:
            raise ValueError(f"{prior.key} = {v:g}: outside its range [{prior.low:g}, {prior.high:g}]")
    return prior.key, [_clip(prior, v) for v in values]


def run_profile(grid: list[tuple[str, list[float | int]]], args: argparse.Namespace, out: Path) -> int:
    """Evaluate the current calibration at each combination of the ``grid``'s values; write the best.

    ``grid`` holds (key, values) pairs (see the module docstring); each scan entry has the combination
    (``values``; ``value`` too for a one-key profile), its loss and the measured targets.
    """
    keys = [key for key, _ in grid]
    base = current_defaults()
    history = _history()
    scan = []
    start = time.perf_counter()
    for combo in itertools.product(*(values for _, values in grid)):
        point = dict(zip(keys, combo, strict=True))
        rows = evaluate({**base, **point}, args)
        scan.append({**({"value": combo[0]} if len(keys) == 1 else {}), "values": point,
                     "loss": loss(rows, args.target_keys),
                     "measured": measure(rows)})
        text = ", ".join(f"{k} = {v:g}" for k, v in point.items())
        print(f"{text}: loss {scan[-1]['loss']:.4g}", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - start
    best = min(range(len(scan)), key=lambda k: scan[k]["loss"])
    out.mkdir(parents=True, exist_ok=True)
    name = f"profile-{'+'.join(keys)}.json"
    settings = {"n": args.n, "seed": args.seed, "grid": args.grid, "days": args.days,
                "targets": args.target_keys}
    write_json(out / name, {"key": keys[0] if len(keys) == 1 else keys, "base": base, "history": history,
                            "settings": settings, "wall_s": round(elapsed, 1), "scan": scan})
    values_out = {**base, **scan[best]["values"]}
    over = " x ".join(f"{key} over {', '.join(f'{v:g}' for v in values)}" for key, values in grid)
    method = (f"profile of {over} (lowest abm.calibration.loss{_over_targets(args)}) at the other values of the "
              "previous calibration")
    write_text(args.write, toml_text(values_out, method, best, scan[best]["loss"], scan[best]["measured"], args,
                                     len(scan), elapsed, history))
    chosen = ", ".join(f"{k} = {v:g}" for k, v in scan[best]["values"].items())
    print(f"best {chosen}: loss {scan[best]['loss']:.4g}; wrote {args.write} and {out / name}", file=sys.stderr)
    return 0


def _over_targets(args: argparse.Namespace) -> str:
    """`` over TARGET, ...`` for a loss restricted by ``--targets`` (empty for all targets)."""
    return f" over {', '.join(args.target_keys)}" if args.target_keys else ""


def _history() -> list[str]:
    """The current calibration file's steps, oldest first, ending with its own method, loss and date."""
    import tomllib

    if not CALIBRATED_TOML.exists():
        return ["the sourced defaults"]
    with open(CALIBRATED_TOML, "rb") as fh:
        head = tomllib.load(fh).get("calibration", {})
    this = (f"{head.get('method', '?')}: loss {head.get('loss', '?')} ({head.get('trials', '?')} trials, "
            f"{head.get('patients_per_trial', '?')} patients x {head.get('days', '?')} d, {head.get('date', '?')})")
    return [*head.get("history", []), this]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.grid, args.days = 32, 1.0
        args.out = args.out or Path(tempfile.mkdtemp(prefix="cart-abm-calibrate-"))
        if args.write == CALIBRATED_TOML:
            args.write = args.out / "calibrated.toml"
    if args.trials is None:
        args.trials = 2 if args.smoke else 30
    if args.n is None:
        args.n = 2 if args.smoke else 24
    out = args.out or Path("experiments/results/calibration")
    for name, value, low in (("--trials", args.trials, 1), ("--n", args.n, 1), ("--grid", args.grid, 16)):
        if value < low:
            print(f"error: {name} = {value}: expected at least {low}", file=sys.stderr)
            return 2
    args.target_keys = sorted(set(args.targets.split(","))) if args.targets else None
    unknown = [key for key in args.target_keys or [] if key not in TARGET_BY_KEY]
    if unknown:
        print(f"error: --targets: {', '.join(unknown)} not a target (abm.calibration.TARGETS: "
              f"{', '.join(TARGET_BY_KEY)})", file=sys.stderr)
        return 2
    if args.profile:
        try:
            grid = [parse_profile(text) for text in args.profile]
            if len({key for key, _ in grid}) < len(grid):
                raise ValueError(f"a key is named twice: {' '.join(args.profile)}")
        except ValueError as exc:
            print(f"error: --profile: {exc}", file=sys.stderr)
            return 2
        return run_profile(grid, args, out)
    only = sorted(set(args.only.split(","))) if args.only else []
    unknown = [key for key in only if key not in PRIOR_BY_KEY]
    if unknown:
        print(f"error: --only: {', '.join(unknown)} not fitted (abm.calibration.PRIORS: "
              f"{', '.join(PRIOR_BY_KEY)})", file=sys.stderr)
        return 2
    history = _history()  # read before the search writes the calibration file
    try:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
    except ImportError:
        print("error: calibration needs Optuna: pip install 'cart-abm[calibrate]'", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    sampler = optuna.samplers.TPESampler(seed=args.seed, multivariate=True, n_startup_trials=min(8, args.trials))
    study = optuna.create_study(study_name="cart-abm", storage=storage, sampler=sampler, direction="minimize",
                                load_if_exists=True)
    settings = {"n": args.n, "seed": args.seed, "grid": args.grid, "days": args.days, "only": only,
                **({"targets": args.target_keys} if args.target_keys else {})}
    if "settings" in study.user_attrs and study.user_attrs["settings"] != settings:
        print(f"error: {out}/study.journal was made with {study.user_attrs['settings']}, not {settings}; "
              "use another --out", file=sys.stderr)
        return 2
    study.set_user_attr("settings", settings)
    current = current_defaults()
    searched = [p for p in PRIORS if not only or p.key in only]
    if not study.trials:
        if not only:
            study.enqueue_trial(uncalibrated_defaults())
        if only or current != uncalibrated_defaults():
            study.enqueue_trial({p.key: current[p.key] for p in searched})

    def objective(trial: Any) -> float:
        values = {**current, **{p.key: trial.suggest_int(p.key, int(p.low), int(p.high)) if p.integer
                                else trial.suggest_float(p.key, p.low, p.high, log=p.log) for p in searched}}
        rows = evaluate(values, args)
        trial.set_user_attr("measured", measure(rows))
        value = loss(rows, args.target_keys)
        print(f"trial {trial.number}: loss {value:.3g}  " + "  ".join(
            f"{k.split('.')[-1]}={v:.3g}" for k, v in values.items()), file=sys.stderr, flush=True)
        return value

    done = len([t for t in study.trials if t.state.is_finished()])
    try:
        if args.trials > done:
            study.optimize(objective, n_trials=args.trials - done)
    except ParamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    best = study.best_trial
    values = {**current, **{p.key: best.params[p.key] for p in searched}}
    finished = [t for t in study.trials if t.state.is_finished()]
    trial_s = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in finished)
    method = (f"Optuna {_optuna_version()} TPE (multivariate, seed {args.seed}) minimising "
              f"abm.calibration.loss{_over_targets(args)}")
    if only:
        method += f" over {', '.join(only)} at the other values of the previous calibration"
    write_text(args.write, toml_text(values, method, best.number, best.value, best.user_attrs.get("measured", {}),
                                     args, len(finished), trial_s, history if only else None))
    write_json(out / "trials.json", [
        {"number": t.number, "loss": t.value, "params": t.params, "measured": t.user_attrs.get("measured")}
        for t in study.trials if t.state.is_finished()
    ])
    print(f"best trial {best.number}: loss {best.value:.4g}; wrote {args.write} and {out / 'trials.json'}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
