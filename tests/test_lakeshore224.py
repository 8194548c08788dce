"""Lake Shore 224 (pymeasure subclass): protocol, twin, loopback TCP through pyvisa-py."""

from __future__ import annotations

import types

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from pymeasure.test import expected_protocol

from ionclock.drivers.lakeshore224 import INPUTS, LakeShore224Clock
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError
from ionclock.registry import open_instrument
from ionclock.rtd import Missing
from ionclock.sim_instruments.cryostat import Cryostat
from ionclock.sim_instruments.lakeshore import SimLakeShore224
from ionclock.sim_instruments.serve import TcpServer
from tests.transcripts import check_result, run_action

OVL = "+OVL"
ALL_K = ",".join(["+79.5120", "+80.0040", "+78.9000", "+79.2500", "+79.7500", "+80.6000"]
                 + [OVL] * 6)
TWIN_OPTIONS = dict(locations={}, values={"A": 79.512, "B": 80.004, "C1": 78.9, "C2": 79.25,
                                          "C3": 79.75, "C4": 80.6},
                    sensor_errors={n: 0.0 for n in INPUTS})


def _missing(v):
    return isinstance(v, Missing)


TRANSCRIPTS = [
    ("temperature", lambda d: d.input_A.temperature, 79.512, [("KRDG? A", "+79.5120")]),
    ("temperature_pymeasure", lambda d: d.input_A.kelvin, 79.512, [("KRDG? A", "+79.5120")]),
    ("temperature_overload", lambda d: d.input_D5.temperature, _missing, [("KRDG? D5", OVL)]),
    ("resistance", lambda d: d.input_C1.resistance, 21.0, [("SRDG? C1", "+21.0000")]),
    ("temperatures", lambda d: d.temperatures["C4"], 80.6, [("KRDG? 0", ALL_K)]),
    ("status", lambda d: d.input_B.status, 0, [("RDGST? B", "000")]),
    ("sensor_type", lambda d: d.input_A.sensor_type, "platinum", [("INTYPE? A", "2,1,0,1,1")]),
    ("enabled", lambda d: d.input_A.enabled, True, [("INTYPE? A", "2,1,0,1,1")]),
    ("disable", lambda d: d.input_C5.disable(), None, [("INTYPE C5,0", None), ("*ESR?", "000")]),
    ("configure_pt100", lambda d: d.configure_pt100(["B"]), None,
     [("INTYPE B,2,1,0,1,1", None), ("*ESR?", "000"), ("INCRV B,6", None), ("*ESR?", "000")]),
    ("curve_get", lambda d: d.input_A.curve, 6, [("INCRV? A", "06")]),
    ("filter_get", lambda d: d.input_A.filter, (True, 8, 2), [("FILTER? A", "1,08,02")]),
    ("filter_set", lambda d: d.input_A.set_filter(False, 4, 1), None,
     [("FILTER A,0,4,1", None), ("*ESR?", "000")]),
    ("ping", lambda d: d.ping(), True, [("*IDN?", "LSCI,MODEL224,SIM0224,1.0")]),
    ("execution_error", lambda d: (d.write("INCRV A,99"), d.check_set_errors()),
     InstrumentError, [("INCRV A,99", None), ("*ESR?", "016")]),
]

DEVICE_ONLY = [
    ("zero", lambda d: d.input_A.temperature, _missing, [("KRDG? A", "+0.00000")]),
    ("truncated", lambda d: d.input_A.temperature, ReplyError, [("KRDG? A", "+79.51")]),
    ("garbled", lambda d: d.input_A.temperature, ReplyError, [("KRDG? A", "\x7f+79.5120")]),
    ("short_all", lambda d: d.temperatures, ReplyError, [("KRDG? 0", "+79.5120,+80.0040")]),
    ("bad_intype", lambda d: d.input_A.sensor_type, ReplyError, [("INTYPE? A", "2,1")]),
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


@pytest.mark.parametrize("call", [
    lambda d: d.input("E1"), lambda d: d.input("0"),
    lambda d: setattr(d.input_A, "curve", 60), lambda d: setattr(d.input_A, "curve", 0),
    lambda d: d.input_A.set_filter(True, 1, 2), lambda d: d.configure_pt100(["A", "Z"]),
])
def test_bad_input_raises_before_any_byte(call):
    with expected_protocol(LakeShore224Clock, []) as inst:
        with pytest.raises(ValueError):
            call(inst)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="ABCDE0123456789", min_size=1, max_size=3))
def test_no_unknown_input_reaches_the_wire(name):
    valid = name in INPUTS
    with expected_protocol(LakeShore224Clock,
                           [(f"KRDG? {name}", "+79.5120")] if valid else []) as inst:
        if valid:
            assert inst.input(name).temperature == 79.512
        else:
            with pytest.raises(ValueError):
                inst.input(name)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2**32), st.floats(min_value=75, max_value=85))
def test_garbled_replies_never_give_a_wrong_number(seed, kelvin):
    inst = open_instrument("lakeshore224", "sim://lakeshore224", world=object(),
                           twin_options={"values": {"A": kelvin}, "locations": {},
                                         "sensor_errors": {"A": 0.0}, "seed": seed})
    inst.twin.faults.garble = True
    try:
        value = inst.input_A.temperature
    except (ReplyError, InstrumentTimeout):
        return
    assert value == pytest.approx(kelvin, abs=1.5e-4)


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
    with TcpServer(SimLakeShore224(world)) as server:
        inst = open_instrument("lakeshore224", server.resource)
        try:
            assert inst.ping()
            temps = inst.temperatures
            assert 75 < temps["A"] < 85 and _missing(temps["D5"])
            inst.input_B.set_filter(True, 12, 4)
            assert inst.input_B.filter == (True, 12, 4)
        finally:
            inst.close()
