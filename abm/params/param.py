"""The declaration of one parameter: type, unit, default, valid range or choices, description, source.

:meth:`Param.check` converts and validates a value, raising
:class:`~abm.errors.ParamError` that names the key, the value and what is
allowed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from abm.errors import ParamError


@dataclass(frozen=True)
class Param:
    """Declaration of one parameter."""

    key: str  # "section.name"
    type: type  # float, int, str, bool or list (of floats)
    default: Any
    unit: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    description: str = ""
    source: str = ""

    def allowed(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        kind = {float: "a number", int: "an integer", bool: "true or false", list: "a list of numbers", str: "text"}
        text = kind[self.type]
        if self.low is not None or self.high is not None:
            bounds = f"[{_fmt(self.low, '-inf')}, {_fmt(self.high, 'inf')}]"
            text = f"a list of numbers each in {bounds}" if self.type is list else f"{text} in {bounds}"
        return text + (f" [{self.unit}]" if self.unit and self.unit != "-" else "")

    def check(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type, or raise :class:`ParamError`."""
        if self.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.type is list:
            if not isinstance(value, list) or not value:
                raise ParamError(f"{self.key} = {show(value)}: expected {self.allowed()}")
            return [self._check_number(self.key, v) for v in value]
        if self.type is float:
            return self._check_number(self.key, value)
        if self.type is int:
            if not isinstance(value, int) or isinstance(value, bool):
                raise ParamError(f"{self.key} = {show(value)}: expected {self.allowed()}")
            self._check_range(self.key, value)
            return value
        if self.type is bool:
            if not isinstance(value, bool):
                raise ParamError(f"{self.key} = {show(value)}: expected {self.allowed()}")
            return value
        if not isinstance(value, str) or (self.choices is not None and value not in self.choices):
            raise ParamError(f"{self.key} = {show(value)}: expected {self.allowed()}")
        return value

    def _check_number(self, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{key} = {show(value)}: expected {self.allowed()}")
        value = float(value)
        if not math.isfinite(value):
            raise ParamError(f"{key} = {show(value)}: expected {self.allowed()} (NaN and infinity are not allowed)")
        self._check_range(key, value)
        return value

    def _check_range(self, key: str, value: float) -> None:
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ParamError(f"{key} = {show(value)}: out of range, expected {self.allowed()}")



def _fmt(x: float | None, unbounded: str) -> str:
    return unbounded if x is None else f"{x:g}"


def show(value: Any) -> str:
    """A value as it appears in error messages (strings quoted as in TOML)."""
    return repr(value) if not isinstance(value, str) else f'"{value}"'
