"""Smoke tests of the benchmark harness (``python -m benchmarks``): it runs and writes the documented schema.

Speed is never asserted here; ``--smoke`` sizes are far too small to measure anything.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.compare import TARGETS, bootstrap_ratio, targets  # noqa: E402
from benchmarks.registry import Case, config_for, scenario  # noqa: E402
from benchmarks.report import MACHINE_KEYS, ROW_KEYS, SCHEMA_VERSION, validate  # noqa: E402
from benchmarks.runner import run_case  # noqa: E402


def cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    proc = cli("--smoke", "--out", str(out), "--name", "smoke")
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "smoke.json").read_text(encoding="utf-8")), out


def test_smoke_writes_json_markdown_and_plots_with_documented_schema(smoke):
    doc, out = smoke
    validate(doc)
    assert doc["mode"] == "smoke" and doc["schema_version"] == SCHEMA_VERSION
    md = (out / "smoke.md").read_text(encoding="utf-8")
    assert "| implementation | rules | size |" in md and "Ratios (median over median" in md
    assert (out / "smoke-throughput.png").stat().st_size > 0
    if doc["machine"]["numba_threads"] > 1:
        assert (out / "smoke-threads.png").stat().st_size > 0


def test_smoke_rows_cover_reference_cpu_both_rule_sets_and_limit_with_machine_info(smoke):
    doc, _ = smoke
    cases = {r["case"] for r in doc["rows"]}
    assert {"reference-16-core", "cpu-16-t1-core", "cpu-16-t1-full", "limit-16-t1"} <= cases
    top = doc["machine"]["numba_threads"]
    if top > 1:
        assert {f"cpu-16-t{top}-core", f"cpu-16-t{top}-full", f"limit-16-t{top}"} <= cases
    for row in doc["rows"]:
        assert set(ROW_KEYS) <= row.keys() and set(MACHINE_KEYS) <= row.keys()
        assert row["sites"] == row["size"] ** 2 and row["seed"] == doc["config"]["seed"]
        assert row["steps"] >= 1 and row["repeats"] == doc["config"]["repeats"] == len(row["step_ms_samples"])
        assert row["step_ms_min"] <= row["step_ms_median"] <= row["step_ms_max"]
        if row["impl"] != "limit":
            assert row["n_cart"] >= 1 and row["counts_initial"][5] == row["n_cart"]  # index 5 = CART
    # every implementation of one rule set starts from the same window
    for rules in ("core", "full"):
        assert len({tuple(r["counts_initial"]) for r in doc["rows"] if r["rules"] == rules}) == 1
    # the limit kernel leaves the state as it found it
    for r in doc["rows"]:
        if r["impl"] == "limit":
            assert r["counts_final"] == r["counts_initial"]


def test_the_thread_counts_of_a_case_time_the_same_steps(monkeypatch):
    from benchmarks import runner

    asked = []

    def fake(case, config, steps=None):  # a faster thread count would choose more steps of its own
        asked.append((case.name, steps))
        return {"steps": steps if steps is not None else 10 * case.threads, "site_updates_per_s": 1.0,
                "step_ms_median": 1.0}

    monkeypatch.setattr(runner, "run_case", fake)
    monkeypatch.setattr(runner, "document", lambda config, rows, skipped, patients: {"rows": rows})
    cases = [Case("cpu", 64, threads=1), Case("cpu", 64, threads=2), Case("cpu", 128, threads=2),
             Case("cpu", 128, threads=1), Case("cpu", 64, threads=2, rules="full")]
    doc = runner.run(config_for("smoke", isolate=False), cases)
    # the first case of an implementation, rule set and size chooses; its other thread counts reuse the count
    assert asked == [("cpu-64-t1-core", None), ("cpu-64-t2-core", 10), ("cpu-128-t2-core", None),
                     ("cpu-128-t1-core", 20), ("cpu-64-t2-full", None)]
    assert [r["steps"] for r in doc["rows"]] == [10, 10, 20, 20, 20]


def test_smoke_comparisons_pair_rows_with_their_baselines(smoke):
    doc, _ = smoke
    kinds = {(c["kind"], c["case"]) for c in doc["comparisons"]}
    assert ("vs_reference", "cpu-16-t1-core") in kinds
    assert ("vs_limit", "cpu-16-t1-full") in kinds
    top = doc["machine"]["numba_threads"]
    if top > 1:
        assert ("threads", f"cpu-16-t{top}-full") in kinds
    rows = {r["case"]: r for r in doc["rows"]}
    for c in doc["comparisons"]:
        assert c["ci_low"] <= c["ci_high"] and c["baseline"] in rows
        if c["kind"] == "vs_reference":
            expected = rows[c["case"]]["site_updates_per_s"] / rows[c["baseline"]]["site_updates_per_s"]
            assert abs(c["ratio"] / expected - 1) < 1e-9
    names = [t["target"] for t in doc["targets"]]
    assert len(names) == len(TARGETS) and all(t["holds"] is None for t in doc["targets"]
                                                          if t["measured"] is None)


def test_bootstrap_ratio_interval_brackets_a_clear_ratio():
    g = np.random.default_rng(0)
    num = list(2.0 + 0.01 * g.standard_normal(9))
    den = list(1.0 + 0.01 * g.standard_normal(9))
    ratio, lo, hi = bootstrap_ratio(num, den)
    assert lo <= ratio <= hi and 1.9 < lo and hi < 2.1
    assert bootstrap_ratio([3.0], [1.5]) == (2.0, 2.0, 2.0)


def test_targets_hold_or_not_by_their_bound():
    comps = [{"kind": "vs_limit", "size": 1024, "rules": "full", "threads": 2, "ratio": 5.0, "ci_low": 4.5,
              "ci_high": 5.5, "case": "a", "baseline": "b"}]
    patients = [{"label": "28-day", "days": 28.0, "cache": "warm", "wall_s": 14.0, "compile_s": None}]
    t = {x["target"]: x for x in targets([], comps, patients)}
    assert t["full step <= 4x the limit kernel, 1024^2"]["holds"] is False
    assert t["default 28-day patient <= 60 s (warm cache)"]["holds"] is True
    assert t["cpu >= 200x the Mesa reference, core rules, 256^2"]["holds"] is None


def test_validate_names_the_broken_field(smoke):
    doc, _ = smoke
    broken = copy.deepcopy(doc)
    del broken["rows"][0]["site_updates_per_s"]
    with pytest.raises(ValueError, match="site_updates_per_s"):
        validate(broken)
    broken = copy.deepcopy(doc)
    broken["rows"][0]["impl"] = "gpu"
    with pytest.raises(ValueError, match="impl"):
        validate(broken)
    broken = copy.deepcopy(doc)
    broken["rows"][0]["step_ms_samples"] = []
    with pytest.raises(ValueError, match="step_ms_samples"):
        validate(broken)


def test_compare_reports_each_shared_case_with_an_interval(smoke):
    _, out = smoke
    path = out / "smoke.json"
    proc = cli("--compare", str(path), str(path))
    assert proc.returncode == 0, proc.stderr
    assert "reference-16-core" in proc.stdout
    # A file against itself: every ratio is 1.00 and its bootstrap interval (old and new resampled
    # independently) contains 1.
    import re

    rows = re.findall(r"\| (\S+) \|[^|]*\|[^|]*\| ([0-9.]+) \[([0-9.]+)-([0-9.]+)\] \|", proc.stdout)
    assert rows
    for _case, ratio, low, high in rows:
        assert ratio == "1.00" and float(low) <= 1.0 <= float(high)


def test_compare_reads_schema_1_files():
    old = ROOT / "benchmarks" / "results" / "quick-after-fastpath.json"
    if not old.exists():
        pytest.skip("no schema-1 result file kept")
    proc = cli("--compare", str(old), str(old))
    assert proc.returncode == 0, proc.stderr
    assert "cpu-128-t1-core" in proc.stdout


def test_list_names_cases_without_running():
    proc = cli("--list", "--sizes", "64")
    assert proc.returncode == 0, proc.stderr
    assert "reference-64-core" in proc.stdout and "cpu-64-t1-full" in proc.stdout and "limit-64-t1" in proc.stdout


def test_gpu_list_names_cuda_sizes_up_to_8192_or_says_why_not():
    proc = cli("--gpu", "--list")
    assert proc.returncode == 0, proc.stderr
    if "cuda: no usable CUDA GPU" not in proc.stdout:
        assert "cuda-8192-full" in proc.stdout and "limit-cuda-8192" in proc.stdout


@pytest.mark.parametrize("args", [("--sizes", "abc"), ("--sizes", "4"), ("--repeats", "0"), ("--smoke", "--quick"),
                                  ("--rules", "most"), ("--patient", "0"), ("--threads", "0")])
def test_bad_arguments_exit_2_with_a_message(args):
    proc = cli(*args)
    assert proc.returncode == 2
    assert "error" in proc.stderr


def test_in_process_run_case_returns_a_complete_row():
    config = config_for("smoke", isolate=False)
    row = run_case(Case("reference", 16), config)
    assert set(ROW_KEYS) <= row.keys()
    assert row["impl"] == "reference" and row["backend"] == "mesa" and row["size"] == 16


def test_limit_kernel_leaves_the_state_unchanged():
    from benchmarks.limit import limit_step

    config = config_for("smoke")
    _, state, tables, _, _ = scenario(16, config, "full")
    before = state.copy()
    for k in range(3):
        limit_step(state.cell, state.tissue, state.traits, state.fields, tables.key, k, 0)
    for name, a in before.arrays().items():
        assert np.array_equal(getattr(state, name), a), name


def test_gpu_smoke_runs_cuda_rows_under_the_simulator(tmp_path):
    """``--gpu --smoke`` under NUMBA_ENABLE_CUDASIM=1: cuda and cuda-limit rows, the cuda/cpu ratio, valid schema."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "CART_ABM_CUDA_BLOCK": "4,4"}
    proc = cli("--gpu", "--smoke", "--no-plots", "--out", str(tmp_path), "--name", "g", env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "g.json").read_text(encoding="utf-8"))
    validate(doc)
    cases = {r["case"] for r in doc["rows"]}
    assert {"cuda-16-full", "cuda-24-full", "limit-cuda-16"} <= cases
    assert doc["machine"]["cuda_simulated"] is True
    assert any(c["kind"] == "cuda_vs_cpu" for c in doc["comparisons"])


def test_memwatch_samples_the_command_and_its_children(tmp_path):
    from benchmarks import memwatch

    child = "import subprocess, sys, time; subprocess.run([sys.executable, '-c', 'x = bytearray(40_000_000); " \
            "import time; time.sleep(1.0)']); sys.exit(3)"
    out = tmp_path / "mem.csv"
    assert memwatch.main(["--out", str(out), "--every", "0.1", "--", sys.executable, "-c", child]) == 3
    with out.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= 5
    assert max(int(r["processes"]) for r in rows) >= 2  # the grandchild is counted
    assert max(float(r["rss_total_mib"]) for r in rows) >= 38.0  # its 40 MB buffer is resident


def test_profile_maps_compiled_functions_to_perf_symbols(tmp_path):
    """benchmarks.profile names Numba-compiled code for perf: addresses, sizes and readable names."""
    import numba

    from benchmarks.profile import _short, compiled_functions, dump_code

    @numba.njit
    def plus_one(x):
        return x + 1

    plus_one(1)
    functions = compiled_functions(plus_one)
    named = [(a, size) for a, size, name in functions if name.endswith("plus_one")]
    assert named and all(size > 0 for _, size in named)  # the function and its wrappers (cpython., cfunc.)
    assert [a for a, _, _ in functions] == sorted(a for a, _, _ in functions)
    assert _short("_ZN7kernels5rules8act_cartB3v12E") == "kernels.rules.act_cart"
    assert dump_code([(named[0][0], 16, "kernels.probe")], tmp_path) == 1
    assert len((tmp_path / f"kernels.probe@{named[0][0]:x}.bin").read_bytes()) == 16


def test_equivalence_compare_pairs_patients_and_finds_a_real_difference():
    """benchmarks.equivalence: identical arms agree exactly, a shifted outcome is found, missing values pair out."""
    from benchmarks.equivalence import OUTCOMES, compare, report

    g = np.random.default_rng(2)
    reference = {p: {k: float(g.integers(0, 2)) for k in OUTCOMES} for p in range(40)}
    for p in range(40):
        reference[p]["cart_peak_blood_per_ul"] = float(g.lognormal(6, 0.5))
    same = compare(reference, copy.deepcopy(reference))
    assert all(r["agrees"] and r["difference"] == 0 and r["low"] == r["high"] == 0 for r in same)
    other = copy.deepcopy(reference)
    for p in range(40):
        other[p]["cart_peak_blood_per_ul"] *= 1.5  # every patient higher: the interval must exclude 0
        other[p]["relapse_day"] = None if p < 10 else other[p]["relapse_day"]
        other[p]["cr_day28"] = 1.0  # every discordant pair one way
    rows = {r["outcome"]: r for r in compare(reference, other)}
    peak = rows["cart_peak_blood_per_ul"]
    assert not peak["agrees"] and peak["low"] > 0
    assert rows["relapse_day"]["pairs"] == 30 and rows["relapse_day"]["missing_in_one_arm"] == 10
    cr = rows["cr_day28"]
    assert cr["discordant"][0] == 0 and cr["discordant"][1] == 40 - cr["reference_rate"]["k"]
    assert cr["mcnemar_p"] < 1e-4 and not cr["agrees"]
    text = report(list(rows.values()), "grid.turnover", ("site", "group"), 40, 28.0, 1)
    assert "| cart_peak_blood_per_ul | 40 |" in text and "**no**" in text
