"""Start-up adopts the apparatus as it finds it (issue 11): restarts on one simulated apparatus.

A real coil supply keeps its current between program starts; with the default
``[shutdown] coils = "hold"`` the next start finds it on at 0.744 A. Here one twin world and its
units outlive the runs: the registry's twin factory answers each ``sim://`` resource of the
world with the unit it built the first time, as a supply on the bench answers at its address
whatever program opens it. Each run is driven as ``ionclock run`` drives it
(``ClockRun(cfg, out).run(duration, progress=False)``), on simulated time (the world's own
environment) instead of the wall clock. The coil twin's `history` (every change of its output
current) is the judge of "never a step".
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
import simpy

from ionclock.apparatus import registry
from ionclock.apparatus.clock_config import load_clock_config
from ionclock.apparatus.clock_run import ClockRun
from ionclock.apparatus.resilience import InstrumentOffline
from ionclock.commands.main import main
from ionclock.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
SIM = ROOT / "configs" / "sim.toml"
RUN_S = 600.0
COIL = "instruments.coils.resource"


class Apparatus:
    """One simulated apparatus that outlives the programs run on it: a world and its units."""

    def __init__(self, monkeypatch):
        cfg = load_clock_config(SIM)
        self.world = registry.make_world(simpy.Environment(), cfg["twin"], cfg["servo"],
                                         cfg["instruments"])
        self.units: dict[str, object] = {}
        make = registry.make_twin

        def twin(model, world, key="resource", **options):
            assert world is self.world, "one apparatus, one world"
            if key not in self.units:
                self.units[key] = make(model, world, key, **options)
            return self.units[key]

        monkeypatch.setattr(registry, "make_twin", twin)

    def unit(self, role: str):
        """The twin behind config role `role`."""
        return self.units[f"instruments.{role}.resource"]

    def run(self, out: Path, duration_s: float = RUN_S, **changes) -> dict:
        """One program start on the apparatus, as `ionclock run` makes it; the summary."""
        cfg = load_clock_config(SIM)
        cfg["instruments"]["coils"].update(changes)
        return ClockRun(cfg, out, world=self.world).run(duration_s, progress=False)


def events(out: Path) -> list[tuple[float, str, dict]]:
    """(t, kind, detail) of a run's store, in the order recorded."""
    db = sqlite3.connect(out / "ionclock.sqlite")
    try:
        rows = db.execute("SELECT t, kind, detail FROM events ORDER BY rowid").fetchall()
    finally:
        db.close()
    return [(t, kind, json.loads(detail)) for t, kind, detail in rows]


def first(evs, kind):
    return next(detail for _, k, detail in evs if k == kind)


def coil_steps(twin, since: int = 0, channel: int = 2) -> list[float]:
    """The changes of `channel`'s output current (A) in the twin's history from entry `since`,
    starting from the current that flowed before it."""
    history = list(twin.history)
    before = [a for _, ch, a in history[:since] if ch == channel]
    previous = before[-1] if before else 0.0
    steps = []
    for _, ch, amps in history[since:]:
        if ch == channel:
            steps.append(amps - previous)
            previous = amps
    return steps


def max_step(cfg_path: Path = SIM) -> float:
    coils = load_clock_config(cfg_path)["instruments"]["coils"]
    return coils["slew_a_per_s"] * 0.1   # the driver's default step interval, 0.1 s


def test_three_restarts_on_one_apparatus_lock_and_never_step_the_coil(tmp_path, monkeypatch):
    app = Apparatus(monkeypatch)
    cfg = load_clock_config(SIM)
    assert cfg["shutdown"]["coils"] == "hold"    # the default: each run leaves the field on
    target = cfg["instruments"]["coils"]["current_a"]
    found = []
    for i in range(3):
        out = tmp_path / f"run{i}"
        summary = app.run(out)
        evs = events(out)
        kinds = [k for _, k, _ in evs]
        assert kinds[0] == "coils_found"            # the run's first word: what it found
        found.append(evs[0][2])
        assert "locked" in kinds, f"run {i} never locked"
        assert summary["locked_fraction"] > 0.5
        assert summary["simulated_s"] == pytest.approx(RUN_S)
        assert first(evs, "run_stopped") == {"reason": "end"}
        assert first(evs, "shutdown")["actions"]["coils"][0] == "currents held"
        supply = app.unit("coils")
        assert supply.output[2] and supply.effective_current(2) == pytest.approx(target)

    assert found[0]["output"] is False and found[0]["current_a"] == 0.0
    for later in found[1:]:   # left on by the run before: adopted, not refused
        assert later["output"] is True
        assert later["current_a"] == pytest.approx(target, abs=1e-3)
        assert later["setpoint_a"] == pytest.approx(target)

    supply = app.unit("coils")
    steps = coil_steps(supply)
    assert steps and max(abs(s) for s in steps) <= max_step() + 1e-9
    assert sum(steps) == pytest.approx(target)
    # only the first start ramped: the later ones found the field where it belongs
    field_ready = first(events(tmp_path / "run0"), "field_ready")
    assert field_ready == {"current_a": target}
    assert max(t for t, _, _ in supply.history) < RUN_S
    assert app.world.coil_current_a == pytest.approx(target)


def test_a_start_reprograms_units_left_in_unknown_states(tmp_path, monkeypatch):
    app = Apparatus(monkeypatch)
    target = load_clock_config(SIM)["instruments"]["coils"]["current_a"]
    app.run(tmp_path / "run0")
    supply, dds = app.unit("coils"), app.unit("aom")

    # Another program (or a person) was here: the coil output switched off with its setpoint
    # kept, the DDS in external update with its table running and full amplitude, the counter
    # in another mode, counting, the pulser on its internal trigger.
    supply.handle("OUTP 0, (@2)")
    for line in ("I e", "m t", "V0 1023"):
        dds.handle(line)
    for line in ("CM 1", "GM 0,0", "NP 7", "CS"):
        app.unit("counter").handle(line)
    app.unit("pulser").handle("TSRC 0")
    since = len(supply.history)
    app.run(tmp_path / "run1")
    evs = events(tmp_path / "run1")
    assert evs[0][1] == "coils_found"
    assert evs[0][2]["output"] is False and evs[0][2]["setpoint_a"] == pytest.approx(target)
    assert "locked" in [k for _, k, _ in evs]
    assert not dds.external_update and not dds.manual_update
    steps = coil_steps(supply, since)
    assert max(abs(s) for s in steps) <= max_step() + 1e-9
    assert sum(steps) == pytest.approx(target)

    # The compliance turned down by hand: the coil held at 0.5 A (CV) under a 0.744 A
    # setpoint; and the DDS in manual update. The ramp starts from the 0.5 A that flows.
    supply.handle("VOLT 1, (@2)")
    dds.handle("I m")
    assert supply.effective_current(2) == pytest.approx(0.5)
    since = len(supply.history)
    app.run(tmp_path / "run2")
    evs = events(tmp_path / "run2")
    assert evs[0][2]["output"] is True
    assert evs[0][2]["current_a"] == pytest.approx(0.5, abs=1e-3)
    assert "locked" in [k for _, k, _ in evs]
    steps = coil_steps(supply, since)
    assert max(abs(s) for s in steps) <= max_step() + 1e-9
    assert supply.effective_current(2) == pytest.approx(target)


def test_a_start_up_error_is_the_stop_reason_and_the_shutdown_still_runs(tmp_path,
                                                                         monkeypatch):
    app = Apparatus(monkeypatch)
    app.run(tmp_path / "run0", duration_s=60.0)
    supply = app.unit("coils")
    since = len(supply.history)

    # The supply stops answering: the start-up cannot read it back.
    supply.faults.timeout = True
    with pytest.raises(InstrumentOffline):
        app.run(tmp_path / "run1", duration_s=60.0)
    supply.faults.timeout = False
    evs = events(tmp_path / "run1")
    stopped = first(evs, "run_stopped")
    assert stopped["reason"] == "error: InstrumentOffline"
    assert "no reply" in stopped["error"]
    shutdown = first(evs, "shutdown")
    assert shutdown["reason"] == "error: InstrumentOffline"
    assert shutdown["actions"]["coils"][0] == "offline: left as it is"

    # A compliance below what the coil takes now would cut the current: refused, recorded.
    with pytest.raises(ConfigError, match="compliance_v"):
        app.run(tmp_path / "run2", duration_s=60.0, compliance_v=1.0)
    evs = events(tmp_path / "run2")
    assert first(evs, "run_stopped")["reason"] == "error: ConfigError"
    assert first(evs, "shutdown")["actions"]["coils"][0] == "currents held"
    assert coil_steps(supply, since) == []   # nothing touched the coil current
    assert supply.voltage_set[2] == 10.0

    # and the apparatus is fit for the next start
    app.run(tmp_path / "run3", duration_s=RUN_S)
    assert "locked" in [k for _, k, _ in events(tmp_path / "run3")]
    assert coil_steps(supply, since) == []


def test_ionclock_run_on_a_supply_left_on_records_its_error(tmp_path, monkeypatch, capsys):
    # `ionclock run` on a supply the last program left on at the field's current, with a
    # config whose compliance is below the voltage that current takes: one line, exit 2, the
    # reason in the store, the coils held.
    text = SIM.read_text()
    assert "compliance_v = 10.0" in text
    text = text.replace("compliance_v = 10.0", "compliance_v = 1.0")
    text = re.sub(r'(?m)^config = ".*seed_clock\.toml"',
                  f'config = "{ROOT / "configs" / "seed_clock.toml"}"', text)
    cfg = tmp_path / "lab.toml"
    cfg.write_text(text)
    built = {}
    make = registry.make_twin

    def left_on(model, world, key="resource", **options):
        twin = built[key] = make(model, world, key, **options)
        if key == COIL:   # as the last program left it (the world hears it)
            for line in ("VOLT 10, (@2)", "CURR 0.74394, (@2)", "OUTP 1, (@2)"):
                twin.handle(line)
        return twin

    monkeypatch.setattr(registry, "make_twin", left_on)
    out = tmp_path / "lab"
    status = main(["run", str(cfg), "--duration", "60s", "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    assert "instruments.coils.compliance_v: 1.0 V is below" in err
    assert "Traceback" not in err
    evs = events(out)
    assert evs[0][1] == "coils_found" and evs[0][2]["output"] is True
    stopped = first(evs, "run_stopped")
    assert stopped["reason"] == "error: ConfigError"
    assert "would step the current" in stopped["error"]
    assert first(evs, "shutdown")["actions"]["coils"][0] == "currents held"
    supply = built[COIL]
    assert supply.voltage_set[2] == 10.0 and supply.effective_current(2) == pytest.approx(0.74394)


@pytest.mark.parametrize("model", ["keysight_e36312a", "rigol_dp832"])
def test_the_coil_twin_records_every_change_of_its_output_current(model):
    class World:
        env = simpy.Environment()
        coil_current_a = None

        def coil_changed(self, channel, current_a):
            self.coil_current_a = current_a

    world = World()
    supply = registry.open_instrument(model, f"sim://{model}", world=world, slew_a_per_s=1.0)
    twin, ch = supply.twin, supply.ch_2
    ch.voltage_setpoint = 5.0
    ch.output_enabled = True
    for delay in ch.ramp(0.25):
        world.env.run(until=world.env.now + delay)
    assert [(t, c, round(a, 6)) for t, c, a in twin.history] == [
        (0.0, 2, 0.1), (0.1, 2, 0.2), (0.2, 2, 0.25)]
    twin.handle("*RST")            # the output goes off: a change like any other
    assert twin.history[-1] == (pytest.approx(0.2), 2, 0.0) and world.coil_current_a == 0.0
    twin.handle("OUTP 1, (@2)" if model == "keysight_e36312a" else ":OUTP:STAT CH2,ON")
    twin.power_cycle()             # on at 0 A: nothing flowed, nothing changes
    assert len(twin.history) == 4
