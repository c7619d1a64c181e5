"""Interactive browser page for :class:`abm.model.MarrowModel` (Mesa SolaraViz).

``cart-abm view`` (or ``solara run abm.viewer:page``) serves a page with:

* Mesa's controls in the sidebar: play / pause, **Step** (one observation
  interval, ``time.observe_every_h``), **Reset** (a new model from the
  sliders), the play and render intervals, the step counter;
* sliders and menus for the main patient and product parameters (the keys of
  :data:`MODEL_PARAMS` are parameter keys of :mod:`abm.params`, so bounds,
  units and defaults come from its schema);
* the lattice drawn as **one image per frame** by :class:`abm.viz.FrameRenderer`
  (palette, legend, scale bar, clock, optional IL-6 overlay), not one marker
  per cell;
* live charts of the DataCollector (blast %, CAR-T in the window and in blood,
  IL-6), redrawn after every step.

Mesa's own ``ComponentsView`` lays components out with a draggable grid whose
JavaScript is fetched from a CDN when the page opens; offline (CI, clinics,
laptops on a train) that grid never appears. This page therefore hands
``SolaraViz`` no components and draws the lattice and the charts itself below
the Mesa controls, from the same reactive model.

Each browser session gets its own model. The page needs the optional ``viz``
extra (``pip install 'cart-abm[viz]'``: solara, altair, networkx, as Mesa's
visualization imports them).
"""

from __future__ import annotations

import io
import math
import os
import signal
import sys
import warnings
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from abm import viz
from abm.model import MarrowModel
from abm.params import BY_KEY

# Mesa 3.3's ComponentsView returns early when it has no components (as on this page) before a use_state
# call; solara's hook checker warns about that when Mesa defines it. The early return is harmless here.
warnings.filterwarnings("ignore", message=r"(?s).*ComponentsView: `use_state` found despite early return")

try:
    import solara
    from mesa.visualization import SolaraViz
    from mesa.visualization.utils import update_counter
except ImportError as _err:  # the optional viz extra is missing
    raise ImportError(
        f"the interactive viewer needs the optional viz extra ({_err.name} is missing): "
        "pip install 'cart-abm[viz]' (solara, altair, networkx)"
    ) from _err


#: Environment variable naming the kernel backend of the page's models (``auto`` if unset).
BACKEND_ENV = "CART_ABM_VIEWER_BACKEND"
#: The page object that ``solara run abm.viewer:page`` serves (defined at the end of the module).
APP = "abm.viewer:page"

#: CAR-T doses offered by the page [cells/kg], roughly half-decade steps over the schema's range.
DOSE_CHOICES = ("1e5", "3e5", "1e6", "3e6", "1e7", "3e7", "1e8", "3e8")
#: CAR binder affinities offered by the page [nM]: FMC63 (0.33) and CAT (14.3) among half-decade steps.
AFFINITY_CHOICES = ("0.03", "0.1", "0.33", "1", "3", "14.3", "30", "100", "300")


def _slider(
    key: str, label: str, step: float, *, value: Any = None, low: float | None = None, high: float | None = None
) -> dict[str, Any]:
    """A Mesa ``UserInputs`` slider for a schema parameter (bounds and default from the schema unless given)."""
    p = BY_KEY[key]
    kind = "SliderInt" if p.type is int else "SliderFloat"
    return {
        "type": kind,
        "label": f"{label} [{p.unit}]" if p.unit != "-" else label,
        "value": p.default if value is None else value,
        "min": p.low if low is None else low,
        "max": p.high if high is None else high,
        "step": step,
    }


def _menu(key: str, label: str, choices: tuple[str, ...]) -> dict[str, Any]:
    """A Mesa ``UserInputs`` menu of numbers written as text (``"3e6"``), defaulting to the schema's default."""
    p = BY_KEY[key]
    values = [float(c) for c in choices]
    if p.default not in values:
        raise ValueError(f"{key}: the default {p.default:g} is not among the page's choices {choices}")
    return {
        "type": "Select",
        "label": f"{label} [{p.unit}]",
        "value": choices[values.index(p.default)],
        "values": list(choices),
    }


#: The page's controls: Mesa ``SolaraViz`` ``model_params``. Keys are :mod:`abm.params` keys (plus ``seed``);
#: ``backend`` is fixed. Reset builds ``ViewerModel(**values)``.
MODEL_PARAMS: dict[str, Any] = {
    "patient.marrow_blast_fraction": _slider("patient.marrow_blast_fraction", "marrow blasts (fraction)", 0.01),
    "patient.cd19_negative_fraction": _slider("patient.cd19_negative_fraction", "CD19\u2212 blasts (fraction)", 0.01),
    "product.dose_per_kg": _menu("product.dose_per_kg", "CAR-T dose", DOSE_CHOICES),
    "product.affinity_kd_nM": _menu("product.affinity_kd_nM", "CAR affinity Kd", AFFINITY_CHOICES),
    # 200 sites (2 mm), a quarter of the schema's converged 400 x 400 window, so the page stays responsive
    # (a step takes tens of ms on the cpu backend); a 64-site window mostly sees no CAR-T at clinical doses.
    "grid.size": _slider("grid.size", "window side", 8, value=200, low=32, high=512),
    "time.observe_every_h": _slider("time.observe_every_h", "time per step", 1.0, value=2.0, low=1.0, high=24.0),
    "seed": {"type": "SliderInt", "label": "seed", "value": 0, "min": 0, "max": 99, "step": 1},
}


def initial_values() -> dict[str, Any]:
    """The controls' starting values, as ``ViewerModel`` keyword arguments."""
    return {key: options["value"] for key, options in MODEL_PARAMS.items()}


class ViewerModel(MarrowModel):
    """A :class:`MarrowModel` built from the page's controls.

    Mesa's ``SolaraViz`` rebuilds the model on Reset by calling the model's
    class with the controls' values as keyword arguments; parameter keys
    contain dots, so they arrive through ``**kwargs``. Menu values are text
    (``"3e6"``) and are converted to the schema's type here.

    Parameters
    ----------
    seed : int
        Seed of everything random in the run.
    backend : str, optional
        Kernel backend; default: the :data:`BACKEND_ENV` environment variable, else ``auto``.
    **kwargs
        Parameter keys with dots (``**{"grid.size": 64}``) and their values.
    """

    def __init__(self, seed: int = 0, backend: str | None = None, **kwargs: Any):
        overrides = {key: _coerce(key, value) for key, value in kwargs.items()}
        backend = backend or os.environ.get(BACKEND_ENV) or "auto"
        super().__init__(seed=int(seed), backend=backend, **overrides)


def _coerce(key: str, value: Any) -> Any:
    """Convert a control's value to the type the parameter schema declares (menus send text)."""
    param = BY_KEY.get(key)
    if param is None:
        raise ValueError(f"{key!r}: not a cart-abm parameter key")
    if param.type in (int, float) and isinstance(value, str | int | float) and not isinstance(value, bool):
        converted = param.type(float(value))
        if param.type is int and converted != float(value):
            raise ValueError(f"{key} = {value!r}: expected an integer")
        return converted
    return value


# -- drawing -----------------------------------------------------------------------------------
def _il6_scale(il6_max: float) -> float:
    """Top of the overlay scale: the next power of ten above the field's maximum (at least 1 pg/mL).

    Rounding up to a decade keeps the colour scale (and the laid-out figure)
    the same from step to step until the field grows past it.
    """
    return 10.0 ** max(0, math.ceil(math.log10(il6_max))) if il6_max > 0 else 1.0


def lattice_png(model: MarrowModel, renderer: viz.FrameRenderer | None = None, *, overlay: bool = True) -> bytes:
    """The model's current lattice as a PNG frame (legend, scale bar, clock, optional IL-6 overlay).

    Parameters
    ----------
    model : MarrowModel
        The model to draw.
    renderer : abm.viz.FrameRenderer, optional
        A renderer laid out for this model (``n``, ``site_um`` and, for the
        overlay, ``il6_max``); one is made (and dropped) if not given.
    overlay : bool
        Overlay the IL-6 field; needs a renderer with ``il6_max`` (made here if
        ``renderer`` is None).

    Returns
    -------
    bytes
        PNG image.
    """
    il6 = model.il6_pg_ml() if overlay else None
    if renderer is None:
        n = model.params.grid.size
        scale = _il6_scale(float(il6.max())) if il6 is not None else None
        renderer = viz.FrameRenderer(n, site_um=model.params.grid.site_um, il6_max=scale)
    frame = renderer.render(model.view(), model.day, il6=il6)
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def timecourse_png(df: pd.DataFrame, *, dpi: int = 90) -> bytes:
    """Live chart of a DataCollector frame as PNG: blast %, CAR-T (window, blood), IL-6 (mean, max; CRS grade).

    Parameters
    ----------
    df : pandas.DataFrame
        ``MarrowModel.datacollector.get_model_vars_dataframe()``; ``blood_cart_per_ul``
        and ``crs_grade`` are drawn when present.
    dpi : int
        Resolution.

    Returns
    -------
    bytes
        PNG image.
    """
    fig = Figure(figsize=(5.2, 5.2), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax_b, ax_t, ax_i = fig.subplots(3, 1, sharex=True)
    days = df["day"].to_numpy(float)
    frac = np.where(
        df["blast_fraction"].to_numpy(float) > 0, df["blast_fraction"].to_numpy(float), viz.BLAST_FRACTION_FLOOR
    )
    ax_b.plot(days, 100 * frac, color=viz.PALETTE["blast_cd19pos"], lw=1.6, marker="o", ms=2.5)
    ax_b.axhline(100 * viz.CR_THRESHOLD, color="0.4", lw=0.8, ls="--", label="CR < 5 %")
    ax_b.axhline(100 * viz.MRD_THRESHOLD, color="0.4", lw=0.8, ls=":", label="MRD < 0.01 %")
    ax_b.set_yscale("log")
    ax_b.set_ylim(100 * viz.BLAST_FRACTION_FLOOR / 2, 100)
    ax_b.set_ylabel("marrow blasts [%]")
    ax_b.legend(fontsize=7, frameon=False, loc="lower left")
    ax_t.plot(days, df["cart"], color=viz.PALETTE["cart_resting"], lw=1.6, label="in window")
    ax_t.plot(days, df["cart_active"], color="#b8a800", lw=1.2, ls="--", label="active")
    ax_t.set_ylabel("CAR-T in\nwindow [cells]")
    ax_t.set_ylim(bottom=0)
    handles = ax_t.get_legend_handles_labels()[0]
    if "blood_cart_per_ul" in df.columns:
        blood = ax_t.twinx()
        handles += blood.plot(days, df["blood_cart_per_ul"], color="0.35", lw=1.2, ls=":", label="blood")
        blood.set_ylabel("blood [cells/µL]", color="0.35")
        blood.tick_params(axis="y", colors="0.35")
        blood.set_ylim(bottom=0)
    ax_t.legend(handles=handles, fontsize=7, frameon=False, loc="upper left")
    crs = viz.crs_bands(ax_i, df)  # CRS grade bands, if the model grades CRS
    ax_i.plot(days, df["il6_max_pg_ml"], color="#7b3294", lw=1.2, ls="--", label="max")
    ax_i.plot(days, df["il6_mean_pg_ml"], color="#7b3294", lw=1.6, label="mean")
    ax_i.set_ylim(bottom=0)
    ax_i.set_ylabel("marrow IL-6 [pg/mL]")
    ax_i.legend(handles=ax_i.get_legend_handles_labels()[0] + crs, fontsize=7, frameon=False, loc="upper left")
    ax_i.set_xlabel("days after infusion")
    ax_i.set_xlim(0, max(1.0, float(days.max()) if len(days) else 1.0))
    for ax in (ax_b, ax_t, ax_i):
        ax.grid(True, color="0.92", lw=0.5)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    fig.clear()
    return buffer.getvalue()


def status_line(model: MarrowModel) -> str:
    """One line summarizing the latest observation (time, blasts, CAR-T, IL-6)."""
    o = model.observation()
    parts = [
        viz.clock(model.day),
        f"blasts {100 * o['blast_fraction']:.3g} %",
        f"CAR-T in window {o['cart']} ({o['cart_active']} active)",
    ]
    if "blood_cart_per_ul" in o:
        parts.append(f"blood {o['blood_cart_per_ul']:.3g} /\u00b5L")
    parts.append(f"IL-6 max {o['il6_max_pg_ml']:.3g} pg/mL")
    if "crs_grade" in o:
        parts.append(f"CRS grade {o['crs_grade']:g}")
    if not model.running:
        parts.append("end of run")
    return " \u00b7 ".join(parts)


# -- components ---------------------------------------------------------------------------------
@solara.component
def LatticeImage(model: MarrowModel):
    """The lattice of ``model`` as one image, redrawn after every step."""
    update_counter.get()
    overlay = solara.use_reactive(True)
    n, site_um = model.params.grid.size, model.params.grid.site_um
    scale = _il6_scale(model.observation()["il6_max_pg_ml"]) if overlay.value else None
    renderer = solara.use_memo(lambda: viz.FrameRenderer(n, site_um=site_um, il6_max=scale), [n, site_um, scale])
    with solara.Column(classes=["cart-abm-lattice"], gap="4px"):
        solara.Image(lattice_png(model, renderer, overlay=overlay.value), format="png")
        solara.Checkbox(label="IL-6 overlay", value=overlay)


@solara.component
def TimecourseChart(model: MarrowModel):
    """Live DataCollector charts of ``model``, redrawn after every step."""
    update_counter.get()
    df = model.datacollector.get_model_vars_dataframe()
    with solara.Column(classes=["cart-abm-chart"]):
        solara.Image(timecourse_png(df), format="png")


def parameters_line(model: MarrowModel) -> str:
    """The values of the page's controls that built ``model`` (sliders show theirs only while dragged)."""
    p = model.params
    return (
        f"this run: blasts {p.patient.marrow_blast_fraction:g}, CD19\u2212 {p.patient.cd19_negative_fraction:g}, "
        f"dose {p.product.dose_per_kg:.3g} cells/kg, Kd {p.product.affinity_kd_nM:g} nM, "
        f"{p.grid.size} \u00d7 {p.grid.size} sites, {p.time.observe_every_h:g} h per step, seed {model.seed} "
        "\u2014 change the controls, then Reset"
    )


@solara.component
def MarrowPanels(model: MarrowModel):
    """Status lines, lattice image and charts side by side (wrapping on narrow screens)."""
    update_counter.get()
    with solara.Column(style={"padding": "8px"}, gap="2px"):
        solara.Text(status_line(model), classes=["cart-abm-status"], style={"font-weight": "bold"})
        solara.Text(parameters_line(model), classes=["cart-abm-parameters"], style={"color": "#555"})
        with solara.Row(style={"flex-wrap": "wrap", "align-items": "flex-start"}, gap="16px"):
            LatticeImage(model)
            TimecourseChart(model)


@solara.component
def Page():
    """The viewer page: Mesa's SolaraViz controls plus the marrow panels, with one model per session."""
    model = solara.use_reactive(solara.use_memo(lambda: ViewerModel(**initial_values()), []))
    SolaraViz(
        model,
        components=[],
        model_params=MODEL_PARAMS,
        name="cart-abm \u00b7 bone marrow under CAR-T therapy",
        play_interval=150,
    )
    MarrowPanels(model.value)


#: The element ``solara run abm.viewer:page`` serves.
page = Page()


# -- server ----------------------------------------------------------------------------------------
def server_command(port: int = 8765, host: str = "127.0.0.1", open_browser: bool = False) -> list[str]:
    """The command line that serves :data:`page` (``python -m solara run abm.viewer:page ...``).

    Parameters
    ----------
    port : int
        TCP port (0 lets solara pick a free one).
    host : str
        Interface to listen on; the default serves this machine only.
    open_browser : bool
        Ask solara to open a browser tab.

    Returns
    -------
    list of str
        ``argv`` for :mod:`subprocess`.
    """
    if not (isinstance(port, int) and 0 <= port <= 65535):
        raise ValueError(f"port = {port!r}: expected an integer in [0, 65535]")
    return [
        sys.executable,
        "-m",
        "solara",
        "run",
        APP,
        "--port",
        str(port),
        "--host",
        host,
        "--production",
        "--open" if open_browser else "--no-open",
        "--log-level",
        "warning",
    ]


def server_env(backend: str | None = None) -> dict[str, str]:
    """Environment of the server process: the kernel backend, and no usage telemetry (works offline)."""
    env = dict(os.environ)
    env["SOLARA_TELEMETRY_MIXPANEL_ENABLE"] = "False"
    if backend is not None:
        env[BACKEND_ENV] = backend
    return env


def serve(port: int = 8765, host: str = "127.0.0.1", open_browser: bool = False, *, backend: str | None = None) -> int:
    """Serve the viewer page until interrupted (Ctrl-C, SIGTERM or SIGHUP).

    Runs ``solara run abm.viewer:page`` in a child process of its own process
    group (see :func:`server_command`) and waits for it; Ctrl-C, SIGTERM or
    SIGHUP stop that whole group (:func:`abm.signals.run_in_own_group`: SIGTERM,
    then SIGKILL after 10 s), so no server process outlives the command.

    Parameters
    ----------
    port : int
        TCP port of the page (``http://HOST:PORT``).
    host : str
        Interface to listen on (default: this machine only).
    open_browser : bool
        Open the page in the default browser.
    backend : str, optional
        Kernel backend of the page's models (``auto``, ``python``, ``cpu``, ``cuda``).

    Returns
    -------
    int
        Exit status of the server (0 after Ctrl-C). After SIGTERM or SIGHUP
        the :class:`abm.signals.Interrupted` is raised again (``cart-abm view``
        then exits with 143 or 129).
    """
    from abm.signals import run_in_own_group, signal_number

    print(f"cart-abm: serving the viewer on http://{host}:{port} (Ctrl-C to stop)", flush=True)
    try:
        return run_in_own_group(server_command(port, host, open_browser), server_env(backend))
    except KeyboardInterrupt as exc:
        if signal_number(exc) != signal.SIGINT:
            raise
        return 0
