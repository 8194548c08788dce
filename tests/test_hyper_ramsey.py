"""Hyper-Ramsey propagator (DOMAIN §5): exact result, symmetry, the fast path and its range."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ionclock.sim_instruments.hyper_ramsey import FastHyperRamsey, excitation_exact

PI_T, T = 0.004, 0.080


def test_on_resonance_both_phases_give_one_half():
    assert excitation_exact(0.0, +1, PI_T, T) == pytest.approx(0.5, abs=1e-12)
    assert excitation_exact(0.0, -1, PI_T, T) == pytest.approx(0.5, abs=1e-12)


def test_fringe_period_is_one_over_t():
    # p+ = 1/2 [1 - sin(2 pi delta T)]: a full fringe later the signal repeats (to the
    # small pulse-envelope change), a quarter fringe gives the extremum.
    quarter = 1.0 / (4 * T)
    assert excitation_exact(quarter, +1, PI_T, T) == pytest.approx(0.0, abs=2e-3)
    assert excitation_exact(-quarter, +1, PI_T, T) == pytest.approx(1.0, abs=2e-3)


@given(st.floats(-20.0, 20.0))
def test_phase_sign_mirrors_detuning(delta):
    # p(delta, +) = p(-delta, -): the error n+ - n- is odd in delta, so the lock point is
    # at delta = 0 exactly when the light shift is compensated.
    assert excitation_exact(delta, +1, PI_T, T) == pytest.approx(
        excitation_exact(-delta, -1, PI_T, T), abs=1e-12)


def test_probabilities_sum_to_one_across_phases():
    for delta in (-3.0, -0.7, 0.2, 1.9):
        s = excitation_exact(delta, +1, PI_T, T) + excitation_exact(delta, -1, PI_T, T)
        assert s == pytest.approx(1.0, abs=5e-3)


def test_fast_path_calibration_and_agreement():
    fast = FastHyperRamsey(PI_T, T)
    assert fast.t_eff == pytest.approx(T, rel=1e-6)   # pulse phases cancel to first order
    for delta in [x * 0.25 for x in range(-19, 20)]:
        for sign in (+1, -1):
            assert fast.valid(delta)
            assert fast.excitation(delta, sign) == pytest.approx(
                excitation_exact(delta, sign, PI_T, T), abs=1e-3)
    assert not fast.valid(6.0)


def test_uncompensated_light_shift_moves_the_lock_point_only_slightly():
    # DOMAIN §5: a residual probe light shift Delta moves the lock point ~4e-6 Hz (Delta/1 Hz)^3.
    def err(delta, ls):
        return (excitation_exact(delta, +1, PI_T, T, delta + ls)
                - excitation_exact(delta, -1, PI_T, T, delta + ls))

    for ls in (1.0, 3.0, 10.0):
        lo, hi = -0.01, 0.01
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if (err(lo, ls) > 0) == (err(mid, ls) > 0):
                lo = mid
            else:
                hi = mid
        shift = 0.5 * (lo + hi)
        assert shift / ls ** 3 == pytest.approx(4.07e-6, rel=0.02)
