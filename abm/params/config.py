"""A run's parameters: :class:`Params`, built from defaults, TOML files and ``section.key=value`` overrides.

Values are validated on the way in: an unknown key, a wrong type, a value out
of range, NaN/inf or an inconsistent combination raises
:class:`~abm.errors.ParamError` naming the key, the value and what is allowed.
``--set`` values are TOML values; a bare word is taken as a string.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from abm.errors import ParamError
from abm.params.consistency import check_consistency
from abm.params.defaults import BY_KEY, SCHEMA, SECTIONS
from abm.params.param import show

WHERE_ALL = "`cart-abm params` or docs/parameters.md lists every key with its unit, range and source"


def _nearest(name: str, known: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def unknown_key(key: str) -> str:
    """The message for an unknown key: the three nearest known keys (difflib) and where to list them all.

    Keys of the same section come first when the section exists, so
    ``grid.sise`` suggests ``grid.size`` before keys of other sections.
    """
    section = key.split(".", 1)[0]
    same = [k for k in BY_KEY if k.startswith(section + ".")]
    close = difflib.get_close_matches(key, same, n=3, cutoff=0.5) if same else []
    close += [k for k in difflib.get_close_matches(key, list(BY_KEY), n=3, cutoff=0.5) if k not in close]
    hint = f"; did you mean {', '.join(close[:3])}?" if close else ""
    return f"unknown parameter {key!r}{hint} ({WHERE_ALL})"


class Section:
    """Read-only attribute view of one section (``params.grid.size``)."""

    def __init__(self, name: str, values: dict[str, Any]):
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", values)

    def __getattr__(self, item: str) -> Any:
        try:
            return self._values[f"{self._name}.{item}"]
        except KeyError:
            raise AttributeError(f"no parameter {self._name}.{item}") from None

    def __setattr__(self, key, value):
        raise AttributeError("parameters are read-only; use Params.replace")


class Params:
    """A complete, validated set of parameters.

    Build with :meth:`default`, :meth:`from_toml`, :meth:`from_dict` and
    :meth:`replace`; read as ``params["grid.size"]`` or ``params.grid.size``.
    """

    def __init__(self, values: dict[str, Any] | None = None):
        merged = {p.key: _copy(p.default) for p in SCHEMA}
        for key, value in (values or {}).items():
            if key not in BY_KEY:
                raise ParamError(unknown_key(key))
            merged[key] = BY_KEY[key].check(value)
        check_consistency(merged)
        self._values = merged

    @classmethod
    def default(cls) -> Params:
        return cls()

    @classmethod
    def from_dict(cls, nested: dict[str, Any]) -> Params:
        """From ``{"section": {"key": value}}`` (the TOML shape)."""
        return cls(_flatten(nested))

    @classmethod
    def from_toml(cls, path: str | Path) -> Params:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ParamError(f"cannot read config {str(path)!r}: {exc.strerror}") from None
        try:
            nested = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ParamError(f"config {str(path)!r} is not valid TOML: {exc}") from None
        return cls.from_dict(nested)

    def replace(self, values: dict[str, Any]) -> Params:
        """A copy with some keys changed (validated)."""
        return Params({**self._values, **values})

    def with_overrides(self, assignments: list[str]) -> Params:
        """Apply ``section.key=value`` strings (TOML values; a bare word is a string)."""
        return self.replace(dict(parse_assignment(a) for a in assignments))

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            raise KeyError(f"unknown parameter {key!r}")
        return self._values[key]

    def __getattr__(self, item: str) -> Section:
        if item.startswith("_") or item not in SECTIONS:
            raise AttributeError(item)
        return Section(item, self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Params) and self._values == other._values

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Nested ``{section: {key: value}}``, every key present."""
        nested: dict[str, dict[str, Any]] = {}
        for key, value in self._values.items():
            section, name = key.split(".", 1)
            nested.setdefault(section, {})[name] = _copy(value)
        return nested

    def flat(self) -> dict[str, Any]:
        return {k: _copy(v) for k, v in self._values.items()}

    def to_toml(self) -> str:
        header = "# cart-abm parameters (every key; units and sources in docs/parameters.md)\n"
        return header + tomli_w.dumps(self.as_dict())


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse ``section.key=value``; the value is TOML, or a plain string if it is a bare word."""
    if "=" not in text:
        raise ParamError(f"override {text!r}: expected section.key=value")
    key, raw = (s.strip() for s in text.split("=", 1))
    if key not in BY_KEY:
        raise ParamError(unknown_key(key))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        if not raw or any(c in raw for c in "[]{}\"'=,"):
            raise ParamError(f"{key} = {raw}: not a valid TOML value; expected {BY_KEY[key].allowed()}") from None
        value = raw
    return key, value


def _flatten(nested: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, body in nested.items():
        if section not in SECTIONS:
            raise ParamError(f"unknown section [{section}]{_nearest(section, SECTIONS)}; the sections are "
                             f"{', '.join(SECTIONS)}")
        if not isinstance(body, dict):
            raise ParamError(f"{section}: expected a [{section}] table, got {show(body)}")
        for name, value in body.items():
            flat[f"{section}.{name}"] = value
    return flat


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value
