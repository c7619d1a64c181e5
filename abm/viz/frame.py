"""Animation frames: the lattice with legend, scale bar, clock, IL-6 overlay and time course.

:class:`FrameRenderer` draws animation frames (lattice, legend, scale bar,
clock, optional IL-6 overlay and time course with a cursor). It lays the
figure out once and redraws only what changes (Agg blitting), so a frame
costs a few tens of milliseconds. :func:`render_frame` is the one-off form.

The map shows one cell per site at its scale (:func:`abm.viz.render.render_lattice`):
no marker is bigger than a site, and nothing else (scale bar, labels) is drawn
over it, so each kind's share of the map's pixels is its share of the sites.
The legend names every colour the map can hold: one patch per kind and, with
the IL-6 overlay, the tint ramp of each kind the overlay tints
(:data:`abm.viz.render.IL6_TINTED`) on the overlay's log scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from PIL import Image

from abm.model import VIEW_CODES
from abm.outcomes import CR_THRESHOLD, MRD_THRESHOLD
from abm.viz.render import (
    _IL6_DECADES,
    IL6_TINTED,
    LABELS,
    PALETTE,
    _um_label,
    clock,
    il6_tint_ramps,
    lattice_side,
    render_lattice,
    scale_bar_um,
)
from abm.viz.timecourse import BLAST_FRACTION_FLOOR, _floored, _require, crs_bands


def _positive_int(name: str, value: object) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} = {value!r}: expected a positive integer")
    return int(value)


class FrameRenderer:
    """Draws animation frames of one run, reusing one figure.

    The figure (lattice panel, scale bar, legend, IL-6 key and optional time
    course) is laid out and drawn once; each :meth:`render` restores that
    background and redraws only the lattice image, the clock and the cursors
    (Agg blitting). The map draws one cell per site at its scale
    (:func:`~abm.viz.render.render_lattice`): each site is a ``zoom x zoom``
    block of its kind's colour, or, when the map has fewer pixels than sites
    (``stride > 1``), each pixel shows the site nearest its centre
    (nearest-site sampling on a regular grid, which keeps each kind's share).
    The scale bar lies below the map, never over it.

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
        overlay spans three decades below it (log scale) and tints only the
        kinds of :data:`~abm.viz.render.IL6_TINTED`; the legend draws each
        one's tint ramp on that scale.
    min_px : int
        Without ``zoom``: the map is at least this many pixels wide
        (``zoom = ceil(min_px / n)``, at least 1).
    zoom : int, optional
        Pixels per site edge; overrides ``min_px`` and ``max_px``.
    max_px : int, optional
        Without ``zoom``: the map is at most this many pixels wide; a lattice
        wider than that is sampled every ``stride = ceil(n / max_px)`` sites.
    """

    _DPI = 100
    _PAD, _TOP, _STRIP, _LEGEND_W, _COURSE_W = 12, 40, 28, 200, 340
    _KEY_ROW, _KEY_TITLE, _KEY_TICKS = 11, 30, 22  # IL-6 key: ramp row height, title and tick-label space [px]

    def __init__(
        self,
        n: int,
        *,
        site_um: float = 10.0,
        timecourse: pd.DataFrame | None = None,
        il6_max: float | None = None,
        min_px: int = 400,
        zoom: int | None = None,
        max_px: int | None = None,
    ):
        if n < 1:
            raise ValueError(f"n = {n}: expected a positive lattice side")
        if not site_um > 0:
            raise ValueError(f"site_um = {site_um}: expected a positive site size [um]")
        if il6_max is not None and not il6_max > 0:
            raise ValueError(f"il6_max = {il6_max}: expected a positive IL-6 level [pg/mL] or None")
        min_px = _positive_int("min_px", min_px)
        self.n = n
        self.site_um = float(site_um)
        self.il6_max = il6_max
        if zoom is not None:
            self.zoom, self.stride = _positive_int("zoom", zoom), 1
        elif max_px is not None and n > _positive_int("max_px", max_px):
            self.zoom, self.stride = 1, math.ceil(n / max_px)
        else:
            fit = max(1, math.ceil(min_px / n))
            self.zoom, self.stride = (fit if max_px is None else max(1, min(fit, max_px // n))), 1
        side = lattice_side(n, zoom=self.zoom, stride=self.stride)
        pad, top, strip, legend_w = self._PAD, self._TOP, self._STRIP, self._LEGEND_W
        course_w = self._COURSE_W if timecourse is not None else 0
        width = pad + side + pad + legend_w + course_w + pad
        width += width % 2  # even sizes suit video encoders
        dpi = self._DPI
        fig = self.figure = Figure(figsize=(width / dpi, 4.0), dpi=dpi, facecolor="white")
        self.canvas = FigureCanvasAgg(fig)

        # the legend first: its height (fixed by its fonts) sets the height of the legend column
        x0 = (2 * pad + side) / width
        handles = [Patch(facecolor=PALETTE[k], edgecolor="0.5", lw=0.5, label=LABELS[k]) for k in VIEW_CODES]
        self.legend = fig.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(x0, 1.0),
            frameon=False,
            fontsize=9,
            handlelength=1.2,
            handleheight=1.0,
            borderaxespad=0.0,
            borderpad=0.0,
            labelspacing=0.45,
        )
        fig.draw_without_rendering()
        legend_h = math.ceil(self.legend.get_window_extent().height)
        key_h = self._KEY_TITLE + len(IL6_TINTED) * self._KEY_ROW + self._KEY_TICKS if il6_max is not None else 0
        column = legend_h + (16 + key_h if key_h else 0)
        height = top + max(side + strip, column) + pad
        height += height % 2
        fig.set_size_inches(width / dpi, height / dpi)
        self.legend.set_bbox_to_anchor((x0, 1 - top / height))
        self._lattice_box = (top, pad, side)
        self.size = (width, height)

        def box(left: float, top_px: float, w: float, h: float) -> tuple[float, float, float, float]:
            """Figure coordinates of a box given in pixels from the top left."""
            return (left / width, 1 - (top_px + h) / height, w / width, h / height)

        # lattice panel, placed on whole pixels so that blocks stay square
        ax = self.ax = fig.add_axes(box(pad, top, side, side))
        ax.set_axis_off()
        blank = np.zeros((side, side, 3), np.uint8)
        self.image = ax.imshow(blank, extent=(0, n, n, 0), interpolation="nearest", animated=True, resample=False)
        ax.set_xlim(0, n)
        ax.set_ylim(n, 0)

        # scale bar, in a strip below the map (in site units, so it is right at any zoom or stride)
        bar_um = scale_bar_um(n, site_um)
        bar = bar_um / site_um
        sax = self.scale_axes = fig.add_axes(box(pad, top + side, side, strip))
        sax.set_axis_off()
        sax.set_xlim(0, n)
        sax.set_ylim(0, 1)
        self.scale_bar = Rectangle((0, 0.45), bar, 0.25, facecolor="black", edgecolor="none")
        sax.add_patch(self.scale_bar)
        self.scale_text = sax.text(bar + 0.02 * n, 0.57, _um_label(bar_um), ha="left", va="center", fontsize=9)

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

        # IL-6 key: the colour of each tinted kind along the overlay's log scale
        self.il6_key = None
        if il6_max is not None:
            key_top = top + legend_h + 16
            fig.text(
                x0,
                1 - key_top / height,
                "IL-6 overlay [pg/mL]\ntints only these kinds:",
                ha="left",
                va="top",
                fontsize=8,
                linespacing=1.3,
            )
            rows = len(IL6_TINTED)
            kax = self.il6_key_axes = fig.add_axes(
                box(2 * pad + side + 2, key_top + self._KEY_TITLE, legend_w - 100, rows * self._KEY_ROW)
            )
            lo, hi = math.log10(il6_max) - _IL6_DECADES, math.log10(il6_max)
            ramps = il6_tint_ramps()
            self.il6_key = kax.imshow(
                np.stack([ramps[k] for k in IL6_TINTED]),
                extent=(lo, hi, rows, 0),
                aspect="auto",
                interpolation="nearest",
                resample=False,
            )
            kax.yaxis.tick_right()
            kax.set_yticks(np.arange(rows) + 0.5, [LABELS[k] for k in IL6_TINTED])
            decades = range(math.ceil(lo - 1e-9), math.floor(hi + 1e-9) + 1)
            kax.set_xticks(list(decades), [f"{10.0**d:g}" for d in decades])
            kax.tick_params(labelsize=7, length=2, pad=1.5)
            kax.tick_params(axis="y", length=0)
            for spine in kax.spines.values():
                spine.set_linewidth(0.5)
                spine.set_color("0.5")

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
                    (height - pad - 26) / height,
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
        """Where the map sits in a frame: ``(top row, left column, side)`` [pixels].

        A site is ``zoom`` pixels wide (``stride`` sites per pixel when sampled).
        """
        return self._lattice_box

    @property
    def legend_texts(self) -> list[str]:
        """The legend's kind entries, in :data:`abm.model.VIEW_CODES` order."""
        return [t.get_text() for t in self.legend.get_texts()]

    @property
    def legend_colours(self) -> dict[str, np.ndarray]:
        """Every colour the legend names, read back from its drawn artists.

        ``{label: uint8[k, 3]}``: each kind's patch colour (``k = 1``) and, with
        the IL-6 overlay, ``"IL-6 on <kind label>"`` with the 256 colours of that
        kind's tint ramp as drawn in the IL-6 key. Every colour of the map is one of these.
        """
        out = {}
        for handle, text in zip(self.legend.legend_handles, self.legend.get_texts(), strict=True):
            out[text.get_text()] = np.array([[round(255 * c) for c in to_rgb(handle.get_facecolor())]], np.uint8)
        if self.il6_key is not None:
            labels = [t.get_text() for t in self.il6_key_axes.get_yticklabels()]
            for label, ramp in zip(labels, np.asarray(self.il6_key.get_array()), strict=True):
                out[f"IL-6 on {label}"] = ramp.astype(np.uint8)
        return out

    def lattice_rgb(self, view: np.ndarray, il6: np.ndarray | None = None) -> np.ndarray:
        """The map panel's pixels (``uint8[side, side, 3]``, see :func:`~abm.viz.render.render_lattice`)."""
        if il6 is not None and self.il6_max is None:
            raise ValueError("il6 given but this FrameRenderer has no IL-6 scale: construct it with il6_max")
        return render_lattice(view, zoom=self.zoom, stride=self.stride, il6=il6, il6_max=self.il6_max)

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
        self.ax.draw_artist(self.image)
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
    zoom: int | None = None,
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
    zoom : int, optional
        Pixels per site edge (default: the map at least 400 pixels wide).

    Returns
    -------
    PIL.Image.Image
        RGB image.
    """
    view = np.asarray(view)
    if view.ndim != 2 or view.shape[0] != view.shape[1]:
        raise ValueError(f"view: expected a square 2-D array, got shape {list(view.shape)}")
    il6_max = _field_max([il6]) if il6 is not None else None
    renderer = FrameRenderer(view.shape[0], site_um=site_um, timecourse=timecourse, il6_max=il6_max, zoom=zoom)
    try:
        return Image.fromarray(renderer.render(view, day, il6=il6, cursor_day=cursor_day))
    finally:
        renderer.close()
