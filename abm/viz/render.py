"""Lattice images: the colour of each view code and the raster of a lattice view.

* :data:`PALETTE` and :data:`LABELS`: colour and legend text of each code of
  :data:`abm.model.VIEW_CODES`.
* :func:`render_view` turns a ``uint8[n, n]`` view of :data:`abm.model.VIEW_CODES`
  into an RGB image with :data:`PALETTE`.
* :func:`upsample_field` and :func:`overlay_field` spread a coarse voxel field
  (IL-6) over the lattice and blend it in on a log scale (:data:`IL6_CMAP`);
  in frames the overlay tints only the background kinds :data:`IL6_TINTED`,
  along the colour ramps :func:`il6_tint_ramps` (which the legend draws).
* :func:`render_lattice` is the map of a frame: one cell per site at the map's
  scale (``zoom x zoom`` pixels of its kind's colour, or nearest-site sampling
  when the map has fewer pixels than sites), never a marker bigger than a site,
  so each kind covers the share of the picture that it holds of the lattice.
* :func:`clock` and :func:`scale_bar_um` give the labels of a frame.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Colormap, ListedColormap, to_rgb

from abm.model import VIEW_CODES

#: Colour of each view code (keys of :data:`abm.model.VIEW_CODES`). Cell kinds
#: use the Okabe-Ito colour-blind-safe set; tissue uses muted, light tones so
#: that cells stand out against it. It may name codes the model does not draw
#: yet (``niche``); frames and legends show exactly the codes of ``VIEW_CODES``.
#: A new CAR-T state needs a ``cart_*`` code there and an entry here and in
#: :data:`LABELS`; like every kind, it is drawn one site per cell.
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
_IL6_LEVELS = 256  # the overlay's level is quantised to this many steps (those of IL6_CMAP)
#: Colour scale of the IL-6 overlay: magma without its pale-yellow top, which would hide active CAR-T cells.
IL6_CMAP = ListedColormap(colormaps["magma"](np.linspace(0.0, 0.7, _IL6_LEVELS)), name="magma_il6")
#: The kinds that the IL-6 overlay of a frame tints: the background sites. Every other kind (bone,
#: sinusoid, stroma, B cells, blasts, CAR-T) keeps its exact :data:`PALETTE` colour under the
#: overlay, so cells stay identifiable; a tinted site takes a colour of its kind's
#: :func:`il6_tint_ramps` ramp, which the frame's legend draws.
IL6_TINTED: tuple[str, ...] = ("empty", "niche", "normal")


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
    return _LUT[_checked_view(view)]


def _checked_view(view: np.ndarray) -> np.ndarray:
    view = np.asarray(view)
    if view.ndim != 2 or not np.issubdtype(view.dtype, np.integer):
        raise ValueError(f"view: expected a 2-D integer array of VIEW_CODES, got {view.dtype}{list(view.shape)}")
    if view.size and (view.min() < 0 or view.max() >= len(_LUT)):
        raise ValueError(f"view: codes must lie in [0, {len(_LUT) - 1}], got [{view.min()}, {view.max()}]")
    return view


def _coarsen(field: np.ndarray, n: int) -> int:
    """Sites per voxel side of a square voxel field over an ``n x n`` lattice (checked)."""
    if field.ndim != 2 or field.shape[0] != field.shape[1] or field.shape[0] < 1:
        raise ValueError(f"field: expected a square 2-D voxel array, got shape {list(field.shape)}")
    coarsen = -(-n // field.shape[0])
    if -(-n // coarsen) != field.shape[0]:
        raise ValueError(f"field: a {field.shape[0]} x {field.shape[0]} voxel grid does not tile a {n} x {n} lattice")
    return coarsen


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
    coarsen = _coarsen(field, n)
    return np.repeat(np.repeat(field, coarsen, axis=0), coarsen, axis=1)[:n, :n]


def _level_index(field: np.ndarray, vmax: float) -> np.ndarray:
    """The overlay level of each value, quantised to ``0..255`` (``uint8``, same shape as ``field``).

    0 at or below ``vmax / 1000``, 255 at ``vmax``, logarithmic between: the
    index into :data:`IL6_CMAP` that matplotlib would pick for the level.
    """
    floor = vmax * 10.0 ** -(_IL6_DECADES + 1)
    level = np.log10(np.maximum(np.asarray(field, float), floor) / vmax) / _IL6_DECADES + 1.0
    return np.clip(np.floor(level * _IL6_LEVELS), 0, _IL6_LEVELS - 1).astype(np.uint8)


def _blend(rgb: np.ndarray, index: np.ndarray, cmap: str | Colormap) -> np.ndarray:
    """Blend colour ``index`` of ``cmap`` over ``rgb`` with opacity ``0.5 * index / 255`` (one formula for all)."""
    cmap = colormaps[cmap] if isinstance(cmap, str) else cmap
    table = cmap(np.linspace(0.0, 1.0, _IL6_LEVELS), bytes=True)[:, :3].astype(np.float32)
    colour = table[index]
    alpha = (np.float32(_IL6_ALPHA / (_IL6_LEVELS - 1)) * index.astype(np.float32))[..., None]
    return (rgb.astype(np.float32) * (np.float32(1.0) - alpha) + colour * alpha + np.float32(0.5)).astype(np.uint8)


def overlay_field(
    rgb: np.ndarray,
    field: np.ndarray,
    vmax: float,
    *,
    cmap: str | Colormap = IL6_CMAP,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Blend a log-scaled field over an RGB lattice image.

    The level runs on a log scale from 0 at ``vmax / 1000`` to 1 at ``vmax``
    and is quantised to the 256 colours of ``cmap``; the opacity grows with it
    from 0 to 0.5, so low levels leave the sites unchanged and hot spots glow.

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
    mask : numpy.ndarray, optional
        ``bool[n, n]``: tint only these sites (frames pass the sites of
        :data:`IL6_TINTED`); default every site.

    Returns
    -------
    numpy.ndarray
        ``uint8[n, n, 3]`` blended image.
    """
    if not vmax > 0:
        return rgb
    index = _level_index(upsample_field(field, rgb.shape[0]), vmax)
    if mask is not None:
        index = np.where(mask, index, 0).astype(np.uint8)  # level 0: opacity 0, the colour unchanged
    return _blend(rgb, index, cmap)


def il6_tint_ramps(cmap: str | Colormap = IL6_CMAP) -> dict[str, np.ndarray]:
    """The colours a frame's IL-6 overlay gives each kind of :data:`IL6_TINTED`.

    Returns
    -------
    dict of str to numpy.ndarray
        ``uint8[256, 3]`` per tinted kind: its colour at overlay levels 0..255
        (level 0, at or below a thousandth of the scale's top, is the kind's
        :data:`PALETTE` colour). These are exactly the colours
        :func:`render_lattice` draws, and the rows of the frame's IL-6 key.
    """
    base = render_view(np.array([[VIEW_CODES[k] for k in IL6_TINTED]], np.uint8))[0]
    levels = np.arange(_IL6_LEVELS)
    return {k: _blend(np.broadcast_to(base[i], (_IL6_LEVELS, 3)), levels, cmap) for i, k in enumerate(IL6_TINTED)}


def _tint_lookup_table() -> np.ndarray:
    """``uint8[codes, 256, 3]``: the colour of each view code at each overlay level (constant if not tinted)."""
    table = np.repeat(_LUT[:, None, :], _IL6_LEVELS, axis=1)
    for name, ramp in il6_tint_ramps().items():
        table[VIEW_CODES[name]] = ramp
    return table


_TINT_LUT = _tint_lookup_table()


def _sample_sites(n: int, side: int) -> np.ndarray:
    """The site each of ``side`` pixels shows: the site nearest the pixel's centre (a regular grid)."""
    return ((np.arange(side) + 0.5) * (n / side)).astype(np.intp)


def lattice_side(n: int, *, zoom: int = 1, stride: int = 1) -> int:
    """Pixels per side of the map of an ``n x n`` lattice: ``n * zoom`` or ``ceil(n / stride)``."""
    for name, value in (("zoom", zoom), ("stride", stride)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} = {value!r}: expected a positive integer")
    if zoom > 1 and stride > 1:
        raise ValueError(f"zoom = {zoom}, stride = {stride}: a map either zooms in or samples, not both")
    return n * int(zoom) if zoom > 1 else -(-n // int(stride))


def render_lattice(
    view: np.ndarray,
    *,
    zoom: int = 1,
    stride: int = 1,
    il6: np.ndarray | None = None,
    il6_max: float | None = None,
) -> np.ndarray:
    """The map of a frame: one cell per site at the map's scale, optionally tinted by IL-6.

    Every pixel shows exactly one site in its kind's :data:`PALETTE` colour (or,
    under the overlay, a colour of its kind's :func:`il6_tint_ramps` ramp), and
    nothing is drawn bigger than a site, so each kind's share of the pixels is
    its share of the sites:

    * ``zoom >= 1`` (``stride = 1``): each site is a ``zoom x zoom`` block;
      the shares are exact.
    * ``stride > 1`` (more sites than pixels): **nearest-site sampling on a
      regular grid**; the map is ``ceil(n / stride)`` pixels wide and each
      pixel shows the site nearest its centre (about one site in ``stride``
      per row and column). Every kind is sampled alike, so its expected pixel
      share equals its site share (a majority or priority rule would inflate
      common or favoured kinds), and every pixel keeps a colour the legend
      names (averaging colours would make unnamed mixtures); single cells
      appear or vanish by where they sit relative to the grid.

    Parameters
    ----------
    view : numpy.ndarray
        ``uint8[n, n]`` of :data:`abm.model.VIEW_CODES`.
    zoom : int
        Pixels per site edge.
    stride : int
        Sites per pixel edge (downsampling); at most one of ``zoom``, ``stride`` exceeds 1.
    il6 : numpy.ndarray, optional
        ``float[m, m]`` IL-6 voxel field [pg/mL]; tints the sites of
        :data:`IL6_TINTED` as :func:`overlay_field` does (needs ``il6_max``).
    il6_max : float, optional
        Top of the overlay's log scale [pg/mL] (three decades).

    Returns
    -------
    numpy.ndarray
        ``uint8[side, side, 3]`` with ``side = lattice_side(n, zoom=zoom, stride=stride)``.
    """
    view = _checked_view(view)
    if view.shape[0] != view.shape[1]:
        raise ValueError(f"view: expected a square 2-D array, got shape {list(view.shape)}")
    n = view.shape[0]
    sites = _sample_sites(n, lattice_side(n, zoom=zoom, stride=stride))
    shown = view[np.ix_(sites, sites)]
    if il6 is None:
        return _LUT[shown]
    if il6_max is None or not il6_max > 0:
        raise ValueError(f"il6_max = {il6_max!r}: an IL-6 overlay needs a positive top of scale [pg/mL]")
    il6 = np.asarray(il6)
    voxels = sites // _coarsen(il6, n)
    level = _level_index(il6, il6_max)[np.ix_(voxels, voxels)]
    return _TINT_LUT[shown, level]


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
