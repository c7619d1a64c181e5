"""Systemic compartment: infusion schedule, blood CAR-T and traffic into the window.

What is modelled now
    Blood CAR-T cells ``B`` (whole body, cells) follow a deterministic ODE
    integrated exactly over each step::

        dB/dt = infusions(t) - (k_entry + k_loss) * B

    ``k_entry`` (``traffic.marrow_entry_rate_per_day``) sends cells to the
    whole marrow; the window receives its share, ``window_share =
    window_capacity / (marrow_cells_per_kg * weight)``, as entries at
    perivascular sites: the kernels spread this step's expected entries over
    the empty perivascular sites (:func:`kernels.rules.enter_threshold`), so
    the window's intake does not depend on how crowded its portals are.

Not yet modelled (the biology issue): expansion in marrow feeding back into
blood, body-wide cytokines, CRS/ICANS grading and interventions. The blood
compartment is deliberately a mean-field ODE, so body-level quantities never
inherit one window's small-number noise.
"""

from __future__ import annotations

import math

from abm.errors import SimulationError
from abm.params import Params
from abm.rates import MINUTES_PER_DAY
from kernels.rng import TWO32

UL_PER_ML = 1000.0


class Blood:
    """Blood CAR-T cells of the whole body, with the infusion schedule."""

    def __init__(self, params: Params, window_capacity: int, n_perivascular: int):
        p = params
        self.dose_cells = p.product.dose_per_kg * p.patient.weight_kg
        self.schedule = list(zip(p.schedule.days, p.schedule.fractions, strict=True))
        self.k_entry = p.traffic.marrow_entry_rate_per_day
        self.k_loss = p.traffic.blood_loss_rate_per_day
        self.blood_ul = p.traffic.blood_volume_ml_per_kg * p.patient.weight_kg * UL_PER_ML
        self.marrow_cells = p.patient.marrow_cells_per_kg * p.patient.weight_kg
        self.window_share = window_capacity / self.marrow_cells
        self.n_perivascular = n_perivascular
        self.cells = 0.0
        self.infused = 0.0
        self._given = 0

    def advance(self, t_day: float, dt_day: float) -> int:
        """Give infusions due by ``t_day``, integrate over ``dt_day``; return this step's entry quota.

        The quota is the expected number of CAR-T cells entering the window
        during the step, times ``2**32``, rounded to an integer.
        """
        while self._given < len(self.schedule) and self.schedule[self._given][0] <= t_day + 1e-12:
            dose = self.dose_cells * self.schedule[self._given][1]
            self.cells += dose
            self.infused += dose
            self._given += 1
        k = self.k_entry + self.k_loss
        left = self.cells * math.exp(-k * dt_day)
        to_marrow = (self.cells - left) * (self.k_entry / k) if k > 0 else 0.0
        self.cells = left
        if self.n_perivascular == 0:
            return 0
        expected = to_marrow * self.window_share
        if expected > self.n_perivascular:
            raise SimulationError(
                f"blood traffic asks {expected:.1f} entries into the window in one step at day {t_day:g}, more than "
                f"its {self.n_perivascular} perivascular sites; lower time.dt_min or raise grid.sinusoid_fraction"
            )
        return int(round(expected * TWO32))

    @property
    def per_ul(self) -> float:
        """Blood CAR-T concentration [cells/uL]."""
        return self.cells / self.blood_ul

    def state(self) -> dict[str, float]:
        return {"cells": self.cells, "infused": self.infused, "given": self._given}

    def restore(self, state: dict[str, float]) -> None:
        self.cells = float(state["cells"])
        self.infused = float(state["infused"])
        self._given = int(state["given"])


def dt_days(dt_min: float) -> float:
    return dt_min / MINUTES_PER_DAY
