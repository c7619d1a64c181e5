"""Output files: written whole or not at all.

A run writes into a fresh temporary folder next to its destination and
renames it into place only when every file is complete, so a crash, a bad
input or Ctrl-C never leaves a folder that looks finished.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MARKER = ".cart-abm-run"


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name in the same folder, then rename over ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def staged_folder(destination: Path) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``destination`` when the block succeeds.

    An existing ``destination`` is replaced only if it is empty or an earlier
    cart-abm output (it holds the marker file); anything else is refused so a
    user's folder is never deleted. On failure the temporary folder is removed
    and ``destination`` is untouched.
    """
    destination = Path(destination).resolve()
    reusable = destination.is_dir() and (_is_ours(destination) or not any(destination.iterdir()))
    if destination.exists() and not reusable:
        raise FileExistsError(f"--out {str(destination)!r} exists and is not a cart-abm output folder; choose another")
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        (staging / MARKER).write_text("cart-abm output folder\n", encoding="utf-8")
        yield staging
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _is_ours(folder: Path) -> bool:
    return (folder / MARKER).exists()
