"""PT100 chain: IEC 60751 Callendar–Van Dusen both ways, per-sensor calibration, envelope."""

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ionclock.physics.rtd import (
    T_MAX,
    T_MIN,
    Missing,
    SensorCalibration,
    TemperatureReading,
    cvd_resistance,
    cvd_sensitivity,
    cvd_temperature,
    is_missing,
    missing_reason,
    temperature_envelope,
)


@pytest.mark.parametrize("celsius, ohms", [
    # IEC 60751 table values (Pt100, alpha = 0.00385).
    (-200.0, 18.52), (-100.0, 60.26), (0.0, 100.00), (100.0, 138.51), (500.0, 280.98),
])
def test_cvd_matches_iec_table(celsius, ohms):
    assert cvd_resistance(celsius + 273.15) == pytest.approx(ohms, abs=0.005)
    assert cvd_temperature(ohms) == pytest.approx(celsius + 273.15, abs=0.02)


def test_clock_range_values():
    # 80 K: about 21.47 Ω and 0.43 Ω/K; 0.1 K is about 43 mΩ.
    assert cvd_resistance(80.0) == pytest.approx(21.4731, abs=1e-4)
    assert cvd_sensitivity(80.0) == pytest.approx(0.4299, abs=1e-4)
    assert cvd_temperature(17.156394113) == pytest.approx(70.0, abs=1e-8)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=T_MIN, max_value=T_MAX))
def test_cvd_round_trip(t):
    assert cvd_temperature(cvd_resistance(t)) == pytest.approx(t, abs=1e-7)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=T_MIN, max_value=T_MAX - 1e-3), st.floats(min_value=1e-4, max_value=1))
def test_cvd_monotonic(t, dt):
    assert cvd_resistance(min(t + dt, T_MAX)) > cvd_resistance(t)


@pytest.mark.parametrize("t", [T_MIN - 0.01, 0.0, -5.0, T_MAX + 1])
def test_temperature_out_of_range_is_value_error(t):
    with pytest.raises(ValueError, match="outside the CVD range"):
        cvd_resistance(t)


@pytest.mark.parametrize("r", [0.0, -1.0, 5.0, 400.0, math.inf])
def test_resistance_out_of_range_is_value_error(r):
    with pytest.raises(ValueError):
        cvd_temperature(r)


def test_missing_carries_its_reason_and_is_never_zero():
    m = Missing("overload")
    assert math.isnan(m) and m != 0 and is_missing(m) and missing_reason(m) == "overload"
    assert is_missing(None) and missing_reason(None) == "no value"
    assert not is_missing(79.5) and missing_reason(79.5) is None
    assert pickle.loads(pickle.dumps(m)).reason == "overload"
    assert cvd_temperature(m).reason == "overload"
    assert cvd_resistance(None).reason == "no value"


def test_calibration_offset_and_polynomial():
    cal = SensorCalibration("endcap_1", (0.05, 0.01), uncertainty=0.1)
    rd = cal.apply(81.0)
    assert rd.value == pytest.approx(81.0 + 0.05 + 0.01)
    assert rd.uncertainty == pytest.approx(0.1) and rd.in_calibrated_range
    rd = cal.apply(80.0, u_reading=0.1)
    assert rd.uncertainty == pytest.approx(math.hypot(0.1, 0.1))


def test_calibration_outside_range_is_flagged_and_less_certain():
    cal = SensorCalibration("trap", (0.0,), uncertainty=0.1, extrapolation_per_kelvin=0.05)
    rd = cal.apply(90.0)
    assert not rd.in_calibrated_range
    assert rd.uncertainty == pytest.approx(0.1 + 0.05 * 5)


def test_from_resistance_removes_a_sensor_error():
    # A sensor that reads 0.07 K high: its calibration (offset -0.07 K) gives the truth back.
    truth = 79.3
    r = cvd_resistance(truth + 0.07)
    cal = SensorCalibration("s", (-0.07,))
    rd = cal.from_resistance(r, u_resistance=0.0043)
    assert rd.value == pytest.approx(truth, abs=1e-9)
    assert rd.uncertainty == pytest.approx(math.hypot(0.1, 0.0043 / cvd_sensitivity(79.37)),
                                           rel=1e-3)


def test_missing_inputs_stay_missing_with_reason():
    cal = SensorCalibration("s")
    for rd in (cal.apply(Missing("open sensor")), cal.from_resistance(Missing("open sensor"))):
        assert rd.missing and rd.reason == "open sensor"
    assert cal.from_resistance(3.0).missing  # below the CVD range: reason, not a number
    assert "outside the CVD range" in cal.from_resistance(3.0).reason
    assert cal.apply(0.0).missing  # a zero is never a temperature


def test_calibration_fit_recovers_a_linear_error():
    cvd = [75.0, 77.0, 79.0, 81.0, 83.0, 85.0]
    ref = [t + 0.04 + 0.02 * (t - 80.0) for t in cvd]
    cal = SensorCalibration.fit("s", cvd, ref, degree=1, reference_uncertainty=0.05)
    assert cal.coefficients == pytest.approx((0.04, 0.02), abs=1e-9)
    assert cal.uncertainty == pytest.approx(0.05, abs=1e-6)
    assert cal.valid_range == (75.0, 85.0)
    with pytest.raises(ValueError, match="at least"):
        SensorCalibration.fit("s", [80.0, 81.0], [80.0, 81.0], degree=1)


@pytest.mark.parametrize("kwargs", [
    {"coefficients": ()}, {"coefficients": (math.nan,)}, {"uncertainty": -0.1},
    {"valid_range": (85.0, 75.0)}, {"r0": 1000.0}, {"extrapolation_per_kelvin": -1.0},
])
def test_bad_calibration_is_value_error(kwargs):
    with pytest.raises(ValueError):
        SensorCalibration("bad", **kwargs)


def test_envelope_reproduces_the_seed_bbr_temperature():
    # Sensors spanning 78.1–80.9 K with 0.1 K calibration: 79.5 ± 1.4 -> ± 1.5 K (seed).
    cal = SensorCalibration("x")
    readings = [TemperatureReading(v, 0.1, f"s{i}") for i, v in
                enumerate([78.1, 79.0, 79.4, 80.2, 80.9])]
    readings.append(cal.apply(Missing("open sensor")))
    env = temperature_envelope(readings)
    assert env.midpoint == pytest.approx(79.5)
    assert env.half_width == pytest.approx(1.4)
    assert env.uncertainty == pytest.approx(1.5)
    assert list(env.missing.values()) == ["open sensor"]
    empty = temperature_envelope([])
    assert is_missing(empty.midpoint)
