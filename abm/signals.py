"""Signals: SIGTERM and SIGHUP stop a command as Ctrl-C does; child process groups stop with it.

:func:`stop_on_signals`: SIGTERM and SIGHUP stop a command as
Ctrl-C does, by raising :class:`Interrupted` (a ``KeyboardInterrupt``) in
the main thread, so every ``except KeyboardInterrupt`` marks its folder
``interrupted`` and stops its workers; ``cart-abm`` then exits with 128 plus
the signal's number. :func:`signals_held` defers them across a folder swap.
:func:`run_in_own_group` runs a child (the viewer's server) as a process group
of its own and stops the whole group when this process is stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP arrived (:func:`stop_on_signals`); ``signum`` and ``name`` say which."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name


def signal_number(exc: BaseException) -> int:
    """The signal behind a ``KeyboardInterrupt`` (SIGINT for a plain one)."""
    return getattr(exc, "signum", int(signal.SIGINT))


def signal_name(exc: BaseException) -> str:
    return signal.Signals(signal_number(exc)).name


_SIGNALS = {"held": 0, "pending": None, "stopping": False}


def _on_signal(signum: int, frame: Any) -> None:
    if _SIGNALS["held"]:
        _SIGNALS["pending"] = _SIGNALS["pending"] or signum
        return
    if _SIGNALS["stopping"] and signum != signal.SIGINT:
        return  # a repeated TERM/HUP while stopping would cut the clean-up short; kill -9 still works
    _SIGNALS["stopping"] = True
    raise Interrupted(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, SIGTERM, SIGHUP and SIGINT raise :class:`Interrupted` in the main thread.

    ``Interrupted`` is a ``KeyboardInterrupt``, so code that cleans up after
    Ctrl-C cleans up after the others too. The previous handlers come back
    afterwards. Outside the main thread (where Python cannot set handlers)
    the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    outer = dict(_SIGNALS)
    _SIGNALS.update(held=0, pending=None, stopping=False)
    for s in STOP_SIGNALS:
        signal.signal(s, _on_signal)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        _SIGNALS.update(outer)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Defer :func:`stop_on_signals`' signals to the end of the block (e.g. across the two renames of a swap)."""
    _SIGNALS["held"] += 1
    try:
        yield
    finally:
        _SIGNALS["held"] -= 1
    pending = _SIGNALS["pending"]
    if not _SIGNALS["held"] and pending:
        _SIGNALS["pending"] = None
        _SIGNALS["stopping"] = True
        raise Interrupted(pending)


def run_in_own_group(argv: list[str], env: dict[str, str] | None = None, grace_s: float = 10.0) -> int:
    """Run ``argv`` as a process group of its own until it exits; return its exit status.

    Ctrl-C, SIGTERM and SIGHUP here stop the whole group (SIGTERM, then
    SIGKILL after ``grace_s`` seconds), so no server or worker it started
    outlives this process, and are raised again as :class:`Interrupted`.
    """
    process = subprocess.Popen(argv, env=env, start_new_session=True)
    with stop_on_signals():
        try:
            return process.wait()
        finally:
            if process.poll() is None or _group_alive(process.pid):
                with signals_held():
                    stop_group(process, grace_s)


def stop_group(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the process group led by ``process``; SIGKILL what is left after ``grace_s`` seconds."""
    pgid = process.pid
    deadline = time.monotonic() + grace_s
    _signal_group(pgid, signal.SIGTERM)
    while time.monotonic() < deadline and (process.poll() is None or _group_alive(pgid)):
        time.sleep(0.05)
    if process.poll() is None or _group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)
    process.wait()


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies waiting for their parent do not count)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return not Path("/proc/self/stat").exists()  # no /proc: trust killpg
