"""The live shift budget of a running clock (issue 6).

`LiveBudget` keeps a sliding window of what the clock measures: every temperature sensor's
readings (BBR) and the field from the Zeeman splittings of locked frames (quadratic
Zeeman), and evaluates the budget of `ionclock.budget` on that window. Inputs the clock does
not measure live (micromotion ratios, pressure, <B^2>) come from the budget config's nominal
values, and the budget's provenance says so. A sensor with no reading in the window makes
the BBR row invalid (never a silent zero), and an invalid budget yields no corrected output.
"""

from __future__ import annotations

import math
from collections import deque

from ionclock.budget import Budget, ClockInputs, nominal_inputs
from ionclock.shifts import SensorTrace


class LiveBudget:
    """Sliding-window inputs and the budget evaluated on them."""

    def __init__(self, budget_cfg: dict, window_s: float = 3600.0):
        self.cfg = budget_cfg
        self.window_s = window_s
        self.channels = list(budget_cfg["bbr"]["channels"])
        self._temps: dict[str, deque] = {ch: deque() for ch in self.channels}
        self._field: deque = deque()
        self._nominal = nominal_inputs(budget_cfg, "live")

    def add_temperature(self, t: float, channel: str, kelvin: float) -> None:
        """One sensor reading (K); NaN (a missing reading) is not kept."""
        if channel in self._temps and math.isfinite(kelvin):
            self._temps[channel].append((t, kelvin))

    def add_field(self, t: float, b_t: float) -> None:
        """The field from the splittings of one locked frame (T)."""
        self._field.append((t, b_t))

    def _trim(self, t: float) -> None:
        start = t - self.window_s
        for q in (*self._temps.values(), self._field):
            while q and q[0][0] < start:
                q.popleft()

    def inputs(self, t: float) -> ClockInputs:
        """The budget's inputs over [t - window, t]."""
        self._trim(t)
        traces = tuple(SensorTrace(ch, min(v for _, v in q), max(v for _, v in q), len(q))
                       for ch, q in self._temps.items() if q)
        missing = [ch for ch, q in self._temps.items() if not q]
        nom = self._nominal
        if self._field:
            b = math.sqrt(sum(v * v for _, v in self._field) / len(self._field))
            n_frames = len(self._field)
        else:
            b, n_frames = nom.b_rms_t, 0   # evaluated, but the row is marked invalid below
        notes = {"qz_dc": "no locked frame (field) in the window"} if not self._field else {}
        if missing:
            notes["bbr"] = f"no reading in the window from {', '.join(missing)}"
        return ClockInputs(
            cfg=self.cfg, traces=traces, rf_off_seen=False, b_rms_t=b, b_unc_t=nom.b_unc_t,
            n_frames=n_frames, b2_ac_t2=nom.b2_ac_t2, ratios=nom.ratios,
            ratio_uncs=nom.ratio_uncs, pressure_pa=nom.pressure_pa,
            provenance={"source": "live", "window": [t - self.window_s, t],
                        "temperature_readings": {ch: len(q) for ch, q in self._temps.items()},
                        "field_frames": n_frames,
                        "nominal_inputs": ["micromotion", "background_gas", "qz_ac"]},
            notes=notes)

    def evaluate(self, t: float) -> Budget:
        """The budget over the window ending at t."""
        return Budget.from_inputs(self.inputs(t))
