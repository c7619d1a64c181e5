"""The parameter reference ``docs/parameters.md``, generated from the schema (``python -m abm.params``)."""

from __future__ import annotations

from pathlib import Path

from abm.params.defaults import SCHEMA

DOC_PATH = Path("docs/parameters.md")


def markdown_table() -> str:
    """The parameter reference, as written to ``docs/parameters.md``."""
    lines = [
        "# Parameters",
        "",
        "Generated from `abm/params/schema.py` (with the calibrated defaults of `abm/calibrated.toml`) by "
        "`python -m abm.params`; do not edit by hand.",
        "",
        "| key | default | unit | allowed | description | source |",
        "|---|---|---|---|---|---|",
    ]
    for p in SCHEMA:
        allowed = p.allowed().replace("|", "/")
        lines.append(f"| `{p.key}` | `{p.default}` | {p.unit} | {allowed} | {p.description} | {p.source} |")
    return "\n".join(lines) + "\n"


def write(path: Path = DOC_PATH) -> Path:
    """Write :func:`markdown_table` to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown_table(), encoding="utf-8")
    return path
