"""Animations: GIF and MP4 files of ``MarrowModel.snapshots``, and of a finished run folder.

* :func:`write_gif` and :func:`write_mp4` animate ``MarrowModel.snapshots``,
  one :class:`~abm.viz.frame.FrameRenderer` frame per snapshot; GIF frames
  share one 256-colour palette that keeps every kind's colour exact and
  never maps another colour (an IL-6 tint, anti-aliased text) onto a kind's.
* :func:`animate_run` animates a finished ``cart-abm run`` folder without
  simulating again, writing the file atomically.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from abm.viz.frame import FrameRenderer, _field_max
from abm.viz.render import _LUT
from abm.viz.snapshots import SNAPSHOTS_FILE, TIMESERIES_FILE, _site_um_of_run, read_snapshots

#: What :func:`write_gif`, :func:`write_mp4` and :func:`animate_run` can overlay on the lattice.
ANIMATION_FIELDS = ("il6", "none")
#: Container formats of :func:`animate_run`.
ANIMATION_FORMATS = ("gif", "mp4")
#: Browsers slow down GIF frames shorter than 20 ms (to 100 ms), so GIFs play at most this many frames per second.
GIF_MAX_FPS = 50.0


def _animation_renderer(
    snapshots: Sequence[Mapping[str, Any]],
    *,
    site_um: float,
    timecourse: pd.DataFrame | None,
    field: str,
    zoom: int | None = None,
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
    return FrameRenderer(n, site_um=site_um, timecourse=timecourse, il6_max=il6_max, zoom=zoom)


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


#: GIF palette entries that only pixels of exactly that colour map to: every kind's colour.
_RESERVED = _LUT


def _packed(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _gif_palette(samples: Sequence[np.ndarray]) -> Image.Image:
    """Build a 256-colour palette: every kind's colour exactly, white, black, the rest fitted to ``samples``.

    The fitted part is fitted to the pixels of ``samples`` that are not a kind's
    colour (tints, text, lines), so it spends no entries on the kinds.
    """
    exact = np.concatenate([_RESERVED, np.array([[255, 255, 255], [0, 0, 0]], np.uint8)])
    pixels = np.concatenate([np.asarray(f).reshape(-1, 3) for f in samples], axis=0)
    pixels = pixels[~np.isin(_packed(pixels), _packed(_RESERVED))]
    free = 256 - len(exact)
    colours = exact.ravel().tolist()
    if len(pixels):
        sample = Image.fromarray(np.ascontiguousarray(pixels[None, :, :]))
        fitted = sample.quantize(colors=free, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        colours += fitted.getpalette()[: 3 * free]
    palette = Image.new("P", (1, 1))
    palette.putpalette(colours + [0] * (768 - len(colours)))
    return palette


def _to_palette(frame: np.ndarray, palette: Image.Image) -> Image.Image:
    """Map an RGB frame to ``palette`` by exact nearest colour (Pillow's own mapping may pick a near neighbour).

    A pixel of a kind's colour (:data:`~abm.viz.render.PALETTE`) keeps it exactly;
    any other pixel goes to the nearest entry that is *not* a kind's colour, so
    quantisation never merges a tint or a line into a kind (nor two kinds).
    """
    table = np.asarray(palette.getpalette()[: 3 * 256], np.int32).reshape(-1, 3)
    reserved = _packed(_RESERVED)
    table_packed = _packed(table)
    targets = np.flatnonzero(~np.isin(table_packed, reserved))  # fitted entries equal to a kind's colour are left out
    colours, inverse = np.unique(_packed(frame).ravel(), return_inverse=True)
    rgb = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1).astype(np.int32)
    nearest = targets[((rgb[:, None, :] - table[None, targets, :]) ** 2).sum(axis=2).argmin(axis=1)]
    exact = np.isin(colours, reserved)
    order = np.argsort(reserved)  # the kinds' colours are palette entries 0..k-1, in _RESERVED order
    nearest[exact] = order[np.searchsorted(reserved[order], colours[exact])]
    image = Image.fromarray(nearest.astype(np.uint8)[inverse].reshape(frame.shape[:2]), mode="P")
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
    zoom: int | None = None,
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
    zoom : int, optional
        Pixels per site edge of the map (default: the map at least 400 pixels
        wide); every site is drawn as one ``zoom x zoom`` block of its kind's colour.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    _check_fps(fps, GIF_MAX_FPS)
    renderer = _animation_renderer(snapshots, site_um=site_um, timecourse=timecourse, field=field, zoom=zoom)
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
    zoom: int | None = None,
) -> Path:
    """Animate snapshots as an H.264 MP4 (needs the optional ``imageio-ffmpeg``).

    Parameters are those of :func:`write_gif` (``zoom`` included), plus
    ``quality`` (0-10, imageio-ffmpeg's scale; higher is better and larger).

    Raises
    ------
    RuntimeError
        If ``imageio_ffmpeg`` is not installed.
    """
    imageio_ffmpeg = _import_imageio_ffmpeg()
    _check_fps(fps)
    path = Path(path)
    renderer = _animation_renderer(snapshots, site_um=site_um, timecourse=timecourse, field=field, zoom=zoom)
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


def animate_run(
    run_dir: str | Path,
    *,
    fmt: str = "gif",
    fps: float = 8,
    field: str = "il6",
    out: str | Path | None = None,
    progress: bool = False,
    zoom: int | None = None,
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
    zoom : int, optional
        Pixels per site edge of the map (default: the map at least 400 pixels
        wide); each site is one ``zoom x zoom`` block of its kind's colour.

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
        If ``fmt``, ``fps``, ``field``, ``zoom`` or the suffix of ``out`` is not allowed,
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
    if zoom is not None and (not isinstance(zoom, (int, np.integer)) or isinstance(zoom, bool) or zoom < 1):
        raise ValueError(f"zoom = {zoom!r}: expected a positive integer (pixels per site edge)")
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
        writer(
            snapshots, tmp, fps=fps, site_um=site_um, timecourse=timecourse, field=field, progress=progress, zoom=zoom
        )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target
