"""The run summary says what was measured, on which time base, and never prints 'nan'."""

from __future__ import annotations

import math

from ionclock.apparatus.clock_run import dump_json, format_summary


def _summary(**kw):
    s = {"cycles": 3429, "frames": 277, "locked_frames": 250, "locked_fraction": 0.93,
         "offset_hz": math.nan, "offset_sigma_hz": math.nan, "fractional_offset": math.nan,
         "b_tesla": 37.197e-6, "b_true_tesla": math.nan, "last_locked_nu_hz": -12.25,
         "final_drift_hz_s": 0.05, "time_base": "real", "simulated_s": 360.0,
         "wall_s": 360.2, "cycles_per_second": 9.52,
         "events": {"locked": 1, "instrument_offline": 1, "instrument_online": 1},
         "store": "runs/lab/ionclock.sqlite"}
    s.update(kw)
    return s


def test_a_lab_summary_reports_the_measured_values_in_real_time_without_nan():
    text = format_summary(_summary())
    assert "nan" not in text.lower()
    assert "h real time" in text and "simulated" not in text
    assert "B from splittings 37.197000 uT" in text and "true" not in text
    assert "laser steering    -12.250 Hz" in text and "+0.0500 Hz/s" in text
    assert "instrument_offline 1" in text
    assert "offset" not in text                      # no truth: no offset from the line
    assert '"b_true_tesla": null' in dump_json(_summary())


def test_a_lab_summary_without_a_locked_frame_says_so():
    text = format_summary(_summary(b_tesla=math.nan, last_locked_nu_hz=math.nan, events={}))
    assert "nan" not in text.lower()
    assert "not measured (no locked frame)" in text


def test_a_twin_summary_keeps_the_truth_columns():
    text = format_summary(_summary(time_base="simulated", offset_hz=1e-3, offset_sigma_hz=2e-3,
                                   fractional_offset=2.4e-18, b_true_tesla=37.197e-6))
    assert "h simulated time" in text
    assert "offset            +1.000e-03 Hz +- 2.0e-03 Hz" in text
    assert "diff +0.00 pT" in text and "laser steering" not in text
