"""Regression: a small fixed-seed run must reproduce the committed golden record exactly.

A failure means the dynamics changed. If that was the intent, regenerate with
``python tests/golden_run.py`` and explain the change in the commit message.
"""

import json

from golden_run import GOLDEN, run


def test_small_run_matches_golden_record():
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = json.loads(json.dumps(run()))  # same float formatting as the file
    assert got["counts"] == expected["counts"]
    assert got["events"] == expected["events"]
    assert got["summary"] == expected["summary"]
    assert got["state_sha256"] == expected["state_sha256"]
