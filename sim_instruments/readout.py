"""The deterministic twin's state readout: expectation values instead of random outcomes.

`ionclock sim --deterministic` replaces each probe's Bernoulli outcome and Poisson counts by
the exact dark probability, so that servo biases far below the projection noise can be
measured (issue 3). It implements the servo's readout role (`read() -> (dark, counts)`) and
is attached by the registry only; the servo cannot tell it from `ThresholdReadout`.
"""

from __future__ import annotations


class ExpectationReadout:
    """Dark probability straight from the world; `counts` is reported as -1."""

    def __init__(self, world):
        self.world = world

    def read(self) -> tuple[float, int]:
        """(expected dark outcome in [0, 1], -1)."""
        return self.world.expected_dark(), -1
