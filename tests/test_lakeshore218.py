"""Lake Shore 218: protocol (tier 1), twin (tier 2, in-process and over a pty) and properties."""

from __future__ import annotations

import math
import types

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from pymeasure.test import expected_protocol

from ionclock.apparatus.registry import open_instrument
from ionclock.drivers.lakeshore218 import (
    DEFAULT_KELVIN_RANGE,
    LakeShore218,
    parse_reading,
    status_text,
)
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError
from ionclock.physics.rtd import Missing, SensorCalibration
from ionclock.sim_instruments.base import LinkDown
from ionclock.sim_instruments.cryostat import Cryostat
from ionclock.sim_instruments.lakeshore import SimLakeShore218
from ionclock.sim_instruments.serve import PtyServer
from tests.transcripts import check_result, run_action

CLAMP = "+480.00"  # what a real 218E reads on open inputs (IRTF SpeX LS218 capture)
IDN = "LSCI,MODEL218S,SIM0218,061407"
ALL_K = "+79.512,+80.004,+78.900,+79.250,+79.750,+80.600,+480.00,+480.00"
ALL_R = "+21.263,+21.475,+21.000,+21.151,+21.366,+21.731,+250.00,+250.00"
# The twin configuration these transcripts describe: fixed temperatures, ideal sensors,
# inputs 7 and 8 with nothing attached (open inputs).
TWIN_OPTIONS = dict(locations={}, values={1: 79.512, 2: 80.004, 3: 78.9, 4: 79.25, 5: 79.75,
                                          6: 80.6},
                    sensor_errors={n: 0.0 for n in range(1, 9)})


def _missing(v):
    return isinstance(v, Missing)


def _missing_because(*words):
    def check(v):
        return isinstance(v, Missing) and all(w in v.reason for w in words)
    return check


def _checks(n, status="000", enabled="1"):
    """The status and enable queries that follow a reading of input `n`."""
    return [(f"RDGST? {n}", status), (f"INPUT? {n}", enabled)]


ALL_CHECKS = [pair for n in range(1, 9) for pair in _checks(n, "000" if n <= 6 else "160")]

# --- transcripts shared by the protocol tests and the twin-parser check -------------------
# (name, action on the driver, expected result, [(command, reply)]); the result may be a
# predicate. Every one of these is also replayed against the twin.
TRANSCRIPTS = [
    ("temperature", lambda d: d.input_1.temperature, 79.512,
     [("KRDG? 1", "+79.512"), *_checks(1)]),
    ("temperature_open", lambda d: d.input_7.temperature, _missing_because("RDGST? 160"),
     [("KRDG? 7", CLAMP), *_checks(7, "160")]),
    ("resistance", lambda d: d.input_1.resistance, 21.263,
     [("SRDG? 1", "+21.263"), *_checks(1)]),
    ("resistance_open", lambda d: d.input_8.resistance, _missing_because("sensor units over"),
     [("SRDG? 8", "+250.00"), *_checks(8, "160")]),
    ("temperatures", lambda d: d.temperatures[:6], [79.512, 80.004, 78.9, 79.25, 79.75, 80.6],
     [("KRDG? 0", ALL_K), *ALL_CHECKS]),
    ("temperatures_open", lambda d: all(map(_missing, d.temperatures[6:])), True,
     [("KRDG? 0", ALL_K), *ALL_CHECKS]),
    ("resistances", lambda d: d.resistances[5], 21.731, [("SRDG? 0", ALL_R), *ALL_CHECKS]),
    ("disabled", lambda d: (setattr(d.input_3, "enabled", False), d.input_3.temperature)[1],
     _missing_because("disabled"),
     [("INPUT 3,0", None), ("*ESR?", "000"), ("KRDG? 3", "+78.900"), *_checks(3, "000", "0")]),
    ("status_ok", lambda d: d.input_2.status, 0, [("RDGST? 2", "000")]),
    ("status_open", lambda d: d.input_7.status, 160, [("RDGST? 7", "160")]),
    ("enabled_get", lambda d: d.input_3.enabled, True, [("INPUT? 3", "1")]),
    ("enabled_set", lambda d: setattr(d.input_3, "enabled", False), None,
     [("INPUT 3,0", None), ("*ESR?", "000")]),
    ("curve_get", lambda d: d.input_2.curve, 6, [("INCRV? 2", "06")]),
    ("curve_set", lambda d: setattr(d.input_2, "curve", 6), None,
     [("INCRV 2,6", None), ("*ESR?", "000")]),
    ("wrong_curve", lambda d: (setattr(d.input_2, "curve", 7), d.input_2.temperature)[1],
     _missing_because("RDGST? 032", "temperature over range"),
     [("INCRV 2,7", None), ("*ESR?", "000"), ("KRDG? 2", CLAMP), *_checks(2, "032")]),
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

# Replies only another firmware, a faulty line or a front-panel change produces (the twin is
# not replayed on these).
DEVICE_ONLY = [
    # any float text is a reading (Lake Shore's own driver parses float())
    *[(f"format_{text}", lambda d: d.input_1.temperature, value,
       [("KRDG? 1", text), *_checks(1)])
      for text, value in [("79.512", 79.512), ("+079.512", 79.512), ("77", 77.0),
                          ("7.9512E+01", 79.512), ("+7.951e1", 79.51), (" +79.512 ", 79.512),
                          ("79.", 79.0), (".795E2", 79.5)]],
    ("overload_text", lambda d: d.input_1.temperature, _missing_because("overload"),
     [("KRDG? 1", "+OVL"), *_checks(1)]),
    ("zero_reading", lambda d: d.input_1.temperature, _missing_because("zero"),
     [("KRDG? 1", "+0.0000"), *_checks(1)]),
    # a clamped number the status does not flag: out of the curve range, never a value
    ("clamp_high_status_ok", lambda d: d.input_1.temperature, _missing_because("outside"),
     [("KRDG? 1", CLAMP), *_checks(1)]),
    ("clamp_low_status_ok", lambda d: d.input_5.temperature, _missing_because("outside"),
     [("KRDG? 5", "+01.000"), *_checks(5)]),
    # a plausible number the status flags: not a value either
    ("plausible_but_flagged", lambda d: d.input_1.temperature,
     _missing_because("RDGST? 016", "temperature under range"),
     [("KRDG? 1", "+79.512"), *_checks(1, "016")]),
    ("plausible_but_disabled", lambda d: d.input_1.temperature, _missing_because("disabled"),
     [("KRDG? 1", "+79.512"), *_checks(1, "000", "0")]),
    # a temperature-only status bit leaves the sensor-units reading valid
    ("resistance_curve_fault_only", lambda d: d.input_1.resistance, 21.263,
     [("SRDG? 1", "+21.263"), *_checks(1, "032")]),
    ("resistance_units_fault", lambda d: d.input_1.resistance, _missing_because("under range"),
     [("SRDG? 1", "+21.263"), *_checks(1, "064")]),
    ("bulk_status_flags_one", lambda d: [_missing(v) for v in d.temperatures],
     [False, True, False, False, False, False, True, True],
     [("KRDG? 0", ALL_K), *[p for n in range(1, 9)
                            for p in _checks(n, "032" if n == 2 else
                                             "000" if n <= 6 else "160")]]),
    ("bulk_disabled_one", lambda d: [_missing(v) for v in d.temperatures],
     [False, False, False, True, False, False, True, True],
     [("KRDG? 0", ALL_K), *[p for n in range(1, 9)
                            for p in _checks(n, "000" if n <= 6 else "160",
                                             "0" if n == 4 else "1")]]),
    # garbage is a ReplyError, before any further query
    ("flipped", lambda d: d.input_1.temperature, ReplyError, [("KRDG? 1", "+7#.512")]),
    ("nan_text", lambda d: d.input_1.temperature, ReplyError, [("KRDG? 1", "nan")]),
    ("inf_text", lambda d: d.input_1.temperature, ReplyError, [("KRDG? 1", "+inf")]),
    ("underscore", lambda d: d.input_1.temperature, ReplyError, [("KRDG? 1", "7_9.5")]),
    ("huge", lambda d: d.input_1.temperature, ReplyError, [("KRDG? 1", "1E999")]),
    ("negative", lambda d: d.input_1.temperature, ReplyError, [("KRDG? 1", "-79.512")]),
    ("two_fields", lambda d: d.input_1.temperature, ReplyError, [("KRDG? 1", "+79.512,+1")]),
    ("short_all", lambda d: d.temperatures, ReplyError, [("KRDG? 0", ALL_K.rsplit(",", 1)[0])]),
    ("garbled_in_all", lambda d: d.temperatures, ReplyError,
     [("KRDG? 0", ALL_K.replace("+78.900", "+78#900"))]),
    ("bad_status", lambda d: d.input_1.temperature, ReplyError,
     [("KRDG? 1", "+79.512"), ("RDGST? 1", "0x0")]),
    ("bad_enable", lambda d: d.input_3.enabled, ReplyError, [("INPUT? 3", "2")]),
    ("bad_enable_in_read", lambda d: d.input_3.temperature, ReplyError,
     [("KRDG? 3", "+78.900"), ("RDGST? 3", "000"), ("INPUT? 3", "2")]),
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


@pytest.mark.parametrize("reply, expected", [("+79.5", ReplyError), ("79.512", ReplyError),
                                             ("+79.512", 79.512), (CLAMP, _missing)])
def test_strict_format_checks_the_width(reply, expected):
    pairs = [("KRDG? 1", reply)] + (_checks(1) if expected is not ReplyError else [])
    with expected_protocol(LakeShore218, pairs, strict_format=True) as inst:
        check_result(run_action(inst, lambda d: d.input_1.temperature), expected)


@pytest.mark.parametrize("token", ["٧٩.٥١٢", "79,512", "0x4F", "79.5.1", "+-79", "7 9", ""])
def test_parse_reading_rejects_what_is_not_an_ascii_number(token):
    with pytest.raises(ReplyError):
        parse_reading(token)


def test_kelvin_range_is_a_driver_option():
    pairs = [("KRDG? 1", CLAMP), *_checks(1)]
    with expected_protocol(LakeShore218, pairs, kelvin_range=(1.0, 900.0)) as inst:
        assert inst.input_1.temperature == 480.0  # the status says valid, the range allows it
    for bad in [(0.0, 100.0), (100.0, 50.0), (1.0, math.inf), (1.0,), "x"]:
        with pytest.raises(ValueError, match="kelvin_range"):
            LakeShore218(None, kelvin_range=bad)
    assert DEFAULT_KELVIN_RANGE[0] < 75.0 and 85.0 < DEFAULT_KELVIN_RANGE[1] < 480.0


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
    assert status_text(64) == "sensor units under range"  # the 218 manual's name for bit 6
    assert status_text(3) == "status bit 1, status bit 2"


# --- the corrected twin against the driver (each of these failed with the previous driver) --
def _twin_218(**options):
    return open_instrument("lakeshore218", "sim://lakeshore218", world=object(),
                           twin_options={**TWIN_OPTIONS, **options})


def test_open_input_reads_a_clamped_number_and_is_missing():
    inst = _twin_218()
    inst.twin.open_input(2)  # a broken lead on a working sensor
    assert inst.twin.reading("2", "K") == CLAMP  # the unit sends a number, not text
    assert _missing(inst.input_2.temperature) and _missing(inst.input_7.temperature)
    temps = inst.temperatures
    assert [_missing(v) for v in temps] == [False, True, False, False, False, False, True, True]
    assert "RDGST? 160" in temps[1].reason
    inst.twin.reconnect_input(2)
    assert inst.input_2.temperature == pytest.approx(80.004, abs=1e-3)


def test_bulk_read_consults_the_status_of_each_input():
    # A clamp the range check alone would pass: only RDGST? says it is not a temperature.
    inst = _twin_218(clamp_kelvin=79.0)
    inst.twin.open_input(5)
    assert inst.twin.reading("5", "K") == "+79.000"
    temps = inst.temperatures
    assert _missing(temps[4]) and "RDGST? 160" in temps[4].reason
    assert temps[3] == pytest.approx(79.25) and _missing(inst.input_5.temperature)


def test_disabled_input_with_a_stale_value_is_missing():
    inst = _twin_218()
    inst.twin.handle("INPUT 2,0")  # disabled from the front panel
    assert inst.twin.reading("2", "K") == "+80.004"  # its last value, as a Model 240 does
    assert inst.twin.status("2") == 0
    assert _missing_because("disabled")(inst.input_2.temperature)
    assert _missing_because("disabled")(inst.temperatures[1])
    assert _missing(inst.resistances[1])


def test_free_format_readings_are_read():
    inst = _twin_218(reading_format="free")
    assert inst.twin.reading("1", "K") == "79.512"
    assert inst.input_1.temperature == pytest.approx(79.512)
    assert inst.temperatures[:6] == pytest.approx([79.512, 80.004, 78.9, 79.25, 79.75, 80.6])
    assert _missing(inst.temperatures[7])


@pytest.mark.parametrize("open_reading, reply", [("clamp", CLAMP), ("overload", "+OVL"),
                                                 ("zero", "+0.0000")])
def test_twin_open_reading_styles_are_all_missing(open_reading, reply):
    inst = _twin_218(open_reading=open_reading)
    assert inst.twin.reading("7", "K") == reply and inst.twin.status("7") == 160
    assert _missing(inst.input_7.temperature) and _missing(inst.temperatures[7])
    assert _missing(inst.input_7.resistance)


def test_twin_options_are_checked():
    for option in ("open_reading", "disabled_reading", "reading_format"):
        with pytest.raises(ValueError, match=option):
            SimLakeShore218(None, **{option: "sometimes"})
    with pytest.raises(ValueError, match="no input"):
        SimLakeShore218(None).open_input(9)


def test_twin_disabled_reading_open_style():
    inst = _twin_218(disabled_reading="open")
    inst.input_2.enabled = False
    assert inst.twin.reading("2", "K") == CLAMP
    assert _missing_because("disabled")(inst.input_2.temperature)


# --- properties ---------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-1000, max_value=1000))
def test_no_out_of_range_input_reaches_the_wire(n):
    pairs = [(f"KRDG? {n}", "+79.512"), *_checks(n)] if 1 <= n <= 8 else []
    with expected_protocol(LakeShore218, pairs) as inst:
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
        value = parse_reading(token, kelvin_range=DEFAULT_KELVIN_RANGE)
    except ReplyError:
        return
    if isinstance(value, Missing):
        assert math.isnan(value) and value.reason
        return
    assert value == float(token) and DEFAULT_KELVIN_RANGE[0] <= value <= DEFAULT_KELVIN_RANGE[1]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_strict_tokens_have_the_fixed_width(token):
    try:
        value = parse_reading(token, digits=5)
    except ReplyError:
        return
    if not isinstance(value, Missing):
        assert len(token.strip()) == 7 and value == float(token)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=1e-3, max_value=1e5),
       st.sampled_from(["{:+.3f}", "{:.6g}", "{:.3E}", "{:+010.4f}", "{:g}", "{:.1f}"]))
def test_any_number_format_parses_back(x, fmt):
    text = fmt.format(x)
    value = parse_reading(text)
    assert _missing(value) if float(text) == 0.0 else value == float(text)


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.floats(min_value=75, max_value=85),
       st.booleans())
def test_garbled_replies_never_give_a_wrong_number(seed, kelvin, strict):
    inst = open_instrument("lakeshore218", "sim://lakeshore218", world=object(),
                           strict_format=strict,
                           twin_options={"values": {1: kelvin}, "sensor_errors": {1: 0.0},
                                         "seed": seed, "locations": {}})
    inst.twin.faults.garble = True
    for read in (lambda: inst.input_1.temperature, lambda: inst.temperatures[0]):
        try:
            value = read()
        except (ReplyError, InstrumentTimeout):
            continue
        if _missing(value):
            continue
        # A free-format reading cannot tell a truncated number ("+79.5" of "+79.512") from a
        # short one; the status and enable queries that go with it make a garbling line fail
        # the read instead (decision 0201). A fixed width catches the truncation itself.
        assert value == pytest.approx(kelvin, abs=0.0015 if strict else 1.0)


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
    assert _missing(inst.input_2.temperature) and inst.input_2.status == 32
    assert 15 < inst.input_2.resistance < 30  # the sensor itself still reads
    inst.set_sensor_type("A", "diode_2.5V")
    assert _missing(inst.input_1.resistance) and inst.input_1.status == 160
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
    inst.twin.open_inputs.add("3")  # the set is the fault switch `open_input` uses
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
