"""SRS DG645 delay generator: protocol (tier 1), twin (tier 2, in-process, pty, TCP), properties."""

from __future__ import annotations

import math

import pytest
import serial
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from pymeasure.adapters import SerialAdapter
from pymeasure.test import expected_protocol

from ionclock.apparatus.transport import LoopbackAdapter
from ionclock.drivers.dg645 import (
    DELAY_CHANNELS,
    ERROR_CODES,
    OUTPUTS,
    REFERENCE_CHANNELS,
    SRSDG645,
    TRIGGER_SOURCES,
    delay_text,
    parse_delay,
    parse_error_code,
    parse_idn,
)
from ionclock.errors import InstrumentError, InstrumentTimeout, IonclockError, ReplyError
from ionclock.sim_instruments.base import LinkDown
from ionclock.sim_instruments.dg645 import IDN, SimDG645
from ionclock.sim_instruments.serve import PtyServer, TcpServer
from tests.transcripts import RecordingAdapter, check_result, run_action

NO_ERROR = ("LERR?", "0")


def _code(code):
    return lambda e: isinstance(e, InstrumentError) and e.code == code


# (name, action, expected, pairs): every list starts at the twin's power-on state, so the same
# pairs pin the driver's bytes (expected_protocol) and the twin's replies.
TRANSCRIPTS = [
    ("trigger", lambda d: d.trigger(), None, [("*TRG", None)]),
    ("trigger_twice", lambda d: (d.trigger(), d.trigger()), (None, None),
     [("*TRG", None), ("*TRG", None)]),
    ("trigger_source_get", lambda d: d.trigger_source, "single_shot", [("TSRC?", "5")]),
    ("trigger_source_set_internal", lambda d: setattr(d, "trigger_source", "internal"), None,
     [("TSRC 0", None), NO_ERROR]),
    ("trigger_source_round_trip",
     lambda d: (setattr(d, "trigger_source", "single_shot_external_falling"),
                d.trigger_source)[-1],
     "single_shot_external_falling", [("TSRC 4", None), NO_ERROR, ("TSRC?", "4")]),
    ("set_delay_a", lambda d: d.set_delay("A", "T0", 1e-6), None,
     [("DLAY 2,0,0.000001000000", None), NO_ERROR]),
    ("set_delay_lower_case", lambda d: d.set_delay("b", "a", 10e-9), None,
     [("DLAY 3,2,0.000000010000", None), NO_ERROR]),
    ("set_delay_ps", lambda d: d.set_delay("H", "G", 1.5e-10), None,
     [("DLAY 9,8,0.000000000150", None), NO_ERROR]),
    ("delay_get_default", lambda d: d.delay("B"), ("A", 10e-9), [("DLAY?3", "2,+0.000000010000")]),
    ("delay_round_trip", lambda d: (d.set_delay("C", "T0", 0.105), d.delay("C"))[-1],
     ("T0", 0.105), [("DLAY 4,0,0.105000000000", None), NO_ERROR,
                     ("DLAY?4", "0,+0.105000000000")]),
    ("delay_large", lambda d: (d.set_delay("E", "T0", 1999.5), d.delay("E"))[-1],
     ("T0", 1999.5), [("DLAY 6,0,1999.500000000000", None), NO_ERROR,
                      ("DLAY?6", "0,+1999.500000000000")]),
    ("link_loop", lambda d: d.set_delay("A", "B", 0.0), _code("13"),
     [("DLAY 2,3,0.000000000000", None), ("LERR?", "13"), NO_ERROR]),
    ("absolute_delay_out_of_range",
     lambda d: (d.set_delay("A", "T0", 1500.0), d.set_delay("B", "A", 600.0)), _code("12"),
     [("DLAY 2,0,1500.000000000000", None), NO_ERROR,
      ("DLAY 3,2,600.000000000000", None), ("LERR?", "12"), NO_ERROR]),
    ("amplitude_set", lambda d: d.set_level_amplitude("AB", 3.3), None,
     [("LAMP 1,3.30", None), NO_ERROR]),
    ("amplitude_get_default", lambda d: d.level_amplitude("T0"), 2.5, [("LAMP?0", "+2.50")]),
    ("amplitude_round_trip",
     lambda d: (d.set_level_amplitude("gh", 5.0), d.level_amplitude("GH"))[-1], 5.0,
     [("LAMP 4,5.00", None), NO_ERROR, ("LAMP?4", "+5.00")]),
    ("offset_round_trip",
     lambda d: (d.set_level_offset("CD", -1.0), d.level_offset("CD"))[-1], -1.0,
     [("LOFF 2,-1.00", None), NO_ERROR, ("LOFF?2", "-1.00")]),
    ("check_errors_none", lambda d: d.check_errors(), [], [NO_ERROR]),
    ("trigger_outside_single_shot",
     lambda d: (setattr(d, "trigger_source", "internal"), d.trigger(), d.check_errors()),
     _code("11"), [("TSRC 0", None), NO_ERROR, ("*TRG", None), ("LERR?", "11"), NO_ERROR]),
    ("instrument_status_after_trigger", lambda d: (d.trigger(), d.read_instrument_status())[-1],
     5, [("*TRG", None), ("INSR?", "5")]),
    ("instrument_status_clears", lambda d: d.read_instrument_status(), 0, [("INSR?", "0")]),
    ("clear_status", lambda d: d.clear_status(), None, [("*CLS", None)]),
    ("reset", lambda d: (d.set_delay("B", "T0", 1.0), d.reset(), d.delay("B"))[-1],
     ("A", 10e-9), [("DLAY 3,0,1.000000000000", None), NO_ERROR, ("*RST", None),
                    ("DLAY?3", "2,+0.000000010000")]),
    ("identity", lambda d: d.identity.serial, "s/n001776", [("*IDN?", IDN)]),
    ("ping", lambda d: d.ping(), True, [("*IDN?", IDN)]),
]

DEVICE_ONLY = [
    ("ping_other_model", lambda d: d.ping(), False,
     [("*IDN?", "Stanford Research Systems,SG384,s/n004321,ver1.05.10A")]),
    ("ping_garbled", lambda d: d.ping(), False, [("*IDN?", "Stanford Res#arch")]),
    ("several_errors", lambda d: d.check_errors(), _code("10"),
     [("LERR?", "10"), ("LERR?", "111"), NO_ERROR]),
    ("unknown_error_code", lambda d: d.check_errors(), _code("99"), [("LERR?", "99"), NO_ERROR]),
    ("garbled_lerr", lambda d: d.check_errors(), ReplyError, [("LERR?", "1#")]),
    ("garbled_tsrc", lambda d: d.trigger_source, ReplyError, [("TSRC?", "9")]),
    ("garbled_delay", lambda d: d.delay("A"), ReplyError, [("DLAY?2", "0+0.000000000000")]),
    ("garbled_delay_time", lambda d: d.delay("A"), ReplyError, [("DLAY?2", "0,+0.0#0")]),
    ("garbled_amplitude", lambda d: d.level_amplitude("AB"), ReplyError, [("LAMP?1", "nan")]),
    ("garbled_insr", lambda d: d.read_instrument_status(), ReplyError, [("INSR?", "-1")]),
]


# --- tier 1: protocol -------------------------------------------------------------------------
@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS + DEVICE_ONLY,
                         ids=[t[0] for t in TRANSCRIPTS + DEVICE_ONLY])
def test_protocol(name, action, expected, pairs):
    with expected_protocol(SRSDG645, pairs) as dg:
        check_result(run_action(dg, action), expected)


def test_error_message_names_the_instrument_and_code():
    with expected_protocol(SRSDG645, [("LERR?", "13"), NO_ERROR], name="trigger DG645") as dg:
        with pytest.raises(InstrumentError) as info:
            dg.check_errors()
    assert info.value.code == "13"
    assert "trigger DG645" in str(info.value) and "illegal link" in str(info.value)


@pytest.mark.parametrize("call", [
    lambda d: setattr(d, "trigger_source", "single"),
    lambda d: setattr(d, "trigger_source", 5),
    lambda d: setattr(d, "trigger_source", None),
    lambda d: d.set_delay("T0", "T0", 0.0),
    lambda d: d.set_delay("T1", "T0", 0.0),
    lambda d: d.set_delay("A", "T1", 0.0),
    lambda d: d.set_delay("A", "A", 0.0),
    lambda d: d.set_delay("I", "T0", 0.0),
    lambda d: d.set_delay(2, 0, 0.0),
    lambda d: d.set_delay("A", "T0", -1e-12),
    lambda d: d.set_delay("A", "T0", 2000.0),
    lambda d: d.set_delay("A", "T0", math.nan),
    lambda d: d.set_delay("A", "T0", math.inf),
    lambda d: d.delay("T0"),
    lambda d: d.set_level_amplitude("AB", 0.49),
    lambda d: d.set_level_amplitude("AB", 5.01),
    lambda d: d.set_level_amplitude("AB", math.nan),
    lambda d: d.set_level_amplitude("A", 2.0),
    lambda d: d.set_level_offset("T0", 3.5),
    lambda d: d.set_level_offset("T0", -3.01),
    lambda d: d.level_offset("XY"),
])
def test_bad_input_writes_nothing(call):
    with expected_protocol(SRSDG645, []) as dg:
        with pytest.raises(ValueError):
            call(dg)


def test_class_attributes_for_the_registry():
    assert SRSDG645.write_termination == "\n"
    assert SRSDG645.read_termination == "\r\n"
    assert SRSDG645.serial_settings["baudrate"] == 9600
    assert SRSDG645.serial_settings["rtscts"] is True


# --- tier 2: twin -----------------------------------------------------------------------------
@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_twin_parser_answers_the_transcripts(name, action, expected, pairs):
    twin = SimDG645(None)
    twin.record_transcript = True  # the generic parser, not the *TRG shortcut
    for command, reply in pairs:
        twin.write(command.encode("ascii") + b"\n")
        assert twin.read_available() == (b"" if reply is None else reply.encode() + b"\r\n"), \
            command


@pytest.mark.parametrize("name, action, expected, pairs", TRANSCRIPTS,
                         ids=[t[0] for t in TRANSCRIPTS])
def test_driver_on_twin_gives_the_transcript_results(name, action, expected, pairs):
    dg, twin = _connect(None)
    check_result(run_action(dg, action), expected)
    assert twin.read_available() == b""


class CycleWorld:
    """Records start_cycle(t) and settle() calls; time from a SimPy environment."""

    def __init__(self):
        self.env = simpy.Environment()
        self.cycles: list[float] = []
        self.settles = 0

    def settle(self):
        self.settles += 1

    def start_cycle(self, t):
        self.cycles.append(t)


class SettleOnlyWorld:
    def __init__(self):
        self.settles = 0

    def settle(self):
        self.settles += 1


def _connect(world, name="DG645", **twin_options):
    twin = SimDG645(world, **twin_options)
    adapter = LoopbackAdapter(twin, write_termination=SRSDG645.write_termination,
                              read_termination=SRSDG645.read_termination, name="dg645@sim")
    return SRSDG645(adapter, name), twin


def _advance(env, dt):
    env.run(until=env.now + dt)


def test_trigger_starts_a_cycle_at_world_time():
    world = CycleWorld()
    dg, twin = _connect(world)
    assert dg.ping() and dg.trigger_source == "single_shot"
    for _ in range(3):
        dg.trigger()
        _advance(world.env, 0.105)
    assert world.cycles == pytest.approx([0.0, 0.105, 0.21])
    assert twin.triggers == 3 and twin.last_trigger_time == pytest.approx(0.21)
    assert dg.check_errors() == []
    assert dg.read_instrument_status() == 5 and dg.read_instrument_status() == 0


def test_settle_is_called_before_every_line_on_both_paths():
    world = CycleWorld()
    dg, twin = _connect(world)
    dg.trigger()              # shortcut
    assert world.settles == 1
    dg.trigger_source = "single_shot"   # TSRC 5 + LERR?
    assert world.settles == 3
    twin.record_transcript = True
    dg.trigger()              # generic path
    assert world.settles == 4 and world.cycles == [0.0, 0.0]


@pytest.mark.parametrize("source", ["internal", "external_rising", "external_falling", "line"])
def test_trigger_outside_single_shot_starts_no_cycle(source):
    world = CycleWorld()
    dg, twin = _connect(world)
    dg.trigger_source = source
    dg.trigger()
    assert world.cycles == [] and twin.triggers == 0 and twin.ignored_triggers == 1
    with pytest.raises(InstrumentError) as info:
        dg.check_errors()
    assert info.value.code == "11"


def test_trigger_outside_single_shot_silent_option():
    world = CycleWorld()
    dg, twin = _connect(world, trg_mode_error=None)
    dg.trigger_source = "internal"
    dg.trigger()
    assert world.cycles == [] and twin.ignored_triggers == 1
    assert dg.check_errors() == []


@pytest.mark.parametrize("source, rising", [("single_shot_external_rising", True),
                                            ("single_shot_external_falling", False)])
def test_trigger_arms_single_shot_external(source, rising):
    world = CycleWorld()
    dg, twin = _connect(world)
    dg.trigger_source = source
    assert twin.external_edge(rising) is False     # not armed yet
    dg.trigger()
    assert world.cycles == [] and twin.armed
    assert twin.external_edge(not rising) is False  # wrong edge
    _advance(world.env, 1e-3)
    assert twin.external_edge(rising) is True
    assert twin.external_edge(rising) is False     # single shot: disarmed
    assert world.cycles == pytest.approx([1e-3])
    assert dg.check_errors() == []


def test_external_modes_fire_on_each_matching_edge():
    world = CycleWorld()
    dg, twin = _connect(world)
    dg.trigger_source = "external_falling"
    assert [twin.external_edge(r) for r in (True, False, False)] == [False, True, True]
    assert len(world.cycles) == 2


def test_trigger_without_world_or_hook_only_counts():
    dg, twin = _connect(None)
    dg.trigger()
    dg.trigger()
    assert twin.triggers == 2 and twin.last_trigger_time is None
    world = SettleOnlyWorld()
    dg, twin = _connect(world)
    dg.trigger()
    assert twin.triggers == 1 and world.settles == 1


def test_world_with_hook_but_no_env_is_refused():
    class NoEnv:
        def start_cycle(self, t):
            pass

    with pytest.raises(ValueError):
        SimDG645(NoEnv())


def test_delays_follow_links_and_round_to_5ps():
    dg, twin = _connect(None)
    dg.set_delay("A", "T0", 1e-3)
    dg.set_delay("B", "A", 2e-6)
    dg.set_delay("C", "B", 12e-12)  # -> 10 ps on the unit's 5 ps grid
    assert dg.delay("C") == ("B", pytest.approx(10e-12, abs=1e-18))
    assert twin.absolute_delay(4) == pytest.approx(1.002e-3 + 10e-12, abs=1e-15)
    # T1, the end of the delay cycle, is the latest channel: D = C + 10 ns (factory link)
    assert twin.absolute_delay(1) == pytest.approx(1.002e-3 + 10e-12 + 10e-9, abs=1e-15)
    with pytest.raises(InstrumentError) as info:
        dg.set_delay("A", "C", 0.0)  # A -> C -> B -> A
    assert info.value.code == "13"
    assert dg.delay("A") == ("T0", 1e-3)  # the rejected link changed nothing


@pytest.mark.parametrize("line, code", [
    (b"TSRC 7", 10), (b"TSRC -1", 10), (b"TSRC x", 120), (b"TSRC 5.5", 120), (b"TSRC", 116),
    (b"TSRC 1,2", 115), (b"*IDN", 113), (b"*IDN FOOBAR", 113), (b"INSR 0", 113),
    (b"LERR 1", 113), (b"*TRG?", 112), (b"*RST?", 112), (b"*TRG 1", 115), (b"FOO", 110),
    (b"12AB", 110), (b"ABCD", 111), (b"DLAY 2,0", 116), (b"DLAY 2,,1", 114),
    (b"DLAY 2,0,abc", 118), (b"DLAY 2,0,nan", 118), (b"DLAY 0,0,1", 10), (b"DLAY 2,1,0", 10),
    (b"DLAY 2,2,0", 13), (b"DLAY 2,0,2000", 12), (b"DLAY 2,0,-1e-9", 12), (b"DLAY?", 116),
    (b"DLAY?10", 10), (b"LAMP 1,10.0", 10), (b"LAMP 5,1.0", 10), (b"LOFF 1,-3.5", 10),
    (b"\xff", 126), (b"LAMP 1," + b"1" * 300, 171),
])
def test_twin_error_codes(line, code):
    twin = SimDG645(None)
    twin.write(line + b"\n")
    assert twin.read_available() == b""  # the DG645 never answers a rejected command
    twin.write(b"LERR?\n")
    assert twin.read_available() == f"{code}\r\n".encode()
    assert code in ERROR_CODES
    twin.write(b"LERR?\n")
    assert twin.read_available() == b"0\r\n"


def test_twin_grammar_variants():
    twin = SimDG645(None)
    for line in (b"tsrc0\r", b"TSRC? \r\n", b"dlay? 3\n", b"DLAY?3\n", b"\n", b"*opc?\n"):
        twin.write(line)
    assert twin.read_available() == b"0\r\n2,+0.000000010000\r\n2,+0.000000010000\r\n1\r\n"
    twin.write(b"LERR?\n")
    assert twin.read_available() == b"0\r\n"


def test_error_queue_overflow_and_clear():
    dg, twin = _connect(None)
    for _ in range(25):
        twin.write(b"XXXX\n")
    assert twin.errors == [111] * 19 + [254]
    with pytest.raises(InstrumentError) as info:
        dg.check_errors()
    assert info.value.code == "111" and twin.errors == []
    twin.write(b"XXXX\n")
    dg.clear_status()
    assert dg.check_errors() == []


def test_reset_restores_factory_settings_but_keeps_errors():
    dg, twin = _connect(None)
    dg.trigger_source = "line"
    dg.set_level_amplitude("AB", 4.0)
    twin.write(b"XXXX\n")
    dg.reset()
    assert dg.trigger_source == "single_shot" and dg.level_amplitude("AB") == 2.5
    with pytest.raises(InstrumentError):
        dg.check_errors()


def test_twin_faults():
    dg, twin = _connect(CycleWorld())
    twin.faults.timeout = True
    with pytest.raises(InstrumentTimeout):
        dg.check_errors()
    assert dg.ping() is False
    twin.faults.timeout = False
    dg.adapter.flush_read_buffer()
    twin.faults.disconnected = True
    with pytest.raises(LinkDown):
        dg.trigger()
    assert dg.ping() is False
    twin.faults.disconnected = False
    twin.faults.garble = True
    for _ in range(30):
        with pytest.raises(IonclockError):  # "0" garbled is never read as "no error"
            dg.check_errors()
        dg.adapter.flush_read_buffer()


def test_power_cycle_clears_errors_and_settings():
    dg, twin = _connect(None)
    dg.trigger_source = "internal"
    dg.trigger()
    twin.power_cycle()
    assert dg.trigger_source == "single_shot" and dg.check_errors() == []


@pytest.mark.ostransport
def test_twin_over_loopback_tcp_with_pyvisa():
    world = CycleWorld()
    with TcpServer(SimDG645(world)) as server:
        dg = SRSDG645(server.resource, write_termination=SRSDG645.write_termination,
                      read_termination=SRSDG645.read_termination, visa_library="@py")
        try:
            assert dg.ping()
            dg.set_delay("A", "T0", 2e-6)
            for _ in range(5):
                dg.trigger()
            assert dg.delay("A") == ("T0", 2e-6)
            assert dg.check_errors() == []
        finally:
            dg.close()
    assert len(world.cycles) == 5


@pytest.mark.ostransport
def test_twin_over_pty_with_pyserial():
    world = CycleWorld()
    with PtyServer(SimDG645(world)) as server:
        port = serial.serial_for_url(server.port, **SRSDG645.serial_settings)
        dg = SRSDG645(SerialAdapter(port, write_termination=SRSDG645.write_termination,
                                    read_termination=SRSDG645.read_termination))
        try:
            assert dg.ping()
            dg.trigger_source = "single_shot"
            dg.trigger()
            assert dg.read_instrument_status() == 5
        finally:
            dg.close()
    assert len(world.cycles) == 1


# --- properties ---------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True, width=64)
       | st.floats(min_value=1999.999, max_value=2000.001)
       | st.floats(min_value=-1e-9, max_value=1e-9))
def test_no_out_of_range_delay_reaches_the_wire(seconds):
    adapter = RecordingAdapter("0")
    dg = SRSDG645(adapter)
    try:
        dg.set_delay("D", "T0", seconds)
    except ValueError:
        assert adapter.written == []
        assert not 0.0 <= seconds < 2000.0 or round(seconds * 1e12) >= 2000 * 10**12
        return
    cmd, lerr = adapter.written
    assert lerr == "LERR?" and cmd.startswith("DLAY 5,0,")
    text = cmd[len("DLAY 5,0,"):]
    whole, frac = text.split(".")
    assert whole.isdigit() and frac.isdigit() and len(frac) == 12
    value = float(text)
    assert 0.0 <= value < 2000.0
    assert abs(value - seconds) <= 0.5e-12 + 1e-15 * seconds
    twin = SimDG645(None)  # the twin accepts every delay the driver sends
    twin.write(cmd.encode() + b"\nLERR?\n")
    assert twin.read_available() == b"0\r\n"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=4), st.text(max_size=4))
def test_channel_validator(channel, reference):
    adapter = RecordingAdapter("0")
    dg = SRSDG645(adapter)
    valid = (channel.upper() in DELAY_CHANNELS and reference.upper() in REFERENCE_CHANNELS
             and channel.upper() != reference.upper())
    try:
        dg.set_delay(channel, reference, 1e-6)
    except ValueError:
        assert not valid and adapter.written == []
        return
    assert valid and len(adapter.written) == 2


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=14))
def test_trigger_source_validator(source):
    adapter = RecordingAdapter("0")
    dg = SRSDG645(adapter)
    try:
        dg.trigger_source = source
    except ValueError:
        assert source not in TRIGGER_SOURCES and adapter.written == []
        return
    assert adapter.written == [f"TSRC {TRIGGER_SOURCES[source]}", "LERR?"]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(OUTPUTS)), st.floats(allow_nan=True, allow_infinity=True))
def test_level_validators(output, volts):
    for setter, (lo, hi), cmd in ((SRSDG645.set_level_amplitude, (0.5, 5.0), "LAMP"),
                                  (SRSDG645.set_level_offset, (-3.0, 3.0), "LOFF")):
        adapter = RecordingAdapter("0")
        dg = SRSDG645(adapter)
        try:
            setter(dg, output, volts)
        except ValueError:
            assert not lo <= volts <= hi and adapter.written == []
            continue
        assert adapter.written[0] == f"{cmd} {OUTPUTS[output]},{volts:.2f}"


_REPLY = st.text(alphabet="0123456789+-.,eE #nai\x7f", max_size=24)


@settings(max_examples=400, deadline=None)
@given(_REPLY)
def test_reply_parsers_raise_typed_errors_or_give_sane_values(reply):
    try:
        ref, seconds = parse_delay(reply)
    except (ReplyError, InstrumentTimeout):
        pass
    else:
        assert ref in ("T0", "T1") + DELAY_CHANNELS and math.isfinite(seconds)
    try:
        code = parse_error_code(reply)
    except (ReplyError, InstrumentTimeout):
        pass
    else:
        assert code >= 0 and reply.strip().isdigit()
    try:
        parse_idn(reply)
    except (ReplyError, InstrumentTimeout):
        pass


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=0.0, max_value=1999.999999))
def test_delay_text_round_trips_through_the_twin(seconds):
    twin = SimDG645(None)
    twin.write(f"DLAY 2,0,{delay_text(seconds)}\nDLAY?2\n".encode())
    ref, value = parse_delay(twin.read_available().decode().strip())
    assert ref == "T0" and abs(value - seconds) <= 3e-12 + 1e-15 * seconds
