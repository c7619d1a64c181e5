"""The defaults a run uses: the declared schema merged with the calibration file.

Where ``abm/calibrated.toml`` (written by ``python -m experiments.calibrate``,
see :mod:`abm.calibration`) holds a value for a key, that value is the key's
default and its source says so. :data:`SCHEMA` is the merged schema,
:data:`BY_KEY` indexes it, :data:`SECTIONS` lists its sections in order.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from abm.errors import ParamError
from abm.params.param import Param
from abm.params.schema import DECLARED

CALIBRATED_TOML = Path(__file__).resolve().parent.parent / "calibrated.toml"


def read_calibrated(path: Path = CALIBRATED_TOML) -> dict[str, Any]:
    """The ``[values]`` table of the calibration file (``{}`` when there is none)."""
    if not path.exists():
        return {}
    with open(path, "rb") as fh:
        return dict(tomllib.load(fh).get("values", {}))


def calibrated(schema: tuple[Param, ...], values: dict[str, Any], origin: Path = CALIBRATED_TOML,
               ) -> tuple[Param, ...]:
    """``schema`` with the calibrated ``values`` as defaults; an unknown key in them is a :class:`ParamError`."""
    known = {p.key for p in schema}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParamError(f"{origin}: unknown parameter(s) {', '.join(unknown)}")
    return tuple(
        replace(p, default=p.check(values[p.key]),
                source=f"{p.source}; calibrated (abm/calibrated.toml; uncalibrated {p.default!r})")
        if p.key in values else p
        for p in schema
    )


SCHEMA: tuple[Param, ...] = calibrated(DECLARED, read_calibrated())
BY_KEY: dict[str, Param] = {p.key: p for p in SCHEMA}
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(p.key.split(".")[0] for p in SCHEMA))
