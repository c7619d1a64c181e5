"""Pictures of a run: lattice images, time-course figures and animations.

Everything here is a pure function of arrays and DataFrames that a run has
already produced (``MarrowModel.view()``, ``MarrowModel.snapshots``, the
DataCollector's ``get_model_vars_dataframe()``); nothing here simulates.

* :func:`render_view` turns a ``uint8[n, n]`` view of :data:`abm.model.VIEW_CODES`
  into an RGB image with :data:`PALETTE`.
* :func:`plot_timecourse` writes a four-panel PNG (blast fraction, CAR-T,
  IL-6, normal B cells) from the DataCollector frame.
* :class:`FrameRenderer` draws animation frames (lattice, legend, scale bar,
  clock, optional IL-6 overlay and time course with a cursor). It lays the
  figure out once and redraws only what changes (Agg blitting), so a frame
  costs a few tens of milliseconds. :func:`render_frame` is the one-off form.
* :func:`write_gif` and :func:`write_mp4` animate ``MarrowModel.snapshots``.

Matplotlib is used through :class:`matplotlib.figure.Figure` with the Agg
canvas directly (never ``pyplot``), so this module is headless-safe and leaves
no global figures behind.
"""

from __future__ import annotations

import math
import os
import uuid
import zipfile
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps, patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Colormap, ListedColormap, LogNorm, to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from PIL import Image

from abm.model import VIEW_CODES
from abm.outcomes import B_CELL_APLASIA_FRACTION, CR_THRESHOLD, MRD_THRESHOLD, b_cell_share

#: Colour of each view code (keys of :data:`abm.model.VIEW_CODES`). Cell kinds
#: use the Okabe-Ito colour-blind-safe set; tissue uses muted, light tones so
#: that cells stand out against it. It may name codes the model does not draw
#: yet (``niche``); frames and legends show exactly the codes of ``VIEW_CODES``.
#: A new CAR-T state needs a ``cart_*`` code there and an entry here and in
#: :data:`LABELS`; it is then drawn as a dot like the others.
PALETTE: dict[str, str] = {
    "empty": "#f7f7f4",  # near-white
    "bone": "#ddd3bd",  # light beige
    "sinusoid": "#7a1b1b",  # dark red
    "niche": "#e6dcef",  # pale lavender: an empty site beside a stromal niche cell
    "stroma": "#8d7f70",  # taupe
    "normal": "#c5cdb8",  # muted sage: the healthy background of the marrow
    "bcell": "#0072b2",  # Okabe-Ito blue
    "blast_cd19pos": "#d55e00",  # Okabe-Ito vermillion
    "blast_cd19neg": "#56b4e9",  # Okabe-Ito sky blue: opposite the CD19+ orange, and unlike the IL-6 tint
    "cart_resting": "#009e73",  # Okabe-Ito bluish green
    "cart_active": "#f0e442",  # Okabe-Ito yellow: lights up on activation
    "cart_memory": "#cc79a7",  # Okabe-Ito reddish purple: long-lived memory
    "cart_exhausted": "#555555",  # dark grey: spent
}

#: Line colour of CD22-negative blasts in time courses (Okabe-Ito reddish purple; no view code: the frames
#: colour blasts by CD19, the low byte of the ANTIGEN trait).
CD22_NEGATIVE_COLOR = "#cc79a7"

#: Legend text of each view code.
LABELS: dict[str, str] = {
    "empty": "empty site",
    "bone": "bone",
    "sinusoid": "sinusoid",
    "niche": "niche (empty)",
    "stroma": "stroma (niche cell)",
    "normal": "normal marrow cell",
    "bcell": "normal B cell",
    "blast_cd19pos": "blast CD19+",
    "blast_cd19neg": "blast CD19\u2212",
    "cart_resting": "CAR-T resting",
    "cart_active": "CAR-T active",
    "cart_memory": "CAR-T memory",
    "cart_exhausted": "CAR-T exhausted",
}

#: Blast fractions of zero are drawn at this value on log axes (1e-6 = 0.0001 %).
BLAST_FRACTION_FLOOR = 1e-6

#: What :func:`write_gif`, :func:`write_mp4` and :func:`animate_run` can overlay on the lattice.
ANIMATION_FIELDS = ("il6", "none")
#: Container formats of :func:`animate_run`.
ANIMATION_FORMATS = ("gif", "mp4")
#: Browsers slow down GIF frames shorter than 20 ms (to 100 ms), so GIFs play at most this many frames per second.
GIF_MAX_FPS = 50.0
#: The files of a run folder that :func:`animate_run` reads (written by ``cart-abm run``).
SNAPSHOTS_FILE = "snapshots.npz"
TIMESERIES_FILE = "timeseries.csv"

_SCALE_BARS_UM = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)
_IL6_DECADES = 3.0  # the IL-6 overlay spans this many decades below its maximum
_IL6_ALPHA = 0.5  # opacity of the overlay at the top of its range
#: Colour scale of the IL-6 overlay: magma without its pale-yellow top, which would hide active CAR-T cells.
IL6_CMAP = ListedColormap(colormaps["magma"](np.linspace(0.0, 0.7, 256)), name="magma_il6")
_CRS_COLOURS = {1: "#fee8c8", 2: "#fdbb84", 3: "#ef6548", 4: "#990000"}


def _lookup_table() -> np.ndarray:
    names = {code: name for name, code in VIEW_CODES.items()}
    missing = [name for name in VIEW_CODES if name not in PALETTE or name not in LABELS]
    if missing or set(names) != set(range(len(names))):
        raise RuntimeError(
            f"abm.viz: PALETTE and LABELS must name every VIEW_CODES entry (missing: {missing}) "
            "and the codes must be 0..k-1"
        )
    return np.array([[round(255 * c) for c in to_rgb(PALETTE[names[code]])] for code in range(len(names))], np.uint8)


_LUT = _lookup_table()
#: View codes of CAR-T cells (every ``cart_*`` code), drawn as dots; the active state last, on top.
_CART_CODES = tuple(
    sorted((c for k, c in VIEW_CODES.items() if k.startswith("cart_")), key=lambda c: c == VIEW_CODES["cart_active"])
)
_MARKER_EDGE = np.array([25, 25, 25], np.uint8)  # outline of the CAR-T dots


# -- lattice images ------------------------------------------------------------
def render_view(view: np.ndarray) -> np.ndarray:
    """Colour a lattice view with :data:`PALETTE`.

    Parameters
    ----------
    view : numpy.ndarray
        ``uint8[n, m]`` (any integer dtype) of :data:`abm.model.VIEW_CODES`,
        as returned by ``MarrowModel.view()``.

    Returns
    -------
    numpy.ndarray
        ``uint8[n, m, 3]`` RGB image, one pixel per site.

    Raises
    ------
    ValueError
        If ``view`` is not a 2-D integer array or holds a code outside ``VIEW_CODES``.
    """
    view = np.asarray(view)
    if view.ndim != 2 or not np.issubdtype(view.dtype, np.integer):
        raise ValueError(f"view: expected a 2-D integer array of VIEW_CODES, got {view.dtype}{list(view.shape)}")
    if view.size and (view.min() < 0 or view.max() >= len(_LUT)):
        raise ValueError(f"view: codes must lie in [0, {len(_LUT) - 1}], got [{view.min()}, {view.max()}]")
    return _LUT[view]


def upsample_field(field: np.ndarray, n: int) -> np.ndarray:
    """Spread a coarse voxel field over an ``n x n`` lattice (nearest voxel).

    Parameters
    ----------
    field : numpy.ndarray
        ``float[m, m]`` voxel field with ``m = ceil(n / coarsen)`` (as in
        ``MarrowModel.snapshots[i]["il6"]``).
    n : int
        Lattice side [sites].

    Returns
    -------
    numpy.ndarray
        ``float[n, n]``: each site takes the value of the voxel that holds it.
    """
    field = np.asarray(field)
    if field.ndim != 2 or field.shape[0] != field.shape[1] or field.shape[0] < 1:
        raise ValueError(f"field: expected a square 2-D voxel array, got shape {list(field.shape)}")
    coarsen = -(-n // field.shape[0])
    if -(-n // coarsen) != field.shape[0]:
        raise ValueError(f"field: a {field.shape[0]} x {field.shape[0]} voxel grid does not tile a {n} x {n} lattice")
    return np.repeat(np.repeat(field, coarsen, axis=0), coarsen, axis=1)[:n, :n]


def overlay_field(rgb: np.ndarray, field: np.ndarray, vmax: float, *, cmap: str | Colormap = IL6_CMAP) -> np.ndarray:
    """Blend a log-scaled field over an RGB lattice image.

    The opacity grows with the field from 0 at ``vmax / 1000`` to 0.5 at
    ``vmax``, so low levels leave the cells visible and hot spots glow.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``uint8[n, n, 3]`` lattice image (:func:`render_view`).
    field : numpy.ndarray
        ``float[m, m]`` voxel field (e.g. IL-6 [pg/mL]); see :func:`upsample_field`.
    vmax : float
        Field value at the top of the colour scale (same unit as ``field``).
    cmap : str or matplotlib.colors.Colormap
        Colour scale (default :data:`IL6_CMAP`).

    Returns
    -------
    numpy.ndarray
        ``uint8[n, n, 3]`` blended image.
    """
    if not vmax > 0:
        return rgb
    n = rgb.shape[0]
    floor = vmax * 10.0 ** -(_IL6_DECADES + 1)
    level = np.log10(np.maximum(upsample_field(field, n), floor) / vmax) / _IL6_DECADES + 1.0
    level = np.clip(level, 0.0, 1.0).astype(np.float32)
    cmap = colormaps[cmap] if isinstance(cmap, str) else cmap
    colour = cmap(level, bytes=True)[..., :3].astype(np.float32)
    alpha = (_IL6_ALPHA * level)[..., None]
    return (rgb * (1.0 - alpha) + colour * alpha + 0.5).astype(np.uint8)


def _disc(radius: float) -> tuple[np.ndarray, np.ndarray]:
    r = math.ceil(radius)
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    inside = dy**2 + dx**2 <= radius**2
    return dy[inside], dx[inside]


def _draw_cart_markers(rgb: np.ndarray, view: np.ndarray, zoom: int) -> None:
    """Paint outlined dots over CAR-T sites of an upscaled lattice image, in place."""
    codes = _CART_CODES
    ii, jj = np.nonzero(np.isin(view, codes))
    if ii.size == 0:
        return
    kind = view[ii, jj]
    cy, cx = ii * zoom + zoom // 2, jj * zoom + zoom // 2
    radius = max(2.6, 0.9 * zoom)
    side = rgb.shape[0]
    layers = [(slice(None), radius + 1.2, _MARKER_EDGE)]
    layers += [(kind == code, radius, _LUT[code]) for code in codes]
    for select, r, colour in layers:
        dy, dx = _disc(r)
        ys = (cy[select, None] + dy[None, :]).ravel()
        xs = (cx[select, None] + dx[None, :]).ravel()
        ok = (ys >= 0) & (ys < side) & (xs >= 0) & (xs < side)
        rgb[ys[ok], xs[ok]] = colour


def clock(day: float) -> str:
    """Format a time in days as ``"day D, HH:MM"`` (rounded to the minute)."""
    minutes = round(day * 24 * 60)
    d, rest = divmod(minutes, 24 * 60)
    return f"day {d}, {rest // 60:02d}:{rest % 60:02d}"


def scale_bar_um(n: int, site_um: float) -> int:
    """Length of a round scale bar [um] near a fifth of the window width (``n * site_um``)."""
    width = n * site_um
    fitting = [b for b in _SCALE_BARS_UM if b <= 0.25 * width]
    return fitting[-1] if fitting else _SCALE_BARS_UM[0]


def _um_label(um: float) -> str:
    return f"{um / 1000:g} mm" if um >= 1000 else f"{um:g} µm"


# -- time course -----------------------------------------------------------------
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


def _crs_bands(ax, df: pd.DataFrame) -> list[Patch]:
    """Shade the days with CRS grade >= 1 (if the frame has ``crs_grade``)."""
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
    crs = _crs_bands(ax_i, df)
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


# -- animation frames -------------------------------------------------------------
class FrameRenderer:
    """Draws animation frames of one run, reusing one figure.

    The figure (lattice panel, legend, IL-6 colour bar and optional time
    course) is laid out and drawn once; each :meth:`render` restores that
    background and redraws only the lattice image, the scale bar, the clock
    and the cursors (Agg blitting). The lattice is upscaled by an integer
    factor, so every site is a square block of identical pixels.

    Parameters
    ----------
    n : int
        Lattice side [sites].
    site_um : float
        Edge of a site [um] (``grid.site_um``), for the scale bar.
    timecourse : pandas.DataFrame, optional
        DataCollector frame; if given, blast %, CAR-T and IL-6 are drawn beside
        the lattice with a cursor at the frame's day.
    il6_max : float, optional
        Top of the IL-6 overlay scale [pg/mL]; ``None`` draws no overlay. The
        overlay spans three decades below it (log scale).
    min_px : int
        The lattice panel is at least this many pixels wide.
    emphasize_cart : bool
        Draw each CAR-T cell as an outlined dot a few sites wide (active on
        top) so that single cells are visible; ``False`` keeps one block per site.
    """

    _DPI = 100

    def __init__(
        self,
        n: int,
        *,
        site_um: float = 10.0,
        timecourse: pd.DataFrame | None = None,
        il6_max: float | None = None,
        min_px: int = 400,
        emphasize_cart: bool = True,
    ):
        if n < 1:
            raise ValueError(f"n = {n}: expected a positive lattice side")
        if not site_um > 0:
            raise ValueError(f"site_um = {site_um}: expected a positive site size [um]")
        if il6_max is not None and not il6_max > 0:
            raise ValueError(f"il6_max = {il6_max}: expected a positive IL-6 level [pg/mL] or None")
        self.n = n
        self.site_um = float(site_um)
        self.il6_max = il6_max
        self.emphasize_cart = emphasize_cart
        self.zoom = max(1, math.ceil(min_px / n))
        side = n * self.zoom
        pad, top, legend_w, course_w = 12, 40, 190, 340 if timecourse is not None else 0
        width = pad + side + pad + legend_w + course_w + pad
        height = top + side + pad
        width += width % 2  # even sizes suit video encoders
        height += height % 2
        self._lattice_box = (height - pad - side, pad, side)
        self.size = (width, height)
        dpi = self._DPI
        fig = self.figure = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, facecolor="white")
        self.canvas = FigureCanvasAgg(fig)

        # lattice panel, placed on whole pixels so that blocks stay square
        ax = self.ax = fig.add_axes((pad / width, pad / height, side / width, side / height))
        ax.set_axis_off()
        blank = np.zeros((side, side, 3), np.uint8)
        self.image = ax.imshow(blank, extent=(0, n, n, 0), interpolation="nearest", animated=True, resample=False)
        ax.set_xlim(0, n)
        ax.set_ylim(n, 0)
        bar_um = scale_bar_um(n, site_um)
        bar = bar_um / site_um
        margin = 0.04 * n
        self.scale_bar = Rectangle(
            (margin, n - margin - 0.012 * n),
            bar,
            0.012 * n,
            facecolor="white",
            edgecolor="black",
            lw=0.8,
            animated=True,
        )
        ax.add_patch(self.scale_bar)
        stroke = [patheffects.withStroke(linewidth=2.5, foreground="black")]
        self.scale_text = ax.text(
            margin + bar / 2,
            n - margin - 0.02 * n,
            _um_label(bar_um),
            color="white",
            ha="center",
            va="bottom",
            fontsize=10,
            fontweight="bold",
            path_effects=stroke,
            animated=True,
        )
        self.clock_text = fig.text(
            pad / width,
            1 - 8 / height,
            "",
            ha="left",
            va="top",
            fontsize=15,
            fontweight="bold",
            family="monospace",
            animated=True,
        )
        window = n * site_um
        fig.text(
            (pad + side) / width,
            1 - 12 / height,
            f"marrow window {_um_label(window)} \u00d7 {_um_label(window)}",
            ha="right",
            va="top",
            fontsize=9,
            color="0.3",
        )

        # legend column
        x0 = (2 * pad + side) / width
        handles = [Patch(facecolor=PALETTE[k], edgecolor="0.5", lw=0.5, label=LABELS[k]) for k in VIEW_CODES]
        self.legend = fig.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(x0, 1 - top / height),
            frameon=False,
            fontsize=9,
            handlelength=1.2,
            handleheight=1.0,
            borderaxespad=0.0,
            borderpad=0.0,
            labelspacing=0.45,
        )
        if il6_max is not None:
            cax = fig.add_axes((x0 + 8 / width, (pad + 36) / height, (legend_w - 40) / width, 12 / height))
            norm = LogNorm(vmin=il6_max / 10**_IL6_DECADES, vmax=il6_max)
            cb = fig.colorbar(ScalarMappable(norm=norm, cmap=IL6_CMAP), cax=cax, orientation="horizontal")
            cb.set_label("IL-6 overlay [pg/mL]", fontsize=8)
            cax.tick_params(labelsize=7)

        # time course column
        self.cursors = []
        self.timecourse_axes = []
        if timecourse is not None:
            self._draw_timecourse(
                timecourse,
                (
                    (2 * pad + side + legend_w + 45) / width,
                    pad / height,
                    (course_w - 100) / width,
                    (side + top - pad - 14) / height,
                ),
            )
        self.canvas.draw()
        self._background = self.canvas.copy_from_bbox(fig.bbox)

    def _draw_timecourse(self, df: pd.DataFrame, box: tuple[float, float, float, float]) -> None:
        _require(df, ["day", "blast_fraction", "cart", "il6_mean_pg_ml"])
        x, y, w, h = box
        days = df["day"].to_numpy(float)
        gap = 0.03
        panel = (h - 2 * gap - 0.06) / 3
        rows = []
        for i in range(3):
            bottom = y + 0.06 + (2 - i) * (panel + gap)
            rows.append(self.figure.add_axes((x, bottom, w, panel)))
        frac, _ = _floored(df["blast_fraction"])
        rows[0].plot(days, 100 * frac, color=PALETTE["blast_cd19pos"], lw=1.4)
        rows[0].axhline(100 * CR_THRESHOLD, color="0.4", lw=0.7, ls="--")
        rows[0].axhline(100 * MRD_THRESHOLD, color="0.4", lw=0.7, ls=":")
        rows[0].set_yscale("log")
        rows[0].set_ylim(100 * BLAST_FRACTION_FLOOR / 2, 100)
        rows[0].set_ylabel("blasts [%]", fontsize=8)
        rows[1].plot(days, df["cart"], color=PALETTE["cart_resting"], lw=1.4, label="window")
        if "cart_active" in df.columns:
            rows[1].plot(days, df["cart_active"], color="#b8a800", lw=1.0, ls="--", label="active")
        rows[1].set_ylim(bottom=0)
        rows[1].set_ylabel("CAR-T in\nwindow [cells]", fontsize=8)
        handles = rows[1].get_legend_handles_labels()[0]
        if "blood_cart_per_ul" in df.columns:
            blood = rows[1].twinx()
            handles += blood.plot(days, df["blood_cart_per_ul"], color="0.35", lw=1.0, ls=":", label="blood")
            blood.set_ylim(bottom=0)
            blood.set_ylabel("blood [/µL]", fontsize=8, color="0.35")
            blood.tick_params(labelsize=7, colors="0.35", labelbottom=False)
        rows[1].legend(handles=handles, fontsize=7, frameon=False, loc="upper left")
        crs = _crs_bands(rows[2], df)
        rows[2].plot(days, df["il6_mean_pg_ml"], color="#7b3294", lw=1.4)
        rows[2].set_ylim(bottom=0)
        rows[2].set_ylabel("IL-6 mean\n[pg/mL]", fontsize=8)
        rows[2].set_xlabel("day", fontsize=8)
        if crs:
            rows[2].legend(handles=crs, fontsize=7, frameon=False, loc="upper left")
        lo, hi = (days.min(), days.max()) if len(days) else (0.0, 1.0)
        for ax in rows:
            ax.set_xlim(lo, max(hi, lo + 1e-9))
            ax.tick_params(labelsize=7)
            ax.grid(True, color="0.92", lw=0.5)
            if ax is not rows[2]:
                ax.tick_params(labelbottom=False)
            self.cursors.append(ax.axvline(lo, color="black", lw=1.0, animated=True))
        self.timecourse_axes = rows

    @property
    def lattice_box(self) -> tuple[int, int, int]:
        """Where the lattice sits in a frame: ``(top row, left column, side)`` [pixels]; a site is ``zoom`` wide."""
        return self._lattice_box

    @property
    def legend_texts(self) -> list[str]:
        """The legend's entries, in :data:`abm.model.VIEW_CODES` order."""
        return [t.get_text() for t in self.legend.get_texts()]

    def lattice_rgb(self, view: np.ndarray, il6: np.ndarray | None = None) -> np.ndarray:
        """Colour, overlay and upscale a view into the lattice panel's pixels (``uint8[n*zoom, n*zoom, 3]``)."""
        rgb = render_view(view)
        if il6 is not None:
            if self.il6_max is None:
                raise ValueError("il6 given but this FrameRenderer has no IL-6 scale: construct it with il6_max")
            rgb = overlay_field(rgb, il6, self.il6_max)
        if self.zoom > 1:
            rgb = np.repeat(np.repeat(rgb, self.zoom, axis=0), self.zoom, axis=1)
        if self.emphasize_cart:
            _draw_cart_markers(rgb, np.asarray(view), self.zoom)
        return rgb

    def render(
        self, view: np.ndarray, day: float, *, il6: np.ndarray | None = None, cursor_day: float | None = None
    ) -> np.ndarray:
        """Draw one frame.

        Parameters
        ----------
        view : numpy.ndarray
            ``uint8[n, n]`` of :data:`abm.model.VIEW_CODES`.
        day : float
            Time of the picture [d], shown as ``day D, HH:MM``.
        il6 : numpy.ndarray, optional
            ``float[m, m]`` IL-6 voxel field [pg/mL] to overlay.
        cursor_day : float, optional
            Day of the time-course cursor (default: ``day``).

        Returns
        -------
        numpy.ndarray
            ``uint8[height, width, 3]`` RGB frame (``self.size`` is ``(width, height)``).
        """
        view = np.asarray(view)
        if view.shape != (self.n, self.n):
            raise ValueError(f"view: expected shape [{self.n}, {self.n}], got {list(view.shape)}")
        self.image.set_data(self.lattice_rgb(view, il6))
        self.clock_text.set_text(clock(day))
        cursor = day if cursor_day is None else cursor_day
        self.canvas.restore_region(self._background)
        for artist in (self.image, self.scale_bar, self.scale_text):
            self.ax.draw_artist(artist)
        self.figure.draw_artist(self.clock_text)
        for line, ax in zip(self.cursors, self.timecourse_axes, strict=True):
            line.set_xdata([cursor, cursor])
            ax.draw_artist(line)
        return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()

    def close(self) -> None:
        """Release the figure."""
        self.figure.clear()


def render_frame(
    view: np.ndarray,
    day: float,
    *,
    il6: np.ndarray | None = None,
    site_um: float = 10.0,
    timecourse: pd.DataFrame | None = None,
    cursor_day: float | None = None,
) -> Image.Image:
    """Draw a single animation frame (see :class:`FrameRenderer` for many).

    Parameters
    ----------
    view : numpy.ndarray
        ``uint8[n, n]`` of :data:`abm.model.VIEW_CODES`.
    day : float
        Time of the picture [d].
    il6 : numpy.ndarray, optional
        ``float[m, m]`` IL-6 voxel field [pg/mL]; overlaid on a log scale
        reaching up to its own maximum.
    site_um : float
        Edge of a site [um], for the scale bar.
    timecourse : pandas.DataFrame, optional
        DataCollector frame to draw beside the lattice.
    cursor_day : float, optional
        Day of the time-course cursor (default: ``day``).

    Returns
    -------
    PIL.Image.Image
        RGB image.
    """
    view = np.asarray(view)
    if view.ndim != 2 or view.shape[0] != view.shape[1]:
        raise ValueError(f"view: expected a square 2-D array, got shape {list(view.shape)}")
    il6_max = _field_max([il6]) if il6 is not None else None
    renderer = FrameRenderer(view.shape[0], site_um=site_um, timecourse=timecourse, il6_max=il6_max)
    try:
        return Image.fromarray(renderer.render(view, day, il6=il6, cursor_day=cursor_day))
    finally:
        renderer.close()


# -- animations ------------------------------------------------------------------------
def _field_max(fields: Sequence[np.ndarray | None]) -> float:
    """Top of the overlay scale: the largest value over all frames, 1 pg/mL if all are zero."""
    top = max((float(np.max(f)) for f in fields if f is not None and np.size(f)), default=0.0)
    return top if top > 0 else 1.0


def _animation_renderer(
    snapshots: Sequence[Mapping[str, Any]], *, site_um: float, timecourse: pd.DataFrame | None, field: str
) -> FrameRenderer:
    """Check the snapshots and ``field``, and lay out one renderer for all frames."""
    if not snapshots:
        raise ValueError("snapshots: empty; run MarrowModel with snapshot_every_min to record them")
    if field not in ANIMATION_FIELDS:
        raise ValueError(f"field = {field!r}: expected one of {', '.join(map(repr, ANIMATION_FIELDS))}")
    if field == "il6" and any("il6" not in s for s in snapshots):
        raise ValueError('field = "il6" but a snapshot has no "il6" array; pass field="none"')
    n = np.asarray(snapshots[0]["view"]).shape[0]
    il6_max = _field_max([s["il6"] for s in snapshots]) if field == "il6" else None
    return FrameRenderer(n, site_um=site_um, timecourse=timecourse, il6_max=il6_max)


def _render_snapshot(renderer: FrameRenderer, snap: Mapping[str, Any]) -> np.ndarray:
    il6 = snap["il6"] if renderer.il6_max is not None else None
    return renderer.render(snap["view"], float(snap["day"]), il6=il6)


def _frames(
    renderer: FrameRenderer, snapshots: Sequence[Mapping[str, Any]], *, progress: bool, desc: str
) -> Iterator[np.ndarray]:
    from tqdm.auto import tqdm

    for snap in tqdm(snapshots, desc=desc, unit="frame", disable=not progress):
        yield _render_snapshot(renderer, snap)


def _check_fps(fps: float, limit: float = math.inf) -> None:
    if not (isinstance(fps, (int, float, np.integer, np.floating)) and 0 < fps <= limit and math.isfinite(fps)):
        top = "" if math.isinf(limit) else f" of at most {limit:g} (shorter GIF frames are slowed down by browsers)"
        raise ValueError(f"fps = {fps!r}: expected a positive frame rate{top}")


def _import_imageio_ffmpeg():
    """Import the optional ffmpeg binding, or say how to install it."""
    try:
        import imageio_ffmpeg
    except ImportError as err:
        raise RuntimeError(
            "MP4 output needs the ffmpeg binding imageio-ffmpeg, which is not installed: "
            "`pip install imageio-ffmpeg` (the cart-abm[mp4] extra), or write a GIF instead, which needs only Pillow"
        ) from err
    return imageio_ffmpeg


def _gif_palette(samples: Sequence[np.ndarray]) -> Image.Image:
    """Build a 256-colour palette: every :data:`PALETTE` colour, the rest fitted to ``samples``."""
    exact = np.concatenate([_LUT, np.array([[255, 255, 255], [0, 0, 0], _MARKER_EDGE], np.uint8)])
    sample = Image.fromarray(np.concatenate(list(samples), axis=0))
    fitted = sample.quantize(colors=256 - len(exact), method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    colours = exact.ravel().tolist() + fitted.getpalette()[: 3 * (256 - len(exact))]
    palette = Image.new("P", (1, 1))
    palette.putpalette(colours + [0] * (768 - len(colours)))
    return palette


def _to_palette(frame: np.ndarray, palette: Image.Image) -> Image.Image:
    """Map an RGB frame to ``palette`` by exact nearest colour (Pillow's own mapping may pick a near neighbour).

    Colours in the palette (every :data:`PALETTE` entry) keep their exact values.
    """
    table = np.asarray(palette.getpalette()[: 3 * 256], np.int32).reshape(-1, 3)
    packed = (frame[..., 0].astype(np.uint32) << 16) | (frame[..., 1].astype(np.uint32) << 8) | frame[..., 2]
    colours, inverse = np.unique(packed.ravel(), return_inverse=True)
    rgb = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1).astype(np.int32)
    nearest = ((rgb[:, None, :] - table[None, :, :]) ** 2).sum(axis=2).argmin(axis=1).astype(np.uint8)
    image = Image.fromarray(nearest[inverse].reshape(frame.shape[:2]), mode="P")
    image.putpalette(palette.getpalette())
    return image


def write_gif(
    snapshots: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    fps: float = 8,
    site_um: float = 10.0,
    timecourse: pd.DataFrame | None = None,
    field: str = "il6",
    progress: bool = False,
) -> Path:
    """Animate snapshots as a looping GIF.

    All frames share one 256-colour palette (taken from the first, middle
    and last frames, without dithering), so the picture does not flicker and
    unchanged regions compress to nothing. Frames are kept as palette images
    (one byte per pixel) until the file is written.

    Parameters
    ----------
    snapshots : sequence of dict
        ``MarrowModel.snapshots``: dicts with ``day`` [d], ``view``
        (``uint8[n, n]``) and, for ``field="il6"``, ``il6`` (``float[m, m]`` [pg/mL]).
    path : str or pathlib.Path
        Output ``.gif``.
    fps : float
        Frames per second (at most :data:`GIF_MAX_FPS`).
    site_um : float
        Edge of a site [um] (``grid.site_um``), for the scale bar.
    timecourse : pandas.DataFrame, optional
        DataCollector frame to draw beside the lattice with a moving cursor.
    field : {"il6", "none"}
        Overlay the IL-6 field (one log scale for the whole animation) or nothing.
    progress : bool
        Show a progress bar over frames.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    _check_fps(fps, GIF_MAX_FPS)
    renderer = _animation_renderer(snapshots, site_um=site_um, timecourse=timecourse, field=field)
    try:
        k = len(snapshots)
        palette = _gif_palette([_render_snapshot(renderer, snapshots[i]) for i in sorted({0, k // 2, k - 1})])
        images = [
            _to_palette(frame, palette) for frame in _frames(renderer, snapshots, progress=progress, desc="gif frames")
        ]
    finally:
        renderer.close()
    path = Path(path)
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=round(1000 / fps),
        loop=0,
        optimize=True,
        disposal=1,
    )
    return path


def write_mp4(
    snapshots: Sequence[Mapping[str, Any]],
    path: str | Path,
    *,
    fps: float = 8,
    site_um: float = 10.0,
    timecourse: pd.DataFrame | None = None,
    field: str = "il6",
    progress: bool = False,
    quality: float = 7.0,
) -> Path:
    """Animate snapshots as an H.264 MP4 (needs the optional ``imageio-ffmpeg``).

    Parameters are those of :func:`write_gif`, plus ``quality`` (0-10,
    imageio-ffmpeg's scale; higher is better and larger).

    Raises
    ------
    RuntimeError
        If ``imageio_ffmpeg`` is not installed.
    """
    imageio_ffmpeg = _import_imageio_ffmpeg()
    _check_fps(fps)
    path = Path(path)
    renderer = _animation_renderer(snapshots, site_um=site_um, timecourse=timecourse, field=field)
    writer = None
    try:
        for frame in _frames(renderer, snapshots, progress=progress, desc="mp4 frames"):
            if writer is None:
                height, width = frame.shape[:2]
                writer = imageio_ffmpeg.write_frames(
                    str(path),
                    (width, height),
                    fps=fps,
                    quality=quality,
                    codec="libx264",
                    pix_fmt_out="yuv420p",
                    macro_block_size=2,
                )
                writer.send(None)
            writer.send(np.ascontiguousarray(frame))
    finally:
        renderer.close()
        if writer is not None:
            writer.close()
    return path


# -- animating a finished run ---------------------------------------------------------------
def read_snapshots(path: str | Path) -> tuple[list[dict[str, Any]], float | None]:
    """Read the snapshots file that ``cart-abm run --snapshot-every`` writes.

    Parameters
    ----------
    path : str or pathlib.Path
        ``snapshots.npz`` with ``day`` (``float[k]`` [d]), ``view``
        (``uint8[k, n, n]`` of :data:`abm.model.VIEW_CODES`), optionally
        ``il6`` (``float32[k, m, m]`` [pg/mL]) and ``site_um`` (scalar [um]).

    Returns
    -------
    snapshots : list of dict
        One dict per snapshot with ``day``, ``view`` and (if stored) ``il6``,
        in the form of ``MarrowModel.snapshots``.
    site_um : float or None
        Edge of a site [um], ``None`` if the file does not record it.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable ``.npz`` or its arrays are missing or
        inconsistent (the message names the array).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such snapshots file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err}); rerun the simulation to rewrite it") from err
    missing = [name for name in ("day", "view") if name not in arrays]
    if missing:
        raise ValueError(f"{path}: missing array(s) {missing}; expected day, view and il6 as cart-abm run writes them")
    day, view = np.asarray(arrays["day"], float), arrays["view"]
    k = len(day)
    if day.ndim != 1 or k == 0:
        raise ValueError(f"{path}: day must be a non-empty 1-D array, got shape {list(day.shape)}")
    if (
        view.ndim != 3
        or view.shape[0] != k
        or view.shape[1] != view.shape[2]
        or not np.issubdtype(view.dtype, np.integer)
    ):
        raise ValueError(f"{path}: view must be an integer array [{k}, n, n], got {view.dtype}{list(view.shape)}")
    il6 = arrays.get("il6")
    if il6 is not None and (il6.ndim != 3 or il6.shape[0] != k or il6.shape[1] != il6.shape[2]):
        raise ValueError(f"{path}: il6 must be an array [{k}, m, m], got shape {list(il6.shape)}")
    site_um = float(arrays["site_um"]) if "site_um" in arrays else None
    snapshots = []
    for i in range(k):
        snap: dict[str, Any] = {"day": float(day[i]), "view": view[i]}
        if il6 is not None:
            snap["il6"] = il6[i]
        snapshots.append(snap)
    return snapshots, site_um


def _site_um_of_run(run_dir: Path) -> float:
    """``grid.site_um`` from the run's ``params.toml`` (for snapshot files that do not record it)."""
    from abm.params import Params

    params_file = run_dir / "params.toml"
    if not params_file.is_file():
        raise FileNotFoundError(
            f"{run_dir}: {SNAPSHOTS_FILE} has no site_um and there is no params.toml to take it from"
        )
    return float(Params.from_toml(params_file).grid.site_um)


def animate_run(
    run_dir: str | Path,
    *,
    fmt: str = "gif",
    fps: float = 8,
    field: str = "il6",
    out: str | Path | None = None,
    progress: bool = False,
) -> Path:
    """Animate a finished run from its folder, without simulating again.

    Reads ``RUN_DIR/snapshots.npz`` (written by ``cart-abm run
    --snapshot-every T`` or ``--animate``) and ``RUN_DIR/timeseries.csv``, and
    draws one :class:`FrameRenderer` frame per snapshot: the lattice with
    legend, scale bar and clock, optionally the IL-6 field, and the time course
    with a cursor at the frame's time. The file is written under a temporary
    name in the destination folder and renamed into place when complete, so an
    interrupted call never leaves a truncated animation behind.

    Parameters
    ----------
    run_dir : str or pathlib.Path
        Output folder of ``cart-abm run``.
    fmt : {"gif", "mp4"}
        ``gif`` needs only Pillow; ``mp4`` (H.264) needs the optional
        ``imageio-ffmpeg``.
    fps : float
        Frames (snapshots) per second; at most :data:`GIF_MAX_FPS` for GIF.
    field : {"il6", "none"}
        Overlay the IL-6 field (one log scale for the whole animation) or nothing.
    out : str or pathlib.Path, optional
        Output file, ending in ``.gif`` or ``.mp4`` as ``fmt`` says
        (default ``RUN_DIR/marrow.gif`` or ``RUN_DIR/marrow.mp4``); its folder must exist.
    progress : bool
        Show a progress bar over frames.

    Returns
    -------
    pathlib.Path
        The animation written.

    Raises
    ------
    FileNotFoundError
        If ``run_dir``, its ``snapshots.npz`` or ``timeseries.csv``, or the
        folder of ``out`` does not exist; the message says how to make them.
    ValueError
        If ``fmt``, ``fps``, ``field`` or the suffix of ``out`` is not allowed,
        or a run file is malformed.
    RuntimeError
        If ``fmt="mp4"`` and ``imageio-ffmpeg`` is not installed (checked
        before any work is done).
    """
    if fmt not in ANIMATION_FORMATS:
        raise ValueError(f"format = {fmt!r}: expected one of {', '.join(ANIMATION_FORMATS)}")
    if field not in ANIMATION_FIELDS:
        raise ValueError(f"field = {field!r}: expected one of {', '.join(ANIMATION_FIELDS)}")
    _check_fps(fps, GIF_MAX_FPS if fmt == "gif" else math.inf)
    if fmt == "mp4":
        _import_imageio_ffmpeg()
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder; give the --out folder of a `cart-abm run`")
    target = run_dir / f"marrow.{fmt}" if out is None else Path(out)
    if target.suffix.lower() != f".{fmt}":
        raise ValueError(f"out = {str(target)!r}: expected a file name ending in .{fmt} for format {fmt}")
    if not target.parent.is_dir():
        raise FileNotFoundError(f"out = {str(target)!r}: the folder {str(target.parent)!r} does not exist")
    snapshots_file = run_dir / SNAPSHOTS_FILE
    if not snapshots_file.is_file():
        raise FileNotFoundError(
            f"no {SNAPSHOTS_FILE} in {run_dir}: the run kept no lattice snapshots; rerun it with "
            "`cart-abm run --snapshot-every 6h` (or --animate) to record them"
        )
    timeseries_file = run_dir / TIMESERIES_FILE
    if not timeseries_file.is_file():
        raise FileNotFoundError(
            f"no {TIMESERIES_FILE} in {run_dir}: the run did not finish writing its outputs; rerun it"
        )
    snapshots, site_um = read_snapshots(snapshots_file)
    if field == "il6" and "il6" not in snapshots[0]:
        raise ValueError(f"{snapshots_file} holds no il6 array; animate with field none")
    if site_um is None:
        site_um = _site_um_of_run(run_dir)
    try:
        timecourse = pd.read_csv(timeseries_file)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"{timeseries_file}: not a readable CSV time series ({err})") from err
    writer = write_gif if fmt == "gif" else write_mp4
    # a fresh hidden name beside the target (not mkstemp, whose 0600 mode would outlive the rename)
    tmp = target.parent / f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}.{fmt}"
    try:
        writer(snapshots, tmp, fps=fps, site_um=site_um, timecourse=timecourse, field=field, progress=progress)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
