"""The physics behind the characterisation measurements on one twin world, and all of its truth.

One handle for what the procedures of issue 15 measure (DOMAIN §3): the motional states
(`sim_instruments.motion`), the micromotion against the compensation voltages
(`sim_instruments.micromotion`, whose optimum follows the world's LN2 refills), the Zeeman
lines with the RF's AC field and a two-clock comparison at other fields
(`sim_instruments.zeeman`). `truth()` gathers what an analysis is graded against.

The clock world applies its own copies of three of these truths through
`ionclock.physics.shifts.true_shifts_hz`: the probe occupations ``TwinParams.nbar`` (equal to
`Motion.nbar_during_probe` with the defaults), alpha_z at its field (equal to the
comparison's), and <B_y^2> = 1e-13 T^2 (equal to the AC-field default). The micromotion
ratios it applies (``TwinParams.micromotion_ratios``, 0) are not this model's live R_i; at the
magic drive both give no shift. Building this draws from none of the world's random streams.
"""

from __future__ import annotations

from ionclock.physics.shifts import MEAN_PROBE_DELAY_S
from ionclock.sim_instruments.micromotion import Micromotion, MicromotionParams
from ionclock.sim_instruments.motion import Motion, MotionParams
from ionclock.sim_instruments.zeeman import (
    AcFieldParams,
    ComparisonParams,
    ZeemanComparison,
    ZeemanLines,
)

#: The seed's g-factor-ratio measurement: 56.363 uT along x (supplement, "Quadratic Zeeman (AC)").
G_RATIO_FIELD = (56.363e-6, "x")


class CharacterisationTwin:
    """Motion, micromotion and Zeeman physics on one world (optional), with their truth."""

    def __init__(self, world=None, seed: int = 0, *, motion: MotionParams | None = None,
                 micromotion: MicromotionParams | None = None,
                 ac_field: AcFieldParams | None = None,
                 comparison: ComparisonParams | None = None):
        self.world = world
        self.motion = Motion(motion)
        self.micromotion = Micromotion(world, micromotion, self.motion, seed)
        self.zeeman = ZeemanLines(ac_field)
        self.comparison = ZeemanComparison(world, comparison)

    def truth(self, g_ratio_field: tuple[float, str] = G_RATIO_FIELD,
              mean_delay_s: float = MEAN_PROBE_DELAY_S) -> dict:
        """Every true value the characterisation analyses estimate, by measurement."""
        b0, axis = g_ratio_field
        return {"motion": self.motion.truth(mean_delay_s),
                "micromotion": self.micromotion.truth(),
                "ac_field": self.zeeman.truth(b0, axis),
                "zeeman": self.comparison.truth()}
