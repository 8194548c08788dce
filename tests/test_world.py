"""The twin's world: laser, field, lines, detection statistics and truth bookkeeping."""

from __future__ import annotations

import allantools
import numpy as np
import pytest
import simpy

from ionclock.drivers.sequencer import PulseProgram
from ionclock.physics.constants import B_NOMINAL, ZEEMAN_LINES
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


PROGRAM = PulseProgram()


class TableDds:
    """A stand-in for the DDS's table mode: each dds_step edge applies the next entry."""

    def __init__(self, world):
        self.world = world
        self.entries = []
        self.i = 0
        world.wire_ttl("dds_step", self.step)

    def load(self, entries):
        self.entries, self.i = list(entries), 0

    def step(self, t):
        f, ph, a = self.entries[self.i % len(self.entries)]
        self.i += 1
        self.world.dds_changed(self.world.p.aom_channel, f, ph, a)


def hyper_ramsey_entries(world, light_hz, sign, light=True, step_hz=0.0):
    """The four table entries of a double-pass hyper-Ramsey cycle (RF Hz, turns, amplitude)."""
    c = world.p.aom_center_hz
    f, fp = c + 0.5 * light_hz, c + 0.5 * (light_hz + step_hz)
    a = 1.0 if light else 0.0
    return [(fp, 0.0, a), (f, 0.0, 0.0), (fp, 0.25, a), (fp, 0.125 if sign > 0 else 0.875, a)]


def run_cycle(world, dds, entries):
    """One cycle on the pattern; returns the counts of the detection window."""
    if not world._edges:
        world.load_pattern(PROGRAM.edges(), PROGRAM.detection_s)
    dds.load(entries)
    assert world.start_cycle()
    t0 = world.env.now
    world.env.run(until=t0 + PROGRAM.cycle_time_s)
    world.settle()
    return world.photon_counts(t0 + PROGRAM.detection_start_s, PROGRAM.detection_s)


def test_detection_statistics_and_truth():
    w = make_world()
    dds = TableDds(w)
    line = ZEEMAN_LINES[4]
    target = line.offset_hz(B_NOMINAL)
    # Park the laser a quarter fringe above line 4: p+ -> 1/2 (1 - C), p- -> 1/2 (1 + C).
    quarter = 1 / (4 * w.p.ramsey_time_s)
    darks = [run_cycle(w, dds, hyper_ramsey_entries(w, target + quarter, +1)) < 8
             for _ in range(4000)]
    p_plus = sum(darks) / len(darks)
    assert p_plus == pytest.approx(0.5 * (1 - w.contrast), abs=0.012)
    truth = w.take_truth()
    assert truth.n == 4000 and truth.per_line_n[4] == 4000
    assert truth.sum_detuning_hz / truth.n == pytest.approx(quarter, abs=1e-6)
    assert w.take_truth().n == 0


def test_counts_are_poisson_and_ion_loss_is_dark():
    w = make_world()
    dds = TableDds(w)
    off = hyper_ramsey_entries(w, 0.0, +1, light=False)   # no clock light: always bright
    bright = [run_cycle(w, dds, off) for _ in range(3000)]
    assert np.mean(bright) == pytest.approx(40.0, rel=0.02)
    assert np.var(bright) == pytest.approx(40.0, rel=0.1)
    w.lose_ion()
    dark = [run_cycle(w, dds, off) for _ in range(3000)]
    assert np.mean(dark) == pytest.approx(1.0, rel=0.1)
    w.reload_ion()
    assert np.mean([run_cycle(w, dds, off) for _ in range(200)]) > 30


def test_a_gate_outside_the_detection_window_sees_background_only():
    w = make_world()
    dds = TableDds(w)
    run_cycle(w, dds, hyper_ramsey_entries(w, 0.0, +1, light=False))
    d0 = w.env.now - PROGRAM.cycle_time_s + PROGRAM.detection_start_s
    late = [w.photon_counts(d0 + 0.003, 0.002) for _ in range(3000)]      # in the dwell
    half = [w.photon_counts(d0 + 0.001, 0.002) for _ in range(3000)]      # half overlap
    assert np.mean(late) == pytest.approx(1.0, rel=0.1)
    assert np.mean(half) == pytest.approx(20.5, rel=0.05)


def test_nothing_is_counted_before_its_time():
    """The pattern is played lazily but never early: before the detection edge the ion has
    not been probed, so the world still holds the previous cycle's state."""
    w = make_world()
    dds = TableDds(w)
    w.load_pattern(PROGRAM.edges(), PROGRAM.detection_s)
    dds.load(hyper_ramsey_entries(w, 0.0, +1))
    w.start_cycle()
    w.env.run(until=w.env.now + PROGRAM.probe_end_s - 1e-4)
    w.settle()
    assert dds.i == 4 and w.take_truth().n == 0            # four steps, no probe yet
    w.env.run(until=w.env.now + 2e-4)
    w.settle()
    assert w.take_truth().n == 1


def test_a_start_during_the_pattern_is_ignored():
    w = make_world()
    dds = TableDds(w)
    w.load_pattern(PROGRAM.edges(), PROGRAM.detection_s)
    dds.load(hyper_ramsey_entries(w, 0.0, +1))
    assert w.start_cycle()
    w.env.run(until=w.env.now + 0.05)
    assert not w.start_cycle() and w.starts_ignored == 1


def _error_signal(w, dds, light_hz, entries_for):
    """Mean n+ - n- from the expectation values a quarter fringe off the line."""
    out = []
    for sign in (+1, -1):
        run_cycle(w, dds, entries_for(sign))
        out.append(w.last_dark_probability)
    return out[0] - out[1]


def test_double_pass_phases_give_the_error_signal_and_single_pass_ones_do_not():
    """DOMAIN §5: the light's +-pi/2 is +-1/8 turn of the DDS. The DDS phases 1/4 and 3/4
    (the light's +-pi/2 taken for the RF's) are pi on the light for both signs: no signal."""
    w = make_world()
    dds = TableDds(w)
    target = ZEEMAN_LINES[0].offset_hz(B_NOMINAL) + 1 / (4 * w.p.ramsey_time_s)
    good = _error_signal(w, dds, target, lambda s: hyper_ramsey_entries(w, target, s))
    assert abs(good) == pytest.approx(w.contrast, rel=0.02)

    def single_pass(sign):
        e = hyper_ramsey_entries(w, target, sign)
        e[2] = (e[2][0], 0.5, 1.0)
        e[3] = (e[3][0], 0.25 if sign > 0 else 0.75, 1.0)
        return e
    assert abs(_error_signal(w, dds, target, single_pass)) < 1e-6

    def one_phase_register(sign):   # the phase register set once for the whole cycle
        ph = 0.25 if sign > 0 else 0.75
        return [(f, ph, a) for f, _, a in hyper_ramsey_entries(w, target, sign)]
    assert abs(_error_signal(w, dds, target, one_phase_register)) < 1e-6


def test_a_missing_frequency_step_biases_the_lock_point():
    """With a probe light shift during the pulses, the hyper-Ramsey step cancels it; without
    the step the lock point (zero error) moves."""
    w = make_world(light_shift_hz=20.0)
    dds = TableDds(w)
    line = ZEEMAN_LINES[0].offset_hz(B_NOMINAL)

    def zero_crossing(step_hz):
        lo, hi = -0.5, 0.5
        for _ in range(30):
            mid = 0.5 * (lo + hi)
            e = _error_signal(w, dds, line + mid,
                              lambda s: hyper_ramsey_entries(w, line + mid, s, step_hz=step_hz))
            lo, hi = (lo, mid) if e * _sign_at(w, dds, line, lo, step_hz) < 0 else (mid, hi)
        return 0.5 * (lo + hi)

    with_step = zero_crossing(20.0)
    without = zero_crossing(0.0)
    assert abs(with_step) < 1e-3
    assert abs(without) > 10 * abs(with_step) + 5e-3


def _sign_at(w, dds, line, x, step_hz):
    return _error_signal(w, dds, line + x,
                         lambda s: hyper_ramsey_entries(w, line + x, s, step_hz=step_hz))


def test_flicker_floor_has_the_configured_allan_deviation():
    floor = 0.41   # Hz, 1e-15 of nu0
    f = _Flicker(floor, 11, h=1.0)
    x = np.array([f.value(i * 1.0) for i in range(300_000)])
    taus, adev, _, _ = allantools.oadev(x, rate=1.0, data_type="freq", taus=[10, 100, 1000])
    for a in adev:
        assert a == pytest.approx(floor, rel=0.2)
    assert np.isfinite(x).all()


def test_flicker_is_a_function_of_seed_and_time_whoever_asks():
    """The same values however often, in what order and from how far ahead it is asked."""
    times = np.sort(np.random.default_rng(3).uniform(0.0, 5000.0, 400))
    dense = _Flicker(0.41, 7)
    reference = [dense.value((i + 0.5) * 0.05) for i in range(100_000)]   # grid in order
    assert np.std(reference) > 0.1
    sparse = _Flicker(0.41, 7)
    late_first = [sparse.value(4999.0)] + [sparse.value(t) for t in times[::-1]]
    interleaved = _Flicker(0.41, 7)
    again = []
    for t in times:
        interleaved.value(t + 800.0)           # someone else reads ahead
        again.append(interleaved.value(t))
    expected = [reference[int(t / 0.05)] for t in times]   # t on no grid point's edge
    assert late_first[1:] == expected[::-1]
    assert again == expected
    assert _Flicker(0.41, 8).value(100.0) != dense.value(100.0)   # the seed matters
    # the mean over an interval is the grid's exact mean
    assert dense.mean(10.0, 11.0) == pytest.approx(np.mean(reference[200:220]), abs=1e-12)


def test_a_world_that_is_asked_for_its_laser_draws_the_same_clock():
    """Asking for the cavity laser (a counter, a wavemeter) leaves the world's streams alone."""
    quiet, asked = make_world(), make_world()
    for t in (0.0, 5.0, 900.0, 3000.0):
        asked.cavity_offset_hz(t)
        asked.cavity_mean_hz(t, t + 1.0)
    assert quiet.cavity_offset_hz(3000.0) == asked.cavity_offset_hz(3000.0)
    assert quiet.nprng.random() == asked.nprng.random()
    assert quiet.rng.random() == asked.rng.random()


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


def test_stuck_shutter_quenches_the_dark_state_and_the_truth_shows_its_shift():
    w = make_world()
    dds = TableDds(w)
    line = ZEEMAN_LINES[0].offset_hz(B_NOMINAL)
    run_cycle(w, dds, hyper_ramsey_entries(w, line, +1))
    normal = w.last_dark_probability
    w.stick_shutter()
    run_cycle(w, dds, hyper_ramsey_entries(w, line, +1))
    assert normal == pytest.approx(0.5, abs=1e-6)
    assert w.last_dark_probability < 0.05
    # the truth is the laser against the unperturbed line: on it, though the ion sees the
    # stray light's shift
    assert w.last_detuning_hz == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("kw", [
    {"b_drift_t_s": 2e-13, "cavity_drift_hz_s": 0.1, "flicker_floor": 1e-15, "q0_hz": 3.0},
    {"b_walk_t_sqrt_s": 1e-12, "q0_hz": -2.0},
    {"exact": True},
    {"light_shift_hz": 0.4},
])
def test_the_pulse_level_interrogation_equals_the_hyper_ramsey_helpers(kw):
    """The fast path inlines b_true, laser_offset_hz and excitation; the numbers must agree,
    and the exact path through the segments as run equals `excitation_exact`."""
    w = make_world(**kw)
    dds = TableDds(w)
    for i, (k, detune) in enumerate([(0, 0.3), (3, -2.0), (5, 40.0), (2, 0.0), (4, -0.05)]):
        if i == 2:
            w.step_field(0.1e-9)
        t_mid = w.env.now + PROGRAM.ramsey_mid_s
        b = w.b_true(t_mid)   # for the walk: evaluated once here, the probe sees the same
        target = w.line_centres_hz(b)[k] + detune
        sign = 1 if i % 2 else -1
        light = target - w.cavity_offset_hz(t_mid)
        run_cycle(w, dds, hyper_ramsey_entries(w, light, sign))
        delta = w.laser_offset_hz(t_mid) - w.line_centres_hz(b)[k]
        assert w.last_detuning_hz == pytest.approx(delta, abs=1e-6)
        assert w.last_dark_probability == pytest.approx(w.excitation(delta, sign),
                                                        rel=1e-9, abs=1e-12)
