"""The time-course figure of one run (:func:`plot_timecourse`) and the helpers it shares with animation frames.

:func:`plot_timecourse` writes a four-panel PNG (blast fraction, CAR-T,
IL-6, normal B cells) from the DataCollector frame. :func:`crs_bands` shades
the days of cytokine release syndrome on any axes (also used by the frames of
:mod:`abm.viz.frame` and by :mod:`abm.viewer`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from abm.outcomes import B_CELL_APLASIA_FRACTION, CR_THRESHOLD, MRD_THRESHOLD, b_cell_share
from abm.viz.render import PALETTE

#: Line colour of CD22-negative blasts in time courses (Okabe-Ito reddish purple; no view code: the frames
#: colour blasts by CD19, the low byte of the ANTIGEN trait).
CD22_NEGATIVE_COLOR = "#cc79a7"

#: Blast fractions of zero are drawn at this value on log axes (1e-6 = 0.0001 %).
BLAST_FRACTION_FLOOR = 1e-6

_CRS_COLOURS = {1: "#fee8c8", 2: "#fdbb84", 3: "#ef6548", 4: "#990000"}


def _require(df: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"timecourse: missing column(s) {missing}; expected the DataCollector frame of MarrowModel")


def _floored(fraction: pd.Series | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(fraction, dtype=float)
    zero = ~(values > 0)
    return np.where(zero, BLAST_FRACTION_FLOOR, values), zero


def _negative_fraction(df: pd.DataFrame, column: str = "blasts_cd19neg") -> np.ndarray | None:
    """Marrow fraction of the blasts counted in ``column`` (antigen-negative blasts), or None without it."""
    if column not in df.columns or "blasts" not in df.columns:
        return None
    blasts = df["blasts"].to_numpy(float)
    share = np.divide(df[column].to_numpy(float), blasts, out=np.zeros_like(blasts), where=blasts > 0)
    return df["blast_fraction"].to_numpy(float) * share


def crs_bands(ax, df: pd.DataFrame) -> list[Patch]:
    """Shade the days with CRS grade >= 1 (if the frame has ``crs_grade``).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes with days on the x axis; one band per run of equal grade is drawn behind the lines.
    df : pandas.DataFrame
        DataCollector frame with ``day`` and, optionally, ``crs_grade`` (integer grade 0-4 per row).

    Returns
    -------
    list of matplotlib.patches.Patch
        Legend handles of the grades drawn (none without ``crs_grade`` or with fewer than two rows).
    """
    if "crs_grade" not in df.columns:
        return []
    days = df["day"].to_numpy(float)
    grade = np.nan_to_num(df["crs_grade"].to_numpy(float)).astype(int)
    if len(days) < 2:
        return []
    edges = np.concatenate([[days[0]], (days[1:] + days[:-1]) / 2, [days[-1]]])
    shown = set()
    start = 0
    for i in range(1, len(days) + 1):
        if i == len(days) or grade[i] != grade[start]:
            g = int(np.clip(grade[start], 0, 4))
            if g > 0:
                ax.axvspan(edges[start], edges[i], color=_CRS_COLOURS[g], alpha=0.6, lw=0, zorder=0)
                shown.add(g)
            start = i
    return [Patch(color=_CRS_COLOURS[g], alpha=0.6, label=f"CRS grade {g}") for g in sorted(shown)]


def plot_timecourse(df: pd.DataFrame, path: str | Path, *, title: str | None = None, dpi: int = 150) -> Path:
    """Write a four-panel time-course figure of one run as PNG.

    Panels, sharing the day axis: (a) marrow blast fraction on a log scale
    with the complete-remission (5 %) and MRD (0.01 %) thresholds; zeros are
    drawn at :data:`BLAST_FRACTION_FLOOR` as open markers, and the panel says
    so; (b) CAR-T cells in the window (total, active) and blood CAR-T
    [cells/uL, if the frame has it] on a twin axis; (c) marrow IL-6 mean and max [pg/mL] on a log
    scale spanning four decades below the peak (lower values, such as the
    field's fixed-point floor, leave gaps), with CRS grade bands if the frame
    has a ``crs_grade`` column; (d) B-cell aplasia: the B-cell share of
    normal marrow cells [%] against its day-0 level and the aplasia threshold
    (:data:`abm.outcomes.B_CELL_APLASIA_FRACTION` of it) if the frame has a
    ``normal`` column, else the window's B-cell count.

    Parameters
    ----------
    df : pandas.DataFrame
        ``MarrowModel.datacollector.get_model_vars_dataframe()``: one row per
        observation with columns ``day``, ``blast_fraction``, ``cart``,
        ``cart_active``, ``il6_mean_pg_ml``, ``il6_max_pg_ml`` and
        ``bcells``; optional: ``blood_cart_per_ul`` [cells/uL] (a twin axis
        of panel b), ``blasts`` with ``blasts_cd19neg`` (adds a CD19-negative
        blast line) and ``blasts_cd22neg`` (a CD22-negative one, in runs that
        track CD22), ``crs_grade`` (integer grade 0-4 per row) and ``normal``
        (other normal marrow cells; panel d then shows the B-cell share).
    path : str or pathlib.Path
        Output PNG.
    title : str, optional
        Figure title.
    dpi : int
        Resolution of the PNG.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    _require(
        df,
        [
            "day",
            "blast_fraction",
            "cart",
            "cart_active",
            "il6_mean_pg_ml",
            "il6_max_pg_ml",
            "bcells",
        ],
    )
    days = df["day"].to_numpy(float)
    fig = Figure(figsize=(7.0, 9.0), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 1, sharex=True, height_ratios=[1.3, 1, 1, 1])
    ax_b, ax_t, ax_i, ax_c = axes

    # (a) blast fraction
    frac, zero = _floored(df["blast_fraction"])
    ax_b.plot(days, 100 * frac, color=PALETTE["blast_cd19pos"], lw=1.8, label="all blasts")
    if zero.any():
        ax_b.plot(
            days[zero],
            100 * frac[zero],
            ls="none",
            marker="o",
            mfc="white",
            mec=PALETTE["blast_cd19pos"],
            ms=4,
            label=f"no blasts (drawn at {100 * BLAST_FRACTION_FLOOR:g} %)",
        )
    neg = _negative_fraction(df, "blasts_cd19neg")
    if neg is not None and np.any(neg > 0):
        neg_f, _ = _floored(neg)
        ax_b.plot(days, 100 * neg_f, color=PALETTE["blast_cd19neg"], lw=1.4, ls="--", label="CD19\u2212 blasts")
    neg = _negative_fraction(df, "blasts_cd22neg")
    if neg is not None and np.any(neg > 0):
        neg_f, _ = _floored(neg)
        ax_b.plot(days, 100 * neg_f, color=CD22_NEGATIVE_COLOR, lw=1.4, ls=":", label="CD22\u2212 blasts")
    ax_b.axhline(100 * CR_THRESHOLD, color="0.25", lw=0.9, ls="--")
    ax_b.axhline(100 * MRD_THRESHOLD, color="0.25", lw=0.9, ls=":")
    ax_b.set_yscale("log")
    ax_b.set_ylim(100 * BLAST_FRACTION_FLOOR / 2, 100)
    xt = ax_b.get_yaxis_transform()
    ax_b.text(0.995, 100 * CR_THRESHOLD, "CR < 5 %", transform=xt, ha="right", va="bottom", fontsize=8, color="0.25")
    ax_b.text(
        0.995, 100 * MRD_THRESHOLD, "MRD < 0.01 %", transform=xt, ha="right", va="bottom", fontsize=8, color="0.25"
    )
    ax_b.set_ylabel("marrow blasts\n[% of nucleated]")
    ax_b.legend(loc="lower left", fontsize=8, frameon=False)

    # (b) CAR-T cells
    ax_t.plot(days, df["cart"], color=PALETTE["cart_resting"], lw=1.8, label="in window, all")
    ax_t.plot(days, df["cart_active"], color="#b8a800", lw=1.4, ls="--", label="in window, active")
    ax_t.set_ylabel("CAR-T in window\n[cells]")
    ax_t.set_ylim(bottom=0)
    handles = ax_t.get_legend_handles_labels()[0]
    if "blood_cart_per_ul" in df.columns:
        ax_blood = ax_t.twinx()
        ax_blood.plot(days, df["blood_cart_per_ul"], color="0.35", lw=1.2, ls=":", label="blood")
        ax_blood.set_ylabel("blood CAR-T [cells/µL]", color="0.35")
        ax_blood.tick_params(axis="y", colors="0.35")
        ax_blood.set_ylim(bottom=0)
        handles += ax_blood.get_legend_handles_labels()[0]
    ax_t.legend(handles=handles, loc="upper right", fontsize=8, frameon=False)

    # (c) IL-6
    crs = crs_bands(ax_i, df)
    il6_max = df["il6_max_pg_ml"].to_numpy(float)
    il6_mean = df["il6_mean_pg_ml"].to_numpy(float)
    top = np.nanmax(il6_max, initial=0.0)
    if top > 0:  # log scale over four decades; zeros leave gaps
        ax_i.set_yscale("log")
        bottom = 10.0 ** math.floor(math.log10(top) - 4)
        ax_i.set_ylim(bottom, 10.0 ** math.ceil(math.log10(top) + 0.1))
        il6_max = np.where(il6_max >= bottom, il6_max, np.nan)
        il6_mean = np.where(il6_mean >= bottom, il6_mean, np.nan)
    ax_i.plot(days, il6_max, color="#7b3294", lw=1.2, ls="--", label="max")
    ax_i.plot(days, il6_mean, color="#7b3294", lw=1.8, label="mean")
    ax_i.set_ylabel("marrow IL-6\n[pg/mL]")
    ax_i.legend(handles=ax_i.get_legend_handles_labels()[0] + crs, loc="upper right", fontsize=8, frameon=False)

    # (d) B cells: the share of normal marrow that b_cell_aplasia_days reads, else the count
    if "normal" in df.columns:
        level = 100.0 * b_cell_share(df["bcells"].to_numpy(float), df["normal"].to_numpy(float))
        ylabel = "B cells among normal\nmarrow cells [%]"
    else:
        level, ylabel = df["bcells"].to_numpy(float), "normal B cells\nin window [cells]"
    ax_c.plot(days, level, color=PALETTE["bcell"], lw=1.8, label="normal B cells")
    if len(df):
        ax_c.axhline(level[0], color=PALETTE["bcell"], lw=0.8, ls=":", label="day-0 level")
        if "normal" in df.columns:
            ax_c.axhline(B_CELL_APLASIA_FRACTION * level[0], color=PALETTE["bcell"], lw=0.8, ls="--",
                         label="aplasia threshold")
    ax_c.set_ylim(bottom=0)
    ax_c.set_ylabel(ylabel)
    ax_c.legend(loc="lower left", fontsize=8, frameon=False)
    ax_c.set_xlabel("days after infusion")

    for letter, ax in zip("abcd", axes, strict=True):
        ax.text(-0.13, 1.0, f"({letter})", transform=ax.transAxes, fontweight="bold", va="top")
        ax.grid(True, color="0.92", lw=0.6)
        ax.spines[["top"]].set_visible(False)
    if len(days):
        ax_c.set_xlim(days.min(), max(days.max(), days.min() + 1e-9))
    if title:
        fig.suptitle(title)
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    fig.clear()
    return path
