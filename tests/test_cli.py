"""End-to-end CLI: the run contract, and clean failure on bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from abm.cli import main, parse_duration_min
from abm.errors import ParamError
from abm.params import Params

SUMMARY_KEYS = {
    "seed", "backend", "days", "cr_day28", "mrd_day28", "mrd_negative_day28", "crs_max_grade", "icans_max_grade",
    "cart_peak_blood_per_ul", "cart_peak_day", "relapse", "relapse_day", "relapse_antigen_negative",
    "b_cell_aplasia_days", "version",
}
FAST = ["--set", "grid.size=24", "--set", "time.observe_every_h=12", "--quiet", "--backend", "cpu"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["run", "--animate", "--days", "28", "--seed", "4", "--out", str(out), *FAST]) == 0
    return out


def test_run_writes_every_contract_file(run_dir):
    for name in ("summary.json", "timeseries.csv", "params.toml", "timecourse.png", "final_state.npz",
                 "marrow.gif", "snapshots.npz"):
        assert (run_dir / name).stat().st_size > 0, name


def test_summary_has_contract_keys_filled(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert summary["seed"] == 4 and summary["backend"] == "cpu" and summary["days"] == pytest.approx(28.0)
    assert isinstance(summary["cr_day28"], bool) and 0.0 <= summary["mrd_day28"] <= 1.0
    assert summary["crs_max_grade"] in range(5) and summary["icans_max_grade"] in range(5)
    assert summary["not_modelled"] == []
    assert summary["cart_peak_blood_per_ul"] > 0 and 0 <= summary["cart_peak_day"] <= 28


def test_params_toml_reproduces_the_run_parameters(run_dir):
    p = Params.from_toml(run_dir / "params.toml")
    assert p["grid.size"] == 24 and p["time.days"] == 28.0


def test_final_state_holds_the_lattice(run_dir):
    with np.load(run_dir / "final_state.npz") as f:
        assert f["cell"].shape == (24, 24) and f["traits"].shape[:2] == (24, 24)
        assert f["trait_names"][0] == "antigen"


def test_console_script_runs(tmp_path):
    out = tmp_path / "r"
    proc = subprocess.run([sys.executable, "-m", "abm.cli", "run", "--days", "0.5", "--out", str(out), *FAST],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "summary.json").read_text())["cr_day28"] is None  # shorter than 28 days


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--set", "grid.sizee=10"], "grid.sizee"),
        (["--set", "patient.marrow_blast_fraction=2"], "patient.marrow_blast_fraction = 2"),
        (["--set", "product.dose_per_kg=nan"], "product.dose_per_kg"),
        (["--set", "schedule.fractions=[0.5]", "--set", "schedule.days=[0,1]"], "schedule"),
        (["--days", "-1"], "time.days"),
        (["--backend", "cuda"], "cuda"),
        (["--snapshot-every", "soon"], "--snapshot-every"),
    ],
)
def test_bad_input_exits_2_names_field_and_leaves_no_folder(tmp_path, capsys, args, needle):
    out = tmp_path / "never"
    assert main(["run", "--out", str(out), "--quiet", *args]) == 2
    err = capsys.readouterr().err
    assert needle in err and "error" in err
    assert not out.exists()
    assert not any(tmp_path.iterdir())  # no staging folder either


def test_malformed_config_exits_2(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[grid]\nsize = \n")
    assert main(["run", "--config", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_refuses_to_overwrite_a_foreign_folder(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    assert main(["run", "--out", str(mine), "--days", "0.1", *FAST]) == 2
    assert (mine / "thesis.tex").read_text() == "precious"


def test_parse_duration():
    assert parse_duration_min("30") == 30 and parse_duration_min("6h") == 360 and parse_duration_min("1d") == 1440
    with pytest.raises(ParamError):
        parse_duration_min("0h")


def test_check_invariants_flag_runs_clean(tmp_path):
    assert main(["run", "--check-invariants", "--days", "0.2", "--out", str(tmp_path / "i"), *FAST]) == 0


def test_field_overflow_stops_with_step_and_cause(tmp_path, capsys):
    code = main(["run", "--days", "2", "--out", str(tmp_path / "f"), "--set", "cxcl12.secretion_fg_per_cell_per_h=1000",
                 "--set", "cxcl12.half_life_h=48", *FAST])
    assert code == 1
    err = capsys.readouterr().err
    assert "lattice step" in err and "secretion" in err


def test_animate_command_writes_gif_from_a_run(run_dir):
    out = run_dir / "again.gif"
    assert main(["animate", str(run_dir), "--fps", "12", "--field", "none", "--out", str(out), "--quiet"]) == 0
    assert out.stat().st_size > 0
    from PIL import Image

    sizes = []
    for zoom in (2, 4):
        zoomed = run_dir / f"zoom{zoom}.gif"
        assert main(["animate", str(run_dir), "--zoom", str(zoom), "--out", str(zoomed), "--quiet"]) == 0
        sizes.append(Image.open(zoomed).size)
    assert sizes[1][0] > sizes[0][0]  # --zoom sets the pixels per site (the map widens the frame)
    assert main(["animate", str(run_dir), "--zoom", "0", "--out", str(run_dir / "no.gif"), "--quiet"]) == 2
    assert not (run_dir / "no.gif").exists()


def test_animate_and_view_bad_input_exit_2(tmp_path, capsys):
    assert main(["animate", str(tmp_path / "missing")]) == 2
    assert main(["view", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err


def test_params_lists_every_key_or_those_matching_the_words(capsys):
    from abm.params import SCHEMA

    assert main(["params"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [p.key for p in SCHEMA]
    assert main(["params", "KILL", "rate", "--sources"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cart.kill_rate_per_h") and "source: PhysiCell" in out and "grid.size" not in out
    assert main(["params", "no-such-word"]) == 2
    assert "cart-abm params" in capsys.readouterr().err


# -- cart-abm experiment -------------------------------------------------------------------------------------------
REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


def test_experiment_runs_the_named_experiment_smoke(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    out = tmp_path / "tb"
    assert main(["experiment", "tumor_burden", "--smoke", "--quiet", "--workers", "1", "--out", str(out)]) == 0
    assert (out / "README.md").is_file() and (out / "results.csv").is_file()


def test_experiment_unknown_name_exits_2_listing_the_experiments(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["experiment", "no_such_study", "--smoke"]) == 2
    err = capsys.readouterr().err
    assert "no_such_study" in err and "dose_response" in err and "crs_management" in err


def test_experiment_bad_option_exits_2_from_the_experiment(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    assert main(["experiment", "fractionation", "--smoke", "--n", "0", "--out", str(tmp_path / "x")]) == 2
    assert "--n = 0" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_experiment_and_bench_run_from_the_installed_tool_outside_a_checkout(tmp_path):
    env = {**os.environ, "PYTHONPATH": ""}
    out = tmp_path / "dr"
    proc = subprocess.run([sys.executable, "-m", "abm.cli", "experiment", "dose_response", "--smoke", "--quiet",
                           "--out", str(out)], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    assert (out / "README.md").is_file() and (out / "results.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dr"]  # nothing written beside --out
    listing = subprocess.run([sys.executable, "-m", "abm.cli", "bench", "--smoke", "--list"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120, env=env)
    assert listing.returncode == 0, listing.stderr
    assert "cpu-16-t1-core" in listing.stdout.split()


def test_abm_imports_neither_experiments_nor_benchmarks_and_only_the_kernels_package_api():
    import ast

    for path in (REPO / "abm").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in ("experiments", "benchmarks"), f"{path}: imports {name}"
                assert not name.startswith("kernels."), f"{path}: imports {name}, not the kernels package API"
        assert "importlib.import_module(\"experiments" not in path.read_text(encoding="utf-8"), path


# -- first run, memory ------------------------------------------------------------------------------------------------
def test_cold_kernel_cache_is_announced_and_compiled_before_the_progress_bar(tmp_path, capsys, monkeypatch):
    import kernels
    from abm import warmup

    monkeypatch.setattr(kernels, "step_cached", lambda: False)
    assert main(["run", "--days", "0.25", "--out", str(tmp_path / "r"), *FAST[:4], "--backend", "cpu"]) == 0
    err = capsys.readouterr().err
    announce = err.index(f"cart-abm: compiling kernels (once per machine, about {warmup.COMPILE_S} s)...")
    assert announce < err.index("cart-abm: compiled in") < err.index("simulating")  # the bar's ETA starts after


def test_warm_kernel_cache_is_not_announced(tmp_path, capsys):
    assert main(["run", "--days", "0.1", "--out", str(tmp_path / "a"), *FAST]) == 0  # compiles if need be
    capsys.readouterr()
    assert main(["run", "--days", "0.1", "--out", str(tmp_path / "b"), *FAST]) == 0
    assert "compiling" not in capsys.readouterr().err


def test_step_cached_looks_for_the_step_index_in_numba_cache_folder(tmp_path, monkeypatch):
    import hashlib

    import numba

    import kernels
    from kernels import step_cached as kernels_cached

    assert main(["run", "--days", "0.1", "--out", str(tmp_path / "r"), *FAST]) == 0  # compiles if need be
    assert kernels_cached()
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "empty"))
    assert not kernels_cached()
    source = os.path.dirname(os.path.abspath(kernels.__file__))
    folder = tmp_path / "empty" / f"kernels_{hashlib.sha1(source.encode()).hexdigest()}"
    folder.mkdir(parents=True)
    (folder / f"cpu.step-159.py{sys.version_info.major}{sys.version_info.minor}.nbi").write_bytes(b"")
    assert kernels_cached()


@pytest.mark.slow
def test_first_run_on_a_cold_cache_announces_the_compilation(tmp_path):
    env = {**os.environ, "CART_ABM_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "abm.cli", "run", "--days", "0.1", "--out", str(tmp_path / "r"),
                           *FAST], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "compiling kernels (once per machine" in proc.stderr and "compiled in" in proc.stderr


def test_a_run_too_large_for_this_machine_exits_2_before_allocating(tmp_path, capsys, monkeypatch):
    from abm import resources

    monkeypatch.setattr(resources, "available_bytes", lambda: 10**8)
    out = tmp_path / "huge"
    assert main(["run", "--set", "grid.size=4096", "--days", "0.1", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "grid.size = 4096" in err and "available" in err and not out.exists()


def test_a_large_run_says_how_much_memory_it_will_use(tmp_path, capsys, monkeypatch):
    from abm import resources

    monkeypatch.setattr(resources, "check_run_memory", lambda params, snapshots=0: resources.BASELINE_BYTES + 4 * 10**8)
    assert main(["run", "--days", "0.1", "--out", str(tmp_path / "r"), *FAST]) == 0
    line = f"cart-abm: this run will use about {(resources.BASELINE_BYTES + 4 * 10**8) / 1e6:,.0f} MB"
    assert line in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["run", "--days", "0.1", "--out", str(tmp_path / "s"), *FAST]) == 0  # the real estimate: small
    assert "will use about" not in capsys.readouterr().err
