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

import functools
import math

import numpy as np

from ionclock.physics.constants import ZEEMAN_LINES


def _orthonormal(*vectors) -> np.ndarray:
    """6 x len(vectors): an orthonormal basis Q of their span (columns)."""
    q, _ = np.linalg.qr(np.array(vectors, dtype=float).T)
    return q


def _projector(*vectors) -> np.ndarray:
    """I - Q Q^T: the projector onto the complement of the vectors' span."""
    q = _orthonormal(*vectors)
    return np.eye(6) - q @ q.T


_ZEEMAN = [line.zeeman_hz_per_t for line in ZEEMAN_LINES]
_QUAD = [line.quadrupole_weight for line in ZEEMAN_LINES]
_QQ = sum(w * w for w in _QUAD)


@functools.lru_cache(maxsize=4)
def _patterns(fringes: int) -> np.ndarray:
    """Every slip pattern in {-fringes..fringes}^6 except all zeros (int8 rows; read-only)."""
    span = np.arange(-fringes, fringes + 1, dtype=np.int8)
    grid = np.stack(np.meshgrid(*[span] * 6, indexing="ij"), axis=-1).reshape(-1, 6)
    grid = grid[np.any(grid != 0, axis=1)]
    grid.setflags(write=False)
    return grid


def violation_projector() -> np.ndarray:
    """6x6 projector onto the complement of span{common, Zeeman, quadrupole}."""
    return _projector([1.0] * 6, _ZEEMAN, _QUAD)


class SlipGuard:
    """Detects fringe slips from the per-line offsets; pure computation, no I/O."""

    def __init__(self, ramsey_time_s: float, threshold_hz: float = 2.0,
                 persist_frames: int = 8, max_fringes: int = 2, anchored_fringes: int = 3):
        self.fringe_hz = 1.0 / ramsey_time_s
        self.threshold_hz = threshold_hz
        self.persist_frames = persist_frames
        self.max_fringes = max_fringes
        self.proj = violation_projector()
        # the same projector's Q (I - Q Q^T) as plain tuples, columnwise: the per-frame norm
        # in Python floats (numpy's per-call overhead is most of a 6x6 product)
        self._q_cols = tuple(tuple(float(x) for x in col)
                             for col in _orthonormal([1.0] * 6, _ZEEMAN, _QUAD).T)
        self.proj_z = _projector(_ZEEMAN)           # keeps common and quadrupole too
        self.quad = np.array(_QUAD)
        patterns = _patterns(max_fringes).astype(float)
        self.patterns = patterns
        self.signatures = patterns @ self.proj * self.fringe_hz     # rows: P_v n / T
        # anchored search (common and quadrupole known from before the violation): only B
        # is free, so wider slips can be told apart
        self.patterns_wide = _patterns(anchored_fringes)
        self.signatures_z = (self.patterns_wide @ self.proj_z * self.fringe_hz).astype(
            np.float32)
        self.penalty_wide = (1e-3 * self.threshold_hz
                             * np.abs(self.patterns_wide).sum(axis=1)).astype(np.float32)
        # the change of B each wide pattern implies (T per unit pattern, times fringes)
        z = np.array(_ZEEMAN)
        self.b_shift_t = (self.patterns_wide @ z) / (z @ z) * self.fringe_hz
        # prefer the fewest slips among patterns that explain the violation equally well
        self.penalty = 1e-3 * self.threshold_hz * np.abs(patterns).sum(axis=1)
        self._over = 0
        self.last_violation_hz = 0.0

    def violation(self, offsets_hz) -> np.ndarray:
        """The part of the six offsets (Hz) that no field or quadrupole can explain."""
        return self.proj @ np.asarray(offsets_hz, dtype=float)

    def violation_hz(self, offsets_hz) -> float:
        """|violation(offsets_hz)| (Hz), in plain floats: o - Q (Q^T o)."""
        o = offsets_hz
        cs = [sum(q * x for q, x in zip(col, o)) for col in self._q_cols]
        (q0, q1, q2), (c0, c1, c2) = self._q_cols, cs
        return math.sqrt(sum((x - a * c0 - b * c1 - d * c2) ** 2
                             for x, a, b, d in zip(o, q0, q1, q2)))

    def check(self, offsets_hz, common_hz: float | None = None,
              common_ref_hz: float | None = None,
              quad_ref_hz: float | None = None, b_jump_t: float = 0.0) -> np.ndarray | None:
        """Slip pattern n (fringes per line) to remove, or None.

        The splittings cannot see a slip common to all six lines. Given the six-line mean
        expected now from the laser's drift model (`common_ref_hz`; the laser is continuous
        across a field step), the servo's `common_hz`, and the quadrupole amplitude from
        before the violation (`quad_ref_hz`; a field step does not change it), the search
        requires the corrected lines to be that mean plus that quadrupole pattern plus a
        Zeeman pattern: only B is free, which resolves the common part and lets slips of up
        to `anchored_fringes` be told apart.

        One ambiguity is left: lines off by (2, 4, 5) fringes per pair are, to 0.06 Hz, a
        field error of 2.23 nT (the Zeeman coefficients stand 1 : 2.003 : 2.501). Among the
        patterns that explain the violation, the one implying the smallest change of B from
        before the violation wins (`b_jump_t`: the servo's B now minus B then): steps of up
        to half that, 1.1 nT, are resolved.
        """
        size = self.violation_hz(offsets_hz)
        self.last_violation_hz = size
        if size < self.threshold_hz:
            self._over = 0
            return None
        v = self.violation(offsets_hz)
        self._over += 1
        if self._over < self.persist_frames:
            return None
        if None not in (common_ref_hz, common_hz, quad_ref_hz):
            lines = (np.asarray(offsets_hz, dtype=float) + (common_hz - common_ref_hz)
                     - quad_ref_hz * self.quad)
            full = (self.proj_z @ lines).astype(np.float32)
            left = np.sqrt(((full - self.signatures_z) ** 2).sum(axis=1)) + self.penalty_wide
            tolerance = 0.75 * self.threshold_hz   # the references carry the laser's noise
            fits = np.flatnonzero(left < tolerance)
            if fits.size == 0:
                return None
            jump = np.abs(b_jump_t - self.b_shift_t[fits])
            # smallest implied field change first; among (near) equals, the best residual
            best = int(fits[np.argmin(jump + 1e-12 * left[fits])])
            self._over = 0
            return self.patterns_wide[best].astype(int)
        else:
            left = np.sqrt(((v - self.signatures) ** 2).sum(axis=1)) + self.penalty
            patterns = self.patterns
            tolerance = 0.5 * self.threshold_hz
        best = int(np.argmin(left))
        if left[best] < tolerance:
            self._over = 0
            return patterns[best].astype(int)
        return None

    def quadrupole_hz(self, offsets_hz) -> float:
        """The quadrupole amplitude Q0 held in the per-line offsets (Hz)."""
        # once per frame on six numbers: plain floats beat numpy's per-call overhead
        return sum(w * o for w, o in zip(_QUAD, offsets_hz)) / _QQ
