"""Twin of the compensation electrodes' supply: the E36312A twin with electrodes for a load.

The same unit as the coil supply's twin (`SimKeysightE36312A`: commands, error queue,
ratings, sources in sim_instruments/coil_supplies.py), with an electrode on each output: an
open circuit (1 GOhm of leakage), so an output that is on sits at its voltage setpoint
(constant voltage; the E36300 guide: the unit regulates whichever of voltage and current
limits first) and ``MEAS:VOLT?`` reads it; off, the output is at 0 V. Every change of an
output's voltage calls ``world.compensation_changed(channel, volts)`` (`ClockWorld`: electrode
j's voltage in the micromotion physics, decision 0804), never the coil hook. No noise on the
readback: the twin draws nothing.
"""

from __future__ import annotations

from ionclock.sim_instruments.coil_supplies import SimKeysightE36312A

LEAK_OHM = 1e9


class SimCompensationE36312A(SimKeysightE36312A):
    """E36312A twin driving the compensation electrodes of `world` (module docstring)."""

    name = "sim Keysight E36312A (compensation)"

    def __init__(self, world=None, seed: int | None = 0):
        self._world_hook = getattr(world, "compensation_changed", None)
        super().__init__(None, seed, coil_ohm=LEAK_OHM, noise_a=0.0)
        self.world = world
        self._env = getattr(world, "env", None)
        self._volts: dict[int, float] = {}
        self._hook = self._electrode_changed

    def output_voltage(self, ch: int) -> float:
        """Electrode `ch`'s voltage (V): the setpoint while the output is on, else 0."""
        return self.effective_current(ch) * self.coil_ohm if self.output[ch] else 0.0

    def _electrode_changed(self, ch: int, current_a: float) -> None:
        volts = self.output_voltage(ch)
        if self._world_hook is not None and volts != self._volts.get(ch):
            self._volts[ch] = volts
            self._world_hook(ch, volts)
