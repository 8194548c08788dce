"""`ionclock budget STORE` gives the run's own live budget; one channel naming scheme.

A clock run evaluates its shift budget live (ionclock.apparatus.live_budget) and stores each
evaluation in `budgets`. `ionclock budget STORE` must give, by default, the same rows,
validity and total as the run's last one, with the budget config the run used, and name
the inputs that are nominal. A logger store, whose channels carry the same names, feeds it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import tomllib

from ionclock.commands.main import main
from ionclock.physics.budget import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
TABLE_II_BOUNDS = ("zeeman1", "quadrupole", "aom_chirp", "probe_stark")


@pytest.fixture(scope="module")
def run_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("budget") / "run"
    assert main(["sim", "--duration", "2h", "--seed", "5", "--no-progress",
                 "--out", str(out)]) == 0
    return out / "ionclock.sqlite"


def _last_budget_row(store: Path) -> tuple:
    db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        return db.execute("SELECT t, total_fractional, sigma_fractional, valid, detail "
                          "FROM budgets ORDER BY t DESC LIMIT 1").fetchone()
    finally:
        db.close()


def test_budget_of_a_run_store_is_the_runs_last_live_budget(run_store, capsys):
    t, total, sigma, valid, detail = _last_budget_row(run_store)
    assert valid == 1 and t > 5000.0
    assert main(["budget", str(run_store), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert abs(data["total"]["shift_fractional"] - total) <= 1e-22
    assert abs(data["total"]["uncertainty_fractional"] - sigma) <= 1e-22
    assert data["total"]["valid"] is True
    live_rows = json.loads(detail)["rows"]
    assert [r["key"] for r in data["rows"]] == [r["key"] for r in live_rows]
    for mine, live in zip(data["rows"], live_rows):
        assert mine["valid"] == live["valid"]
        assert mine["shift"] == pytest.approx(live["shift"], abs=1e-9)
    prov = data["provenance"]
    assert prov["until"] == t and prov["window"].startswith("the run's last live budget")
    # the gauge measures the pressure, the micromotion monitor the ratios; the AC field is a
    # stated bound (seed convention): no input is nominal
    assert prov["nominal_inputs"] == []
    sources = prov["row_sources"]
    assert sources["bg_gas"].startswith("measured: pressure.outside")
    assert sources["qz_ac"].startswith("bound: ")
    assert sources["emm"].startswith("measured: mm.r1, mm.r2, mm.r3")
    assert sources["bbr"].startswith("measured: 5 of 5 sensors")
    assert sources == json.loads(detail)["provenance"]["row_sources"]
    assert prov["pressure_readings"] > 0


def test_budget_keeps_table_ii_bound_rows_and_says_what_is_nominal(run_store, capsys):
    assert main(["budget", str(run_store)]) == 0
    out = capsys.readouterr().out
    for label in ("Residual 1st Zeeman", "Electric quadrupole", "AOM phase chirp",
                  "Clock laser Stark"):
        assert label in out
    assert "INVALID" not in out
    # the gauge gives the pressure, the micromotion monitor the ratios
    assert "Nominal inputs (the budget config's values" not in out
    # each row names its source: measured channels, stated bounds, or nominal values
    rows = {line.split("  ")[0]: line for line in out.splitlines()}
    assert "measured: pressure.outside, highest of" in rows["Background gas"]
    assert "bound: alpha_z <B^2> with <B^2> <= 2e-13 T^2" in rows["Quadratic Zeeman (AC)"]
    assert "measured: mm.r1, mm.r2, mm.r3" in rows["Excess micromotion"]
    assert "bound: hyper-Ramsey suppression" in rows["AOM phase chirp"]
    inputs = next(line for line in out.splitlines() if line.startswith("Inputs:"))
    assert "window 1814.8 s to 5414.8 s (the run's last live budget" in inputs
    assert "99999" not in inputs and "00000" not in inputs      # 14.799999999999963 no more
    assert "config=recorded by the run" in inputs


def test_budget_measured_inputs_stay_available(run_store, capsys):
    """`--inputs measured`: every input from the store; the micromotion monitor's channels
    and the gauge's pressure are there, so every row is valid."""
    assert main(["budget", str(run_store), "--inputs", "measured", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["total"]["invalid_rows"] == []
    assert {r["key"] for r in data["rows"]} >= set(TABLE_II_BOUNDS)


def test_one_channel_name_scheme_across_clock_runs_logger_and_budget():
    budget = load_config(CONFIGS / "seed_clock.toml")["bbr"]["channels"]
    sensors = tomllib.loads((CONFIGS / "sim.toml").read_text())["instruments"]["thermometer"][
        "sensors"]
    assert sorted(sensors) == sorted(budget)
    for name in ("logger.sim.toml", "logger.example.toml"):
        channels = tomllib.loads((CONFIGS / name).read_text())["channels"]
        assert set(budget) <= set(channels), name
        assert all("." in ch for ch in channels), name   # QUANTITY.PLACE everywhere
        kelvin = {ch for ch, c in channels.items() if c.get("unit") == "K"}
        assert all(ch.startswith("temp.") for ch in kelvin), name


def test_a_logger_store_feeds_the_budget(tmp_path, capsys):
    text = (CONFIGS / "logger.sim.toml").read_text().replace(
        'path = "logger-sim.sqlite"', f'path = "{tmp_path / "env.sqlite"}"')
    cfg = tmp_path / "log.toml"
    cfg.write_text(text)
    assert main(["log", str(cfg), "--simulate", "--duration", "1d", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["budget", str(tmp_path / "env.sqlite"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    bbr = next(r for r in data["rows"] if r["key"] == "bbr")
    assert bbr["valid"]
    readings = data["provenance"]["temperature_readings"]
    assert set(readings) == set(load_config(CONFIGS / "seed_clock.toml")["bbr"]["channels"])
    assert all(n == 1441 for n in readings.values())   # a day at one a minute, each sensor
    # a logger measures no field: the config's nominal B, and the output says so
    assert data["provenance"]["nominal_inputs"][0] == "field"
    assert {r["key"] for r in data["rows"]} >= set(TABLE_II_BOUNDS)


def test_budget_takes_the_runs_folder_as_report_does(run_store, capsys):
    assert main(["budget", str(run_store), "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)["total"]
    assert main(["budget", str(run_store.parent), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == from_file


def test_the_vacuum_gauge_feeds_the_background_gas_row(run_store):
    """sim.toml's [instruments.pressure] (MKS 937B twin): readings in Pa every sample_s, the
    channel described, and the run's last budget takes the window's highest reading."""
    db = sqlite3.connect(f"file:{run_store}?mode=ro", uri=True)
    try:
        samples = db.execute("SELECT t, value FROM samples WHERE channel = 'pressure.outside' "
                             "ORDER BY t").fetchall()
        unit, source = db.execute("SELECT unit, source FROM channels "
                                  "WHERE name = 'pressure.outside'").fetchone()
    finally:
        db.close()
    assert len(samples) >= 100 and all(1e-9 < v < 1e-8 for _, v in samples)   # ~3 nPa
    assert unit == "Pa" and source.endswith("ch_1.pressure")
    t, _, _, _, detail = _last_budget_row(run_store)
    row = next(r for r in json.loads(detail)["rows"] if r["key"] == "bg_gas")
    window = json.loads(detail)["provenance"]["window"]
    assert row["inputs"]["pressure_pa"] == max(v for ts, v in samples
                                               if window[0] <= ts <= window[1])
    assert "background_gas" not in json.loads(detail)["provenance"]["nominal_inputs"]


def test_without_gauge_readings_the_pressure_is_nominal_and_said_so():
    from ionclock.apparatus.live_budget import LiveBudget

    live = LiveBudget(load_config(ROOT / "configs" / "seed_clock.toml"))
    live.add_pressure(10.0, float("nan"))          # a status word from the gauge: no reading
    inputs = live.inputs(20.0)
    assert inputs.pressure_pa == 3e-9
    assert "background_gas" in inputs.provenance["nominal_inputs"]
    live.add_pressure(30.0, 5e-9)
    live.add_pressure(40.0, 4e-9)
    inputs = live.inputs(50.0)
    assert inputs.pressure_pa == 5e-9 and inputs.provenance["pressure_readings"] == 2
    assert "background_gas" not in inputs.provenance["nominal_inputs"]
    assert live.inputs(50.0 + 3600.0).pressure_pa == 3e-9      # the window moved past them


def test_a_gauge_that_stops_giving_numbers_is_missing_with_its_reason_then_restored(tmp_path):
    """The clock run's environment: a missing reading is stored as no value, and the episode
    is recorded once with the reason (reading_missing), then reading_restored."""
    from ionclock.apparatus.clock_config import load_clock_config
    from ionclock.apparatus.clock_run import ClockRun

    cfg = load_clock_config(ROOT / "configs" / "sim.toml")
    run = ClockRun(cfg, tmp_path / "run", seed=2)
    twin = run.instruments["pressure"].twin

    def unplug():
        yield run.env.timeout(600.0)
        twin.unplug(1)                     # the cable off the cold cathode: a status word
        yield run.env.timeout(600.0)
        twin.unplug(1, False)

    run.env.process(unplug())
    run.run(1800.0, progress=False)
    db = sqlite3.connect(tmp_path / "run" / "ionclock.sqlite")
    try:
        events = db.execute("SELECT t, kind, detail FROM events WHERE source = "
                            "'pressure.outside' ORDER BY t").fetchall()
        values = db.execute("SELECT t, value FROM samples WHERE channel = 'pressure.outside' "
                            "ORDER BY t").fetchall()
    finally:
        db.close()
    gap = [t for t, v in values if v is None]
    assert gap and 600.0 <= min(gap) and max(gap) < 1260.0
    assert [k for _, k, _ in events] == ["reading_missing", "reading_restored"]
    (t_miss, _, miss), (t_back, _, back) = events
    assert t_miss == min(gap) and json.loads(miss)["reason"]   # the status word's reason
    assert json.loads(back)["missing_samples"] == len(gap)
    assert all(v is None or 1e-9 < v < 1e-8 for _, v in values)


def test_a_short_rf_trip_is_no_rf_off_data_for_the_bbr_row():
    """The trap cools ~0.4 K with the RF off, over many minutes: a trip of seconds must not
    let the BBR row drop its RF-off step (the sensors never saw the trap cold)."""
    from ionclock.apparatus.live_budget import LiveBudget
    from ionclock.physics.budget import longest_rf_off_s

    assert longest_rf_off_s([(0, 1), (10, 0), (20, 1), (30, 0), (40, 0), (50, 0), (60, 1)]) \
        == 20.0
    assert longest_rf_off_s([(0, 0)]) == 0.0
    cfg = load_config(ROOT / "configs" / "seed_clock.toml")
    for off_s, seen in ((10.0, False), (2400.0, True)):
        live = LiveBudget(cfg)
        for t in range(0, 3600, 10):
            live.add_sample(float(t), "rf.enabled", 0.0 if 600 <= t <= 600 + off_s else 1.0)
            for ch in cfg["bbr"]["channels"]:
                live.add_sample(float(t), ch, 79.5)
        inputs = live.inputs(3600.0)
        assert inputs.rf_off_seen is seen
        step = "RF off for 1800 s or more seen" if seen else "RF-off step 0.4 K added"
        assert step in inputs.provenance["row_sources"]["bbr"]
