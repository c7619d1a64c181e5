"""Output folders: never a folder cart-abm did not write, never one replaced without ``--force``.

Output folders (:func:`plan_output`): a new or empty ``--out`` is written in
place; an existing cart-abm output (a run, a trial, a study) is refused
unless ``--force``, which writes the new output in a staging folder beside it
(``.NAME.cart-abm-new``) and swaps it in at the end (:func:`replace_folder`);
any other folder is refused even with ``--force``. A destination that cannot
be created (a file in its path, no permission, a file system that takes no
folders) is a :class:`~abm.errors.ParamError` naming the option and the
operating system's reason.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from abm.errors import ParamError
from abm.io import MARKER, current_umask, read_status
from abm.signals import signals_held

TRIAL_SPEC = "trial.json"
STUDY_PROVENANCE = "provenance.json"
STAGING = ".cart-abm-new"  # a replacement is built in PARENT/.NAME.cart-abm-new, then swapped in
ASIDE = ".cart-abm-old"  # the folder it replaces waits in PARENT/.NAME.cart-abm-old-<random> until deleted
_TEMPORARY = re.compile(r"^\.[\w-]+\.[a-z0-9_]{8}(\.\w+)?$")


def remove_temporaries(folder: Path) -> list[str]:
    """Delete what interrupted :func:`atomic_write` calls left in ``folder`` (``.checkpoint.k2j4_x9q.npz``, ...).

    Returns the names removed. Only names of that exact shape go; the
    folder's other files, the marker included, stay.
    """
    removed = []
    for path in Path(folder).iterdir():
        if path.is_file() and path.name != MARKER and _TEMPORARY.match(path.name):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


# -- output folders -----------------------------------------------------------------------------------
def folder_kind(folder: Path) -> str | None:
    """What cart-abm wrote in ``folder``: ``"run"``, ``"trial"``, ``"study"``, or None for anything else.

    A run or trial folder carries the marker file (a trial also ``trial.json``);
    a study folder (``experiments.common.write_results``) a ``provenance.json``
    naming its experiment.
    """
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return "trial" if (folder / TRIAL_SPEC).is_file() else "run"
    try:
        prov = json.loads((folder / STUDY_PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return "study" if isinstance(prov, dict) and "experiment" in prov and "cart_abm_version" in prov else None


def is_empty_folder(folder: Path) -> bool:
    folder = Path(folder)
    return folder.is_dir() and not any(folder.iterdir())


def status_state(folder: Path) -> str | None:
    """The ``state`` of ``folder/status.json``, or None when there is none (or it cannot be read)."""
    try:
        return read_status(folder).get("state")
    except FileNotFoundError:
        return None


def describe_folder(folder: Path) -> str:
    """``a complete cart-abm run (28 days)``, ``an unfinished cart-abm trial (interrupted, 12/40 patients)``, ..."""
    folder = Path(folder)
    kind = folder_kind(folder)
    if kind == "study":
        try:
            prov = json.loads((folder / STUDY_PROVENANCE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            prov = {}
        smoke = " smoke" if prov.get("smoke") else ""
        return f"the results of the cart-abm{smoke} study {prov.get('experiment')!r} of {prov.get('date_utc', '?')}"
    try:
        status = read_status(folder)
    except FileNotFoundError:
        status = {}
    state = status.get("state")
    if state == "complete":
        day = status.get("day")
        if kind == "run" and isinstance(day, (int, float)):
            extent = f"{day:g} day" + ("" if day == 1 else "s")
        else:
            extent = f"{status['patients']} patients" if "patients" in status else ""
        return f"a complete cart-abm {kind}" + (f" ({extent})" if extent else "")
    detail = state or "no status.json"
    if kind == "run" and status.get("checkpoint_day") is not None:
        detail += f", last checkpoint at day {status['checkpoint_day']:g}"
    if kind == "trial" and "patients_done" in status:
        detail += f", {status['patients_done']}/{status.get('patients', '?')} patients"
    return f"an unfinished cart-abm {kind} ({detail})"


def check_writable(destination: Path, option: str = "--out") -> None:
    """Raise :class:`ParamError` unless a folder can be made (or written) at ``destination``.

    Nothing is left behind: the test creates and removes one empty folder in
    ``destination`` if it exists, else in its nearest existing ancestor.
    """
    destination = Path(destination)
    where = str(destination)
    if destination.exists() and not destination.is_dir():
        raise ParamError(f"{option} {where!r}: exists and is a file; expected a folder")
    base = destination if destination.exists() else _nearest_existing(destination.parent)
    if not base.is_dir():
        raise ParamError(f"{option} {where!r}: {str(base)!r} is a file, not a folder; choose another {option}")
    try:
        probe = tempfile.mkdtemp(prefix=".cart-abm-probe-", dir=base)
    except OSError as exc:
        raise ParamError(f"{option} {where!r}: cannot create a folder in {str(base)!r} "
                         f"({exc.strerror or exc}); choose a folder you can write to") from None
    os.rmdir(probe)


@dataclass(frozen=True)
class Output:
    """Where a command writes: ``path`` is ``destination``, or its staging folder for a ``--force`` replacement."""

    destination: Path
    path: Path
    option: str = "--out"

    @property
    def staged(self) -> bool:
        return self.path != self.destination


def staging_folder(destination: Path) -> Path:
    """``PARENT/.NAME.cart-abm-new``: where the replacement of ``destination`` is built."""
    destination = Path(destination)
    return destination.parent / f".{destination.name}{STAGING}"


def refusal(destination: Path, option: str = "--out") -> str:
    """The message that refuses to write over the cart-abm output at ``destination``."""
    where = str(destination)
    what = describe_folder(destination)
    kind = folder_kind(destination)
    text = f"{option} {where!r} holds {what}; choose another {option}"
    if kind == "run":
        if status_state(destination) == "complete":
            text += f", extend it with `cart-abm resume {where} --days N`"
        else:
            text += f", continue it with `cart-abm resume {where}`"
    return text + " or pass --force to replace it"


def plan_output(destination: Path, *, force: bool = False, option: str = "--out") -> Output:
    """Decide where a command writes its output folder, before anything is simulated; writes nothing.

    A new or empty ``destination`` is written in place. An existing cart-abm
    output is refused (:func:`refusal`) unless ``force``, which plans a
    staging folder beside it that :func:`commit_output` swaps in at the end.
    Any other folder is refused, ``force`` or not. Raises :class:`ParamError`.
    """
    destination = Path(destination).absolute()
    check_writable(destination, option)
    if not destination.exists() or is_empty_folder(destination):
        return Output(destination, destination, option)
    if folder_kind(destination) is None:
        raise ParamError(f"{option} {str(destination)!r} exists and is not a cart-abm output folder; choose another "
                         f"{option} (--force replaces only folders cart-abm wrote)")
    if not force:
        raise ParamError(refusal(destination, option))
    check_writable(destination.parent, option)
    return Output(destination, staging_folder(destination), option)


def create_output(out: Output) -> Path:
    """Create ``out.path`` with the marker file and return it; a leftover staging folder is cleared first."""
    try:
        if out.staged and out.path.exists():
            if folder_kind(out.path) is None and not is_empty_folder(out.path):
                raise ParamError(f"{out.option} {str(out.destination)!r}: {str(out.path)!r} is in the way of the "
                                 "replacement and is not a cart-abm folder; move it away")
            shutil.rmtree(out.path)
        out.path.mkdir(parents=True, exist_ok=True)
        (out.path / MARKER).write_text("cart-abm output folder\n", encoding="utf-8")
    except OSError as exc:
        raise ParamError(f"{out.option} {str(out.destination)!r}: cannot create {str(out.path)!r} "
                         f"({exc.strerror or exc})") from None
    return out.path


def commit_output(out: Output) -> Path:
    """Swap a staged replacement into place (nothing to do for an output written in place); the destination."""
    if out.staged:
        replace_folder(out.path, out.destination)
    return out.destination


def replace_folder(new: Path, destination: Path) -> None:
    """Put the complete folder ``new`` at ``destination``, replacing what is there.

    Both are in the same parent folder. The old folder is renamed aside
    (``.NAME.cart-abm-old-<random>``), ``new`` is renamed to ``destination``,
    then the old one is deleted: at every moment the old folder is at
    ``destination`` or aside, and the new one at ``new`` or ``destination``,
    so an interruption (even ``kill -9``) loses neither. SIGINT, SIGTERM and
    SIGHUP wait until both renames are done (:func:`signals_held`). A
    destination that is no longer a cart-abm output (something else was put
    there meanwhile) is left alone: :class:`ParamError`, ``new`` stays where it is.
    """
    new, destination = Path(new), Path(destination)
    if destination.exists() and not is_empty_folder(destination) and folder_kind(destination) is None:
        raise ParamError(f"{str(destination)!r} is not a cart-abm output folder (any more); it was left alone and "
                         f"the new output is in {str(new)!r}")
    aside = destination.parent / f".{destination.name}{ASIDE}-{secrets.token_hex(4)}"
    moved = False
    with signals_held():
        if destination.exists():
            if is_empty_folder(destination):
                destination.rmdir()
            else:
                os.rename(destination, aside)
                moved = True
        try:
            os.rename(new, destination)
        except BaseException:
            if moved:
                os.rename(aside, destination)
            raise
    if moved:
        shutil.rmtree(aside, ignore_errors=True)


def make_staging_folder(destination: Path) -> Path:
    """A fresh, uniquely named folder beside ``destination`` (``.NAME.cart-abm-new-<random>``), ordinary mode."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix=f".{destination.name}{STAGING}-", dir=destination.parent))
    os.chmod(path, 0o777 & ~current_umask())
    return path


def _nearest_existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path
