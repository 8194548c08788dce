"""Lake Shore 218: protocol (tier 1), twin (tier 2, in-process and over a pty) and properties."""

from __future__ import annotations

import math
import types

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from pymeasure.test import expected_protocol

from ionclock.drivers.lakeshore218 import LakeShore218, parse_reading, status_text
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError
from ionclock.registry import open_instrument
from ionclock.rtd import Missing, SensorCalibration
from ionclock.sim_instruments.base import LinkDown
from ionclock.sim_instruments.cryostat import Cryostat
from ionclock.sim_instruments.lakeshore import SimLakeShore218
from ionclock.sim_instruments.serve import PtyServer
from tests.transcripts import check_result, run_action

OVL = "+OVL"
IDN = "LSCI,MODEL218S,SIM0218,061407"
ALL_K = "+79.512,+80.004,+78.900,+79.250,+79.750,+80.600,+OVL,+OVL"
ALL_R = "+21.263,+21.475,+21.000,+21.151,+21.366,+21.731,+OVL,+OVL"
# The twin configuration these transcripts describe: fixed temperatures, ideal sensors,
# inputs 7 and 8 with nothing attached.
TWIN_OPTIONS = dict(locations={}, values={1: 79.512, 2: 80.004, 3: 78.9, 4: 79.25, 5: 79.75,
                                          6: 80.6},
                    sensor_errors={n: 0.0 for n in range(1, 9)})


def _missing(v):
    return isinstance(v, Missing)


# --- transcripts shared by the protocol tests and the twin-parser check -------------------
# (name, action on the driver, expected result, [(command, reply)]); the result may be a
# predicate. Every one of these is also replayed against the twin.
TRANSCRIPTS = [
    ("temperature", lambda d: d.input_1.temperature, 79.512, [("KRDG? 1", "+79.512")]),
    ("temperature_overload", lambda d: d.input_7.temperature, _missing, [("KRDG? 7", OVL)]),
    ("resistance", lambda d: d.input_1.resistance, 21.263, [("SRDG? 1", "+21.263")]),
    ("resistance_overload", lambda d: d.input_8.resistance, _missing, [("SRDG? 8", OVL)]),
    ("temperatures", lambda d: d.temperatures[:6], [79.512, 80.004, 78.9, 79.25, 79.75, 80.6],
     [("KRDG? 0", ALL_K)]),
    ("resistances", lambda d: d.resistances[5], 21.731, [("SRDG? 0", ALL_R)]),
    ("status_ok", lambda d: d.input_2.status, 0, [("RDGST? 2", "000")]),
    ("status_open", lambda d: d.input_7.status, 160, [("RDGST? 7", "160")]),
    ("enabled_get", lambda d: d.input_3.enabled, True, [("INPUT? 3", "1")]),
    ("enabled_set", lambda d: setattr(d.input_3, "enabled", False), None,
     [("INPUT 3,0", None), ("*ESR?", "000")]),
    ("curve_get", lambda d: d.input_2.curve, 6, [("INCRV? 2", "06")]),
    ("curve_set", lambda d: setattr(d.input_2, "curve", 6), None,
     [("INCRV 2,6", None), ("*ESR?", "000")]),
    ("filter_get", lambda d: d.input_4.filter, (True, 8, 2), [("FILTER? 4", "1,08,02")]),
    ("filter_set", lambda d: d.input_4.set_filter(True, 16, 5), None,
     [("FILTER 4,1,16,5", None), ("*ESR?", "000")]),
    ("sensor_type_get", lambda d: d.sensor_type("A"), "platinum_250", [("INTYPE? A", "2")]),
    ("sensor_type_set", lambda d: d.set_sensor_type("B", "platinum_250"), None,
     [("INTYPE B,2", None), ("*ESR?", "000")]),
    ("configure_pt100", lambda d: d.configure_pt100([5]), None,
     [("INTYPE B,2", None), ("*ESR?", "000"), ("INCRV 5,6", None), ("*ESR?", "000"),
      ("INPUT 5,1", None), ("*ESR?", "000")]),
    ("ping", lambda d: d.ping(), True, [("*IDN?", IDN)]),
    ("execution_error", lambda d: (d.write("INCRV 2,99"), d.check_set_errors()),
     InstrumentError, [("INCRV 2,99", None), ("*ESR?", "016")]),
    ("command_error", lambda d: (d.write("KRDG 1"), d.check_set_errors()),
     InstrumentError, [("KRDG 1", None), ("*ESR?", "032")]),
]

# Replies only a faulty line or another firmware produces (the twin is not replayed on these).
DEVICE_ONLY = [
    ("zero_reading", lambda d: d.input_1.temperature, _missing, [("KRDG? 1", "+0.0000")]),
    ("truncated", lambda d: d.input_1.temperature, ReplyError, [("KRDG? 1", "+79.5")]),
    ("flipped", lambda d: d.input_1.temperature, ReplyError, [("KRDG? 1", "+7#.512")]),
    ("negative", lambda d: d.input_1.temperature, ReplyError, [("KRDG? 1", "-79.512")]),
    ("two_fields", lambda d: d.input_1.temperature, ReplyError, [("KRDG? 1", "+79.512,+1")]),
    ("short_all", lambda d: d.temperatures, ReplyError, [("KRDG? 0", ALL_K.rsplit(",", 1)[0])]),
    ("bad_enable", lambda d: d.input_3.enabled, ReplyError, [("INPUT? 3", "2")]),
    ("bad_esr", lambda d: d.check_set_errors(), ReplyError, [("*ESR?", "0x0")]),
    ("ping_other_unit", lambda d: d.ping(), False, [("*IDN?", "LSCI,MODEL224,1,1")]),
]





@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS + DEVICE_ONLY,
                         ids=[t[0] for t in TRANSCRIPTS + DEVICE_ONLY])
def test_protocol(name, action, expected, pairs):
    with expected_protocol(LakeShore218, pairs) as inst:
        check_result(run_action(inst, action), expected)


@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_twin_parser_answers_the_transcripts(name, action, expected, pairs):
    twin = SimLakeShore218(None, **TWIN_OPTIONS)
    for command, reply in pairs:
        twin.write(command.encode() + b"\r\n")
        got = twin.read_available()
        assert got == (b"" if reply is None else reply.encode() + b"\r\n"), command


def test_twin_zero_style_overload():
    twin = SimLakeShore218(None, overload_text="zero", **TWIN_OPTIONS)
    twin.write(b"KRDG? 7\r\n")
    assert twin.read_available() == b"+0.0000\r\n"


@pytest.mark.parametrize("call", [
    lambda d: setattr(d.input_1, "curve", 29),
    lambda d: setattr(d.input_1, "curve", 0),
    lambda d: setattr(d.input_1, "enabled", 2),
    lambda d: d.input_1.set_filter(True, 65, 2),
    lambda d: d.input_1.set_filter(True, 8, 11),
    lambda d: d.input_1.set_filter(1, 8, 2),
    lambda d: d.input(9),
    lambda d: d.input(0),
    lambda d: d.set_sensor_type("C", "platinum_250"),
    lambda d: d.set_sensor_type("A", "thermocouple"),
    lambda d: d.configure_pt100([1, 9]),
])
def test_bad_input_raises_before_any_byte(call):
    with expected_protocol(LakeShore218, []) as inst:
        with pytest.raises(ValueError):
            call(inst)


def test_bad_line_settings_are_value_errors():
    with pytest.raises(ValueError, match="parity"):
        LakeShore218(None, parity="N")
    with pytest.raises(ValueError, match="baudrate"):
        LakeShore218(None, baudrate=19200)


def test_serial_settings_are_7_bit_odd_parity():
    assert LakeShore218.serial_settings == {"baudrate": 9600, "bytesize": 7, "parity": "O",
                                            "stopbits": 1, "timeout": 1.0}
    assert LakeShore218.write_termination == LakeShore218.read_termination == "\r\n"


def test_status_text():
    assert status_text(0) == "ok"
    assert status_text(160) == "temperature over range, sensor units over range"


# --- properties ---------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-1000, max_value=1000))
def test_no_out_of_range_input_reaches_the_wire(n):
    with expected_protocol(LakeShore218, [(f"KRDG? {n}", "+79.512")] if 1 <= n <= 8 else []
                           ) as inst:
        if 1 <= n <= 8:
            assert inst.input(n).temperature == 79.512
        else:
            with pytest.raises(ValueError):
                inst.input(n)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-100, max_value=100))
def test_no_out_of_range_curve_reaches_the_wire(c):
    pairs = [(f"INCRV 1,{c}", None), ("*ESR?", "000")] if 1 <= c <= 28 else []
    with expected_protocol(LakeShore218, pairs) as inst:
        if 1 <= c <= 28:
            inst.input_1.curve = c
        else:
            with pytest.raises(ValueError):
                inst.input_1.curve = c


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_any_reply_token_is_a_reading_missing_or_reply_error(token):
    try:
        value = parse_reading(token)
    except ReplyError:
        return
    if isinstance(value, Missing):
        assert math.isnan(value) and value.reason
        return
    assert value > 0 and len(token.strip()) == 7 and value == float(token)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.floats(min_value=75, max_value=85))
def test_garbled_replies_never_give_a_wrong_number(seed, kelvin):
    inst = open_instrument("lakeshore218", "sim://lakeshore218", world=object(),
                           twin_options={"values": {1: kelvin}, "sensor_errors": {1: 0.0},
                                         "seed": seed, "locations": {}})
    inst.twin.faults.garble = True
    for read in (lambda: inst.input_1.temperature, lambda: inst.temperatures[0]):
        try:
            value = read()
        except (ReplyError, InstrumentTimeout):
            continue
        assert value == pytest.approx(kelvin, abs=0.0015)


# --- tier 2: the driver against its twin ----------------------------------------------------
def _world(seed=5, **kwargs):
    env = simpy.Environment()
    return types.SimpleNamespace(env=env, cryostat=Cryostat(env, seed=seed, **kwargs))


def test_twin_reads_the_cryostat_through_each_sensors_error():
    world = _world()
    errors = {1: 0.08, 2: -0.05, 3: 0.0, 4: 0.02, 5: -0.1, 6: 0.04}
    inst = open_instrument("lakeshore218", "sim://lakeshore218", world=world,
                           twin_options={"sensor_errors": errors})
    world.env.run(until=3 * 3600)
    temps = inst.temperatures
    truth = world.cryostat.temperatures()
    names = ["ln2_bottom", "endcap_1", "endcap_2", "trap_holder", "bbr_cavity", "trap"]
    for n, loc in enumerate(names, start=1):
        assert temps[n - 1] == pytest.approx(truth[loc] + errors[n], abs=0.0015)
        # the resistance through CVD and the sensor's calibration gives the truth back
        cal = SensorCalibration(loc, (-errors[n],))
        rd = cal.from_resistance(inst.input(n).resistance)
        assert rd.value == pytest.approx(truth[loc], abs=0.005)
    assert _missing(temps[6]) and _missing(temps[7])
    assert max(temps[:6]) == temps[5]  # the trap sensor is the warmest


def test_twin_follows_rf_and_refill():
    world = _world(noise=0.0, schedule_refills=False)
    inst = open_instrument("lakeshore218", "sim://lakeshore218", world=world,
                           twin_options={"sensor_errors": {n: 0.0 for n in range(1, 9)}})
    world.env.run(until=3600)
    trap_on = inst.input_6.temperature
    world.cryostat.set_rf(False)
    world.env.run(until=3600 + 10 * world.cryostat.rf_time_constant)
    assert trap_on - inst.input_6.temperature == pytest.approx(0.4, abs=0.05)
    bottom = inst.input_1.temperature
    world.cryostat.inject_refill(depth=2.5)
    assert bottom - inst.input_1.temperature > 2.4


def test_twin_disable_enable_and_power_cycle():
    inst = open_instrument("lakeshore218", "sim://lakeshore218", world=_world())
    inst.input_2.enabled = False
    assert _missing(inst.input_2.temperature) and inst.input_2.enabled is False
    inst.input_2.curve = 7  # not the PT100 curve: no kelvin reading
    inst.input_2.enabled = True
    assert _missing(inst.input_2.temperature)
    inst.set_sensor_type("A", "diode_2.5V")
    assert _missing(inst.input_1.resistance)
    inst.twin.power_cycle()
    assert inst.input_2.enabled is True and inst.input_2.curve == 6
    assert 75 < inst.input_2.temperature < 85


def test_twin_faults():
    inst = open_instrument("lakeshore218", "sim://lakeshore218", world=_world())
    inst.twin.faults.timeout = True
    with pytest.raises(InstrumentTimeout):
        inst.input_1.temperature
    assert inst.ping() is False
    inst.twin.faults.timeout = False
    inst.twin.faults.disconnected = True
    with pytest.raises(LinkDown):
        inst.input_1.temperature
    assert inst.ping() is False
    inst.twin.faults.disconnected = False
    inst.twin.open_inputs.add("3")
    assert _missing(inst.input_3.temperature) and inst.input_3.status == 160
    assert inst.ping() is True


@pytest.mark.ostransport
def test_over_a_pty_with_pyserial_7_bit_odd_parity():
    world = _world()
    twin = SimLakeShore218(world)
    with PtyServer(twin) as server:
        inst = open_instrument("lakeshore218", server.port, parity="O")
        try:
            port = inst.adapter.connection
            assert (port.bytesize, port.parity, port.stopbits, port.baudrate) == (7, "O", 1, 9600)
            assert inst.ping()
            temps = inst.temperatures
            assert all(75 < t < 85 for t in temps[:6]) and _missing(temps[7])
            inst.input_4.set_filter(True, 10, 3)
            assert inst.input_4.filter == (True, 10, 3)
        finally:
            inst.close()
