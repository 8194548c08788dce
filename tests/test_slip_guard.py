"""The slip guard's per-frame norm (plain floats) against its numpy projector."""

from __future__ import annotations

import random

import numpy as np

from ionclock.servo.slip_guard import _QUAD, _ZEEMAN, SlipGuard


def test_violation_norm_matches_the_projector_on_lock_like_offsets():
    guard = SlipGuard(0.08)
    rng = random.Random(1)
    for i in range(3000):
        # MHz-sized Zeeman offsets that cancel to a violation of mHz to a few Hz
        b, q, c = 37e-6 * (1 + rng.gauss(0, 0.01)), rng.gauss(0, 5), rng.gauss(0, 10)
        noise = (1e-3, 0.5, 3.0)[i % 3]
        o = [z * b + w * q + c + rng.gauss(0, noise) for z, w in zip(_ZEEMAN, _QUAD)]
        v = guard.violation(o)
        assert abs(guard.violation_hz(o) - float(np.sqrt(v @ v))) < 1e-8


def test_a_slipped_line_is_seen_by_the_norm_and_found_by_check():
    guard = SlipGuard(0.08, persist_frames=1)
    o = [z * 37e-6 + 2.0 * w for z, w in zip(_ZEEMAN, _QUAD)]
    assert guard.violation_hz(o) < 1e-6
    o[3] += guard.fringe_hz            # line 3 one fringe up
    assert guard.violation_hz(o) > guard.threshold_hz
    assert list(guard.check(o)) == [0, 0, 0, 1, 0, 0]
    assert guard.quadrupole_hz([w * 2.0 for w in _QUAD]) == 2.0
