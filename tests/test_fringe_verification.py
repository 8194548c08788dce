"""Acquisition without fringe ambiguity and verification while locked (decision 0008)."""

from __future__ import annotations

import math
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from ionclock.apparatus.clock_config import load_clock_config
from ionclock.apparatus.clock_run import ClockRun
from ionclock.physics.constants import ZEEMAN_LINES
from ionclock.report import load_run, silent_wrong_lock, summarise
from ionclock.servo.clock_lock import VERIFY_LINE, ServoParams
from ionclock.servo.fringe_check import FringeMonitor, predict_fringes, search_order

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "configs" / "sim.toml"
FRINGE_HZ = 1.0 / 0.080
QUARTER_HZ = 0.25 * FRINGE_HZ
_Z = tuple(line.zeeman_hz_per_t for line in ZEEMAN_LINES)
_W = tuple(line.quadrupole_weight for line in ZEEMAN_LINES)


# --- the pieces -----------------------------------------------------------------------------
def test_search_order_starts_where_the_line_sits_then_the_predictions_then_outward():
    assert search_order([], 2) == [0, 1, -1, 2, -2]
    order = search_order([3], 4)
    assert order[:2] == [0, 3]
    assert sorted(order) == list(range(-4, 5))          # every fringe once
    assert search_order([30], 4)[:3] == [0, 4, 1]         # nearest a prediction out of range
    assert search_order([-2, 5], 6)[:3] == [0, -2, 5]


def _worst_prediction(lines, with_q0, cases=4000, seed=1):
    """Largest |predicted - true| fringes over random moves (common, B, Q0)."""
    rng = np.random.default_rng(seed)
    worst = 0
    for _ in range(cases):
        c, b = rng.uniform(-200.0, 200.0), rng.uniform(-10e-9, 10e-9)
        q = rng.uniform(-30.0, 30.0) if with_q0 else 0.0
        true = [round((c + z * b + q * w) / FRINGE_HZ) for z, w in zip(_Z, _W)]
        (pred,) = predict_fringes({k: true[k] * FRINGE_HZ for k in lines}, FRINGE_HZ, _Z,
                                  _W)
        assert [pred[k] for k in lines] == [true[k] for k in lines]
        worst = max(worst, max(abs(p - t) for p, t in zip(pred, true)))
    return worst


def test_predicted_fringes_from_the_lines_found_so_far():
    """After a line or two the others are predicted to within the search's first tries.

    Moves of up to 200 Hz common and 10 nT (up to 22 fringes on the outer lines): one pair
    fixes common and B to within the rounding to whole fringes, so with Q0 unchanged every
    line is predicted within 2 fringes; with Q0 changed by up to 30 Hz as well, within 4
    (then 3 once four lines fix Q0 too).
    """
    # one line: a laser jump, a field step or a Q0 change
    common, field, quad = predict_fringes({4: 10 * FRINGE_HZ}, FRINGE_HZ, _Z, _W)
    assert common == [10] * 6
    assert field == [4, -4, 8, -8, 10, -10]
    assert quad == [-2, -2, -8, -8, 10, 10]
    assert predict_fringes({}, FRINGE_HZ, _Z, _W) == []
    assert _worst_prediction((0, 1), with_q0=False) <= 2
    assert _worst_prediction((0, 1), with_q0=True) <= 4
    assert _worst_prediction((0, 1, 2, 3), with_q0=True) <= 3


def _delays(monitor_kw, p_dark, n_runs, max_probes, seed):
    """Probes to the monitor's first alarm on probes of one dark probability (per run)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n_runs):
        m = FringeMonitor(**monitor_kw)
        m.reset(0.0)
        for i in range(1, max_probes + 1):
            k = i % 6
            if m.update(k, rng.random() < p_dark, float(i)) is not None:
                out.append(i)
                break
        else:
            out.append(None)
    return out


def test_monitor_never_alarms_on_centred_lines_and_catches_a_slip_in_a_few_probes():
    # centred: the twin's fine probe reads dark 0.98 (0.95 with the lock's noise and low
    # counts); 200 runs x 2000 probes (a day of one line's probes is ~3700 at every 3
    # frames) without an alarm
    assert _delays({}, 0.90, 200, 2000, 1) == [None] * 200
    # a slip common to all lines (the pooled statistic) at 0.08 dark, and at 0.16 (12 / 2
    # counts: a bright ion reads dark 9 %): ~h / E[llr] probes (13.3 and 16.8), every run
    # within 45 (3 min at 3.9 s per pooled probe)
    for p, mean_max in ((0.08, 15.0), (0.16, 18.5)):
        d = _delays({}, p, 300, 200, 2)
        assert None not in d and max(d) <= 45
        assert np.mean(d) < mean_max


def test_monitor_per_line_statistic_finds_one_slipped_line():
    m = FringeMonitor()
    m.reset(0.0)
    rng = random.Random(5)
    alarm = None
    for i in range(1, 400):
        k = i % 6
        dark = rng.random() < (0.08 if k == 4 else 0.97)   # line 4 a fringe off
        alarm = m.update(k, dark, float(i))
        if alarm is not None:
            break
    assert alarm == 4
    assert m.since(4) < i and m.s[m.pooled] < m.h
    with pytest.raises(ValueError):
        FringeMonitor(p_centred=0.1, p_off=0.5)


# --- the twin runs --------------------------------------------------------------------------
def _run(tmp_path: Path, hours: float, seed: int, verify: int = 3, **twin):
    out = tmp_path / f"run_{seed}_{verify}"
    cfg = load_clock_config(SIM, overrides={"twin": twin, "servo": {
        "verify_every_frames": verify}}, run_s=hours * 3600.0)
    clock = ClockRun(cfg, out, seed=seed)
    clock.run(hours * 3600.0, progress=False)
    return load_run(out), sqlite3.connect(out / "ionclock.sqlite"), clock


def _events(db, kind):
    return [t for (t,) in db.execute("SELECT t FROM events WHERE kind=? AND source != 'twin' "
                                     "ORDER BY t", (kind,))]


def _on_central_fringe_after(data, t0: float) -> None:
    ok = data.locked & ~data.holdover & (data.t > t0)
    assert ok.sum() > 100
    assert np.abs(data.d_hz[ok]).max() < 2 * QUARTER_HZ


@pytest.mark.parametrize("offset_hz", [8.0, -60.0, 100.0])
def test_a_laser_started_fringes_off_locks_only_on_the_central_fringe(tmp_path, offset_hz):
    data, db, clock = _run(tmp_path, 0.4, 1, laser_offset_hz=offset_hz)
    silent = silent_wrong_lock(data, settling_s=0.0)
    assert silent["frames"] == 0 and silent["first_locked_s"] is not None
    locked = db.execute("SELECT detail FROM events WHERE kind='locked'").fetchone()[0]
    assert '"verified": true' in locked
    _on_central_fringe_after(data, _events(db, "locked")[0])
    assert clock.servo.verify_cycles > 0


def test_without_verification_the_same_start_runs_silently_wrong(tmp_path):
    """The control: the hyper-Ramsey lock alone settles 8 Hz off on the wrong fringe."""
    data, db, _ = _run(tmp_path, 0.4, 1, verify=0, laser_offset_hz=8.0)
    assert silent_wrong_lock(data, settling_s=0.0)["frames"] > 300
    assert '"verified": false' in db.execute(
        "SELECT detail FROM events WHERE kind='locked'").fetchone()[0]
    notes = summarise(data)[0]["notes"]
    assert any("not verified on the central fringe" in n for n in notes)


@pytest.mark.parametrize("jump_hz,seed", [(12.5, 1), (-40.0, 2), (100.0, 3)])
def test_a_laser_jump_is_caught_flagged_and_corrected(tmp_path, jump_hz, seed):
    jump = {"events": [{"at": "900s", "kind": "laser_jump", "value": jump_hz}]}
    data, db, clock = _run(tmp_path, 0.5, seed, **jump)
    errors = [t for t in _events(db, "fringe_error") if t > 900.0]
    assert errors and errors[0] - 900.0 < 180.0            # pooled: ~13 probes of 3.9 s
    assert _events(db, "fringe_restored")
    assert silent_wrong_lock(data, settling_s=0.0)["frames"] == 0
    _on_central_fringe_after(data, _events(db, "locked")[-1])
    assert clock.servo.fringe_errors >= 1


def test_quadrupole_slips_at_q0_20_hz_deterministic_are_found_at_acquisition(tmp_path):
    kw = {"deterministic": True, "q0_hz": 20.0, "flicker_floor": 0.0, "b_noise_t": 0.0}
    data, _, _ = _run(tmp_path, 0.4, 1, verify=0, **kw)
    assert silent_wrong_lock(data, settling_s=0.0)["frames"] > 300      # the control
    data, db, _ = _run(tmp_path, 0.4, 1, **kw)
    assert silent_wrong_lock(data, settling_s=0.0)["frames"] == 0
    _on_central_fringe_after(data, _events(db, "locked")[0])


@pytest.mark.parametrize("step_t", [1.5e-9, -10e-9])
def test_a_field_step_onto_the_alias_or_beyond_the_capture_is_caught(tmp_path, step_t):
    """1.5 nT: the lock settles on the 2.23 nT alias; 10 nT: 110-280 Hz, no lock holds."""
    step = {"events": [{"at": "900s", "kind": "b_step", "value": step_t}]}
    data, db, _ = _run(tmp_path, 0.6, 1, **step)
    assert silent_wrong_lock(data, settling_s=0.0)["frames"] == 0
    assert [t for t in _events(db, "fringe_error") if t > 900.0]
    _on_central_fringe_after(data, _events(db, "locked")[-1])
    b_true = data.b_true_t[-1]
    assert abs(data.b_t[-1] - b_true) < 0.05e-9


def _duty(db):
    n_verify, n_probe, n_all = db.execute(
        "SELECT SUM(line >= ?), SUM(line BETWEEN 0 AND 5), COUNT(*) FROM servo_cycles "
        "WHERE state = 'locked'", (VERIFY_LINE,)).fetchone()
    return n_verify / n_all, n_probe / n_all


def test_nominal_hours_have_no_false_fringe_error_and_the_duty_cycle_is_counted(tmp_path):
    data, db, clock = _run(tmp_path, 3.0, 2)
    assert not _events(db, "fringe_error")
    assert silent_wrong_lock(data, settling_s=0.0)["frames"] == 0
    verify, probe = _duty(db)
    assert verify == pytest.approx(1 / 37, rel=0.02)      # one Rabi probe per 3 x 12 cycles
    assert data.probe_duty == pytest.approx(probe)
    assert 0.97 < data.probe_duty < 0.975


def test_verify_every_frames_is_in_the_servo_params_and_the_config():
    assert ServoParams().verify_every_frames == 3
    assert load_clock_config(SIM)["servo"]["verify_every_frames"] == 3
    assert math.isclose(ServoParams().verify_h, 16.0)
