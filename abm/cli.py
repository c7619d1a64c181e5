"""Command line: ``cart-abm run``.

Exit status: 0 success; 2 bad input (unknown key, wrong type, out of range,
malformed file, unusable backend), with one message naming the field, the
value and what is allowed, and no output folder; 1 a run that failed.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

import abm
from abm.errors import CartAbmError, ParamError, SimulationError
from abm.params import Params
from kernels import BACKENDS, BackendError

DEFAULT_SNAPSHOT_MIN = 360.0
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
    run.add_argument("--out", type=Path, default=Path("cart-abm-run"), help="output folder (default ./cart-abm-run)")
    run.add_argument("--animate", action="store_true", help="also write marrow.gif")
    run.add_argument("--snapshot-every", metavar="DURATION",
                     help="keep a lattice snapshot this often, e.g. 30min, 6h (default 6h with --animate)")
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def resolve_params(args: argparse.Namespace) -> Params:
    params = Params.from_toml(args.config) if args.config else Params.default()
    params = params.with_overrides(args.overrides)
    if args.days is not None:
        params = params.replace({"time.days": args.days})
    return params


def command_run(args: argparse.Namespace) -> int:
    from abm import io, viz
    from abm.model import MarrowModel
    from abm.outcomes import summarize

    params = resolve_params(args)
    if not 0 <= args.seed < 2**63:
        raise ParamError(f"--seed = {args.seed}: expected an integer in [0, 2**63)")
    if args.threads is not None and args.threads < 1:
        raise ParamError(f"--threads = {args.threads}: expected an integer >= 1")
    snapshot_min = parse_duration_min(args.snapshot_every) if args.snapshot_every else None
    if args.animate and snapshot_min is None:
        snapshot_min = DEFAULT_SNAPSHOT_MIN
    if snapshot_min is not None and snapshot_min < params.time.dt_min:
        raise ParamError(f"--snapshot-every = {args.snapshot_every}: expected at least time.dt_min "
                         f"({params.time.dt_min:g} min)")
    model = MarrowModel(params, seed=args.seed, backend=args.backend, threads=args.threads,
                        snapshot_every_min=snapshot_min)
    with io.staged_folder(args.out) as folder:
        started = time.perf_counter()
        model.run(progress=not args.quiet)
        wall = time.perf_counter() - started
        summary = summarize(model, wall_s=wall)
        df = model.datacollector.get_model_vars_dataframe()
        df.to_csv(folder / "timeseries.csv", index=False)
        io.write_text(folder / "params.toml", params.to_toml())
        s = model.state
        np.savez_compressed(
            folder / "final_state.npz", **s.arrays(),
            trait_names=np.array(_trait_names()), dt_min=model.dt_min, site_um=params.grid.site_um,
            coarsen=params.grid.coarsen, field_quantum=_field_quantum(), lattice_step=model.lattice_step,
            seed=model.seed,
        )
        viz.plot_timecourse(df, folder / "timecourse.png", title=f"cart-abm seed {model.seed}")
        if model.snapshots:
            np.savez_compressed(
                folder / "snapshots.npz",
                day=np.array([f["day"] for f in model.snapshots]),
                view=np.stack([f["view"] for f in model.snapshots]),
                il6=np.stack([f["il6"] for f in model.snapshots]),
                site_um=params.grid.site_um,
            )
        if args.animate:
            viz.write_gif(model.snapshots, folder / "marrow.gif", site_um=params.grid.site_um, timecourse=df,
                          progress=not args.quiet)
        io.write_json(folder / "summary.json", summary)
    print(f"cart-abm: wrote {args.out} ({wall:.1f} s, {model.lattice_step} steps on {model.backend})")
    return 0


def _trait_names() -> list[str]:
    from kernels.rules import TRAIT_NAMES

    return list(TRAIT_NAMES)


def _field_quantum() -> float:
    from kernels.diffusion import QUANTUM

    return QUANTUM


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return command_run(args)
    except (ParamError, BackendError, FileExistsError) as exc:
        print(f"cart-abm: error: {exc}", file=sys.stderr)
        return 2
    except (SimulationError, CartAbmError) as exc:
        print(f"cart-abm: run failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cart-abm: interrupted; no output written", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
