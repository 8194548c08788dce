"""Twin events: the laser_jump kind, and every event checked at load (one line, exit 2)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ionclock.apparatus.clock_config import load_clock_config
from ionclock.apparatus.clock_run import ClockRun
from ionclock.commands.main import main
from ionclock.errors import ConfigError
from tests.test_world import make_world

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "configs" / "sim.toml"


# --- the laser_jump event in the world -----------------------------------------------------
def test_a_laser_jump_steps_the_clock_laser_and_is_logged():
    w = make_world(laser_offset_hz=2.0, cavity_drift_hz_s=0.01,
                   events=((100.0, "laser_jump", 37.5, 0.0), (200.0, "laser_jump", -500.0, 0.0)))
    before = w.laser_offset_hz(99.0)           # samples the instant before the jump
    w.env.run(until=99.0)
    assert w.cavity_offset_hz() == pytest.approx(2.0 + 0.99)
    w.env.run(until=100.0)
    w.cavity_offset_hz()                       # cached at t = 100 s before the jump fires
    w.env.run(until=101.0)
    assert w.cavity_offset_hz(100.0) == pytest.approx(2.0 + 1.0 + 37.5)
    assert w.laser_offset_hz() - before == pytest.approx(37.5 + 0.02)
    w.env.run(until=300.0)
    assert w.cavity_offset_hz() == pytest.approx(2.0 + 3.0 + 37.5 - 500.0)
    assert [(t, k, d) for t, k, d in w.log] == [(100.0, "laser_jump", {"delta_hz": 37.5}),
                                                (200.0, "laser_jump", {"delta_hz": -500.0})]


def test_a_laser_jump_reaches_the_store_as_a_twin_event(tmp_path):
    cfg = load_clock_config(SIM, overrides={"twin": {"events": [
        {"at": "5min", "kind": "laser_jump", "value": 4.0}]}}, run_s=600.0)
    clock = ClockRun(cfg, tmp_path / "run", seed=2)
    clock.run(600.0, progress=False)
    db = sqlite3.connect(tmp_path / "run" / "ionclock.sqlite")
    rows = db.execute("SELECT t, source, detail FROM events WHERE kind = 'laser_jump'").fetchall()
    assert len(rows) == 1
    t, source, detail = rows[0]
    assert t == pytest.approx(300.0) and source == "twin"
    assert json.loads(detail) == {"delta_hz": 4.0}
    assert clock.world._laser_steps_hz == 4.0


# --- every event value checked at load ----------------------------------------------------
GOOD = [
    ('kind = "laser_jump"\nvalue = 1e6', 0),
    ('kind = "laser_jump"\nvalue = -250.0', 0),
    ('kind = "b_step"\nvalue = -1e-6', 0),
    ('kind = "q0"\nvalue = 100.0', 0),
    ('kind = "shutter_stuck"\nvalue = 0.0\nduration = "10min"', 0),
    ('kind = "shutter_stuck"\nvalue = 0.25', 0),
    ('kind = "refill"\nvalue = 5.0', 0),
    ('kind = "temperature_excursion"\nvalue = -20.0\nduration = "1h"', 0),
    ('kind = "ion_loss"\nduration = "0s"', 0),
]

BAD = [
    ('at = "2h"\nkind = "b_step"\nvalue = 1e-9', "twin.events[0].at: '2h' is after the run's end"),
    ('at = "-5s"\nkind = "b_step"\nvalue = 1e-9', "twin.events[0].at: '-5s' is negative"),
    ('at = "10s"\nkind = "ion_loss"\nduration = "-1min"',
     "twin.events[0].duration: '-1min' is negative"),
    ('at = "10s"\nkind = "shutter_stuck"\nduration = "-3s"',
     "twin.events[0].duration: '-3s' is negative"),
    ('at = "10s"\nkind = "b_step"\nvalue = 1.0', "twin.events[0].value: 1.0 is out of range"),
    ('at = "10s"\nkind = "b_step"\nvalue = -2e-6', "twin.events[0].value: -2e-06 is out of range"),
    ('at = "10s"\nkind = "q0"\nvalue = 1000.0', "twin.events[0].value: 1000.0 is out of range"),
    ('at = "10s"\nkind = "laser_jump"\nvalue = 2e6', "twin.events[0].value: 2000000.0 is out of"),
    ('at = "10s"\nkind = "shutter_stuck"\nvalue = 1.5', "twin.events[0].value: 1.5 is out of"),
    ('at = "10s"\nkind = "shutter_stuck"\nvalue = -0.1', "twin.events[0].value: -0.1 is out of"),
    ('at = "10s"\nkind = "refill"\nvalue = 30.0', "twin.events[0].value: 30.0 is out of range"),
    ('at = "10s"\nkind = "refill"\nvalue = -1.0', "twin.events[0].value: -1.0 is out of range"),
    ('at = "10s"\nkind = "temperature_excursion"\nvalue = 25.0',
     "twin.events[0].value: 25.0 is out of range"),
    ('at = "10s"\nkind = "ion_loss"\nvalue = 3.0', "twin.events[0].value: 3.0 is out of range"),
    ('at = "10s"\nkind = "b_step"\nvalue = 1e-9\nduration = "5min"',
     "twin.events[0].duration: b_step takes no duration"),
    ('at = "10s"\nkind = "mode_hop"', "twin.events[0].kind: 'mode_hop' is not one of"),
    ('at = "soon"\nkind = "q0"', "twin.events[0].at: bad duration 'soon'"),
]


def scenario(tmp_path: Path, event: str, twin: str = "") -> Path:
    path = tmp_path / "scenario.toml"
    path.write_text(f"[twin]\n{twin}\n" + (f"[[twin.events]]\n{event}\n" if event else ""))
    return path


@pytest.mark.parametrize("event,_", GOOD)
def test_events_within_their_physical_range_load(tmp_path, event, _):
    path = scenario(tmp_path, 'at = "30min"\n' + event)
    (ev,) = load_clock_config(SIM, scenario=str(path), run_s=3600.0)["twin"]["events"]
    assert ev["at_s"] == 1800.0


@pytest.mark.parametrize("event,expect", BAD)
def test_a_bad_event_is_one_line_and_exit_2(tmp_path, capsys, event, expect):
    status = main(["sim", "--scenario", str(scenario(tmp_path, event)), "--duration", "1h",
                   "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2
    assert expect in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()        # nothing was started


def test_an_event_at_the_runs_end_is_allowed_and_one_after_is_not():
    events = [{"at": "1h", "kind": "laser_jump", "value": 10.0}]
    load_clock_config(SIM, overrides={"twin": {"events": events}}, run_s=3600.0)
    load_clock_config(SIM, overrides={"twin": {"events": events}})    # length unknown
    with pytest.raises(ConfigError, match="after the run's end"):
        load_clock_config(SIM, overrides={"twin": {"events": events}}, run_s=3599.0)


@pytest.mark.parametrize("offset,ok", [(1000.0, True), (-1000.0, True), (-250.0, True),
                                       (1000.5, False), (-5000.0, False)])
def test_laser_offset_covers_the_capture_range(tmp_path, capsys, offset, ok):
    path = scenario(tmp_path, "", twin=f"laser_offset_hz = {offset!r}")
    if ok:
        assert load_clock_config(SIM, scenario=str(path))["twin"]["laser_offset_hz"] == offset
        return
    status = main(["sim", "--scenario", str(path), "--duration", "10s",
                   "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err
    assert status == 2 and "twin.laser_offset_hz" in err and "1000.0" in err
    assert len(err.strip().splitlines()) == 1


def test_a_one_tesla_field_step_stops_the_real_command_without_a_traceback(tmp_path):
    path = scenario(tmp_path, 'at = "10s"\nkind = "b_step"\nvalue = 1.0')
    result = subprocess.run(
        [sys.executable, "-m", "ionclock", "sim", "--scenario", str(path), "--duration",
         "1min", "--no-progress", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "ionclock: error: config: twin.events[0].value: 1.0 is out of range (allowed -1e-06 "
        "to 1e-06 T for b_step: a field step of at most 1 uT)")
    assert not (tmp_path / "o").exists()
