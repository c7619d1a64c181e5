"""Lattice images: the colour of each view code and the raster of a lattice view.

* :data:`PALETTE` and :data:`LABELS`: colour and legend text of each code of
  :data:`abm.model.VIEW_CODES`.
* :func:`render_view` turns a ``uint8[n, n]`` view of :data:`abm.model.VIEW_CODES`
  into an RGB image with :data:`PALETTE`.
* :func:`upsample_field` and :func:`overlay_field` spread a coarse voxel field
  (IL-6) over the lattice and blend it in on a log scale (:data:`IL6_CMAP`).
* CAR-T cells are drawn as outlined dots a few sites wide over an upscaled image,
  so that single cells are visible.
* :func:`clock` and :func:`scale_bar_um` give the labels of a frame.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Colormap, ListedColormap, to_rgb

from abm.model import VIEW_CODES

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

_SCALE_BARS_UM = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)
_IL6_DECADES = 3.0  # the IL-6 overlay spans this many decades below its maximum
_IL6_ALPHA = 0.5  # opacity of the overlay at the top of its range
#: Colour scale of the IL-6 overlay: magma without its pale-yellow top, which would hide active CAR-T cells.
IL6_CMAP = ListedColormap(colormaps["magma"](np.linspace(0.0, 0.7, 256)), name="magma_il6")


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
