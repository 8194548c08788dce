"""Characterisation shots on the clock's sequencer and the twin (decision 0804).

`ProbeProgram` / `ProbeSequencer` (drivers/sequencer.py) play one Rabi pulse of a chosen beam
after Doppler or sideband cooling and a dark time, at the carrier, a secular sideband (the
AOM) or a micromotion sideband (the laser's lock offset); the world (`ClockWorld._shot_end`)
evaluates it with the motion and micromotion physics and draws the outcome from its own
stream, never the clock's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from ionclock.drivers.sequencer import (
    BEAM_LINES,
    COOLING_END,
    SIDEBAND_COOLING,
    ProbeProgram,
    ProbeSequencer,
)
from tests.table_twin import quiet_world, table_sequencer

THRESHOLD = 8


def _rig(**kw):
    world = quiet_world(0.0, **kw)
    seq, _ = table_sequencer(world)
    probe = ProbeSequencer(seq, world.load_pattern, lock_offset=seq.dds.ch_2,
                           lock_offset_center_hz=world.p.lock_offset_center_hz)
    return world, seq, probe


def _shots(world, seq, probe, program, detuning_hz, n):
    """n shots in a SimPy process; returns (dark shots, the detuning as run)."""
    out = {}

    def run():
        run_hz, moved = probe.load(program, detuning_hz)
        if moved:
            yield world.env.timeout(probe.relock_s)
        dark = 0
        for _ in range(n):
            probe.load(program, detuning_hz)
            seq.start()
            yield world.env.timeout(probe.program.cycle_time_s)
            dark += seq.count() < THRESHOLD
        out["dark"], out["hz"] = dark, run_hz

    world.env.process(run())
    world.env.run()
    return out["dark"], out["hz"]


def _line0(world):
    return world.line_centres_hz()[0]


def test_program_pattern_and_checks():
    p = ProbeProgram(beam=3, pulse_s=2e-6, cooling="sideband", dark_time_s=0.03)
    edges = p.edges()
    assert [t for t, _ in edges] == sorted(t for t, _ in edges)
    lines = [line for _, line in edges]
    assert lines[0] == SIDEBAND_COOLING and lines[1] == COOLING_END
    assert BEAM_LINES[2] in lines and lines.count("dds_step") == 5
    assert math.isclose(p.pulse_start_s - p.cooling_end_s, 0.03)
    assert p.cycle_time_s > p.detection_start_s + p.detection_s
    d = ProbeProgram(cooling="doppler")
    assert SIDEBAND_COOLING not in [line for _, line in d.edges()]
    for bad in ({"beam": 4}, {"cooling": "laser"}, {"pulse_s": 0.0}, {"dark_time_s": -1.0}):
        with pytest.raises(ValueError):
            ProbeProgram(**bad)


def test_split_of_the_detuning():
    world, seq, probe = _rig()
    assert probe.split(3.0e6) == (0.0, 3.0e6)
    step, rest = probe.split(24.801e6 + 400e3)
    assert step == 24.801e6 and math.isclose(rest, 400e3, abs_tol=1e-6)
    with pytest.raises(ValueError):
        probe.split(13e6)
    no_offset = ProbeSequencer(seq, world.load_pattern)
    with pytest.raises(ValueError, match="lock offset"):
        no_offset.split(-24.801e6)


def test_carrier_shots_follow_the_excitation_and_leave_the_clock_streams_alone():
    world, seq, probe = _rig()
    rng_state, np_state = world.rng.getstate(), world.nprng.bit_generator.state
    prog = ProbeProgram(beam=1, pulse_s=0.08e-6, cooling="doppler")
    n = 400
    dark, hz = _shots(world, seq, probe, prog, _line0(world), n)
    p = world.last_dark_probability
    assert world.shots_started == n and 0.1 < p < 0.9
    # the probability the world used is the motion model's thermal carrier (beam 1, Doppler)
    motion = world.characterisation.motion
    beta = world.characterisation.micromotion.beta()[0]
    from scipy import special
    expect = motion.excitation(0.08e-6, beam=1, cooling="doppler",
                               detuning_hz=hz - _line0(world),
                               coupling=float(special.j0(beta)))[0]
    assert p == pytest.approx(expect, abs=1e-9)
    # dark shots binomial around it (detection error ~ tau_D decay: < 1e-3)
    assert abs(dark - n * p) < 4.5 * math.sqrt(n * p * (1 - p))
    assert world.rng.getstate() == rng_state
    assert world.nprng.bit_generator.state == np_state


def test_red_and_blue_sidebands_and_heating():
    world, seq, probe = _rig()
    z = world.characterisation.motion.p.secular_hz[2]
    t_pi = 1.0 / (2 * 0.0365 * 250e3)      # about a blue pi pulse of beam 2 on z at n = 0
    prog = ProbeProgram(beam=2, pulse_s=t_pi, cooling="sideband", dark_time_s=0.0)
    red, hz = _shots(world, seq, probe, prog, _line0(world) - z, 200)
    k, kind, index, _ = world.shot_resonance(hz, world.env.now)
    assert (k, kind, index) == (0, "secular", (2, -1))
    blue, _ = _shots(world, seq, probe, prog, _line0(world) + z, 200)
    assert blue > 3 * red + 10          # n ~ 0.06 after sideband cooling: red ~ nbar/(nbar+1)
    p_cold = world.last_dark_probability
    hot = ProbeProgram(beam=2, pulse_s=t_pi, cooling="sideband", dark_time_s=0.14)
    _shots(world, seq, probe, hot, _line0(world) - z, 1)
    p_red_hot = world.last_dark_probability
    _shots(world, seq, probe, prog, _line0(world) - z, 1)
    assert p_red_hot > 2 * world.last_dark_probability   # 0.14 s x 1.31 quanta/s of heating
    assert p_cold > 0.5


def test_micromotion_sideband_through_the_lock_offset():
    world, seq, probe = _rig()
    mm = world.characterisation.micromotion
    mm.set_voltages(mm.v0() + np.array([2.0, 0.0, 0.0]))     # beam 1: beta = 0.1
    prog = ProbeProgram(beam=1, pulse_s=2e-6, cooling="sideband")
    rf = mm.p.rf_hz
    _, hz = _shots(world, seq, probe, prog, _line0(world) + rf, 50)
    assert world.lock_offset_hz == pytest.approx(rf, abs=0.1)
    assert hz == pytest.approx(_line0(world) + rf, abs=1.0)
    k, kind, index, delta = world.shot_resonance(hz, world.env.now)
    assert (k, kind, index) == (0, "micromotion", 1) and abs(delta) < 1.0
    p_sb = world.last_dark_probability
    expect = mm.excitation(2e-6, beam=1, order=1, detuning_hz=delta)[0]
    assert p_sb == pytest.approx(expect, rel=1e-6)
    probe.restore()
    world.settle()
    assert world.lock_offset_hz == 0.0
    # the clock's pattern is back: a clock cycle runs as before
    assert [line for _, line in world._pattern] == [line for _, line in seq.program.edges()]
