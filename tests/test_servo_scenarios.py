"""Issue 3: the servo against the twin's scenarios (ion loss, stuck shutter, field steps,
deterministic bias), graded against the twin's truth in the store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ionclock.apparatus.clock_config import load_clock_config
from ionclock.apparatus.clock_run import ClockRun
from ionclock.physics.constants import NU0_CA

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "configs" / "sim.toml"
HALF_FRINGE_HZ = 0.5 / 0.080


def run(tmp_path: Path, hours: float, scenario: str | None = None, seed: int = 5,
        **twin) -> tuple[dict, sqlite3.Connection, ClockRun]:
    cfg = load_clock_config(SIM, scenario=scenario, overrides={"twin": twin} if twin else None)
    clock = ClockRun(cfg, tmp_path / "run", seed=seed)
    summary = clock.run(hours * 3600.0, progress=False)
    return summary, sqlite3.connect(tmp_path / "run" / "ionclock.sqlite"), clock


def events(db, kind):
    """Times of the clock's own events of `kind` (not what the twin logged it injected)."""
    return [t for (t,) in db.execute("SELECT t FROM events WHERE kind=? AND source != 'twin' "
                                     "ORDER BY t", (kind,))]


def frames(db, where="1"):
    return db.execute(
        "SELECT f.t, f.locked, f.holdover, t.detuning_hz, t.d0, t.d1, t.d2, t.d3, t.d4, t.d5 "
        f"FROM lock_frames f LEFT JOIN twin_truth t USING(frame) WHERE {where} ORDER BY f.t"
    ).fetchall()


def test_ion_loss_is_detected_within_cycles_held_over_and_reacquired(tmp_path):
    s, db, clock = run(tmp_path, 2.0, events=[
        {"at": "1h", "kind": "ion_loss", "duration": "20min"}])
    (lost,) = events(db, "ion_lost")
    assert 3600.0 <= lost < 3600.0 + 20 * 0.105          # within 20 clock cycles
    (back,) = events(db, "ion_reloaded")
    assert 4800.0 <= back < 4800.0 + 5 * 0.105   # the presence test (decision 0007)
    # every frame while the ion was away is flagged, none of them counts as clock data
    during = frames(db, f"f.t > {lost} AND f.t < {back}")
    assert during and all(f[2] == 1 and f[1] == 0 for f in during)
    # the lock comes back on the same fringe: no silent offset afterwards
    after = [f for f in frames(db, f"f.t > {back + 120}") if f[1] and not f[2]]
    mean_after = sum(f[3] for f in after) / len(after)
    assert abs(mean_after) < 0.1
    assert abs(s["offset_hz"]) < 3 * s["offset_sigma_hz"]


def test_stuck_shutter_is_never_a_silent_bias(tmp_path):
    s, db, _ = run(tmp_path, 2.0, events=[
        {"at": "1h", "kind": "shutter_stuck", "duration": "15min"}])
    (lost,) = events(db, "contrast_lost")
    assert 3600.0 < lost < 3600.0 + 60.0
    (back,) = events(db, "contrast_restored")
    assert 4500.0 <= back < 4500.0 + 30.0
    # the 2 Hz light shift never reaches the clock data: every frame during the fault is
    # flagged, including those before it was recognised
    during = frames(db, "f.t >= 3600 AND f.t <= 4500")
    assert during and all(f[2] == 1 for f in during)
    good = [f for f in frames(db) if f[1] and not f[2]]
    assert abs(sum(f[3] for f in good) / len(good)) < 3 * s["offset_sigma_hz"]


@pytest.mark.parametrize("fraction", [1.0, 0.1])
def test_a_shutter_left_open_is_caught_and_every_frame_its_light_touched_is_flagged(
        tmp_path, fraction):
    """Stray 854 nm light during the probe, the shutter fully or a tenth open: D5/2 is
    quenched (dark fraction 0.01 or 0.34 instead of 0.5) and the line light-shifted by
    2 Hz x fraction. The contrast test catches it; no frame the light touched counts."""
    s, db, _ = run(tmp_path, 2.0, events=[
        {"at": "1h", "kind": "shutter_stuck", "value": fraction, "duration": "15min"}])
    (lost,) = events(db, "contrast_lost")
    assert 3600.0 < lost < 3600.0 + (30.0 if fraction == 1.0 else 120.0)
    touched = db.execute("SELECT f.locked, f.holdover, t.stray_hz FROM lock_frames f "
                         "JOIN twin_truth t USING(frame) WHERE t.stray_hz > 0").fetchall()
    assert touched and all(locked == 0 and hold == 1 for locked, hold, _ in touched)
    assert max(x for *_, x in touched) == pytest.approx(2.0 * fraction)
    good = [f for f in frames(db) if f[1] and not f[2]]
    assert abs(sum(f[3] for f in good) / len(good)) < 3 * s["offset_sigma_hz"]


def test_field_steps_are_corrected_within_five_minutes_and_leave_no_slip(tmp_path):
    steps = [("1h", 0.3e-9, 3600.0), ("2h", -0.5e-9, 7200.0), ("3h", 0.25e-9, 10800.0)]
    s, db, clock = run(tmp_path, 3.5, events=[
        {"at": at, "kind": "b_step", "value": v} for at, v, _ in steps])
    injected = [t for (t,) in db.execute(
        "SELECT t FROM events WHERE source='twin' AND kind='b_step' ORDER BY t")]
    assert injected == [t for _, _, t in steps]        # the twin logs what it did
    detected = events(db, "field_step")
    for _, _, t_step in steps:
        assert any(t_step < t < t_step + 300.0 for t in detected), (t_step, detected)
    # and nothing else was taken for a step: every detection is in a step's transient (a
    # first estimate of the wrong sign is followed by the slips it causes, their correction,
    # flagged back, and the step found again: seed 5 at 1 h, +0.3 nT read as -0.17 nT)
    assert all(any(t_step < t < t_step + 300.0 for _, _, t_step in steps) for t in detected)
    assert len(detected) <= 2 * len(steps), detected
    # every slip the steps caused is corrected: after the first minute of each step's
    # transient no locked, unflagged frame has a line sitting a fringe off
    for f in frames(db, "f.locked = 1 AND f.holdover = 0"):
        if any(t_step <= f[0] < t_step + 60.0 for _, _, t_step in steps):
            continue
        assert max(abs(d) for d in f[4:] if d is not None) < HALF_FRINGE_HZ, f
    assert abs(s["b_tesla"] - s["b_true_tesla"]) < 10e-12
    assert abs(s["offset_hz"]) < 3 * s["offset_sigma_hz"]


def test_deterministic_bias_below_1e_20_with_drifts_and_quadrupole(tmp_path):
    s, db, _ = run(tmp_path, 6.0, scenario="bias", deterministic=True)
    settled = frames(db, "f.locked = 1 AND f.holdover = 0 AND f.t > 3600")
    bias = sum(f[3] for f in settled) / len(settled) / NU0_CA
    assert abs(bias) < 1e-20
    b_err = db.execute("SELECT AVG(f.b_t - t.b_true_t) FROM lock_frames f JOIN twin_truth t "
                       "USING(frame) WHERE f.locked = 1 AND f.t > 3600").fetchone()[0]
    assert abs(b_err) < 1e-12


def test_scenarios_all_load_and_unknown_scenario_is_a_user_error(capsys):
    from ionclock.apparatus.clock_config import scenario_names
    from ionclock.commands.main import main

    names = scenario_names()
    assert {"nominal", "qpn", "drift_10", "drift_50", "drift_100", "b_steps", "quadrupole",
            "ion_loss", "ln2_refill", "shutter_stuck", "bias"} <= set(names)
    for name in names:
        load_clock_config(SIM, scenario=name)
    assert main(["sim", "--scenario", "nope", "--duration", "1s", "--no-progress"]) == 2
    assert "unknown scenario 'nope'" in capsys.readouterr().err


def test_instrument_drop_and_power_cycle_hold_over_then_relock(tmp_path):
    cfg = load_clock_config(SIM)
    clock = ClockRun(cfg, tmp_path / "run", seed=6)
    counter_twin = clock.instruments["counter"].twin
    aom_twin = clock.instruments["aom"].twin

    def fault():
        yield clock.env.timeout(1800.0)
        counter_twin.faults.disconnected = True      # the counter's cable is pulled ...
        aom_twin.power_cycle()                        # ... and the DDS loses its settings
        yield clock.env.timeout(60.0)
        counter_twin.faults.disconnected = False

    clock.env.process(fault())
    s = clock.run(3600.0, progress=False)
    db = sqlite3.connect(tmp_path / "run" / "ionclock.sqlite")
    offline = events(db, "instrument_offline")
    online = events(db, "instrument_online")
    assert offline and 1800.0 <= offline[0] < 1801.0
    assert online and 1860.0 <= online[-1] < 1860.0 + 120.0     # back within the backoff
    kinds = [k for (k,) in db.execute("SELECT kind FROM events WHERE source='servo' "
                                      "AND t >= 1800 ORDER BY t")]
    assert kinds[:2] == ["holdover", "instrument_offline"]
    assert "locked" in kinds                                    # re-acquired afterwards
    # after the relock the DDS runs the servo's phase again: the lock is unbiased
    after = [f for f in frames(db, "f.t > 2100") if f[1] and not f[2]]
    assert len(after) > 1000
    assert abs(sum(f[3] for f in after) / len(after)) < 0.05
    assert s["locked_fraction"] > 0.9
