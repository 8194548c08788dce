"""RF amplitude stabiliser against the twin: holds the secular frequencies, never switches off."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.bench_rf import run
from ionclock.apparatus.registry import open_instrument
from ionclock.servo.rf_stabiliser import (
    RFStabiliserConfig,
    default_controller,
    rf_stabiliser,
)
from ionclock.sim_instruments.trap_rf import RFWorld


class Recorder:
    """Store stand-in: events and samples as lists."""

    def __init__(self):
        self.events, self.samples = [], []

    def event(self, t, kind, source="", **detail):
        self.events.append((t, kind, detail))

    def add(self, table, row):
        self.samples.append(row)

    def kinds(self):
        return [k for _, k, _ in self.events]


def setup(seed=1, **cfg):
    world = RFWorld(seed=seed)
    sg = open_instrument("sg380", "sim://sg380", world=world)
    dmm = open_instrument("dmm_34465a", "sim://dmm_34465a", world=world)
    sg.twin.record_transcript = True
    config = RFStabiliserConfig(**cfg)
    rec = Recorder()
    proc = world.env.process(rf_stabiliser(world.env, sg, dmm, default_controller(config),
                                           config, store=rec))
    return world, sg, dmm, proc, rec


def run_day(loop: bool, seed: int):
    """Max drift of the 10-minute means and max instantaneous excursion over one day (Hz)."""
    result = run(loop, seed, duration_s=86400.0)   # the benchmark's own week, cut to a day
    return float(result["drift"].max()), float(result["peak"].max())


@pytest.mark.parametrize("seed", [1, 2])
def test_holds_radial_secular_drift_below_2khz_over_a_day(seed):
    drift_loop, inst_loop = run_day(True, seed)
    drift_free, _ = run_day(False, seed)
    assert drift_loop < 2e3, drift_loop
    # the same drift realisation without the loop is far worse: the test can fail
    assert drift_free > 3 * drift_loop and drift_free > 4e3
    # instantaneous excursions are bounded by one 0.01 dB source step (0.115 % of 3.531 MHz)
    assert inst_loop < 3.531e6 * (10 ** (0.01 / 20) - 1) + 600


def test_never_switches_output_and_limits_step():
    world, sg, dmm, proc, rec = setup(max_step_db=0.02)
    world.env.run(until=3600)
    # a sudden 5 % coupling loss: the loop must slew at most 0.02 dB per cycle
    world.trap_rf._walk = [x - 0.05 for x in world.trap_rf._walk]
    world.env.run(until=7200)
    amps = [float(c[4:]) for c, _ in sg.twin.transcript if c.startswith("AMPR") and c != "AMPR?"]
    steps = np.abs(np.diff([0.0] + amps))
    assert steps.max() <= 0.02 + 1e-9
    assert not any(c.startswith("ENBR") and c != "ENBR?" for c, _ in sg.twin.transcript)
    assert amps[-1] == pytest.approx(-20 * np.log10(0.95), abs=0.05)
    assert "rf_engaged" in rec.kinds()


def test_output_off_holds_and_resumes_bumplessly():
    world, sg, dmm, proc, rec = setup()
    world.env.run(until=600)
    sg.twin.write(b"ENBR0\n")  # someone switched the RF off by hand
    world.env.run(until=1200)
    assert "rf_output_off" in rec.kinds()
    assert sg.twin.output_on is False  # the loop did not switch it back on
    before = len([c for c, _ in sg.twin.transcript if c.startswith("AMPR") and c != "AMPR?"])
    sg.twin.write(b"ENBR1\n")
    world.env.run(until=1800)
    assert "rf_output_off_cleared" in rec.kinds()
    assert rec.kinds().count("rf_engaged") == 2
    assert before >= 0


def test_instrument_offline_and_back_and_hold_resume_stop():
    world, sg, dmm, proc, rec = setup()
    world.env.run(until=300)
    dmm.twin.faults.timeout = True
    world.env.run(until=600)
    dmm.twin.faults.timeout = False
    world.env.run(until=900)
    kinds = rec.kinds()
    assert kinds.count("instrument_offline") == 1 and "instrument_online" in kinds
    proc.interrupt("hold")
    world.env.run(until=1000)
    n = len(sg.twin.transcript)
    world.env.run(until=2000)
    assert len(sg.twin.transcript) == n  # held: no traffic
    proc.interrupt("resume")
    world.env.run(until=2100)
    assert len(sg.twin.transcript) > n
    proc.interrupt("stop")
    world.env.run(until=2200)
    assert not proc.is_alive
    assert rec.kinds()[-1] == "rf_stopped"


def test_implausible_pickoff_holds():
    world, sg, dmm, proc, rec = setup(setpoint_v=1.0)
    world.env.run(until=100)
    world.trap_rf.p.pickoff_nominal_v = 0.1  # a cable fell off the divider
    amp = world.trap_rf.source_dbm
    world.env.run(until=1000)
    assert "rf_pickoff_implausible" in rec.kinds()
    assert world.trap_rf.source_dbm == amp  # not servoed towards the ceiling


def test_config_validation():
    with pytest.raises(ValueError):
        RFStabiliserConfig(period_s=0)
    with pytest.raises(ValueError):
        RFStabiliserConfig(min_dbm=5, max_dbm=1)
    with pytest.raises(ValueError):
        RFStabiliserConfig(setpoint_v=-1)
