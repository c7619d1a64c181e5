"""Pictures of a run: lattice images, time-course figures and animations.

Everything here is a pure function of arrays and DataFrames that a run has
already produced (``MarrowModel.view()``, ``MarrowModel.snapshots``, the
DataCollector's ``get_model_vars_dataframe()``); nothing here simulates.
The package, by job:

* :mod:`abm.viz.render`: the lattice colours (:data:`PALETTE`, :data:`LABELS`),
  the raster of a view (:func:`render_view`), the map of a frame, one cell per
  site at its scale (:func:`render_lattice`), the IL-6 overlay
  (:func:`overlay_field`, tinting only :data:`IL6_TINTED` in frames, along
  :func:`il6_tint_ramps`), :func:`clock` and :func:`scale_bar_um`;
* :mod:`abm.viz.timecourse`: the four-panel time-course PNG
  (:func:`plot_timecourse`) and its CRS bands (:func:`crs_bands`);
* :mod:`abm.viz.frame`: animation frames (:class:`FrameRenderer`, and
  :func:`render_frame` for one);
* :mod:`abm.viz.animate`: GIF and MP4 files (:func:`write_gif`,
  :func:`write_mp4`) and animating a finished run folder (:func:`animate_run`);
* :mod:`abm.viz.snapshots`: reading a run's ``snapshots.npz``
  (:func:`read_snapshots`).

Matplotlib is used through :class:`matplotlib.figure.Figure` with the Agg
canvas directly (never ``pyplot``), so the package is headless-safe and leaves
no global figures behind. :data:`CR_THRESHOLD` and :data:`MRD_THRESHOLD` are
those of :mod:`abm.outcomes`, re-exported because the figures draw them.
"""

from abm.outcomes import CR_THRESHOLD, MRD_THRESHOLD
from abm.viz.animate import ANIMATION_FIELDS, ANIMATION_FORMATS, GIF_MAX_FPS, animate_run, write_gif, write_mp4
from abm.viz.frame import FrameRenderer, render_frame
from abm.viz.render import (
    IL6_CMAP,
    IL6_TINTED,
    LABELS,
    PALETTE,
    clock,
    il6_tint_ramps,
    lattice_side,
    overlay_field,
    render_lattice,
    render_view,
    scale_bar_um,
    upsample_field,
)
from abm.viz.snapshots import SNAPSHOTS_FILE, TIMESERIES_FILE, read_snapshots
from abm.viz.timecourse import BLAST_FRACTION_FLOOR, CD22_NEGATIVE_COLOR, crs_bands, plot_timecourse

__all__ = [
    "ANIMATION_FIELDS", "ANIMATION_FORMATS", "BLAST_FRACTION_FLOOR", "CD22_NEGATIVE_COLOR", "CR_THRESHOLD",
    "GIF_MAX_FPS", "IL6_CMAP", "IL6_TINTED", "LABELS", "MRD_THRESHOLD", "PALETTE", "SNAPSHOTS_FILE", "TIMESERIES_FILE",
    "FrameRenderer", "animate_run", "clock", "crs_bands", "il6_tint_ramps", "lattice_side", "overlay_field",
    "plot_timecourse", "read_snapshots", "render_frame", "render_lattice", "render_view", "scale_bar_um",
    "upsample_field", "write_gif", "write_mp4",
]
