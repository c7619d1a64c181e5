"""Soak tests (marked slow; not run in CI): a year-long patient, memory flat over time.

Run with ``python -m pytest -m slow -q``; measured figures go to docs/reliability.md.
"""

import resource
import time

import pytest

from abm.model import MarrowModel


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@pytest.mark.slow
def test_year_long_default_patient_runs_with_flat_memory():
    model = MarrowModel(seed=1, backend="cpu", check_invariants=False, **{"time.days": 365.0})
    samples = []
    started = time.perf_counter()
    while model.running:
        model.step()
        if model.steps % 40 == 0:  # every 10 days
            samples.append(rss_mib())
    wall = time.perf_counter() - started
    model.check_invariants()
    # After warm-up, memory may grow only by the DataCollector's rows (a few kB per day).
    later = samples[len(samples) // 4 :]
    assert max(later) - min(later) < 50.0, samples
    print(f"365 days: {wall:.1f} s wall, RSS {min(samples):.0f}-{max(samples):.0f} MiB")
