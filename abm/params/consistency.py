"""Checks that span several parameters: a value can be valid alone and inconsistent with another.

:func:`check_consistency` runs on every complete set of values
(:class:`abm.params.Params`); each failure is a :class:`~abm.errors.ParamError`
naming the keys, their values and what is expected.
"""

from __future__ import annotations

import itertools
from typing import Any

from abm.errors import ParamError

CRS_THRESHOLDS = ("crs.fever_il6_pg_ml", "crs.grade2_il6_pg_ml", "crs.grade3_il6_pg_ml", "crs.grade4_il6_pg_ml")


def check_consistency(v: dict[str, Any]) -> None:
    """Raise :class:`ParamError` if the values (``{key: value}``, every key present) contradict each other."""
    days, fractions = v["schedule.days"], v["schedule.fractions"]
    if len(days) != len(fractions):
        raise ParamError(
            f"schedule.days = {days} and schedule.fractions = {fractions}: expected lists of the same length"
        )
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise ParamError(
            f"schedule.fractions = {fractions}: expected fractions summing to 1 (sum is {sum(fractions):g})"
        )
    if any(b <= a for a, b in itertools.pairwise(days)):
        raise ParamError(f"schedule.days = {days}: expected strictly increasing days")
    solid = v["grid.bone_fraction"] + v["grid.sinusoid_fraction"]
    if solid > 0.8:
        raise ParamError(
            f"grid.bone_fraction + grid.sinusoid_fraction = {solid:g}: expected at most 0.8 so that marrow remains"
        )
    crs = [v[key] for key in CRS_THRESHOLDS]
    if any(b <= a for a, b in itertools.pairwise(crs)):
        raise ParamError(
            f"{', '.join(CRS_THRESHOLDS)} = {', '.join(f'{x:g}' for x in crs)}: expected strictly increasing "
            "thresholds"
        )
    if v["time.observe_every_h"] * 60.0 < v["time.dt_min"]:
        raise ParamError(
            f"time.observe_every_h = {v['time.observe_every_h']:g}: expected at least one step "
            f"(time.dt_min = {v['time.dt_min']:g} min)"
        )
