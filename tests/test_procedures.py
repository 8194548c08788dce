"""The characterisation procedures (issue 15): each under pymeasure's Worker into a Results
file pymeasure reads and the analysis takes; `ionclock measure` (errors, the calibration it
writes); the calibration file's round trip; the live budget using it and saying so."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from pymeasure.experiment import Procedure, Results

from ionclock.apparatus.live_budget import LiveBudget
from ionclock.commands.main import main
from ionclock.errors import UserError
from ionclock.physics.budget import load_config as load_budget_config
from ionclock.procedures.ac_field import AcFieldProcedure
from ionclock.procedures.analysis import ANALYSES
from ionclock.procedures.base import procedures, run_headless
from ionclock.procedures.bbr import BbrProcedure, rf_step
from ionclock.procedures.zeeman import AlphaZProcedure
from ionclock.storage import calibration

ROOT = Path(__file__).resolve().parents[1]
SIM = str(ROOT / "configs" / "sim.toml")
SEED_BUDGET = ROOT / "configs" / "seed_clock.toml"

#: Reduced runs (the full defaults are `ionclock measure NAME configs/sim.toml`).
REDUCED = {
    "zeeman": {"fields_ut": "10, 44", "lock_s": 600.0},
    "ac-field": {"repeats": 2, "steps": 60, "shots": 100},
    # RF off for five of the twin trap's 20 min time constants: the step settles
    "bbr": {"on_s": 2400.0, "off_s": 6000.0, "recover_s": 600.0, "sample_s": 120.0},
}


def _run(cls, tmp_path, seed=2):
    proc = cls(config=SIM, seed=seed, **REDUCED[cls.NAME])
    path = tmp_path / f"{cls.NAME}.csv"
    run_headless(proc, path)
    return proc, path


def test_every_procedure_is_registered_under_its_analysis_name():
    known = procedures()
    assert {"zeeman", "ac-field", "bbr"} <= set(known)
    for name, cls in known.items():
        assert name in ANALYSES, name
        module_columns = ANALYSES[name].columns
        for column in cls.DATA_COLUMNS:
            assert column in module_columns, (name, column)


def _check_results(cls, proc, path):
    assert proc.status == Procedure.FINISHED
    loaded = Results.load(str(path), cls)            # pymeasure reads its own file back
    assert list(loaded.data.columns) == cls.DATA_COLUMNS
    assert len(loaded.data) == len(proc.rows) > 0
    for name, param in proc.parameter_objects().items():
        assert str(getattr(loaded.procedure, name)) == str(param.value)
    return ANALYSES[cls.NAME].from_csv(path)          # and the analysis takes it as it is


def test_alpha_z_under_the_worker(tmp_path):
    proc, path = _run(AlphaZProcedure, tmp_path)
    result = _check_results(AlphaZProcedure, proc, path)
    assert len(proc.rows) == 2
    for row in proc.rows:   # B from the splittings of the locks at the fields asked for
        assert abs(row["b0_t"] - 37.197e-6) < 5e-9
        assert min(abs(row["b_t"] - b) for b in (10e-6, 44e-6)) < 5e-9
    assert result["alpha_z"].sigma > 0
    locks = [e for e in proc.apparatus.events if e[1] == "lock"]
    assert len(locks) == 6 and all(e[3]["frames"] > 100 for e in locks)


def test_alpha_z_refuses_a_field_beyond_the_coils_limit(tmp_path):
    proc = AlphaZProcedure(config=SIM, fields_ut="10, 60")
    with pytest.raises(UserError, match="above the coils' current limit 0.9 A"):
        run_headless(proc, tmp_path / "z.csv")


def test_ac_field_under_the_worker(tmp_path):
    proc, path = _run(AcFieldProcedure, tmp_path)
    result = _check_results(AcFieldProcedure, proc, path)
    truth = proc.truth()
    for row in proc.rows:
        assert abs(row["r"] - truth["ratio"]) < 6 * row["r_unc"]
        assert abs(row["b0_t"] - 56.363e-6) < 2e-11   # the AC field moves f_S by ~1e-7
    assert result["b_perp2"].contains(truth["b_perp2"])


def test_bbr_under_the_worker_switches_only_the_replica_and_restores_it(tmp_path):
    proc, path = _run(BbrProcedure, tmp_path)
    result = _check_results(BbrProcedure, proc, path)
    kinds = [e[1] for e in proc.apparatus.events]
    assert kinds == ["replica_rf_off", "replica_rf_on", "shutdown"]
    assert proc.replica.output_enabled is True or proc.apparatus.world.cryostat.rf_on
    assert proc.apparatus.world.cryostat.rf_on
    channels = {r["channel"] for r in proc.rows}
    assert channels == set(proc.sensors)
    assert {r["rf_on"] for r in proc.rows} == {0, 1}
    step, sem = rf_step(proc.rows, "temp.replica_trap")
    truth = proc.truth()
    assert abs(step - truth["rf_step_k"]) < 0.05        # the ~0.4 K of seed Fig. S2
    assert result["temperature"].contains(truth["temperature"])


def test_bbr_restores_the_replica_rf_after_an_error(tmp_path, monkeypatch):
    original = BbrProcedure.measure

    def broken(self):
        yield from original(self)
        raise RuntimeError("thermometer gone")

    monkeypatch.setattr(BbrProcedure, "measure", lambda self: broken(self))
    proc = BbrProcedure(config=SIM, **{**REDUCED["bbr"], "recover_s": 0.0})
    with pytest.raises(UserError, match="RuntimeError: thermometer gone"):
        run_headless(proc, tmp_path / "b.csv")
    kinds = [e[1] for e in proc.apparatus.events]
    assert kinds == ["replica_rf_off", "replica_rf_on", "shutdown"]
    assert proc.apparatus.world.cryostat.rf_on


# --- the calibration file ---------------------------------------------------------------------
def _entry(name="zeeman", t=None, **over):
    entry = {"name": name, "time_unix": time.time() if t is None else t,
             "time": calibration.iso(t or time.time()), "summary": "alpha_z = 14.0 +/- 0.02",
             "data_file": "/data/zeeman.csv", "budget": {"zeeman": {
                 "alpha_z_hz_per_mt2": 14.0, "alpha_z_unc_hz_per_mt2": 0.02}},
             "rows": ["qz_dc", "qz_ac"]}
    entry.update(over)
    return entry


def test_calibration_round_trip_and_overlay(tmp_path):
    path = tmp_path / "cal.json"
    assert calibration.load(path)["entries"] == {}          # absent: empty, not an error
    calibration.record(path, _entry(t=1000.0))
    calibration.record(path, _entry("ac-field", t=2000.0, summary="<B^2>", budget={
        "zeeman": {"b2_ac_t2": 2e-13, "b2_ac_unc_t2": 1e-13}}, rows=["qz_ac"]))
    calibration.record(path, _entry(t=3000.0))              # a newer zeeman replaces the old
    data = calibration.load(path)
    assert sorted(data["entries"]) == ["ac-field", "zeeman"]
    assert data["entries"]["zeeman"]["time_unix"] == 3000.0
    cfg = calibration.apply(load_budget_config(SEED_BUDGET), data)
    assert cfg["zeeman"]["alpha_z_hz_per_mt2"] == 14.0
    assert cfg["zeeman"]["b2_ac_t2"] == 2e-13
    notes = calibration.row_notes(data, 3000.0 + 5400.0)
    assert "calibration zeeman" in notes["qz_dc"] and "(90 min old)" in notes["qz_dc"]
    assert "calibration ac-field" in notes["qz_ac"] and "calibration zeeman" in notes["qz_ac"]
    assert "bbr" not in notes
    assert not list(tmp_path.glob("*.tmp"))


def test_a_result_less_precise_than_the_stated_value_is_kept_but_not_used(tmp_path):
    """alpha_z measured to +-63 Hz/mT^2 (fields the coil limit keeps small) must not replace
    the stated 14.345(40): the budget keeps the better value and says why."""
    path = tmp_path / "cal.json"
    calibration.record(path, _entry(t=1000.0, summary="alpha_z = 79 +/- 63", budget={
        "zeeman": {"alpha_z_hz_per_mt2": 79.0, "alpha_z_unc_hz_per_mt2": 63.0}}))
    data = calibration.load(path)
    base = load_budget_config(SEED_BUDGET)
    skipped = calibration.less_precise(base, data)
    assert "less precise than the stated 0.04" in skipped["zeeman"]
    cfg = calibration.apply(base, data)
    assert cfg["zeeman"]["alpha_z_hz_per_mt2"] == base["zeeman"]["alpha_z_hz_per_mt2"]
    notes = calibration.row_notes(data, 2000.0, skipped=skipped)
    assert notes["qz_dc"].startswith("calibration zeeman not used (zeeman.alpha_z_unc")
    assert "zeeman" in data["entries"]                        # kept in the file


def test_a_bad_calibration_is_one_line(tmp_path):
    bad = tmp_path / "cal.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not readable as JSON"):
        calibration.load(bad)
    bad.write_text(json.dumps({"format": "other"}))
    with pytest.raises(UserError, match="not an ionclock-calibration file"):
        calibration.load(bad)
    data = calibration.empty()
    data["entries"]["zeeman"] = _entry(budget={"zeeman": {"alpha_z_hz_per_mt2": -1.0}})
    with pytest.raises(UserError, match="calibration.*alpha_z_hz_per_mt2"):
        calibration.apply(load_budget_config(SEED_BUDGET), data)


def test_the_live_budget_uses_the_calibration_and_names_it_with_its_age():
    cfg = load_budget_config(SEED_BUDGET)
    data = calibration.empty()
    data["entries"]["zeeman"] = _entry(t=1_000_000.0, budget={"zeeman": {
        "alpha_z_hz_per_mt2": 20.0, "alpha_z_unc_hz_per_mt2": 0.03}})
    t0 = 1_000_000.0 + 3 * 3600.0

    def feed(live):
        for k in range(60):
            t = 60.0 * k
            live.add_field(t, 37.197e-6)
            for ch in cfg["bbr"]["channels"]:
                live.add_temperature(t, ch, 79.5)
        return live.evaluate(3540.0)

    plain = feed(LiveBudget(cfg))
    measured = feed(LiveBudget(cfg, calibration=data, clock_unix=lambda t: t0 + t))
    ratio = measured.row("qz_dc").value / plain.row("qz_dc").value
    assert ratio == pytest.approx(20.0 / 14.345)
    source = measured.provenance["row_sources"]["qz_dc"]
    assert source.startswith("measured: B from the splittings")
    assert "calibration zeeman: alpha_z = 14.0 +/- 0.02" in source and "(4.0 h old)" in source
    assert "calibration" not in plain.provenance["row_sources"]["qz_dc"]
    table = measured.to_table()
    assert "calibration zeeman" in table and "4.0 h old" in table
    assert measured.provenance["calibration"]["entries"]["zeeman"]["rows"] == ["qz_dc",
                                                                                "qz_ac"]


# --- ionclock measure -------------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["measure", "nope", SIM], "no procedure 'nope'"),
    (["measure", "bbr"], "give the clock config"),
    (["measure", "bbr", "/no/such.toml"], "no such config file"),
    (["measure", "bbr", SIM, "--set", "lock_s"], "expected PARAM=VALUE"),
    (["measure", "bbr", SIM, "--set", "nope=1"], "--set nope: no such parameter"),
    (["measure", "zeeman", SIM, "--set", "fields_ut=10, 80", "--calibration", "/tmp/x.json"],
     "above the coils' current limit"),
    (["measure", "bbr", SIM, "--set", "sample_s=-3", "--calibration", "/tmp/x.json"],
     "--set sample_s=-3"),
])
def test_measure_errors_are_one_line_and_status_2(argv, message, capsys, tmp_path):
    argv = [*argv, "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ionclock: error:") and message in err and "\n" not in err


def test_measure_records_the_result_with_its_provenance(tmp_path, capsys):
    cal = tmp_path / "cal.json"
    argv = ["measure", "ac-field", SIM, "--out", str(tmp_path / "m"), "--calibration",
            str(cal), "--seed", "3", "--set", "repeats=2", "--set", "steps=60", "--json"]
    assert main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    printed = json.loads(out[-1])
    entry = calibration.load(cal)["entries"]["ac-field"]
    assert entry == json.loads(json.dumps(printed))
    assert Path(entry["data_file"]).is_file() and Path(entry["plot_file"]).is_file()
    assert entry["procedure"].startswith("ac-field/1 (ionclock ")
    assert entry["settings"]["repeats"] == 2 and entry["settings"]["seed"] == 3
    assert entry["rows"] == ["qz_ac"] and entry["simulated"] is True
    est = entry["estimate"]
    assert est["name"] == "b_perp2" and est["low"] < est["value"] < est["high"]
    assert entry["budget"]["zeeman"]["b2_ac_unc_t2"] == pytest.approx(est["sigma"])
    assert entry["truth"]["b_perp2"] == pytest.approx(1.1e-13)
    assert [e["kind"] for e in entry["events"]] == ["g_ratio", "g_ratio"]   # no instrument opened
    assert abs(time.time() - entry["time_unix"]) < 600
    # the data file is the analysis' input as it stands
    assert ANALYSES["ac-field"].from_csv(entry["data_file"]).value == pytest.approx(
        est["value"])


def test_a_clock_run_uses_the_calibration_and_its_store_replays_it(tmp_path, capsys):
    """The whole path: a calibration file named by the clock config -> the run's live budget
    -> its store -> `ionclock budget STORE`, each changed row naming the result and its age."""
    from ionclock.apparatus.clock_config import load_clock_config
    from ionclock.apparatus.clock_run import ClockRun

    cal = tmp_path / "cal.json"
    calibration.record(cal, _entry(t=time.time() - 7200.0, budget={"zeeman": {
        "alpha_z_hz_per_mt2": 15.0, "alpha_z_unc_hz_per_mt2": 0.03}}))
    cfg = load_clock_config(SIM)
    cfg["budget"]["calibration"] = str(cal)
    cfg["budget"]["update_s"] = 600.0
    run = ClockRun(cfg, tmp_path / "run", seed=3)
    run.run(1800.0, progress=False)
    assert main(["budget", str(tmp_path / "run" / "ionclock.sqlite"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    sources = data["provenance"]["row_sources"]
    assert "calibration zeeman: alpha_z = 14.0 +/- 0.02" in sources["qz_dc"]
    # its age at the budget's time: two hours before the run started, plus the run's time
    age = calibration.age_text(7200.0 + data["provenance"]["until"])
    assert f"({age} old)" in sources["qz_dc"]
    assert "calibration" not in sources["bbr"]
    qz = next(r for r in data["rows"] if r["key"] == "qz_dc")
    b = 37.197e-6
    assert qz["shift_fractional"] == pytest.approx(15.0e6 * b * b / 411042129776400.0,
                                                   rel=1e-4)


def test_budget_nominal_takes_a_calibration_and_names_each_rows_source(tmp_path, capsys):
    cal = tmp_path / "cal.json"
    calibration.record(cal, _entry(t=time.time() - 1800.0))
    assert main(["budget", "--nominal", str(SEED_BUDGET), "--calibration", str(cal),
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    sources = data["provenance"]["row_sources"]
    assert sources["qz_dc"].startswith("calibration zeeman: alpha_z = 14.0 +/- 0.02")
    assert "(30 min old)" in sources["qz_dc"]
    assert sources["bbr"] == "nominal: the config's value"
    assert main(["budget", "--nominal", str(SEED_BUDGET)]) == 0
    plain = capsys.readouterr().out
    assert "calibration" not in plain


def test_a_calibration_the_live_measurement_supersedes_is_named_as_not_used():
    cfg = load_budget_config(SEED_BUDGET)
    data = calibration.empty()
    data["entries"]["micromotion"] = _entry("micromotion", t=1_000_000.0, summary="R = 0.05",
                                            budget={"micromotion": {
                                                "nominal_ratios": [0.05, 0.05, 0.05]}},
                                            rows=["emm"])
    live = LiveBudget(cfg, calibration=data, clock_unix=lambda t: 1_000_000.0 + t)
    for k in range(60):
        t = 60.0 * k
        live.add_field(t, 37.197e-6)
        for ch in cfg["bbr"]["channels"]:
            live.add_temperature(t, ch, 79.5)
    nominal = live.evaluate(3540.0).provenance["row_sources"]["emm"]
    assert nominal.startswith("nominal: [micromotion] nominal_ratios")
    assert "calibration micromotion: R = 0.05" in nominal          # the calibrated ratios
    for ch in cfg["micromotion"]["channels"]:
        live.add_sample(3500.0, ch, 0.01)
    measured = live.evaluate(3540.0).provenance["row_sources"]["emm"]
    assert measured.startswith("measured: mm.r1")
    assert "calibration micromotion not used (measured live)" in measured
    assert "R = 0.05" not in measured
