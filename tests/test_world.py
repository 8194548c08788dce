"""The twin's world: laser, field, lines, detection statistics and truth bookkeeping."""

from __future__ import annotations

import allantools
import numpy as np
import pytest
import simpy

from ionclock.physics import B_NOMINAL, ZEEMAN_LINES
from ionclock.sim_instruments.world import ClockWorld, TwinParams, _Flicker


def make_world(**kw) -> ClockWorld:
    params = TwinParams(**{"flicker_floor": 0.0, "b_noise_t": 0.0, "b_drift_t_s": 0.0,
                           "cavity_drift_hz_s": 0.0, "apply_shifts": False,
                           "cryostat": False, **kw})
    world = ClockWorld(simpy.Environment(), params, seed=7)
    world.coil_changed(params.coil_channel, B_NOMINAL / params.coil_t_per_a)
    return world


def test_field_follows_coil_current_and_drift():
    w = make_world(b_drift_t_s=1e-9 / 3600)
    assert w.b_true(0.0) == pytest.approx(B_NOMINAL, abs=1e-15)
    assert w.b_true(3600.0) - w.b_true(0.0) == pytest.approx(1e-9, rel=1e-9)
    w.coil_changed(w.p.coil_channel + 1, 0.0)          # another channel: no effect
    assert w.b_true(0.0) == pytest.approx(B_NOMINAL, abs=1e-15)
    w.step_field(0.3e-9)
    assert w.b_true(0.0) - B_NOMINAL == pytest.approx(0.3e-9, rel=1e-9)


def test_line_centres_match_domain_table_and_quadrupole_sums_to_zero():
    w = make_world(q0_hz=10.0)
    centres = w.line_centres_hz()
    expected_khz = (-416.17, 416.17, -833.66, 833.66, -1041.08, 1041.08)
    for c, e, line in zip(centres, expected_khz, ZEEMAN_LINES):
        assert (c - 10.0 * line.quadrupole_weight) / 1e3 == pytest.approx(e, abs=0.01)
    assert sum(centres) == pytest.approx(0.0, abs=1e-6)


def test_double_pass_aom_moves_laser_twice_the_step():
    w = make_world(laser_offset_hz=1.5)
    w.dds_changed(0, w.p.aom_center_hz + 100.0, 0.25, 1.0)
    assert w.laser_offset_hz() == pytest.approx(201.5)
    w.dds_changed(1, 0.0, 0.0, 1.0)                     # not the clock AOM channel
    assert w.laser_offset_hz() == pytest.approx(201.5)


def test_detection_statistics_and_truth():
    w = make_world()
    line = ZEEMAN_LINES[4]
    target = line.offset_hz(B_NOMINAL)
    # Park the laser a quarter fringe above line 4: p+ -> 1/2 (1 - C), p- -> 1/2 (1 + C).
    quarter = 1 / (4 * w.p.ramsey_time_s)
    w.dds_changed(0, w.p.aom_center_hz + 0.5 * (target + quarter), 0.25, 1.0)
    darks = [w.detect(0.002) < 8 for _ in range(4000)]
    p_plus = sum(darks) / len(darks)
    assert p_plus == pytest.approx(0.5 * (1 - w.contrast), abs=0.012)
    truth = w.take_truth()
    assert truth.n == 4000 and truth.per_line_n[4] == 4000
    assert truth.sum_detuning_hz / truth.n == pytest.approx(quarter, abs=1e-6)
    assert w.take_truth().n == 0


def test_counts_are_poisson_and_ion_loss_is_dark():
    w = make_world()
    w.dds_changed(0, w.p.aom_center_hz, 0.25, 0.0)     # no clock light: always bright
    bright = [w.detect(0.002) for _ in range(5000)]
    assert np.mean(bright) == pytest.approx(40.0, rel=0.02)
    assert np.var(bright) == pytest.approx(40.0, rel=0.1)
    w.lose_ion()
    dark = [w.detect(0.002) for _ in range(5000)]
    assert np.mean(dark) == pytest.approx(1.0, rel=0.08)
    w.reload_ion()
    assert np.mean([w.detect(0.002) for _ in range(200)]) > 30


def test_flicker_floor_has_the_configured_allan_deviation():
    rng = np.random.default_rng(11)
    floor = 0.41   # Hz, 1e-15 of nu0
    f = _Flicker(floor, rng, h=1.0)
    x = np.array([f.value(i * 1.0) for i in range(300_000)])
    taus, adev, _, _ = allantools.oadev(x, rate=1.0, data_type="freq", taus=[10, 100, 1000])
    for a in adev:
        assert a == pytest.approx(floor, rel=0.2)
    assert np.isfinite(x).all()


def test_true_shifts_move_the_ion_with_temperature_and_field():
    w = make_world(apply_shifts=True, cryostat=True)
    # the seed's Table II total is 522.6e-19 at 79.5 K and 37.197 uT
    assert w.p.common_shift_hz / w.p.nu0_hz == pytest.approx(522.6e-19, abs=6e-19)
    before = w.p.common_shift_hz
    w.cryostat.inject_excursion(5.0, 3600.0, time_constant=1.0)
    w.env.run(until=600.0)
    # warmer by ~5 K at ~80 K: the BBR shift grows by ~4 x 5/80 of itself (T^4)
    assert (w.p.common_shift_hz - before) / w.shifts_hz["bbr"] == pytest.approx(
        4 * 5.0 / 80.0, rel=0.25)


def test_scheduled_events_are_carried_out_and_logged():
    events = ((100.0, "b_step", 0.3e-9, 0.0), (200.0, "ion_loss", 0.0, 50.0),
              (300.0, "shutter_stuck", 0.0, 60.0), (400.0, "q0", 5.0, 0.0))
    w = make_world(events=events)
    w.env.run(until=150.0)
    assert w.b_true() - B_NOMINAL == pytest.approx(0.3e-9, rel=1e-9)
    w.env.run(until=220.0)
    assert not w.ion_present
    w.env.run(until=320.0)
    assert w.ion_present and w.quenched
    w.env.run(until=500.0)
    assert not w.quenched and w.p.q0_hz == 5.0
    kinds = [k for _, k, _ in w.log]
    assert kinds == ["b_step", "ion_loss", "ion_reloaded", "shutter_stuck", "shutter_fixed",
                     "q0"]


def test_stuck_shutter_quenches_the_dark_state():
    w = make_world()
    w.dds_changed(0, w.p.aom_center_hz + 0.5 * ZEEMAN_LINES[0].offset_hz(B_NOMINAL), 0.25, 1.0)
    normal = np.mean([w.expected_dark() for _ in range(10)])
    w.stick_shutter()
    quenched = np.mean([w.expected_dark() for _ in range(10)])
    assert normal == pytest.approx(0.5, abs=1e-6)
    assert quenched < 0.05


@pytest.mark.parametrize("kw", [
    {"b_drift_t_s": 2e-13, "cavity_drift_hz_s": 0.1, "flicker_floor": 1e-15, "q0_hz": 3.0},
    {"b_walk_t_sqrt_s": 1e-12, "q0_hz": -2.0},
    {"exact": True},
    {"light_shift_hz": 0.4},
])
def test_the_inlined_interrogation_equals_its_helpers(kw):
    """`_interrogate` inlines b_true, laser_offset_hz and excitation; the numbers must agree."""
    w = make_world(**kw)
    centre = w.p.aom_center_hz
    for i, (k, detune) in enumerate([(0, 0.3), (3, -2.0), (5, 40.0), (2, 0.0), (4, -0.05)]):
        w.env.run(until=w.env.now + 0.105)
        if i == 2:
            w.step_field(0.1e-9)
        t = w.env.now
        b = w.b_true(t)   # for the walk: evaluated once here, `_interrogate` sees the same
        target = w.line_centres_hz(b)[k] + detune
        w.dds_changed(w.p.aom_channel, centre + 0.5 * (target - w.cavity_offset_hz(t)),
                      0.25 if i % 2 else 0.75, 1.0)
        nu = w.laser_offset_hz(t)
        delta = nu - w.line_centres_hz(b)[k]
        expected = w.excitation(delta, 1 if i % 2 else -1)
        assert w._interrogate() == pytest.approx(expected, rel=1e-12, abs=1e-15)
        assert w.last_detuning_hz == pytest.approx(delta, abs=1e-6)
