"""The body compartment: CAR-T pools, serum IL-6, CRS/ICANS surrogates and their treatment.

The marrow window is a lattice; the rest of the patient is this package, a
mean-field compartment that :class:`abm.model.MarrowModel` advances every
lattice step. Each module holds one job and documents its science:

:mod:`abm.body.compartment`
    :class:`Body`, which composes the parts below and couples them with the
    window (determinism and noise, the window's readout and CAR-T entry
    quota), :class:`WindowReadout`, observables and the
    :meth:`Body.state`/:meth:`Body.restore` checkpoint.
:mod:`abm.body.kinetics`
    The body ODE: state vector layout, the CAR-T pools (division destiny,
    memory, blood-tissue traffic, competition for antigen), serum IL-6, the
    myeloid compartment, the right-hand side, the RK4 step and its
    sub-steps, and infusion.
:mod:`abm.body.reservoir`
    Residual disease outside the window: its seeding, the stochastic
    small-number regime, reseeding of the window and
    :func:`target_negative_share`.
:mod:`abm.body.toxicity`
    CRS and ICANS surrogates and their ASTCT 2019 grades.
:mod:`abm.body.interventions`
    Tocilizumab and corticosteroids (triggers, receptor blockade,
    :class:`Controls` for the kernels) and holding a fraction on CRS.

The consistency check of the body parameters lives with the parameters
(:class:`abm.params.Params` applies it when it is built).
"""

from abm.body.compartment import Body, WindowReadout
from abm.body.interventions import Controls
from abm.body.kinetics import E0, IL6, MB, MT, MY, NEURO, RN, RP, Rates
from abm.body.reservoir import RESERVOIR_STREAM, STOCHASTIC_CELLS, target_negative_share
from abm.body.toxicity import FEVER_C, ICE_ZERO, astct_crs_grade, crs_surrogates, icans_surrogate

__all__ = [
    "E0",
    "FEVER_C",
    "ICE_ZERO",
    "IL6",
    "MB",
    "MT",
    "MY",
    "NEURO",
    "RESERVOIR_STREAM",
    "RN",
    "RP",
    "STOCHASTIC_CELLS",
    "Body",
    "Controls",
    "Rates",
    "WindowReadout",
    "astct_crs_grade",
    "crs_surrogates",
    "icans_surrogate",
    "target_negative_share",
]
