"""Coil supplies (E36312A, DP832): protocol, twin (in-process and loopback TCP), safety limits."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymeasure.test import expected_protocol

from ionclock.apparatus.registry import open_instrument
from ionclock.drivers.coil_supplies import CoilSupplyDP832, CoilSupplyE36312A, parse_scpi_error
from ionclock.drivers.common import parse_number
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError
from ionclock.sim_instruments.coil_supplies import SimKeysightE36312A, SimRigolDP832
from ionclock.sim_instruments.serve import TcpServer

KS_OK = ("SYST:ERR?", '+0,"No error"')
RG_OK = (":SYST:ERR?", '0,"No error"')
KS_ZERO = "+0.00000000E+00"
KS_IDN = "Keysight Technologies,E36312A,MY00000000,2.1.0-1.0.4-1.12"
RG_IDN = "RIGOL TECHNOLOGIES,DP832,DP8C000000000,00.01.16"

# (name, action, expected, pairs); every list starts at the twin's power-on state (0 A, 0 V,
# outputs off) with the default slew: 0.1 A/s * 0.1 s = 0.01 A per step.
KS_TRANSCRIPTS = [
    ("current_setpoint_get", lambda s: s.ch_2.current_setpoint, 0.0,
     [("CURR? (@2)", KS_ZERO)]),
    ("current_setpoint_set", lambda s: setattr(s.ch_2, "current_setpoint", 0.01), None,
     [("CURR? (@2)", KS_ZERO), ("CURR 0.01, (@2)", None), KS_OK]),
    ("voltage_setpoint_set", lambda s: setattr(s.ch_1, "voltage_setpoint", 5.5), None,
     [("VOLT 5.5, (@1)", None), KS_OK]),
    ("voltage_setpoint_get", lambda s: s.ch_3.voltage_setpoint, 0.0,
     [("VOLT? (@3)", KS_ZERO)]),
    ("output_on", lambda s: setattr(s.ch_2, "output_enabled", True), None,
     [("CURR? (@2)", KS_ZERO), ("OUTP 1, (@2)", None), KS_OK]),
    ("output_off", lambda s: setattr(s.ch_2, "output_enabled", False), None,
     [("OUTP 0, (@2)", None), KS_OK]),
    ("output_get", lambda s: s.ch_2.output_enabled, False, [("OUTP? (@2)", "0")]),
    ("current", lambda s: s.ch_2.current, 0.0, [("MEAS:CURR? (@2)", KS_ZERO)]),
    ("voltage", lambda s: s.ch_2.voltage, 0.0, [("MEAS:VOLT? (@2)", KS_ZERO)]),
    ("ramp", lambda s: list(s.ch_2.ramp(0.025)), [0.1, 0.1],
     [("CURR? (@2)", KS_ZERO), ("CURR 0.01, (@2)", None), KS_OK,
      ("CURR 0.02, (@2)", None), KS_OK, ("CURR 0.025, (@2)", None), KS_OK]),
    ("ping", lambda s: s.ping(), True, [("*IDN?", KS_IDN)]),
]

RG_TRANSCRIPTS = [
    ("current_setpoint_get", lambda s: s.ch_2.current_setpoint, 0.0,
     [(":INST:NSEL 2;:SOUR:CURR:LEV:IMM:AMPL?", "0.0000")]),
    ("current_setpoint_set", lambda s: setattr(s.ch_2, "current_setpoint", 0.01), None,
     [(":INST:NSEL 2;:SOUR:CURR:LEV:IMM:AMPL?", "0.0000"),
      (":INST:NSEL 2;:SOUR:CURR:LEV:IMM:AMPL 0.01", None), RG_OK]),
    ("voltage_setpoint_set", lambda s: setattr(s.ch_3, "voltage_setpoint", 4.5), None,
     [(":INST:NSEL 3;:SOUR:VOLT:LEV:IMM:AMPL 4.5", None), RG_OK]),
    ("voltage_setpoint_get", lambda s: s.ch_1.voltage_setpoint, 0.0,
     [(":INST:NSEL 1;:SOUR:VOLT:LEV:IMM:AMPL?", "0.000")]),
    ("output_on", lambda s: setattr(s.ch_1, "output_enabled", True), None,
     [(":INST:NSEL 1;:SOUR:CURR:LEV:IMM:AMPL?", "0.0000"), (":OUTP:STAT CH1,ON", None), RG_OK]),
    ("output_off", lambda s: setattr(s.ch_1, "output_enabled", False), None,
     [(":OUTP:STAT CH1,OFF", None), RG_OK]),
    ("output_get", lambda s: s.ch_1.output_enabled, False, [(":OUTP:STAT? CH1", "OFF")]),
    ("output_mode", lambda s: s.ch_1.output_mode, "UR", [(":OUTP:MODE? CH1", "UR")]),
    ("current", lambda s: s.ch_3.current, 0.0, [(":MEAS:CURR:DC? CH3", "0.0000")]),
    ("voltage", lambda s: s.ch_3.voltage, 0.0, [(":MEAS:VOLT:DC? CH3", "0.000")]),
    ("ocp", lambda s: s.ch_2.enable_overcurrent_protection(), None,
     [(":INST:NSEL 2;:SOUR:CURR:PROT:LEV 3", None), RG_OK,
      (":INST:NSEL 2;:SOUR:CURR:PROT:STAT ON", None), RG_OK]),
    ("ramp", lambda s: list(s.ch_2.ramp(0.015)), [0.1],
     [(":INST:NSEL 2;:SOUR:CURR:LEV:IMM:AMPL?", "0.0000"),
      (":INST:NSEL 2;:SOUR:CURR:LEV:IMM:AMPL 0.01", None), RG_OK,
      (":INST:NSEL 2;:SOUR:CURR:LEV:IMM:AMPL 0.015", None), RG_OK]),
    ("ping", lambda s: s.ping(), True, [("*IDN?", RG_IDN)]),
]

CASES = [(CoilSupplyE36312A, SimKeysightE36312A, t) for t in KS_TRANSCRIPTS] + [
    (CoilSupplyDP832, SimRigolDP832, t) for t in RG_TRANSCRIPTS]
IDS = [f"{c[0].__name__}-{c[2][0]}" for c in CASES]


# --- tier 1: protocol -----------------------------------------------------------------------
@pytest.mark.parametrize("driver, twin, transcript", CASES, ids=IDS)
def test_protocol(driver, twin, transcript):
    name, action, expected, pairs = transcript
    with expected_protocol(driver, pairs) as supply:
        result = action(supply)
    if expected is not None:
        assert result == pytest.approx(expected) if not isinstance(expected, str) \
            else result == expected


@pytest.mark.parametrize("driver, set_cmd, get_cmd, ok, err", [
    (CoilSupplyE36312A, "CURR 0.01, (@2)", "CURR? (@2)", KS_OK,
     ("SYST:ERR?", '-222,"Data out of range"')),
    (CoilSupplyDP832, ":INST:NSEL 2;:SOUR:CURR:LEV:IMM:AMPL 0.01",
     ":INST:NSEL 2;:SOUR:CURR:LEV:IMM:AMPL?", RG_OK, (":SYST:ERR?", '-222,"Data out of range"'))])
def test_protocol_error_after_set_raises_with_code(driver, set_cmd, get_cmd, ok, err):
    pairs = [(get_cmd, "0"), (set_cmd, None), err, ok]
    with expected_protocol(driver, pairs) as supply:
        with pytest.raises(InstrumentError) as info:
            supply.ch_2.current_setpoint = 0.01
    assert info.value.code == "-222"
    assert "out of range" in str(info.value)


@pytest.mark.parametrize("driver", [CoilSupplyE36312A, CoilSupplyDP832])
@pytest.mark.parametrize("value", [-0.001, 0.51, math.nan, math.inf, "0.1"])
def test_out_of_limit_writes_nothing(driver, value):
    with expected_protocol(driver, [], current_limit_a=0.5) as supply:
        with pytest.raises(ValueError):
            supply.ch_2.current_setpoint = value
        with pytest.raises(ValueError):
            supply.ch_2.ramp(value)


def test_step_too_large_writes_only_the_readback():
    with expected_protocol(CoilSupplyE36312A, [("CURR? (@2)", "+1.00000000E-01")]) as supply:
        with pytest.raises(ValueError, match="maximum step"):
            supply.ch_2.current_setpoint = 0.2
        assert supply.ch_2.max_step == pytest.approx(0.01)


def test_enable_at_large_setpoint_is_refused():
    with expected_protocol(CoilSupplyDP832, [(":INST:NSEL 1;:SOUR:CURR:LEV:IMM:AMPL?",
                                              "0.5000"),
                                             (":OUTP:STAT? CH1", "OFF")]) as supply:
        with pytest.raises(ValueError, match="turning on"):
            supply.ch_1.output_enabled = True


def test_enable_of_an_output_already_on_changes_nothing_and_is_allowed():
    with expected_protocol(CoilSupplyDP832, [(":INST:NSEL 1;:SOUR:CURR:LEV:IMM:AMPL?",
                                              "0.7440"),
                                             (":OUTP:STAT? CH1", "ON"),
                                             (":OUTP:STAT CH1,ON", None),
                                             (":SYST:ERR?", '0,"No error"')]) as supply:
        supply.ch_1.output_enabled = True


def test_a_setpoint_found_above_the_limit_is_ramped_down_to_it():
    steps = [(f"CURR {a}, (@2)", None) for a in ("0.94", "0.93", "0.92", "0.91", "0.9")]
    pairs = [p for step in steps for p in (step, ("SYST:ERR?", '+0,"No error"'))]
    with expected_protocol(CoilSupplyE36312A, [("CURR? (@2)", "+9.50000000E-01"), *pairs],
                           current_limit_a=0.9, slew_a_per_s=0.1) as supply:
        assert list(supply.ch_2.ramp(0.9)) == [0.1] * 4
        with pytest.raises(ValueError, match="configured limit"):
            supply.ch_2.ramp(0.95)   # never back up


@pytest.mark.parametrize("kwargs", [{"current_limit_a": 1.5}, {"current_limit_a": {4: 0.1}},
                                    {"slew_a_per_s": 0.0}, {"step_interval_s": -1.0},
                                    {"current_limit_a": {2: math.nan}}])
def test_bad_safety_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        with expected_protocol(CoilSupplyE36312A, [], **kwargs):
            pass


def test_limit_cannot_be_raised_later():
    with expected_protocol(CoilSupplyE36312A, [], current_limit_a=0.2) as supply:
        assert supply.ch_2.current_limit == 0.2
        assert supply.ch_1.current_limit == 0.2
        with pytest.raises(AttributeError):
            supply.ch_2.current_limit = 1.0
        with pytest.raises(RuntimeError):
            supply.ch_2.configure_safety(1.0, 1.0, 1.0, 1.0)


# --- tier 2: twin -----------------------------------------------------------------------------
def _replay(twin, pairs):
    for cmd, reply in pairs:
        twin.write(cmd.encode("ascii") + b"\n")
        assert twin.read_available() == (b"" if reply is None else reply.encode() + b"\n"), cmd


@pytest.mark.parametrize("driver, twin, transcript", CASES, ids=IDS)
def test_twin_parser_matches_transcript(driver, twin, transcript):
    _replay(twin(None, noise_a=0.0), transcript[3])


class CoilWorld:
    def __init__(self):
        self.changes = []

    def coil_changed(self, channel, current_a):
        self.changes.append((channel, current_a))


@pytest.mark.parametrize("model", ["keysight_e36312a", "rigol_dp832"])
def test_twin_ramp_reaches_world(model):
    world = CoilWorld()
    supply = open_instrument(model, f"sim://{model}", world=world, current_limit_a=0.6,
                             slew_a_per_s=1.0, step_interval_s=0.1)
    ch = supply.ch_2
    ch.voltage_setpoint = 5.0
    ch.output_enabled = True
    delays = []
    for d in ch.ramp(0.35):
        delays.append(d)
    assert delays == [0.1, 0.1, 0.1]
    assert [round(a, 9) for _, a in world.changes] == [0.1, 0.2, 0.3, 0.35]
    assert ch.current == pytest.approx(0.35, abs=2e-4)  # seeded noise
    ch.ramp_down_and_disable(sleep=lambda s: None)
    assert world.changes[-1] == (2, 0.0)
    assert ch.current == 0.0
    assert supply.ping()


def test_twin_compliance_limits_effective_current():
    world = CoilWorld()
    supply = open_instrument("rigol_dp832", "sim://rigol_dp832", world=world,
                             twin_options={"coil_ohm": 10.0}, slew_a_per_s=10.0)
    ch = supply.ch_1
    ch.voltage_setpoint = 2.0
    ch.output_enabled = True
    ch.ramp_to(0.5, sleep=lambda s: None)
    assert ch.output_mode == "CV"
    assert world.changes[-1] == (1, pytest.approx(0.2))


@pytest.mark.parametrize("twin_cls, line, code", [
    (SimKeysightE36312A, b"FOO 1", "-113"), (SimKeysightE36312A, b"CURR 2, (@2)", "-222"),
    (SimKeysightE36312A, b"CURR abc, (@2)", "-104"), (SimKeysightE36312A, b"CURR? (@7)", "-222"),
    (SimKeysightE36312A, b"OUTP maybe, (@1)", "-224"), (SimKeysightE36312A, b"CURR 0.1", "-109"),
    (SimRigolDP832, b":FOO:BAR 1", "-113"), (SimRigolDP832, b":INST:NSEL 4", "-222"),
    (SimRigolDP832, b":OUTP:STAT CH9,ON", "-222"),
    (SimRigolDP832, b":INST:NSEL 3;:SOUR:VOLT:LEV:IMM:AMPL 6", "-222")])
def test_twin_error_queue(twin_cls, line, code):
    twin = twin_cls(None)
    twin.write(line + b"\n")
    assert twin.read_available() == b""
    err = b"SYST:ERR?\n"
    twin.write(err)
    code_text, message = twin.read_available().decode().strip().split(",", 1)
    assert int(code_text) == int(code) and message.startswith('"') and len(message) > 3
    twin.write(err)
    assert twin.read_available().strip().split(b",")[0] in (b"+0", b"0")


def _error_code(twin, line: bytes) -> int:
    twin.write(line + b"\n")
    assert twin.read_available() == b""
    twin.write(b":SYST:ERR?\n")
    return int(twin.read_available().split(b",")[0])


@pytest.mark.parametrize("line, code", [
    # DP800 Programming Guide, :APPLy (p. 2-6): CH1/CH2 0-32 V, 0-3.2 A; CH3 0-5.3 V, 0-3.2 A
    (b":INST:NSEL 1;:SOUR:CURR:LEV:IMM:AMPL 3.2", 0),
    (b":INST:NSEL 1;:SOUR:CURR:LEV:IMM:AMPL 3.21", -222),
    (b":INST:NSEL 2;:SOUR:VOLT:LEV:IMM:AMPL 32", 0),
    (b":INST:NSEL 2;:SOUR:VOLT:LEV:IMM:AMPL 32.01", -222),
    (b":INST:NSEL 3;:SOUR:VOLT:LEV:IMM:AMPL 5.3", 0),
    (b":INST:NSEL 3;:SOUR:VOLT:LEV:IMM:AMPL 5.31", -222),
    # QCoDeS Rigol_DP832.py: OCP level 0.001-3.3 A
    (b":INST:NSEL 2;:SOUR:CURR:PROT:LEV 0.001", 0),
    (b":INST:NSEL 2;:SOUR:CURR:PROT:LEV 0.0005", -222),
    (b":INST:NSEL 2;:SOUR:CURR:PROT:LEV 3.3", 0),
    (b":INST:NSEL 2;:SOUR:CURR:PROT:LEV 3.31", -222)])
def test_twin_dp832_programming_ranges_follow_the_guide(line, code):
    assert _error_code(SimRigolDP832(None), line) == code


@pytest.mark.parametrize("level", [0.0005, 0.0, 3.31])
def test_dp832_ocp_level_outside_the_units_range_writes_nothing(level):
    with expected_protocol(CoilSupplyDP832, []) as supply:
        with pytest.raises(ValueError, match="OCP level"):
            supply.ch_2.enable_overcurrent_protection(level)


def test_dp832_ocp_at_the_units_minimum_against_the_twin():
    supply = open_instrument("rigol_dp832", "sim://rigol_dp832", world=CoilWorld())
    with pytest.raises(ValueError, match="OCP level"):
        supply.ch_2.enable_overcurrent_protection(0.0005)   # the unit would answer -222
    supply.ch_2.enable_overcurrent_protection(0.001)
    assert supply.twin.ocp_level[2] == 0.001 and supply.twin.ocp_on[2]


@pytest.mark.parametrize("off_mode", ["UR", "CV"])
def test_dp832_driver_with_either_reading_of_the_mode_when_off(off_mode):
    world = CoilWorld()
    supply = open_instrument("rigol_dp832", "sim://rigol_dp832", world=world,
                             twin_options={"off_mode": off_mode}, slew_a_per_s=1.0)
    ch = supply.ch_2
    assert ch.output_mode == off_mode
    assert ch.output_enabled is False
    ch.voltage_setpoint = 5.0
    ch.output_enabled = True
    ch.ramp_to(0.3, sleep=lambda s: None)
    assert ch.output_mode == "CC" and ch.output_enabled is True
    ch.ramp_down_and_disable(sleep=lambda s: None)
    assert ch.output_enabled is False and ch.output_mode == off_mode
    assert world.changes[-1] == (2, 0.0)


def test_twin_off_mode_is_checked():
    with pytest.raises(ValueError, match="off_mode"):
        SimRigolDP832(None, off_mode="OFF")


def test_twin_error_queue_overflows():
    twin = SimKeysightE36312A(None)
    twin.write(b"FOO\n" * 25)
    codes = []
    for _ in range(21):
        twin.write(b"SYST:ERR?\n")
        codes.append(int(twin.read_available().split(b",")[0]))
    assert codes[:19] == [-113] * 19 and codes[19] == -350 and codes[20] == 0


def test_twin_keysight_channel_lists_and_long_forms():
    twin = SimKeysightE36312A(None, noise_a=0.0)
    twin.write(b"SOURce:CURRent:LEVel:IMMediate:AMPLitude 0.25, (@2:3)\n")
    twin.write(b"curr? (@1,2,3)\n")
    assert twin.read_available() == b"+0.00000000E+00,+2.50000000E-01,+2.50000000E-01\n"


def test_twin_garbled_replies_raise_typed_errors():
    supply = open_instrument("keysight_e36312a", "sim://keysight_e36312a", world=CoilWorld())
    supply.twin.faults.garble = True
    failures = 0
    for _ in range(40):
        try:
            value = supply.ch_2.current_setpoint
        except (InstrumentError, InstrumentTimeout):
            failures += 1
            supply.adapter.flush_read_buffer()
            continue
        assert value == 0.0  # a corruption that still parses must not change the number
    assert failures > 20


@pytest.mark.ostransport
@pytest.mark.parametrize("model, twin_cls", [("keysight_e36312a", SimKeysightE36312A),
                                             ("rigol_dp832", SimRigolDP832)])
def test_twin_over_loopback_tcp_with_pyvisa_py(model, twin_cls):
    world = CoilWorld()
    with TcpServer(twin_cls(world, noise_a=0.0)) as server:
        supply = open_instrument(model, server.resource, current_limit_a=0.5,
                                 slew_a_per_s=1.0, timeout=2000)
        try:
            ch = supply.ch_3
            ch.voltage_setpoint = 4.0
            ch.output_enabled = True
            ch.ramp_to(0.25, sleep=lambda s: None)
            assert ch.current == pytest.approx(0.25)
            assert supply.ping()
        finally:
            supply.close()
    assert world.changes[-1] == (3, pytest.approx(0.25))


# --- properties ---------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                          st.floats(-0.1, 0.7)), max_size=25),
       st.sampled_from(["keysight_e36312a", "rigol_dp832"]))
def test_no_call_exceeds_the_limit_or_the_step(values, model):
    supply = open_instrument(model, f"sim://{model}", world=CoilWorld(), current_limit_a=0.5,
                             slew_a_per_s=1.0, step_interval_s=0.1)
    twin, ch = supply.twin, supply.ch_1
    previous = twin.current_set[1]
    for value in values:
        for op in ("set", "ramp"):
            try:
                if op == "set":
                    ch.current_setpoint = value
                else:
                    gen = ch.ramp(value, dt_s=0.05)
                    for _ in gen:
                        now = twin.current_set[1]
                        assert abs(now - previous) <= 0.05 + 1e-9
                        previous = now
            except ValueError:
                pass
            now = twin.current_set[1]
            assert 0.0 <= now <= 0.5
            assert abs(now - previous) <= 0.1 + 1e-9
            previous = now


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_scpi_error_parser_is_typed(reply):
    try:
        code, message = parse_scpi_error(reply, "x")
    except (ReplyError, InstrumentTimeout):
        return
    assert isinstance(code, int) and reply.strip().startswith(("+", "-", *"0123456789"))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=20))
def test_number_parser_is_finite_or_typed(reply):
    try:
        value = parse_number(reply, "x", "current")
    except (ReplyError, InstrumentTimeout):
        return
    assert math.isfinite(value) and value == float(reply)
