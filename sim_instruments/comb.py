"""The twin's frequency reference: where the clock laser is, from the world's truth.

A lab measures the locked laser against a frequency comb referenced to a maser; the twin
answers from its own cavity model (a perfect comb). It implements
`ionclock.servo.clock_output.FrequencyReference` and is attached by the registry only.
"""

from __future__ import annotations


class SimComb:
    """Perfect frequency reference on the simulated world."""

    def __init__(self, world):
        self.world = world
        # laser_offset_hz() -> laser frequency with the AOM at its centre, minus nu0 (Hz).
        # Read once per clock cycle, so it is the world's own bound method: no extra call.
        self.laser_offset_hz = world.cavity_offset_hz
