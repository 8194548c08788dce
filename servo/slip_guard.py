"""Fringe-slip guard: finds lines locked a whole Ramsey fringe off (DOMAIN §5).

A hyper-Ramsey error signal repeats every 1/T (12.5 Hz at T = 80 ms), so a line kicked by
more than half a fringe (a 0.22 nT field excursion moves the m = 5/2 lines that far) locks
onto a neighbouring fringe and biases the six-line mean by ~5e-15. The six per-line offsets
have only three physical degrees of freedom besides the common frequency: the first-order
Zeeman pattern z_k (B), and the quadrupole/tensor pattern w_k (Q0), whose weights
+0.8 : +0.2 : -1.0 are fixed by [J(J+1) - 3 m_D^2]. Equivalently, the three splittings stand
in fixed ratios. Whatever the offsets hold outside span{1, z, w} (a 3-dimensional
"violation" subspace) is unphysical; a slip of line k by n fringes adds n/T e_k there with a
pattern distinct for every k.

`SlipGuard.check` projects the offsets onto that subspace every frame. When the violation
stays above `threshold_hz` for `persist_frames` frames (a settled lock, not a transient), it
searches every slip pattern n in {-2..2}^6 (`max_fringes`) for the one that explains the
violation, and returns it if what is left is below half the threshold.
"""

from __future__ import annotations

import itertools

import numpy as np

from ionclock.physics import ZEEMAN_LINES


def violation_projector() -> np.ndarray:
    """6x6 projector onto the complement of span{common, Zeeman, quadrupole}."""
    basis = np.array([[1.0] * 6,
                      [line.zeeman_hz_per_t for line in ZEEMAN_LINES],
                      [line.quadrupole_weight for line in ZEEMAN_LINES]]).T
    q, _ = np.linalg.qr(basis)
    return np.eye(6) - q @ q.T


class SlipGuard:
    """Detects fringe slips from the per-line offsets; pure computation, no I/O."""

    def __init__(self, ramsey_time_s: float, threshold_hz: float = 2.0,
                 persist_frames: int = 8, max_fringes: int = 2):
        self.fringe_hz = 1.0 / ramsey_time_s
        self.threshold_hz = threshold_hz
        self.persist_frames = persist_frames
        self.max_fringes = max_fringes
        self.proj = violation_projector()
        span = range(-max_fringes, max_fringes + 1)
        patterns = np.array([n for n in itertools.product(span, repeat=6) if any(n)],
                            dtype=float)
        self.patterns = patterns
        self.signatures = patterns @ self.proj * self.fringe_hz     # rows: P_v n / T
        # prefer the fewest slips among patterns that explain the violation equally well
        self.penalty = 1e-3 * self.threshold_hz * np.abs(patterns).sum(axis=1)
        self._over = 0
        self.last_violation_hz = 0.0

    def violation(self, offsets_hz) -> np.ndarray:
        """The part of the six offsets (Hz) that no field or quadrupole can explain."""
        return self.proj @ np.asarray(offsets_hz, dtype=float)

    def check(self, offsets_hz) -> np.ndarray | None:
        """Slip pattern n (fringes per line) to remove, or None."""
        v = self.violation(offsets_hz)
        size = float(np.sqrt(v @ v))
        self.last_violation_hz = size
        if size < self.threshold_hz:
            self._over = 0
            return None
        self._over += 1
        if self._over < self.persist_frames:
            return None
        left = np.sqrt(((v - self.signatures) ** 2).sum(axis=1)) + self.penalty
        best = int(np.argmin(left))
        if left[best] < 0.5 * self.threshold_hz:
            self._over = 0
            return self.patterns[best].astype(int)
        return None
