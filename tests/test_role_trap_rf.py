"""The trap-RF role in a clock run (issue 14): the stabiliser beside the clock servo.

Its record in the store (pickoff, source amplitude, RF state, the secular frequencies derived
from the pickoff and the twin's truth), a lost or implausible pickoff holding the amplitude
(never the output) through the resilient wrapper's reconnect, the RF untouched at shutdown,
and the clock's own draws unchanged by the role.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ionclock.apparatus.clock_config import load_clock_config
from ionclock.apparatus.clock_run import ClockRun

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "configs" / "sim.toml"
RF_ROLES = ("trap_rf", "rf_pickoff")


def _cfg(rf: bool = True):
    cfg = load_clock_config(SIM)
    if not rf:   # no RF twin at all (the replica system's SG380 would ask the world too)
        for role, entry in list(cfg["instruments"].items()):
            if role in RF_ROLES or entry["model"] in ("sg380", "dmm_34465a"):
                cfg["instruments"].pop(role)
    return cfg


def _run(tmp_path: Path, total_s: float, rf: bool = True, during=None, name: str = "run"):
    run = ClockRun(_cfg(rf), tmp_path / name, seed=3)
    seen: dict = {}
    if during is not None:
        run.env.process(during(run, seen))
    summary = run.run(total_s, progress=False)
    return run, summary, sqlite3.connect(tmp_path / name / "ionclock.sqlite"), seen


def _samples(db, channel, t0=-1.0, t1=1e12):
    return db.execute("SELECT t, value FROM samples WHERE channel = ? AND t >= ? AND t <= ? "
                      "ORDER BY t", (channel, t0, t1)).fetchall()


def _events(db, kind):
    return db.execute("SELECT t, source, detail FROM events WHERE kind = ? ORDER BY t",
                      (kind,)).fetchall()


def test_the_stabiliser_runs_beside_the_clock_and_records_the_rf(tmp_path):
    run, s, db, _ = _run(tmp_path, 1800.0)
    assert s["locked_fraction"] > 0.95
    (engaged,) = _events(db, "rf_engaged")
    assert engaged[1] == "trap_rf"
    # one sample of each channel per stabiliser cycle (10 s), from the start of the servo on
    for channel in ("rf.pickoff_v", "rf.source_dbm", "rf.enabled", "rf.secular_x_hz",
                    "rf.secular_y_hz", "truth.rf.secular_x_hz", "truth.rf.secular_y_hz"):
        rows = _samples(db, channel)
        assert len(rows) >= 1800 / 10 - 3, channel
        assert all(v is not None for _, v in rows), channel
    assert {v for _, v in _samples(db, "rf.enabled")} == {1.0}
    # the secular frequencies follow the pickoff through the calibration f_r ~ V (at the
    # setpoint: the configured f_x, f_y) ...
    pick = dict(_samples(db, "rf.pickoff_v"))
    setpoint = __import__("json").loads(engaged[2])["setpoint_v"]
    for t, fx in _samples(db, "rf.secular_x_hz"):
        assert fx == pytest.approx(3.531e6 * pick[t] / setpoint, rel=1e-12)
    # ... and the truth the twin knows, in 10-minute means (what sideband spectroscopy
    # resolves; one 0.01 dB source step is 4 kHz, decision 0300), is held
    truth = [v for _, v in _samples(db, "truth.rf.secular_x_hz")]
    means = [sum(truth[i:i + 60]) / 60 for i in range(0, len(truth) - 59, 60)]
    assert len(means) >= 2 and max(means) - min(means) < 1e3
    names = {r[0] for r in db.execute("SELECT name FROM channels")}
    assert {"rf.pickoff_v", "rf.enabled", "rf.secular_x_hz", "truth.rf.secular_y_hz"} <= names
    # safe shutdown never touches the RF: the output stays on at the amplitude the loop left
    world_rf = run.world.trap_rf
    assert world_rf.output_on
    (shut,) = _events(db, "shutdown")
    assert '"trap_rf": ["output untouched"' in shut[2]


def test_a_lost_pickoff_holds_the_amplitude_and_never_the_output(tmp_path):
    def fault(run, seen):
        env = run.env
        yield env.timeout(900.0)
        twin = run.instruments["rf_pickoff"].driver.twin
        seen["dbm_before"] = run.world.trap_rf.source_dbm
        twin.faults.timeout = True     # the DMM stops answering
        levels = set()
        for _ in range(30):
            yield env.timeout(10.0)
            levels.add(run.world.trap_rf.source_dbm)
            seen.setdefault("on", []).append(run.world.trap_rf.output_on)
        seen["levels"] = levels
        twin.faults.timeout = False    # back
    run, s, db, seen = _run(tmp_path, 1800.0, during=fault)
    # the amplitude is held where it was, the output never switched
    assert seen["levels"] == {seen["dbm_before"]}
    assert all(seen["on"])
    # the stabiliser says so, the wrapper goes offline and reconnects, the loop re-engages
    offline = [e for e in _events(db, "instrument_offline") if e[1] == "trap_rf"]
    assert len(offline) == 1 and 900.0 <= offline[0][0] <= 910.0
    assert "amplitude held" in offline[0][2]
    assert any(e[1] == "rf_pickoff" for e in _events(db, "instrument_online"))
    engaged = _events(db, "rf_engaged")
    assert len(engaged) == 2 and engaged[1][0] > 1200.0
    # while it was lost the pickoff and the secular frequencies are missing, never 0
    gap = _samples(db, "rf.pickoff_v", 905.0, 1195.0)
    assert gap and all(v is None for _, v in gap)
    assert all(v is None for _, v in _samples(db, "rf.secular_x_hz", 905.0, 1195.0))
    missing = [e for e in _events(db, "reading_missing") if e[1] == "rf.pickoff_v"]
    assert missing and 900.0 <= missing[0][0] <= 910.0
    after = _samples(db, "rf.pickoff_v", 1300.0)
    assert after and all(v is not None for _, v in after)
    assert s["locked_fraction"] > 0.95   # the clock is not held for it


def test_an_implausible_pickoff_holds_the_amplitude(tmp_path):
    def fault(run, seen):
        env = run.env
        yield env.timeout(600.0)
        rf = run.world.trap_rf
        seen["dbm_before"] = rf.source_dbm
        rf.p.pickoff_nominal_v *= 0.5          # a cable half off: readings at half
        levels = set()
        for _ in range(20):
            yield env.timeout(10.0)
            levels.add(rf.source_dbm)
        seen["levels"] = levels
        rf.p.pickoff_nominal_v *= 2.0
    run, s, db, seen = _run(tmp_path, 1200.0, during=fault)
    assert seen["levels"] == {seen["dbm_before"]}
    (bad,) = _events(db, "rf_pickoff_implausible")
    assert 600.0 <= bad[0] <= 610.0 and "amplitude held" in bad[2]
    (back,) = _events(db, "rf_pickoff_implausible_cleared")
    assert 800.0 <= back[0] <= 810.0
    # the secular frequencies are not derived from implausible readings
    assert all(v is None for _, v in _samples(db, "rf.secular_x_hz", 611.0, 799.0))
    assert run.world.trap_rf.output_on


def test_without_the_role_the_world_makes_no_rf_and_the_clock_draws_the_same(tmp_path):
    with_rf, _, db_with, _ = _run(tmp_path, 900.0, rf=True, name="with")
    without, _, db_without, _ = _run(tmp_path, 900.0, rf=False, name="without")
    assert without.world._trap_rf is None          # made only when an RF twin asks
    assert with_rf.world._trap_rf is not None
    q = "SELECT frame, t, locked, holdover, nu_hz, b_t FROM lock_frames ORDER BY frame"
    a, b = db_with.execute(q).fetchall(), db_without.execute(q).fetchall()
    assert len(a) > 600 and a == b
