"""The ion trap's vacuum chamber as a pressure in SimPy time (the background-gas row's input).

DOMAIN §1–§2: the seed clock runs at 3 nPa (≈ 2.3e-11 Torr, 3e-11 mbar), and the
background-gas shift's bound scales with that pressure. The chamber pressure here is that
mean with a slow log-normal wander (pumping speed, outgassing and the cold surfaces follow
the lab and the LN2 cycle) and an optional leak factor for fault injection:

    p(t) = p0 · exp(w·u(t) − w²/2) · leak,      u an Ornstein–Uhlenbeck process, unit rms

``u`` lives on a fixed time grid (`grid_s`), generated in order from its own seeded stream
(``numpy.random.default_rng([seed, 21])``) in fixed-size blocks and linearly interpolated,
so the pressure a run sees does not depend on when or how often a gauge asks, and no other
random stream of the world is touched. ``exp(w·u − w²/2)`` has mean 1: the chamber's mean
pressure is `pressure_pa`.

The clock's world offers one `Vacuum` as ``world.vacuum`` (from ``TwinParams.pressure_pa``
and ``pressure_wander``); the gauge twins read it. Building it draws from no stream but its
own, so a run without a gauge is what it was before the chamber existed. The true
background-gas shift the world applies to the ion stays at the nominal ``pressure_pa``
(ionclock.physics.shifts.true_shifts_hz): following the wander there would change every existing
run's numbers; the budget's row is a bound taken at the window's worst reading anyway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Pascal per unit of the pressure units gauge controllers speak.
PA_PER_TORR = 101325.0 / 760.0
PA_PER_MBAR = 100.0


@dataclass
class VacuumParams:
    """Parameters of the chamber pressure (SI)."""

    pressure_pa: float = 3e-9          # mean chamber pressure (DOMAIN §1: 3 nPa)
    wander: float = 0.1                # rms of the slow log-pressure wander (fraction)
    tau_s: float = 6 * 3600.0          # its correlation time
    grid_s: float = 60.0               # wander grid step

    def __post_init__(self) -> None:
        if not (math.isfinite(self.pressure_pa) and self.pressure_pa >= 0):
            raise ValueError(f"pressure_pa must be a pressure in Pa (>= 0), "
                             f"got {self.pressure_pa!r}")
        if not (math.isfinite(self.wander) and 0 <= self.wander <= 2):
            raise ValueError(f"wander must be an rms fraction in [0, 2], got {self.wander!r}")
        for name in ("tau_s", "grid_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive (s), got {value!r}")


class Vacuum:
    """The chamber pressure on a SimPy clock (see the module docstring for the model)."""

    BLOCK = 1024

    def __init__(self, env=None, params: VacuumParams | None = None, seed: int = 0):
        self.env = env
        self.p = params or VacuumParams()
        self._rng = np.random.default_rng([int(seed), 21])
        self._u = [float(self._rng.standard_normal())]
        self.leak_factor = 1.0

    # --- fault injection -------------------------------------------------------------------
    def leak(self, factor: float) -> None:
        """From now on the pressure is `factor` times what it would be (1: the leak is fixed).

        A leak, a burst of outgassing or a pump failure; a gauge's protect setpoint may then
        switch it off (the MKS 937B twin's cold cathode).
        """
        factor = float(factor)
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"leak factor must be positive, got {factor!r}")
        self.leak_factor = factor

    # --- the pressure ----------------------------------------------------------------------
    def _extend_block(self) -> None:
        # Fixed-size blocks: the stream is consumed the same way whatever the query times.
        p = self.p
        a = math.exp(-p.grid_s / p.tau_s)
        s = math.sqrt(1.0 - a * a)
        steps = self._rng.standard_normal(self.BLOCK)
        x = self._u[-1]
        out = []
        for w in steps.tolist():
            x = a * x + s * w
            out.append(x)
        self._u.extend(out)

    def _wander(self, t: float) -> float:
        x = max(t, 0.0) / self.p.grid_s
        i = int(x)
        while len(self._u) <= i + 1:
            self._extend_block()
        f = x - i
        return self._u[i] * (1.0 - f) + self._u[i + 1] * f

    def pressure_pa(self, t: float | None = None) -> float:
        """Return the chamber pressure in Pa at time `t` (default: ``env.now``; 0 without env)."""
        if t is None:
            t = self.env.now if self.env is not None else 0.0
        w = self.p.wander
        return self.p.pressure_pa * math.exp(w * self._wander(t) - 0.5 * w * w) * self.leak_factor
