"""Animation frames: the lattice with legend, scale bar, clock, IL-6 overlay and time course.

:class:`FrameRenderer` draws animation frames (lattice, legend, scale bar,
clock, optional IL-6 overlay and time course with a cursor). It lays the
figure out once and redraws only what changes (Agg blitting), so a frame
costs a few tens of milliseconds. :func:`render_frame` is the one-off form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from PIL import Image

from abm.model import VIEW_CODES
from abm.outcomes import CR_THRESHOLD, MRD_THRESHOLD
from abm.viz.render import (
    _IL6_DECADES,
    IL6_CMAP,
    LABELS,
    PALETTE,
    _draw_cart_markers,
    _um_label,
    clock,
    overlay_field,
    render_view,
    scale_bar_um,
)
from abm.viz.timecourse import BLAST_FRACTION_FLOOR, _floored, _require, crs_bands


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
        crs = crs_bands(rows[2], df)
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


def _field_max(fields: Sequence[np.ndarray | None]) -> float:
    """Top of the overlay scale: the largest value over all frames, 1 pg/mL if all are zero."""
    top = max((float(np.max(f)) for f in fields if f is not None and np.size(f)), default=0.0)
    return top if top > 0 else 1.0


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
