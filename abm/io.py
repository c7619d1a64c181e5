"""Output files: written whole or not at all; run status and checkpoints.

Output folders are in :mod:`abm.folders`, signals in :mod:`abm.signals`.

Every file is written to a temporary name in its folder and renamed into
place, so no reader ever sees half a file. A run folder carries
``status.json``: ``running`` while the simulation goes on (with the day,
step and percent done, and ``checkpoint.npz`` when checkpoints were asked
for), ``complete`` once every output is written (``summary.json`` is written
last, after the final ``checkpoint.npz``), ``failed`` or ``interrupted`` with
the reason otherwise. A folder without ``summary.json`` and ``"state":
"complete"`` is not a finished run.

Checkpoints are ``.npz`` archives of plain arrays plus one JSON document
(stored as UTF-8 bytes); nothing is pickled and loading never executes code.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

MARKER = ".cart-abm-run"
STATUS = "status.json"
CHECKPOINT = "checkpoint.npz"
# the temporary names of atomic_write: "." + stem + "." + tempfile's 8 random characters [+ suffix]


def model_fingerprint() -> str:
    """A hash of the model's code (every ``.py`` under ``abm/`` and ``kernels/``, ``abm/calibrated.toml``).

    Resumable cohorts (``cart-abm trial``, the calibration report) keep it with their settings, so
    patients simulated by another version of the model are never mixed with new ones.
    """
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    files = [*sorted((root / "abm").rglob("*.py")), *sorted((root / "kernels").rglob("*.py")),
             root / "abm" / "calibrated.toml"]
    for path in files:
        if path.exists():
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def results_root(package_dir: Path, fallback: str) -> Path:
    """Default folder for a package's committed results: ``package_dir/results`` in a source checkout.

    A checkout is recognised by ``pyproject.toml`` beside the package. An
    installed distribution never writes into its own site-packages: its
    default is ``./<fallback>`` in the working folder.
    """
    package_dir = Path(package_dir).resolve()
    if (package_dir.parent / "pyproject.toml").is_file():
        return package_dir / "results"
    return Path.cwd() / fallback


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def atomic_write(path: Path, write: Callable[[Any], None], binary: bool = False) -> None:
    """Call ``write(file)`` on a temporary file in ``path``'s folder, then rename it over ``path``.

    The file gets the ordinary mode the umask allows (``mkstemp`` would leave 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""})) as fh:
            write(fh)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write(path, lambda fh: fh.write(text))


def append_journal(path: Path, entry: Any, *, allow_nan: bool = False) -> None:
    """Append ``entry`` to the JSON-lines journal ``path`` as one line, flushed and fsynced (durable at once).

    The journal's folder is made if it does not exist yet (a study's journal lies beside its ``--out``,
    whose parent, e.g. the default smoke folder on a fresh machine, may not exist before the first run ends).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, allow_nan=allow_nan) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def read_journal(path: Path) -> list[Any]:
    """The entries of a JSON-lines journal (none when it does not exist); a line torn by a crash is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash: its work runs again
    return entries


def write_gzip_text(path: Path, text: str) -> None:
    """Write ``text`` gzip-compressed to ``path`` atomically; the same text gives the same bytes (no timestamp)."""
    import gzip

    atomic_write(path, lambda fh: fh.write(gzip.compress(text.encode("utf-8"), mtime=0)), binary=True)


def write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """``np.savez_compressed`` to ``path`` atomically."""
    import numpy as np

    atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays), binary=True)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- status and checkpoints -----------------------------------------------------------------------------


def write_status(folder: Path, state: str, **info: Any) -> None:
    write_json(Path(folder) / STATUS, {"state": state, **info})


def read_status(folder: Path) -> dict[str, Any]:
    path = Path(folder) / STATUS
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise FileNotFoundError(
            f"{str(path)!r} is missing or unreadable ({exc}); is this a cart-abm run folder?"
        ) from None


def write_checkpoint(folder: Path, checkpoint: dict[str, Any]) -> None:
    """Write ``MarrowModel.checkpoint()`` output as ``folder/checkpoint.npz`` (atomically)."""
    import numpy as np

    meta = np.frombuffer(json.dumps(checkpoint["meta"], allow_nan=False).encode("utf-8"), dtype=np.uint8)
    write_npz(Path(folder) / CHECKPOINT, {**checkpoint["arrays"], "meta_json": meta})


def read_checkpoint(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read ``folder/checkpoint.npz`` back as ``(arrays, meta)``, without unpickling anything."""
    import numpy as np

    path = Path(folder) / CHECKPOINT
    if not path.exists():
        raise FileNotFoundError(
            f"no {CHECKPOINT} in {str(Path(folder))!r}: the run stopped before its first checkpoint (every run "
            "writes one when it finishes; --checkpoint-every DAYS writes them along the way); start it again"
        )
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files if name != "meta_json"}
        meta = json.loads(data["meta_json"].tobytes().decode("utf-8"))
    return arrays, meta
