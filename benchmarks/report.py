"""The result document: built (:func:`document`), checked (:func:`validate`), written and read back.

:func:`write` writes ``<name>.json``, ``<name>.md`` (:func:`markdown`) and the
PNG plots (:func:`plots`); :func:`load` reads a result file (upgrading
schema 1); :func:`compare` tables two documents' shared cases. The schema is
documented in ``benchmarks/README.md``.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from abm.io import results_root
from benchmarks.compare import bootstrap_ratio, comparisons, rates, targets
from benchmarks.machine import machine_info
from benchmarks.registry import BACKENDS, FULL_CART_PER_SITE, IMPLEMENTATIONS, RULE_SETS, Config

SCHEMA_VERSION = 2
STARVED = 0.85  # a case whose process got less CPU time per thread and wall second than this was competing
RESULTS_DIR = results_root(Path(__file__).parent, "cart-abm-benchmarks")

ROW_KEYS = (
    "case", "impl", "backend", "rules", "size", "sites", "threads", "seed", "n_cart", "steps", "repeats",
    "setup_s", "warmup_s", "compile_s", "step_ms_median", "step_ms_min", "step_ms_max", "step_ms_samples",
    "site_updates_per_s", "site_updates_per_s_min", "site_updates_per_s_max", "spread_pct",
    "peak_rss_mib", "rss_baseline_mib", "rss_end_mib", "bytes_per_site", "peak_bytes_per_site",
    "counts_initial", "counts_final", "cpu_per_wall", "load_1m_start", "load_1m_end", "created_utc",
)
MACHINE_KEYS = (
    "platform", "machine", "cpu_model", "cpu_count", "cpu_affinity", "numba_threads", "threading_layer",
    "gpu", "cuda_simulated", "python", "numpy", "numba", "mesa", "cart_abm", "git_commit", "git_dirty",
)


def document(config: Config, rows: list[dict[str, Any]], skipped: list[str],
             patients: list[dict[str, Any]]) -> dict[str, Any]:
    """The result document of a session (``benchmarks/README.md``, schema version 2)."""
    comps = comparisons(rows)
    machine = machine_info()
    if machine["threading_layer"] is None:  # this process ran no parallel region; the case processes did
        machine["threading_layer"] = next((r["threading_layer"] for r in rows if r["threading_layer"]), None)
    return {
        "schema_version": SCHEMA_VERSION,
        "mode": config.mode,
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": asdict(config),
        "machine": machine,
        "rows": rows,
        "comparisons": comps,
        "patients": patients,
        "targets": targets(rows, comps, patients),
        "skipped": skipped,
    }


# -- validation ------------------------------------------------------------------
def validate(doc: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the first field that breaks the result schema (``benchmarks/README.md``)."""
    for key, kind in (("schema_version", int), ("mode", str), ("created_utc", str), ("config", dict),
                      ("machine", dict), ("rows", list), ("comparisons", list), ("patients", list),
                      ("targets", list), ("skipped", list)):
        if not isinstance(doc.get(key), kind):
            raise ValueError(f"result.{key}: expected {kind.__name__}, got {type(doc.get(key)).__name__}")
    if doc["schema_version"] != SCHEMA_VERSION:
        raise ValueError(f"result.schema_version: {doc['schema_version']} != {SCHEMA_VERSION}")
    missing = [k for k in MACHINE_KEYS if k not in doc["machine"]]
    if missing:
        raise ValueError(f"result.machine: missing {', '.join(missing)}")
    for i, row in enumerate(doc["rows"]):
        missing = [k for k in (*ROW_KEYS, *MACHINE_KEYS) if k not in row]
        if missing:
            raise ValueError(f"rows[{i}]: missing {', '.join(missing)}")
        if row["impl"] not in IMPLEMENTATIONS:
            raise ValueError(f"rows[{i}].impl: {row['impl']!r} not one of {IMPLEMENTATIONS}")
        if row["backend"] not in BACKENDS:
            raise ValueError(f"rows[{i}].backend: {row['backend']!r} not one of {BACKENDS}")
        if row["rules"] not in (*RULE_SETS, "-"):
            raise ValueError(f"rows[{i}].rules: {row['rules']!r} not one of {RULE_SETS} or '-'")
        for k in ("site_updates_per_s", "step_ms_median", "warmup_s", "compile_s", "setup_s", "peak_rss_mib",
                  "bytes_per_site", "peak_bytes_per_site"):
            if not (isinstance(row[k], float | int) and math.isfinite(row[k]) and row[k] >= 0):
                raise ValueError(f"rows[{i}].{k}: expected a finite non-negative number, got {row[k]!r}")
        if not row["step_ms_min"] <= row["step_ms_median"] <= row["step_ms_max"]:
            raise ValueError(f"rows[{i}]: step_ms_min <= step_ms_median <= step_ms_max does not hold")
        if len(row["step_ms_samples"]) != row["repeats"]:
            raise ValueError(f"rows[{i}].step_ms_samples: expected {row['repeats']} samples (one per repeat)")
        if len(row["counts_initial"]) != 6 or len(row["counts_final"]) != 6:
            raise ValueError(f"rows[{i}].counts_*: expected 6 counts per kind")
    for i, c in enumerate(doc["comparisons"]):
        for k in ("kind", "size", "rules", "case", "baseline", "threads", "ratio", "ci_low", "ci_high"):
            if k not in c:
                raise ValueError(f"comparisons[{i}]: missing {k}")
        if not (isinstance(c["ratio"], float | int) and math.isfinite(c["ratio"]) and c["ci_low"] <= c["ci_high"]):
            raise ValueError(f"comparisons[{i}]: expected a finite ratio and ci_low <= ci_high")
    for i, p in enumerate(doc["patients"]):
        for k in ("label", "days", "cache", "wall_s", "threads", "compile_s", "command"):
            if k not in p:
                raise ValueError(f"patients[{i}]: missing {k}")
    for i, t in enumerate(doc["targets"]):
        for k in ("target", "bound", "sense", "measured", "ci_low", "ci_high", "where", "holds"):
            if k not in t:
                raise ValueError(f"targets[{i}]: missing {k}")


# -- writers ---------------------------------------------------------------------
def _si(x: float) -> str:
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}"


def _label(r: dict[str, Any]) -> str:
    if r["impl"] == "reference":
        return "Mesa reference"
    if r["impl"] == "limit":
        return f"limit kernel, {r['threads']} thread{'s' if r['threads'] > 1 else ''}" if r["backend"] == "cpu" \
            else "limit kernel, cuda"
    if r["impl"] == "cpu":
        return f"cpu, {r['threads']} thread{'s' if r['threads'] > 1 else ''}"
    return r["impl"]


_KIND_TEXT = {
    "vs_reference": "x the Mesa reference",
    "vs_limit": "x the limit kernel's step time",
    "threads": "x 1 thread",
    "cuda_vs_cpu": "x cpu (most threads)",
}


def markdown(doc: dict[str, Any]) -> str:
    """The result document as a Markdown report: machine, measurements, comparisons, patients, targets."""
    m = doc["machine"]
    c = doc["config"]
    gpu = m["gpu"] or ("Numba CUDA simulator" if m["cuda_simulated"] else "none")
    lines = [
        f"# cart-abm benchmark ({doc['mode']}, {doc['created_utc']})",
        "",
        f"Machine: {m['cpu_model'] or m['machine']}, {m['cpu_count']} CPUs ({m['cpu_affinity']} usable, "
        f"numba threads {m['numba_threads']}, threading layer {m['threading_layer']}), GPU: {gpu}, {m['platform']}.  ",
        f"Software: Python {m['python']}, NumPy {m['numpy']}, Numba {m['numba']}, Mesa {m['mesa']}, "
        f"cart-abm {m['cart_abm']} (commit {m['git_commit']}{', uncommitted changes' if m['git_dirty'] else ''}).  ",
        f"Scenario: default patient window, seed {c['seed']}; core rules with CAR-T at {c['cart_fraction']:.0%} of "
        f"free sites, full model with CAR-T on {FULL_CART_PER_SITE:.1%} of all sites; {c['repeats']} timed runs "
        "per case, median [min-max].",
    ]
    if doc["rows"]:
        lines += [
            "",
            "| implementation | rules | size | steps x runs | step ms | site-updates/s | compile s | CPU/wall "
            "| bytes/site (end, peak) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in doc["rows"]:
            lines.append(
                f"| {_label(r)} | {r['rules']} | {r['size']}^2 | {r['steps']} x {r['repeats']} | "
                f"{r['step_ms_median']:.3g} [{r['step_ms_min']:.3g}-{r['step_ms_max']:.3g}] | "
                f"{_si(r['site_updates_per_s'])} [{_si(r['site_updates_per_s_min'])}-"
                f"{_si(r['site_updates_per_s_max'])}] | {r['compile_s']:.3g} | {r['cpu_per_wall']:.2f} | "
                f"{r['bytes_per_site']:.0f}, {r['peak_bytes_per_site']:.0f} |"
            )
    if doc["comparisons"]:
        lines += ["", "Ratios (median over median of the timed runs; bootstrap 95 % interval):", "",
                  "| kind | rules | size | case | baseline | ratio [95 % CI] |", "|---|---|---:|---|---|---:|"]
        for x in doc["comparisons"]:
            lines.append(f"| {_KIND_TEXT[x['kind']]} | {x['rules']} | {x['size']}^2 | {x['case']} | {x['baseline']} "
                         f"| {x['ratio']:.3g} [{x['ci_low']:.3g}-{x['ci_high']:.3g}] |")
    if doc["patients"]:
        lines += ["", "Whole patients (`cart-abm run`, default parameters, wall clock including start-up):", "",
                  "| run | wall s | compile s | command |", "|---|---:|---:|---|"]
        for p in doc["patients"]:
            comp = "-" if p["compile_s"] is None else f"{p['compile_s']:.1f}"
            lines.append(f"| {p['label']} | {p['wall_s']:.1f} | {comp} | `{p['command']}` |")
    measured = [t for t in doc["targets"] if t["measured"] is not None]
    if measured:
        lines += ["", "Targets (issue #7):", "", "| target | measured [range] | holds |", "|---|---:|---|"]
        for t in measured:
            rng = "" if t["ci_low"] is None else f" [{t['ci_low']:.3g}-{t['ci_high']:.3g}]"
            lines.append(f"| {t['target']} | {t['measured']:.3g}{rng} | {'yes' if t['holds'] else '**no**'} |")
    if doc["skipped"]:
        lines += ["", "Not measured: " + "; ".join(doc["skipped"]) + "."]
    starved = [r["case"] for r in doc["rows"]
               if r["backend"] != "cuda" and r["cpu_per_wall"] < STARVED * r["threads"]]
    if starved:
        lines += [
            "",
            f"Warning: {', '.join(starved)} got less than {STARVED:.0%} of a CPU per thread during the timed runs "
            "(other processes competed for the CPUs); their numbers understate the implementation.",
        ]
    return "\n".join(lines) + "\n"


def plots(doc: dict[str, Any], out: Path, name: str) -> list[Path]:
    """``<name>-throughput.png`` (site-updates/s vs size) and ``<name>-threads.png`` (speed-up vs threads)."""
    if not doc["rows"]:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    series: dict[str, list[tuple[int, float, float, float]]] = {}
    for r in doc["rows"]:
        label = _label(r) + ("" if r["rules"] == "-" else f", {r['rules']}")
        series.setdefault(label, []).append(
            (r["size"], r["site_updates_per_s"], r["site_updates_per_s_min"], r["site_updates_per_s_max"]))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, pts in series.items():
        pts.sort()
        x = [p[0] for p in pts]
        y = np.array([p[1] for p in pts])
        err = np.array([[p[1] - p[2] for p in pts], [p[3] - p[1] for p in pts]])
        ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label,
                    linestyle="--" if label.startswith("limit") else "-")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("window side (sites)")
    ax.set_ylabel("site-updates / s")
    ax.set_title(f"Throughput vs size ({doc['mode']}, {doc['machine']['cpu_model'] or ''})", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / f"{name}-throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    scaling = [x for x in doc["comparisons"] if x["kind"] == "threads"]
    if scaling:
        fig, ax = plt.subplots(figsize=(6, 4))
        groups: dict[str, list[dict[str, Any]]] = {}
        for x in scaling:
            groups.setdefault(f"{x['size']}^2, {x['rules']}", []).append(x)
        top = 1
        for label, pts in groups.items():
            pts.sort(key=lambda p: p["threads"])
            t = [1] + [p["threads"] for p in pts]
            y = [1.0] + [p["ratio"] for p in pts]
            lo = [0.0] + [p["ratio"] - p["ci_low"] for p in pts]
            hi = [0.0] + [p["ci_high"] - p["ratio"] for p in pts]
            ax.errorbar(t, y, yerr=[lo, hi], marker="o", capsize=3, label=label)
            top = max(top, max(t))
        ax.plot([1, top], [1, top], color="grey", linestyle=":", label="ideal")
        ax.set_xlabel("threads")
        ax.set_ylabel("speed-up over 1 thread")
        ax.set_title("cpu backend: speed-up vs threads (bootstrap 95 % CI)", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / f"{name}-threads.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def write(doc: dict[str, Any], out: Path, name: str, with_plots: bool = True) -> list[Path]:
    """Write ``<out>/<name>.json``, ``<out>/<name>.md`` and the plots; returns their paths."""
    validate(doc)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    json_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    md_path.write_text(markdown(doc), encoding="utf-8")
    return [json_path, md_path, *(plots(doc, out, name) if with_plots else [])]


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Markdown table of the cases two result documents share: site-updates/s new over old, bootstrap 95 % CI."""
    before = {r["case"]: r for r in old["rows"]}
    lines = ["| case | old site-updates/s | new site-updates/s | new / old [95 % CI] |", "|---|---:|---:|---:|"]
    for r in new["rows"]:
        o = before.get(r["case"])
        if o is not None:
            ratio, lo, hi = bootstrap_ratio(rates(r), rates(o))
            lines.append(f"| {r['case']} | {_si(o['site_updates_per_s'])} | {_si(r['site_updates_per_s'])} | "
                         f"{ratio:.2f} [{lo:.2f}-{hi:.2f}] |")
    return "\n".join(lines) + "\n"


def load(path: Path) -> dict[str, Any]:
    """Read a result file; schema-1 files (before ``rules`` and per-run samples) are upgraded for comparing."""
    doc = json.loads(Path(path).read_text(encoding="utf-8"))
    if doc.get("schema_version") == 1:
        for r in doc["rows"]:
            r.setdefault("rules", "core")
            r.setdefault("step_ms_samples", [r["step_ms_median"]])
            if r["impl"] == "cpu":
                r["case"] = f"{r['case']}-core"
            elif r["impl"] in ("reference", "cuda"):
                r["case"] = f"{r['case']}-core"
        return doc
    validate(doc)
    return doc
