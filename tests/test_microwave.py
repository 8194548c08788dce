"""E8257D microwave synthesiser for the Cd+ HFS: protocol, twin, loopback TCP, properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pymeasure.test import expected_protocol

from ionclock.apparatus.registry import open_instrument
from ionclock.apparatus.transport import LoopbackAdapter
from ionclock.drivers.microwave import CD_HFS_HZ, MicrowaveSynth8257D
from ionclock.errors import InstrumentError, ReplyError
from ionclock.sim_instruments.microwave import SimAgilent8257D
from ionclock.sim_instruments.serve import TcpServer

OK = (":SYST:ERR?", '+0,"No error"')

TRANSCRIPTS = [
    ("hfs_113", lambda m: m.tune_to_hfs(113), CD_HFS_HZ[113],
     [(":FREQ 15199862854.960 Hz", None), OK]),
    ("frequency_get", lambda m: m.frequency, 15199862854.96,
     [(":FREQ?", "+1.519986285496000E+10")]),
    ("hfs_111", lambda m: m.tune_to_hfs(111, offset_hz=-2.5), CD_HFS_HZ[111] - 2.5,
     [(":FREQ 14530507347.400 Hz", None), OK]),
    ("power_set", lambda m: setattr(m, "power_dbm", 23.0), None,
     [(":POW 23.00 dBm", None), OK]),
    ("power_get", lambda m: m.power_dbm, 23.0, [(":POW?", "+2.30000000E+01")]),
    ("output_on", lambda m: m.enable(), None, [(":OUTP 1", None), OK]),
    ("output_get", lambda m: m.output_enabled, True, [(":OUTP?", "1")]),
    ("output_off", lambda m: m.disable(), None, [(":OUTP 0", None), OK]),
    ("ping", lambda m: m.ping(), True,
     [("*IDN?", "Agilent Technologies, E8257D, US00000000, C.06.28")]),
]


@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_protocol(name, action, expected, pairs):
    with expected_protocol(MicrowaveSynth8257D, pairs) as inst:
        result = action(inst)
    if expected is not None:
        assert result == pytest.approx(expected, abs=1e-3)


def test_twin_parser_matches_transcripts():
    twin = SimAgilent8257D()
    for _, _, _, pairs in TRANSCRIPTS:
        for command, reply in pairs:
            twin.write(command.encode() + b"\n")
            assert twin.read_available() == (b"" if reply is None else reply.encode() + b"\n")


def test_error_reply_and_garbled():
    pairs = [(":POW 20.00 dBm", None), (":SYST:ERR?", '-222,"Data out of range"')]
    with expected_protocol(MicrowaveSynth8257D, pairs) as inst:
        with pytest.raises(InstrumentError) as info:
            inst.power_dbm = 20.0
    assert info.value.code == "-222"
    for reply in ("1.2.3", "", "inf", "x"):
        with expected_protocol(MicrowaveSynth8257D, [(":POW?", reply)]) as inst:
            with pytest.raises(ReplyError):
                inst.power_dbm  # noqa: B018
    with expected_protocol(MicrowaveSynth8257D, [(":OUTP?", "3")]) as inst:
        with pytest.raises(ReplyError):
            inst.output_enabled  # noqa: B018


def test_limits_before_the_wire():
    with expected_protocol(MicrowaveSynth8257D, [], max_power_dbm=23.0) as inst:
        for attr, value in [("power_dbm", 23.01), ("power", 30.0), ("frequency", 21e9),
                            ("frequency", 1e3), ("output_enabled", 2)]:
            with pytest.raises(ValueError):
                setattr(inst, attr, value)
        with pytest.raises(ValueError):
            inst.tune_to_hfs(114)
    with pytest.raises(ValueError):
        MicrowaveSynth8257D(LoopbackAdapter(SimAgilent8257D()), max_power_dbm=30.0)


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_no_out_of_range_power_reaches_the_wire(value):
    twin = SimAgilent8257D()
    twin.record_transcript = True
    inst = MicrowaveSynth8257D(LoopbackAdapter(twin, "\n", "\n"), max_power_dbm=23.0)
    try:
        inst.power_dbm = value
    except ValueError:
        assert twin.transcript == []
        return
    sent = [c for c, _ in twin.transcript if c.startswith(":POW ")]
    assert len(sent) == 1 and float(sent[0].split()[1]) <= 23.0 and math.isfinite(value)


def test_twin_world_hook_through_registry():
    class World:
        def __init__(self):
            self.seen = []

        def microwave_changed(self, f, p, on):
            self.seen.append((f, p, on))

    world = World()
    mw = open_instrument("microwave_8257d", "sim://microwave_8257d", world=world)
    mw.tune_to_hfs(111)
    mw.power_dbm = 23.0
    mw.enable()
    assert world.seen[-1] == (pytest.approx(CD_HFS_HZ[111], abs=1e-3), 23.0, True)
    assert mw.frequency == pytest.approx(CD_HFS_HZ[111], abs=1e-2)
    mw.twin.faults.timeout = True
    assert mw.ping() is False


@pytest.mark.ostransport
def test_over_loopback_tcp_with_pyvisa():
    with TcpServer(SimAgilent8257D()) as srv:
        mw = open_instrument("microwave_8257d", srv.resource)
        try:
            assert mw.ping()
            mw.tune_to_hfs(113)
            mw.power_dbm = 23.0
            mw.enable()
            assert mw.output_enabled is True
            assert mw.frequency == pytest.approx(CD_HFS_HZ[113], abs=1e-2)
            assert mw.power_dbm == 23.0
        finally:
            mw.close()


@pytest.mark.parametrize("reading", SimAgilent8257D.OUT_OF_RANGE)
def test_unit_with_less_range_than_configured_in_each_reading(reading):
    """Option 513 without the high-power option, driven by a driver told 20 GHz / +25 dBm.

    Both readings of an out-of-range value (rejected, or clipped to the limit) queue -222 and
    the driver raises it; what the unit then holds differs, and a query reads it back.
    """
    twin = SimAgilent8257D(max_frequency_hz=13e9, min_power_dbm=-20.0, max_power_dbm=10.0,
                           out_of_range=reading)
    mw = MicrowaveSynth8257D(LoopbackAdapter(twin, "\n", "\n"))
    with pytest.raises(InstrumentError) as info:
        mw.tune_to_hfs(113)
    assert info.value.code == "-222"
    assert ("clipped to upper limit" in str(info.value)) == (reading == "clip")
    assert mw.frequency == (13e9 if reading == "clip" else 1e9)
    with pytest.raises(InstrumentError) as info:
        mw.power_dbm = 23.0
    assert info.value.code == "-222"
    assert mw.power_dbm == (10.0 if reading == "clip" else -20.0)
    with pytest.raises(InstrumentError) as info:
        mw.power_dbm = -30.0
    assert ("clipped to lower limit" in str(info.value)) == (reading == "clip")
    assert mw.power_dbm == -20.0
    mw.frequency = 12e9  # within the unit's range: no error left queued
    assert mw.frequency == 12e9
    assert twin.errors == []
    with pytest.raises(ValueError):
        SimAgilent8257D(out_of_range="ignore")
