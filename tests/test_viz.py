"""Tests of abm.viz: lattice colours, frames, figures and animations (synthetic arrays, one tiny run)."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from abm import viz
from abm.model import VIEW_CODES, MarrowModel


def _rgb(name: str) -> np.ndarray:
    return np.array([round(255 * c) for c in to_rgb(viz.PALETTE[name])], np.uint8)


def _view(n: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    view = rng.choice([VIEW_CODES["normal"], VIEW_CODES["blast_cd19pos"], VIEW_CODES["empty"]], size=(n, n))
    view[:3, :] = VIEW_CODES["bone"]
    view[n // 2, :] = VIEW_CODES["sinusoid"]
    return view.astype(np.uint8)


def _snapshots(k: int = 3, n: int = 24, coarsen: int = 4) -> list[dict]:
    m = -(-n // coarsen)
    out = []
    for i in range(k):
        view = _view(n, seed=i)
        view[5 + i, 5] = VIEW_CODES["cart_active"]
        il6 = np.zeros((m, m), np.float32)
        il6[1, 1] = 10.0 * (i + 1)
        out.append({"day": i * 0.25, "view": view, "il6": il6})
    return out


def _timecourse(rows: int = 9) -> pd.DataFrame:
    day = np.linspace(0.0, 2.0, rows)
    blast_fraction = np.linspace(0.6, 0.0, rows)
    blast_fraction[-3:] = 0.0  # zeros must be drawn at the floor, not dropped
    return pd.DataFrame(
        {
            "day": day,
            "blasts": (blast_fraction * 1000).astype(int),
            "blasts_cd19neg": np.minimum(2, (blast_fraction * 1000).astype(int)),
            "bcells": np.linspace(80, 0, rows).astype(int),
            "normal": np.full(rows, 300),
            "cart": np.arange(rows) * 3,
            "cart_active": np.arange(rows),
            "blast_fraction": blast_fraction,
            "il6_mean_pg_ml": np.linspace(0.0, 5.0, rows),
            "il6_max_pg_ml": np.linspace(0.0, 50.0, rows),
            "blood_cart_per_ul": np.linspace(30.0, 1.0, rows),
            "kills": np.arange(rows) * 10,
        }
    )


# -- unit ----------------------------------------------------------------------------
def test_render_view_each_code_gets_its_palette_colour():
    view = np.array([list(VIEW_CODES.values())], np.uint8)
    rgb = viz.render_view(view)
    assert rgb.shape == (1, len(VIEW_CODES), 3) and rgb.dtype == np.uint8
    for name, code in VIEW_CODES.items():
        assert np.array_equal(rgb[0, code], _rgb(name)), name


def test_palette_and_labels_cover_every_view_code_with_distinct_colours():
    assert set(viz.PALETTE) == set(VIEW_CODES) == set(viz.LABELS)
    assert len({viz.PALETTE[k].lower() for k in VIEW_CODES}) == len(VIEW_CODES)


@pytest.mark.parametrize("bad", [np.array([[0, 10]], np.uint8), np.zeros((2, 2), float), np.zeros(4, np.uint8)])
def test_render_view_invalid_input_raises(bad):
    with pytest.raises(ValueError, match="view"):
        viz.render_view(bad)


def test_upsample_field_uneven_lattice_each_site_takes_its_voxel():
    field = np.arange(9, dtype=float).reshape(3, 3)  # n = 10, coarsen = 4 -> 3 voxels per side
    up = viz.upsample_field(field, 10)
    assert up.shape == (10, 10)
    assert up[0, 0] == 0 and up[3, 4] == 1 and up[9, 9] == 8 and up[8, 0] == 6


def test_clock_formats_day_hours_minutes():
    assert viz.clock(0.0) == "day 0, 00:00"
    assert viz.clock(1.25) == "day 1, 06:00"
    assert viz.clock(2 - 1e-7) == "day 2, 00:00"
    assert viz.clock(27 + 23.5 / 24) == "day 27, 23:30"


def test_scale_bar_um_is_round_and_about_a_fifth_of_the_window():
    assert viz.scale_bar_um(200, 10.0) == 500
    assert viz.scale_bar_um(24, 10.0) == 50
    assert viz.scale_bar_um(1000, 20.0) == 5000


# -- frames ----------------------------------------------------------------------------
def test_frame_renderer_lattice_pixels_are_palette_blocks_and_legend_lists_every_kind():
    view = _view(24)
    renderer = viz.FrameRenderer(24)
    frame = renderer.render(view, 1.5)
    width, height = renderer.size
    assert frame.shape == (height, width, 3) and width >= 400 + 190
    assert renderer.legend_texts == [viz.LABELS[k] for k in VIEW_CODES]
    top, left, side = renderer.lattice_box
    z = renderer.zoom
    assert side == 24 * z >= 400
    for i, j in [(0, 0), (12, 7), (20, 3), (8, 23)]:  # away from the scale bar (bottom left)
        block = frame[top + i * z : top + (i + 1) * z, left + j * z : left + (j + 1) * z]
        name = next(k for k, c in VIEW_CODES.items() if c == view[i, j])
        assert np.all(block == _rgb(name)), (i, j, name)
    renderer.close()


def test_render_frame_returns_image_with_legend_clock_and_timecourse():
    snap = _snapshots(1)[0]
    plain = viz.render_frame(snap["view"], snap["day"])
    full = viz.render_frame(snap["view"], snap["day"], il6=snap["il6"], timecourse=_timecourse(), cursor_day=1.0)
    assert isinstance(plain, Image.Image) and plain.mode == "RGB"
    assert full.size[0] > plain.size[0] and full.size[1] == plain.size[1]
    legend_region = np.asarray(plain)[40:200, 440:600]
    assert legend_region.std() > 10  # the legend is drawn (not a blank column)


def test_frame_renderer_cart_marker_wider_than_one_site():
    view = np.full((24, 24), VIEW_CODES["empty"], np.uint8)
    view[10, 10] = VIEW_CODES["cart_active"]
    renderer = viz.FrameRenderer(24, min_px=48)  # zoom 2
    rgb = renderer.lattice_rgb(view)
    assert np.array_equal(rgb[20, 22], _rgb("cart_active"))  # the neighbouring site is painted
    assert np.array_equal(
        viz.FrameRenderer(24, min_px=48, emphasize_cart=False).lattice_rgb(view)[20, 23], _rgb("empty")
    )


def test_frame_renderer_il6_without_scale_raises():
    snap = _snapshots(1)[0]
    with pytest.raises(ValueError, match="il6_max"):
        viz.FrameRenderer(24).render(snap["view"], 0.0, il6=snap["il6"])


def test_overlay_field_tints_only_where_the_field_is_high():
    rgb = viz.render_view(np.zeros((8, 8), np.uint8))
    field = np.zeros((2, 2))
    field[0, 0] = 100.0
    out = viz.overlay_field(rgb, field, vmax=100.0)
    assert np.array_equal(out[4:, 4:], rgb[4:, 4:])
    assert not np.array_equal(out[:4, :4], rgb[:4, :4])


# -- figures and animations ---------------------------------------------------------------------
def test_plot_timecourse_with_zero_blasts_writes_png(tmp_path):
    path = viz.plot_timecourse(_timecourse(), tmp_path / "tc.png", title="synthetic")
    assert path.stat().st_size > 10_000
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 500


def test_plot_timecourse_with_crs_grade_draws_bands(tmp_path):
    df = _timecourse()
    df["crs_grade"] = [0, 0, 1, 2, 2, 3, 1, 0, 0]
    assert viz.plot_timecourse(df, tmp_path / "crs.png").stat().st_size > 10_000


def test_plot_timecourse_missing_column_raises(tmp_path):
    with pytest.raises(ValueError, match="il6_max_pg_ml"):
        viz.plot_timecourse(_timecourse().drop(columns="il6_max_pg_ml"), tmp_path / "x.png")


def test_write_gif_three_snapshots_has_three_frames(tmp_path):
    path = viz.write_gif(_snapshots(3), tmp_path / "a.gif", fps=4, timecourse=_timecourse())
    with Image.open(path) as im:
        assert im.n_frames == 3
        assert im.info["duration"] == 250


def test_write_gif_empty_or_bad_field_raises(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        viz.write_gif([], tmp_path / "a.gif")
    with pytest.raises(ValueError, match="field"):
        viz.write_gif(_snapshots(1), tmp_path / "a.gif", field="cxcl12")


def test_write_mp4_without_imageio_ffmpeg_raises_with_install_hint(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails as if not installed
    with pytest.raises(RuntimeError, match="pip install imageio-ffmpeg"):
        viz.write_mp4(_snapshots(2), tmp_path / "a.mp4")


def test_write_mp4_with_imageio_ffmpeg_writes_file(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    path = viz.write_mp4(_snapshots(3), tmp_path / "a.mp4", timecourse=_timecourse())
    assert path.stat().st_size > 1000


# -- integration with a tiny run --------------------------------------------------------------------
def test_tiny_model_snapshots_animate_and_plot(tmp_path):
    # the python backend: no JIT compile (the Numba cache is keyed on the kernel sources)
    model = MarrowModel(seed=1, backend="python", snapshot_every_min=60, **{"grid.size": 24, "time.days": 0.5}).run()
    df = model.datacollector.get_model_vars_dataframe()
    site_um = model.params.grid.site_um
    path = viz.write_gif(model.snapshots, tmp_path / "run.gif", site_um=site_um, timecourse=df)
    with Image.open(path) as im:
        assert im.n_frames == len(model.snapshots) == 13
    assert viz.plot_timecourse(df, tmp_path / "run.png").stat().st_size > 10_000
