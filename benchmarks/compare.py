"""Speed ratios between the rows of a session, with bootstrap 95 % intervals, and the issue-#7 targets.

:func:`bootstrap_ratio` gives a ratio of medians and its bootstrap 95 %
interval; :func:`comparisons` pairs each row with its baselines;
:func:`targets` checks the issue-#7 targets (:data:`TARGETS`) against rows,
comparisons and patient timings.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BOOTSTRAP_RESAMPLES = 2000

# (name, comparison kind, size, rules, bound, "min" or "max"): how each issue-#7 target is checked.
TARGETS = (
    ("cpu >= 200x the Mesa reference, core rules, 256^2", "vs_reference", 256, "core", 200.0, "min"),
    ("full step <= 4x the limit kernel, 1024^2", "vs_limit", 1024, "full", 4.0, "max"),
    ("2 threads >= 1.6x 1 thread, full step, 1024^2", "threads", 1024, "full", 1.6, "min"),
    ("peak memory <= 100 bytes/site, full model, 2048^2", "memory", 2048, "full", 100.0, "max"),
    ("cuda >= 1e10 site-updates/s, full step, 4096^2", "cuda_rate", 4096, "full", 1e10, "min"),
    ("cuda >= 30x cpu (all threads), full step, 4096^2", "cuda_vs_cpu", 4096, "full", 30.0, "min"),
    ("default 28-day patient <= 60 s (warm cache)", "patient", 28, "warm", 60.0, "max"),
    ("cold compile <= 30 s", "patient", 0, "compile", 30.0, "max"),
    ("365-day patient <= 300 s (warm cache)", "patient", 365, "warm", 300.0, "max"),
)


def bootstrap_ratio(num: list[float], den: list[float], seed: int = 0,
                    resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float, float]:
    """``median(num) / median(den)`` and its bootstrap 95 % interval (percentile method).

    Each resample draws both sample lists with replacement; with one sample
    on a side that side is fixed (the interval then reflects the other only).
    """
    a = np.asarray(num, dtype=float)
    b = np.asarray(den, dtype=float)
    ratio = float(np.median(a) / np.median(b))
    rng = np.random.default_rng(seed)
    ra = np.median(a[rng.integers(0, a.size, size=(resamples, a.size))], axis=1)
    rb = np.median(b[rng.integers(0, b.size, size=(resamples, b.size))], axis=1)
    lo, hi = np.percentile(ra / rb, [2.5, 97.5])
    return ratio, float(lo), float(hi)


def rates(row: dict[str, Any]) -> list[float]:
    """Site-updates/s of each timed run of a row."""
    return [row["sites"] / (ms * 1e-3) for ms in row["step_ms_samples"]]


def comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Speed ratios between rows of one session, each with a bootstrap 95 % interval.

    Kinds (``ratio`` is always "how many times", > 1 better except for ``vs_limit``):

    ``vs_reference``
        ``cpu`` / ``cuda`` site-updates/s over the Mesa reference's (core rules, same size).
    ``vs_limit``
        step time over the ``limit`` kernel's at the same size and threads (``cuda`` against the CUDA limit).
    ``threads``
        ``cpu`` site-updates/s at ``t`` threads over 1 thread (same size and rules).
    ``cuda_vs_cpu``
        ``cuda`` site-updates/s over ``cpu`` at its most threads (same size and rules).
    """
    out = []

    def add(kind, row, base, num, den):
        ratio, lo, hi = bootstrap_ratio(num, den)
        out.append({"kind": kind, "size": row["size"], "rules": row["rules"], "case": row["case"],
                    "baseline": base["case"], "threads": row["threads"], "ratio": ratio, "ci_low": lo, "ci_high": hi})

    by_case = {r["case"]: r for r in rows}
    for r in rows:
        if r["impl"] not in ("cpu", "cuda"):
            continue
        ref = by_case.get(f"reference-{r['size']}-core")
        if ref is not None and r["rules"] == "core":
            add("vs_reference", r, ref, rates(r), rates(ref))
        limit = by_case.get(f"limit-{r['size']}-t{r['threads']}" if r["impl"] == "cpu" else f"limit-cuda-{r['size']}")
        if limit is not None:
            add("vs_limit", r, limit, r["step_ms_samples"], limit["step_ms_samples"])
        if r["impl"] == "cpu" and r["threads"] > 1:
            one = by_case.get(f"cpu-{r['size']}-t1-{r['rules']}")
            if one is not None:
                add("threads", r, one, rates(r), rates(one))
        if r["impl"] == "cuda":
            cpus = [c for c in rows if c["impl"] == "cpu" and c["size"] == r["size"] and c["rules"] == r["rules"]]
            if cpus:
                best = max(cpus, key=lambda c: c["threads"])
                add("cuda_vs_cpu", r, best, rates(r), rates(best))
    return out


def targets(rows: list[dict[str, Any]], comps: list[dict[str, Any]],
            patients: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue-#7 targets (:data:`TARGETS`) with what this session measured; ``holds`` is null if not measured."""
    out = []
    for name, kind, size, rules, bound, sense in TARGETS:
        measured = lo = hi = None
        where = None
        if kind in ("vs_reference", "vs_limit", "threads", "cuda_vs_cpu"):
            cands = [c for c in comps if c["kind"] == kind and c["size"] == size and c["rules"] == rules]
            if kind == "threads":
                cands = [c for c in cands if c["threads"] == 2]
            if kind in ("vs_reference", "vs_limit") and cands:
                top = max(c["threads"] for c in cands)  # the backend as users run it: all threads
                cands = [c for c in cands if c["threads"] == top]
            if cands:
                c = cands[0]
                measured, lo, hi, where = c["ratio"], c["ci_low"], c["ci_high"], f"{c['case']} / {c['baseline']}"
        elif kind == "cuda_rate":
            cands = [r for r in rows if r["impl"] == "cuda" and r["size"] == size and r["rules"] == rules]
            if cands:
                measured, where = cands[0]["site_updates_per_s"], cands[0]["case"]
                lo, hi = cands[0]["site_updates_per_s_min"], cands[0]["site_updates_per_s_max"]
        elif kind == "memory":
            cands = [r for r in rows if r["impl"] == "cpu" and r["size"] == size and r["rules"] == rules]
            if cands:
                r = max(cands, key=lambda c: c["threads"])
                measured, where = r["peak_bytes_per_site"], r["case"]
        elif kind == "patient":
            for p in patients:
                if rules == "compile" and p.get("compile_s") is not None:
                    measured, where = p["compile_s"], p["label"]
                elif rules == "warm" and p["cache"] == "warm" and p["days"] == size:
                    measured, where = p["wall_s"], p["label"]
        holds = None if measured is None else (measured >= bound if sense == "min" else measured <= bound)
        out.append({"target": name, "bound": bound, "sense": sense, "measured": measured, "ci_low": lo,
                    "ci_high": hi, "where": where, "holds": holds})
    return out
