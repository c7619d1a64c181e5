"""Typed, validated parameters: each declared once with unit, default, range and source.

A run's parameters are a :class:`Params` object: sections of keys (``grid.size``,
``product.dose_per_kg``, ...). The package, by job:

* :mod:`abm.params.param`: :class:`Param`, the declaration of one key and its check;
* :mod:`abm.params.schema`: the declarations (:data:`~abm.params.schema.DECLARED`)
  with their sourced defaults, and :data:`UNCALIBRATED_DEFAULTS`;
* :mod:`abm.params.defaults`: the declarations merged with ``abm/calibrated.toml``
  (written by ``python -m experiments.calibrate``, see :mod:`abm.calibration`):
  :data:`SCHEMA`, :data:`BY_KEY`, :data:`SECTIONS`;
* :mod:`abm.params.consistency`: checks that span several keys;
* :mod:`abm.params.config`: :class:`Params` (defaults, TOML in and out,
  ``section.key=value`` overrides via :func:`parse_assignment`);
* :mod:`abm.params.docs`: ``docs/parameters.md`` (``python -m abm.params``).
"""

from abm.params.config import Params, Section, parse_assignment
from abm.params.defaults import BY_KEY, CALIBRATED_TOML, SCHEMA, SECTIONS, read_calibrated
from abm.params.docs import markdown_table
from abm.params.param import Param
from abm.params.schema import ASSUMPTION, HARRISON, UNCALIBRATED_DEFAULTS

__all__ = [
    "ASSUMPTION", "BY_KEY", "CALIBRATED_TOML", "HARRISON", "SCHEMA", "SECTIONS", "UNCALIBRATED_DEFAULTS", "Param",
    "Params", "Section", "markdown_table", "parse_assignment", "read_calibrated",
]
