"""Benchmarks: the plain-Mesa reference, the kernel backends and the limit kernel, on core rules and the full model.

A benchmark is a registry of cases (:mod:`benchmarks.registry`: the
configuration, the cases, their scenario), a runner
(:mod:`benchmarks.runner`: one case, a session, patient wall-clock timings),
comparisons with bootstrap intervals and the targets
(:mod:`benchmarks.compare`) and the result document
(:mod:`benchmarks.report`: building, validating, writing JSON, Markdown and
PNG plots, reading back, comparing two files); :mod:`benchmarks.machine`
records the machine. ``python -m benchmarks`` ties them together (see
``benchmarks/README.md`` for the CLI and the result schema).

What is measured
    *Site-updates per second*: lattice sites times lattice steps divided by the
    wall time of those steps. Every case starts from the default patient window
    of ``grid.size = size`` built by :func:`abm.marrow.build_window` from the
    seed, with CAR-T cells at a fraction of its free sites, under one of two
    rule sets:

    ``core``
        :func:`abm.reference.core_tables`: no fields, no chemotaxis, no blood
        traffic, no life cycle beyond kill and divide; what the Mesa reference
        implements, so the two do the same work.
    ``full``
        :func:`abm.rates.build_tables` defaults: both fields secreted and
        diffused, chemotaxis, activation-induced death, exhaustion, memory,
        CD19 loss, B lymphopoiesis, and blood traffic at a fixed entry quota
        (:data:`benchmarks.registry.FULL_ENTRIES_PER_SITE_STEP`) with the default exit rate.
    The ``limit`` kernel (:mod:`benchmarks.limit`) is the roofline: one pass
    that reads and writes every state array once and draws once per site.
How
    Each case runs in a fresh process (so the peak RSS is the case's own and
    no JIT state or thread setting leaks between cases). Two warm-up steps run
    outside the timed region: the first includes JIT compilation (or loading
    the compiled cache), the second estimates the step time that sizes the
    timed runs. Then ``repeats`` runs of ``steps`` steps each are timed; the
    row keeps every run's step time, and reports their median and range.
    Repeats continue the same run.
"""
