"""Whole patients and trials, this checkout against an earlier commit, alternated in one session.

Usage (from the repository root of a git checkout)::

    python -m benchmarks.ab --against 6a82e5f --days 28,365 --rounds 2 --out benchmarks/results --name ab-NAME
    python -m benchmarks.ab --against 6a82e5f --trial 4x365 --workers 2 --out benchmarks/results --name ab-trial

The earlier commit is checked out into a temporary ``git worktree`` and run by
the same Python with ``PYTHONPATH`` pointing at it (its kernels compile into
their own cache folder, which a warm-up run fills first). Each round runs
every command once for each checkout, the order of the two alternating
between rounds, so a machine that slows down or speeds up during the session
weighs on both sides alike: on a shared machine only such side-by-side ratios
mean anything. A patient is ``cart-abm run --quiet --days D`` (the default
patient, 400^2 window, all threads); a trial ``cart-abm trial --n N --days D
--workers W`` (virtual patients on one thread each). Wall clock includes
start-up and loading the compiled cache, as a user sees it.

Writes ``<out>/<name>.json`` (every sample) and ``<out>/<name>.md`` (median
wall time per checkout and the ratio earlier / this with its bootstrap 95 %
interval, :func:`benchmarks.compare.bootstrap_ratio`) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.compare import bootstrap_ratio


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True).stdout.strip()


def commands(days: list[float], trial: str | None, workers: int, out: Path) -> list[tuple[str, list[str]]]:
    """``(label, argv after cart-abm)`` of every timed command; ``out`` holds their output folders."""
    runs = [(f"{d:g}-day patient", ["run", "--quiet", "--days", f"{d:g}", "--out", str(out / f"d{d:g}")])
            for d in days]
    if trial:
        n, d = trial.lower().split("x")
        runs.append((f"trial {int(n)} x {float(d):g} days, {workers} workers",
                     ["trial", "--quiet", "--n", str(int(n)), "--days", f"{float(d):g}", "--workers", str(workers),
                      "--out", str(out / "trial")]))
    return runs


def timed(argv: list[str], tree: str) -> float:
    """Wall time of ``cart-abm ARGV --force`` running the code of the checkout at ``tree``.

    The command runs in ``tree`` with ``PYTHONPATH`` at it: ``python -m`` puts the working folder first on
    ``sys.path``, ahead of ``PYTHONPATH`` and of an editable install, so each side imports its own code.
    """
    env = {**os.environ, "PYTHONPATH": tree}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "abm.cli", *argv, "--force"], check=True, env=env, cwd=tree,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def run(against: str, days: list[float], trial: str | None, workers: int, rounds: int) -> dict[str, Any]:
    here = git("rev-parse", "--short", "HEAD")
    dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    root = Path(git("rev-parse", "--show-toplevel"))
    with tempfile.TemporaryDirectory(prefix="cart-abm-ab-") as tmp:
        tree = Path(tmp) / "earlier"
        git("worktree", "add", "--detach", str(tree), against)
        try:
            sides = {"earlier": str(tree), "this": str(root)}
            todo = commands(days, trial, workers, Path(tmp) / "out")
            for path in sides.values():  # compile each checkout's kernels into its cache first
                timed(["run", "--quiet", "--days", "0.01", "--out", f"{tmp}/warm"], path)
                check = subprocess.run([sys.executable, "-c", "import kernels; print(kernels.__file__)"], cwd=path,
                                       env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True)
                if not check.stdout.strip().startswith(path):
                    raise RuntimeError(f"the checkout at {path} imports kernels from {check.stdout.strip()}")
            samples: dict[str, dict[str, list[float]]] = {label: {"earlier": [], "this": []} for label, _ in todo}
            for r in range(rounds):
                for label, argv in todo:
                    for side in (("earlier", "this") if r % 2 == 0 else ("this", "earlier")):
                        wall = timed(argv, sides[side])
                        samples[label][side].append(wall)
                        print(f"round {r + 1}: {label}, {side}: {wall:.1f} s", file=sys.stderr, flush=True)
        finally:
            git("worktree", "remove", "--force", str(tree))
    rows = []
    for label, s in samples.items():
        ratio, low, high = bootstrap_ratio(s["earlier"], s["this"])
        rows.append({"run": label, "earlier_s": s["earlier"], "this_s": s["this"], "speedup": ratio,
                     "ci_low": low, "ci_high": high})
    return {"against": git("rev-parse", "--short", against), "this": here, "this_dirty": dirty, "rounds": rounds,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpu_count": os.cpu_count(),
            "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    def med(x: list[float]) -> float:
        return sorted(x)[len(x) // 2] if len(x) % 2 else sum(sorted(x)[len(x) // 2 - 1:len(x) // 2 + 1]) / 2

    lines = [f"# This checkout ({result['this']}{' + uncommitted changes' if result['this_dirty'] else ''}) against "
             f"{result['against']}, alternated, {result['rounds']} round(s), {result['created_utc']}", "",
             "| run | earlier s (median) | this s (median) | speed-up [95 % CI] | samples earlier / this |",
             "|---|---:|---:|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['run']} | {med(r['earlier_s']):.1f} | {med(r['this_s']):.1f} | {r['speedup']:.2f} "
                     f"[{r['ci_low']:.2f}-{r['ci_high']:.2f}] | {', '.join(f'{x:.1f}' for x in r['earlier_s'])} / "
                     f"{', '.join(f'{x:.1f}' for x in r['this_s'])} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0])
    ap.add_argument("--against", required=True, help="the earlier commit (any git revision)")
    ap.add_argument("--days", default="28", help="patient lengths, comma-separated (default 28; '' for none)")
    ap.add_argument("--trial", help="NxD: a trial of N patients of D days as well, e.g. 4x365")
    ap.add_argument("--workers", type=int, default=2, help="trial workers (default 2)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--name", default=time.strftime("ab-%Y%m%d-%H%M%S", time.gmtime()))
    args = ap.parse_args(argv)
    days = [float(d) for d in args.days.split(",") if d.strip()]
    result = run(args.against, days, args.trial, args.workers, args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (args.out / f"{args.name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
