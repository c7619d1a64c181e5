"""Wall time and resident memory of a command and all its child processes, sampled over time.

    python -m benchmarks.memwatch --out benchmarks/results/soak-trial.csv -- cart-abm trial --n 200 ...

Runs the command, samples the resident set size (RSS, from ``/proc/<pid>/statm``)
of the process and every descendant every ``--every`` seconds, and writes a CSV
(``t_s``, ``processes``, ``rss_total_mib``, ``rss_max_process_mib``); prints the
wall time, the peak total and per-process RSS, and the growth of the per-process
peak between the first and the last quarter of the run (a leak shows as steady
growth; worker processes of a long trial should stay flat). Linux only (reads
``/proc``). Exits with the command's status.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import time
from pathlib import Path

from abm.io import atomic_write
from benchmarks.machine import rss_mib


def children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (from ``/proc/<pid>/task/*/children``)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                kids = [int(k) for k in task.read_text().split()]
            except OSError:
                continue
            found += kids
            todo += kids
    return found


def watch(command: list[str], out: Path, every: float) -> int:
    started = time.perf_counter()
    proc = subprocess.Popen(command)
    samples = []
    while proc.poll() is None:
        pids = [proc.pid, *children(proc.pid)]
        rss = [rss_mib(p) for p in pids]
        samples.append((round(time.perf_counter() - started, 1), len(pids), round(sum(rss), 1), round(max(rss), 1)))
        time.sleep(every)
    wall = time.perf_counter() - started

    def write(fh) -> None:
        w = csv.writer(fh)
        w.writerow(["t_s", "processes", "rss_total_mib", "rss_max_process_mib"])
        w.writerows(samples)

    atomic_write(out, write)
    if samples:
        q = max(1, len(samples) // 4)
        first, last = max(s[3] for s in samples[:q]), max(s[3] for s in samples[-q:])
        print(f"memwatch: {wall:.0f} s wall; peak RSS {max(s[2] for s in samples):.0f} MiB total, "
              f"{max(s[3] for s in samples):.0f} MiB in one process; per-process peak {first:.0f} MiB in the "
              f"first quarter, {last:.0f} MiB in the last; {len(samples)} samples in {out}", file=sys.stderr)
    return proc.returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.memwatch", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="CSV of the samples")
    p.add_argument("--every", type=float, default=5.0, help="seconds between samples (5)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        p.error("give the command to run after --")
    if args.every <= 0:
        p.error(f"--every = {args.every}: expected a positive number of seconds")
    return watch(command, args.out, args.every)


if __name__ == "__main__":
    sys.exit(main())
