"""Transport resilience (ionclock.apparatus.resilience): pass-through, faults, restore, events,
backoff."""

from __future__ import annotations

import gc
import math
import sys
import types

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from ionclock.apparatus import registry
from ionclock.apparatus.resilience import (
    RESTORE_SPECS,
    InstrumentOffline,
    ResilientInstrument,
    release_connection,
    until_online,
    unwrap,
)
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError
from ionclock.storage.store import Store


@pytest.fixture
def world():
    return types.SimpleNamespace(env=simpy.Environment())


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "events.sqlite", commit_interval=0.0)
    yield s
    s.close()


def open_resilient(model, world, store=None, twin_options=None, **driver_options):
    return registry.open_instrument(
        model, f"sim://{model}", world=world, twin_options=twin_options, resilient=True,
        resilience={"on_event": store.event if store is not None else None},
        **driver_options)


def advance(world, dt):
    world.env.run(until=world.env.now + dt)


def edges(world, *counters):
    """One clock cycle's TRIG edges on (stand-alone) counter twins; time moves on a cycle."""
    t0 = world.env.now
    for counter in counters:
        for dt in counter.trigger_offsets():
            counter.twin.trigger(t0 + 0.09 + dt)
    advance(world, 0.105)


def cycle(world, counter):
    """One clock cycle on the counter, then its count."""
    edges(world, counter)
    return counter.count()


def settle(world, call, *args, **kwargs):
    """Run `call` from a SimPy process with until_online; return its result."""
    env = world.env
    proc = env.process(until_online(env, call, *args, **kwargs))
    return env.run(until=proc)


# --- pass-through -----------------------------------------------------------------------------
def test_wrapper_sends_the_same_bytes_and_returns_the_same_values(world):
    raw = registry.open_instrument("novatech409b", "sim://novatech409b", world=world)
    wrapped = open_resilient("novatech409b", world)
    assert isinstance(wrapped, ResilientInstrument) and not isinstance(raw, ResilientInstrument)
    results = []
    for inst in (raw, wrapped):
        inst.twin.record_transcript = True
        inst.ch_0.frequency = 80.123e6
        inst.ch_0.phase = 0.25
        inst.ch_1.amplitude = 0.5
        inst.phase_continuous = True
        status = inst.status()
        results.append((status, inst.ch_0.frequency, inst.ch_0.last_frequency, inst.ping(),
                        inst.name, inst.write_termination))
    assert raw.twin.transcript == wrapped.twin.transcript
    assert results[0] == results[1]
    assert wrapped.online and wrapped.offline_count == 0


def test_counter_hot_path_passes_through(world):
    raw = registry.open_instrument("sr400", "sim://sr400", world=world)
    wrapped = open_resilient("sr400", world)
    counts = []
    for inst in (raw, wrapped):
        inst.twin.record_transcript = True
        inst.configure_gated(1e-3)
        inst.arm()
        counts.append([cycle(world, inst) for _ in range(20)])
    assert counts[0] == counts[1]
    assert raw.twin.transcript == wrapped.twin.transcript
    assert [r.name for r in wrapped.setpoints] == ["configure_gated", "arm"]


def test_bad_input_and_device_errors_propagate_and_stay_online(world, store):
    aom = open_resilient("novatech409b", world, store)
    twin = aom.twin
    twin.record_transcript = True
    with pytest.raises(ValueError):
        aom.ch_0.frequency = -1.0
    with pytest.raises(ValueError):
        aom.ch_0.amplitude = 1.5
    assert twin.transcript == []  # nothing reached the wire
    with pytest.raises(InstrumentError) as err:
        aom.command("F7 1")  # no channel 7: the unit answers ?N
    assert not isinstance(err.value, InstrumentOffline)
    twin.faults.garble = True
    with pytest.raises(ReplyError):
        for _ in range(50):
            aom.ch_0.phase = 0.1
    twin.faults.garble = False
    aom.adapter.flush_read_buffer()
    aom.ch_0.phase = 0.1
    assert aom.online and store.events() == []
    assert {r.name for r in aom.setpoints} == {"phase"}  # the rejected values are not recorded


def _python_calls(fn) -> int:
    calls = [0]

    def prof(frame, event, arg):
        if event == "call":
            calls[0] += 1

    # no collection meanwhile: finalizers it would run (other tests' objects) are not fn's
    enabled = gc.isenabled()
    gc.disable()
    sys.setprofile(prof)
    try:
        fn()
    finally:
        sys.setprofile(None)
        if enabled:
            gc.enable()
    return calls[0]


def test_hot_path_overhead_is_one_python_frame(world):
    """The wrapper adds one Python-level call and one dict store per hot-path call, no I/O.

    (Speed in microseconds is measured by benchmarks/bench_query.py, not here.)
    """
    raw = registry.open_instrument("novatech409b", "sim://novatech409b", world=world)
    wrapped = open_resilient("novatech409b", world)
    raw_ch, w_ch = raw.ch_0, wrapped.ch_0
    assert "ch_0" in vars(wrapped)  # cached: later lookups skip __getattr__

    def set_raw():
        raw_ch.frequency = 80e6

    def set_wrapped():
        w_ch.frequency = 80e6

    for f in (set_raw, set_wrapped):
        f()
    assert _python_calls(set_wrapped) - _python_calls(set_raw) <= 1
    counter_raw = registry.open_instrument("sr400", "sim://sr400", world=world)
    counter = open_resilient("sr400", world)
    for c in (counter_raw, counter):
        c.configure_gated(1e-3)
        c.arm()
        cycle(world, c)
    edges(world, counter, counter_raw)
    wrapped_calls = _python_calls(counter.count)
    edges(world, counter, counter_raw)
    assert wrapped_calls - _python_calls(counter_raw.count) <= 1
    for k in range(1000):
        w_ch.frequency = 1e6 + k
    assert len(wrapped.setpoints) == 1 and wrapped.setpoints[0].value == 1e6 + 999


# --- faults: link drop, timeout, power cycle --------------------------------------------------
def test_link_drop_mid_run_is_recovered_with_setpoints_and_events(world, store):
    env = world.env
    aom = open_resilient("novatech409b", world, store)
    twin = aom.twin
    aom.ch_0.phase = 0.125
    aom.ch_1.frequency = 40e6
    aom.ch_1.amplitude = 0.25
    sent: list[float] = []

    def loop():
        k = 0
        while env.now < 15.0:
            f = 80e6 + k
            yield from until_online(env, setattr, aom.ch_0, "frequency", f)
            sent.append(f)
            k += 1
            yield env.timeout(0.1)

    def outage():
        yield env.timeout(2.05)
        twin.faults.disconnected = True  # cable pulled; the unit is power-cycled meanwhile
        twin.power_cycle()
        yield env.timeout(5.25)  # back at t = 7.3
        twin.faults.disconnected = False

    env.process(outage())
    env.run(until=env.process(loop()))
    f0, p0, _ = twin.channel_state(0)
    f1, _, a1 = twin.channel_state(1)
    assert f0 == pytest.approx(sent[-1], abs=0.05)
    assert p0 == 0.125 and f1 == 40e6 and a1 == pytest.approx(0.25, abs=1 / 1023)
    assert not twin.echo  # the reconnect ran the driver's start-up again (echo off)
    off = store.events("instrument_offline")
    on = store.events("instrument_online")
    assert len(off) == len(on) == 1
    t_off, t_on = off[0][0], on[0][0]
    assert t_off == pytest.approx(2.1)
    assert "LinkDown" in off[0][3]["error"] and off[0][2] == "novatech409b"
    # backoff 1, 2, 4 s: tries at +1 (down), +3 (down), +7 (up: the link is back at 7.3)
    assert t_on == pytest.approx(t_off + 7.0)
    assert on[0][3]["attempts"] == 3 and on[0][3]["downtime_s"] == pytest.approx(7.0)
    assert len(sent) == pytest.approx(150 - 70, abs=2)  # nothing was sent while offline


def test_timeout_power_cycle_restores_counter_configuration(world, store):
    counter = open_resilient("sr400", world, store)
    twin = counter.twin
    counter.configure_gated(2e-3, periods=500)
    counter.arm()
    cycle(world, counter)
    twin.faults.timeout = True  # the unit stops answering ...
    with pytest.raises(InstrumentOffline) as err:
        cycle(world, counter)
    assert isinstance(err.value.__cause__, InstrumentTimeout)
    assert err.value.retry_after_s == 1.0
    twin.power_cycle()  # ... and comes back with its power-on settings
    waits = []
    for _ in range(4):
        advance(world, counter.retry_after_s)
        with pytest.raises(InstrumentOffline) as err:
            counter.count()
        waits.append(err.value.retry_after_s)
    assert waits == [2.0, 4.0, 8.0, 16.0]  # doubling while it stays silent
    assert twin.gm[0] == 0 and twin.state == "reset"
    twin.faults.timeout = False
    advance(world, counter.retry_after_s)
    assert isinstance(cycle(world, counter), int)
    assert (twin.gm[0], twin.gw[0], twin.np_, twin.ne, twin.ci) == (1, 2e-3, 500, 0, [1, 2, 3])
    assert twin.state == "counting"
    assert [e[1] for e in store.events()] == ["instrument_offline", "instrument_online"]
    assert store.events("instrument_online")[0][3]["attempts"] == 5


def test_power_cycle_behind_a_live_link_is_caught_by_garbled_replies(world, store):
    aom = open_resilient("novatech409b", world, store)
    twin = aom.twin
    aom.ch_0.frequency = 80e6
    aom.ch_0.phase = 0.5
    twin.power_cycle()  # no link loss: the unit just echoes again and forgot its outputs
    for _ in range(2):
        with pytest.raises(ReplyError):  # the echo arrives where OK was expected
            aom.ch_0.frequency = 80.1e6
        assert aom.online
    with pytest.raises(InstrumentOffline) as err:
        aom.ch_0.frequency = 80.1e6
    assert isinstance(err.value.__cause__, ReplyError)
    advance(world, aom.retry_after_s)
    aom.ch_0.frequency = 80.2e6
    assert twin.channel_state(0)[:2] == (80.2e6, 0.5) and not twin.echo
    assert [e[1] for e in store.events()] == ["instrument_offline", "instrument_online"]


def test_an_isolated_garbled_reply_does_not_take_it_offline(world):
    aom = open_resilient("novatech409b", world)
    twin = aom.twin
    for _ in range(5):
        twin._tx += b"O#\r\n"  # line noise ahead of the next reply
        with pytest.raises(ReplyError):
            aom.ch_0.phase = 0.1
        aom.ch_0.phase = 0.2  # the stale OK was flushed: this reads its own OK
        assert aom.adapter._buffer == b"" and twin.read_available() == b""
    assert aom.online and aom.offline_count == 0
    assert twin.channel_state(0)[1] == pytest.approx(0.2, abs=1e-4)


def test_backoff_is_bounded(world):
    aom = open_resilient("novatech409b", world)
    aom.twin.faults.timeout = True
    waits = []
    with pytest.raises(InstrumentOffline):
        aom.ch_0.frequency = 1e6
    for _ in range(12):
        advance(world, aom.retry_after_s)
        with pytest.raises(InstrumentOffline) as err:
            aom.ch_0.frequency = 1e6
        waits.append(err.value.retry_after_s)
    assert waits[:6] == [2, 4, 8, 16, 32, 60] and set(waits[5:]) == {60.0}


def _coil_steps(transcript, ch):
    prefix = "CURR "
    values = []
    for line, _ in transcript:
        if line.startswith(prefix) and line.endswith(f"(@{ch})"):
            values.append(float(line[len(prefix):].split(",")[0]))
    return values


def test_coil_supply_comes_back_on_a_ramp_after_a_power_cycle(world, store):
    env = world.env
    coils = open_resilient("keysight_e36312a", world, store, twin_options={"noise_a": 0.0},
                           current_limit_a=0.5, slew_a_per_s=0.1, step_interval_s=0.1)
    twin = coils.twin
    ch = coils.ch_2
    ch.voltage_setpoint = 5.0
    ch.output_enabled = True

    def up():
        for delay in ch.ramp(0.2):
            yield env.timeout(delay)

    env.run(until=env.process(up()))
    ch.current_setpoint = 0.205  # the servo's last trim
    assert twin.current_set[2] == pytest.approx(0.205)
    twin.faults.disconnected = True
    twin.power_cycle()
    with pytest.raises(InstrumentOffline):
        ch.current_setpoint = 0.21
    assert twin.output[2] is False and twin.current_set[2] == 0.0
    twin.faults.disconnected = False
    twin.record_transcript = True
    advance(world, coils.retry_after_s)
    restoring = []
    while True:
        try:
            assert ch.current_setpoint == pytest.approx(0.21)
            break
        except InstrumentOffline as off:
            restoring.append(off.retry_after_s)
            advance(world, off.retry_after_s)
    assert (twin.output[2], twin.voltage_set[2]) == (True, 5.0)
    assert twin.current_set[2] == pytest.approx(0.21)  # the intent of the failed set
    steps = [0.0] + _coil_steps(twin.transcript, 2)
    assert max(abs(b - a) for a, b in zip(steps, steps[1:])) <= 0.01 + 1e-9
    assert restoring == [pytest.approx(0.1)] * 20
    t_on = store.events("instrument_online")[0][0]
    t_off = store.events("instrument_offline")[0][0]
    assert t_on == pytest.approx(t_off + 1.0 + 2.0)  # the ramp's 20 waits of 0.1 s


def test_link_drop_without_power_cycle_does_not_touch_the_coils(world):
    coils = open_resilient("keysight_e36312a", world, twin_options={"noise_a": 0.0},
                           current_limit_a=0.5, slew_a_per_s=0.1, step_interval_s=0.1)
    twin = coils.twin
    ch = coils.ch_1
    ch.voltage_setpoint = 2.0
    ch.output_enabled = True
    for _ in coils.ch_1.ramp(0.05):
        pass
    twin.faults.disconnected = True
    with pytest.raises(InstrumentOffline):
        ch.current  # noqa: B018
    twin.faults.disconnected = False
    twin.record_transcript = True
    advance(world, coils.retry_after_s)
    assert ch.current == pytest.approx(0.05)
    sent = [line for line, _ in twin.transcript]
    assert not any(line.startswith(("OUTP ", "CURR ")) for line in sent), sent
    assert (twin.output[1], twin.current_set[1]) == (True, pytest.approx(0.05))


def test_shutter_state_is_restored_and_close_means_the_shutter(world, store):
    shutter = open_resilient("sc10", world, store)
    twin = shutter.twin
    shutter.open()
    assert twin.enabled
    twin.faults.disconnected = True
    twin.power_cycle()
    assert shutter.ping() is False  # a failed ping takes it offline
    twin.faults.disconnected = False
    advance(world, shutter.retry_after_s)
    assert shutter.ping() is True
    assert twin.enabled  # re-opened
    shutter.close()  # the SC10's close(): the shutter, not the link
    assert not twin.enabled and shutter.online
    assert shutter.setpoints[-1].name == "close"
    shutter.disconnect()
    assert not twin.enabled
    with pytest.raises(InstrumentError):
        shutter.open()
    assert shutter.ping() is False


def test_offline_calls_do_no_io_until_the_backoff_is_over(world):
    aom = open_resilient("novatech409b", world)
    twin = aom.twin
    twin.faults.disconnected = True
    with pytest.raises(InstrumentOffline):
        aom.ch_0.frequency = 1e6
    twin.faults.disconnected = False
    twin.record_transcript = True
    for _ in range(5):
        with pytest.raises(InstrumentOffline) as err:
            aom.status()
        assert 0 < err.value.retry_after_s <= 1.0
        assert not aom.ping()
        advance(world, 0.1)
    assert twin.transcript == []
    advance(world, 1.0)
    assert aom.reconnect() and twin.transcript != []


def test_reconnect_ignores_the_backoff_and_disconnect_stops_retries(world, store):
    aom = open_resilient("novatech409b", world, store)
    aom.twin.faults.disconnected = True
    assert not aom.ping()
    assert not aom.reconnect()
    aom.twin.faults.disconnected = False
    assert aom.reconnect() and aom.online
    aom.disconnect()
    with pytest.raises(InstrumentError, match="disconnect"):
        aom.ch_0.frequency = 1e6
    assert not aom.reconnect() and not aom.ping()
    assert [e[1] for e in store.events()] == ["instrument_offline", "instrument_online"]


def test_until_online_yields_the_retry_delay(world):
    aom = open_resilient("novatech409b", world)
    aom.twin.faults.disconnected = True
    with pytest.raises(InstrumentOffline):
        aom.ch_0.frequency = 1e6
    world.env.process(_reconnect_at(world, aom.twin, 2.5))
    status = settle(world, aom.status)
    assert len(status.channels) == 4 and world.env.now == pytest.approx(3.0)


def _reconnect_at(world, twin, t):
    yield world.env.timeout(t - world.env.now)
    twin.faults.disconnected = False


# --- the state machine against a fake link (property-based) -----------------------------------
class FakeUnit:
    """A unit whose link can be up or down; remembers `level` (lost on power cycle)."""

    def __init__(self):
        self.up = True
        self.level = None
        self.reject = False


class FakeDriver:
    """A driver for FakeUnit: one property, one method, ping and an adapter to release."""

    def __init__(self, unit: FakeUnit):
        if not unit.up:
            raise ConnectionRefusedError("no route")
        self.unit = unit
        self.adapter = types.SimpleNamespace(close=lambda: None)
        self.name = "fake"

    @property
    def level(self):
        self._io()
        return self.unit.level

    @level.setter
    def level(self, value):
        if value < 0:
            raise ValueError("negative")
        self._io()
        if self.unit.reject:
            raise InstrumentError(self.name, "rejected", code="9")
        self.unit.level = value

    def _io(self):
        if not self.unit.up:
            raise ConnectionResetError("link down")

    def ping(self):
        return self.unit.up


def fake(unit, clock, events=None, **kw):
    return ResilientInstrument(FakeDriver(unit), lambda: FakeDriver(unit), clock=clock,
                               on_event=(lambda t, k, s, **d: events.append((t, k, d)))
                               if events is not None else None, **kw)


@settings(max_examples=80, deadline=None)
@given(down_at=st.floats(0.0, 50.0), down_for=st.floats(0.01, 500.0),
       initial=st.floats(0.01, 5.0), factor=st.floats(1.0, 3.0), cap=st.floats(5.0, 120.0),
       period=st.floats(0.01, 3.0))
def test_a_retrying_caller_is_back_within_one_max_backoff(down_at, down_for, initial, factor,
                                                          cap, period):
    now = [0.0]
    unit = FakeUnit()
    events: list = []
    inst = fake(unit, lambda: now[0], events, initial_backoff_s=initial, backoff_factor=factor,
                max_backoff_s=cap)
    inst.level = 1.0
    up_at = down_at + down_for
    last_ok = None
    k = 0
    while now[0] < up_at + cap + 10 * period:
        if down_at <= now[0] < up_at:
            if unit.up:
                unit.up = False
                unit.level = None  # power-cycled while away
        else:
            unit.up = True
        try:
            inst.level = 2.0 + k
            last_ok = now[0]
            now[0] += period
        except InstrumentOffline as off:
            assert 0 < off.retry_after_s <= cap + 1e-9
            now[0] += off.retry_after_s
        k += 1
    assert inst.online and unit.level == inst.setpoints[-1].value
    kinds = [e[1] for e in events]
    assert kinds == ["instrument_offline", "instrument_online"] * (len(kinds) // 2)
    if kinds:
        t_on = events[1][0]
        assert up_at <= t_on <= up_at + cap + 1e-6
    assert last_ok is not None


def test_a_rejected_record_is_dropped_and_reported():
    now = [0.0]
    unit = FakeUnit()
    events: list = []
    inst = fake(unit, lambda: now[0], events)
    inst.level = 3.0
    unit.up = False
    with pytest.raises(InstrumentOffline):
        inst.level  # noqa: B018
    unit.up, unit.reject = True, True
    now[0] = 1.0
    assert inst.level == 3.0  # reconnected; the unit kept its level
    assert inst.setpoints == []
    assert "rejected" in events[-1][2]["rejected"][0]


def test_options_are_checked():
    unit = FakeUnit()
    for bad in ({"initial_backoff_s": 0}, {"max_backoff_s": math.inf},
                {"backoff_factor": 0.5}, {"initial_backoff_s": 10, "max_backoff_s": 1}):
        with pytest.raises(ValueError):
            fake(unit, lambda: 0.0, **bad)


# --- every model ------------------------------------------------------------------------------
@pytest.mark.parametrize("model", registry.model_names())
def test_every_driver_has_ping_and_close(model):
    cls = registry.driver_class(model)
    assert callable(getattr(cls, "ping", None)) and callable(getattr(cls, "close", None))


# Every model with a twin reconnects; a twin of a server that greets each new client
# re-greets through `connection_opened()` (called by the registry on a reconnect).
@pytest.mark.parametrize("model", [m for m in registry.model_names()
                                   if registry.MODELS[m].twin is not None])
def test_every_twin_model_opens_resilient_and_pings(model, world):
    inst = open_resilient(model, world)
    assert inst.ping() and inst.online
    assert unwrap(inst) is inst.driver and inst.driver.twin is inst.twin
    inst.twin.faults.disconnected = True
    assert not inst.ping()
    inst.twin.faults.disconnected = False
    advance(world, inst.retry_after_s)
    assert inst.ping()
    inst.disconnect()


def test_release_connection_never_moves_the_shutter(world):
    sc10 = registry.open_instrument("sc10", "sim://sc10", world=world)
    sc10.open()
    release_connection(sc10)
    assert sc10.twin.enabled


def test_restore_specs_name_known_models():
    assert set(RESTORE_SPECS) <= set(registry.model_names())
