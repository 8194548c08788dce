"""Holds another role of the apparatus asks of the clock servo (`ClockServo.request_hold`).

A wavemeter excursion or a micromotion measurement must put the clock in holdover from the
next frame, flag back to when the fault began, leave the probe alone while it holds, and
re-acquire once released; the events say so.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ionclock.apparatus.clock_config import load_clock_config
from ionclock.apparatus.clock_run import ClockRun

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "configs" / "sim.toml"


def _run_with_hold(tmp_path: Path, at: float, since: float, until: float, total: float):
    cfg = load_clock_config(SIM)
    run = ClockRun(cfg, tmp_path / "run", seed=4)
    env, servo = run.env, run.servo
    seen = {}

    def role():
        yield env.timeout(at)
        holding = servo.request_hold("test_fault", since=since, laser="cooling")
        seen["asked"] = env.now
        yield holding
        seen["holding"] = env.now
        seen["starts_at_hold"] = run.sequencer_starts()
        yield env.timeout(until - env.now)
        seen["starts_before_release"] = run.sequencer_starts()
        servo.release_hold("test_fault")

    starts = [0]
    original = run.sequencer.start

    def counting_start(*a, **k):
        starts[0] += 1
        return original(*a, **k)

    run.sequencer.start = counting_start
    run.servo._start = counting_start
    run.sequencer_starts = lambda: starts[0]
    env.process(role())
    summary = run.run(total, progress=False)
    return summary, sqlite3.connect(tmp_path / "run" / "ionclock.sqlite"), seen


def test_a_role_hold_flags_back_holds_without_probing_and_reacquires(tmp_path):
    s, db, seen = _run_with_hold(tmp_path, at=1200.0, since=1190.0, until=1500.0, total=2400.0)
    # the servo holds from the next frame boundary (one frame is 12 cycles of 0.105 s)
    assert 0.0 <= seen["holding"] - seen["asked"] <= 12 * 0.105 + 1e-9
    # while it holds, the sequencer is not started by the servo
    assert seen["starts_before_release"] == seen["starts_at_hold"]
    (held,) = db.execute("SELECT t, detail FROM events WHERE kind='test_fault'").fetchall()
    assert '"laser": "cooling"' in held[1]
    # (the micromotion monitor of sim.toml holds the clock too, for its own reason)
    (released,) = db.execute("SELECT t, detail FROM events WHERE kind='hold_released' "
                             "AND detail LIKE '%test_fault%'").fetchall()
    assert abs(released[0] - 1500.0) <= 0.105 + 1e-9
    assert '"reason": "test_fault"' in released[1]
    # every frame from `since` to the release is holdover, none locked
    during = db.execute("SELECT locked, holdover FROM lock_frames WHERE t >= 1190.0 "
                        "AND t < ?", (released[0],)).fetchall()
    assert len(during) >= (1500 - 1190) / (12 * 0.105) - 2
    assert all(h == 1 and lk == 0 for lk, h in during)
    # and the clock locks again afterwards
    after = db.execute("SELECT COUNT(*) FROM lock_frames WHERE t > 1700 AND locked = 1"
                       ).fetchone()[0]
    assert after > 100
    states = [k for (k,) in db.execute(
        "SELECT kind FROM events WHERE source='servo' AND t >= 1190 ORDER BY t")]
    assert states[:3] == ["holdover", "test_fault", "hold_released"]
    assert "locked" in states[3:]
