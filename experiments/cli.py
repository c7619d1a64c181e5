"""``cart-abm experiment NAME [options]``: the experiments' subcommand, registered as an entry point.

``pyproject.toml`` lists :func:`register` in the ``cart_abm.commands``
entry-point group; :func:`abm.cli.command_plugins` adds it to ``cart-abm``'s
parser, so the installed tool runs every experiment of :data:`EXPERIMENTS`
from any folder while ``abm`` never imports this package. Output goes under
``--out`` (default: see :func:`experiments.common.parse_args`).
"""

from __future__ import annotations

import argparse
import importlib
import re

from abm.errors import ParamError
from experiments import EXPERIMENTS

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``experiment`` to ``cart-abm``'s subcommands."""
    parser = sub.add_parser(
        "experiment", help="run a study of the experiments package",
        description="Run experiments.NAME (python -m experiments.NAME) with the remaining arguments. "
                    "`cart-abm experiment NAME --help` lists the experiment's options; experiments: "
                    + ", ".join(EXPERIMENTS) + ".")
    parser.add_argument("name", metavar="NAME", help="experiment, e.g. dose_response (see experiments/README.md)")
    parser.add_argument("args", nargs=argparse.REMAINDER, metavar="...",
                        help="the experiment's own options, e.g. --smoke, --n N, --workers K, --out DIR")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run ``experiments.<args.name>``'s ``main`` on ``args.args``; its exit status (2 on bad input)."""
    name = args.name
    if not _NAME.match(name) or name not in EXPERIMENTS:
        raise ParamError(f"experiment = {name!r}: unknown; expected one of {', '.join(EXPERIMENTS)}")
    try:
        module = importlib.import_module(f"experiments.{name}")
    except ModuleNotFoundError as exc:
        raise ParamError(f"experiment {name!r} needs the module {exc.name!r}, which is not installed "
                         "(pip install 'cart-abm[dev]' installs every experiment's dependencies)") from exc
    from experiments.common import cli

    return cli(module.main, args.args)
