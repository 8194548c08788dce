"""SG380 trap-RF source and pickoff DMM: protocol (tier 1), twin (tier 2) and properties."""

from __future__ import annotations

import math

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from pymeasure.test import expected_protocol

from ionclock.apparatus.registry import open_instrument
from ionclock.apparatus.transport import LoopbackAdapter
from ionclock.drivers.trap_rf import (
    PickoffDMM,
    TrapRFSource,
    dbm_to_vrms,
    vrms_to_dbm,
)
from ionclock.errors import InstrumentError, ReplyError
from ionclock.sim_instruments.serve import TcpServer
from ionclock.sim_instruments.trap_rf import (
    RFWorld,
    SimPickoffDMM,
    SimSG380,
    TrapRF,
    TrapRFParams,
)

# --- transcripts shared by the protocol tests and the twin-parser check -------------------
# Each: (name, driver kwargs, action on the driver, expected result, [(command, reply)])
SG_TRANSCRIPTS = [
    ("frequency_set", lambda s: setattr(s, "frequency", 24.801e6), None,
     [("FREQ24801000.000000", None), ("LERR?", "0")]),
    ("frequency_get", lambda s: s.frequency, 24.801e6,
     [("FREQ?", "24801000.000000")]),
    ("amplitude_set", lambda s: setattr(s, "amplitude_dbm", -3.25), None,
     [("AMPR-3.25", None), ("LERR?", "0")]),
    ("amplitude_get", lambda s: s.amplitude_dbm, -3.25,
     [("AMPR?", "-3.25")]),
    ("output_on", lambda s: setattr(s, "output_enabled", True), None,
     [("ENBR1", None), ("LERR?", "0")]),
    ("output_get", lambda s: s.output_enabled, True,
     [("ENBR?", "1")]),
    ("output_off", lambda s: setattr(s, "output_enabled", False), None,
     [("ENBR0", None), ("LERR?", "0")]),
    ("ping", lambda s: s.ping(), True,
     [("*IDN?", "Stanford Research Systems,SG384,s/n004025,ver1.036")]),
]

DMM_TRANSCRIPTS = [
    ("configure", lambda d: d.configure_voltage_dc(10.0, 10.0), None,
     [("CONF:VOLT:DC 10", None), ("VOLT:DC:NPLC 10", None), ("SYST:ERR?", '+0,"No error"')]),
    ("read", lambda d: d.reading, 1.0, [("READ?", "+1.00000000E+00")]),
    ("measure", lambda d: d.voltage_dc, 1.0, [("MEAS:VOLT:DC? DEF,DEF", "+1.00000000E+00")]),
    ("ping", lambda d: d.ping(), True,
     [("*IDN?", "Keysight Technologies,34465A,MY00000000,A.03.01-03.15-03.01-00.52-03-02")]),
]


# --- tier 1: protocol ---------------------------------------------------------------------
@pytest.mark.parametrize("name, action, expected, pairs", SG_TRANSCRIPTS,
                         ids=[t[0] for t in SG_TRANSCRIPTS])
def test_sg380_protocol(name, action, expected, pairs):
    with expected_protocol(TrapRFSource, pairs) as inst:
        result = action(inst)
    if expected is not None:
        assert result == pytest.approx(expected)


@pytest.mark.parametrize("name, action, expected, pairs", DMM_TRANSCRIPTS,
                         ids=[t[0] for t in DMM_TRANSCRIPTS])
def test_dmm_protocol(name, action, expected, pairs):
    with expected_protocol(PickoffDMM, pairs) as inst:
        result = action(inst)
    if expected is not None:
        assert result == pytest.approx(expected)


def test_sg380_error_reply_raises_with_code():
    with expected_protocol(TrapRFSource, [("AMPR1.00", None), ("LERR?", "10")]) as inst:
        with pytest.raises(InstrumentError) as info:
            inst.amplitude_dbm = 1.0
    assert info.value.code == "10" and "SG380" in str(info.value)


def test_sg380_safety_ceiling_rejects_before_the_wire():
    with expected_protocol(TrapRFSource, [], max_amplitude_dbm=3.0) as inst:
        with pytest.raises(ValueError):
            inst.amplitude_dbm = 3.01
        with pytest.raises(ValueError):
            inst.frequency = 5e9
        with pytest.raises(ValueError):
            inst.output_enabled = 2
        assert inst.amplitude_limits_dbm == (-110.0, 3.0)


def test_sg380_bad_limits_rejected():
    with pytest.raises(ValueError):
        TrapRFSource(LoopbackAdapter(SimSG380()), max_amplitude_dbm=20.0)


@pytest.mark.parametrize("reply", ["1.2#3", "", "nan", "ab"])
def test_sg380_garbled_replies_raise_reply_error(reply):
    with expected_protocol(TrapRFSource, [("AMPR?", reply)]) as inst:
        with pytest.raises(ReplyError):
            inst.amplitude_dbm  # noqa: B018


@pytest.mark.parametrize("reply", ["2", "x"])
def test_sg380_output_state_must_be_0_or_1(reply):
    with expected_protocol(TrapRFSource, [("ENBR?", reply)]) as inst:
        with pytest.raises(ReplyError):
            inst.output_enabled  # noqa: B018


def test_dmm_overload_and_errors():
    with expected_protocol(PickoffDMM, [("READ?", "+9.90000000E+37")]) as inst:
        with pytest.raises(InstrumentError) as info:
            inst.reading  # noqa: B018
    assert info.value.code == "overload"
    pairs = [("CONF:VOLT:DC 10", None), ("VOLT:DC:NPLC 10", None),
             ("SYST:ERR?", '-222,"Data out of range"')]
    with expected_protocol(PickoffDMM, pairs) as inst:
        with pytest.raises(InstrumentError) as info:
            inst.configure_voltage_dc(10.0, 10.0)
    assert info.value.code == "-222"


def test_dmm_rejects_bad_configuration_before_the_wire():
    with expected_protocol(PickoffDMM, []) as inst:
        with pytest.raises(ValueError):
            inst.configure_voltage_dc(5.0)
        with pytest.raises(ValueError):
            inst.configure_voltage_dc(10.0, 3.0)


def test_dbm_volt_conversions():
    assert dbm_to_vrms(0.0) == pytest.approx(math.sqrt(0.05))
    assert vrms_to_dbm(dbm_to_vrms(-7.3)) == pytest.approx(-7.3)
    with pytest.raises(ValueError):
        vrms_to_dbm(0.0)


# --- hypothesis: no out-of-range value reaches the wire, garbage never becomes a number -------
@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_sg380_amplitude_never_out_of_range_on_the_wire(value):
    twin = SimSG380()
    twin.record_transcript = True
    inst = TrapRFSource(LoopbackAdapter(twin, "\n", "\r\n"), max_amplitude_dbm=5.0)
    try:
        inst.amplitude_dbm = value
    except ValueError:
        assert twin.transcript == []
        return
    assert -110.0 <= value <= 5.0
    sent = [c for c, _ in twin.transcript if c.startswith("AMPR")]
    assert len(sent) == 1 and -110.0 <= float(sent[0][4:]) <= 5.0


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="0123456789+-.eE#@!~ x", max_size=12))
def test_sg380_float_replies_parse_or_raise(reply):
    with expected_protocol(TrapRFSource, [("FREQ?", reply)]) as inst:
        try:
            value = inst.frequency
        except ReplyError:
            return
    assert value == float(reply) and math.isfinite(value)


# --- tier 2: twin -------------------------------------------------------------------------
def _replay(twin, pairs, wterm: bytes, rterm: bytes):
    for command, reply in pairs:
        twin.write(command.encode() + wterm)
        out = twin.read_available()
        assert out == (b"" if reply is None else reply.encode() + rterm), command


def test_sg380_twin_parser_matches_transcripts():
    twin = SimSG380(RFWorld())
    for _, _, _, pairs in SG_TRANSCRIPTS:
        _replay(twin, pairs, b"\n", b"\r\n")


def test_dmm_twin_parser_matches_transcripts():
    twin = SimPickoffDMM(None, standalone_v=1.0)
    for _, _, _, pairs in DMM_TRANSCRIPTS:
        _replay(twin, pairs, b"\n", b"\n")


def test_sg380_twin_rejects_and_reports():
    twin = SimSG380()
    inst = TrapRFSource(LoopbackAdapter(twin, "\n", "\r\n"))
    inst.write("AMPR20")
    assert inst.ask("LERR?") == "10"
    inst.write("BOGUS")
    assert inst.ask("LERR?") == "111"  # Undefined Command (110 is Illegal Command)
    inst.write("FREQ 24.801 FURLONG")
    assert inst.ask("LERR?") == "127"  # Illegal Units
    assert inst.ask("LERR?") == "0"


# The frequency range is the model's (SG382 2.025 GHz, SG384 4.05 GHz, SG386 6.075 GHz).
SG_MODELS = [("SG382", 2.025e9), ("SG384", 4.05e9), ("SG386", 6.075e9)]


@pytest.mark.parametrize("model, f_max", SG_MODELS, ids=[m for m, _ in SG_MODELS])
def test_sg380_twin_frequency_range_is_the_models(model, f_max):
    twin = SimSG380(sg_model=model)
    assert twin.IDN.split(",")[1] == model
    inst = TrapRFSource(LoopbackAdapter(twin, "\n", "\r\n"))
    inst.write(f"FREQ{f_max:.6f}")
    assert inst.ask("LERR?") == "0"
    inst.write(f"FREQ{f_max + 1e3:.6f}")
    assert inst.ask("LERR?") == "10"  # Illegal Value: the setting is not applied
    assert float(inst.ask("FREQ?")) == f_max


@pytest.mark.parametrize("model, f_max", SG_MODELS, ids=[m for m, _ in SG_MODELS])
def test_sg380_driver_follows_the_models_frequency_range(model, f_max):
    world = RFWorld(seed=6)
    sg = open_instrument("sg380", "sim://sg380", world=world, twin_options={"sg_model": model},
                         sg_model=model)
    assert sg.ping()
    sg.frequency = f_max
    assert sg.frequency == f_max
    sg.twin.record_transcript = True
    with pytest.raises(ValueError):
        sg.frequency = f_max + 1e3
    assert sg.twin.transcript == []  # refused before the wire
    sg.frequency = 24.801e6
    assert world.trap_rf.rf_frequency_hz == 24.801e6


def test_sg380_unknown_model_rejected():
    with pytest.raises(ValueError):
        SimSG380(sg_model="SG380")
    with pytest.raises(ValueError):
        TrapRFSource(LoopbackAdapter(SimSG380()), sg_model="SG380")


def test_dmm_nplc_0_06_accepted_by_twin_and_driver():
    twin = SimPickoffDMM(None, standalone_v=0.5)
    dmm = PickoffDMM(LoopbackAdapter(twin, "\n", "\n"))
    dmm.configure_voltage_dc(1.0, 0.06)
    assert twin.nplc == 0.06 and twin.range_v == 1.0
    assert dmm.reading == pytest.approx(0.5)


@pytest.mark.parametrize("volts, marker", [(20.0, "+9.90000000E+37"),
                                           (-20.0, "-9.90000000E+37")])
def test_dmm_overload_marker_carries_the_sign(volts, marker):
    twin = SimPickoffDMM(None, standalone_v=volts)
    dmm = PickoffDMM(LoopbackAdapter(twin, "\n", "\n"))
    dmm.configure_voltage_dc(10.0, 10.0)
    twin.record_transcript = True
    with pytest.raises(InstrumentError) as info:
        dmm.reading  # noqa: B018
    assert info.value.code == "overload"
    assert twin.transcript == [("READ?", marker)]


def test_registry_sim_drives_world_and_hook():
    world = RFWorld(seed=3)
    sg = open_instrument("sg380", "sim://sg380", world=world)
    dmm = open_instrument("dmm_34465a", "sim://dmm_34465a", world=world)
    assert sg.ping() and dmm.ping()
    fx0 = world.trap_rf.secular_frequencies()[0]
    sg.amplitude_dbm = 0.09  # +1.04 % amplitude
    fx1, fy1, fz1 = world.trap_rf.secular_frequencies()
    assert fx1 / fx0 == pytest.approx(10 ** (0.09 / 20), rel=1e-9)
    assert fz1 == 2.580e6
    assert world.rf_events[-1][1] is True
    v_on = dmm.reading
    sg.output_enabled = False
    assert world.rf_events[-1][:2] == (0, False)
    assert world.trap_rf.secular_frequencies()[:2] == (0.0, 0.0)
    assert abs(dmm.reading) < 1e-3 < v_on


def test_twin_faults_surface_as_typed_errors():
    world = RFWorld(seed=4)
    sg = open_instrument("sg380", "sim://sg380", world=world)
    sg.twin.faults.timeout = True
    with pytest.raises(TimeoutError):
        sg.amplitude_dbm  # noqa: B018
    assert sg.ping() is False
    sg.twin.faults.timeout = False
    sg.twin.faults.garble = True
    errors = 0
    for _ in range(20):
        try:
            value = sg.amplitude_dbm
        except ReplyError:
            errors += 1
        else:
            assert value == 0.0  # a garbled reply that still parses can only be the truth
    assert errors > 0


def test_trap_rf_model_drift_is_seeded_and_query_independent():
    a = TrapRF(simpy.Environment(), seed=7)
    b = TrapRF(simpy.Environment(), seed=7)
    ts = [0.0, 1000.0, 86400.0, 3 * 86400.0]
    dense = [b.coupling(t) for t in range(0, 3 * 86400 + 1, 997)]
    assert dense  # b was queried on a dense, different schedule
    assert [a.coupling(t) for t in ts] == [b.coupling(t) for t in ts]
    c = TrapRF(simpy.Environment(), seed=8)
    assert c.coupling(86400.0) != a.coupling(86400.0)


def test_trap_rf_drift_size_is_realistic():
    # random walk of 3e-3/sqrt(day): the spread of c(1 day) - c(0) over seeds is ~3e-3
    p = TrapRFParams(temp_daily_k=0.0, temp_ou_k=0.0)
    d = [TrapRF(simpy.Environment(), p, seed=s).coupling(86400.0) - 1.0 for s in range(200)]
    rms = math.sqrt(sum(x * x for x in d) / len(d))
    assert 2.4e-3 < rms < 3.6e-3


@pytest.mark.ostransport
def test_sg380_and_dmm_over_loopback_tcp_with_pyvisa():
    world = RFWorld(seed=5)
    with TcpServer(SimSG380(world)) as srv_sg, TcpServer(SimPickoffDMM(world)) as srv_dmm:
        sg = open_instrument("sg380", srv_sg.resource)
        dmm = open_instrument("dmm_34465a", srv_dmm.resource)
        try:
            assert sg.ping()
            sg.amplitude_dbm = -1.5
            assert sg.amplitude_dbm == -1.5
            assert sg.output_enabled is True
            dmm.configure_voltage_dc(10.0, 10.0)
            v = dmm.reading
            assert v == pytest.approx(10 ** (-1.5 / 20) * world.trap_rf.coupling(), rel=1e-3)
        finally:
            sg.close()
            dmm.close()
