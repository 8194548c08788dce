"""The procedure framework (procedures/base.py): pymeasure Worker + Results, apparatus, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pymeasure.experiment import Procedure, Results

from ionclock.errors import UserError
from ionclock.procedures.base import (
    Apparatus,
    IonclockProcedure,
    MeasurementFailed,
    run_headless,
)

ROOT = Path(__file__).resolve().parents[1]
SIM = str(ROOT / "configs" / "sim.toml")


class ThermometerTrace(IonclockProcedure):
    """Five readings of one sensor a minute apart (a procedure for the framework's tests)."""

    NAME = "test-trace"
    ROLES = ("thermometer",)
    DATA_COLUMNS = ["t_s", "temperature_k"]

    def measure(self):
        thermo = self.apparatus.instruments["thermometer"]
        for i in range(5):
            self.apparatus.wait(60.0)
            yield {"t_s": self.apparatus.now, "temperature_k": thermo.input_1.temperature}
            self.progress((i + 1) / 5)


class Failing(ThermometerTrace):
    NAME = "test-failing"

    def measure(self):
        yield from super().measure()
        raise RuntimeError("the unit said no")


def test_runs_under_pymeasure_worker_into_a_results_file_pymeasure_reads(tmp_path):
    proc = ThermometerTrace(config=SIM, seed=3)
    seen = []
    run_headless(proc, tmp_path / "trace.csv", on_progress=seen.append)
    assert proc.status == Procedure.FINISHED
    assert seen[0] == 0.0 and seen[-1] == 100.0
    loaded = Results.load(str(tmp_path / "trace.csv"), ThermometerTrace)
    data = loaded.data
    assert list(data["t_s"]) == [60.0, 120.0, 180.0, 240.0, 300.0]
    assert 70 < data["temperature_k"].mean() < 90
    assert loaded.procedure.seed == 3
    # the apparatus was left safe and released, and said so
    kinds = [e[1] for e in proc.apparatus.events]
    assert kinds == ["shutdown"] and not proc.apparatus.instruments


def test_an_error_inside_is_raised_once_the_apparatus_is_safe(tmp_path):
    proc = Failing(config=SIM)
    with pytest.raises(MeasurementFailed, match="RuntimeError: the unit said no"):
        run_headless(proc, tmp_path / "f.csv")
    assert proc.status == Procedure.FAILED
    assert [e[1] for e in proc.apparatus.events] == ["shutdown"]
    assert proc.apparatus.events[0][3]["reason"] == "error"
    assert len(Results.load(str(tmp_path / "f.csv"), Failing).data) == 5   # rows kept


def test_an_existing_file_is_never_appended_to(tmp_path):
    (tmp_path / "x.csv").write_text("t_s\n1\n")
    with pytest.raises(UserError, match="exists"):
        run_headless(ThermometerTrace(config=SIM), tmp_path / "x.csv")


def test_a_role_the_config_lacks_is_one_line(tmp_path):
    from ionclock.apparatus.clock_config import load_clock_config

    cfg = load_clock_config(SIM)
    del cfg["instruments"]["pressure"]   # a config without the role the measurement needs
    with pytest.raises(UserError, match=r"needs \[instruments.pressure\]"):
        Apparatus(cfg, ("thermometer", "pressure"))


def test_own_streams_per_seed_and_stream():
    from ionclock.apparatus.clock_config import load_clock_config

    a = Apparatus(load_clock_config(SIM), seed=4)
    b = Apparatus(load_clock_config(SIM), seed=4)
    assert a.rng(1).random() == b.rng(1).random() != a.rng(2).random()
