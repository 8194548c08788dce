"""Transport resilience over real OS channels: a LAN supply (pyvisa-py) and a serial unit (pty).

The wrapper runs on `time.monotonic` here (the lab's clock): a caller sleeps
``retry_after_s`` between tries, exactly as a script would.
"""

from __future__ import annotations

import time
import types

import pytest
import simpy

from ionclock.apparatus import registry
from ionclock.apparatus.resilience import InstrumentOffline
from ionclock.sim_instruments.coil_supplies import SimKeysightE36312A
from ionclock.sim_instruments.sc10 import SimSC10
from ionclock.sim_instruments.serve import PtyServer, TcpServer
from ionclock.storage.store import Store

pytestmark = pytest.mark.ostransport


def retry(call, deadline_s=20.0):
    """Call until it stops raising InstrumentOffline, sleeping retry_after_s between tries."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return call()
        except InstrumentOffline as off:
            assert time.monotonic() < deadline, f"still offline after {deadline_s} s: {off}"
            time.sleep(off.retry_after_s)


def test_lan_supply_reconnects_to_a_restarted_server_and_ramps_back(tmp_path):
    world = types.SimpleNamespace(env=simpy.Environment())
    twin = SimKeysightE36312A(world, noise_a=0.0)
    server = TcpServer(twin).start()
    port = server.port
    store = Store(tmp_path / "events.sqlite", commit_interval=0.0)
    coils = registry.open_instrument(
        "keysight_e36312a", server.resource, key="coils", resilient=True,
        resilience={"on_event": store.event, "initial_backoff_s": 0.05, "max_backoff_s": 0.2},
        current_limit_a=0.5, slew_a_per_s=1.0, step_interval_s=0.01, timeout=500)
    try:
        ch = coils.ch_3
        ch.voltage_setpoint = 4.0
        ch.output_enabled = True
        for _ in ch.ramp(0.03):
            pass
        server.close()  # the supply drops off the LAN ...
        with pytest.raises(InstrumentOffline):
            ch.current  # noqa: B018
        with server.lock:
            twin.power_cycle()  # ... and comes back from a power cycle
        server = TcpServer(twin, port=port).start()
        assert retry(lambda: ch.current) == pytest.approx(0.03)
        assert (twin.output[3], twin.voltage_set[3]) == (True, 4.0)
    finally:
        coils.disconnect()
        server.close()
    assert [e[1] for e in store.events()] == ["instrument_offline", "instrument_online"]
    # pyvisa's timeout arrives as the suite's (transport.VisaLinkAdapter)
    assert "InstrumentTimeout" in store.events("instrument_offline")[0][3]["error"]
    store.close()


def test_serial_shutter_times_out_then_recovers_over_a_pty(tmp_path):
    twin = SimSC10(None, latency_s=0.0)
    store = Store(tmp_path / "events.sqlite", commit_interval=0.0)
    with PtyServer(twin) as pty:
        shutter = registry.open_instrument(
            "sc10", pty.port, key="probe_shutter", resilient=True,
            resilience={"on_event": store.event, "initial_backoff_s": 0.05,
                        "max_backoff_s": 0.2})
        try:
            shutter.adapter.connection.timeout = 0.2  # keep the silent unit's waits short
            shutter.open()
            with pty.lock:
                twin.faults.timeout = True  # the controller hangs ...
            with pytest.raises(InstrumentOffline) as err:
                shutter.is_closed  # noqa: B018
            assert "Timeout" in str(err.value)
            with pty.lock:
                twin.power_cycle()  # ... is power-cycled (shutter closed, settings lost)
                twin.faults.timeout = False
            assert retry(lambda: shutter.enabled) is True  # re-opened on reconnect
            assert twin.enabled
        finally:
            shutter.disconnect()
    assert [e[1] for e in store.events()] == ["instrument_offline", "instrument_online"]
    store.close()
