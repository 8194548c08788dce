"""State readout: from a detection to the servo's outcome (dark = the ion was in D5/2).

The servo asks its readout for ``read() -> (dark, counts)``; `dark` is 1.0 or 0.0 for a
thresholded single shot, or an expectation value in [0, 1] for the deterministic twin.
"""

from __future__ import annotations


class ThresholdReadout:
    """Single-shot readout from photon counts: dark when counts < threshold.

    counter: any `ionclock.drivers.photon_counter.PhotonCounter` (SR400, FPGA sequencer).
    threshold: counts at and above which the ion is bright (in S1/2). With ~40 bright and
        ~1 dark counts in 2 ms, 8 keeps both misclassification rates below 1e-4.
    """

    def __init__(self, counter, threshold: int = 8):
        if threshold < 1:
            raise ValueError(f"threshold must be >= 1 count, got {threshold}")
        self.counter = counter
        self.threshold = threshold
        self._count = counter.count

    def use_direct(self, direct: bool) -> None:
        """Count through the counter's direct handle (hot path) or through the counter itself.

        See `ionclock.apparatus.resilience`'s ``direct()``: a wrapped counter hands out the driver
        behind it; an unwrapped one is used as it is.
        """
        get = getattr(self.counter, "direct", None) if direct else None
        self._count = (get() if get is not None else self.counter).count

    def read(self) -> tuple[float, int]:
        """(1.0 if dark else 0.0, counts) for the detection gate just finished."""
        counts = self._count()
        return (1.0 if counts < self.threshold else 0.0), counts
