"""``python -m benchmarks``: the benchmark command line (:mod:`benchmarks.cli`)."""

import sys

from benchmarks.cli import main

sys.exit(main())
