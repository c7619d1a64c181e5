"""clinical_outcomes on hand-made time series: relapse, aplasia, onsets, blood CAR-T kinetics."""

import pandas as pd
import pytest

from abm.outcomes import (
    B_CELL_APLASIA_FRACTION,
    CART_DETECTION_PER_UL,
    CLINICAL_COLUMNS,
    b_cell_share,
    clinical_outcomes,
    unavailable_outcomes,
)


def frame(days, **columns) -> pd.DataFrame:
    return pd.DataFrame({"day": [float(d) for d in days], **columns})


def blast_frame(fractions, cd19neg_share=None):
    days = range(len(fractions))
    blasts = [int(f * 10_000) for f in fractions]
    share = cd19neg_share or [0.0] * len(fractions)
    return frame(days, blast_fraction=fractions, blasts=blasts,
                 blasts_cd19neg=[int(b * s) for b, s in zip(blasts, share, strict=True)])


# -- relapse ----------------------------------------------------------------------------------
def test_cr_then_cd19_negative_majority_relapse_is_antigen_negative():
    df = blast_frame([0.7, 0.2, 0.01, 0.0, 0.02, 0.08, 0.3], cd19neg_share=[0, 0, 0, 0, 0.5, 0.8, 0.9])
    out = clinical_outcomes(df)
    assert out["cr_day"] == 2.0
    assert out["relapse"] is True and out["relapse_day"] == 5.0
    assert out["relapse_antigen_negative"] is True


def test_cd19_positive_relapse_is_not_antigen_negative():
    df = blast_frame([0.7, 0.01, 0.06], cd19neg_share=[0, 0, 0.5])  # exactly half: not a majority
    out = clinical_outcomes(df)
    assert out["relapse"] is True and out["relapse_antigen_negative"] is False


def test_no_cr_means_relapse_undefined_none():
    out = clinical_outcomes(blast_frame([0.7, 0.5, 0.2, 0.06]))
    assert out["cr_day"] is None
    assert out["relapse"] is None and out["relapse_day"] is None and out["relapse_antigen_negative"] is None


def test_durable_cr_is_no_relapse():
    out = clinical_outcomes(blast_frame([0.7, 0.04, 0.0, 0.0]))
    assert out["cr_day"] == 1.0 and out["relapse"] is False
    assert out["relapse_day"] is None and out["relapse_antigen_negative"] is None


def test_day_zero_below_five_percent_is_not_a_remission():
    out = clinical_outcomes(blast_frame([0.03, 0.06, 0.01, 0.07]))
    assert out["cr_day"] == 2.0 and out["relapse_day"] == 3.0


# -- best response within 3 months ---------------------------------------------------------------
def test_best_response_within_3_months_counts_a_late_mrd_negative_observation():
    df = frame([0, 28, 60, 89.5, 120], blast_fraction=[0.7, 0.003, 0.0004, 0.00005, 0.0])
    out = clinical_outcomes(df)
    assert out["cr_within_3mo"] is True
    assert out["mrd_negative_within_3mo"] is True  # day 89.5 < 1e-4; day 120 would be too late


def test_best_response_after_3_months_does_not_count():
    df = frame([0, 28, 90, 120], blast_fraction=[0.7, 0.003, 0.0004, 0.0])
    out = clinical_outcomes(df)
    assert out["cr_within_3mo"] is True and out["mrd_negative_within_3mo"] is False


def test_short_run_can_say_yes_but_not_no():
    out = clinical_outcomes(frame([0, 14, 28], blast_fraction=[0.7, 0.2, 0.00005]))
    assert out["cr_within_3mo"] is True and out["mrd_negative_within_3mo"] is True
    out = clinical_outcomes(frame([0, 14, 28], blast_fraction=[0.7, 0.2, 0.01]))
    assert out["cr_within_3mo"] is True and out["mrd_negative_within_3mo"] is None
    out = clinical_outcomes(frame([0, 14, 28], blast_fraction=[0.7, 0.2, 0.1]))
    assert out["cr_within_3mo"] is None


def test_day_zero_does_not_count_as_a_response():
    out = clinical_outcomes(frame([0, 45, 90], blast_fraction=[0.0, 0.2, 0.3]))
    assert out["cr_within_3mo"] is False and out["mrd_negative_within_3mo"] is False


# -- B-cell aplasia ------------------------------------------------------------------------------
def test_aplasia_days_count_time_below_a_tenth_of_the_baseline_b_cell_share():
    assert B_CELL_APLASIA_FRACTION == 0.1
    df = frame([0, 1, 2, 3, 4, 6, 7], bcells=[1000, 500, 50, 99, 150, 20, 10], normal=[9000] * 7)
    # share 0.1 at day 0; below 0.01 (under ~91 B cells) at days 2 and 6 (until 3 and 7); the last row has
    # no interval after it
    assert clinical_outcomes(df)["b_cell_aplasia_days"] == pytest.approx(2.0)


def test_aplasia_reads_the_share_so_a_refilling_marrow_does_not_end_it():
    """A leukemic marrow holds 50 B cells among 500 normal cells; the refilled one 200 among 30,000: the
    count quadrupled, yet the share (0.7 % against 10 %) is still aplastic."""
    df = frame([0, 10, 20, 30], bcells=[50, 5, 200, 3_000], normal=[450, 2_000, 30_000, 27_000])
    assert clinical_outcomes(df)["b_cell_aplasia_days"] == pytest.approx(20.0)


def test_b_cell_share_is_of_normal_marrow_cells_and_zero_in_an_emptied_marrow():
    assert b_cell_share([10, 0, 5], [90, 0, 0]).tolist() == [0.1, 0.0, 1.0]


def test_aplasia_undefined_without_b_cells_at_day_zero():
    assert clinical_outcomes(frame([0, 1], bcells=[0, 0], normal=[10, 10]))["b_cell_aplasia_days"] is None


# -- CRS and ICANS onset ------------------------------------------------------------------------------
def test_crs_and_icans_onset_and_max_grade():
    days = [0, 0.5, 1, 2.5, 3, 4, 6]
    df = frame(days, crs_grade=[0, 0, 1, 2, 3, 1, 0], icans_grade=[0, 0, 0, 0, 1, 2, 0])
    out = clinical_outcomes(df)
    assert out["crs_max_grade"] == 3 and out["crs_onset_day"] == 1.0
    assert out["icans_max_grade"] == 2 and out["icans_onset_day"] == 3.0


def test_no_toxicity_gives_grade_zero_and_no_onset():
    out = clinical_outcomes(frame([0, 1], crs_grade=[0, 0], icans_grade=[0, 0]))
    assert out["crs_max_grade"] == 0 and out["crs_onset_day"] is None
    assert out["icans_max_grade"] == 0 and out["icans_onset_day"] is None


def test_therapy_summary():
    out = clinical_outcomes(frame([0, 1, 2], tocilizumab_doses=[0, 1, 2], steroids_on=[0, 0, 0]))
    assert out["tocilizumab_doses"] == 2 and out["steroids_given"] is False


# -- blood CAR-T kinetics ------------------------------------------------------------------------------
def test_blood_kinetics_peak_auc_and_persistence():
    days = list(range(0, 31))
    blood = [10.0 * d if d <= 10 else max(100.0 - 5.0 * (d - 10), 0.5) for d in days]
    out = clinical_outcomes(frame(days, blood_cart_per_ul=blood))
    assert out["cart_peak_blood_per_ul"] == 100.0 and out["cart_peak_day"] == 10.0
    # triangle up to day 10 (500) + linear fall to 0.5 at day 30 clipped: sum trapezoids by hand
    expected = 500.0 + sum((blood[d] + blood[d + 1]) / 2.0 for d in range(10, 28))
    assert out["cart_auc_28"] == pytest.approx(expected)
    assert CART_DETECTION_PER_UL == 1.0
    assert out["cart_persistence_day"] == 29.0  # 5 /uL at day 29, 0.5 at day 30
    assert out["cart_persistence_censored"] is False


def test_auc_interpolates_day_28_between_observations():
    out = clinical_outcomes(frame([0, 20, 30], blood_cart_per_ul=[0.0, 20.0, 40.0]))
    # 0-20: 200; 20-28: (20 + 36) / 2 * 8 = 224
    assert out["cart_auc_28"] == pytest.approx(424.0)


def test_short_run_has_no_auc_and_censored_persistence():
    out = clinical_outcomes(frame([0, 1, 2], blood_cart_per_ul=[40.0, 9.0, 4.0]))
    assert out["cart_auc_28"] is None
    assert out["cart_persistence_day"] == 2.0 and out["cart_persistence_censored"] is True


def test_never_detectable_has_no_persistence_day():
    out = clinical_outcomes(frame([0, 1], blood_cart_per_ul=[0.5, 0.1]))
    assert out["cart_persistence_day"] is None and out["cart_persistence_censored"] is False


# -- missing columns -------------------------------------------------------------------------------------
def test_missing_columns_leave_keys_none_and_listed():
    df = blast_frame([0.7, 0.01])
    out = clinical_outcomes(df)
    assert set(out) == set(CLINICAL_COLUMNS)
    missing = unavailable_outcomes(df)
    assert "crs_max_grade" in missing and "cart_peak_day" in missing and "relapse" not in missing
    assert all(out[key] is None for key in missing)


def test_empty_frame_gives_all_none():
    assert all(v is None for v in clinical_outcomes(pd.DataFrame({"day": []})).values())


def test_max_grade_reads_the_running_maximum_so_a_grade_between_observations_counts():
    sampled = frame(range(5), crs_grade=[0, 1, 2, 2, 0], icans_grade=[0, 0, 0, 1, 0])
    assert clinical_outcomes(sampled)["crs_max_grade"] == 2  # without running maxima: the observed grades
    both = sampled.assign(crs_grade_max=[0, 1, 3, 3, 3], icans_grade_max=[0, 0, 0, 1, 1])
    out = clinical_outcomes(both)
    assert (out["crs_max_grade"], out["crs_onset_day"]) == (3, 1.0)  # grade 3 came and went between observations
    assert (out["icans_max_grade"], out["icans_onset_day"]) == (1, 3.0)
