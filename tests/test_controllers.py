"""PIController: gains, clamps, anti-windup, reset, bumpless re-engage, drift integrator."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ionclock.servo.controllers import PIController


def test_p_and_i_terms():
    c = PIController(2.0, 0.5)
    assert c.update(1.0, 1.0) == pytest.approx(2.0 + 0.5)
    assert c.update(1.0, 2.0) == pytest.approx(2.0 + 0.5 + 1.0)
    assert c.integral == pytest.approx(1.5)


def test_output_limits_and_no_windup():
    c = PIController(0.0, 1.0, output_limits=(-1.0, 1.0))
    for _ in range(100):
        out = c.update(1.0, 1.0)
    assert out == 1.0 and c.integral == 1.0
    # recovers at once when the error changes sign (no wound-up integral to unwind)
    assert c.update(-0.5, 1.0) == pytest.approx(0.5)


def test_conditional_integration_with_proportional_saturation():
    c = PIController(10.0, 1.0, output_limits=(-1.0, 1.0), integral_limits=(-5.0, 5.0))
    for _ in range(10):
        assert c.update(1.0, 1.0) == 1.0
    assert c.integral == pytest.approx(0.0)  # p alone saturates: the integral did not run


def test_reset_presets_the_output():
    c = PIController(1.0, 1.0, output_limits=(-10, 10))
    c.update(3.0, 1.0)
    c.reset(2.0)
    assert c.integral == 2.0 and c.last_output == 2.0 and c.drift == 0.0
    assert c.update(0.0, 1.0) == pytest.approx(2.0)


def test_hold_freezes_and_engage_is_bumpless():
    c = PIController(5.0, 1.0)
    c.update(1.0, 1.0)            # 5 + 1 = 6
    c.hold()
    assert c.update(100.0, 1.0) == pytest.approx(6.0)
    assert c.integral == pytest.approx(1.0)
    c.engage(3.0)                 # the actuator was moved to 3 while held
    out = c.update(2.0, 1.0)      # no 5*2 proportional kick: only the integral step
    assert out == pytest.approx(3.0 + 1.0 * 2.0 * 1.0)


def test_track_back_calculates_the_integral():
    c = PIController(1.0, 1.0)
    c.update(2.0, 1.0)            # asks 4
    c.track(3.0)                  # actuator could only do 3
    assert c.last_output == 3.0
    assert c.update(2.0, 1.0) == pytest.approx(3.0 + 2.0)


def test_drift_integrator_removes_ramp_lag():
    # plant: y = u, reference ramps at 1 unit/s; a PI lags, PI + drift converges to zero error
    def run(ki2):
        c = PIController(0.0, 0.3, ki2)
        u = 0.0
        for k in range(2000):
            err = float(k) - u
            u = c.update(err, 1.0)
        return abs(2000 - u)  # u_k is applied while the reference is k + 1
    assert run(0.0) > 2.0
    assert run(0.02) < 1e-3


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_bad_inputs(bad):
    c = PIController(1.0, 1.0)
    with pytest.raises(ValueError):
        c.update(bad, 1.0)
    with pytest.raises(ValueError):
        c.update(1.0, bad)
    with pytest.raises(ValueError):
        c.update(1.0, 0.0)
    with pytest.raises(ValueError):
        PIController(bad, 1.0)
    with pytest.raises(ValueError):
        PIController(1.0, 1.0, output_limits=(1.0, -1.0))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(1e-3, 1e3)), max_size=50),
       st.floats(-10, 0), st.floats(0, 10))
def test_output_always_within_limits(steps, lo, hi):
    c = PIController(3.0, 2.0, 0.5, output_limits=(lo, hi))
    for err, dt in steps:
        out = c.update(err, dt)
        assert lo <= out <= hi and math.isfinite(out)
        assert lo <= c.integral <= hi
