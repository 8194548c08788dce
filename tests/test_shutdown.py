"""Safe shutdown (ionclock.apparatus.shutdown) against twins: RF on, coils held or ramped,
shutters set."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import types

import pytest
import simpy

from ionclock.apparatus import registry
from ionclock.apparatus.resilience import InstrumentOffline
from ionclock.apparatus.shutdown import (
    ShutdownPolicy,
    ShutdownRequested,
    kind_of,
    safe_shutdown,
    shutdown_on_signals,
)
from ionclock.errors import InstrumentError
from ionclock.storage.store import Store


@pytest.fixture
def world():
    return types.SimpleNamespace(env=simpy.Environment())


def _released(driver):
    """Count the adapter's close() calls (the connection release)."""
    calls = []
    close = driver.adapter.close
    driver.adapter.close = lambda: (calls.append(1), close())[1]
    return calls


def apparatus(world, resilient=False):
    def op(model, **kw):
        return registry.open_instrument(model, f"sim://{model}", world=world,
                                        resilient=resilient, **kw)

    rf = op("sg380")
    rf.frequency = 24.801e6
    rf.amplitude_dbm = 3.0
    rf.output_enabled = True
    coils = op("keysight_e36312a", twin_options={"noise_a": 0.0}, current_limit_a=0.5,
               slew_a_per_s=0.1, step_interval_s=0.1)
    coils.ch_2.voltage_setpoint = 5.0
    coils.ch_2.output_enabled = True
    for _ in coils.ch_2.ramp(0.1):
        pass
    probe = op("sc10")
    cooling = op("sc10")
    probe.open()
    cooling.open()
    aom = op("novatech409b")
    aom.ch_0.frequency = 80e6
    inst = {"rf": rf, "coils": coils, "probe_shutter": probe, "cooling_shutter": cooling,
            "aom": aom}
    for i in inst.values():
        i.twin.record_transcript = True
    return inst


def test_kinds_are_guessed_from_the_drivers(world):
    inst = apparatus(world)
    assert {r: kind_of(d) for r, d in inst.items()} == {
        "rf": "rf", "coils": "coils", "probe_shutter": "shutter", "cooling_shutter": "shutter",
        "aom": "other"}


def test_rf_stays_on_coils_are_held_shutters_as_configured(world, tmp_path):
    inst = apparatus(world)
    released = {role: _released(d) for role, d in inst.items()}
    store = Store(tmp_path / "s.sqlite", commit_interval=0.0)
    slept = []
    report = safe_shutdown(inst, ShutdownPolicy(shutters={"cooling_shutter": "open"}),
                           sleep=slept.append, reason="SIGTERM", on_event=store.event,
                           clock=lambda: world.env.now)
    assert report.ok, report.errors
    rf, coils = inst["rf"].twin, inst["coils"].twin
    assert rf.output_on and rf.amplitude_dbm == 3.0
    assert rf.transcript == []  # not one byte to the RF source
    assert coils.output[2] and coils.current_set[2] == pytest.approx(0.1)
    assert coils.transcript == [] and slept == []  # held: nothing sent, no step
    assert not inst["probe_shutter"].twin.enabled  # closed (the default)
    assert inst["cooling_shutter"].twin.enabled  # configured open: the ion stays cooled
    assert all(calls == [1] for calls in released.values()), released
    (event,) = store.events("shutdown")
    assert event[3]["reason"] == "SIGTERM"
    assert event[3]["actions"]["rf"] == ["output untouched", "connection released"]
    store.close()


def test_ramp_down_ramps_the_coils_and_still_leaves_rf_on(world):
    inst = apparatus(world)
    slept = []
    report = safe_shutdown(inst, ShutdownPolicy(coils="ramp_down"), sleep=slept.append)
    assert report.ok
    coils = inst["coils"].twin
    assert coils.current_set[2] == 0.0 and not coils.output[2]
    values = [0.1] + [float(line.split()[1].rstrip(","))
                      for line, _ in coils.transcript if line.startswith("CURR ")]
    assert values[-1] == 0.0
    assert max(abs(a - b) for a, b in zip(values, values[1:])) <= 0.01 + 1e-9
    assert slept == [pytest.approx(0.1)] * 9  # ten steps of 10 mA, a wait between each
    # the output goes off only after the current is at 0 A
    lines = [line for line, _ in coils.transcript]
    assert lines.index("OUTP 0, (@2)") > max(i for i, s in enumerate(lines) if s.startswith("CURR"))
    assert inst["rf"].twin.output_on and inst["rf"].twin.transcript == []


def test_a_failing_instrument_does_not_stop_the_others(world):
    inst = apparatus(world)
    inst["probe_shutter"].twin.faults.timeout = True
    released = {role: _released(d) for role, d in inst.items()}
    report = safe_shutdown(inst, sleep=lambda s: None)
    assert set(report.errors) == {"probe_shutter"}
    assert "Timeout" in report.errors["probe_shutter"]
    assert not inst["cooling_shutter"].twin.enabled
    assert all(calls == [1] for calls in released.values())


def test_wrapped_instruments_offline_ones_are_left_alone(world):
    inst = apparatus(world, resilient=True)
    inst["probe_shutter"].twin.faults.disconnected = True
    with pytest.raises(InstrumentOffline):
        inst["probe_shutter"].identity  # noqa: B018
    inst["probe_shutter"].twin.faults.disconnected = False
    report = safe_shutdown(inst, sleep=lambda s: None)
    assert report.ok
    assert report.actions["probe_shutter"][0] == "offline: left as it is"
    assert inst["probe_shutter"].twin.enabled  # unknown state: not poked
    assert not inst["cooling_shutter"].twin.enabled
    assert inst["rf"].twin.output_on and inst["rf"].twin.transcript == []
    for wrapped in inst.values():  # released for good: no call, no reconnect
        assert not wrapped.online and not wrapped.ping()
        with pytest.raises(InstrumentError, match="disconnect"):
            wrapped.check_errors()
    # the shutdown went to the drivers themselves: no setpoint recorded for it
    assert [r.name for r in inst["cooling_shutter"].setpoints] == ["open"]


def test_policy_is_checked():
    for bad in ({"shutters": {"x": "ajar"}}, {"default_shutter": "shut"},
                {"coils": "off"}, {"kinds": {"rf": "laser"}}):
        with pytest.raises(ValueError):
            ShutdownPolicy(**bad)


def test_signals_unwind_the_block_and_run_the_shutdown_once():
    ran = []
    old = signal.getsignal(signal.SIGTERM)

    def shutdown(reason):
        os.kill(os.getpid(), signal.SIGTERM)  # a second signal during shutdown: ignored
        ran.append(reason)

    with pytest.raises(ShutdownRequested) as exit_info:
        with shutdown_on_signals(shutdown):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10**6):  # the handler runs at the next bytecode boundary
                pass
    assert exit_info.value.code == 128 + signal.SIGTERM
    assert ran == ["SIGTERM"]
    assert signal.getsignal(signal.SIGTERM) is old
    with shutdown_on_signals(ran.append):
        pass
    assert ran[-1] == "end"


def _rows(path, table="events"):
    import sqlite3

    with sqlite3.connect(path) as db:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]


def test_a_signal_inside_a_commit_waits_for_it_rows_written_exactly_once(tmp_path):
    """SIGTERM arriving mid-commit is raised after it: the rows are in, and only once."""
    store = Store(tmp_path / "s.sqlite", commit_interval=3600)

    def signal_mid_commit(db, buffers):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10**5):  # give the handler every chance to run inside the commit
            pass

    store._commit_hooks.append(signal_mid_commit)
    for i in range(5):
        store.add("servo_cycles", (float(i), 0, 0, 1, 0.0, 0, 0, "locked"))
    with pytest.raises(ShutdownRequested):
        with shutdown_on_signals(lambda reason: None):
            store.flush()
    assert _rows(store.path, "servo_cycles") == 5   # committed before the request was raised
    store._commit_hooks.remove(signal_mid_commit)
    store.close()                                     # nothing left to write twice
    assert _rows(store.path, "servo_cycles") == 5


def test_a_failed_commit_keeps_its_rows_for_the_next_one(tmp_path):
    store = Store(tmp_path / "s.sqlite", commit_interval=3600)

    def fail_once(db, buffers):
        store._commit_hooks.remove(fail_once)
        raise OSError("disk went away")

    store._commit_hooks.append(fail_once)
    store.add("events", (1.0, "x", "", "{}"))
    with pytest.raises(OSError):
        store.flush()
    assert _rows(store.path) == 0 and not store.db.in_transaction
    store.close()
    assert _rows(store.path) == 1


CHILD = textwrap.dedent("""
    import json, sys, types
    import simpy
    from ionclock.apparatus import registry
    from ionclock.apparatus.shutdown import ShutdownPolicy, safe_shutdown, shutdown_on_signals

    env = simpy.Environment()
    world = types.SimpleNamespace(env=env)
    def op(model, **kw):
        return registry.open_instrument(model, f"sim://{model}", world=world, resilient=True,
                                        **kw)
    rf = op("sg380"); rf.amplitude_dbm = 2.0; rf.output_enabled = True
    coils = op("keysight_e36312a", current_limit_a=0.5, slew_a_per_s=0.1)
    coils.ch_1.voltage_setpoint = 3.0; coils.ch_1.output_enabled = True
    for _ in coils.ch_1.ramp(0.05):
        pass
    shutter = op("sc10"); shutter.open()
    inst = {"rf": rf, "coils": coils, "shutter": shutter}
    twins = {r: i.twin for r, i in inst.items()}
    for t in twins.values():
        t.record_transcript = True

    def shutdown(reason):
        before = len(twins["rf"].transcript)
        report = safe_shutdown(inst, ShutdownPolicy(), sleep=lambda s: None, reason=reason)
        json.dump({"reason": reason, "errors": report.errors, "rf_on": twins["rf"].output_on,
                   "rf_sent": twins["rf"].transcript[before:],
                   "rf_all": [line for line, _ in twins["rf"].transcript],
                   "coil_a": twins["coils"].current_set[1], "coil_on": twins["coils"].output[1],
                   "shutter_open": twins["shutter"].enabled}, open(sys.argv[1], "w"))

    with shutdown_on_signals(shutdown):
        def loop():
            while True:
                rf.amplitude_dbm = 2.0
                yield env.timeout(0.1)
        env.process(loop())
        env.run(until=1.0)
        print("ready", flush=True)
        while True:
            env.run(until=env.now + 1.0)
""")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_killed_run_leaves_rf_on_coils_held_shutter_closed(tmp_path, sig):
    out = tmp_path / "state.json"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        proc.send_signal(sig)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 128 + sig, proc.stderr.read()
    state = json.loads(out.read_text())
    assert state["reason"] == signal.Signals(sig).name and state["errors"] == {}
    assert state["rf_on"] and state["rf_sent"] == []
    assert "AMPR2.00" in state["rf_all"] and not any(x.startswith("ENBR0") for x in state["rf_all"])
    assert state["coil_on"] and state["coil_a"] == pytest.approx(0.05)
    assert not state["shutter_open"]
