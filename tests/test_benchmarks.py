"""Smoke tests of the benchmark harness (``python -m benchmarks``): it runs and writes the documented schema.

Speed is never asserted here; ``--smoke`` sizes are far too small to measure anything.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import benchmarks  # noqa: E402  (the benchmarks package lives at the repository root, not in the distribution)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    proc = cli("--smoke", "--out", str(out), "--name", "smoke")
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "smoke.json").read_text(encoding="utf-8")), out


def test_smoke_writes_json_and_markdown_with_documented_schema(smoke):
    doc, out = smoke
    benchmarks.validate(doc)
    assert doc["mode"] == "smoke" and doc["schema_version"] == benchmarks.SCHEMA_VERSION
    md = (out / "smoke.md").read_text(encoding="utf-8")
    assert "| implementation | size |" in md and "Speed-up over the Mesa reference" in md


def test_smoke_rows_cover_reference_and_cpu_with_machine_info(smoke):
    doc, _ = smoke
    cases = {r["case"] for r in doc["rows"]}
    assert {"reference-16", "cpu-16-t1"} <= cases
    top = doc["machine"]["numba_threads"]
    if top > 1:
        assert f"cpu-16-t{top}" in cases
    for row in doc["rows"]:
        assert set(benchmarks.ROW_KEYS) <= row.keys() and set(benchmarks.MACHINE_KEYS) <= row.keys()
        assert row["sites"] == row["size"] ** 2 and row["seed"] == doc["config"]["seed"]
        assert row["steps"] >= 1 and row["repeats"] == doc["config"]["repeats"]
        assert row["n_cart"] >= 1 and row["counts_initial"][5] == row["n_cart"]  # index 5 = CART
    # every implementation starts from the same window
    assert len({tuple(r["counts_initial"]) for r in doc["rows"]}) == 1


def test_smoke_ratios_pair_each_kernel_row_with_the_reference(smoke):
    doc, _ = smoke
    kernel_rows = [r for r in doc["rows"] if r["impl"] != "reference"]
    assert len(doc["ratios"]) == len(kernel_rows)
    ref = next(r for r in doc["rows"] if r["impl"] == "reference")
    for ratio in doc["ratios"]:
        assert ratio["reference_site_updates_per_s"] == ref["site_updates_per_s"]
        assert ratio["meets_target"] == (ratio["speedup"] >= doc["target_speedup"])


def test_validate_names_the_broken_field(smoke):
    doc, _ = smoke
    broken = copy.deepcopy(doc)
    del broken["rows"][0]["site_updates_per_s"]
    with pytest.raises(ValueError, match="site_updates_per_s"):
        benchmarks.validate(broken)
    broken = copy.deepcopy(doc)
    broken["rows"][0]["impl"] = "gpu"
    with pytest.raises(ValueError, match="impl"):
        benchmarks.validate(broken)


def test_compare_reports_each_shared_case(smoke):
    _, out = smoke
    path = out / "smoke.json"
    proc = cli("--compare", str(path), str(path))
    assert proc.returncode == 0, proc.stderr
    assert "reference-16" in proc.stdout and "1.00" in proc.stdout


def test_list_names_cases_without_running():
    proc = cli("--list", "--sizes", "64")
    assert proc.returncode == 0, proc.stderr
    assert "reference-64" in proc.stdout and "cpu-64-t1" in proc.stdout


@pytest.mark.parametrize("args", [("--sizes", "abc"), ("--sizes", "4"), ("--repeats", "0"), ("--smoke", "--quick")])
def test_bad_arguments_exit_2_with_a_message(args):
    proc = cli(*args)
    assert proc.returncode == 2
    assert "error" in proc.stderr


def test_in_process_run_case_returns_a_complete_row():
    config = benchmarks.config_for("smoke", isolate=False)
    row = benchmarks.run_case(benchmarks.Case("reference", 16), config)
    assert set(benchmarks.ROW_KEYS) <= row.keys()
    assert row["impl"] == "reference" and row["backend"] == "mesa" and row["size"] == 16
