"""The clock's output: the locked laser on the absolute scale, corrected by the live shifts.

DOMAIN §2: "The clock output is the servo frequency corrected by -(total shift) nu0." The
servo steers the laser through its AOM; where the laser sits on the absolute scale is
measured by a frequency reference (in the lab a frequency comb referenced to a maser, whose
record is read at each interrogation; in the twin its own truth). The laser drifts with its
cavity while the AOM holds a cycle's setting, so the output must sample the laser when the
ion does: `sample()` is called for each probe with the middle of its free evolution (where a
drifting laser's phase counts) and its common steering, and each frame's output is the mean
over its probes:

    nu_abs      = mean_i [reference_i (laser with the AOM at its centre, minus nu0)
                          + common steering_i]
    corrected   = nu_abs - sum(shifts)          (Hz from nu0)
    sigma       = the budget's total systematic uncertainty (Hz)

Without a reference (a lab config that has none) or before the first budget, the output
fields are None and nothing is claimed; so are they for a frame where the reference could
not say where the laser was (it answers NaN: a counter that lost the comb beat).
"""

from __future__ import annotations

import math
from typing import Protocol


class FrequencyReference(Protocol):
    """Where the clock laser is on the absolute scale."""

    def laser_offset_hz(self, t: float) -> float:
        """Laser frequency with the clock AOM at its centre, minus nu0 (Hz), at time t."""
        ...


class ClockOutput:
    """Per-frame clock output from a reference, the servo frequency and the live budget."""

    def __init__(self, reference: FrequencyReference | None = None):
        self.reference = reference
        self.shift_hz: float | None = None
        self.sigma_hz: float | None = None
        self.valid = False
        self.budget_t: float | None = None
        self._sum = 0.0
        self._n = 0
        self._laser = reference.laser_offset_hz if reference is not None else None

    def set_reference(self, reference: FrequencyReference | None) -> None:
        """Take the laser's absolute frequency from `reference` from the next probe on."""
        self.reference = reference
        self._laser = reference.laser_offset_hz if reference is not None else None
        self._sum, self._n = 0.0, 0

    def sample(self, t: float, steering_hz: float) -> None:
        """A probe at time `t` (its free evolution's middle) had the common steering (Hz)."""
        if self._laser is not None:
            self._sum += self._laser(t) + steering_hz
            self._n += 1

    def set_budget(self, t: float, shift_hz: float, sigma_hz: float, valid: bool) -> None:
        """Install the latest budget: total shift and its 1-sigma (Hz), evaluated at t."""
        self.budget_t, self.shift_hz, self.sigma_hz, self.valid = t, shift_hz, sigma_hz, valid

    def evaluate(self) -> tuple[float | None, float | None, float | None]:
        """(nu_abs, corrected, sigma) in Hz from nu0 over the probes since the last call."""
        if self.reference is None or not self._n:
            return None, None, None
        nu_abs = self._sum / self._n
        self._sum, self._n = 0.0, 0
        if not math.isfinite(nu_abs):   # the reference could not say (a lost beat)
            return None, None, None
        if self.shift_hz is None or not self.valid:
            return nu_abs, None, None
        return nu_abs, nu_abs - self.shift_hz, self.sigma_hz
