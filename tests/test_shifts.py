"""Shift models (ionclock/physics/shifts.py) against the seed's Table I/II and their validity
rules."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ionclock.physics import shifts
from ionclock.physics.constants import NU0_CA
from ionclock.physics.shifts import SensorTrace

E19 = 1e-19
SEED_ENVELOPE = [SensorTrace("seed_envelope", 78.1, 80.9)]


# --- BBR ---------------------------------------------------------------------------------
def test_bbr_seed_value_and_step_convention():
    r = shifts.bbr(SEED_ENVELOPE)
    assert r.valid and r.reason == ""
    assert round(r.value / E19, 1) == 45.5
    assert r.inputs["temperature_k"] == pytest.approx(79.5)
    assert r.inputs["temperature_unc_k"] == pytest.approx(1.5)   # 1.4 + 0.1 linearly
    assert round(r.uncertainty / E19, 1) == 3.5
    lin = shifts.bbr(SEED_ENVELOPE, convention="linear")
    assert round(lin.uncertainty / E19, 1) == 3.4                 # DOMAIN §2's linear figure
    assert r.value_hz == pytest.approx(r.value * NU0_CA)


def test_bbr_coefficient_implied_by_seed():
    # 45.5e-19 at 79.5 K implies Delta nu(300 K) = 0.3792 Hz.
    implied = 45.5e-19 * NU0_CA / (79.5 / 300) ** 4
    assert implied == pytest.approx(shifts.BBR_COEFF_300K_SEED_HZ, abs=5e-5)


def test_bbr_envelope_spans_all_sensors_and_rf_step():
    traces = [SensorTrace("temp.ln2_bottom", 78.3, 78.6, 10),
              SensorTrace("temp.replica_trap", 80.1, 80.5, 10)]
    r = shifts.bbr(traces, replica_channel="temp.replica_trap", rf_step_k=0.4,
                   rf_off_seen=True)
    assert (r.inputs["envelope_low_k"], r.inputs["envelope_high_k"]) == (78.3, 80.5)
    # Replica trap without RF-off data: its low end moves down by the RF step only if that
    # extends the envelope; here 80.1 - 0.4 = 79.7 > 78.3, so the envelope is unchanged...
    r2 = shifts.bbr(traces, replica_channel="temp.replica_trap", rf_step_k=0.4,
                    rf_off_seen=False)
    assert r2.inputs["envelope_low_k"] == 78.3
    # ...but with the trap as the only sensor it widens the envelope.
    r3 = shifts.bbr(traces[1:], replica_channel="temp.replica_trap", rf_step_k=0.4,
                    rf_off_seen=False)
    assert r3.inputs["envelope_low_k"] == pytest.approx(79.7)


def test_bbr_missing_sensor_is_invalid_with_reason_not_zero():
    r = shifts.bbr(SEED_ENVELOPE, required_channels=["seed_envelope", "temp.replica_trap"])
    assert not r.valid and "temp.replica_trap" in r.reason
    empty = shifts.bbr([])
    assert not empty.valid and "no temperature samples" in empty.reason
    assert math.isnan(empty.value)


def test_bbr_out_of_calibrated_range_is_invalid():
    r = shifts.bbr([SensorTrace("t", 290.0, 296.0)])
    assert not r.valid and "calibrated range" in r.reason
    assert r.value > 0    # the number is still reported, flagged


def test_bbr_coefficient_uncertainty_adds_shared_component():
    r = shifts.bbr(SEED_ENVELOPE, coefficient_rel_unc=0.01155)
    assert r.components["delta_alpha0"] == pytest.approx(r.value * 0.01155)
    assert r.uncertainty > shifts.bbr(SEED_ENVELOPE).uncertainty


# --- secular motion -----------------------------------------------------------------------
def test_time_dilation_per_quantum_matches_table_i():
    td = [shifts.time_dilation_per_quantum(f) / E19 for f in shifts.SECULAR_FREQS_HZ]
    assert [round(x, 1) for x in td] == [3.9, 3.5, 2.9]


def test_secular_seed_value_and_linear_uncertainty():
    r = shifts.secular_motion()
    assert r.valid
    assert round(r.value / E19, 1) == -5.8
    assert round(r.uncertainty / E19, 1) == 0.4
    q = shifts.secular_motion(convention="quadrature")
    assert q.uncertainty < r.uncertainty
    assert q.value == r.value


def test_secular_grows_with_delay_and_flags_hot_ion():
    assert shifts.secular_motion(mean_delay_s=0.2).value < shifts.secular_motion().value
    hot = shifts.secular_motion(n0_ranges=((0, 20), (0, 0.04), (0, 0.11)))
    assert not hot.valid and "nbar" in hot.reason
    bad = shifts.secular_motion(heating_rates=((-1, 0.1), (0.5, 0.1), (1, 0.1)))
    assert not bad.valid and "unphysical" in bad.reason
    with pytest.raises(ValueError, match="convention"):
        shifts.secular_motion(convention="nope")


# --- quadratic Zeeman ------------------------------------------------------------------------
def test_quadratic_zeeman_dc_seed():
    r = shifts.quadratic_zeeman_dc(37.197e-6, 1e-9)
    assert round(r.value / E19, 1) == 482.9
    assert r.components["alpha_z"] / E19 == pytest.approx(1.35, abs=0.005)
    assert round(r.uncertainty / E19, 1) == 1.4                       # seed_linear
    q = shifts.quadratic_zeeman_dc(37.197e-6, 1e-9, convention="quadrature")
    assert round(q.uncertainty / E19, 2) == 1.35


@pytest.mark.parametrize("b, n, words", [(500e-6, None, "outside"), (37e-6, 0, "no locked"),
                                         (math.nan, None, "non-finite")])
def test_quadratic_zeeman_dc_invalid(b, n, words):
    r = shifts.quadratic_zeeman_dc(b, 1e-9, n_frames=n)
    assert not r.valid and words in r.reason


def test_quadratic_zeeman_ac_bound_and_corrected():
    bound = shifts.quadratic_zeeman_ac(1e-13, 1e-13)
    assert bound.value == 0.0
    assert bound.uncertainty / E19 == pytest.approx(0.0349, abs=1e-3)
    assert abs(bound.uncertainty / E19 - 0.04) <= 0.1
    corr = shifts.quadratic_zeeman_ac(1e-13, 1e-13, convention="corrected")
    assert corr.value / E19 == pytest.approx(0.0349, abs=1e-3)
    assert "alpha_z" in corr.components
    assert not shifts.quadratic_zeeman_ac(-1e-13, 0).valid
    assert not shifts.quadratic_zeeman_ac(1e-6, 0).valid


# --- micromotion ------------------------------------------------------------------------------
def test_micromotion_zero_at_magic_and_seed_uncertainty():
    r = shifts.micromotion([0.033] * 3)
    assert r.value == 0.0 and not math.copysign(1, r.value) < 0
    assert round(r.uncertainty / E19, 1) == 1.4


def test_micromotion_sign_off_magic():
    # Below the magic frequency the Stark term loses: bracket > 0 -> negative shift.
    below = shifts.micromotion([0.05] * 3, rf_hz=20e6)
    above = shifts.micromotion([0.05] * 3, rf_hz=30e6)
    assert below.value < 0 < above.value
    # Pure Doppler limit (bracket -> 1): -(Omega/2 pi nu0)^2 sum R^2.
    k = (20e6 / NU0_CA) ** 2 * (1 - (20e6 / 24.801e6) ** 2) * 3 * 0.05**2
    assert below.value == pytest.approx(-k)


def test_micromotion_ratio_uncertainty_matters_off_magic_only():
    at = shifts.micromotion([0.05] * 3, [0.01] * 3)
    off = shifts.micromotion([0.05] * 3, [0.01] * 3, rf_hz=20e6)
    assert at.components["r1"] == 0.0
    assert off.components["r1"] != 0.0


@pytest.mark.parametrize("ratios, words", [([0.5, 0, 0], "exceeds"), ([0.1, 0.1], "3 beams"),
                                           ([math.nan, 0, 0], "finite")])
def test_micromotion_invalid(ratios, words):
    r = shifts.micromotion(ratios)
    assert not r.valid and words in r.reason


# --- background gas ---------------------------------------------------------------------------
def test_background_gas_seed_bound_and_pressure_scaling():
    assert shifts.h2_to_he_shift_ratio() == pytest.approx(1.75, abs=0.01)
    assert shifts.background_gas_shift_hz(3e-9) == pytest.approx(74e-6, abs=0.5e-6)
    r = shifts.background_gas(3e-9)
    assert r.value == 0.0 and round(r.uncertainty / E19, 1) == 1.8
    assert shifts.background_gas(6e-9).uncertainty == pytest.approx(2 * r.uncertainty)


def test_background_gas_invalid_outside_model():
    assert "thermal average" in shifts.background_gas(3e-9, gas_temperature_k=295).reason
    assert "single-collision" in shifts.background_gas(1e-3).reason
    assert not shifts.background_gas(math.nan).valid


def test_bound_rows():
    r = shifts.bound_row("aom", "AOM phase chirp", 1e-19)
    assert (r.value, r.uncertainty, r.valid) == (0.0, 1e-19, True)
    assert not shifts.bound_row("x", "X", -1.0).valid


# --- the twin's truth ---------------------------------------------------------------------------
def test_true_shifts_match_models_at_nominal_conditions():
    true = shifts.true_shifts_hz(shifts.TrueConditions(temperature_k=79.5))
    assert true["bbr"] == pytest.approx(shifts.bbr(SEED_ENVELOPE).value_hz)
    assert true["qz_dc"] == pytest.approx(shifts.quadratic_zeeman_dc(37.197e-6, 0).value_hz)
    nbar = shifts.secular_motion().inputs["nbar"]
    t2 = shifts.true_shifts_hz(shifts.TrueConditions(nbar=tuple(nbar)))
    assert t2["secular"] == pytest.approx(shifts.secular_motion().value_hz)
    assert true["emm"] == 0.0
    off = shifts.TrueConditions(micromotion_ratios=(0.05, 0.05, 0.05), rf_hz=20e6)
    assert shifts.true_shifts_hz(off)["emm"] == pytest.approx(
        shifts.micromotion([0.05] * 3, rf_hz=20e6).value_hz)
    assert shifts.true_shift_hz(shifts.TrueConditions()) == pytest.approx(
        sum(shifts.true_shifts_hz(shifts.TrueConditions()).values()))


def test_true_shift_responds_to_temperature_and_field():
    base = shifts.true_shift_hz(shifts.TrueConditions())
    assert shifts.true_shift_hz(shifts.TrueConditions(temperature_k=82.0)) > base
    assert shifts.true_shift_hz(shifts.TrueConditions(b_t=40e-6)) > base


# --- property: never a silent zero ----------------------------------------------------------------
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.floats(min_value=-1e3, max_value=1e3))


@settings(max_examples=200, deadline=None)
@given(lo=floats, hi=floats, b=floats, p=floats, r=st.lists(floats, min_size=0, max_size=4))
def test_rows_are_valid_and_finite_or_invalid_with_reason(lo, hi, b, p, r):
    rows = [shifts.bbr([SensorTrace("t", lo, hi)]), shifts.quadratic_zeeman_dc(b, 1e-9),
            shifts.background_gas(p), shifts.micromotion(r), shifts.quadratic_zeeman_ac(b, 0.0)]
    for row in rows:
        if row.valid:
            assert math.isfinite(row.value) and math.isfinite(row.uncertainty)
            assert row.uncertainty >= 0 and row.reason == ""
        else:
            assert row.reason
