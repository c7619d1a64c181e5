"""``python -m benchmarks`` and ``cart-abm bench``: measure, write ``<out>/<name>.{json,md}``, print the table.

:func:`register` adds ``bench`` to ``cart-abm``'s subcommands (an entry point
in the ``cart_abm.commands`` group, see :func:`abm.cli.command_plugins`).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from abm.errors import ParamError
from abm.folders import check_writable
from benchmarks.machine import max_threads
from benchmarks.registry import RULE_SETS, config_for, registry
from benchmarks.report import RESULTS_DIR, compare, document, load, markdown, write
from benchmarks.runner import patient_runs, run


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: expected comma-separated integers, e.g. 128,512") from None
    if not sizes or any(not 8 <= s <= 16384 for s in sizes):
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: every size must lie in [8, 16384]")
    return sizes


def parse_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected comma-separated integers, e.g. 1,2") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive integers")
    return values


def parse_days(text: str) -> tuple[float, ...]:
    try:
        days = tuple(float(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--patient {text!r}: expected comma-separated days, e.g. 28,365") from None
    if not days or any(not 0 < d <= 730 for d in days):
        raise argparse.ArgumentTypeError(f"--patient {text!r}: every length must lie in (0, 730] days")
    return days


def parse_rules(text: str) -> tuple[str, ...]:
    rules = tuple(s.strip() for s in text.split(",") if s.strip())
    if not rules or any(r not in RULE_SETS for r in rules):
        raise argparse.ArgumentTypeError(f"--rules {text!r}: expected a comma-separated subset of "
                                         f"{','.join(RULE_SETS)}")
    return rules


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


DESCRIPTION = ("Site-updates per second of the plain-Mesa reference, the kernel backends and the limit kernel on "
               "core rules and the full model; whole-patient wall times; targets of issue #7.")


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(argparse.ArgumentParser(prog="python -m benchmarks", description=DESCRIPTION))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``bench`` to ``cart-abm``'s subcommands, with the options of ``python -m benchmarks``."""
    parser = sub.add_parser("bench", help="benchmarks: backends x sizes x threads (as python -m benchmarks)",
                            description=DESCRIPTION)
    add_arguments(parser).set_defaults(handler=execute)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="128^2 and 512^2, 5 runs per case (default)")
    mode.add_argument("--smoke", dest="mode", action="store_const", const="smoke",
                      help="16^2, a few steps: checks that everything runs and the schema (seconds; not a measurement)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="128^2 to 4096^2, longer runs")
    p.set_defaults(mode="quick")
    p.add_argument("--gpu", action="store_true",
                   help="cuda (and its limit kernel) at 1024^2-8192^2 on the full model, cpu at 1024^2 and 4096^2 for "
                        "the ratio; with --smoke: 16^2 and 24^2 (runs under NUMBA_ENABLE_CUDASIM=1)")
    p.add_argument("--sizes", type=parse_sizes, help="comma-separated window sides, e.g. 64,256 (overrides the mode's)")
    p.add_argument("--cuda-sizes", type=parse_sizes, help="comma-separated cuda window sides (overrides the mode's)")
    p.add_argument("--rules", type=parse_rules, help="rule sets, e.g. core or core,full (overrides the mode's)")
    p.add_argument("--threads", type=parse_ints, help="cpu thread counts, e.g. 1,2 (default: 1, powers of 2, all)")
    p.add_argument("--repeats", type=positive_int, help="timed runs per case (overrides the mode's)")
    p.add_argument("--patient", type=parse_days, metavar="DAYS",
                   help="also time whole default patients of these lengths (e.g. 28,365) and the cold compile")
    p.add_argument("--patient-threads", type=positive_int, help="--threads of those patient runs (default: the CLI's)")
    p.add_argument("--no-cases", action="store_true", help="run no lattice cases (only --patient)")
    p.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    p.add_argument("--seed", type=int, help="seed of the window, the CAR-T sites and the runs")
    p.add_argument("--out", type=Path, default=RESULTS_DIR,
                   help="folder for <name>.json and <name>.md (default: benchmarks/results)")
    p.add_argument("--name", help="file name stem (default: <UTC timestamp>-<mode>)")
    p.add_argument("--in-process", action="store_true",
                   help="run every case in this process (faster start; peak RSS then accumulates)")
    p.add_argument("--list", action="store_true", help="print the cases that would run and exit")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("OLD.json", "NEW.json"),
                   help="print new/old site-updates/s of two result files and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    return execute(build_parser().parse_args(argv))


def execute(args: argparse.Namespace) -> int:
    if args.compare:
        try:
            old, new = (load(path) for path in args.compare)
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: --compare: {exc}", file=sys.stderr)
            return 2
        print(compare(old, new), end="")
        return 0
    mode = args.mode
    if args.gpu:
        mode = "gpu-smoke" if mode == "smoke" else "gpu"
    threads = args.threads
    if threads is None and mode.startswith("gpu"):
        threads = (max_threads(),)  # the cpu side of a GPU session: the backend as users run it
    config = config_for(mode, sizes=args.sizes, cuda_sizes=args.cuda_sizes, rules=args.rules,
                        threads=threads, repeats=args.repeats, seed=args.seed,
                        isolate=False if args.in_process else None)
    cases, skipped = ([], []) if args.no_cases else registry(config)
    if args.list:
        for case in cases:
            print(case.name)
        for reason in skipped:
            print(f"(not run) {reason}")
        return 0
    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    if args.no_cases and not args.patient:
        print("error: --no-cases without --patient measures nothing", file=sys.stderr)
        return 2
    try:
        check_writable(args.out, "--out")  # before measuring for minutes
    except ParamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    doc = run(config, cases, progress=progress)
    if args.patient:
        try:
            patients = patient_runs(args.patient, threads=args.patient_threads, progress=progress)
        except RuntimeError as exc:
            print(f"error: --patient: {exc}", file=sys.stderr)
            return 1
        doc = document(config, doc["rows"], skipped, patients)
    else:
        doc["skipped"] = skipped
    name = args.name or f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{config.mode}"
    try:
        paths = write(doc, args.out, name, with_plots=not args.no_plots)
    except OSError as exc:
        print(f"error: --out {str(args.out)!r}: cannot write the results ({exc.strerror or exc})", file=sys.stderr)
        return 2
    print(markdown(doc), end="")
    print("\nwrote " + ", ".join(str(p) for p in paths), file=sys.stderr)
    return 0
