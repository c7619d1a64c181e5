"""Tests of abm.viz: lattice colours, frames, figures and animations (synthetic arrays, one tiny run)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from PIL import Image

from abm import viz
from abm.cli import main
from abm.model import VIEW_CODES, MarrowModel
from abm.viz.render import IL6_TINTED


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
    assert set(viz.PALETTE) == set(viz.LABELS) >= set(VIEW_CODES)
    assert len({c.lower() for c in viz.PALETTE.values()}) == len(viz.PALETTE)


@pytest.mark.parametrize(
    "bad", [np.array([[0, len(VIEW_CODES)]], np.uint8), np.zeros((2, 2), float), np.zeros(4, np.uint8)]
)
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
    for i, j in [(0, 0), (12, 7), (20, 3), (8, 23), (23, 0)]:  # the scale bar lies below the map, not over it
        block = frame[top + i * z : top + (i + 1) * z, left + j * z : left + (j + 1) * z]
        name = next(k for k, c in VIEW_CODES.items() if c == view[i, j])
        assert np.all(block == _rgb(name)), (i, j, name)
    assert np.array_equal(frame[top : top + side, left : left + side], renderer.lattice_rgb(view))
    renderer.close()


def test_render_frame_returns_image_with_legend_clock_and_timecourse():
    snap = _snapshots(1)[0]
    plain = viz.render_frame(snap["view"], snap["day"])
    full = viz.render_frame(snap["view"], snap["day"], il6=snap["il6"], timecourse=_timecourse(), cursor_day=1.0)
    assert isinstance(plain, Image.Image) and plain.mode == "RGB"
    assert full.size[0] > plain.size[0] and full.size[1] == plain.size[1]
    legend_region = np.asarray(plain)[40:200, 440:600]
    assert legend_region.std() > 10  # the legend is drawn (not a blank column)


@pytest.mark.parametrize("zoom", [1, 2, 5])
def test_frame_renderer_cart_cell_covers_exactly_its_own_site_block(zoom):
    view = np.full((24, 24), VIEW_CODES["empty"], np.uint8)
    view[10, 10] = VIEW_CODES["cart_active"]
    renderer = viz.FrameRenderer(24, zoom=zoom)
    rgb = renderer.lattice_rgb(view)
    painted = np.all(rgb == _rgb("cart_active"), axis=2)
    expected = np.zeros_like(painted)
    expected[10 * zoom : 11 * zoom, 10 * zoom : 11 * zoom] = True
    assert np.array_equal(painted, expected)  # no marker bigger than a site
    assert np.all(rgb[~expected] == _rgb("empty"))


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


# -- proportions: one cell per site, and a legend naming every colour ----------------------------
#: Site shares of the synthetic view: 10 % CAR-T (as at day 15 of the user's report: 9,974 of ~100,000).
_SHARES = {
    "empty": 0.05, "bone": 0.20, "sinusoid": 0.03, "stroma": 0.02, "normal": 0.35, "bcell": 0.05,
    "blast_cd19pos": 0.12, "blast_cd19neg": 0.03, "niche": 0.05, "cart_resting": 0.04, "cart_active": 0.03,
    "cart_memory": 0.02, "cart_exhausted": 0.01,
}
_SHARE_TOLERANCE = 0.01  # 1 percentage point


def _dense_cart_view(n: int = 120, seed: int = 3) -> np.ndarray:
    """A view holding each kind at exactly its :data:`_SHARES` share of the sites, shuffled."""
    counts = {k: round(f * n * n) for k, f in _SHARES.items()}
    counts["normal"] += n * n - sum(counts.values())
    codes = np.concatenate([np.full(c, VIEW_CODES[k], np.uint8) for k, c in counts.items()])
    return np.random.default_rng(seed).permutation(codes).reshape(n, n)


def _il6_gradient(n: int, coarsen: int = 4, top: float = 100.0) -> np.ndarray:
    """IL-6 voxels spanning five decades up to ``top`` [pg/mL]: every overlay level occurs."""
    m = -(-n // coarsen)
    return np.logspace(-3, 2, m * m).reshape(m, m) * (top / 100.0)


def _colour_kinds(renderer: viz.FrameRenderer) -> dict[int, int]:
    """Packed RGB -> view code, from the renderer's own legend (kind patches and IL-6 tint ramps)."""
    code_of = {viz.LABELS[k]: c for k, c in VIEW_CODES.items()}
    owner: dict[int, int] = {}
    for label, colours in renderer.legend_colours.items():
        code = code_of[label.removeprefix("IL-6 on ")]
        for packed in _packed(colours).tolist():
            assert owner.setdefault(packed, code) == code, f"legend colour {packed:06x} names two kinds"
    return owner


def _packed(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb, np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _map_region(renderer: viz.FrameRenderer, frame: np.ndarray) -> np.ndarray:
    top, left, side = renderer.lattice_box
    return frame[top : top + side, left : left + side]


def _pixel_shares(renderer: viz.FrameRenderer, frame: np.ndarray) -> dict[str, float]:
    """Share of the map's pixels drawn in each kind's colours (a colour not in the legend fails)."""
    owner = _colour_kinds(renderer)
    colours, counts = np.unique(_packed(_map_region(renderer, frame)), return_counts=True)
    unnamed = [f"{c:06x}" for c in colours.tolist() if c not in owner]
    assert not unnamed, f"map colours the legend does not name: {unnamed[:10]}"
    by_code = np.zeros(len(VIEW_CODES))
    np.add.at(by_code, [owner[c] for c in colours.tolist()], counts)
    return {k: by_code[c] / counts.sum() for k, c in VIEW_CODES.items()}


def _site_shares(view: np.ndarray) -> dict[str, float]:
    return {k: float(np.mean(view == c)) for k, c in VIEW_CODES.items()}


@pytest.mark.parametrize("overlay", [False, True], ids=["no-overlay", "il6-overlay"])
@pytest.mark.parametrize(
    ("layout", "stride"),
    [({"zoom": 1}, 1), ({"zoom": 3}, 1), ({}, 1), ({"max_px": 100}, 3)],
    ids=["zoom1", "zoom3", "default-zoom", "sampled-stride3"],
)
def test_frame_pixel_share_of_each_kind_matches_its_site_share(layout, stride, overlay):
    n = 300 if stride > 1 else 120
    view = _dense_cart_view(n)
    il6 = _il6_gradient(n) if overlay else None
    renderer = viz.FrameRenderer(n, il6_max=100.0 if overlay else None, **layout)
    assert renderer.stride == stride
    frame = renderer.render(view, 15.0, il6=il6)
    drawn, sites = _pixel_shares(renderer, frame), _site_shares(view)
    assert sum(sites[k] for k in VIEW_CODES if k.startswith("cart_")) == pytest.approx(0.10)
    for kind in VIEW_CODES:
        assert abs(drawn[kind] - sites[kind]) <= _SHARE_TOLERANCE, (kind, drawn[kind], sites[kind])
    if stride == 1:  # one block per site: the shares are exact, not just within the tolerance
        assert drawn == pytest.approx(sites, abs=1e-12)
    cart = sum(drawn[k] for k in VIEW_CODES if k.startswith("cart_"))
    assert abs(cart - 0.10) <= _SHARE_TOLERANCE  # the report: markers drew 10 % CAR-T over ~90 % of the map
    renderer.close()


def test_overlay_keeps_every_untinted_kind_exact_and_tints_only_the_named_kinds():
    n = 120
    view = _dense_cart_view(n)
    renderer = viz.FrameRenderer(n, zoom=1, il6_max=100.0)
    plain, tinted = renderer.lattice_rgb(view), renderer.lattice_rgb(view, _il6_gradient(n))
    changed = np.any(plain != tinted, axis=2)
    for name, code in VIEW_CODES.items():
        sites = view == code
        if name in IL6_TINTED:
            assert changed[sites].mean() > 0.5, name
        else:
            assert not changed[sites].any(), name
    # the legend states which kinds the overlay tints: one labelled ramp each, on the IL-6 scale
    assert [t.get_text() for t in renderer.il6_key_axes.get_yticklabels()] == [viz.LABELS[k] for k in IL6_TINTED]
    assert set(renderer.legend_colours) == {viz.LABELS[k] for k in VIEW_CODES} | {
        f"IL-6 on {viz.LABELS[k]}" for k in IL6_TINTED
    }
    assert viz.FrameRenderer(n).il6_key is None
    renderer.close()


@pytest.mark.parametrize("overlay", [False, True], ids=["no-overlay", "il6-overlay"])
def test_every_colour_of_the_map_is_named_in_the_legend(overlay):
    snaps = _snapshots(3, n=48)
    view = _dense_cart_view(48)
    il6 = _il6_gradient(48) if overlay else None
    renderer = viz.FrameRenderer(48, timecourse=_timecourse(), il6_max=100.0 if overlay else None)
    named = set()
    for colours in renderer.legend_colours.values():
        named |= set(_packed(colours).tolist())
    for v, field in [(view, il6), *((s["view"], s["il6"] if overlay else None) for s in snaps)]:
        frame = renderer.render(v, 2.0, il6=field)
        present = set(np.unique(_packed(_map_region(renderer, frame))).tolist())
        assert present <= named, sorted(f"{c:06x}" for c in present - named)[:10]
    # the legend's kind patches are drawn in the palette's colours
    for name in VIEW_CODES:
        assert np.array_equal(renderer.legend_colours[viz.LABELS[name]][0], _rgb(name)), name
    renderer.close()


def test_render_lattice_overlay_is_overlay_field_on_the_tinted_kinds():
    n = 40
    view = _dense_cart_view(n)
    il6 = _il6_gradient(n)
    mask = np.isin(view, [VIEW_CODES[k] for k in IL6_TINTED])
    expected = viz.overlay_field(viz.render_view(view), il6, 100.0, mask=mask)
    assert np.array_equal(viz.render_lattice(view, il6=il6, il6_max=100.0), expected)
    ramps = viz.il6_tint_ramps()
    assert set(ramps) == set(IL6_TINTED)
    for name, ramp in ramps.items():
        assert ramp.shape == (256, 3) and np.array_equal(ramp[0], _rgb(name))  # level 0: the kind's own colour


def test_render_lattice_sampling_keeps_palette_colours_and_zoom_makes_blocks():
    view = _dense_cart_view(100)
    sampled = viz.render_lattice(view, stride=4)
    assert sampled.shape == (25, 25, 3)
    assert np.array_equal(sampled, viz.render_view(view[2::4, 2::4]))  # the site nearest each pixel's centre
    zoomed = viz.render_lattice(view[:10, :10], zoom=3)
    assert np.array_equal(zoomed, np.repeat(np.repeat(viz.render_view(view[:10, :10]), 3, axis=0), 3, axis=1))
    assert viz.lattice_side(301, stride=3) == 101 and viz.lattice_side(24, zoom=17) == 408


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"zoom": 0}, "zoom"), ({"zoom": 1.5}, "zoom"), ({"max_px": 0}, "max_px"), ({"min_px": -3}, "min_px")],
)
def test_frame_renderer_bad_zoom_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        viz.FrameRenderer(24, **kwargs)


def test_frame_renderer_default_zoom_fills_min_px_and_max_px_caps_it():
    assert viz.FrameRenderer(24).zoom == 17 and viz.FrameRenderer(400).zoom == 1  # as before: at least 400 px
    capped = viz.FrameRenderer(24, max_px=100)
    assert (capped.zoom, capped.stride, capped.lattice_box[2]) == (4, 1, 96)
    small = viz.FrameRenderer(24, zoom=1, il6_max=1.0)  # a tiny map: the frame still holds the legend and key
    assert small.lattice_box[2] == 24 and small.size[1] >= small.legend.get_window_extent().height + 40
    frame = viz.render_frame(_view(24), 0.5, zoom=2)
    assert frame.size == viz.FrameRenderer(24, zoom=2).size


def test_write_gif_with_overlay_never_merges_a_colour_into_a_kind(tmp_path):
    n = 60
    snaps = []
    for i in range(3):
        view = _dense_cart_view(n, seed=i)
        snaps.append({"day": 0.5 * i, "view": view, "il6": _il6_gradient(n, top=10.0 * (i + 1))})
    path = viz.write_gif(snaps, tmp_path / "dense.gif", timecourse=_timecourse(), zoom=3)
    renderer = viz.FrameRenderer(n, timecourse=_timecourse(), il6_max=30.0, zoom=3)
    with Image.open(path) as im:
        assert im.n_frames == 3
        for i, snap in enumerate(snaps):
            im.seek(i)
            gif = np.asarray(im.convert("RGB"))
            rgb = renderer.render(snap["view"], snap["day"], il6=snap["il6"])
            for name in VIEW_CODES:  # each kind's pixels are exactly those of the rendered frame
                assert np.array_equal(np.all(gif == _rgb(name), axis=2), np.all(rgb == _rgb(name), axis=2)), name
    renderer.close()


def test_animate_run_zoom_sets_pixels_per_site(run_dir, tmp_path):
    out = viz.animate_run(run_dir, out=tmp_path / "z2.gif", zoom=2, fps=2)
    with Image.open(out) as im:
        assert im.size == viz.FrameRenderer(24, timecourse=_timecourse(), il6_max=1.0, zoom=2).size
    with pytest.raises(ValueError, match="zoom"):
        viz.animate_run(run_dir, zoom=0)


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


def test_plot_timecourse_without_blood_column_writes_png(tmp_path):
    path = viz.plot_timecourse(_timecourse().drop(columns="blood_cart_per_ul"), tmp_path / "noblood.png")
    assert path.stat().st_size > 10_000


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


# -- animate_run: a finished run folder -------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny real run (0.5 d, 24 x 24, snapshots every 2 h) made by the CLI."""
    out = tmp_path_factory.mktemp("runs") / "tiny"
    args = ["run", "--snapshot-every", "2h", "--days", "0.5", "--set", "grid.size=24", "--backend", "cpu"]
    assert main([*args, "--quiet", "--out", str(out)]) == 0
    return out


def _copy_run(run_dir, dest, *, without=()):
    dest.mkdir()
    for f in run_dir.iterdir():
        if f.is_file() and f.name not in without and not f.name.startswith("marrow."):
            (dest / f.name).write_bytes(f.read_bytes())
    return dest


def test_read_snapshots_of_a_run_gives_views_fields_and_site_size(run_dir):
    snaps, site_um = viz.read_snapshots(run_dir / "snapshots.npz")
    assert [s["day"] for s in snaps] == pytest.approx([0, 1 / 12, 2 / 12, 3 / 12, 4 / 12, 5 / 12, 0.5])
    assert snaps[0]["view"].shape == (24, 24) and snaps[0]["il6"].shape == (6, 6)
    assert site_um == 10.0


def test_animate_run_gif_one_frame_per_snapshot_written_atomically(run_dir):
    path = viz.animate_run(run_dir, fps=5)
    assert path == run_dir / "marrow.gif"
    with Image.open(path) as im:
        assert im.n_frames == 7 and im.info["duration"] == 200
        assert im.size == viz.FrameRenderer(24, timecourse=_timecourse(), il6_max=1.0).size
    assert not [f for f in os.listdir(run_dir) if f.startswith(".marrow.gif")]  # no temporary file left


def test_animate_run_out_file_without_field_keeps_exact_palette_colours(run_dir, tmp_path):
    out = viz.animate_run(run_dir, out=tmp_path / "plain.gif", field="none", fps=2)
    assert out == tmp_path / "plain.gif"
    with Image.open(out) as im:
        assert im.n_frames == 7
        im.seek(6)
        frame = np.asarray(im.convert("RGB"))
    renderer = viz.FrameRenderer(24, timecourse=_timecourse())
    top, left, side = renderer.lattice_box
    view = viz.read_snapshots(run_dir / "snapshots.npz")[0][6]["view"]
    # every site of the map, CAR-T included, is its kind's exact colour: nothing drawn over it
    assert np.array_equal(frame[top : top + side, left : left + side], renderer.lattice_rgb(view))


def test_animate_run_without_snapshots_says_how_to_record_them(run_dir, tmp_path):
    bare = _copy_run(run_dir, tmp_path / "bare", without=("snapshots.npz",))
    with pytest.raises(FileNotFoundError, match=r"no snapshots\.npz in .*--snapshot-every 6h"):
        viz.animate_run(bare)


def test_animate_run_missing_folder_or_timeseries_raises(run_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        viz.animate_run(tmp_path / "nowhere")
    partial = _copy_run(run_dir, tmp_path / "partial", without=("timeseries.csv",))
    with pytest.raises(FileNotFoundError, match=r"no timeseries\.csv"):
        viz.animate_run(partial)


def test_animate_run_corrupt_snapshots_raises_naming_the_file(run_dir, tmp_path):
    broken = _copy_run(run_dir, tmp_path / "broken")
    (broken / "snapshots.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"snapshots\.npz: not a readable \.npz"):
        viz.animate_run(broken)
    assert not (broken / "marrow.gif").exists()


def test_animate_run_snapshots_missing_view_raises(tmp_path, run_dir):
    odd = _copy_run(run_dir, tmp_path / "odd", without=("snapshots.npz",))
    np.savez(odd / "snapshots.npz", day=np.array([0.0]))
    with pytest.raises(ValueError, match=r"missing array\(s\) \['view'\]"):
        viz.animate_run(odd)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fmt": "webm"}, "format"),
        ({"field": "cxcl12"}, "field"),
        ({"fps": 0}, "fps"),
        ({"fps": 60}, "at most 50"),
        ({"out": "x.mp4"}, r"ending in \.gif"),
    ],
)
def test_animate_run_bad_arguments_raise_before_any_work(run_dir, kwargs, match):
    with pytest.raises(ValueError, match=match):
        viz.animate_run(run_dir, **kwargs)


def test_animate_run_out_folder_missing_raises(run_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        viz.animate_run(run_dir, out=tmp_path / "no" / "such.gif")


def test_animate_run_mp4_without_imageio_ffmpeg_says_how_to_install(run_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # import fails as if not installed
    with pytest.raises(RuntimeError, match=r"pip install imageio-ffmpeg.*GIF"):
        viz.animate_run(run_dir, fmt="mp4")
    assert not (run_dir / "marrow.mp4").exists()


def test_animate_run_mp4_with_imageio_ffmpeg(run_dir, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    out = viz.animate_run(run_dir, fmt="mp4", out=tmp_path / "run.mp4")
    assert out.stat().st_size > 1000 and out.read_bytes()[4:8] == b"ftyp"


def test_frame_timecourse_with_blood_and_crs_columns_draws(tmp_path):
    df = _timecourse()
    df["crs_grade"] = [0, 0, 1, 2, 2, 3, 1, 0, 0]
    snap = _snapshots(1)[0]
    frame = viz.render_frame(snap["view"], 1.0, timecourse=df)
    plain = viz.render_frame(snap["view"], 1.0, timecourse=df.drop(columns=["crs_grade", "blood_cart_per_ul"]))
    assert frame.size == plain.size and np.asarray(frame).tobytes() != np.asarray(plain).tobytes()
