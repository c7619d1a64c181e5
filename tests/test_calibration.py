"""Calibration: target bands and loss, the calibrated defaults, the optimiser and the report (smoke)."""

from __future__ import annotations

import csv
import json
import sys
import tomllib

import numpy as np
import pytest

from abm import calibration as C
from abm import params as P
from abm.cohort import FACTOR_KIND, PROFILE_KEYS
from abm.errors import ParamError


def patient(cr=True, mrd_neg=True, crs=2, icans=0, onset=3.0, peak_day=12.0, toci=1, cmax=400.0):
    return {"cr_day28": cr, "mrd_negative_day28": mrd_neg, "crs_max_grade": crs, "icans_max_grade": icans,
            "crs_onset_day": onset if crs else None, "cart_peak_day": peak_day, "tocilizumab_doses": toci,
            "cart_peak_blood_per_ul": cmax}


def cohort_in_every_band() -> list[dict]:
    """100 patients whose rates sit inside every band (CR 85, CRS any 70, >= 3 30, ICANS 30 / 10, toci 38 % of CRS)."""
    rows = []
    for i in range(100):
        crs = 0 if i < 30 else (3 if i < 60 else 1)
        rows.append(patient(cr=i < 85, mrd_neg=i < 85, crs=crs, icans=3 if i >= 90 else (1 if i >= 70 else 0),
                            toci=1 if 30 <= i < 30 + 27 else 0))
    return rows


def test_a_cohort_inside_every_band_has_zero_loss():
    measured = C.measure(cohort_in_every_band())
    assert {k: m["miss"] for k, m in measured.items()} == {t.key: 0.0 for t in C.TARGETS if t.horizon_days == 28}
    assert C.loss(cohort_in_every_band()) == 0.0


def test_loss_grows_with_the_distance_outside_a_band():
    base = cohort_in_every_band()
    severe = [dict(r, crs_max_grade=3) if r["crs_max_grade"] else r for r in base]  # 70 % severe CRS
    worse = [dict(r, crs_max_grade=3) for r in base]  # 100 % CRS, all severe
    assert 0 < C.loss(severe) < C.loss(worse)
    t = C.TARGET_BY_KEY["crs_grade3plus_rate"]
    assert C.measure(severe)["crs_grade3plus_rate"]["miss"] == pytest.approx((0.70 - t.high) / t.scale)


def test_loss_over_named_targets_sums_only_their_terms():
    severe = [dict(r, crs_max_grade=3, cr_day28=True) for r in cohort_in_every_band()]  # all CR, all severe CRS
    measured = C.measure(severe)
    keys = ["crs_grade3plus_rate", "icans_any_rate"]
    expected = sum(C.TARGET_BY_KEY[k].weight * measured[k]["miss"] ** 2 for k in keys)
    assert expected > 0
    assert C.loss(severe, keys) == pytest.approx(expected)
    assert C.loss(severe) > C.loss(severe, keys)  # the CR miss counts only without the restriction
    assert C.loss(severe, ["icans_any_rate"]) == 0.0


def followed(days, responder=True, relapse_day=None):
    return {**patient(), "follow_up_days": days, "cr_within_3mo": responder, "mrd_negative_within_3mo": responder,
            "relapse": None if not responder else relapse_day is not None, "relapse_day": relapse_day}


def test_targets_are_scored_only_by_cohorts_that_run_past_their_horizon():
    day28 = C.scored(cohort_in_every_band())  # rows without follow_up_days: 28-day runs
    assert [t.key for t in day28] == [t.key for t in C.TARGETS if t.horizon_days == C.DAY28]
    assert "relapse_within_6mo" not in C.measure(cohort_in_every_band())
    half_year = [followed(180)] * 10
    assert {t.key for t in C.scored(half_year)} == {t.key for t in C.TARGETS if t.horizon_days <= 180}
    year = [followed(365)] * 10
    assert {t.key for t in C.scored(year)} == set(C.TARGET_BY_KEY)


def test_relapse_targets_count_3_month_responders_relapsing_by_the_horizon():
    # 10 responders: relapse on days 100 and 150 (by 6 months), 300 and 340 (by 12), 1 on day 400 (after);
    # 2 non-responders, who do not count
    rows = [followed(365, relapse_day=d) for d in (100, 150, 300, 340, 400, None, None, None, None, None)]
    rows += [followed(365, responder=False)] * 2
    m = C.measure(rows)
    assert (m["relapse_within_6mo"]["value"], m["relapse_within_6mo"]["n"]) == (0.2, 10)
    assert (m["relapse_within_12mo"]["value"], m["relapse_within_12mo"]["n"]) == (0.4, 10)
    assert m["relapse_within_6mo"]["miss"] == m["relapse_within_12mo"]["miss"] == 0.0
    assert m["cr_within_3mo"]["value"] == pytest.approx(10 / 12)
    # a patient followed only 180 days says nothing about relapse by 12 months
    shorter = [dict(r, follow_up_days=180) for r in rows[:4]] + rows[4:]
    assert C.measure(shorter)["relapse_within_12mo"]["n"] == 6
    none = [followed(365, relapse_day=None)] * 10  # no relapse at all: below both bands
    assert C.measure(none)["relapse_within_6mo"]["miss"] == pytest.approx(0.11 / 0.05)
    assert C.loss(none) > C.loss(rows)


def test_missing_measurement_counts_as_a_large_miss():
    rows = [patient(cr=False, mrd_neg=False)] * 10  # no responders: MRD among CR is undefined
    assert C.measure(rows)["mrd_negative_among_cr"] == {"value": None, "n": 0, "miss": 3.0}


def test_priors_lie_inside_the_schema_ranges_and_targets_have_sources():
    for prior in C.PRIORS:
        spec = P.BY_KEY[prior.key]
        assert spec.low <= prior.low < prior.high <= spec.high, prior.key
        assert prior.source
    for target in C.TARGETS:
        assert target.low <= target.high and target.scale > 0 and target.source


SWITCHES = {"body.targets_per_cart", "myeloid.il6_pg_ml_per_day", "myeloid.il1_icans_pg_ml",
            "icans.endothelial_sensitivity", "cart.proofreading_steps", "cart.detach_per_unbinding",
            "blast.lineage_switch_per_division", "cart.trogocytosis_fraction", "myeloid.half_drive_kills_per_day"}
# assumptions that sourced effect sizes replace at the recalibration: their defaults may lie outside the range
RESOURCED = {"therapy.steroid_proliferation_factor", "therapy.steroid_activation_factor"}


def test_next_priors_are_mechanisms_now_off_with_ranges_inside_the_schema():
    fitted = {p.key for p in C.PRIORS}
    for prior in C.NEXT_PRIORS:
        spec = P.BY_KEY[prior.key]
        assert spec.low <= prior.low < prior.high <= spec.high, prior.key
        assert prior.source
        default = P.Params.default()[prior.key]
        if prior.key in SWITCHES:  # a new mechanism: off until the recalibration, with its range excluding off
            assert default == 0.0 and prior.low > 0.0, prior.key
        elif prior.key in RESOURCED:
            assert "2019" in prior.source, prior.key
        elif prior.key not in fitted:  # a rate of a switched-off mechanism: its default inside the range
            assert prior.low <= default <= prior.high, prior.key
        else:  # a fitted key whose range the recalibration narrows
            assert C.PRIOR_BY_KEY[prior.key].low <= prior.low and prior.high <= C.PRIOR_BY_KEY[prior.key].high
    for key, on in C.NEXT_CHOICES.items():  # the switched mechanisms are off now, and "on" is allowed
        assert P.Params.default()[key] != on and P.BY_KEY[key].check(on) == on


def test_calibrated_values_are_the_defaults_and_name_their_origin():
    calibrated = P.read_calibrated()
    assert set(calibrated) == {p.key for p in C.PRIORS}  # the committed calibration fits every prior
    for key, value in calibrated.items():
        assert P.Params.default()[key] == pytest.approx(value)
        assert "calibrated" in P.BY_KEY[key].source
        prior = C.PRIOR_BY_KEY[key]
        assert prior.low <= value <= prior.high, f"{key} = {value} left its calibration range"


def test_calibration_file_with_an_unknown_key_is_refused(tmp_path, monkeypatch):
    bad = tmp_path / "calibrated.toml"
    bad.write_text('[values]\n"cart.no_such_key" = 1.0\n')
    from abm.params import defaults, schema

    with pytest.raises(ParamError, match="cart.no_such_key"):
        defaults.calibrated(schema.DECLARED, defaults.read_calibrated(bad), bad)


def test_calibrate_smoke_writes_a_calibration_file_and_resumes(tmp_path):
    from experiments import calibrate

    out = tmp_path / "study"
    assert calibrate.main(["--smoke", "--out", str(out)]) == 0
    written = tomllib.loads((out / "calibrated.toml").read_text())
    assert set(written["values"]) == {p.key for p in C.PRIORS}
    assert written["calibration"]["trials"] == 2
    for key, value in written["values"].items():
        assert C.PRIOR_BY_KEY[key].low <= value <= C.PRIOR_BY_KEY[key].high
    assert written["ranges"]["niche.kill_protection"]["source"] == C.PRIOR_BY_KEY["niche.kill_protection"].source
    assert calibrate.main(["--smoke", "--out", str(out), "--trials", "3"]) == 0  # resumes: one more trial
    assert tomllib.loads((out / "calibrated.toml").read_text())["calibration"]["trials"] == 3
    assert calibrate.main(["--smoke", "--out", str(out), "--n", "5"]) == 2  # other settings: refused


def test_calibrate_only_searches_the_named_keys_and_keeps_the_rest(tmp_path, capsys):
    from experiments import calibrate

    out = tmp_path / "only"
    keys = ["icans.ice_hill", "serum.il6_production_pg_ml_per_day"]
    assert calibrate.main(["--smoke", "--out", str(out), "--trials", "3", "--only", ",".join(keys)]) == 0
    trials = json.loads((out / "trials.json").read_text())
    assert [sorted(t["params"]) for t in trials] == [sorted(keys)] * 3
    current = calibrate.current_defaults()
    assert trials[0]["params"] == {k: pytest.approx(current[k]) for k in keys}  # starts at the calibration
    written = tomllib.loads((out / "calibrated.toml").read_text())
    best = min(trials, key=lambda t: t["loss"])
    for key, value in written["values"].items():
        expected = best["params"][key] if key in keys else current[key]
        assert value == pytest.approx(expected, rel=1e-3), key
    assert written["calibration"]["method"].endswith(f"over {', '.join(keys)} at the other values of the "
                                                     "previous calibration")
    assert written["calibration"]["history"] == calibrate._history()
    assert calibrate.main(["--smoke", "--out", str(out), "--trials", "4", "--only", keys[0]]) == 2  # other keys
    assert calibrate.main(["--smoke", "--out", str(tmp_path / "x"), "--only", "cart.no_such"]) == 2
    assert "cart.no_such not fitted" in capsys.readouterr().err


def test_calibrate_profile_scans_one_key_and_writes_the_best_keeping_the_rest(tmp_path, capsys):
    from experiments import calibrate

    out = tmp_path / "profile"
    assert calibrate.main(["--smoke", "--out", str(out), "--profile", "cart.chemotaxis_bias=0,0.1"]) == 0
    scan = json.loads((out / "profile-cart.chemotaxis_bias.json").read_text())
    assert [s["value"] for s in scan["scan"]] == [0.0, 0.1]
    best = min(scan["scan"], key=lambda s: s["loss"])
    written = tomllib.loads((out / "calibrated.toml").read_text())
    assert written["values"]["cart.chemotaxis_bias"] == pytest.approx(best["value"])
    assert written["calibration"]["loss"] == pytest.approx(best["loss"], rel=1e-5)
    assert written["calibration"]["method"].startswith("profile of cart.chemotaxis_bias over 0, 0.1")
    assert written["calibration"]["history"] == calibrate._history()  # the calibration it started from
    assert written["calibration"]["history"][-1].startswith(
        tomllib.loads(calibrate.CALIBRATED_TOML.read_text())["calibration"]["method"])
    for key, value in calibrate.current_defaults().items():  # every other value is the current calibration's
        if key != "cart.chemotaxis_bias":
            assert written["values"][key] == pytest.approx(value, rel=1e-3)
    assert calibrate.main(["--smoke", "--out", str(out), "--profile", "cart.no_such=1"]) == 2
    assert calibrate.main(["--smoke", "--out", str(out), "--profile", "cart.chemotaxis_bias=0.5"]) == 2
    assert "cart.chemotaxis_bias = 0.5: outside its range [0, 0.2]" in capsys.readouterr().err
    assert calibrate.main(["--smoke", "--out", str(out), "--profile", "cart.chemotaxis_bias=0",
                           "--profile", "cart.chemotaxis_bias=0.1"]) == 2  # a key twice


def test_calibrate_profile_over_two_keys_scans_their_grid(tmp_path):
    from experiments import calibrate

    out = tmp_path / "grid"
    assert calibrate.main(["--smoke", "--out", str(out), "--profile", "cart.chemotaxis_bias=0,0.1",
                           "--profile", "relapse.reservoir_kill_per_day=0.001,0.01"]) == 0
    scan = json.loads((out / "profile-cart.chemotaxis_bias+relapse.reservoir_kill_per_day.json").read_text())
    assert [tuple(s["values"].values()) for s in scan["scan"]] == [(0.0, 0.001), (0.0, 0.01), (0.1, 0.001),
                                                                   (0.1, 0.01)]
    best = min(scan["scan"], key=lambda s: s["loss"])
    written = tomllib.loads((out / "calibrated.toml").read_text())
    for key, value in best["values"].items():
        assert written["values"][key] == pytest.approx(value)
    assert written["calibration"]["method"].startswith(
        "profile of cart.chemotaxis_bias over 0, 0.1 x relapse.reservoir_kill_per_day over 0.001, 0.01")


def test_calibrate_targets_scores_only_the_named_targets(tmp_path, capsys):
    from experiments import calibrate

    out = tmp_path / "targets"
    targets = ["crs_any_rate", "crs_onset_median_day"]
    assert calibrate.main(["--smoke", "--out", str(out), "--profile", "cart.chemotaxis_bias=0,0.1",
                           "--targets", ",".join(targets)]) == 0
    scan = json.loads((out / "profile-cart.chemotaxis_bias.json").read_text())
    assert scan["settings"]["targets"] == sorted(targets)
    for point in scan["scan"]:
        assert point["loss"] == pytest.approx(sum(C.TARGET_BY_KEY[k].weight * point["measured"][k]["miss"] ** 2
                                                  for k in targets if k in point["measured"]))
    written = tomllib.loads((out / "calibrated.toml").read_text())
    assert f"abm.calibration.loss over {', '.join(sorted(targets))})" in written["calibration"]["method"]
    assert calibrate.main(["--smoke", "--out", str(out), "--targets", "cr_rate,no_such_target"]) == 2
    assert "no_such_target not a target" in capsys.readouterr().err


def test_calibration_report_smoke(tmp_path, capsys):
    from experiments import calibration_report

    assert calibration_report.main(["--smoke", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "table.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [r["target"] for r in table] == [t.key for t in C.TARGETS]
    follow_up = [r for r in table if C.TARGET_BY_KEY[r["target"]].horizon_days > C.DAY28]
    assert [r["status"] for r in follow_up] == ["not measured"] * 4  # the smoke's 1-day follow-up covers none
    assert all(r["status"] in ("within band", "interval reaches band", "miss", "not measured") for r in table)
    text = (tmp_path / "README.md").read_text()
    assert "| CR/CRi at day 28 |" in text and (tmp_path / "figure.png").stat().st_size > 10_000
    # a second run reads the finished patients back instead of simulating them
    before = (tmp_path / "main" / "patients.partial.jsonl").read_text()
    assert calibration_report.main(["--smoke", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "main" / "patients.partial.jsonl").read_text() == before
    # another cohort over it is refused (the finished patients stay) unless --force
    assert calibration_report.main(["--smoke", "--seed", "8", "--out", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "main" / "patients.partial.jsonl").read_text() == before
    assert calibration_report.main(["--smoke", "--seed", "8", "--force", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "main" / "patients.partial.jsonl").read_text() != before
    # --rebuild rewrites the same tables from those patients without simulating, and says so
    table_before = (tmp_path / "table.csv").read_text()
    (tmp_path / "table.csv").unlink()
    assert calibration_report.main(["--rebuild", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "table.csv").read_text() == table_before
    assert "rebuilt from these patients" in (tmp_path / "README.md").read_text()
    assert "What drives toxicity" in (tmp_path / "README.md").read_text()
    with open(tmp_path / "associations.csv", newline="") as fh:
        assoc = list(csv.DictReader(fh))
    assert {r["factor"] for r in assoc} == set(FACTOR_KIND) and len(assoc) == 3 * len(FACTOR_KIND)
    assert calibration_report.main(["--rebuild", "--out", str(tmp_path / "none")]) == 2


def test_factor_kinds_cover_every_profile_key():
    assert list(FACTOR_KIND) == list(PROFILE_KEYS)
    assert set(FACTOR_KIND.values()) == {"covariate", "latent"}


def test_associations_rank_factors_and_name_the_strongest():
    from experiments.calibration_report import associations, strongest

    rng = np.random.default_rng(3)
    rows = []
    for _ in range(60):
        latent = rng.normal()
        rows.append({**{k: 1.0 for k in FACTOR_KIND}, "patient.marrow_blast_fraction": rng.random(),
                     "serum.il6_production_pg_ml_per_day": latent, "crs_max_grade": int(latent > 0) + int(latent > 1),
                     "icans_max_grade": 0, "cart_peak_blood_per_ul": rng.random()})
    assoc = associations(rows)
    top = strongest(assoc, "crs_max_grade")
    assert top["factor"] == "serum.il6_production_pg_ml_per_day" and top["kind"] == "latent" and top["rho"] > 0.8
    constant = [a for a in assoc if a["factor"] == "patient.weight_kg"]
    assert all(a["rho"] is None for a in constant)  # constant in the cohort: no correlation
    assert strongest(assoc, "icans_max_grade") is None  # a constant outcome correlates with nothing


def test_follow_up_summary_counts_relapses_of_responders_and_their_antigen():
    from experiments.calibration_report import follow_up_summary

    rows = [{"follow_up_days": 365.0, **r} for r in (
        {"cr_within_3mo": True, "relapse": True, "relapse_day": 200.0, "relapse_antigen_negative": True,
         "b_cell_aplasia_days": 100.0},
        {"cr_within_3mo": True, "relapse": True, "relapse_day": 90.0, "relapse_antigen_negative": False,
         "b_cell_aplasia_days": 50.0},
        {"cr_within_3mo": True, "relapse": False, "b_cell_aplasia_days": 300.0},
        {"cr_within_3mo": False, "relapse": True, "relapse_day": 10.0, "b_cell_aplasia_days": None},
    )]
    assert follow_up_summary(rows) == {"responders": 3, "relapses": 2, "relapse_days": [90.0, 200.0],
                                       "antigen_negative": 1, "aplasia_median_days": 100.0}
    assert follow_up_summary([]) is None


def test_mrd_residue_counts_positive_responders_by_their_window_blasts():
    from experiments.calibration_report import mrd_residue

    def row(cr, mrd, nucleated):
        return {"cr_day28": cr, "mrd_day28": mrd, "mrd_negative_day28": mrd < 1e-4,
                "mrd_detection_limit": 1 / nucleated}

    rows = [row(True, 0.0, 20_000), row(True, 2 / 8_000, 8_000), row(True, 3 / 10_000, 10_000),
            row(True, 40 / 20_000, 20_000), row(False, 0.3, 5_000)]
    assert mrd_residue(rows) == {"responders": 4, "positive": 3, "few_blasts": 2,
                                 "limit_median": pytest.approx(7.5e-5)}  # median of 1/20k, 1/8k, 1/10k, 1/20k
    assert mrd_residue([{**rows[0], "mrd_detection_limit": None}]) is None  # rows from before the limit was kept


def test_bootstrap_median_interval_is_seeded_and_brackets_the_median():
    from experiments.calibration_report import bootstrap_median

    values = [float(x) for x in range(1, 22)]
    low, high = bootstrap_median(values)
    assert (low, high) == bootstrap_median(values)
    assert low < 11.0 < high


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
