"""How much memory a run needs, against what this machine has.

:func:`estimate_run_bytes` adds up what a run of ``MarrowModel`` holds at its
peak; :func:`available_bytes` reads what this process may still take;
:func:`check_run_memory` refuses a run (``ParamError``) that would not fit, so
``cart-abm run --set grid.size=16384`` stops at once with a message instead of
swapping for minutes. All sizes are in bytes; messages use decimal units
(1 MB = 10**6 B, 1 GB = 10**9 B).

The estimate (``n = grid.size``, ``m = ceil(n / grid.coarsen)``)
----------------------------------------------------------------
``state`` [B], exact
    The :class:`kernels.LatticeState` arrays: ``cell`` uint8[n, n] and
    ``tissue`` uint8[n, n] (1 B/site each), ``traits`` uint16[n, n, N_TRAITS]
    (18 B/site), ``fields`` int64[N_FIELDS, m, m] (16 B per voxel, 1 B/site at
    the default coarsen 4) and ``events`` int64[N_EVENTS]: 21 B/site by default.
``buffers`` [B]
    What :class:`kernels.Lattice` allocates besides the state: the scratch
    copy of the fields (``fields`` again), the per-row event counters
    int64[n, N_EVENTS], the base event counts, the perivascular portal list
    int64[portals] and its gate list (the same size), the bit masks of the
    cells that act (uint32[2, n, ceil(n / 32)]) and the stroma per voxel
    (int64[m, m]); portals are bounded by ``min(8 * grid.sinusoid_fraction,
    1) * n**2`` (each sinusoid site has 8 neighbours; the default window has
    0.115 n**2 of them against the bound's 0.4 n**2).
``temporaries`` [B]
    The transient peak above ``state + buffers``. Building the window
    (:func:`abm.marrow.build_window`) is the peak of every run measured below:
    two Gaussian random fields by FFT (float64 noise, the spectrum and
    complex128 transforms over n x n: 72 B/site traced), then float64 draws
    and int64 antigen levels over n x n next to the new ``cell``, ``tissue``
    and ``traits`` (93 B/site traced in all; ``scipy.ndimage.label``'s int32
    labels, 13 B/site, come between the two and stay below it). Measured as
    RSS this is :data:`CONSTRUCTION_BYTES_PER_SITE` (100 B/site, state
    included), plus :data:`CD22_CONSTRUCTION_BYTES_PER_SITE` (25 B/site) when
    CD22 is tracked (its own draws and levels). During the run, the
    observations (:meth:`abm.model.MarrowModel.read_window`, ``_observe``,
    ``view``) take int64 antigen levels and boolean masks over n x n:
    :data:`STEP_TEMPORARY_BYTES_PER_SITE` (32 B/site; 11 traced for a CD19 CAR,
    26 for a dual one) above ``state + buffers``. ``temporaries`` is the larger
    of the two phases, so ``state + buffers + temporaries`` is the peak of
    the lattice alone.
``snapshots`` [B]
    ``snapshots`` x :data:`SNAPSHOT_COPIES` x (``view`` uint8[n, n] + ``il6``
    float32[m, m] + :data:`SNAPSHOT_OVERHEAD_BYTES` for the dict, two array
    headers and the day), as ``MarrowModel._snapshot`` keeps them: 1.25 B/site
    per snapshot and copy at coarsen 4. Two copies: writing ``snapshots.npz`` (``cart-abm
    run``) and :meth:`~abm.model.MarrowModel.checkpoint` ``np.stack`` the list
    into arrays while the list is still held. :func:`snapshot_count` gives the
    number a run keeps for a ``--snapshot-every``.
``baseline`` [B], fixed
    :data:`BASELINE_BYTES`: the interpreter with NumPy, SciPy, Mesa, pandas,
    Numba and ``abm`` imported (170 MiB RSS), small allocations made while
    building a model (3 MB) and Numba compiling the step on a cold cache
    (+188 MiB; +47 MiB when loading it from a warm cache): 358 MiB peak for a
    16 x 16 window with an empty ``CART_ABM_CACHE_DIR``, 218 MiB warm.
``total`` [B]
    ``baseline + state + buffers + temporaries + snapshots``. The sum errs
    high: the construction temporaries are freed before the first step, when
    Numba compiles and snapshots start to accumulate.

The ``cuda`` backend keeps the same host state but not the host drivers'
workspaces (its own are on the device; a CUDA context is not counted), so the
estimate errs high there; GPU memory is not estimated here.

Calibration
-----------
2026-12-02, Linux x86_64, 2 cores, 23.5 GiB RAM, Python 3.11, NumPy 2.4.6,
Numba 0.68.1, SciPy 1.17.1, warm Numba cache. Each row is a fresh process
(:func:`measure_run`) running ``MarrowModel(Params.default().replace(
{"grid.size": n, "time.days": 0.05}), seed=0, backend="cpu")`` and
``model.step()`` (36 lattice steps, no snapshots); peak RSS is the
process's ``VmHWM`` (what ``ru_maxrss`` reports from a shell; in a child of a
larger process Linux starts ``ru_maxrss`` at the parent's RSS), the baseline
the peak after importing :mod:`abm.model` (as ``benchmarks/README.md``
measures); "estimate" is ``total - baseline``, i.e.
``state + buffers + temporaries`` (the warm run's Numba load is in the
measured column, not the estimate's). With its baseline
(360 MiB) added, the estimate's total is above the measured peak at every size:

=========  ==========  ==============  ===============  ============  ===============
grid.size  peak [MiB]  baseline [MiB]  peak - baseline  est. - base.  estimate / meas
=========  ==========  ==============  ===============  ============  ===============
128        218.7       169.3           49.4             1.6           0.03
512        226.5       169.1           57.5             25.0          0.44
1024       270.6       169.3           101.3            100.0         0.99
2048       495.0       169.1           326.0            400.0         1.23
4096       1467.3      168.9           1298.3           1600.0        1.23
=========  ==========  ==============  ===============  ============  ===============

Construction alone (no step) grows the RSS by 98.8 B/site from 512**2 to
1448**2 (glibc serves these array sizes from its heap and keeps some of
what they free) and by 81 B/site at 2048**2 and 3072**2 (arrays of 32 MiB and
more are mapped and unmapped, and pages ``np.zeros`` never writes stay
unmapped); with CD22 tracked, 122.9 and 93.6 B/site. Below ~512**2 the fixed
part dominates: the estimate's per-site terms are then below the measured
growth, which the baseline covers. ``benchmarks/README.md`` reports 99.5
B/site peak at 2048**2 against its bound of 100 under its own protocol
(warm-up and timed steps of the full rule set in the same process).
``python -m abm.resources 512 1024 2048`` remeasures the table.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from abm.errors import ParamError
from abm.params import Params
from abm.rates import MINUTES_PER_DAY, cd22_tracked
from kernels import layout as L

__all__ = [
    "BASELINE_BYTES",
    "CD22_CONSTRUCTION_BYTES_PER_SITE",
    "CONSTRUCTION_BYTES_PER_SITE",
    "SNAPSHOT_COPIES",
    "SNAPSHOT_OVERHEAD_BYTES",
    "STEP_TEMPORARY_BYTES_PER_SITE",
    "RunMemory",
    "available_bytes",
    "check_run_memory",
    "estimate_run_bytes",
    "format_bytes",
    "measure_run",
    "snapshot_bytes",
    "snapshot_count",
    "state_bytes",
]

MIB = 1 << 20
CONSTRUCTION_BYTES_PER_SITE = 100  # B/site: RSS peak of building a model, its state included (module docstring)
CD22_CONSTRUCTION_BYTES_PER_SITE = 25  # B/site more when CD22 is tracked (abm.rates.cd22_tracked)
STEP_TEMPORARY_BYTES_PER_SITE = 32  # B/site above state + buffers while observing a running model
SNAPSHOT_OVERHEAD_BYTES = 512  # B per snapshot: its dict, two ndarray headers and the day
SNAPSHOT_COPIES = 2  # the model's list and the np.stack copy made to write or checkpoint it
BASELINE_BYTES = 360 * MIB  # B: interpreter, imports and a cold Numba compile (358 MiB measured)


@dataclass(frozen=True)
class RunMemory:
    """A run's estimated peak memory by part, in bytes (see the module docstring for each term).

    Attributes
    ----------
    sites : int
        Lattice sites, ``grid.size ** 2``.
    state : int
        The :class:`kernels.LatticeState` arrays [B], exact.
    buffers : int
        :class:`kernels.Lattice`'s own arrays [B] (field scratch, row events, portals).
    temporaries : int
        Transient peak above ``state + buffers`` [B] (building the window, or observing it).
    snapshots : int
        Kept snapshots, with the copy made when they are written [B].
    baseline : int
        Interpreter, imports and Numba [B], fixed.
    """

    sites: int
    state: int
    buffers: int
    temporaries: int
    snapshots: int
    baseline: int

    @property
    def lattice(self) -> int:
        """Peak of the lattice alone [B]: ``state + buffers + temporaries``."""
        return self.state + self.buffers + self.temporaries

    @property
    def total(self) -> int:
        """Everything [B]: ``baseline + lattice + snapshots``."""
        return self.baseline + self.lattice + self.snapshots

    def as_dict(self) -> dict[str, int]:
        """The parts, ``lattice`` and ``total`` [B], as plain integers."""
        return {**asdict(self), "lattice": self.lattice, "total": self.total}


def _voxels(params: Params) -> int:
    m = -(-params.grid.size // params.grid.coarsen)
    return m * m


def state_bytes(params: Params) -> int:
    """Bytes of the :class:`kernels.LatticeState` arrays of a ``grid.size`` window (exact)."""
    sites = params.grid.size**2
    return sites * (1 + 1 + 2 * L.N_TRAITS) + 8 * L.N_FIELDS * _voxels(params) + 8 * L.N_EVENTS


def snapshot_bytes(params: Params) -> int:
    """Bytes of one snapshot as the model keeps it: ``view`` uint8[n, n], ``il6`` float32[m, m] and overhead."""
    return params.grid.size**2 + 4 * _voxels(params) + SNAPSHOT_OVERHEAD_BYTES


def snapshot_count(params: Params, snapshot_every_min: float | None) -> int:
    """Snapshots a run of ``time.days`` keeps at ``snapshot_every_min`` (``MarrowModel``'s rule); 0 for None.

    One at the start, then one every ``round(snapshot_every_min / time.dt_min)`` lattice steps.
    """
    if snapshot_every_min is None:
        return 0
    dt = params.time.dt_min
    total_steps = int(round(params.time.days * MINUTES_PER_DAY / dt))
    every = max(1, int(round(snapshot_every_min / dt)))
    return 1 + total_steps // every


def estimate_run_bytes(params: Params, snapshots: int = 0) -> RunMemory:
    """Estimated peak memory of a run with these parameters keeping ``snapshots`` snapshots.

    Parameters
    ----------
    params : Params
        The run's parameters (``grid.size``, ``grid.coarsen``, ``grid.sinusoid_fraction`` and whether
        CD22 is tracked matter).
    snapshots : int
        Snapshots the run keeps (:func:`snapshot_count`), ``>= 0``.

    Returns
    -------
    RunMemory
        The parts and the total in bytes; ``.as_dict()`` for a plain ``dict[str, int]``.
    """
    if snapshots < 0:
        raise ValueError(f"snapshots = {snapshots!r}: expected a count >= 0")
    n = params.grid.size
    sites = n * n
    state = state_bytes(params)
    fields = 8 * L.N_FIELDS * _voxels(params)
    portals = math.ceil(min(8.0 * params.grid.sinusoid_fraction, 1.0) * sites)
    masks = 4 * 2 * n * -(-n // 32)
    buffers = fields + 8 * n * L.N_EVENTS + 8 * L.N_EVENTS + 2 * 8 * portals + masks + 8 * _voxels(params)
    per_site = CONSTRUCTION_BYTES_PER_SITE + (CD22_CONSTRUCTION_BYTES_PER_SITE if cd22_tracked(params) else 0)
    temporaries = max(per_site * sites - state - buffers, STEP_TEMPORARY_BYTES_PER_SITE * sites)
    return RunMemory(
        sites=sites,
        state=state,
        buffers=buffers,
        temporaries=temporaries,
        snapshots=int(snapshots) * SNAPSHOT_COPIES * snapshot_bytes(params),
        baseline=BASELINE_BYTES,
    )


def _read_int(path: Path) -> int | None:
    """An integer file (cgroup style); None when absent, unreadable or ``max``."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _inactive_file(stat: Path, key: str) -> int:
    """Reclaimable page cache counted in a cgroup's usage (``key`` of its ``memory.stat``), 0 if unknown."""
    try:
        for line in stat.read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except (OSError, UnicodeDecodeError):
        pass
    return 0


def _cgroup_headroom(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes this process's memory cgroup still allows (limit - usage + inactive file cache); None without a limit.

    Reads cgroup v2 (``memory.max``, ``memory.current``) at this process's own
    cgroup path (``/proc/self/cgroup``) or the mount root, else cgroup v1
    (``memory/memory.limit_in_bytes``, ``memory/memory.usage_in_bytes``).
    """
    own = None
    try:
        for line in Path("/proc/self/cgroup").read_text(encoding="ascii").splitlines():
            if line.startswith("0::"):
                own = line[3:].strip().lstrip("/")
    except (OSError, UnicodeDecodeError):
        pass
    candidates = [(root / own if own else root, "memory.max", "memory.current", "inactive_file")]
    if own:
        candidates.append((root, "memory.max", "memory.current", "inactive_file"))
    candidates.append((root / "memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"))
    for folder, limit_file, usage_file, inactive in candidates:
        if not (folder / limit_file).exists():
            continue
        limit = _read_int(folder / limit_file)
        if limit is None or limit >= 1 << 60:  # "max", or cgroup v1's page-rounded 2**63 - 1: no limit
            return None
        usage = _read_int(folder / usage_file) or 0
        return max(0, limit - usage + _inactive_file(folder / "memory.stat", inactive))
    return None


def _meminfo_available(path: Path = Path("/proc/meminfo")) -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` [B]; None where there is none."""
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                parts = line.split()
                return int(parts[1]) * (1024 if parts[2:3] == ["kB"] else 1)
    except (OSError, UnicodeDecodeError, ValueError, IndexError):
        pass
    return None


def available_bytes() -> int | None:
    """Memory this process can still take [B], or None where it cannot be told.

    The machine's available memory (``psutil.virtual_memory().available``
    where psutil imports, as it does with ``distributed`` installed; else
    ``MemAvailable`` of ``/proc/meminfo``), lowered to the headroom of the
    process's memory cgroup (limit - usage) when that is smaller: neither
    psutil nor ``/proc/meminfo`` sees a container's limit.
    """
    machine = None
    try:
        import psutil

        machine = int(psutil.virtual_memory().available)
    except Exception:  # not installed, or no virtual_memory on this platform
        machine = _meminfo_available()
    cgroup = _cgroup_headroom()
    known = [b for b in (machine, cgroup) if b is not None]
    return min(known) if known else None


def _rss_bytes() -> int:
    """Resident set of this process now [B]; 0 where ``/proc`` cannot tell."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def format_bytes(n: int | float) -> str:
    """``31.2 GB``, ``540 MB``, ``12 kB`` (decimal units)."""
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.0f} MB"
    return f"{max(n, 0) / 1e3:.0f} kB"


def check_run_memory(params: Params, snapshots: int = 0) -> int:
    """The estimated peak of a run [B] (:func:`estimate_run_bytes`); ``ParamError`` if it will not fit.

    The run is refused when the estimate, less what this process already
    holds (its RSS, part of the baseline), exceeds :func:`available_bytes`.
    Where the available memory is unknown, nothing is refused.
    """
    est = estimate_run_bytes(params, snapshots)
    available = available_bytes()
    if available is not None and est.total - min(_rss_bytes(), est.baseline) > available:
        parts = [f"lattice {format_bytes(est.lattice)}"]
        if est.snapshots:
            parts.append(f"snapshots {format_bytes(est.snapshots)}")
        parts.append(f"Python and Numba {format_bytes(est.baseline)}")
        fewer = " or fewer snapshots (--snapshot-every)" if est.snapshots else ""
        raise ParamError(
            f"grid.size = {params.grid.size}: this run needs about {format_bytes(est.total)} ({', '.join(parts)}), "
            f"more than the {format_bytes(available)} available; choose a smaller grid.size{fewer}"
        )
    return est.total


_MEASURE = """
import json, resource, sys
def peak():
    # the high-water mark of this process's own memory since exec: VmHWM of /proc/self/status [kB]. Not ru_maxrss:
    # Linux carries the parent's RSS at fork over into the child's ru_maxrss, so under a big parent (pytest) it
    # reads the parent's size
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) * 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
from abm.model import MarrowModel
from abm.params import Params
out = {"baseline": peak()}
params = Params.default().replace({"grid.size": int(sys.argv[1]), "time.days": 0.05})
model = MarrowModel(params, seed=0, backend="cpu")
out["built"] = peak()
if sys.argv[2] == "1":
    model.step()
out["peak"] = peak()
print(json.dumps(out))
"""


def measure_run(size: int, *, steps: bool = True, timeout: float = 600.0) -> dict[str, int]:
    """Peak RSS [B] of a fresh process building a ``size`` window (and stepping it 0.05 days); Linux.

    Returns the process's peak resident set (``VmHWM``) after importing
    :mod:`abm.model` (``baseline``), after construction (``built``) and after
    the steps (``peak``; ``built`` without them).
    """
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(int(size)), "1" if steps else "0"],
                          capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    """``python -m abm.resources SIZE ...``: measured peak RSS against the estimate, as the docstring's table."""
    sizes = [int(a) for a in (sys.argv[1:] if argv is None else argv)] or [128, 512, 1024, 2048]
    rule = "=========  ==========  ==============  ===============  ============  ==============="
    print(rule)
    print("grid.size  peak [MiB]  baseline [MiB]  peak - baseline  est. - base.  estimate / meas")
    print(rule)
    for n in sizes:
        m = measure_run(n)
        est = estimate_run_bytes(Params.default().replace({"grid.size": n, "time.days": 0.05}))
        grown, lattice = m["peak"] - m["baseline"], est.total - est.baseline
        print(f"{n:<9d}  {m['peak'] / MIB:<10.1f}  {m['baseline'] / MIB:<14.1f}  {grown / MIB:<15.1f}  "
              f"{lattice / MIB:<12.1f}  {lattice / grown:.2f}")
    print(rule)
    return 0


if __name__ == "__main__":
    sys.exit(main())
