"""The pulse-sequencer role: the cycle's program, its table entries, and the servo through it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ionclock.drivers.sequencer import (
    COUNTER_TRIG,
    DDS_STEP,
    DETECTION,
    PROBE_END,
    PulseProgram,
)
from ionclock.servo.clock_lock import ClockServo, ServoParams
from ionclock.servo.readout import ThresholdReadout
from tests.table_twin import quiet_world, table_sequencer


def test_program_edges_follow_the_cycle_of_domain_1():
    p = PulseProgram()
    edges = p.edges()
    steps = [t for t, line in edges if line == DDS_STEP]
    assert steps == pytest.approx([0.0125, 0.0145, 0.0945, 0.0985, 0.1005])   # + the end
    assert [t for t, line in edges if line == PROBE_END] == pytest.approx([0.1005])
    assert [t for t, line in edges if line == DETECTION] == pytest.approx([0.101])
    assert [t for t, line in edges if line == COUNTER_TRIG] == pytest.approx([0.101])
    assert [line for _, line in edges][-2:] == [DETECTION, COUNTER_TRIG]   # window first
    assert p.ramsey_mid_s == pytest.approx(0.0125 + 0.002 + 0.040)


@pytest.mark.parametrize("kw", [{"cycle_time_s": 0.09}, {"counter_offsets_s": (0.0, 0.004)},
                                {"pi_time_s": 0.0}, {"prepare_s": -1.0},
                                {"counter_offsets_s": ()}])
def test_program_refuses_what_does_not_fit(kw):
    with pytest.raises(ValueError):
        PulseProgram(**kw)


def _world(**kw):
    return quiet_world(1.0, **kw)


def _sequencer(world, double_pass=True, **kw):
    """The table sequencer on the twins of the 409B, the SR400 and the DG645."""
    return table_sequencer(world, double_pass=double_pass, **kw)


def test_entries_are_the_light_phases_halved_through_the_double_pass():
    seq, _ = _sequencer(_world(), pulse_step_hz=10.0)
    plus = seq.entries(100.0, +1)
    minus = seq.entries(100.0, -1)
    # light 0, pi, +-pi/2 -> RF 0, 1/4, +-1/8 turn; light +100 Hz -> RF +50 Hz; the step too
    assert [e[1] for e in plus] == [0.0, 0.0, 0.25, 0.125]
    assert minus[3][1] == 0.375
    assert [e[0] - 80e6 for e in plus] == pytest.approx([55.0, 50.0, 55.0, 55.0])
    assert [e[2] for e in plus] == [1.0, 0.0, 1.0, 1.0]
    assert [e[2] for e in seq.entries(0.0, 1, light=False)] == [0.0] * 4
    single, _ = _sequencer(_world(), double_pass=False)
    assert [e[1] for e in single.entries(0.0, -1)] == [0.0, 0.0, 0.5, 0.75]


def test_prepare_rewrites_only_the_entries_that_changed_and_reports_the_grid():
    world = _world()
    seq, twin = _sequencer(world)
    twin.record_transcript = True

    def lines():
        out = [line for line, _ in twin.transcript]
        twin.transcript.clear()
        return out

    applied = seq.prepare(0.123456, +1)
    assert applied == pytest.approx(2 * (round((80e6 + 0.061728) * 10) / 10 - 80e6))
    first = lines()
    assert first[0] == "m 0" and first[-1] == "m t"
    assert sum(line.startswith("t0 ") for line in first) == 6    # idle, 4 segments, idle
    seq.prepare(0.123456, -1)          # the second probe of a line: the final pulse only
    # entry 4, final pulse: 3/8 turn of the DDS (word 0x1800) = -pi/2 on the light
    assert lines() == ["m 0", "t0 0004 2faf0801,1800,03ff,ff", "m t"]
    seq.prepare(50.0, -1)              # a new line: every segment's frequency
    assert sum(line.startswith("t0 ") for line in lines()) == 4
    seq.use_direct(False)              # after a failure everything is loaded anew
    seq.prepare(50.0, -1)
    assert sum(line.startswith("t0 ") for line in lines()) == 6


def _run(world, double_pass=True, frames=300):
    seq, _ = _sequencer(world, double_pass)
    dets = []

    def on_frame(frame):
        truth = world.take_truth()
        if truth.n:
            dets.append(truth.sum_detuning_hz / truth.n)

    servo = ClockServo(world.env, seq, ThresholdReadout(seq), params=ServoParams(),
                       on_frame=on_frame)
    world.env.process(servo.run())
    world.env.run(until=frames * 12 * 0.105)
    return servo, np.array(dets)
def test_the_servo_locks_through_the_table_sequencer():
    servo, dets = _run(_world())
    assert servo.state == "locked"
    tail = dets[50:]
    assert abs(tail.mean()) < 0.1 and tail.std() < 1.0


def test_single_pass_phases_on_a_double_pass_aom_give_no_lock():
    """The previous servo's phases (0.25 / 0.75 turn on the DDS for the final pulse, as if
    single pass) are pi on the light for both signs: no error signal, the laser wanders."""
    servo, dets = _run(_world(), double_pass=False)
    assert np.sqrt(np.mean(dets[50:] ** 2)) > 3.0 or not math.isfinite(dets[50:].mean())
