"""``python -m benchmarks``: measure, write ``benchmarks/results/<name>.{json,md}``, print the table."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import benchmarks


def parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: expected comma-separated integers, e.g. 128,512") from None
    if not sizes or any(not 8 <= s <= 16384 for s in sizes):
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: every size must lie in [8, 16384]")
    return sizes


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Site-updates per second of the plain-Mesa reference and the kernel backends on the core rules.",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="128^2 and 512^2, 5 runs per case (default)")
    mode.add_argument("--smoke", dest="mode", action="store_const", const="smoke",
                      help="16^2, a few steps: checks that everything runs and the schema (seconds; not a measurement)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="128^2, 512^2 and 1024^2, longer runs")
    p.set_defaults(mode="quick")
    p.add_argument("--sizes", type=parse_sizes, help="comma-separated window sides, e.g. 64,256 (overrides the mode's)")
    p.add_argument("--repeats", type=positive_int, help="timed runs per case (overrides the mode's)")
    p.add_argument("--seed", type=int, help="seed of the window, the CAR-T sites and the runs")
    p.add_argument("--out", type=Path, default=benchmarks.RESULTS_DIR,
                   help="folder for <name>.json and <name>.md (default: benchmarks/results)")
    p.add_argument("--name", help="file name stem (default: <UTC timestamp>-<mode>)")
    p.add_argument("--in-process", action="store_true",
                   help="run every case in this process (faster start; peak RSS then accumulates)")
    p.add_argument("--list", action="store_true", help="print the cases that would run and exit")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("OLD.json", "NEW.json"),
                   help="print new/old site-updates/s of two result files and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.compare:
        try:
            old, new = (json.loads(path.read_text(encoding="utf-8")) for path in args.compare)
            benchmarks.validate(old)
            benchmarks.validate(new)
        except (OSError, ValueError) as exc:
            print(f"error: --compare: {exc}", file=sys.stderr)
            return 2
        print(benchmarks.compare(old, new), end="")
        return 0
    config = benchmarks.config_for(args.mode, sizes=args.sizes, repeats=args.repeats, seed=args.seed,
                                   isolate=False if args.in_process else None)
    cases, skipped = benchmarks.registry(config)
    if args.list:
        for case in cases:
            print(case.name)
        for reason in skipped:
            print(f"(not run) {reason}")
        return 0
    doc = benchmarks.run(config, cases, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    doc["skipped"] = skipped
    name = args.name or f"{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{config.mode}"
    json_path, md_path = benchmarks.write(doc, args.out, name)
    print(benchmarks.markdown(doc), end="")
    print(f"\nwrote {json_path} and {md_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
