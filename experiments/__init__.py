"""cart-abm experiments: one runnable script per scientific question.

Each experiment is a module ``experiments.<name>`` run as
``python -m experiments.<name> [--smoke] [--n N] [--seed S] [--workers K] [--days D] [--out DIR]``.
It writes ``results.csv`` (one row per run), ``timeseries.csv.gz``, ``figure.png``,
``provenance.json`` and a generated ``README.md`` into ``experiments/results/<name>/``
(in a checkout; ``./cart-abm-results/<name>/`` when installed)
(see :mod:`experiments.common` for the shared command line, execution and output
contract, and ``experiments/README.md`` for the list of experiments).

The package is installed with cart-abm beside ``abm`` and ``kernels`` and adds
``cart-abm experiment`` through an entry point (:mod:`experiments.cli`). The
dependency arrow is ``experiments -> abm -> kernels``.
"""

# every experiment runnable as ``python -m experiments.<name>`` and ``cart-abm experiment <name>``
EXPERIMENTS = ("window_convergence", "dose_response", "sensitivity", "fractionation", "car_design", "tumor_burden",
               "niche_protection", "crs_management", "antigen_escape", "calibrate", "calibration_report")
