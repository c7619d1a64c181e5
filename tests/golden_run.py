"""The golden regression run: a small fixed-seed run whose outcome is committed in tests/golden/.

``python tests/golden_run.py`` rewrites ``tests/golden/small_run.json``. Do that only on
purpose, when a change is meant to alter the dynamics, and say why in the commit message.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from abm.model import MarrowModel
from abm.outcomes import summarize
from abm.params import Params

GOLDEN = Path(__file__).parent / "golden" / "small_run.json"
SETTINGS = {"grid.size": 32, "time.days": 6.0, "time.observe_every_h": 12.0}
SEED = 2026
VOLATILE = ("wall_s", "version", "backend")


def run() -> dict:
    model = MarrowModel(Params.default().replace(SETTINGS), seed=SEED, backend="cpu").run()
    summary = {k: v for k, v in summarize(model).items() if k not in VOLATILE}
    s = model.state
    digest = hashlib.sha256()
    for name, array in s.arrays().items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return {
        "settings": SETTINGS,
        "seed": SEED,
        "summary": summary,
        "counts": model.counts().tolist(),
        "events": s.events.tolist(),
        "state_sha256": digest.hexdigest(),
    }


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(run(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")
