"""Pendulum CNT-91: protocol transcripts, the comb-beat twin, loopback TCP, properties.

Transcript bytes come from the CNT-90/91 Programmer's Handbook (``:MEAS:FREQ? (@3)`` ->
``1.78112526833E+009``, p. 8-60; ``*IDN?`` -> ``<manufacturer>, <model>, 1234567, V1.01 28
Jun 2004``, p. 8-133; ``0, "No error"`` and the error numbers, p. 3-17 and ch. 7; the invalid
result of a timed-out measurement: an empty line in native mode, ``9.91E37`` in compatible
mode, p. 8-36) and pymeasure's CNT91 tests (``:ACQ:APER?`` -> ``+1.0000000000000E+00``,
``+9.999992027E+06``); the others follow that grammar.
"""

from __future__ import annotations

import math

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from pymeasure.test import expected_protocol

from ionclock.apparatus.registry import open_instrument
from ionclock.apparatus.transport import LoopbackAdapter
from ionclock.drivers.frequency_counter import FrequencyCounterCNT91
from ionclock.errors import InstrumentError, InstrumentTimeout, ReplyError
from ionclock.physics.constants import NU0_CA
from ionclock.physics.rtd import Missing, missing_reason
from ionclock.sim_instruments.cnt91 import SimCNT91
from ionclock.sim_instruments.serve import TcpServer
from ionclock.sim_instruments.world import ClockWorld, TwinParams
from tests.link_peers import CannedPeer, check_result

IDN = "PENDULUM, CNT-91, 1234567, V1.01 28 Jun 2004"
NO_ERROR = (":SYST:ERR?", '0,"No error"')
CONFIGURE = [(":CONF:FREQ (@1)", None), (":ACQ:APER 1", None), (":SYST:TOUT 1", None),
             (":SYST:TOUT:TIME 2.10", None), NO_ERROR]


def missing(word: str):
    return lambda v: isinstance(v, Missing) and word in missing_reason(v)


def approx(value: float):
    return lambda v: not isinstance(v, Missing) and v == pytest.approx(value, rel=1e-12)


def error(code: str):
    return ("error", code)


def configure(d):
    d.configure_frequency("A", 1.0)


def init_fetch(d):
    d.initiate()
    return d.fetch()


# (name, action, expected, pairs, twin set-up: None = not replayed, else (options, faults, cmds))
TRANSCRIPTS = [
    ("identity", lambda d: d.identity, IDN, [("*IDN?", IDN)], ({}, {}, [])),
    ("ping", lambda d: d.ping(), True, [("*IDN?", IDN)], ({}, {}, [])),
    ("ping_other_model", lambda d: d.ping(), False, [("*IDN?", "ACME, FC-1, 1, 1")], None),
    ("configure", configure, None, CONFIGURE, ({}, {}, [])),
    ("configure_input_c_short_gate", lambda d: d.configure_frequency("C", 0.1, 0.5), None,
     [(":CONF:FREQ (@3)", None), (":ACQ:APER 0.1", None), (":SYST:TOUT 1", None),
      (":SYST:TOUT:TIME 0.50", None), NO_ERROR], ({}, {}, [])),
    ("configure_rejected", configure, error("-222"),
     CONFIGURE[:-1] + [(":SYST:ERR?", '-222,"Data out of range"'), NO_ERROR], None),
    ("frequency_manual_example", lambda d: d.frequency, approx(1.78112526833e9),
     [(":READ?", "1.78112526833E+009")], None),
    ("frequency_pymeasure_format", lambda d: d.frequency, approx(9.999992027e6),
     [(":READ?", "+9.999992027E+06")], None),
    ("frequency_beat", lambda d: d.frequency, approx(50223600.0),
     [(":READ?", "+5.02236000000E+07")], ({}, {}, [":ACQ:APER 1"])),
    ("frequency_timed_out_native", lambda d: d.frequency, missing("timed out"),
     [(":READ?", ""), NO_ERROR],
     ({}, {"no_signal": True}, [":SYST:TOUT 1"])),
    ("frequency_timed_out_compatible", lambda d: d.frequency, missing("9.91E37"),
     [(":READ?", "9.91E37"), NO_ERROR],
     ({"gpib_mode": "compatible"}, {"no_signal": True}, [":SYST:TOUT 1"])),
    ("fetch_before_any_measurement", lambda d: d.fetch(), error("-230"),
     [(":FETC?", ""), (":SYST:ERR?", '-230,"Data corrupt or stale"'), NO_ERROR],
     ({}, {}, [])),
    ("initiate_then_fetch", init_fetch, approx(50223600.0),
     [(":INIT", None), (":FETC?", "+5.02236000000E+07")], ({}, {}, [":ACQ:APER 1"])),
    ("gate_time_get", lambda d: d.gate_time, 1.0, [(":ACQ:APER?", "+1.0000000000000E+00")],
     ({}, {}, [":ACQ:APER 1"])),
    ("gate_time_set", lambda d: setattr(d, "gate_time", 0.5), None,
     [(":ACQ:APER 0.5", None)], ({}, {}, [])),
    ("timeout_enabled_get", lambda d: d.timeout_enabled, True, [(":SYST:TOUT?", "1")],
     ({}, {}, [":SYST:TOUT 1"])),
    ("timeout_enabled_set", lambda d: setattr(d, "timeout_enabled", True), None,
     [(":SYST:TOUT 1", None), NO_ERROR], ({}, {}, [])),
    ("measurement_timeout_get", lambda d: d.measurement_timeout, 0.1,
     [(":SYST:TOUT:TIME?", "+1.0000000000000E-01")], ({}, {}, [])),
    ("measurement_timeout_set", lambda d: setattr(d, "measurement_timeout", 0.5), None,
     [(":SYST:TOUT:TIME 0.50", None), NO_ERROR], ({}, {}, [])),
    ("undefined_header", lambda d: (d.write(":FOO"), d.check_errors()), error("-113"),
     [(":FOO", None), (":SYST:ERR?", '-113,"Undefined header"'), NO_ERROR], ({}, {}, [])),
    ("manual_error_spacing", lambda d: d.check_errors(), [],
     [(":SYST:ERR?", '0, "No error"')], None),
]


@pytest.mark.parametrize("name, action, expected, pairs, twin", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_protocol(name, action, expected, pairs, twin):
    with expected_protocol(FrequencyCounterCNT91, pairs) as inst:
        check_result(inst, action, expected, 'error')


def standard_twin(options: dict | None = None) -> SimCNT91:
    opts = {"beat_hz": 50223600.0, "resolution_rel": 0.0, **(options or {})}
    twin = SimCNT91(None, **opts)
    twin.IDN = IDN
    return twin


@pytest.mark.parametrize("name, pairs, setup",
                         [(t[0], t[3], t[4]) for t in TRANSCRIPTS if t[4] is not None],
                         ids=[t[0] for t in TRANSCRIPTS if t[4] is not None])
def test_twin_parser_matches_transcripts(name, pairs, setup):
    options, faults, commands = setup
    twin = standard_twin(options)
    for field, value in faults.items():
        setattr(twin.faults, field, value)
    for command in commands:
        twin.write(command.encode() + b"\n")
    assert twin.read_available() == b""
    for command, reply in pairs:
        twin.write(command.encode() + b"\n")
        expected = b"" if reply is None else reply.encode() + b"\n"
        assert twin.read_available() == expected, command


# --- the twin's answers to malformed commands and before a result is ready ---------------
@pytest.mark.parametrize("command, error", [
    (b":FROB 1", '-113,"Undefined header"'),          # no such header
    (b":ACQ:APER 5000", '-222,"Data out of range"'),  # 20 ns .. 1000 s
    (b":ACQ:APER 1e-9", '-222,"Data out of range"'),
    (b":ACQ:APER soon", '-104,"Data type error"'),
    (b":SYST:TOUT:TIME 0.001", '-222,"Data out of range"'),
    (b":SYST:TOUT maybe", '-104,"Data type error"'),
    (b":MEAS:FREQ? (@5)", '-222,"Data out of range"'),
    (b":FORM REAL", '-221,"Settings conflict"'),      # binary formats not modelled
])
def test_twin_queues_the_manuals_errors_and_sends_nothing(command, error):
    twin = standard_twin()
    twin.write(command + b"\n")
    assert twin.read_available() == b""
    twin.write(b":SYST:ERR?\n")
    assert twin.read_available() == error.encode() + b"\n"
    twin.write(b":SYST:ERR?\n")
    assert twin.read_available() == b'0,"No error"\n'


def test_twin_fetch_before_and_after_a_measurement():
    twin = standard_twin()
    inst = FrequencyCounterCNT91(LoopbackAdapter(twin, "\n", "\n"))
    with pytest.raises(InstrumentError) as info:
        inst.fetch()                              # nothing measured: -230
    assert info.value.code == "-230"
    inst.initiate()
    assert inst.fetch() == pytest.approx(50223600.0)
    assert inst.fetch() == pytest.approx(50223600.0)  # the same result, again
    inst.configure_frequency("A", 1.0)            # reconfigured: the result is gone
    with pytest.raises(InstrumentError):
        inst.fetch()


def test_configure_resets_the_timeout_so_the_driver_sends_it_after():
    twin = standard_twin()
    twin.faults.no_signal = True
    inst = FrequencyCounterCNT91(LoopbackAdapter(twin, "\n", "\n"))
    inst.timeout_enabled = True
    inst.write(":CONF:FREQ (@1)")                 # back to *RST: timeout off
    with pytest.raises(InstrumentTimeout):        # ... so it waits for ever
        inst.frequency  # noqa: B018
    inst.configure_frequency("A", 0.1)
    assert missing("timed out")(inst.frequency)


def test_compound_messages_and_long_forms():
    twin = standard_twin()
    twin.write(b":CONFIGURE:FREQUENCY (@6);:sense:acquisition:aperture 0.2;:READ?\n")
    assert twin.read_available() == b"+1.0000000000E+07\n"  # the internal 10 MHz reference
    twin.write(b":ACQ:APER?;:SYST:TOUT?\n")
    assert twin.read_available() == b"+2.0000000000000E-01;0\n"


def test_bad_values_rejected_before_the_wire():
    with expected_protocol(FrequencyCounterCNT91, []) as inst:
        for kwargs in ({"channel": "D"}, {"gate_time_s": 0.0}, {"gate_time_s": 2000.0},
                       {"timeout_s": 0.001}, {"gate_time_s": math.nan}):
            with pytest.raises(ValueError):
                inst.configure_frequency(**kwargs)
        with pytest.raises(ValueError):
            inst.measurement_timeout = 5000.0
        with pytest.raises(ValueError):
            inst.gate_time = 0.0


@pytest.mark.parametrize("reply", ["5.02E+07#", "+5.02E+07,1", "nan", "Hz", "\x7f"])
def test_garbled_results_raise_reply_error(reply):
    with expected_protocol(FrequencyCounterCNT91, [(":READ?", reply)]) as inst:
        with pytest.raises(ReplyError):
            inst.frequency  # noqa: B018


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=24))
def test_random_replies_give_a_number_a_missing_or_a_typed_error(noise):
    inst = FrequencyCounterCNT91(LoopbackAdapter(CannedPeer(noise.replace(b"\n", b"") + b"\n"),
                                                 "\n", "\n"))
    try:
        value = inst.frequency
    except (ReplyError, InstrumentError, InstrumentTimeout):
        return
    assert isinstance(value, Missing) or math.isfinite(value)


# --- the twin on the clock's world: the beat follows the laser ------------------------------
def clock_world(**params) -> ClockWorld:
    return ClockWorld(simpy.Environment(), TwinParams(**params), seed=5)


def laser_from_beat(twin: SimCNT91, beat_hz: float) -> float:
    """What a lab's reference computes: the cavity offset from nu0 (Hz), from the counted beat."""
    line = twin.mode_number * twin.f_rep_hz + twin.f_ceo_hz   # exact in float (< 2**53)
    return (line - twin.nu0_hz) + twin.beat_sign * beat_hz - twin.light_offset_hz


def test_the_beat_puts_the_laser_on_the_absolute_scale():
    world = clock_world(laser_offset_hz=2.0, cavity_drift_hz_s=0.05)
    counter = open_instrument("cnt91", "sim://cnt91", world=world)
    twin = counter.twin
    assert twin.mode_number * twin.f_rep_hz + twin.f_ceo_hz < 2 ** 53
    assert abs(twin.nu0_hz + twin.light_offset_hz
               - (twin.mode_number * twin.f_rep_hz + twin.f_ceo_hz)) < twin.f_rep_hz / 2
    counter.configure_frequency("A", 1.0)
    for t in (0.0, 100.0, 3600.0, 86400.0):
        world.env.run(until=t) if t > world.env.now else None
        beat = counter.frequency
        assert 1e6 < beat < 300e6                  # input A's range
        assert laser_from_beat(twin, beat) == pytest.approx(world.cavity_offset_hz(), abs=1e-3)
    assert NU0_CA == twin.nu0_hz


def test_the_beat_follows_a_laser_jump():
    world = clock_world(events=((50.0, "laser_jump", 25.0, 0.0),), flicker_floor=0.0,
                        cavity_drift_hz_s=0.0)
    counter = open_instrument("cnt91", "sim://cnt91", world=world)
    counter.configure_frequency("A", 1.0)
    world.env.run(until=49.0)
    before = counter.frequency
    world.env.run(until=51.0)
    after = counter.frequency
    assert counter.twin.beat_sign * (after - before) == pytest.approx(25.0, abs=1e-3)


def test_a_lost_beat_is_missing_and_the_internal_reference_still_reads():
    world = clock_world()
    counter = open_instrument("cnt91", "sim://cnt91", world=world)
    counter.configure_frequency("A", 1.0)
    counter.twin.faults.no_signal = True
    assert missing("timed out")(counter.frequency)
    counter.configure_frequency("INTREF", 1.0)
    assert counter.frequency == pytest.approx(10e6)
    counter.twin.faults.no_signal = False
    counter.configure_frequency("B", 0.1)          # nothing cabled to input B
    assert missing("timed out")(counter.frequency)


def test_counter_resolution_noise_is_its_own_and_small():
    world = clock_world(flicker_floor=0.0, cavity_drift_hz_s=0.0)
    counter = open_instrument("cnt91", "sim://cnt91", world=world)
    counter.configure_frequency("A", 1.0)
    values = [counter.frequency for _ in range(50)]
    spread = max(values) - min(values)
    assert spread < 1e-3                           # ~12 digits per second of gate
    assert world.rng.random() == ClockWorld(simpy.Environment(), TwinParams(flicker_floor=0.0,
                                            cavity_drift_hz_s=0.0), seed=5).rng.random()


def test_twin_options_are_checked():
    for bad in ({"f_rep_hz": 0.0}, {"f_ceo_hz": 1e12}, {"beat_input": "C"},
                {"gpib_mode": "turbo"}, {"resolution_rel": -1.0}):
        with pytest.raises(ValueError):
            SimCNT91(None, **bad)


@pytest.mark.ostransport
def test_over_loopback_tcp_with_pyvisa():
    world = clock_world(flicker_floor=0.0, cavity_drift_hz_s=0.0)
    with TcpServer(SimCNT91(world)) as srv:
        counter = open_instrument("cnt91", srv.resource)
        try:
            assert counter.ping()
            counter.configure_frequency("A", 1.0)
            assert counter.gate_time == pytest.approx(1.0)
            beat = counter.frequency
            # within the resolution noise (1e-12 of the beat in a 1 s gate, 5e-5 Hz) and
            # the last printed digit (1e-4 Hz)
            assert beat == pytest.approx(SimCNT91(world).beat_hz(), abs=5 * 5e-5 + 1e-4)
            with pytest.raises(InstrumentError) as info:
                counter.write(":FROB")
                counter.check_errors()
            assert info.value.code == "-113"
        finally:
            counter.close()
