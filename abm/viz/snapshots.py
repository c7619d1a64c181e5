"""Reading a finished run: its snapshots file and its run folder.

:func:`read_snapshots` loads the ``snapshots.npz`` that ``cart-abm run
--snapshot-every`` writes back into the form of ``MarrowModel.snapshots``.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

#: The files of a run folder that :func:`abm.viz.animate.animate_run` reads (written by ``cart-abm run``).
SNAPSHOTS_FILE = "snapshots.npz"
TIMESERIES_FILE = "timeseries.csv"


def read_snapshots(path: str | Path) -> tuple[list[dict[str, Any]], float | None]:
    """Read the snapshots file that ``cart-abm run --snapshot-every`` writes.

    Parameters
    ----------
    path : str or pathlib.Path
        ``snapshots.npz`` with ``day`` (``float[k]`` [d]), ``view``
        (``uint8[k, n, n]`` of :data:`abm.model.VIEW_CODES`), optionally
        ``il6`` (``float32[k, m, m]`` [pg/mL]) and ``site_um`` (scalar [um]).

    Returns
    -------
    snapshots : list of dict
        One dict per snapshot with ``day``, ``view`` and (if stored) ``il6``,
        in the form of ``MarrowModel.snapshots``.
    site_um : float or None
        Edge of a site [um], ``None`` if the file does not record it.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a readable ``.npz`` or its arrays are missing or
        inconsistent (the message names the array).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such snapshots file")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err}); rerun the simulation to rewrite it") from err
    missing = [name for name in ("day", "view") if name not in arrays]
    if missing:
        raise ValueError(f"{path}: missing array(s) {missing}; expected day, view and il6 as cart-abm run writes them")
    day, view = np.asarray(arrays["day"], float), arrays["view"]
    k = len(day)
    if day.ndim != 1 or k == 0:
        raise ValueError(f"{path}: day must be a non-empty 1-D array, got shape {list(day.shape)}")
    if (
        view.ndim != 3
        or view.shape[0] != k
        or view.shape[1] != view.shape[2]
        or not np.issubdtype(view.dtype, np.integer)
    ):
        raise ValueError(f"{path}: view must be an integer array [{k}, n, n], got {view.dtype}{list(view.shape)}")
    il6 = arrays.get("il6")
    if il6 is not None and (il6.ndim != 3 or il6.shape[0] != k or il6.shape[1] != il6.shape[2]):
        raise ValueError(f"{path}: il6 must be an array [{k}, m, m], got shape {list(il6.shape)}")
    site_um = float(arrays["site_um"]) if "site_um" in arrays else None
    snapshots = []
    for i in range(k):
        snap: dict[str, Any] = {"day": float(day[i]), "view": view[i]}
        if il6 is not None:
            snap["il6"] = il6[i]
        snapshots.append(snap)
    return snapshots, site_um


def _site_um_of_run(run_dir: Path) -> float:
    """``grid.site_um`` from the run's ``params.toml`` (for snapshot files that do not record it)."""
    from abm.params import Params

    params_file = run_dir / "params.toml"
    if not params_file.is_file():
        raise FileNotFoundError(
            f"{run_dir}: {SNAPSHOTS_FILE} has no site_um and there is no params.toml to take it from"
        )
    return float(Params.from_toml(params_file).grid.site_um)
