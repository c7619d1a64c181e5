"""Clinical outcomes of a run: the ``summary.json`` contract.

Definitions (window-level, pediatric B-ALL conventions)
    * marrow blast fraction = blasts / (blasts + normal B cells + other
      hematopoietic cells) in the window; stroma and CAR-T cells are excluded,
      as in a morphological marrow differential;
    * ``cr_day28``: blast fraction < 5 % at day 28;
    * ``mrd_day28``: the blast fraction at day 28 (flow-MRD surrogate);
    * ``mrd_negative_day28``: MRD < 1e-4 (0.01 %). A window holds a finite
      number of nucleated cells, so it cannot see below one cell:
      ``mrd_detection_limit = 1 / nucleated cells`` is reported beside it, and
      when that limit exceeds 1e-4 MRD-negative means "no blast in the window".

Clinical outcomes over the whole run (:func:`clinical_outcomes`)
    * CRS and ICANS: ``crs_max_grade``, ``icans_max_grade`` (ASTCT 0-4, the
      surrogates of :mod:`abm.body.toxicity`: the highest grade at any lattice step,
      read from the body's running maxima ``crs_grade_max``/``icans_grade_max``
      when the frame has them, so a grade held for less than an observation
      interval counts) and ``crs_onset_day``, ``icans_onset_day`` (first
      observation by which grade >= 1 was reached; ``null`` if never);
    * blood CAR-T kinetics from the body compartment: ``cart_peak_blood_per_ul``
      and ``cart_peak_day`` (Cmax, Tmax); ``cart_auc_28`` (trapezoidal area
      under blood cells/uL over days 0-28, ``null`` for runs shorter than 28
      days); ``cart_persistence_day``: last observation with blood CAR-T >=
      :data:`CART_DETECTION_PER_UL` (``null`` if never detectable;
      ``cart_persistence_censored`` is true when still detectable at the end
      of the run, so the day is only a lower bound);
    * ``b_cell_aplasia_days``: total time with the B-cell share of the
      window's normal hematopoietic cells (``bcells / (bcells + normal)``)
      below :data:`B_CELL_APLASIA_FRACTION` of its day-0 value (each
      observation counts until the next one), censored at the end of the run.
      A share, not a count: a marrow packed with blasts at infusion holds few
      B cells, and the regenerating marrow many more cells, so a tenth of the
      day-0 count would end "aplasia" as soon as the marrow refills;
    * relapse: complete remission (CR) is the first observation after day 0
      with blast fraction < 5 %; ``relapse`` is true when a later observation
      has blast fraction >= 5 % again, false when it never does, and
      ``null`` when CR was never reached (refractory disease: relapse is not
      defined). ``relapse_day`` is that observation's day;
      ``relapse_antigen_negative`` is true when blasts negative for the
      product's target are the majority (> 50 %) of blasts at relapse:
      CD19-negative for a CD19 CAR (the default, as before CD22 was
      modelled), CD22-negative for a CD22 CAR, negative for both for a dual
      CD19/CD22 CAR (time-series column ``blasts_target_neg``; a frame
      without it falls back on ``blasts_cd19neg``). ``cr_day`` is the day of
      CR.
    * best response within 3 months (ELIANA's primary endpoint counts
      remissions within 3 months, and all its responders were MRD-negative;
      Maude 2018 NEJM 378:439): ``cr_within_3mo`` is true when an
      observation in (0, 90] days has blast fraction < 5 %,
      ``mrd_negative_within_3mo`` when one has blast fraction < 1e-4 (in a
      window, no blast: see ``mrd_detection_limit``). Each is false when the
      run covers 90 days without it, and ``null`` when a shorter run has not
      (yet) reached it: a 28-day run can say yes, not no.
    * escape by antigen, only in runs that track CD22 (the time series has
      ``blasts_cd22neg``, see :func:`abm.rates.cd22_tracked`):
      ``relapse_cd19_negative`` and ``relapse_cd22_negative``, the same
      majority rule per antigen (``null`` without a relapse). Runs without
      CD22 keep exactly the summary keys they had before CD22 existed.
    * ``crp_peak_mg_l``: the highest serum CRP observed (a marker of IL-6
      signalling; it falls under tocilizumab while serum IL-6 rises).
    * ``relapse_route`` (issue 28): ``"antigen-positive"`` when the blasts at
      relapse mostly carry the product's target, else the escape route most
      of the target-negative ones took (``"preexisting"``: negative before
      infusion; ``"mutation"``: lost in a division; ``"lineage"``: switched to
      the myeloid lineage; ``"unknown"``), ``null`` without a relapse
      (:func:`relapse_route`).

An outcome whose columns the time series lacks is ``null`` and listed in
``not_modelled``: never a made-up value. Day-28 keys are ``null`` for runs
shorter than 28 days.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

import abm
from abm.model import ROUTE_COLUMNS, MarrowModel

#: Complete remission threshold on the marrow blast fraction (5 %).
CR_THRESHOLD = 0.05
#: Measurable residual disease threshold on the marrow blast fraction (0.01 %, 1e-4; ELIANA's flow cytometry).
MRD_THRESHOLD = 1e-4
RESPONSE_DAY = 28.0
BEST_RESPONSE_DAYS = 90.0  # "within 3 months" (ELIANA's overall remission rate)

# detection limit of blood CAR-T: flow cytometry reads down to about 1 CAR-T cell/uL in a
# lymphopenic patient (assumption; qPCR of the transgene goes lower, so persistence by qPCR
# would be longer)
CART_DETECTION_PER_UL = 1.0
# B-cell aplasia: the B-cell share of normal marrow cells below 10 % of its day-0 value (the healthy
# share, patient.bcell_fraction, since the window's non-blast cells are drawn with it). Clinically
# aplasia is near-absence of CD19+ B cells among blood lymphocytes (Maude 2014 NEJM 371:1507); a
# tenth of the healthy share is still tens of B cells in a refilled 200 x 200 window, so
# small-number noise does not decide it (assumption)
B_CELL_APLASIA_FRACTION = 0.1
# antigen-negative relapse: blasts negative for the product's target are the majority at relapse
ANTIGEN_NEGATIVE_MAJORITY = 0.5

NOT_MODELLED: tuple[str, ...] = ()  # every summary key is modelled; see not_modelled in summarize()

# the time-series columns each clinical outcome needs
CLINICAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "crs_max_grade": ("day", "crs_grade"),
    "crs_onset_day": ("day", "crs_grade"),
    "icans_max_grade": ("day", "icans_grade"),
    "icans_onset_day": ("day", "icans_grade"),
    "cart_peak_blood_per_ul": ("day", "blood_cart_per_ul"),
    "cart_peak_day": ("day", "blood_cart_per_ul"),
    "cart_auc_28": ("day", "blood_cart_per_ul"),
    "cart_persistence_day": ("day", "blood_cart_per_ul"),
    "cart_persistence_censored": ("day", "blood_cart_per_ul"),
    "b_cell_aplasia_days": ("day", "bcells", "normal"),
    "cr_day": ("day", "blast_fraction"),
    "relapse": ("day", "blast_fraction"),
    "relapse_day": ("day", "blast_fraction"),
    "relapse_antigen_negative": ("day", "blast_fraction", "blasts", "blasts_cd19neg"),
    "cr_within_3mo": ("day", "blast_fraction"),
    "mrd_negative_within_3mo": ("day", "blast_fraction"),
    "tocilizumab_doses": ("day", "tocilizumab_doses"),
    "steroids_given": ("day", "steroids_on"),
    "crp_peak_mg_l": ("day", "crp_mg_l"),
    "relapse_route": ("day", "blast_fraction", "blasts", "blasts_target_neg", *ROUTE_COLUMNS),
}


def row_at(df: pd.DataFrame, day: float) -> pd.Series | None:
    """The observation at ``day`` (within half an observation interval), or None."""
    if df.empty:
        return None
    spacing = float(df["day"].diff().median()) if len(df) > 1 else 0.0
    idx = (df["day"] - day).abs().idxmin()
    if abs(df.loc[idx, "day"] - day) > max(spacing / 2.0, 1e-9):
        return None
    return df.loc[idx]


def unavailable_outcomes(df: pd.DataFrame) -> list[str]:
    """Clinical outcome keys that ``df`` lacks the columns for (they are ``null`` in the summary)."""
    return [key for key, columns in CLINICAL_COLUMNS.items() if not set(columns) <= set(df.columns)]


def clinical_outcomes(df: pd.DataFrame) -> dict[str, Any]:
    """Clinical outcomes of a run from its DataCollector frame (definitions in the module docstring).

    Every key of :data:`CLINICAL_COLUMNS` is returned; a key is ``None``
    when ``df`` lacks its columns or the outcome did not occur.
    """
    out: dict[str, Any] = dict.fromkeys(CLINICAL_COLUMNS)
    if df.empty:
        return out
    missing = set(unavailable_outcomes(df))
    days = df["day"].to_numpy(dtype=float)
    if "crs_max_grade" not in missing:
        out["crs_max_grade"], out["crs_onset_day"] = _grade_outcomes(days, _grades(df, "crs"))
    if "icans_max_grade" not in missing:
        out["icans_max_grade"], out["icans_onset_day"] = _grade_outcomes(days, _grades(df, "icans"))
    if "cart_peak_blood_per_ul" not in missing:
        out.update(_kinetics(days, df["blood_cart_per_ul"].to_numpy(dtype=float)))
    if "b_cell_aplasia_days" not in missing:
        out["b_cell_aplasia_days"] = _aplasia_days(days, df["bcells"].to_numpy(dtype=float),
                                                   df["normal"].to_numpy(dtype=float))
    if "relapse" not in missing:
        out.update(_relapse(df, "relapse_antigen_negative" not in missing))
        fraction = df["blast_fraction"].to_numpy(dtype=float)
        out["cr_within_3mo"] = _reached_within(days, fraction, CR_THRESHOLD)
        out["mrd_negative_within_3mo"] = _reached_within(days, fraction, MRD_THRESHOLD)
    if "tocilizumab_doses" not in missing:
        out["tocilizumab_doses"] = int(df["tocilizumab_doses"].max())
    if "steroids_given" not in missing:
        out["steroids_given"] = bool((df["steroids_on"] > 0).any())
    if "crp_peak_mg_l" not in missing:
        out["crp_peak_mg_l"] = float(df["crp_mg_l"].max())
    if "relapse_route" not in missing:
        out["relapse_route"] = relapse_route(df)
    return out


def _grades(df: pd.DataFrame, name: str) -> pd.Series:
    """The running maximum grade when the frame has it (every step), else the observed grade."""
    column = f"{name}_grade_max"
    return df[column] if column in df.columns else df[f"{name}_grade"]


def _grade_outcomes(days: np.ndarray, grade: pd.Series) -> tuple[int, float | None]:
    g = grade.to_numpy(dtype=float)
    onset = np.flatnonzero(g >= 1)
    return int(g.max()), (float(days[onset[0]]) if onset.size else None)


def _kinetics(days: np.ndarray, blood: np.ndarray) -> dict[str, Any]:
    peak = int(np.argmax(blood))
    out: dict[str, Any] = {"cart_peak_blood_per_ul": float(blood[peak]), "cart_peak_day": float(days[peak])}
    if days[-1] >= RESPONSE_DAY - 1e-9:
        inside = days < RESPONSE_DAY
        x = np.append(days[inside], RESPONSE_DAY)
        y = np.append(blood[inside], np.interp(RESPONSE_DAY, days, blood))
        out["cart_auc_28"] = float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))
    else:
        out["cart_auc_28"] = None
    detected = np.flatnonzero(blood >= CART_DETECTION_PER_UL)
    out["cart_persistence_day"] = float(days[detected[-1]]) if detected.size else None
    out["cart_persistence_censored"] = bool(detected.size and detected[-1] == len(days) - 1)
    return out


def b_cell_share(bcells: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """B cells' share of the normal marrow cells, ``bcells / (bcells + normal)``; 0 in an emptied marrow."""
    bcells = np.asarray(bcells, dtype=float)
    cells = bcells + np.asarray(normal, dtype=float)
    return np.divide(bcells, cells, out=np.zeros_like(bcells), where=cells > 0)


def _aplasia_days(days: np.ndarray, bcells: np.ndarray, normal: np.ndarray) -> float | None:
    if bcells[0] <= 0:
        return None
    share = b_cell_share(bcells, normal)
    below = share[:-1] < B_CELL_APLASIA_FRACTION * share[0]
    return float(np.sum(np.diff(days)[below]))


def _reached_within(days: np.ndarray, frac: np.ndarray, threshold: float,
                    horizon: float = BEST_RESPONSE_DAYS) -> bool | None:
    """Whether some observation in (0, horizon] days has ``frac < threshold``.

    False if the run covers the horizon without one; None if a shorter run has not reached it (yet).
    """
    inside = (days > 0) & (days <= horizon + 1e-9)
    if np.any(frac[inside] < threshold):
        return True
    return False if days[-1] >= horizon - 1e-9 else None


def _remission_and_relapse(df: pd.DataFrame) -> tuple[int | None, int | None]:
    """Rows of the first CR (after day 0) and of the first relapse after it; ``None`` where there is none."""
    days = df["day"].to_numpy(dtype=float)
    frac = df["blast_fraction"].to_numpy(dtype=float)
    remission = np.flatnonzero((days > 0) & (frac < CR_THRESHOLD))
    if remission.size == 0:
        return None, None
    cr = int(remission[0])
    back = np.flatnonzero(frac[cr:] >= CR_THRESHOLD)
    return cr, (cr + int(back[0]) if back.size else None)


def _relapse(df: pd.DataFrame, with_antigen: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"cr_day": None, "relapse": None, "relapse_day": None, "relapse_antigen_negative": None}
    cr, at = _remission_and_relapse(df)
    if cr is None:
        return out
    days = df["day"].to_numpy(dtype=float)
    out["cr_day"] = float(days[cr])
    out["relapse"] = at is not None
    if at is not None:
        out["relapse_day"] = float(days[at])
        if with_antigen:
            column = "blasts_target_neg" if "blasts_target_neg" in df.columns else "blasts_cd19neg"
            out["relapse_antigen_negative"] = _majority(df, at, column)
    return out


DOWNREGULATED = "blasts_route_downregulation"  # kernels.layout.ROUTE_NAMES[ROUTE_DOWNREGULATION]


def _majority(df: pd.DataFrame, at: int, column: str) -> bool:
    """True when the blasts counted in ``column`` (antigen-negative, down-regulated) are most blasts at ``at``."""
    blasts = float(df["blasts"].iloc[at])
    counted = float(df[column].iloc[at])
    return bool(blasts > 0 and counted / blasts > ANTIGEN_NEGATIVE_MAJORITY)


def relapse_route(df: pd.DataFrame) -> str | None:
    """How the leukemia escaped at relapse: ``"antigen-positive"``, or the commonest escape route of its blasts.

    ``None`` without a relapse. At the relapse observation, a relapse whose blasts mostly carry the product's
    target is ``"downregulation"`` when most of its blasts carry less of it than their genes make (stripped by
    trogocytosis: a target-dim relapse), else ``"antigen-positive"``; otherwise it is named by the route most of
    its target-negative blasts took (``"preexisting"``, ``"mutation"``, ``"lineage"``, ``"downregulation"``,
    ``"masking"``: ``kernels.layout.ROUTE_NAMES``; ties go to the earlier route), or ``"unknown"`` when none of
    them carries a route (a blast that lost the target by a change the model does not label, e.g. CD22 loss
    under a CD19 CAR is not a target loss).
    """
    _, at = _remission_and_relapse(df)
    if at is None:
        return None
    if not _majority(df, at, "blasts_target_neg"):
        return "downregulation" if _majority(df, at, DOWNREGULATED) else "antigen-positive"
    counts = [int(df[column].iloc[at]) for column in ROUTE_COLUMNS]
    if max(counts) == 0:
        return "unknown"
    return ROUTE_COLUMNS[counts.index(max(counts))].removeprefix("blasts_route_")


def antigen_relapse(df: pd.DataFrame) -> dict[str, bool | None]:
    """``relapse_cd19_negative`` and ``relapse_cd22_negative`` of a run that tracks CD22 (module docstring).

    Both are ``None`` when the run did not relapse (or never reached CR).
    """
    _, at = _remission_and_relapse(df)
    if at is None:
        return {"relapse_cd19_negative": None, "relapse_cd22_negative": None}
    return {
        "relapse_cd19_negative": _majority(df, at, "blasts_cd19neg"),
        "relapse_cd22_negative": _majority(df, at, "blasts_cd22neg"),
    }


def summarize(model: MarrowModel, wall_s: float | None = None) -> dict[str, Any]:
    """Every ``summary.json`` key for a finished (or stopped) run."""
    df = model.datacollector.get_model_vars_dataframe()
    day28 = row_at(df, RESPONSE_DAY)
    nucleated28 = None
    if day28 is not None:
        nucleated28 = int(day28["blasts"] + day28["bcells"] + day28["normal"])
    mrd28 = float(day28["blast_fraction"]) if day28 is not None else None
    limit = 1.0 / nucleated28 if nucleated28 else None
    peak_idx = df["cart"].idxmax()
    p = model.params
    summary: dict[str, Any] = {
        "version": abm.__version__,
        "seed": model.seed,
        "backend": model.backend,
        "days": model.day,
        "cr_day28": None if mrd28 is None else bool(mrd28 < CR_THRESHOLD),
        "mrd_day28": mrd28,
        "mrd_negative_day28": None if mrd28 is None else bool(mrd28 < MRD_THRESHOLD),
        "mrd_detection_limit": limit,
        **{key: None for key in NOT_MODELLED},
        **clinical_outcomes(df),
        "not_modelled": list(NOT_MODELLED) + unavailable_outcomes(df),
        "blast_fraction_day0": float(df["blast_fraction"].iloc[0]),
        "blast_fraction_final": float(df["blast_fraction"].iloc[-1]),
        "cart_peak_window": int(df.loc[peak_idx, "cart"]),
        "cart_peak_window_day": float(df.loc[peak_idx, "day"]),
        "cart_entered_window": int(df["cart_entered"].iloc[-1]),
        "kills": int(df["kills"].iloc[-1]),
        "cart_fratricide": int(df["cart_fratricide"].iloc[-1]),
        "il6_peak_marrow_pg_ml": float(df["il6_max_pg_ml"].max()),
        "grid_size": p.grid.size,
        "site_um": p.grid.site_um,
        "dt_min": model.dt_min,
        "lattice_steps": model.lattice_step,
        "window_share_of_marrow": model.body.window_share,
        "wall_s": None if wall_s is None else round(wall_s, 3),
    }
    if "blasts_cd22neg" in df.columns:
        summary.update(antigen_relapse(df))
    for key, value in summary.items():
        if isinstance(value, float) and not math.isfinite(value):
            summary[key] = None
    return summary
