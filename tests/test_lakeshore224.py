"""Lake Shore 224 (pymeasure subclass): protocol, twin, loopback TCP through pyvisa-py."""

from __future__ import annotations

import types

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from pymeasure.test import expected_protocol

from ionclock.apparatus.registry import open_instrument
from ionclock.drivers.lakeshore224 import INPUTS, LakeShore224Clock
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError
from ionclock.physics.rtd import Missing
from ionclock.sim_instruments.cryostat import Cryostat
from ionclock.sim_instruments.lakeshore import SimLakeShore224
from ionclock.sim_instruments.serve import TcpServer
from tests.transcripts import check_result, run_action

CLAMP = "+480.000"
PT100 = "2,1,0,1,1"
ALL_K = ",".join(["+79.5120", "+80.0040", "+78.9000", "+79.2500", "+79.7500", "+80.6000"]
                 + [CLAMP] * 6)
ALL_K_FREE = "79.512,80.004,78.9,79.25,79.75,80.6,480,480,480,480,480,480"
TWIN_OPTIONS = dict(locations={}, values={"A": 79.512, "B": 80.004, "C1": 78.9, "C2": 79.25,
                                          "C3": 79.75, "C4": 80.6},
                    sensor_errors={n: 0.0 for n in INPUTS})


def _missing(v):
    return isinstance(v, Missing)


def _missing_because(*words):
    def check(v):
        return isinstance(v, Missing) and all(w in v.reason for w in words)
    return check


def _checks(name, status="000", intype=PT100):
    """The status and input-type queries that follow a reading of input `name`."""
    return [(f"RDGST? {name}", status), (f"INTYPE? {name}", intype)]


ALL_CHECKS = [p for i, n in enumerate(INPUTS) for p in _checks(n, "000" if i < 6 else "160")]

TRANSCRIPTS = [
    ("temperature", lambda d: d.input_A.temperature, 79.512,
     [("KRDG? A", "+79.5120"), *_checks("A")]),
    ("temperature_pymeasure", lambda d: d.input_A.kelvin, 79.512,
     [("KRDG? A", "+79.5120"), *_checks("A")]),
    ("temperature_open", lambda d: d.input_D5.temperature, _missing_because("RDGST? 160"),
     [("KRDG? D5", CLAMP), *_checks("D5", "160")]),
    ("kelvin_open", lambda d: d.input_D5.kelvin, _missing,
     [("KRDG? D5", CLAMP), *_checks("D5", "160")]),
    ("celsius", lambda d: d.input_A.celsius, -193.638, [("CRDG? A", "-193.638"), *_checks("A")]),
    ("resistance", lambda d: d.input_C1.resistance, 21.0,
     [("SRDG? C1", "+21.0000"), *_checks("C1")]),
    ("sensor_pymeasure", lambda d: d.input_C1.sensor, 21.0,
     [("SRDG? C1", "+21.0000"), *_checks("C1")]),
    ("temperatures", lambda d: d.temperatures["C4"], 80.6, [("KRDG? 0", ALL_K), *ALL_CHECKS]),
    ("temperatures_open", lambda d: [_missing(v) for v in d.temperatures.values()],
     [False] * 6 + [True] * 6, [("KRDG? 0", ALL_K), *ALL_CHECKS]),
    ("status", lambda d: d.input_B.status, 0, [("RDGST? B", "000")]),
    ("sensor_type", lambda d: d.input_A.sensor_type, "platinum", [("INTYPE? A", PT100)]),
    ("enabled", lambda d: d.input_A.enabled, True, [("INTYPE? A", PT100)]),
    ("disable", lambda d: d.input_C5.disable(), None, [("INTYPE C5,0", None), ("*ESR?", "000")]),
    ("disabled_read", lambda d: (d.input_C1.disable(), d.input_C1.temperature)[1],
     _missing_because("disabled"),
     [("INTYPE C1,0", None), ("*ESR?", "000"), ("KRDG? C1", "+78.9000"),
      *_checks("C1", "000", "0,1,0,1,1")]),
    ("configure_pt100", lambda d: d.configure_pt100(["B"]), None,
     [("INTYPE B,2,1,0,1,1", None), ("*ESR?", "000"), ("INCRV B,6", None), ("*ESR?", "000"),
      ("INCRV? B", "06")]),
    ("curve_get", lambda d: d.input_A.curve, 6, [("INCRV? A", "06")]),
    ("curve_set", lambda d: setattr(d.input_A, "curve", 6), None,
     [("INCRV A,6", None), ("*ESR?", "000"), ("INCRV? A", "06")]),
    # a diode curve on a platinum input: no error bit, the unit just leaves curve 0
    ("curve_refused", lambda d: setattr(d.input_A, "curve", 2), InstrumentError,
     [("INCRV A,2", None), ("*ESR?", "000"), ("INCRV? A", "00")]),
    ("no_curve_read", lambda d: (d.write("INCRV A,2"), d.input_A.temperature)[1],
     _missing_because("invalid reading"),
     [("INCRV A,2", None), ("KRDG? A", "+0.00000"), *_checks("A", "001")]),
    ("filter_get", lambda d: d.input_A.filter, (True, 8, 2), [("FILTER? A", "1,08,02")]),
    ("filter_set", lambda d: d.input_A.set_filter(False, 4, 1), None,
     [("FILTER A,0,4,1", None), ("*ESR?", "000")]),
    ("ping", lambda d: d.ping(), True, [("*IDN?", "LSCI,MODEL224,SIM0224,1.0")]),
    ("execution_error", lambda d: (d.write("INCRV A,99"), d.check_set_errors()),
     InstrumentError, [("INCRV A,99", None), ("*ESR?", "016")]),
]

DEVICE_ONLY = [
    # the formats of Lake Shore's own driver tests (python-driver tests/test_224.py) and more
    *[(f"format_{text}", lambda d: d.input_D4.temperature, value,
       [("KRDG? D4", text), *_checks("D4")])
      for text, value in [("567.8", _missing), ("+077.123", 77.123), ("77", 77.0),
                          ("1.234E+02", 123.4), ("79.512", 79.512), ("+79.5120", 79.512)]],
    ("sensor_free", lambda d: d.input_C1.resistance, 123.4,
     [("SRDG? C1", "123.4"), *_checks("C1")]),
    ("celsius_free", lambda d: d.input_A.celsius, 32.0, [("CRDG? A", "32.0"), *_checks("A")]),
    ("celsius_zero_is_a_value", lambda d: d.input_A.celsius, 0.0,
     [("CRDG? A", "0.0"), *_checks("A")]),
    ("all_free", lambda d: d.temperatures["C2"], 79.25, [("KRDG? 0", ALL_K_FREE), *ALL_CHECKS]),
    ("zero", lambda d: d.input_A.temperature, _missing, [("KRDG? A", "+0.00000"), *_checks("A")]),
    ("clamp_status_ok", lambda d: d.input_A.temperature, _missing_because("outside"),
     [("KRDG? A", CLAMP), *_checks("A")]),
    ("plausible_but_flagged", lambda d: d.input_A.temperature, _missing_because("invalid"),
     [("KRDG? A", "+79.5120"), *_checks("A", "001")]),
    ("plausible_but_disabled", lambda d: d.input_A.temperature, _missing_because("disabled"),
     [("KRDG? A", "+79.5120"), *_checks("A", "000", "0,0,0,0,1")]),
    ("truncated_is_a_number", lambda d: d.input_A.temperature, 79.51,
     [("KRDG? A", "+79.51"), *_checks("A")]),
    ("garbled", lambda d: d.input_A.temperature, ReplyError, [("KRDG? A", "\x7f+79.5120")]),
    ("short_all", lambda d: d.temperatures, ReplyError, [("KRDG? 0", "+79.5120,+80.0040")]),
    ("bad_intype", lambda d: d.input_A.sensor_type, ReplyError, [("INTYPE? A", "2,1")]),
    ("bad_intype_in_read", lambda d: d.input_A.temperature, ReplyError,
     [("KRDG? A", "+79.5120"), ("RDGST? A", "000"), ("INTYPE? A", "9,1,0,1,1")]),
    ("curve_other", lambda d: setattr(d.input_A, "curve", 21), InstrumentError,
     [("INCRV A,21", None), ("*ESR?", "000"), ("INCRV? A", "06")]),
]


@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS + DEVICE_ONLY,
                         ids=[t[0] for t in TRANSCRIPTS + DEVICE_ONLY])
def test_protocol(name, action, expected, pairs):
    with expected_protocol(LakeShore224Clock, pairs) as inst:
        check_result(run_action(inst, action), expected)


@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_twin_parser_answers_the_transcripts(name, action, expected, pairs):
    twin = SimLakeShore224(None, **TWIN_OPTIONS)
    for command, reply in pairs:
        twin.write(command.encode() + b"\r\n")
        assert twin.read_available() == (b"" if reply is None else reply.encode() + b"\r\n")


@pytest.mark.parametrize("reply, expected", [("+79.51", ReplyError), ("79.512", ReplyError),
                                             ("+079.512", 79.512), ("+79.5120", 79.512)])
def test_strict_format_checks_the_width(reply, expected):
    pairs = [("KRDG? A", reply)] + (_checks("A") if expected is not ReplyError else [])
    with expected_protocol(LakeShore224Clock, pairs, strict_format=True) as inst:
        check_result(run_action(inst, lambda d: d.input_A.temperature), expected)


@pytest.mark.parametrize("call", [
    lambda d: d.input("E1"), lambda d: d.input("0"),
    lambda d: setattr(d.input_A, "curve", 60), lambda d: setattr(d.input_A, "curve", 0),
    lambda d: d.input_A.set_filter(True, 1, 2), lambda d: d.configure_pt100(["A", "Z"]),
])
def test_bad_input_raises_before_any_byte(call):
    with expected_protocol(LakeShore224Clock, []) as inst:
        with pytest.raises(ValueError):
            call(inst)


def test_kelvin_range_option():
    with pytest.raises(ValueError, match="kelvin_range"):
        LakeShore224Clock(None, kelvin_range=(10.0, 5.0))
    with expected_protocol(LakeShore224Clock, [("KRDG? A", "567.8"), *_checks("A")],
                           kelvin_range=(1.0, 800.0)) as inst:
        assert inst.input_A.temperature == 567.8


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="ABCDE0123456789", min_size=1, max_size=3))
def test_no_unknown_input_reaches_the_wire(name):
    valid = name in INPUTS
    pairs = [(f"KRDG? {name}", "+79.5120"), *_checks(name)] if valid else []
    with expected_protocol(LakeShore224Clock, pairs) as inst:
        if valid:
            assert inst.input(name).temperature == 79.512
        else:
            with pytest.raises(ValueError):
                inst.input(name)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.floats(min_value=75, max_value=85),
       st.booleans())
def test_garbled_replies_never_give_a_wrong_number(seed, kelvin, strict):
    inst = open_instrument("lakeshore224", "sim://lakeshore224", world=object(),
                           strict_format=strict,
                           twin_options={"values": {"A": kelvin}, "locations": {},
                                         "sensor_errors": {"A": 0.0}, "seed": seed})
    inst.twin.faults.garble = True
    try:
        value = inst.input_A.temperature
    except (ReplyError, InstrumentTimeout):
        return
    if not _missing(value):
        assert value == pytest.approx(kelvin, abs=1.5e-4 if strict else 1.0)


# --- the corrected twin against the driver (each of these failed with the previous driver) --
def _twin_224(**options):
    return open_instrument("lakeshore224", "sim://lakeshore224", world=object(),
                           twin_options={**TWIN_OPTIONS, **options})


def test_free_format_readings_are_read():
    inst = _twin_224(reading_format="free")
    assert inst.twin.reading("A", "K") == "79.512" and inst.twin.reading("C1", "S") == "21"
    assert inst.input_A.temperature == pytest.approx(79.512)
    assert inst.input_C1.resistance == pytest.approx(21.0)
    temps = inst.temperatures
    assert temps["C4"] == pytest.approx(80.6) and _missing(temps["D5"])


def test_open_input_reads_a_clamped_number_and_is_missing():
    inst = _twin_224()
    inst.twin.open_input("B")
    assert inst.twin.reading("B", "K") == CLAMP
    assert _missing(inst.input_B.temperature) and _missing(inst.temperatures["B"])
    assert _missing(inst.input_B.kelvin)  # pymeasure's name is checked too
    inst.twin.reconnect_input("B")
    assert inst.input_B.temperature == pytest.approx(80.004)


def test_refused_curve_is_an_instrument_error():
    inst = _twin_224()
    with pytest.raises(InstrumentError, match="did not take curve 2"):
        inst.input_A.curve = 2  # DT-670 (a diode curve) on a platinum input
    assert inst.input_A.curve == 0 and _missing_because("invalid")(inst.input_A.temperature)
    inst.input_A.curve = 6  # the PT100 curve fits
    assert inst.input_A.temperature == pytest.approx(79.512)
    inst.input_A.curve = 21  # a user curve: the twin takes it on any type
    assert inst.input_A.curve == 21


def test_disabled_input_with_a_stale_value_is_missing():
    inst = _twin_224()
    inst.input_C2.disable()
    assert inst.twin.reading("C2", "K") == "+79.2500"  # the last value, as a Model 240 does
    assert _missing_because("disabled")(inst.input_C2.temperature)
    assert _missing_because("disabled")(inst.temperatures["C2"])
    inst.configure_pt100(["C2"])
    assert inst.input_C2.temperature == pytest.approx(79.25)


def test_twin_intype_change_drops_a_curve_that_no_longer_fits():
    twin = SimLakeShore224(None, **TWIN_OPTIONS)
    twin.handle("INTYPE A,1")  # a diode input now
    assert twin.curves["A"] == 0
    twin.handle("INCRV A,2")
    assert twin.curves["A"] == 2 and twin.status("A") == 160  # a PT100 on a diode input
    twin.handle("INCRV A,6")
    assert twin.curves["A"] == 0


def _world(seed=7):
    env = simpy.Environment()
    return types.SimpleNamespace(env=env, cryostat=Cryostat(env, seed=seed))


def test_twin_against_the_cryostat():
    world = _world()
    inst = open_instrument("lakeshore224", "sim://lakeshore224", world=world,
                           twin_options={"sensor_errors": {n: 0.0 for n in INPUTS}})
    world.env.run(until=7200)
    temps = inst.temperatures
    truth = world.cryostat.temperatures()
    assert temps["A"] == pytest.approx(truth["ln2_bottom"], abs=2e-4)
    assert temps["C4"] == pytest.approx(truth["trap"], abs=2e-4)
    assert all(_missing(temps[n]) for n in ("C5", "D1", "D5"))
    inst.input_A.disable()
    assert not inst.input_A.enabled and _missing(inst.input_A.temperature)
    inst.configure_pt100(["A"])
    assert inst.input_A.temperature == pytest.approx(truth["ln2_bottom"], abs=2e-4)


def test_twin_faults():
    inst = open_instrument("lakeshore224", "sim://lakeshore224", world=_world())
    inst.twin.faults.timeout = True
    with pytest.raises(InstrumentTimeout):
        inst.input_A.temperature
    assert not inst.ping()
    inst.twin.faults.timeout = False
    assert inst.ping()


@pytest.mark.ostransport
def test_over_loopback_tcp_with_pyvisa():
    world = _world()
    with TcpServer(SimLakeShore224(world, reading_format="free")) as server:
        inst = open_instrument("lakeshore224", server.resource)
        try:
            assert inst.ping()
            temps = inst.temperatures
            assert 75 < temps["A"] < 85 and _missing(temps["D5"])
            inst.input_B.set_filter(True, 12, 4)
            assert inst.input_B.filter == (True, 12, 4)
            with pytest.raises(InstrumentError):
                inst.input_B.curve = 8  # an NTC curve on a platinum input
        finally:
            inst.close()
