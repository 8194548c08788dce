"""The fine and coarse Rabi cycles in the fixed pattern, and the fringe test (issue 10)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ionclock.drivers.sequencer import PulseProgram, rabi_fine_amplitude
from ionclock.physics.constants import B_NOMINAL
from ionclock.servo.fringe_check import CENTRED, OFF, FringeTest
from ionclock.sim_instruments.hyper_ramsey import excitation_segments
from tests.table_twin import quiet_world, table_sequencer

FRINGE_HZ = 1.0 / 0.080


def _fine(delta_hz: float, program: PulseProgram = PulseProgram()) -> float:
    """Excitation of the fine Rabi probe (no contrast) through the twin's exact propagator."""
    a = rabi_fine_amplitude(program)
    rabi = math.pi / program.pi_time_s * a
    half = 0.5 * program.pi_time_s
    return excitation_segments((t, rabi, delta_hz, 0.0) for t in
                               (half, program.ramsey_time_s, program.pi_time_s, half))


# --- the Rabi probe -------------------------------------------------------------------------
def test_fine_amplitude_is_the_pi_area_over_the_light_on_the_10_bit_grid():
    a = rabi_fine_amplitude(PulseProgram())
    assert a * 1023 == pytest.approx(46.0)          # 4/88 of full scale = word 46.5 -> 46
    assert abs(a * 0.088 / 0.004 - 1.0) < 0.5 / 1023 * 22 + 1e-12   # area pi within a word
    assert rabi_fine_amplitude(PulseProgram(ramsey_time_s=0.040)) * 1023 == pytest.approx(85)


def test_fine_rabi_lineshape_from_the_exact_propagator():
    assert _fine(0.0) > 0.999
    assert _fine(FRINGE_HZ) < 0.07 and _fine(-FRINGE_HZ) < 0.07
    for n in (2, 3, 4):
        assert _fine(n * FRINGE_HZ) < 0.03
    grid = np.linspace(0.0, 15.0, 1501)
    p = np.array([_fine(d) for d in grid])
    fwhm = 2 * grid[np.argmax(p < 0.5 * p[0])]
    assert 8.5 < fwhm < 9.5
    # no sidelobe anywhere beyond 0.8 fringe comes near the centre
    far = np.array([_fine(d) for d in np.linspace(0.8 * FRINGE_HZ, 5 * FRINGE_HZ, 2001)])
    assert far.max() < 0.12


def _world(**kw):
    return quiet_world(3.0, **kw)


def _sequencer(world):
    return table_sequencer(world)[0]


def test_rabi_entries_on_the_dds():
    seq = _sequencer(_world())
    fine = seq.rabi_entries(100.0, "fine")
    assert [e[0] - 80e6 for e in fine] == pytest.approx([50.0] * 4)   # double pass: half
    assert [e[1] for e in fine] == [0.0] * 4
    assert [e[2] for e in fine] == [46 / 1023] * 4
    coarse = seq.rabi_entries(100.0, "coarse")
    assert [e[2] for e in coarse] == [0.0, 0.0, 1.0, 0.0]
    with pytest.raises(ValueError):
        seq.rabi_entries(0.0, "medium")


@pytest.mark.parametrize("kind", ["fine", "coarse"])
def test_the_twin_runs_the_rabi_cycle_from_the_dds_segments(kind):
    world = _world()
    seq = _sequencer(world)
    env = world.env
    k = 4
    centre = world.line_centres_hz(B_NOMINAL)[k]

    def cycle(probe_hz):
        applied = seq.prepare_rabi(probe_hz, kind)
        seq.start()
        env.run(until=env.now + 0.105)
        seq.count()
        return applied, world.last_detuning_hz, world.last_dark_probability

    probe, delta, _ = cycle(centre - world.cavity_offset_hz())
    probe -= delta                      # now on the line, to the DDS grid (0.2 Hz)
    c = world.contrast
    _, d0, p0 = cycle(probe)
    assert abs(d0) < 0.2
    if kind == "fine":
        assert p0 == pytest.approx(0.5 + c * (_fine(d0) - 0.5), abs=1e-9)
        _, d1, p1 = cycle(probe + FRINGE_HZ)
        assert abs(d1 - FRINGE_HZ) < 0.2
        assert p0 > 0.95 and p1 < 0.1
    else:   # a 4 ms pi pulse: 250 Hz wide, a fringe off still shelves the ion
        _, d1, p1 = cycle(probe + FRINGE_HZ)
        assert p0 > 0.95 and p1 > 0.9


# --- the sequential test --------------------------------------------------------------------
def test_fringe_test_error_rates_exact_and_simulated():
    test = FringeTest()
    p_centre = 0.5 + 0.966 * (_fine(0.0) - 0.5)
    p_fringe = 0.5 + 0.966 * (_fine(FRINGE_HZ) - 0.5)
    centred, off = test.outcome(p_centre), test.outcome(p_fringe)
    assert centred.p_lost < 1e-9 and off.p_present < 1e-9       # far inside the 1e-6 asked
    assert test.outcome(0.8).p_lost < 1e-6                       # the design point
    assert test.outcome(0.15).p_present < 1e-6
    assert 7 < centred.mean_checks < 10 and 9 < off.mean_checks < 13
    for seed in range(5):
        rng = np.random.default_rng(seed)
        for p, want, mean in ((p_centre, CENTRED, centred.mean_checks),
                              (p_fringe, OFF, off.mean_checks)):
            lengths = []
            for _ in range(300):
                test.reset()
                decision = None
                while decision is None:
                    decision = test.update(bool(rng.random() < p))
                assert decision == want
                lengths.append(test.probes)
            assert abs(np.mean(lengths) - mean) < 0.1 * mean
