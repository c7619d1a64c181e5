"""Unit tests of abm.viewer: controls, drawing, and the page rendered in-process (needs the viz extra)."""

from __future__ import annotations

import hashlib
import io
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("solara", reason="the viewer needs the optional viz extra (pip install 'cart-abm[viz]')")
pytest.importorskip("altair", reason="Mesa's SolaraViz needs altair (viz extra)")
pytest.importorskip("networkx", reason="Mesa's visualization needs networkx (viz extra)")

import ipyvuetify as v
import ipywidgets
import solara

from abm import viewer, viz
from abm.model import VIEW_CODES
from abm.params import BY_KEY


def _small(**extra) -> dict:
    values = {**viewer.initial_values(), "grid.size": 32, "backend": "python"}
    values.update(extra)
    return values


def _digest(widget) -> str:
    return hashlib.sha1(bytes(widget.value)).hexdigest()


# -- controls --------------------------------------------------------------------------------
def test_model_params_are_schema_keys_with_defaults_inside_their_bounds():
    for key, options in viewer.MODEL_PARAMS.items():
        if key == "seed":
            continue
        param = BY_KEY[key]
        if options["type"] == "Select":
            values = [float(x) for x in options["values"]]
            assert float(options["value"]) == param.default, key
            assert all(param.low <= x <= param.high for x in values), key
        else:
            assert options["min"] <= options["value"] <= options["max"], key
            assert param.low <= options["min"] and options["max"] <= param.high, key


def test_model_params_pass_mesa_check_against_viewer_model_signature():
    from mesa.visualization.solara_viz import _check_model_params  # imported by abm.viewer, its warning filtered

    _check_model_params(viewer.ViewerModel.__init__, viewer.MODEL_PARAMS)  # raises ValueError if not


def test_viewer_model_menu_text_becomes_schema_types():
    model = viewer.ViewerModel(**_small(**{"product.dose_per_kg": "3e7", "product.affinity_kd_nM": "14.3"}))
    assert model.params.product.dose_per_kg == 3e7
    assert model.params.product.affinity_kd_nM == 14.3
    assert model.params.grid.size == 32 and isinstance(model.params.grid.size, int)
    assert model.backend == "python"


def test_viewer_model_backend_from_environment(monkeypatch):
    monkeypatch.setenv(viewer.BACKEND_ENV, "python")
    assert viewer.ViewerModel(**{**viewer.initial_values(), "grid.size": 32}).backend == "python"


def test_viewer_model_unknown_key_raises():
    with pytest.raises(ValueError, match="grid.sise"):
        viewer.ViewerModel(**_small(**{"grid.sise": 40}))


def test_viewer_model_fractional_grid_size_raises():
    with pytest.raises(ValueError, match=r"grid\.size"):
        viewer.ViewerModel(**_small(**{"grid.size": 32.5}))


# -- drawing -----------------------------------------------------------------------------------
def test_lattice_png_is_one_frame_with_palette_blocks():
    model = viewer.ViewerModel(**_small())
    renderer = viz.FrameRenderer(32, site_um=model.params.grid.site_um, il6_max=1.0)
    with Image.open(io.BytesIO(viewer.lattice_png(model, renderer, overlay=False))) as im:
        rgb = np.asarray(im.convert("RGB"))
        assert im.format == "PNG" and im.size == renderer.size
    top, left, _ = renderer.lattice_box
    view, z = model.view(), renderer.zoom
    i, j = np.argwhere(view == VIEW_CODES["bone"])[0]
    block = rgb[top + i * z : top + (i + 1) * z, left + j * z : left + (j + 1) * z]
    assert np.all(block == viz.render_view(np.array([[VIEW_CODES["bone"]]], np.uint8))[0, 0])


def test_lattice_png_without_renderer_makes_one():
    model = viewer.ViewerModel(**_small())
    with Image.open(io.BytesIO(viewer.lattice_png(model))) as im:
        assert im.size == viz.FrameRenderer(32, il6_max=1.0).size


def test_timecourse_png_after_steps_is_an_image():
    model = viewer.ViewerModel(**_small())
    model.step()
    model.step()
    png = viewer.timecourse_png(model.datacollector.get_model_vars_dataframe())
    with Image.open(io.BytesIO(png)) as im:
        assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 300


def test_timecourse_png_without_blood_and_with_crs_grade():
    df = _frame_like(viewer.ViewerModel(**_small()))
    df = df.drop(columns=[c for c in ("blood_cart_per_ul", "crs_grade") if c in df.columns])
    plain = viewer.timecourse_png(df)
    df["crs_grade"] = 2
    assert viewer.timecourse_png(df) != plain


def _frame_like(model):
    model.step()
    return model.datacollector.get_model_vars_dataframe().copy()


def test_status_and_parameter_lines_name_time_and_controls():
    model = viewer.ViewerModel(**_small(seed=7))
    model.step()
    assert viewer.status_line(model).startswith("day 0, 02:00")
    line = viewer.parameters_line(model)
    assert "32 \u00d7 32 sites" in line and "seed 7" in line and "dose 3e+06 cells/kg" in line


def test_il6_scale_rounds_up_to_a_decade_at_least_one():
    assert viewer._il6_scale(0.0) == 1.0
    assert viewer._il6_scale(0.3) == 1.0
    assert viewer._il6_scale(7.0) == 10.0
    assert viewer._il6_scale(100.0) == 100.0
    assert viewer._il6_scale(101.0) == 1000.0


# -- the page, rendered in-process -------------------------------------------------------------------
def test_page_renders_lattice_and_chart_and_step_button_advances(monkeypatch):
    monkeypatch.setenv(viewer.BACKEND_ENV, "python")
    monkeypatch.setitem(viewer.MODEL_PARAMS["grid.size"], "value", 32)
    _, rc = solara.render(solara.AppLayout(children=[viewer.Page()]), handle_error=False)
    try:
        rc.find(v.Html, children=["Step: 0"]).assert_single()
        images = rc.find(ipywidgets.Image).widgets
        assert len(images) == 2  # the lattice frame and the chart
        with Image.open(io.BytesIO(bytes(images[0].value))) as im:
            assert im.size == viz.FrameRenderer(32, il6_max=1.0).size
        before = [_digest(w) for w in images]
        rc.find(v.Btn, children=["Step"]).widget.click()
        rc.find(v.Html, children=["Step: 1"]).assert_single()
        after = [_digest(w) for w in rc.find(ipywidgets.Image).widgets]
        assert after[0] != before[0] and after[1] != before[1]
    finally:
        rc.close()


# -- server ------------------------------------------------------------------------------------
def test_server_command_serves_page_on_loopback_without_browser():
    cmd = viewer.server_command(9001)
    assert cmd[:5] == [sys.executable, "-m", "solara", "run", "abm.viewer:page"]
    assert cmd[cmd.index("--port") + 1] == "9001" and cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "--no-open" in cmd and "--open" in viewer.server_command(open_browser=True)


def test_server_command_bad_port_raises():
    with pytest.raises(ValueError, match="port"):
        viewer.server_command(70000)


def test_server_env_sets_backend_and_turns_telemetry_off():
    env = viewer.server_env("cpu")
    assert env[viewer.BACKEND_ENV] == "cpu"
    assert env["SOLARA_TELEMETRY_MIXPANEL_ENABLE"] == "False"
