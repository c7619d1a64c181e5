"""What the machine is and how a measuring process stands on it: versions, GPU, threads, git state, RSS, load.

:func:`machine_info` is recorded in every row and in the document; the RSS
helpers and :func:`load_1m` are sampled around each case
(:func:`benchmarks.runner.run_case`) and by :mod:`benchmarks.memwatch`.
"""

from __future__ import annotations

import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np


def max_threads() -> int:
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)


def cuda_simulated() -> bool:
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def cuda_usable() -> bool:
    """A real GPU, or Numba's CUDA simulator when it is switched on (for smoke tests; rows say which)."""
    try:
        from kernels import cuda
    except Exception:
        return False
    return cuda.usable() or cuda_simulated()


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5,
                              check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def machine_info() -> dict[str, Any]:
    """Machine and software versions, recorded in every row."""
    import mesa
    import numba

    try:
        from importlib.metadata import version

        cart_abm = version("cart-abm")
    except Exception:
        cart_abm = None
    cpu_model = platform.processor() or None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel region has run in this process yet
        layer = None
    gpu = None
    if not cuda_simulated():
        try:
            from numba import cuda

            if cuda.is_available():
                gpu = cuda.get_current_device().name
                gpu = gpu.decode() if isinstance(gpu, bytes) else str(gpu)
        except Exception:
            gpu = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "numba_threads": int(numba.config.NUMBA_NUM_THREADS),
        "threading_layer": layer,
        "gpu": gpu,
        "cuda_simulated": cuda_simulated(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "mesa": mesa.__version__,
        "cart_abm": cart_abm,
        "git_commit": _git("rev-parse", "--short", "HEAD") or None,
        "git_dirty": None if status is None else bool(status),
    }


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far [MiB]."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20  # kB on Linux, bytes on macOS


def rss_mib(pid: int | str = "self") -> float:
    """Current resident set size of process ``pid`` [MiB].

    Where ``/proc`` cannot tell: this process's peak, another process's 0 (it has exited).
    """
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return peak_rss_mib() if pid == "self" else 0.0


def load_1m() -> float | None:
    """One-minute load average of the machine (``None`` where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
