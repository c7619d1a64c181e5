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

Keys whose biology is not modelled yet (CRS/ICANS grades, blood CAR-T
expansion, relapse, B-cell aplasia duration) are ``null`` and listed in
``not_modelled``: never a made-up value. Day-28 keys are ``null`` for runs
shorter than 28 days.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

import abm
from abm.model import MarrowModel

CR_THRESHOLD = 0.05
MRD_THRESHOLD = 1e-4
RESPONSE_DAY = 28.0

NOT_MODELLED = (
    "crs_max_grade",
    "icans_max_grade",
    "cart_peak_blood_per_ul",
    "cart_peak_day",
    "relapse",
    "relapse_day",
    "relapse_antigen_negative",
    "b_cell_aplasia_days",
)


def row_at(df: pd.DataFrame, day: float) -> pd.Series | None:
    """The observation at ``day`` (within half an observation interval), or None."""
    if df.empty:
        return None
    spacing = float(df["day"].diff().median()) if len(df) > 1 else 0.0
    idx = (df["day"] - day).abs().idxmin()
    if abs(df.loc[idx, "day"] - day) > max(spacing / 2.0, 1e-9):
        return None
    return df.loc[idx]


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
        "not_modelled": list(NOT_MODELLED),
        "blast_fraction_day0": float(df["blast_fraction"].iloc[0]),
        "blast_fraction_final": float(df["blast_fraction"].iloc[-1]),
        "cart_peak_window": int(df.loc[peak_idx, "cart"]),
        "cart_peak_window_day": float(df.loc[peak_idx, "day"]),
        "cart_entered_window": int(df["cart_entered"].iloc[-1]),
        "kills": int(df["kills"].iloc[-1]),
        "il6_peak_marrow_pg_ml": float(df["il6_max_pg_ml"].max()),
        "grid_size": p.grid.size,
        "site_um": p.grid.site_um,
        "dt_min": model.dt_min,
        "lattice_steps": model.lattice_step,
        "window_share_of_marrow": model.blood.window_share,
        "wall_s": None if wall_s is None else round(wall_s, 3),
    }
    for key, value in summary.items():
        if isinstance(value, float) and not math.isfinite(value):
            summary[key] = None
    return summary
