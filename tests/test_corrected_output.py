"""Issue 6 live: the corrected clock frequency against the twin's unperturbed transition.

A deterministic twin (no projection noise) sees a +5 K temperature excursion and a field
that drifts by 0.35 uT between the two windows compared. The raw servo frequency moves by
the physical shift change (BBR T^4, quadratic Zeeman B^2), while the output corrected by the
live budget stays on nu0 within its stated uncertainty.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from ionclock.apparatus.clock_config import load_clock_config
from ionclock.apparatus.clock_run import ClockRun
from ionclock.physics.constants import NU0_CA

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def excursion_run(tmp_path_factory):
    twin = {"deterministic": True, "flicker_floor": 0.0, "b_noise_t": 0.0,
            "b_drift_t_per_h": 100e-9, "q0_hz": 1.0,
            "events": [{"at": "3h", "kind": "temperature_excursion", "value": 5.0,
                        "duration": "4h"}]}
    cfg = load_clock_config(ROOT / "configs" / "sim.toml", overrides={"twin": twin})
    out = tmp_path_factory.mktemp("excursion")
    clock = ClockRun(cfg, out, seed=3)
    clock.run(6.5 * 3600.0, progress=False)
    return sqlite3.connect(out / "ionclock.sqlite")


def window(db, t0, t1):
    return db.execute(
        "SELECT AVG(nu_abs_hz), AVG(corrected_hz), MAX(corrected_sigma_hz), COUNT(*) "
        "FROM lock_frames WHERE locked = 1 AND holdover = 0 AND corrected_hz IS NOT NULL "
        "AND t >= ? AND t < ?", (t0, t1)).fetchone()


def test_corrected_output_stays_on_the_unperturbed_transition(excursion_run):
    db = excursion_run
    before = window(db, 1.0 * 3600, 3.0 * 3600)
    during = window(db, 4.5 * 3600, 6.5 * 3600)
    for raw, corrected, sigma, n in (before, during):
        assert n > 3000
        # the twin's unperturbed transition is nu0 itself: corrected - 0 within 1 sigma
        assert abs(corrected) < sigma
        assert sigma / NU0_CA == pytest.approx(4e-19, rel=0.5)
    # the raw frequency moved by the shift change: BBR (+5 K at ~80 K: ~ +1.2e-18) and the
    # quadratic Zeeman shift (2 alpha B dB, dB = 0.35 uT: ~ +0.9e-18)
    moved = (during[0] - before[0]) / NU0_CA
    assert moved > 1.5e-18 and moved < 3.0e-18
    budget_moved = db.execute(
        "SELECT (SELECT AVG(total_fractional) FROM budgets WHERE valid = 1 AND t >= ? AND t < ?)"
        " - (SELECT AVG(total_fractional) FROM budgets WHERE valid = 1 AND t >= ? AND t < ?)",
        (4.5 * 3600, 6.5 * 3600, 1.0 * 3600, 3.0 * 3600)).fetchone()[0]
    assert moved == pytest.approx(budget_moved, abs=0.4e-18)


def test_budget_rows_record_their_window_and_a_missing_input_is_invalid(excursion_run):
    import json

    db = excursion_run
    first_t, first_valid, detail = db.execute(
        "SELECT t, valid, detail FROM budgets ORDER BY t LIMIT 1").fetchone()
    assert first_valid == 0            # no locked frame yet: the Zeeman row cannot be had
    rows = {r["key"]: r for r in json.loads(detail)["rows"]}
    assert not rows["qz_dc"]["valid"] and "no locked frame" in rows["qz_dc"]["reason"]
    last = json.loads(db.execute("SELECT detail FROM budgets ORDER BY t DESC LIMIT 1")
                      .fetchone()[0])
    assert last["provenance"]["source"] == "live"
    assert last["provenance"]["field_frames"] > 2000
    # no corrected output is claimed from an invalid budget
    n_bad = db.execute("SELECT COUNT(*) FROM lock_frames WHERE corrected_hz IS NOT NULL "
                       "AND t < (SELECT MIN(t) FROM budgets WHERE valid = 1)").fetchone()[0]
    assert n_bad == 0
